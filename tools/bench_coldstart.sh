#!/usr/bin/env bash
# Cold start, peak RSS and arm64 binary size of the three functions -> target/bench/coldstart.json.
# Release builds go to $RELEASE_DIR (default /work/target-release) so they do not hold the debug
# target's lock; the bench runs everything on loopback (moto, simulators, a local Runtime API).
set -euo pipefail
cd "$(dirname "$0")/.."
RELEASE_DIR="${RELEASE_DIR:-${CARGO_TARGET_DIR:-target}}"
export MOTO_SERVER="${MOTO_SERVER:-$PWD/.venv/bin/moto_server}"
CARGO_LAMBDA="${CARGO_LAMBDA:-$PWD/.venv/bin/cargo-lambda}"

CARGO_TARGET_DIR="$RELEASE_DIR" cargo build --release --locked -p sfdc-to-pd -p pd-to-sfdc -p retry
CARGO_TARGET_DIR="$RELEASE_DIR" cargo build --release --locked -p pd-sfdc-tests --bin coldstart

# arm64 sizes: cargo lambda cross-compiles with zig; if that fails here the bench reports the
# host stripped size instead, labelled as such.
rm -rf "$RELEASE_DIR/lambda"
if [ -x "$CARGO_LAMBDA" ]; then
  PATH="$(dirname "$CARGO_LAMBDA"):$PATH" CARGO_TARGET_DIR="$RELEASE_DIR" \
    "$CARGO_LAMBDA" lambda build --release --arm64 --locked \
    -p sfdc-to-pd -p pd-to-sfdc -p retry --lambda-dir "$RELEASE_DIR/lambda" \
    || echo "bench_coldstart: arm64 build failed; reporting host sizes" >&2
fi

"$RELEASE_DIR/release/coldstart" --bin-dir "$RELEASE_DIR/release" --lambda-dir "$RELEASE_DIR/lambda" \
  --runs "${COLDSTART_RUNS:-20}" --out target/bench/coldstart.json
