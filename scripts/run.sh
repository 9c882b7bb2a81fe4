#!/usr/bin/env bash
# Builds (release) and starts a single-node broker: 127.0.0.1:9092, data in
# ./data, metrics and health on 127.0.0.1:9644. Arguments go to the broker
# (e.g. `scripts/run.sh -c config/single.toml`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# The same target dir as the tests, so RocksDB compiles once per machine.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/metrobus-target}
# RocksDB's bindings need libclang at build time.
if ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 && ! ldconfig -p | grep -q libclang; then
    echo "run: installing libclang-dev (needed to build RocksDB)" >&2
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libclang-dev
fi
# --bin from the workspace root keeps dependency features identical to the
# test build (a `-p metrobus` build would compile RocksDB a second time).
# Stays in the caller's directory, so ./data is where the user runs it.
cargo build --release --manifest-path "$root/Cargo.toml" --bin metrobus
exec "$CARGO_TARGET_DIR/release/metrobus" "$@"
