#!/usr/bin/env bash
# Metrobus benchmarks (DESIGN.md section 10).
#
# Builds release, measures this machine's baselines (fdatasync'd disk writes
# in the data directory's filesystem, loopback TCP), then for each flush
# policy starts a fresh single-node broker on port 0 with a temporary data
# directory and runs the librdkafka bench client against it:
#   produce 100 B records, acks=1        consume them
#   produce 100 B records, acks=all, without and with enable.idempotence
#                                        (the idempotence cost, issue 3), and
#                                        in committed transactions of 10,000
#                                        records, read back read_committed
#   produce 100 B to 6 partitions        consume them through a group of 3,
#                                        then the rebalance time when one leaves
#   produce 1 KiB records, acks=all      consume them
#   end-to-end latency at 5000 records/s, 1 KiB, acks=all, linger 1 ms
# With --cluster (BENCH_CLUSTER=1) it then starts a 3-node loopback cluster
# (a cluster's defaults: replicated flush policy, replication factor 3,
# min.insync.replicas 2) and
# runs, labelled "cluster":
#   produce 100 B records, acks=1
#   produce 1 KiB records, acks=all      consume them
#   end-to-end latency at 5000 records/s, 1 KiB, acks=all
#   failover: kill -9 the leader of a partition under acks=all load, time
#   to the first acknowledged record sent after the kill; twice, each on a
#   fresh cluster: a leader that is not the active controller ("leader"),
#   then the active controller itself ("controller")
# With --security (BENCH_SECURITY=1) it starts one broker (replicated flush
# policy, so the transport's cost is not hidden behind fsyncs) with
# PLAINTEXT, SASL_PLAINTEXT and SASL_SSL listeners (a self-signed
# certificate made with openssl) and a tenant user, and runs on each
# listener in turn, labelled "security/LISTENER":
#   produce 1 KiB records, acks=1        consume them
# so the SASL and TLS lines read against the PLAINTEXT ones (issue 5's
# targets: SASL costs under 5% of the throughput, TLS under 30%).
#
# stdout: one JSON line per scenario (nothing else), each with
# "flush_policy", and for scenarios with a throughput "loopback_ratio" and
# "disk_ratio" (its MiB/s over the loopback's and the disk's MiB/s).
# stderr: progress. Exit status 1 if any scenario failed or lost records.
#
# Usage: scripts/bench.sh [--scale X] [--policies "durable replicated"] [--no-build] [--cluster]
#                         [--security]
# Environment (the options override):
#   BENCH_SCALE=1            multiplies record counts and the latency duration
#                            (BENCH_SCALE=0.05 is a quick smoke run)
#   BENCH_POLICIES="durable replicated"
#   BENCH_NO_BUILD=1         use the binaries already built
#   BENCH_BROKERS=HOST:PORT  bench a running broker/cluster instead of
#                            starting one (flush_policy "external")
#   BENCH_DIR=DIR            where temporary data directories go (default
#                            $CARGO_TARGET_DIR/bench-runs: the disk the
#                            target dir is on, not a tmpfs /tmp)
#   BENCH_KEEP=1             keep data directories and broker logs
#   BENCH_BROKER_BIN=PATH    broker binary (default the release build)
#   BENCH_MAX_SECONDS=300    time limit of each produce/consume run
#   CARGO_TARGET_DIR         default $HOME/.cache/metrobus-target
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/metrobus-target}
scale=${BENCH_SCALE:-1}
policies=${BENCH_POLICIES:-"durable replicated"}
build=1
[[ ${BENCH_NO_BUILD:-0} == 1 ]] && build=0
external=${BENCH_BROKERS:-}
cluster=${BENCH_CLUSTER:-0}
security=${BENCH_SECURITY:-0}
max_seconds=${BENCH_MAX_SECONDS:-300}

while [[ $# -gt 0 ]]; do
    case $1 in
        --scale) scale=$2; shift 2 ;;
        --policies) policies=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        --cluster) cluster=1; shift ;;
        --security) security=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

log() { echo "bench.sh: $*" >&2; }

# Scaled count, at least 1000: scaled 3000000 -> records.
scaled() { awk -v n="$1" -v s="$scale" 'BEGIN { v = int(n * s + 0.5); if (v < 1000) v = 1000; print v }'; }
records_small=$(scaled 3000000)
# 2 GB at scale 1: long enough that the 1 KiB runs (the cluster/single
# ratio of issue 4) measure the steady state, not client start-up.
records_large=$(scaled 2000000)
latency_seconds=$(awk -v s="$scale" 'BEGIN { v = int(10 * s + 0.5); if (v < 2) v = 2; print v }')

