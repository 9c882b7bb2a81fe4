#!/usr/bin/env bash
# The whole test suite, as the README gives it and .ci/run calls it:
# installs the tools the tests need, checks formatting and lints, builds the
# broker, then runs the unit, in-process, black-box (rdkafka, kcat,
# Prometheus, 3-process cluster failover) and Python (kafka-python) tests,
# and the docker-compose cluster drill (needs the docker engine).
set -euo pipefail
cd "$(dirname "$0")/.."

# Outside the clone so CI reuses the last build on this machine.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/metrobus-target}
venv=${TEST_VENV:-$HOME/.cache/metrobus-venv}

step() { echo "==> $*" >&2; }

step "installing test tools"
scripts/install-test-tools.sh

step "cargo fmt --check"
cargo fmt --all -- --check

# Always the whole workspace: building a single package unifies dependency
# features differently and would compile RocksDB a second time.
step "building (release, whole workspace)"
cargo build --release --workspace --all-targets

step "cargo clippy"
cargo clippy --release --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --release --workspace --no-fail-fast

step "python client tests (kafka-python)"
"$venv/bin/python" -m pytest protocol-tests/python -q -p no:cacheprovider

step "docker-compose cluster drill (scripts/docker-cluster-test.sh)"
scripts/docker-cluster-test.sh
