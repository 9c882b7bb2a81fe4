//! Failover on a real 3-node cluster (three `metrobus` processes on
//! loopback, see `protocol_tests::cluster`): a partition leader killed with
//! SIGKILL, a leader frozen with SIGSTOP for longer than the broker session
//! timeout, and a rolling restart with SIGTERM, each under an idempotent
//! `acks=all` producer and with a consumer group reading along. Afterwards a
//! fresh consumer reads every partition from the beginning and every
//! acknowledged record must be there exactly once, at its offset, in the
//! producer's order, and the group must have seen all of them.
//!
//! The topic has 3 partitions, replication factor 3 and
//! `min.insync.replicas=2`, so losing one node loses nothing acknowledged
//! and keeps every partition writable.
//!
//! Each test runs three brokers and depends on timeouts, so the tests take
//! turns (a lock) instead of running in parallel on a small machine. They
//! print `name=value` lines (`failover_ms`, `produce_errors`, ...): run with
//! `cargo test --release --workspace --test cluster_failover -- --nocapture` to see
//! them. A failure prints the tail of every node's log.

use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use protocol_tests::cluster::load::{
    Ack, AckLedger, LoadOptions, LoadSummary, ProduceLoad, FLUSH_TIMEOUT,
};
use protocol_tests::cluster::verify::{read_log, verify_log, GroupReader};
use protocol_tests::cluster::{
    create_topic_with_replication, ClusterOptions, ClusterProcess, PartitionState,
};
use protocol_tests::unique_name;

const PARTITIONS: i32 = 3;
const REPLICATION_FACTOR: i32 = 3;
const TOPIC_CONFIGS: &[(&str, &str)] = &[("min.insync.replicas", "2")];

/// `broker.session.timeout.ms` of the pause test: a frozen node is fenced
/// after this long without a heartbeat.
const SESSION_TIMEOUT_MS: u64 = 3000;
/// `broker.heartbeat.interval.ms` of the pause test.
const HEARTBEAT_INTERVAL_MS: u64 = 500;
/// `replica.lag.time.max.ms` of the pause test, so that the ISR shrinks in
/// time even if only the leader's lag rule (not fencing) removes a replica.
const REPLICA_LAG_TIME_MAX_MS: u64 = 10_000;

/// Bounds of the waits below.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(60);
const FIRST_ACKS_TIMEOUT: Duration = Duration::from_secs(60);
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(90);
const METADATA_SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
const REJOIN_TIMEOUT: Duration = Duration::from_secs(90);
/// The load sends for at most this long (longer than any test's worst
/// case, so that it never runs dry while a test still waits for acks), then
/// drains for at most `FLUSH_TIMEOUT`; joining it waits for both (plus a
/// margin) at most. The paced tests stop it as soon as they are done.
const SEND_DEADLINE: Duration = Duration::from_secs(300);
/// Records per second of the paced loads, and their record cap (rate times
/// the send deadline).
const PACED_RATE: u32 = 1_000;
const PACED_RECORDS: u64 = PACED_RATE as u64 * 300;
const PRODUCER_FINISH_TIMEOUT: Duration = SEND_DEADLINE
    .saturating_add(FLUSH_TIMEOUT)
    .saturating_add(Duration::from_secs(10));
const READ_TIMEOUT: Duration = Duration::from_secs(90);
const GROUP_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(90);

