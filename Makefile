# pd-sfdc-sync: every command a developer or CI needs. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV      := .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
CARGO     ?= cargo
# moto_server, cfn-lint, sam and cargo-lambda come from the venv.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export MOTO_SERVER := $(CURDIR)/$(VENV)/bin/moto_server

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

.PHONY: tools
tools: $(STAMP) ## Install the pinned Python tools (moto, cfn-lint, SAM CLI, cargo-lambda) into .venv

.PHONY: fmt
fmt: ## Format the Rust code
	$(CARGO) fmt --all

.PHONY: lint
lint: $(STAMP) ## rustfmt check, clippy with warnings as errors, cfn-lint and sam validate --lint on the template, samconfig/docs vs template, salesforce-check
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	cfn-lint template.yaml
	@# SAM's own check (transform, then cfn-lint): offline, with no AWS credentials; it only needs a region.
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} SAM_CLI_TELEMETRY=0 sam validate --lint --template-file template.yaml
	@# samconfig.toml's parameter_overrides and the outputs the docs name, against the template.
	$(PY) tools/check_deploy_config.py
	$(MAKE) --no-print-directory deps
	$(MAKE) --no-print-directory salesforce-check

.PHONY: salesforce-check
salesforce-check: ## Salesforce source offline: sf project convert source, every .cls/.trigger parses, PMD Apex rules P1-2, LWC Jest tests (pinned tools in .tools/)
	bash tools/salesforce-check/check.sh

.PHONY: deps
deps: ## Check the dependency tree: one TLS stack (no hyper 0.14, rustls < 0.23, ring or sct), and an AWS-free core
	@legacy="$$($(CARGO) tree --workspace --locked -e normal,build --prefix none --format '{p}' \
		| awk '$$1 == "ring" || $$1 == "sct" || ($$1 == "hyper" && $$2 ~ /^v0\./) || ($$1 == "rustls" && $$2 ~ /^v0\.(1|2[0-2])\./) { print $$1, $$2 }' | sort -u)"; \
	if [ -n "$$legacy" ]; then echo "a second TLS stack is linked:"; echo "$$legacy"; exit 1; fi; \
	echo "deps: one TLS stack (rustls 0.23 on aws-lc-rs)"
	@# The core (shared/) is AWS-free and does no I/O of its own: no AWS SDK, Lambda runtime, HTTP
	@# client or server, log subscriber or EMF exporter. Those live in adapters/ (docs/architecture.md).
	@impure="$$($(CARGO) tree -p pd-sfdc-shared --locked -e normal --prefix none --format '{p}' \
		| awk '$$1 ~ /^aws-(config|sdk-|smithy-|types)/ || $$1 ~ /^lambda_/ || $$1 == "aws_lambda_events" || $$1 == "reqwest" || $$1 == "hyper" || $$1 == "tracing-subscriber" || $$1 == "metrics_cloudwatch_embedded" { print $$1, $$2 }' | sort -u)"; \
	if [ -n "$$impure" ]; then echo "the core (pd-sfdc-shared) links an adapter's dependency:"; echo "$$impure"; exit 1; fi; \
	echo "deps: the core links no AWS SDK, Lambda runtime, HTTP stack or exporter"

.PHONY: test
test: $(STAMP) lint stack ## Install what is needed, lint, deploy to moto, and run every test (unit, moto, simulators)
	$(CARGO) test --workspace --locked --no-fail-fast

.PHONY: stack
stack: $(STAMP) ## Translate template.yaml (aws-sam-translator), create the stack in moto's CloudFormation, check what it made
	$(PY) tools/check_stack.py

.PHONY: run
run: ## Local demo: functions on in-memory stores against the simulators, replaying events/ (HTTP and retry samples)
	$(CARGO) run --locked -p pd-sfdc-tests --bin demo -- --events events

# The no-Docker loop (README, Make targets): moto, the simulators and `cargo lambda watch`.
.PHONY: watch
watch: $(STAMP) ## Local loop without Docker: cargo lambda watch, the functions pointed at moto and the simulators (target/watch.env)
	$(PY) tools/watch.py

