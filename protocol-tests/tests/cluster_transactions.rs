//! Transactions on the 3-node cluster: a librdkafka transactional producer
//! has a transaction open when the node coordinating its transactional id
//! is killed with `kill -9`; the coordinator's replicated state moves to
//! another node, the commit goes through there, and a read_committed
//! consumer sees every committed record exactly once.

use std::time::{Duration, Instant};

use protocol_tests::cluster::{create_topic_with_replication, ClusterOptions, ClusterProcess};
use protocol_tests::rdkafka::config::ClientConfig;
use protocol_tests::rdkafka::consumer::BaseConsumer;
use protocol_tests::rdkafka::error::KafkaError;
use protocol_tests::rdkafka::message::Message;
use protocol_tests::rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use protocol_tests::rdkafka::Offset;
use protocol_tests::{assign, unique_name};

const TXN_STATE_PARTITIONS: i32 = 3;
const TIMEOUT: Duration = Duration::from_secs(60);

/// Kafka's placement of a transactional id: `abs(hashCode) % partitions`.
fn partition_for(id: &str, partitions: i32) -> i32 {
    let hash = id
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions
}

async fn send_all(producer: &FutureProducer, topic: &str, values: &[&str]) {
    for v in values {
        producer
            .send(
                FutureRecord::<(), _>::to(topic).payload(*v).partition(0),
                TIMEOUT,
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("sending {v}: {e}"));
    }
}

fn read_committed_to_eof(cfg: &ClientConfig, topic: &str) -> Vec<String> {
    let consumer: BaseConsumer = cfg
        .clone()
        .set("group.id", unique_name("txn-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    assign(&consumer, topic, 1, Offset::Beginning);
    let deadline = Instant::now() + TIMEOUT;
    let mut out = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "no EOF in time: {out:?}");
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Ok(m)) => out.push(String::from_utf8_lossy(m.payload().unwrap_or(b"")).into()),
            Some(Err(KafkaError::PartitionEOF(_))) => return out,
            // Leadership moving after the kill: retried by the client.
            Some(Err(e)) => eprintln!("consumer error (continuing): {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_commits_after_its_coordinator_dies() {
    let mut cluster = ClusterProcess::start(ClusterOptions::new().env(
        "METROBUS_TRANSACTION_STATE_LOG_NUM_PARTITIONS",
        TXN_STATE_PARTITIONS.to_string(),
    ))
    .unwrap_or_else(|e| panic!("{e:#}"));
    let topic = unique_name("txn-cluster");
    let admin = cluster.admin().expect("admin");
    create_topic_with_replication(&admin, &topic, 1, 3, &[])
        .await
        .expect("topic");
    cluster
        .wait_for_full_isr(&topic, TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));

    let id = unique_name("tx-cluster");
    let cfg = cluster.client_config();
    let producer: FutureProducer = cfg
        .clone()
        .set("transactional.id", &id)
        .set("message.timeout.ms", "60000")
        .set("transaction.timeout.ms", "60000")
        .create()
        .expect("producer");
    producer.init_transactions(TIMEOUT).expect("init");
    producer.begin_transaction().expect("begin");
    send_all(&producer, &topic, &["c1", "c2"]).await;
    producer.commit_transaction(TIMEOUT).expect("first commit");

    producer.begin_transaction().expect("begin");
    send_all(&producer, &topic, &["o1", "o2"]).await;
    producer.flush(TIMEOUT).expect("flush");
    // Every replica of the coordinator's state is in sync: kill its node.
    cluster
        .wait_for_full_isr("__transaction_state", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let coordinator = cluster
        .leader_of(
            "__transaction_state",
            partition_for(&id, TXN_STATE_PARTITIONS),
        )
        .expect("the coordinator");
    cluster.kill9(coordinator);
    let started = Instant::now();
    producer.commit_transaction(TIMEOUT).unwrap_or_else(|e| {
        panic!(
            "commit after the coordinator died: {e}\n{}",
            cluster.log_tails()
        )
    });
    eprintln!(
        "commit through the new coordinator took {:?}",
        started.elapsed()
    );

    let live = cluster.client_config_for(&cluster.live_bootstrap_servers());
    assert_eq!(
        read_committed_to_eof(&live, &topic),
        ["c1", "c2", "o1", "o2"]
    );
    cluster.restart(coordinator).expect("restart");
    cluster.assert_alive();
}
