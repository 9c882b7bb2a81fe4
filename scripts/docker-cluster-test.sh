#!/usr/bin/env bash
# The compose cluster's failover drill, end to end, from the host:
#
#  1. builds the image (docker/build.sh) from the release binary, building
#     that with `cargo build --release --workspace` only if it is missing;
#  2. starts docker/docker-compose.yml under a unique project name and waits
#     for the three containers' healthchecks;
#  3. produces RECORDS records (acks=all, idempotent) with kcat to a topic
#     that the cluster auto-creates (3 partitions, replication factor 3) and
#     reads them back;
#  4. `docker kill`s the broker leading partition 0, produces to partition 0
#     through the survivors until it succeeds (the time from the kill to that
#     first acknowledged produce is printed), then produces RECORDS more;
#  5. reads the topic back from the survivors and checks that every record
#     id 1..2*RECORDS is there exactly once;
#  6. `docker start`s the killed broker and waits until it is healthy and
#     every partition's ISR has 3 members again;
#  7. partitions the (current) leader of partition 0 off the compose network
#     (`docker network disconnect`) and checks, with bounded waits, that the
#     majority elects another leader for partition 0, that acks=all produces
#     through the majority succeed (a probe, then records
#     2*RECORDS+1..3*RECORDS), and that the isolated broker's own readiness
#     probe (`docker exec ... metrobus healthcheck`) fails within 10 s;
#  8. heals the partition (`docker network connect --alias metrobus-N`),
#     waits until that broker is healthy and back in every ISR, and checks
#     that records 1..3*RECORDS are all there exactly once.
#
# Timings printed: kill -> first ack; disconnect -> new leader, first ack,
# isolated node not ready; reconnect -> back in every ISR.
#
# It always removes the containers, network and volumes (`down -v`), prints
# one PASS or FAIL line, and on failure the tail of every container's log.
# Every wait is bounded; everything listens on the host's loopback only
# (on free host ports it picks, passed to the compose file as
# METROBUS_N_KAFKA_PORT / METROBUS_N_HTTP_PORT).
#
# Usage: scripts/docker-cluster-test.sh
# Environment:
#   RECORDS=2000                 records per batch
#   METROBUS_IMAGE=metrobus:local  the image to build and run
#   SKIP_IMAGE_BUILD=1           use METROBUS_IMAGE as it is
#   METROBUS_BINARY=PATH         the broker binary to package (default: the
#                                workspace's release binary)
#   CARGO_TARGET_DIR             default $HOME/.cache/metrobus-target
# Needs: docker with `docker compose` or `docker-compose`, kcat
# (scripts/install-test-tools.sh installs it).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/metrobus-target}
binary=${METROBUS_BINARY:-$CARGO_TARGET_DIR/release/metrobus}
export METROBUS_IMAGE=${METROBUS_IMAGE:-metrobus:local}
records=${RECORDS:-2000}
compose_file=$root/docker/docker-compose.yml
project=metrobus-drill-$$-$(date +%s)
topic=drill-$(date +%s)-$$
# Host ports by node id, as docker/docker-compose.yml publishes them.
# Host ports: free ones below the ephemeral range (32768+), where the
# ports other programs get from the kernel would collide with fixed ones.
read -r -a picked < <(python3 - <<'PY'
import random, socket
ports = []
while len(ports) < 6:
    port = random.randint(20000, 32000)
    if port in ports:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        ports.append(port)
    except OSError:
        pass
    finally:
        s.close()
print(*ports)
PY
)
kafka_port=([1]=${picked[0]} [2]=${picked[1]} [3]=${picked[2]})
http_port=([1]=${picked[3]} [2]=${picked[4]} [3]=${picked[5]})
for n in 1 2 3; do
    export "METROBUS_${n}_KAFKA_PORT=${kafka_port[n]}" "METROBUS_${n}_HTTP_PORT=${http_port[n]}"
done
all_brokers=127.0.0.1:${kafka_port[1]},127.0.0.1:${kafka_port[2]},127.0.0.1:${kafka_port[3]}
healthy_timeout_s=90
failover_timeout_s=45
# Every kcat run is bounded by this, on top of its own message.timeout.ms.
kcat_timeout_s=45
kcat_producer=(-X acks=all -X enable.idempotence=true -X message.timeout.ms=30000)