# A Salesforce sample's signature is only good for 5 minutes: sign it now (events/generate.py --resign).
.PHONY: invoke-watch
invoke-watch: $(STAMP) ## Send EVENT=events/<function>/<sample>.json to `make watch` (Salesforce samples signed at send time)
	@test -n "$(EVENT)" || { echo "usage: make invoke-watch EVENT=events/sfdc-to-pd/case-insert-sev1.json"; exit 1; }
	@mkdir -p target
	python3 events/generate.py --resign $(EVENT) > target/watch-event.json
	cargo lambda invoke $(notdir $(patsubst %/,%,$(dir $(EVENT)))) --data-file target/watch-event.json

.PHONY: simulators
simulators: ## Start the PagerDuty and Salesforce simulators on local ports
	$(CARGO) run --locked -p pd-sfdc-tests --bin simulators

# The Rust target of `--arm64`. cargo-lambda (and so `sam build`) would run `rustup target add` by
# itself when it is missing, a download in the middle of a build: check it first and say how.
LAMBDA_TARGET := aarch64-unknown-linux-gnu

.PHONY: lambda-target
lambda-target: ## Check that the Rust target make build needs (aarch64-unknown-linux-gnu) is installed; say how if not
	@if ! command -v rustup >/dev/null 2>&1; then \
		echo "make build needs rustup with the $(LAMBDA_TARGET) target (https://rustup.rs, then: rustup target add $(LAMBDA_TARGET))"; exit 1; \
	elif ! rustup target list --installed | grep -qx '$(LAMBDA_TARGET)'; then \
		echo "make build needs the Rust target $(LAMBDA_TARGET) (a download from static.rust-lang.org): run"; \
		echo "  rustup target add $(LAMBDA_TARGET)"; exit 1; \
	fi

# Release profile: fat LTO, one codegen unit (Cargo.toml); cold, warm and no-op build times
# measured on the 2-core host are in docs/build-times.md.
.PHONY: build
build: $(STAMP) lambda-target ## Build the three functions for Lambda (arm64, release) with cargo-lambda
	cargo lambda build --release --arm64 --locked \
		--package sfdc-to-pd --package pd-to-sfdc --package retry

# End-to-end events per function (bench_e2e: about 25 s for 10,000 on the 2-core machine, once built).
BENCH_E2E_EVENTS ?= 10000

.PHONY: bench
bench: $(STAMP) ## Benchmarks (criterion, end to end, cold start, Python baseline): one table, also in target/bench/report.json
	rm -f target/bench/*.json  # a producer that did not run shows as "not run", not as an old result
	$(CARGO) bench --locked -p pd-sfdc-shared --bench rules --bench handler -- --warm-up-time 1 --measurement-time 3
	$(CARGO) run --release --locked -p pd-sfdc-tests --bin bench_e2e -- --events $(BENCH_E2E_EVENTS) --latency-ms 20 --out-dir target/bench
	bash tools/bench_coldstart.sh
	$(PY) tools/baseline/pd_to_sfdc.py --out target/bench/baseline.json
	$(PY) tools/bench_report.py

# Schedules `make soak` explores (from the environment or `make soak SCHEDULES=N`).
SCHEDULES ?= 1000

.PHONY: soak
soak: ## Schedule explorer: SCHEDULES random schedules (default 1000, release build); prints the counts and failing seeds
	EXPLORER_SCHEDULES=$(SCHEDULES) $(CARGO) test --release --locked -p pd-sfdc-tests --test integration -- --ignored --exact explorer::soak --nocapture

.PHONY: deploy
deploy: build ## Deploy with AWS SAM (asks for parameters the first time)
	sam build
	sam deploy --guided

.PHONY: invoke-local
invoke-local: lambda-target ## sam local invoke each function with a sample event (needs Docker and the SAM CLI)
	@if ! docker info >/dev/null 2>&1; then echo "invoke-local needs a running Docker engine"; exit 1; fi
	sam build
	@mkdir -p target
	python3 events/generate.py --resign events/sfdc-to-pd/case-insert-sev1.json > target/invoke-local-event.json
	sam local invoke PdToSfdcFunction --event events/pd-to-sfdc/incident-triggered.json
	sam local invoke SfdcToPdFunction --event target/invoke-local-event.json
	sam local invoke RetryFunction --event events/retry/sqs-batch.json

.PHONY: clean
clean: ## Remove build outputs and the venv
	$(CARGO) clean
	rm -rf $(VENV) .aws-sam .tools
