#!/usr/bin/env bash
# Builds (release) and starts a 3-node Metrobus cluster on loopback, in the
# background, with config/cluster/node-{1,2,3}.toml:
#
#   kafka       127.0.0.1:19092,127.0.0.1:29092,127.0.0.1:39092
#   controller  127.0.0.1:19093 / 29093 / 39093  (TCP RPC + UDP gossip)
#   http        127.0.0.1:19644 / 29644 / 39644  (/metrics, /health/live, /health/ready)
#
# Data, logs and pid files go under data/cluster/ in the repository root
# (node-N/, node-N.log, node-N.pid). Nodes that already run are left alone,
# so after a failure drill (kill -9 of one node) this brings back just that
# node. Then waits until every node answers /health/ready with 200 (joined
# the cluster, caught up with the metadata log), at most
# CLUSTER_READY_TIMEOUT seconds (default 60); if one does not, prints the
# tail of its log, stops the nodes this run started and exits 1.
# Stop the cluster with scripts/cluster-down.sh.
#
# Environment:
#   CARGO_TARGET_DIR       build directory (default $HOME/.cache/metrobus-target)
#   CLUSTER_BIN            a metrobus binary to use instead of building one
#   CLUSTER_READY_TIMEOUT  seconds to wait for readiness (default 60)
#   METROBUS_*             passed to every node (settings, METROBUS_LOG)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

nodes=(1 2 3)
cluster_dir=data/cluster
ready_timeout=${CLUSTER_READY_TIMEOUT:-60}

say() { echo "cluster-up: $*" >&2; }
die() { say "error: $*"; exit 1; }

http_addr() { echo "127.0.0.1:${1}9644"; }
# shellcheck source=scripts/cluster-pids.sh
source "$root/scripts/cluster-pids.sh"
log_file() { echo "$cluster_dir/node-$1.log"; }


to_start=()
for n in "${nodes[@]}"; do
    [[ -f config/cluster/node-$n.toml ]] || die "config/cluster/node-$n.toml is missing"
    if pid=$(running_pid "$n"); then
        say "node $n is already running (pid $pid)"
    else
        to_start+=("$n")
    fi
done

if [[ ${#to_start[@]} -eq 0 ]]; then
    say "every node is running; nothing to build or start"
elif [[ -n ${CLUSTER_BIN:-} ]]; then
    bin=$CLUSTER_BIN
    [[ -x $bin ]] || die "CLUSTER_BIN=$bin is not an executable"
else
    # Outside the clone, shared with scripts/test.sh, so RocksDB compiles once.
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/metrobus-target}
    say "building (release, whole workspace) into $CARGO_TARGET_DIR"
    # Always the whole workspace: `-p metrobus` unifies dependency features
    # differently and compiles RocksDB a second time.
    cargo build --release --workspace
    bin=$CARGO_TARGET_DIR/release/metrobus
fi

# Readiness probe: curl when installed, else the broker's own healthcheck.
bin=${bin:-${CLUSTER_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/metrobus-target}/release/metrobus}}
if command -v curl >/dev/null; then
    probe() { [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$1/health/ready") == 200 ]]; }
else
    probe() { "$bin" healthcheck --http "$1" >/dev/null 2>&1; }
fi

started=()
stop_started() { "$root/scripts/cluster-down.sh" "${started[@]}" >/dev/null 2>&1 || true; }

fail() {
    local n=$1 why=$2
    say "error: node $n $why; last lines of $(log_file "$n"):"
    tail -n 40 "$(log_file "$n")" >&2 || true
    if [[ ${#started[@]} -gt 0 ]]; then
        say "stopping the nodes started by this run (logs stay in $cluster_dir)"
        stop_started
    fi
    exit 1
}

mkdir -p "$cluster_dir"
for n in "${to_start[@]+"${to_start[@]}"}"; do
    mkdir -p "$cluster_dir/node-$n"
    log=$(log_file "$n")
    echo "===== cluster-up: starting node $n at $(date -u +%FT%TZ) =====" >>"$log"
    # METROBUS_BIN is a test-harness variable, not a setting: the broker
    # refuses METROBUS_* variables that name no setting. setsid detaches the
    # node from this terminal (Ctrl-C here does not stop it); the shell
    # writes its own pid and then becomes the broker (exec), so the pid file
    # names the broker whether or not setsid forks.
    pid_path=$(pid_file "$n")
    rm -f "$pid_path"
    setsid bash -c 'echo $$ >"$1"; shift; exec env -u METROBUS_BIN "$@"' cluster-up \
        "$pid_path" "$bin" -c "config/cluster/node-$n.toml" </dev/null >>"$log" 2>&1 &
    started+=("$n")
done
# The pid files are written by the started shells; wait (bounded) for them.
for n in "${to_start[@]+"${to_start[@]}"}"; do
    for _ in $(seq 50); do
        [[ -s $(pid_file "$n") ]] && break
        sleep 0.1
    done
    [[ -s $(pid_file "$n") ]] || fail "$n" "did not start (no pid file $(pid_file "$n"))"
    say "node $n: pid $(<"$(pid_file "$n")"), log $(log_file "$n")"
done

say "waiting up to ${ready_timeout}s for /health/ready on every node"
deadline=$((SECONDS + ready_timeout))
pending=("${nodes[@]}")
while [[ ${#pending[@]} -gt 0 ]]; do
    still=()
    for n in "${pending[@]}"; do
        if ! running_pid "$n" >/dev/null; then
            fail "$n" "exited during startup"
        fi
        if probe "$(http_addr "$n")"; then
            say "node $n ready"
        else
            still+=("$n")
        fi
    done
    pending=("${still[@]+"${still[@]}"}")
    [[ ${#pending[@]} -eq 0 ]] && break
    if ((SECONDS >= deadline)); then
        fail "${pending[0]}" "is not ready after ${ready_timeout}s (http://$(http_addr "${pending[0]}")/health/ready; not ready: ${pending[*]})"
    fi
    sleep 0.5
done

cat <<EOF
cluster ready
  bootstrap servers: 127.0.0.1:19092,127.0.0.1:29092,127.0.0.1:39092
  metrics:           http://127.0.0.1:19644/metrics (29644, 39644)
  logs:              $cluster_dir/node-{1,2,3}.log
  pids:              $(for n in "${nodes[@]}"; do printf '%s=%s ' "$n" "$(<"$(pid_file "$n")")"; done)
  stop:              scripts/cluster-down.sh
EOF