if [[ $build == 1 ]]; then
    log "building release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$root" && cargo build --release --workspace) >&2
fi
bench_bin=$CARGO_TARGET_DIR/release/metrobus-bench
broker_bin=${BENCH_BROKER_BIN:-$CARGO_TARGET_DIR/release/metrobus}
# Every broker runs in a session of its own, as a service (systemd, a
# container, scripts/cluster-up.sh) does. With the kernel's autogroup
# scheduling (kernel.sched_autogroup_enabled) a session is a CPU group:
# started as plain children of this script, three brokers and the client
# would share one group thread by thread, and the cluster's 1 KiB acks=all
# measured 160-176 MB/s against 233-257 MB/s detached (the single node:
# the same either way). This script runs without job control, so setsid
# execs the broker in place and $! stays the broker's pid.
detach=()
if command -v setsid >/dev/null; then
    detach=(setsid)
fi
[[ -x $bench_bin ]] || { log "missing $bench_bin (build first)"; exit 2; }
[[ -n $external || -x $broker_bin ]] || { log "missing $broker_bin (build first)"; exit 2; }

mkdir -p "${BENCH_DIR:-$CARGO_TARGET_DIR/bench-runs}"
run_dir=$(mktemp -d "${BENCH_DIR:-$CARGO_TARGET_DIR/bench-runs}/run.XXXXXX")
broker_pid=
failures=0

stop_broker() {
    [[ -n $broker_pid ]] || return 0
    if kill -0 "$broker_pid" 2>/dev/null; then
        kill -TERM "$broker_pid" 2>/dev/null || true
        for _ in $(seq 300); do
            kill -0 "$broker_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$broker_pid" 2>/dev/null; then
            log "broker $broker_pid did not stop within 30 s of SIGTERM; killing it"
            kill -KILL "$broker_pid" 2>/dev/null || true
            failures=$((failures + 1))
        fi
    fi
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=
}

