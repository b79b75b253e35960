"""`make watch`: the functions' real binaries under `cargo lambda watch` (no Docker), against moto
and the PagerDuty and Salesforce simulators.

1. moto's server and the simulators start on free ports (they stop when this script does);
2. the stack is created in moto's CloudFormation from template.yaml, as tools/check_stack.py does,
   so the table and queues are the template's; the secrets, which moto's CloudFormation does not
   create, are created here with the simulators' credentials and the demo secrets the samples in
   events/ are signed with (events/generate.py);
3. the environment the stack gives the functions is written to target/watch.env, with what points
   them here instead of AWS: AWS_ENDPOINT_URL (moto), PAGERDUTY_API_BASE and SALESFORCE_LOGIN_URL
   (the simulators), the secrets' names, and RULES_SOURCE = events/rules.example.yaml (the file, so
   no `syncctl rules push` is needed);
4. `cargo lambda watch --env-file target/watch.env` runs until Ctrl-C (`--setup-only`: print the
   environment and keep moto and the simulators up instead, e.g. for a debugger).

Send a sample from another shell with `make invoke-watch EVENT=events/sfdc-to-pd/case-insert-sev1.json`
(Salesforce samples are re-signed at send time). The simulators' state is in memory and is gone
when this ends.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import check_stack as stack

ROOT = stack.ROOT
sys.path.insert(0, str(ROOT / "events"))
import generate as samples  # noqa: E402  the demo secrets the samples are signed with

ENV_FILE = ROOT / "target/watch.env"
SIM_LOG = ROOT / "target/watch-simulators.log"
CARGO = os.environ.get("CARGO", "cargo")


def start_simulators():
    """The simulators binary (built if needed); its first output line names the URLs and credentials."""
    SIM_LOG.parent.mkdir(exist_ok=True)
    SIM_LOG.write_text("")
    print("building and starting the simulators (cargo run -p pd-sfdc-tests --bin simulators) ...", flush=True)
    stack.supervised([CARGO, "run", "--quiet", "--locked", "-p", "pd-sfdc-tests", "--bin", "simulators"], str(SIM_LOG))
    deadline = time.monotonic() + 1800  # a cold debug build on two cores
    while time.monotonic() < deadline:
        for line in SIM_LOG.read_text().splitlines():
            if line.startswith("{"):
                return json.loads(line)
            if line.startswith("error"):
                sys.exit(f"the simulators did not start: see {SIM_LOG}")
        time.sleep(0.5)
    sys.exit(f"the simulators did not start within 30 minutes: see {SIM_LOG}")


def setup(moto_url, sims):
    clients = stack.aws(moto_url)
    pd, sf = sims["pagerduty"], sims["salesforce"]
    _, key = stack.upload_artifact(clients)
    parameters = {
        "PagerDutyFromEmail": pd["from"],
        "SalesforceOrgId": sf["org_id"],
        "SalesforceIntegrationUser": sf["username"],
        "OutboundMessages": "Enabled",
        "TableDeletionProtection": "false",
        "LogLevel": "debug",
    }
    result = stack.deploy(clients, stack.translate(ROOT / "template.yaml", key), parameters)
    if result["StackStatus"] != "CREATE_COMPLETE":
        sys.exit(f"stack: {result['StackStatus']} {result.get('StackStatusReason')}")
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                for r in clients("cloudformation").list_stack_resources(StackName=stack.STACK)["StackResourceSummaries"]
                if r["LogicalResourceId"]}
    # `make invoke-watch` is the retry queue's poller here, not moto's stub function.
    stack.disable_event_sources(clients("lambda"), physical["RetryFunction"])
    # The environment the template gives the functions (all three share it but one variable).
    env = dict(clients("lambda").get_function(FunctionName=physical["SfdcToPdFunction"])["Configuration"]["Environment"]["Variables"])

    secrets = {
        "PAGERDUTY_TOKEN_SECRET_ID": {"token": pd["token"]},
        "PAGERDUTY_WEBHOOK_SECRET_ID": {"current": samples.WEBHOOK_SECRET, "previous": samples.WEBHOOK_SECRET_PREVIOUS},
        "SALESFORCE_JWT_SECRET_ID": {"consumer_key": sf["consumer_key"], "username": sf["username"],
                                     "private_key_pem": Path(sf["private_key_path"]).read_text()},
        "SALESFORCE_INBOUND_SECRET_ID": {"current": samples.INBOUND_SECRET, "previous": None},
        "SALESFORCE_OUTBOUND_MESSAGE_SECRET_ID": {"current": samples.OUTBOUND_MESSAGE_TOKEN, "previous": None},
    }
    sm = clients("secretsmanager")
    for variable, value in secrets.items():
        name = f"{stack.STACK}-{stack.SECRET_VARIABLES[variable]}"
        sm.create_secret(Name=name, SecretString=json.dumps(value))
        env[variable] = name

    env.update({
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_REGION": stack.REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "PAGERDUTY_API_BASE": pd["base_url"],
        "SALESFORCE_LOGIN_URL": sf["login_url"],
        # The simulator checks the audience of a production org's login URL.
        "SALESFORCE_JWT_AUDIENCE": sf["audience"],
        "RULES_SOURCE": str(ROOT / "events/rules.example.yaml"),
    })
    ENV_FILE.write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
    return env


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup-only", action="store_true", help="write target/watch.env, keep moto and the simulators up")
    args = parser.parse_args()
    sims = start_simulators()
    moto_url = stack.start_moto()
    env = setup(moto_url, sims)
    print(f"moto:                 {moto_url} (stack {stack.STACK}, table {env['TABLE_NAME']})")
    print(f"PagerDuty simulator:  {sims['pagerduty']['base_url']}")
    print(f"Salesforce simulator: {sims['salesforce']['login_url']}")
    print(f"environment:          {ENV_FILE.relative_to(ROOT)}")
    print("send samples from another shell:  make invoke-watch EVENT=events/sfdc-to-pd/case-insert-sev1.json")
    print("                                  make invoke-watch EVENT=events/pd-to-sfdc/incident-triggered.json")
    print("                                  make invoke-watch EVENT=events/retry/sqs-batch.json")
    print(f"look at moto:                     AWS_ENDPOINT_URL={moto_url} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "
          f"aws dynamodb scan --table-name {env['TABLE_NAME']} --region {stack.REGION}", flush=True)
    try:
        if args.setup_only:
            print("(--setup-only: Ctrl-C stops moto and the simulators)", flush=True)
            while True:
                time.sleep(3600)
        # cargo lambda watch builds the functions on the first invoke and again on every change.
        subprocess.run([CARGO, "lambda", "watch", "--env-file", str(ENV_FILE)], cwd=ROOT, check=False)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