static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Serializes the tests of this file (a failed one leaves the lock usable).
fn one_cluster_at_a_time() -> MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Unwraps, or panics with the whole error chain (the cluster's Drop then
/// prints every node's log).
fn ok<T>(result: anyhow::Result<T>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e:#}"))
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a tokio runtime")
        .block_on(future)
}

fn start_cluster(opts: ClusterOptions) -> ClusterProcess {
    ok(ClusterProcess::start(opts), "starting the cluster")
}

/// Creates the test topic and waits until every node sees all replicas of
/// every partition in sync.
fn create_topic(cluster: &mut ClusterProcess, prefix: &str) -> String {
    let topic = unique_name(prefix);
    let admin = ok(cluster.admin(), "creating an admin client");
    ok(
        block_on(create_topic_with_replication(
            &admin,
            &topic,
            PARTITIONS,
            REPLICATION_FACTOR,
            TOPIC_CONFIGS,
        )),
        "creating the topic",
    );
    ok(
        cluster.wait_for_full_isr(&topic, TOPIC_READY_TIMEOUT),
        "the new topic's replicas to be in sync",
    );
    topic
}

fn start_reader(cluster: &ClusterProcess, topic: &str, prefix: &str) -> GroupReader {
    ok(
        GroupReader::start(cluster.client_config(), &unique_name(prefix), topic),
        "starting the consumer group reader",
    )
}

fn start_load(cluster: &ClusterProcess, opts: LoadOptions) -> (ProduceLoad, AckLedger) {
    let load = ok(
        ProduceLoad::start(cluster.client_config(), opts.send_deadline(SEND_DEADLINE)),
        "starting the producer",
    );
    let ledger = load.ledger().clone();
    (load, ledger)
}

/// Waits for the first acknowledgement on `partition` of a record sent at
/// or after `since`: the partition takes writes again.
fn first_ack_since(ledger: &AckLedger, partition: i32, since: Instant, what: &str) -> Ack {
    ok(
        ledger.wait_for_ack(
            &format!("an ack on partition {partition} of a record sent {what}"),
            FAILOVER_TIMEOUT,
            |a| a.partition == partition && a.sent_at >= since,
        ),
        &format!("partition {partition} taking writes {what}"),
    )
}

/// Waits for the producer, prints its totals and errors, and fails on a
/// fatal producer error (an idempotence violation by the cluster).
fn finish_load(load: ProduceLoad, ledger: &AckLedger) -> LoadSummary {
    let summary = ok(load.join(PRODUCER_FINISH_TIMEOUT), "the producer finishing");
    println!("produce: {summary}");
    println!("produce_errors={}", summary.errors);
    for error in ledger.errors().iter().take(10) {
        println!("  produce error (seq {}): {}", error.seq, error.error);
    }
    assert!(
        summary.fatal.is_none(),
        "the idempotent producer hit a fatal error: {:?} ({summary})",
        summary.fatal
    );
    assert!(summary.acked > 0, "nothing was acknowledged ({summary})");
    summary
}

/// Reads the whole topic from the live nodes and checks it against the
/// acknowledgements.
fn check_no_acknowledged_loss(cluster: &ClusterProcess, topic: &str, acks: &[Ack]) {
    let consumer = ok(cluster.consumer(&[]), "creating the verifying consumer");
    let read = ok(
        read_log(&consumer, topic, PARTITIONS, acks, READ_TIMEOUT),
        "reading the topic from the beginning",
    );
    let check = ok(
        verify_log(&read, acks),
        "every acknowledged record stored once, in order",
    );
    println!(
        "log: stored={} acked={} unacknowledged_but_stored={} read_complete={} read_errors={}",
        check.stored,
        check.acked,
        check.unacknowledged,
        read.complete,
        read.errors.len()
    );
}

/// The group reading along saw every acknowledged record (at least once)
/// and never two different records at one offset.
fn check_group(reader: GroupReader, acks: &[Ack]) {
    ok(
        reader.wait_until_seen(acks, GROUP_CATCH_UP_TIMEOUT),
        "the consumer group seeing every acknowledged record",
    );
    let summary = reader.stop();
    println!(
        "group: id={} distinct={} redeliveries={} consumer_errors={}",
        summary.group_id,
        summary.distinct,
        summary.redeliveries,
        summary.errors.len()
    );
    assert!(
        summary.conflicts.is_empty(),
        "the group was served records that later changed (read above the high watermark): {:?}",
        &summary.conflicts[..summary.conflicts.len().min(10)]
    );
}

/// Every partition takes writes again (an ack of a record sent from now
/// on); then stops the load and checks every acknowledged record, in the
/// log and through the group.
fn finish_writable(
    cluster: &mut ClusterProcess,
    topic: &str,
    load: ProduceLoad,
    ledger: &AckLedger,
    reader: GroupReader,
    what: &str,
) {
    let since = Instant::now();
    for partition in 0..PARTITIONS {
        let _ = first_ack_since(ledger, partition, since, what);
    }
    load.stop();
    let _summary = finish_load(load, ledger);
    let acks = ledger.acks();
    check_no_acknowledged_loss(cluster, topic, &acks);
    check_group(reader, &acks);
    cluster.assert_alive();
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

#[test]
fn leader_kill9_loses_no_acknowledged_record() {
    let _turn = one_cluster_at_a_time();
    let mut cluster = start_cluster(ClusterOptions::new());
    let topic = create_topic(&mut cluster, "kill9");
    let reader = start_reader(&cluster, &topic, "kill9-group");
    // 20k records at 2000/s: the kill lands in the middle of the stream.
    let (load, ledger) = start_load(&cluster, LoadOptions::new(&topic, 20_000).rate(2_000));
    ok(
        ledger.wait_for_acks(4_000, FIRST_ACKS_TIMEOUT),
        "the first acknowledgements",
    );

    let leader = ok(
        cluster.leader_of(&topic, 0),
        "finding the leader of partition 0",
    );
    let acked_before_kill = ledger.ack_count();
    let killed_at = Instant::now();
    cluster.kill9(leader);

    // Records sent after the kill can only be acknowledged by a new leader;
    // the first such ack bounds the time partition 0 was unwritable.
    let first = first_ack_since(&ledger, 0, killed_at, "after the kill");
    println!("failover_ms={}", millis(first.acked_at - killed_at));
    let new_leader = ok(
        cluster.wait_for_leader(&topic, 0, METADATA_SETTLE_TIMEOUT, |l| l != leader),
        "the surviving nodes agreeing on a new leader of partition 0",
    );
    println!(
        "killed_leader={leader} new_leader={new_leader} acked_before_kill={acked_before_kill}"
    );

    let summary = finish_load(load, &ledger);
    assert!(
        summary.acked > acked_before_kill,
        "nothing was acknowledged after the kill ({summary})"
    );
    let acks = ledger.acks();
    check_no_acknowledged_loss(&cluster, &topic, &acks);
    check_group(reader, &acks);
    cluster.assert_alive();
}

/// The active controller's node dies while it leads a partition under
/// load: the voters left elect a new controller, which fences the dead node
/// and moves its partitions, with no acknowledged record lost.
#[test]
fn controller_kill9_fails_over() {
    let _turn = one_cluster_at_a_time();
    let mut cluster = start_cluster(ClusterOptions::new());
    let topic = create_topic(&mut cluster, "ctlkill");
    let reader = start_reader(&cluster, &topic, "ctlkill-group");
    let (load, ledger) = start_load(&cluster, LoadOptions::new(&topic, 20_000).rate(2_000));
    ok(
        ledger.wait_for_acks(4_000, FIRST_ACKS_TIMEOUT),
        "the first acknowledgements",
    );

    let controller = ok(
        cluster.controller(&topic, METADATA_SETTLE_TIMEOUT),
        "finding the active controller",
    );
    // Leaders are balanced over the three nodes, so the controller leads one.
    let view = ok(
        cluster.wait_for_full_isr(&topic, METADATA_SETTLE_TIMEOUT),
        "every partition in sync",
    );
    let partition = view
        .iter()
        .find(|p| p.leader == Some(controller))
        .map(|p| p.partition)
        .unwrap_or_else(|| panic!("the controller {controller} leads no partition: {view:?}"));
    let killed_at = Instant::now();
    cluster.kill9(controller);

    let first = first_ack_since(&ledger, partition, killed_at, "after the controller's kill");
    println!(
        "killed_controller={controller} partition={partition} failover_ms={}",
        millis(first.acked_at - killed_at)
    );
    let new_controller = ok(
        cluster.controller(&topic, METADATA_SETTLE_TIMEOUT),
        "the surviving nodes agreeing on a new controller",
    );
    assert_ne!(new_controller, controller);
    for p in 0..PARTITIONS {
        let _ = first_ack_since(&ledger, p, killed_at, "after the controller's kill");
    }

    let summary = finish_load(load, &ledger);
    let acks = ledger.acks();
    check_no_acknowledged_loss(&cluster, &topic, &acks);
    check_group(reader, &acks);
    println!("new_controller={new_controller} {summary}");
    cluster.assert_alive();
}

#[test]
fn paused_leader_is_fenced_and_rejoins() {
    let _turn = one_cluster_at_a_time();
    let mut cluster = start_cluster(
        ClusterOptions::new()
            .env(
                "METROBUS_BROKER_SESSION_TIMEOUT_MS",
                SESSION_TIMEOUT_MS.to_string(),
            )
            .env(
                "METROBUS_BROKER_HEARTBEAT_INTERVAL_MS",
                HEARTBEAT_INTERVAL_MS.to_string(),
            )
            .env(
                "METROBUS_REPLICA_LAG_TIME_MAX_MS",
                REPLICA_LAG_TIME_MAX_MS.to_string(),
            ),
    );
    let topic = create_topic(&mut cluster, "pause");
    let reader = start_reader(&cluster, &topic, "pause-group");
    // Paced and stopped below once the node is back; bounded by count and
    // time.
    let (load, ledger) = start_load(
        &cluster,
        LoadOptions::new(&topic, PACED_RECORDS).rate(PACED_RATE),
    );
    ok(
        ledger.wait_for_acks(2_000, FIRST_ACKS_TIMEOUT),
        "the first acknowledgements",
    );

    let leader = ok(
        cluster.leader_of(&topic, 0),
        "finding the leader of partition 0",
    );
    let paused_at = Instant::now();
    cluster.pause(leader);

    // Fenced: the other nodes move every leadership off the frozen node and
    // drop it from every ISR.
    ok(
        cluster.wait_for_topic(
            "the paused node to lose every leadership and leave every ISR",
            &topic,
            REJOIN_TIMEOUT,
            |view: &[PartitionState]| {
                view.len() == PARTITIONS as usize
                    && view
                        .iter()
                        .all(|p| p.leader.is_some() && !p.involves(leader))
            },
        ),
        "fencing the paused leader",
    );
    println!(
        "paused_node={leader} fenced_ms={}",
        millis(paused_at.elapsed())
    );

    // Producing goes on without it, on every partition.
    let first = first_ack_since(&ledger, 0, paused_at, "after the pause");
    println!("failover_ms={}", millis(first.acked_at - paused_at));
    for partition in 1..PARTITIONS {
        let _ = first_ack_since(&ledger, partition, paused_at, "after the pause");
    }

    // Frozen for at least twice the session timeout in all.
    let min_pause = Duration::from_millis(2 * SESSION_TIMEOUT_MS);
    let paused_for = paused_at.elapsed();
    if paused_for < min_pause {
        thread::sleep(min_pause - paused_for);
    }
    let resumed_at = Instant::now();
    cluster.resume(leader);
    ok(
        cluster.wait_ready(leader),
        "the resumed node becoming ready",
    );
    ok(
        cluster.wait_for_full_isr(&topic, REJOIN_TIMEOUT),
        "the resumed node rejoining every ISR",
    );
    println!(
        "paused_ms={} rejoin_ms={}",
        millis(resumed_at - paused_at),
        millis(resumed_at.elapsed())
    );

    // Still writable with all three back, then stop the load and check.
    finish_writable(
        &mut cluster,
        &topic,
        load,
        &ledger,
        reader,
        "after the rejoin",
    );
}

#[test]
fn rolling_restart_under_load() {
    let _turn = one_cluster_at_a_time();
    let mut cluster = start_cluster(ClusterOptions::new());
    let topic = create_topic(&mut cluster, "rolling");
    let reader = start_reader(&cluster, &topic, "rolling-group");
    let (load, ledger) = start_load(
        &cluster,
        LoadOptions::new(&topic, PACED_RECORDS).rate(PACED_RATE),
    );
    ok(
        ledger.wait_for_acks(2_000, FIRST_ACKS_TIMEOUT),
        "the first acknowledgements",
    );

    for node_id in cluster.node_ids() {
        let stopping_at = Instant::now();
        let status = ok(cluster.stop(node_id), &format!("stopping node {node_id}"));
        assert!(
            status.success(),
            "node {node_id} exited with {status} after SIGTERM\n{}",
            cluster.log_tail(node_id)
        );
        let stopped_at = Instant::now();

        // With one node down every partition still takes acks=all writes.
        let mut writable_after = Duration::ZERO;
        for partition in 0..PARTITIONS {
            let ack = first_ack_since(&ledger, partition, stopped_at, "with a node down");
            writable_after = writable_after.max(ack.acked_at.saturating_duration_since(stopped_at));
        }

        let restarting_at = Instant::now();
        ok(
            cluster.restart(node_id),
            &format!("restarting node {node_id}"),
        );
        let ready_after = restarting_at.elapsed();
        ok(
            cluster.wait_for_full_isr(&topic, REJOIN_TIMEOUT),
            &format!("node {node_id} rejoining every ISR after its restart"),
        );
        println!(
            "node={node_id} stop_ms={} writable_with_node_down_ms={} ready_ms={} in_sync_ms={}",
            millis(stopped_at - stopping_at),
            millis(writable_after),
            millis(ready_after),
            millis(restarting_at.elapsed())
        );
    }

    finish_writable(
        &mut cluster,
        &topic,
        load,
        &ledger,
        reader,
        "after the rolling restart",
    );
}

/// Self-healing: on a 4-node cluster, a node gone for longer than
/// `replica.reassignment.delay.ms` has its replicas moved to the node that
/// holds none, which catches up and joins the ISR, so every partition has 3
/// in-sync copies again, none on the dead node; nothing acknowledged before
/// or during the move is lost; and the node, restarted, deletes the copies
/// it no longer hosts.
#[test]
fn long_gone_node_is_replaced_and_copies_restored() {
    const REASSIGNMENT_DELAY_MS: u64 = 3_000;
    let _turn = one_cluster_at_a_time();
    let mut cluster = start_cluster(
        ClusterOptions::new()
            .nodes(4)
            .env(
                "METROBUS_REPLICA_REASSIGNMENT_DELAY_MS",
                REASSIGNMENT_DELAY_MS.to_string(),
            )
            .env(
                "METROBUS_BROKER_SESSION_TIMEOUT_MS",
                SESSION_TIMEOUT_MS.to_string(),
            ),
    );
    let topic = create_topic(&mut cluster, "heal");
    let (load, ledger) = start_load(&cluster, LoadOptions::new(&topic, 10_000).rate(1_000));
    ok(
        ledger.wait_for_acks(2_000, FIRST_ACKS_TIMEOUT),
        "the first acknowledgements",
    );
    // A node that holds a replica of partition 0 (every node holds some).
    let victim = ok(cluster.leader_of(&topic, 0), "finding partition 0's leader");
    let killed_at = Instant::now();
    cluster.kill9(victim);
    let healed = ok(
        cluster.wait_for_topic(
            "every partition to have 3 in-sync replicas again, none on the dead node",
            &topic,
            REJOIN_TIMEOUT,
            |view: &[PartitionState]| {
                view.len() == PARTITIONS as usize
                    && view.iter().all(|p| {
                        p.leader.is_some()
                            && p.replicas.len() == REPLICATION_FACTOR as usize
                            && p.isr.len() == REPLICATION_FACTOR as usize
                            && !p.replicas.contains(&victim)
                    })
            },
        ),
        "self-healing reassignment",
    );
    println!(
        "killed_node={victim} healed_ms={} replicas={:?}",
        millis(killed_at.elapsed()),
        healed
            .iter()
            .map(|p| p.replicas.clone())
            .collect::<Vec<_>>()
    );
    let summary = finish_load(load, &ledger);
    assert!(summary.acked > 2_000, "the load stalled ({summary})");
    let acks = ledger.acks();
    check_no_acknowledged_loss(&cluster, &topic, &acks);

    // The replaced node comes back: its copies were moved away while it was
    // down, so it deletes them, at startup (Kafka's stray partitions) or as
    // soon as it has caught up with the metadata that moved them.
    let log_path = cluster.node(victim).log_path;
    let strays_before = stray_deletions(&log_path);
    ok(cluster.restart(victim), "restarting the replaced node");
    let strays = stray_deletions(&log_path) - strays_before;
    assert!(
        strays >= 1,
        "the replaced node deleted none of its moved copies:\n{}",
        cluster.log_tail(victim)
    );
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        !log.contains("deleting a moved replica failed"),
        "a deletion failed:\n{}",
        cluster.log_tail(victim)
    );
    println!("replaced node {victim} deleted {strays} local copies after its restart");
    cluster.assert_alive();
}

/// How many partition copies a node's log says it deleted.
fn stray_deletions(log_path: &std::path::Path) -> usize {
    std::fs::read_to_string(log_path)
        .unwrap_or_default()
        .matches("deleting the local copy")
        .count()
}
