//! Idempotent producers (issue 3), in process over the raw protocol:
//! InitProducerId, retried batches answered with their original offsets,
//! gaps and stale epochs refused with Kafka's codes, producer state kept
//! across a restart and expired per `producer.id.expiration.ms`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{now_ms, values, Client, TestBroker};
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::records::Compression;
use metrobus::log::partition::PartitionLog;

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_REQUEST: i16 = 42;

/// A batch of `count` records from producer `pid` at `epoch`, sequences
/// `first_seq..`, values `v{first_seq + i}`.
fn idempotent_batch(pid: i64, epoch: i16, first_seq: i32, count: i32) -> Bytes {
    let values: Vec<String> = (0..count)
        .map(|i| format!("v{}", first_seq.wrapping_add(i)))
        .collect();
    common::producer_batch(pid, epoch, first_seq, false, &values)
}

async fn init_producer_id(client: &mut Client, version: i16) -> (i16, i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response: InitProducerIdResponse =
        client.send(ApiKey::InitProducerId, version, &request).await;
    (
        response.error_code,
        response.producer_id.0,
        response.producer_epoch,
    )
}

fn partition_log(broker: &TestBroker, topic: &str, partition: i32) -> Arc<PartitionLog> {
    let b = &broker.running.broker;
    let id = b.image().topic(topic).expect("topic exists").id;
    b.replicas
        .logs()
        .get(id, partition)
        .expect("partition hosted")
}

fn log_end_offset(broker: &TestBroker, topic: &str) -> i64 {
    partition_log(broker, topic, 0).offsets().log_end_offset
}

/// Every value stored in partition 0, with offsets.
async fn stored(client: &mut Client, topic: &str) -> Vec<(i64, String)> {
    let response = client.fetch(topic, 0, 0, 0).await;
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    values(partition.records.as_ref().expect("records"))
}

#[tokio::test]
async fn init_producer_id_hands_out_fresh_ids() {
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    let mut ids = Vec::new();
    for version in 0..=5 {
        let (code, pid, epoch) = init_producer_id(&mut client, version).await;
        assert_eq!((code, epoch), (0, 0), "v{version}");
        assert!(pid >= 0);
        ids.push(pid);
    }
    // A non-transactional producer that sends its current id and epoch
    // (KIP-360, v3+) gets a new id at epoch 0, as from Kafka.
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_producer_id(ProducerId(ids[0]))
        .with_producer_epoch(3);
    let response: InitProducerIdResponse = client.send(ApiKey::InitProducerId, 4, &request).await;
    assert_eq!(response.error_code, 0);
    assert_eq!(response.producer_epoch, 0);
    ids.push(response.producer_id.0);
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        ids.len(),
        "ids are never handed out twice: {ids:?}"
    );

    // Only one of id and epoch: invalid.
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_producer_id(ProducerId(ids[0]))
        .with_producer_epoch(-1);
    let response: InitProducerIdResponse = client.send(ApiKey::InitProducerId, 4, &request).await;
    assert_eq!(response.error_code, INVALID_REQUEST);

    // The request's default transactional id is "", not null: invalid.
    let request = InitProducerIdRequest::default();
    let response: InitProducerIdResponse = client.send(ApiKey::InitProducerId, 4, &request).await;
    assert_eq!(response.error_code, INVALID_REQUEST);

    // Ids survive a restart: the next one is above every id handed out.
    drop(client);
    let broker = broker.restart(|_| {}).await;
    let mut client = broker.client().await;
    let (code, pid, _) = init_producer_id(&mut client, 4).await;
    assert_eq!(code, 0);
    assert!(
        ids.iter().all(|&old| pid > old),
        "{pid} after a restart, before: {ids:?}"
    );
    drop(client);
    broker.running.shutdown().await;
}