# settle: before the next broker starts, drop the stopped brokers' data
# (unless BENCH_KEEP) and sync, so the disk is not still writing back an
# earlier run's gigabytes during the next one's measurement.
settle() {
    if [[ ${BENCH_KEEP:-0} != 1 ]]; then
        rm -rf "$run_dir"/*/data
    fi
    sync
}

cluster_pids=()

stop_cluster() {
    local pid
    for pid in "${cluster_pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${cluster_pids[@]}"; do
        for _ in $(seq 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    cluster_pids=()
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_cluster [NAME]: three nodes on free loopback ports, data under
# $run_dir/NAME (default cluster); sets brokers and pids.
start_cluster() {
    local dir=$run_dir/${1:-cluster} i voters= ready
    local -a kafka http ctl
    mkdir -p "$dir"
    for i in 1 2 3; do
        kafka[i]=$(free_port)
        http[i]=$(free_port)
        ctl[i]=$(free_port)
        voters+="${voters:+,}$i@127.0.0.1:${ctl[i]}"
    done
    for i in 1 2 3; do
        printf '%s\n' "node.id = $i" "listeners = \"127.0.0.1:${kafka[i]}\"" \
            "http.listener = \"127.0.0.1:${http[i]}\"" \
            "controller.listener = \"127.0.0.1:${ctl[i]}\"" \
            "controller.quorum.voters = \"$voters\"" "log.dirs = \"$dir/node-$i\"" \
            "num.partitions = 3" >"$dir/node-$i.toml"
        "${detach[@]}" "$broker_bin" serve --config "$dir/node-$i.toml" >"$dir/node-$i.log" 2>&1 &
        cluster_pids+=("$!")
    done
    for i in 1 2 3; do
        ready=0
        for _ in $(seq 600); do
            if "$broker_bin" healthcheck --http "127.0.0.1:${http[i]}" >/dev/null 2>&1; then
                ready=1
                break
            fi
            sleep 0.1
        done
        if [[ $ready == 0 ]]; then
            log "cluster node $i not ready within 60 s; its log:"
            tail -n 30 "$dir/node-$i.log" >&2
            return 1
        fi
    done
    brokers="127.0.0.1:${kafka[1]},127.0.0.1:${kafka[2]},127.0.0.1:${kafka[3]}"
    pids="1=${cluster_pids[0]},2=${cluster_pids[1]},3=${cluster_pids[2]}"
    log "cluster up at $brokers (pids $pids), data in $dir"
}

cluster_scenarios() {
    # First, as on the single node, 100 B records with acks=1: the 1 KiB
    # figures below then compare like with like (neither node set fresh).
    scenario produce-100b-acks1 cluster produce -b "$brokers" -t bench-p100-acks1 \
        --partitions 3 --records "$records_small" --size 100 --acks 1 --linger-ms 5 \
        --max-seconds "$max_seconds"
    scenario produce-1k-acksall cluster produce -b "$brokers" -t bench-p1k-acksall \
        --partitions 3 --records "$records_large" --size 1024 --acks all --linger-ms 5 \
        --max-seconds "$max_seconds"
    count=$(json_field "$last_line" records)
    scenario consume-1k cluster consume -b "$brokers" -t bench-p1k-acksall \
        --records "${count:-$records_large}" --max-seconds "$max_seconds"
    scenario latency cluster latency -b "$brokers" -t bench-latency --partitions 3 \
        --rate 5000 --size 1024 --seconds "$latency_seconds" --acks all --linger-ms 1
    scenario failover cluster failover -b "$brokers" -t bench-failover --pids "$pids" \
        --rate 1000 --warmup-seconds 3 --max-seconds 60 --idempotent --target leader
    # The active controller's own node: a Raft election comes first.
    stop_cluster
    if start_cluster cluster-controller-kill; then
        scenario failover cluster failover -b "$brokers" -t bench-failover --pids "$pids" \
            --rate 1000 --warmup-seconds 3 --max-seconds 60 --idempotent --target controller
    else
        failures=$((failures + 1))
    fi
}

# start_secure_broker: PLAINTEXT, SASL_PLAINTEXT and SASL_SSL listeners;
# sets listener_plain, listener_sasl, listener_ssl and ca_file.
start_secure_broker() {
    local dir=$run_dir/security
    mkdir -p "$dir/data"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        -keyout "$dir/server.key" -out "$dir/server.crt" 2>/dev/null || {
        log "openssl could not make a certificate"
        return 1
    }
    cat "$dir/server.key" "$dir/server.crt" >"$dir/keystore.pem"
    ca_file=$dir/server.crt
    METROBUS_LOG_FLUSH_POLICY=replicated METROBUS_NUM_PARTITIONS=3 \
        METROBUS_SUPER_USERS=User:admin \
        METROBUS_SASL_SEED_USERS=bench@bench:bench-secret \
        METROBUS_SSL_KEYSTORE_LOCATION="$dir/keystore.pem" \
        "${detach[@]}" "$broker_bin" serve \
        --listeners PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0 \
        --http-listener 127.0.0.1:0 --data-dir "$dir/data" --announce-file "$dir/announce" \
        >"$dir/broker.log" 2>&1 &
    broker_pid=$!
    listener_plain=
    for _ in $(seq 600); do
        if ! kill -0 "$broker_pid" 2>/dev/null; then
            log "secured broker exited at startup; its log:"
            tail -n 30 "$dir/broker.log" >&2
            broker_pid=
            return 1
        fi
        listener_plain=$(sed -n 's/^listener.PLAINTEXT=//p' "$dir/announce" 2>/dev/null || true)
        [[ -n $listener_plain ]] && break
        sleep 0.1
    done
    [[ -n $listener_plain ]] || { log "secured broker wrote no announce file"; return 1; }
    listener_sasl=$(sed -n 's/^listener.SASL_PLAINTEXT=//p' "$dir/announce")
    listener_ssl=$(sed -n 's/^listener.SASL_SSL=//p' "$dir/announce")
    log "secured broker pid $broker_pid: PLAINTEXT $listener_plain, SASL_PLAINTEXT $listener_sasl, SASL_SSL $listener_ssl"
}

security_scenarios() {
    local name brokers_of count
    local -a login
    for name in PLAINTEXT SASL_PLAINTEXT SASL_SSL; do
        login=()
        case $name in
            PLAINTEXT) brokers_of=$listener_plain ;;
            SASL_PLAINTEXT) brokers_of=$listener_sasl ;;
            SASL_SSL) brokers_of=$listener_ssl
                login+=(-X "ssl.ca.location=$ca_file") ;;
        esac
        if [[ $name != PLAINTEXT ]]; then
            login+=(-X "security.protocol=$name" -X sasl.mechanisms=SCRAM-SHA-256
                -X sasl.username=bench@bench -X sasl.password=bench-secret)
        fi
        scenario produce-1k-acks1 "security/$name" produce -b "$brokers_of" \
            -t "bench-sec-${name,,}" --partitions 3 --records "$records_large" --size 1024 \
            --acks 1 --linger-ms 5 --max-seconds "$max_seconds" "${login[@]}"
        count=$(json_field "$last_line" records)
        scenario consume-1k "security/$name" consume -b "$brokers_of" -t "bench-sec-${name,,}" \
            --records "${count:-$records_large}" --max-seconds "$max_seconds" "${login[@]}"
    done
}

cleanup() {
    stop_cluster
    stop_broker
    if [[ ${BENCH_KEEP:-0} == 1 || $failures -gt 0 ]]; then
        log "run directory kept: $run_dir"
    else
        rm -rf "$run_dir"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_broker POLICY: a fresh broker on port 0; sets brokers=HOST:PORT.
start_broker() {
    local policy=$1 dir=$run_dir/$1
    mkdir -p "$dir/data"
    METROBUS_LOG_FLUSH_POLICY=$policy METROBUS_NUM_PARTITIONS=3 \
        "${detach[@]}" "$broker_bin" serve --listeners 127.0.0.1:0 --http-listener 127.0.0.1:0 \
        --data-dir "$dir/data" --announce-file "$dir/announce" >"$dir/broker.log" 2>&1 &
    broker_pid=$!
    brokers=
    for _ in $(seq 600); do
        if ! kill -0 "$broker_pid" 2>/dev/null; then
            log "broker ($policy) exited at startup; its log:"
            tail -n 30 "$dir/broker.log" >&2
            broker_pid=
            return 1
        fi
        brokers=$(sed -n 's/^kafka=\(.*:[0-9][0-9]*\)$/\1/p' "$dir/announce" 2>/dev/null || true)
        [[ -n $brokers ]] && break
        sleep 0.1
    done
    if [[ -z $brokers ]]; then
        log "broker ($policy) wrote no kafka= line to $dir/announce within 60 s"
        return 1
    fi
    log "broker ($policy) pid $broker_pid at $brokers, data in $dir/data"
}

# enrich LINE POLICY: adds flush_policy and (but to baselines) the ratios.
enrich() {
    awk -v line="$1" -v policy="$2" -v loop="$loopback_mbps" -v disk="$disk_mbps" 'BEGIN {
        extra = ",\"flush_policy\":\"" policy "\""
        if (policy != "baseline" && match(line, /"mb_per_sec":[0-9.]+/)) {
            mbps = substr(line, RSTART + 13, RLENGTH - 13) + 0
            if (loop > 0) extra = extra sprintf(",\"loopback_ratio\":%.4f", mbps / loop)
            if (disk > 0) extra = extra sprintf(",\"disk_ratio\":%.4f", mbps / disk)
        }
        sub(/}$/, extra "}", line)
        print line
    }'
}

# json_field LINE KEY: a numeric or boolean field of a JSON line.
json_field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" <<<"$1"; }

# scenario NAME POLICY ARGS...: runs the bench client and prints its line.
last_line=
scenario() {
    local name=$1 policy=$2 status=0
    shift 2
    log "$name ($policy): metrobus-bench $*"
    last_line=$("$bench_bin" "$@") || status=$?
    last_line=$(tail -n 1 <<<"$last_line")
    if [[ $last_line != \{* ]]; then
        last_line="{\"scenario\":\"$name\",\"complete\":false}"
    fi
    if [[ $status -ne 0 ]]; then
        failures=$((failures + 1))
        log "$name ($policy) failed with exit status $status"
        last_line=${last_line%\}},\"exit_status\":$status}
    fi
    last_line=$(enrich "$last_line" "$policy")
    echo "$last_line"
}

broker_scenarios() {
    local policy=$1 count
    scenario produce-100b-acks1 "$policy" produce -b "$brokers" -t bench-p100-acks1 \
        --partitions 3 --records "$records_small" --size 100 --acks 1 --linger-ms 5 \
        --max-seconds "$max_seconds"
    count=$(json_field "$last_line" records)
    scenario consume-100b "$policy" consume -b "$brokers" -t bench-p100-acks1 \
        --records "${count:-$records_small}" --max-seconds "$max_seconds"

    # A consumer group of 3 on 6 partitions, then one member leaves.
    scenario produce-100b-group "$policy" produce -b "$brokers" -t bench-group \
        --partitions 6 --records "$records_small" --size 100 --acks 1 --linger-ms 5 \
        --max-seconds "$max_seconds"
    count=$(json_field "$last_line" records)
    scenario group-consume-100b "$policy" group -b "$brokers" -t bench-group \
        --records "${count:-$records_small}" --consumers 3 --max-seconds "$max_seconds"

    # The same load without and with idempotence, back to back, so the two
    # lines compare the cost of the sequence checks (target: under 10%).
    scenario produce-100b-acksall "$policy" produce -b "$brokers" -t bench-p100-acksall \
        --partitions 3 --records "$records_small" --size 100 --acks all --linger-ms 5 \
        --max-seconds "$max_seconds"
    scenario produce-100b-acksall-idempotent "$policy" produce -b "$brokers" \
        -t bench-p100-acksall-idem --partitions 3 --records "$records_small" --size 100 \
        --acks all --idempotent --linger-ms 5 --max-seconds "$max_seconds"
    # The same again in transactions of 10,000 records, each committed (its
    # markers written to the 3 partitions), and read back read_committed:
    # what exactly-once costs.
    scenario produce-100b-acksall-txn "$policy" produce -b "$brokers" \
        -t bench-p100-acksall-txn --partitions 3 --records "$records_small" --size 100 \
        --acks all --idempotent --transaction-records 10000 \
        -X "transactional.id=bench-$policy" -X transaction.timeout.ms=900000 \
        --linger-ms 5 --max-seconds "$max_seconds"
    count=$(json_field "$last_line" records)
    scenario consume-100b-txn "$policy" consume -b "$brokers" -t bench-p100-acksall-txn \
        --records "${count:-$records_small}" --max-seconds "$max_seconds" \
        -X isolation.level=read_committed

    scenario produce-1k-acksall "$policy" produce -b "$brokers" -t bench-p1k-acksall \
        --partitions 3 --records "$records_large" --size 1024 --acks all --linger-ms 5 \
        --max-seconds "$max_seconds"
    count=$(json_field "$last_line" records)
    scenario consume-1k "$policy" consume -b "$brokers" -t bench-p1k-acksall \
        --records "${count:-$records_large}" --max-seconds "$max_seconds"

    scenario latency "$policy" latency -b "$brokers" -t bench-latency --partitions 3 \
        --rate 5000 --size 1024 --seconds "$latency_seconds" --acks all --linger-ms 1
}

fs_type=$(stat -f -c %T "$run_dir" 2>/dev/null || echo unknown)
if [[ $fs_type == tmpfs || $fs_type == ramfs ]]; then
    log "warning: $run_dir is on $fs_type: fdatasync costs nothing there (set BENCH_DIR)"
fi
log "scale $scale: $records_small x 100 B, $records_large x 1 KiB, latency ${latency_seconds}s; run dir $run_dir"
loopback_mbps=0
disk_mbps=0
scenario disk baseline disk --dir "$run_dir" --mib 256 --block-kib 1024 --max-seconds 30
disk_mbps=$(json_field "$last_line" mb_per_sec)
scenario disk-4k baseline disk --dir "$run_dir" --mib 8 --block-kib 4 --max-seconds 10
scenario loopback baseline loopback --seconds 3
loopback_mbps=$(json_field "$last_line" mb_per_sec)
log "baselines: disk ${disk_mbps:-?} MiB/s (1 MiB + fdatasync), loopback ${loopback_mbps:-?} MiB/s"
disk_mbps=${disk_mbps:-0}
loopback_mbps=${loopback_mbps:-0}

if [[ -n $external ]]; then
    brokers=$external
    broker_scenarios external
else
    for policy in $policies; do
        settle
        if start_broker "$policy"; then
            broker_scenarios "$policy"
        else
            failures=$((failures + 1))
        fi
        stop_broker
    done
fi

if [[ $cluster == 1 ]]; then
    settle
    if start_cluster; then
        cluster_scenarios
    else
        failures=$((failures + 1))
    fi
    stop_cluster
fi

if [[ $security == 1 ]]; then
    if start_secure_broker; then
        security_scenarios
    else
        failures=$((failures + 1))
    fi
    stop_broker
fi

if [[ $failures -gt 0 ]]; then
    log "$failures failure(s)"
    exit 1
fi
log "done"