say() { echo "docker-cluster-test: $*" >&2; }
fail() { say "error: $*"; exit 1; }

work=$(mktemp -d)
compose_cmd=()
started=false

compose() { "${compose_cmd[@]}" -p "$project" -f "$compose_file" "$@"; }

cleanup() {
    local rc=$?
    trap - EXIT
    if [[ -n ${iso_watch:-} ]]; then
        kill "$iso_watch" 2>/dev/null || true
        wait "$iso_watch" 2>/dev/null || true
    fi
    if [[ $started == true ]]; then
        if [[ $rc -ne 0 ]]; then
            say "containers:"
            compose ps >&2 || true
            say "last lines of every container's log (gossip send errors left out):"
            for node in 1 2 3; do
                timeout 30 "${compose_cmd[@]}" -p "$project" -f "$compose_file" \
                    logs --no-color "metrobus-$node" 2>/dev/null \
                    | grep -v -e 'chitchat::server' -e 'Caused by:' -e 'os error' -e '| *$' \
                    | tail -n 40 >&2 || true
            done
        fi
        say "tearing down project $project (down -v)"
        timeout 90 "${compose_cmd[@]}" -p "$project" -f "$compose_file" \
            down -v --remove-orphans >/dev/null 2>&1 || say "warning: down -v failed"
    fi
    rm -rf "$work"
    if [[ $rc -ne 0 ]]; then
        echo "docker-cluster-test: FAIL (see the errors above)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# --- prerequisites --------------------------------------------------------

command -v docker >/dev/null || fail "docker is not installed"
docker info >/dev/null 2>&1 || fail "the docker engine is not reachable"
command -v kcat >/dev/null || fail "kcat is not installed (scripts/install-test-tools.sh)"
if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose_cmd=(docker-compose)
else
    fail "neither \`docker compose\` nor \`docker-compose\` is available"
fi

for port in "${kafka_port[@]}" "${http_port[@]}"; do
    if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
        fail "127.0.0.1:$port is already in use (another cluster running?)"
    fi
done

# --- image ----------------------------------------------------------------

if [[ ${SKIP_IMAGE_BUILD:-} == 1 ]]; then
    docker image inspect "$METROBUS_IMAGE" >/dev/null 2>&1 \
        || fail "SKIP_IMAGE_BUILD=1 but there is no image $METROBUS_IMAGE"
else
    if [[ ! -x $binary ]]; then
        say "no binary at $binary: cargo build --release --workspace"
        (cd "$root" && cargo build --release --workspace) >&2
    fi
    [[ -x $binary ]] || fail "no executable at $binary"
    say "building $METROBUS_IMAGE from $binary"
    IMAGE=$METROBUS_IMAGE METROBUS_BINARY=$binary "$root/docker/build.sh" >/dev/null 2>"$work/build.log" \
        || { cat "$work/build.log" >&2; fail "docker/build.sh failed"; }
fi

# --- cluster --------------------------------------------------------------

container_of() { compose ps -q "metrobus-$1"; }

# wait_healthy NODE...: until each node's healthcheck passes; fails at once
# if a container stops.
wait_healthy() {
    local deadline=$((SECONDS + healthy_timeout_s)) node id state pending
    while true; do
        pending=()
        for node in "$@"; do
            id=$(container_of "$node")
            [[ -n $id ]] || fail "no container for metrobus-$node"
            state=$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id")
            case $state in
                "running healthy") ;;
                running*) pending+=("metrobus-$node:${state#running }") ;;
                *) fail "metrobus-$node is not running ($state)" ;;
            esac
        done
        [[ ${#pending[@]} -eq 0 ]] && return 0
        ((SECONDS < deadline)) || fail "not healthy after ${healthy_timeout_s}s: ${pending[*]}"
        sleep 1
    done
}

say "starting project $project with ${compose_cmd[*]}"
started=true
compose up -d >/dev/null 2>"$work/up.log" || { cat "$work/up.log" >&2; fail "compose up failed"; }
start_ms=$(now_ms)
wait_healthy 1 2 3
say "all 3 brokers healthy after $(($(now_ms) - start_ms)) ms"

# --- records --------------------------------------------------------------

# produce BROKERS FIRST LAST: records FIRST..LAST as key ID, value rec-ID.
produce() {
    seq "$2" "$3" | sed 's/.*/&:rec-&/' \
        | timeout "$kcat_timeout_s" kcat -b "$1" -P -t "$topic" -K: "${kcat_producer[@]}" \
            2>"$work/produce.log" \
        || { tail -5 "$work/produce.log" >&2; fail "producing records $2..$3 through $1 failed"; }
}

# check_all_diagnose BROKERS COUNT: after a failed check, what was read per
# partition, which ids are missing, and what each broker serves now.
check_all_diagnose() {
    local p node
    say "read per partition (records, first offset, last offset):"
    for p in 0 1 2; do
        awk -v p="$p" '$1 == p { n++; if (first == "") first = $2; last = $2 }
            END { printf "  partition %s: %d records, offsets %s..%s\n", p, n, first, last }' \
            "$work/consumed" >&2
    done
    say "missing ids (first 20): $(comm -13 <(sort -u "$work/ids") <(seq 1 "$2" | sort) \
        | sort -n | head -20 | tr '\n' ' ')"
    metadata "$1" | grep 'partition ' | sed 's/^ */  /' >&2 || true
    sleep 3
    for node in 1 2 3; do
        for p in 0 1 2; do
            timeout 20 kcat -b "127.0.0.1:${kafka_port[$node]}" -C -t "$topic" -p "$p" \
                -o beginning -e -q -f '%o\n' 2>/dev/null \
                | awk -v n="$node" -v p="$p" '{ c++; last = $1 }
                    END { printf "  3 s later via metrobus-%s, partition %s: %d records, last offset %s\n", n, p, c, last }' >&2 \
                || true
        done
    done
}

# check_all BROKERS COUNT: the topic holds exactly records 1..COUNT, once each.
check_all() {
    local out=$work/consumed
    timeout "$kcat_timeout_s" kcat -b "$1" -C -t "$topic" -o beginning -e -q -f '%p %o %s\n' >"$out" \
        2>"$work/consume.log" \
        || { tail -5 "$work/consume.log" >&2; fail "consuming $topic through $1 failed"; }
    sed -n 's/^[0-9]* [0-9]* rec-//p' "$out" | sort -n >"$work/ids" || true
    local got unique missing
    got=$(wc -l <"$work/ids")
    unique=$(uniq "$work/ids" | wc -l)
    missing=$(comm -13 <(sort -u "$work/ids") <(seq 1 "$2" | sort) | wc -l)
    if [[ $got -ne $2 || $unique -ne $2 || $missing -ne 0 ]]; then
        check_all_diagnose "$1" "$2"
        fail "expected records 1..$2 once each; read $got ($unique distinct, $missing missing)"
    fi
    say "read back $got records, ids 1..$2 each exactly once"
}

# metadata: kcat's view of the topic.
metadata() { timeout 15 kcat -b "$1" -L -t "$topic" 2>/dev/null; }

say "producing $records records to $topic (auto-created) through 127.0.0.1:${kafka_port[1]}"
produce "127.0.0.1:${kafka_port[1]}" 1 "$records"
check_all "127.0.0.1:${kafka_port[1]}" "$records"

metadata "$all_brokers" >"$work/meta" || fail "no metadata for $topic"
grep -q "topic \"$topic\" with 3 partitions" "$work/meta" \
    || { cat "$work/meta" >&2; fail "$topic does not have 3 partitions"; }
if grep 'partition ' "$work/meta" | grep -vq 'replicas: [0-9]*,[0-9]*,[0-9]*,'; then
    cat "$work/meta" >&2
    fail "a partition of $topic does not have 3 replicas"
fi
leader=$(sed -n 's/.*partition 0, leader \([0-9]*\),.*/\1/p' "$work/meta")
[[ $leader =~ ^[123]$ ]] || { cat "$work/meta" >&2; fail "no leader for partition 0"; }
grep 'partition ' "$work/meta" | sed 's/^ */  /' >&2

# --- failover -------------------------------------------------------------

survivors=()
for node in 1 2 3; do
    [[ $node == "$leader" ]] || survivors+=("127.0.0.1:${kafka_port[$node]}")
done
survivor_brokers=$(IFS=,; echo "${survivors[*]}")
victim=$(container_of "$leader")

role="leader of partition 0"
if grep -q "broker $leader at .*(controller)" "$work/meta"; then
    role="$role and the active controller"
fi
say "docker kill metrobus-$leader ($role)"
kill_ms=$(now_ms)
docker kill "$victim" >/dev/null || fail "docker kill metrobus-$leader failed"

# Probe records (value probe-N) go to partition 0 until one is acknowledged;
# they are not part of the id check.
deadline=$((SECONDS + failover_timeout_s))
attempt=0
while true; do
    attempt=$((attempt + 1))
    if echo "probe-$attempt" | timeout 25 kcat -b "$survivor_brokers" -P -t "$topic" -p 0 \
        -X acks=all -X message.timeout.ms=20000 2>>"$work/probe.log"; then
        break
    fi
    ((SECONDS < deadline)) || {
        tail -5 "$work/probe.log" >&2
        fail "no acknowledged produce to partition 0 within ${failover_timeout_s}s of the kill"
    }
    sleep 0.2
done
failover_ms=$(($(now_ms) - kill_ms))
say "first acknowledged produce to partition 0: ${failover_ms} ms after the kill (attempt $attempt)"
metadata "$survivor_brokers" | grep 'partition ' | sed 's/^ */  /' >&2 || true

say "producing records $((records + 1))..$((2 * records)) through $survivor_brokers"
produce "$survivor_brokers" $((records + 1)) $((2 * records))
check_all "$survivor_brokers" $((2 * records))
killed=$leader

# --- partition ------------------------------------------------------------

# wait_full_isr WHAT: until every partition of the topic lists 3 ISR members
# (seen through all brokers); prints how long it took in ms.
wait_full_isr() {
    local t0 deadline
    t0=$(now_ms)
    deadline=$((SECONDS + isr_timeout_s))
    while true; do
        if metadata "$all_brokers" >"$work/meta" \
            && [[ $(grep -c 'partition ' "$work/meta") -eq 3 ]] \
            && ! grep 'partition ' "$work/meta" | grep -vq 'isrs: [0-9]\+,[0-9]\+,[0-9]\+'; then
            echo $(($(now_ms) - t0))
            return 0
        fi
        if ((SECONDS >= deadline)); then
            grep 'partition ' "$work/meta" >&2 || true
            fail "$1: not every partition has 3 ISR members after ${isr_timeout_s}s"
        fi
        sleep 0.5
    done
}
isr_timeout_s=45
partition_timeout_s=30
not_ready_limit_ms=10000

say "docker start metrobus-$killed (the killed broker)"
docker start "$victim" >/dev/null || fail "docker start metrobus-$killed failed"
restart_ms=$(now_ms)
wait_healthy "$killed"
wait_full_isr "after restarting metrobus-$killed" >/dev/null
say "metrobus-$killed healthy and back in every ISR $(($(now_ms) - restart_ms)) ms after docker start"
grep 'partition ' "$work/meta" | sed 's/^ */  /' >&2

iso=$(sed -n 's/.*partition 0, leader \([0-9]*\),.*/\1/p' "$work/meta")
[[ $iso =~ ^[123]$ ]] || { cat "$work/meta" >&2; fail "no leader for partition 0"; }
iso_container=$(container_of "$iso")
network=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$iso_container")
network=${network%% *}
[[ -n $network ]] || fail "metrobus-$iso is on no network"
majority=()
for node in 1 2 3; do
    [[ $node == "$iso" ]] || majority+=("127.0.0.1:${kafka_port[$node]}")
done
majority_brokers=$(IFS=,; echo "${majority[*]}")
iso_role="leader of partition 0"
if grep -q "broker $iso at .*(controller)" "$work/meta"; then
    iso_role="$iso_role and the active controller"
fi

say "docker network disconnect $network metrobus-$iso ($iso_role)"
partition_ms=$(now_ms)
docker network disconnect "$network" "$iso_container" || fail "docker network disconnect failed"

# From inside the isolated container (its published ports are gone): its
# readiness probe must fail, i.e. it knows it is cut off. Runs alongside
# the majority checks; writes the delay in ms, or "never".
(
    trap - EXIT INT TERM
    while true; do
        if ! timeout 5 docker exec "$iso_container" /usr/local/bin/metrobus healthcheck \
            --http 127.0.0.1:9644 >>"$work/iso-health.log" 2>&1; then
            echo $(($(now_ms) - partition_ms)) >"$work/iso-not-ready"
            exit 0
        fi
        if (($(now_ms) - partition_ms > partition_timeout_s * 1000)); then
            echo never >"$work/iso-not-ready"
            exit 0
        fi
        sleep 0.2
    done
) &
iso_watch=$!

# The majority elects another leader for partition 0.
deadline=$((SECONDS + partition_timeout_s))
while true; do
    new_leader=$(metadata "$majority_brokers" | sed -n 's/.*partition 0, leader \([0-9]*\),.*/\1/p' || true)
    if [[ $new_leader =~ ^[123]$ && $new_leader != "$iso" ]]; then
        break
    fi
    ((SECONDS < deadline)) || fail "partition 0 still led by '${new_leader:-none}' ${partition_timeout_s}s after isolating metrobus-$iso"
    sleep 0.2
done
new_leader_ms=$(($(now_ms) - partition_ms))
say "partition 0: new leader metrobus-$new_leader ${new_leader_ms} ms after the disconnect"

deadline=$((SECONDS + partition_timeout_s))
attempt=0
while true; do
    attempt=$((attempt + 1))
    if echo "probe-p$attempt" | timeout 25 kcat -b "$majority_brokers" -P -t "$topic" -p 0 \
        -X acks=all -X message.timeout.ms=20000 2>>"$work/probe.log"; then
        break
    fi
    ((SECONDS < deadline)) || {
        tail -5 "$work/probe.log" >&2
        fail "no acknowledged produce to partition 0 within ${partition_timeout_s}s of the disconnect"
    }
    sleep 0.2
done
first_ack_ms=$(($(now_ms) - partition_ms))
say "first acknowledged produce to partition 0: ${first_ack_ms} ms after the disconnect (attempt $attempt)"

say "producing records $((2 * records + 1))..$((3 * records)) through $majority_brokers"
produce "$majority_brokers" $((2 * records + 1)) $((3 * records))

wait "$iso_watch" || true
iso_watch=
not_ready_ms=$(cat "$work/iso-not-ready" 2>/dev/null || echo never)
if [[ $not_ready_ms == never ]]; then
    say "metrobus-$iso's own probe, last answers: $(tail -2 "$work/iso-health.log" | tr '\n' ' ')"
    fail "metrobus-$iso still reports ready ${partition_timeout_s}s after being cut off"
fi
((not_ready_ms <= not_ready_limit_ms)) \
    || fail "metrobus-$iso reported not ready only after ${not_ready_ms} ms (limit ${not_ready_limit_ms} ms)"
say "isolated metrobus-$iso not ready ${not_ready_ms} ms after the disconnect: $(tail -1 "$work/iso-health.log")"

say "docker network connect --alias metrobus-$iso $network metrobus-$iso"
heal_ms=$(now_ms)
docker network connect --alias "metrobus-$iso" "$network" "$iso_container" \
    || fail "docker network connect failed"
wait_healthy "$iso"
wait_full_isr "after healing metrobus-$iso" >/dev/null
rejoin_ms=$(($(now_ms) - heal_ms))
say "metrobus-$iso healthy and back in every ISR ${rejoin_ms} ms after the reconnect"
grep 'partition ' "$work/meta" | sed 's/^ */  /' >&2

check_all "$all_brokers" $((3 * records))

echo "docker-cluster-test: partition: new leader after ${new_leader_ms} ms, first ack after ${first_ack_ms} ms, isolated node not ready after ${not_ready_ms} ms, rejoined ISR after ${rejoin_ms} ms"
echo "docker-cluster-test: PASS: $((3 * records))/$((3 * records)) records after docker kill of metrobus-$killed ($role; first acks=all produce ${failover_ms} ms after the kill) and a network partition of metrobus-$iso ($iso_role; first acks=all produce ${first_ack_ms} ms after the disconnect)"
