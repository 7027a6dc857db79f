#!/usr/bin/env bash
# Runs every vitalflow test. Installs what the tests need by itself (the Python venv from pinned
# requirements, Apache Kafka 4.1 and the S3Proxy jar from Maven Central, all cached outside the checkout),
# starts a real single-node Kafka and a real S3-compatible object store (S3Proxy, deploy/s3/s3.sh) on 127.0.0.1, runs the Rust and Python suites, and stops what it started.
# Both suites see the object store through AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_REGION, AWS_ALLOW_HTTP and VITALFLOW_S3_BUCKET (a bucket that exists).
#
# Environment:
#   VITALFLOW_CACHE    cache for jars, venvs and (by default) the cargo target dir;
#                      default ~/.cache/vitalflow
#   CARGO_TARGET_DIR   cargo's target dir; default $VITALFLOW_CACHE/target
#   PYTEST_ARGS        extra pytest arguments (e.g. "-k end_to_end")
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export VITALFLOW_CACHE=${VITALFLOW_CACHE:-$HOME/.cache/vitalflow}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$VITALFLOW_CACHE/target}
export VITALFLOW_KAFKA_DIR=${VITALFLOW_KAFKA_DIR:-$(mktemp -d /tmp/vitalflow-kafka.XXXXXX)}
export VITALFLOW_S3_DIR=${VITALFLOW_S3_DIR:-$(mktemp -d /tmp/vitalflow-s3.XXXXXX)}
mkdir -p "$VITALFLOW_CACHE"

step() { printf '\n==> %s\n' "$*"; }

step "Python venv"
venv=$(deploy/python-env.sh clients/requirements-test.txt)
# The `vitalflow` Python package, installed as a user installs it (editable: this checkout's code).
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e clients/python

step "Go, JDBC and Node client tests' dependencies (Go module proxy, Maven Central, npm registry)"
# Fetched here, like Kafka; the Flight SQL client suite runs them against a live server.
(cd clients/go && go mod download && go vet ./...)
mvn -q -B -f clients/jdbc/pom.xml test-compile
# node_modules is rebuilt from the lockfile each run; the download cache lives outside the checkout.
(cd clients/node && npm ci --no-audit --no-fund --cache "$VITALFLOW_CACHE/npm")

step "Apache Kafka and the S3-compatible server (Maven Central)"
deploy/kafka/kafka.sh install
deploy/s3/s3.sh install
KAFKA_BOOTSTRAP=$(deploy/kafka/kafka.sh start)
export KAFKA_BOOTSTRAP
trap 'deploy/kafka/kafka.sh clean' EXIT
echo "Kafka on $KAFKA_BOOTSTRAP (state in $VITALFLOW_KAFKA_DIR)"

step "Format and lints"
cargo fmt --all --check
python3 deploy/import-cycles.py src udf-model/src ingest/src scheduler/src executor/src
cargo clippy --workspace --all-targets --features vitalflow/bench --locked -- -D warnings

step "Build"
# The bench feature adds the vitalflow-bench binary: CI compiles and tests it with the rest.
cargo build --workspace --all-targets --features vitalflow/bench --locked
export VITALFLOW_BIN="$CARGO_TARGET_DIR/debug/vitalflow"

step "S3-compatible object store (S3Proxy)"
trap 'deploy/s3/s3.sh clean; deploy/kafka/kafka.sh clean' EXIT
s3_env=$(deploy/s3/s3.sh start)
eval "$s3_env"
echo "S3 on $AWS_ENDPOINT_URL, bucket $VITALFLOW_S3_BUCKET (state in $VITALFLOW_S3_DIR)"

status=0
step "Rust tests"
cargo test --workspace --features vitalflow/bench --locked 2>&1 | tee "$VITALFLOW_KAFKA_DIR/cargo-test.log" || status=1
step "Python tests (tests/system: the services and deploy/; clients/tests: the clients)"
"$venv/bin/python" -m pytest tests/system clients/tests -v -rA --durations=25 ${PYTEST_ARGS:-} || status=1

step "Summary"
grep -E '^test result:' "$VITALFLOW_KAFKA_DIR/cargo-test.log" | awk '{p+=$4; f+=$6} END {printf "cargo test: %d passed, %d failed\n", p, f}'
exit $status