#[tokio::test]
async fn retries_are_deduplicated_and_sequences_enforced_across_a_restart() {
    let topic = "idempotent-dedup";
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client.create_topic(topic, 1).await;
    let (code, pid, epoch) = init_producer_id(&mut client, 4).await;
    assert_eq!(code, 0);

    // Five batches of three: offsets 0, 3, ... 12.
    for i in 0..5 {
        let batch = idempotent_batch(pid, epoch, i * 3, 3);
        assert_eq!(
            client.produce(topic, 0, batch, -1).await,
            (0, i64::from(i) * 3)
        );
    }
    assert_eq!(log_end_offset(&broker, topic), 15);

    // A retry of the last batch, and of an older one still cached, gets the
    // original offsets and writes nothing.
    for (first_seq, offset) in [(12, 12), (6, 6), (0, 0)] {
        let retry = idempotent_batch(pid, epoch, first_seq, 3);
        assert_eq!(client.produce(topic, 0, retry, -1).await, (0, offset));
    }
    assert_eq!(log_end_offset(&broker, topic), 15);

    // A gap: sequence 16 after 14.
    let gap = idempotent_batch(pid, epoch, 16, 1);
    assert_eq!(
        client.produce(topic, 0, gap, -1).await.0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    // A new epoch must start at sequence 0.
    let bad_bump = idempotent_batch(pid, epoch + 1, 15, 1);
    assert_eq!(
        client.produce(topic, 0, bad_bump, -1).await.0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    let bump = idempotent_batch(pid, epoch + 1, 0, 2);
    assert_eq!(client.produce(topic, 0, bump, -1).await, (0, 15));
    // The old epoch is fenced now, even where it would continue in order.
    let stale = idempotent_batch(pid, epoch, 15, 1);
    assert_eq!(
        client.produce(topic, 0, stale, -1).await.0,
        INVALID_PRODUCER_EPOCH
    );
    // Batches without a producer id are untouched by all this.
    let plain = common::batch(&["plain"], now_ms(), Compression::None);
    assert_eq!(client.produce(topic, 0, plain, 1).await, (0, 17));
    assert_eq!(log_end_offset(&broker, topic), 18);
    assert_eq!(partition_log(&broker, topic, 0).producer_count(), 1);

    // After a restart the last batch is still recognised as a duplicate,
    // and the sequence continues where it was.
    drop(client);
    let broker = broker.restart(|_| {}).await;
    let mut client = broker.client().await;
    assert_eq!(partition_log(&broker, topic, 0).producer_count(), 1);
    let retry = idempotent_batch(pid, epoch + 1, 0, 2);
    assert_eq!(client.produce(topic, 0, retry, -1).await, (0, 15));
    assert_eq!(log_end_offset(&broker, topic), 18);
    let gap = idempotent_batch(pid, epoch + 1, 3, 1);
    assert_eq!(
        client.produce(topic, 0, gap, -1).await.0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    let stale = idempotent_batch(pid, epoch, 15, 1);
    assert_eq!(
        client.produce(topic, 0, stale, -1).await.0,
        INVALID_PRODUCER_EPOCH
    );
    let next = idempotent_batch(pid, epoch + 1, 2, 1);
    assert_eq!(client.produce(topic, 0, next, -1).await, (0, 18));

    // The log holds every record exactly once.
    let expected: Vec<(i64, String)> = (0..15)
        .map(|i| (i, format!("v{i}")))
        .chain([
            (15, "v0".to_owned()),
            (16, "v1".to_owned()),
            (17, "plain".to_owned()),
            (18, "v2".to_owned()),
        ])
        .collect();
    assert_eq!(stored(&mut client, topic).await, expected);
    drop(client);
    broker.running.shutdown().await;
}

#[tokio::test]
async fn idle_producers_expire_in_memory_and_on_disk() {
    let topic = "idempotent-expiry";
    let broker = TestBroker::start_with(|c| {
        c.producer_id_expiration_ms = 1;
        c.log_retention_check_interval_ms = 20;
    })
    .await;
    let mut client = broker.client().await;
    client.create_topic(topic, 1).await;
    let (_, pid, epoch) = init_producer_id(&mut client, 4).await;
    let batch = idempotent_batch(pid, epoch, 0, 2);
    assert_eq!(client.produce(topic, 0, batch, -1).await, (0, 0));

    let log = partition_log(&broker, topic, 0);
    let mut waited = 0;
    while log.producer_count() > 0 {
        assert!(waited < 500, "the producer did not expire within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
    }
    // Forgotten: any sequence is accepted, as for a producer never seen.
    let after = idempotent_batch(pid, epoch, 100, 1);
    assert_eq!(client.produce(topic, 0, after, -1).await, (0, 2));

    // The deletion reached the disk: after a restart with the default
    // expiration, the producer expired again before the restart is not
    // loaded back.
    let mut waited = 0;
    while log.producer_count() > 0 {
        assert!(waited < 500, "the producer did not expire within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
    }
    drop(client);
    let broker = broker.restart(|_| {}).await;
    assert_eq!(partition_log(&broker, topic, 0).producer_count(), 0);
    let mut client = broker.client().await;
    let any = idempotent_batch(pid, epoch, 7, 1);
    assert_eq!(client.produce(topic, 0, any, -1).await, (0, 3));
    assert_eq!(partition_log(&broker, topic, 0).producer_count(), 1);
    drop(client);
    // A clean stop: RocksDB's background threads must not outlive the test
    // process's exit (an abort in C++ teardown otherwise, now and then).
    broker.running.shutdown().await;
}
