#!/usr/bin/env bash
# Stops the local 3-node cluster started by scripts/cluster-up.sh: SIGTERM to
# every node named by a pid file in data/cluster/ (and SIGCONT, so that a
# node paused with SIGSTOP in a failure drill can act on it), waits up to
# CLUSTER_STOP_TIMEOUT seconds (default 30) for all of them to exit, then
# SIGKILLs whatever is left. Only processes whose command line names
# metrobus are signalled, so a stale pid file never hits another process.
#
#   scripts/cluster-down.sh             stop every node, keep data and logs
#   scripts/cluster-down.sh 2           stop node 2 only (a drill; bring it
#                                       back with scripts/cluster-up.sh)
#   scripts/cluster-down.sh --wipe      stop, then delete data/cluster
#   scripts/cluster-down.sh --wipe 2    stop node 2, delete its data, log, pid
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

cluster_dir=data/cluster
stop_timeout=${CLUSTER_STOP_TIMEOUT:-30}
wipe=false
nodes=()
for arg in "$@"; do
    case $arg in
        --wipe) wipe=true ;;
        1 | 2 | 3) nodes+=("$arg") ;;
        *) echo "usage: $0 [--wipe] [NODE...]   (NODE: 1, 2 or 3)" >&2; exit 2 ;;
    esac
done
all=false
if [[ ${#nodes[@]} -eq 0 ]]; then
    nodes=(1 2 3)
    all=true
fi

say() { echo "cluster-down: $*" >&2; }

# shellcheck source=scripts/cluster-pids.sh
source "$root/scripts/cluster-pids.sh"


stopping=()
for n in "${nodes[@]}"; do
    if pid=$(running_pid "$n"); then
        say "node $n: SIGTERM to pid $pid"
        kill -TERM "$pid" 2>/dev/null || true
        kill -CONT "$pid" 2>/dev/null || true
        stopping+=("$n")
    elif [[ -f $(pid_file "$n") ]]; then
        say "node $n: not running (removing stale pid file)"
        rm -f "$(pid_file "$n")"
    else
        say "node $n: not running"
    fi
done

deadline=$((SECONDS + stop_timeout))
while [[ ${#stopping[@]} -gt 0 ]]; do
    still=()
    for n in "${stopping[@]}"; do
        if running_pid "$n" >/dev/null; then
            still+=("$n")
        else
            say "node $n stopped"
            rm -f "$(pid_file "$n")"
        fi
    done
    stopping=("${still[@]+"${still[@]}"}")
    [[ ${#stopping[@]} -eq 0 ]] && break
    if ((SECONDS >= deadline)); then
        for n in "${stopping[@]}"; do
            if pid=$(running_pid "$n"); then
                say "node $n: still running after ${stop_timeout}s, SIGKILL to pid $pid"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            rm -f "$(pid_file "$n")"
        done
        break
    fi
    sleep 0.2
done

if $wipe && $all; then
    say "deleting $cluster_dir (data and logs)"
    rm -rf "$cluster_dir"
elif $wipe; then
    for n in "${nodes[@]}"; do
        say "deleting node $n's data and log"
        rm -rf "$cluster_dir/node-$n" "$cluster_dir/node-$n.log" "$cluster_dir/node-$n.pid"
    done
fi
