//! Produce and fetch through an in-process broker: offsets, codecs,
//! long-poll wake-up, limits and errors.

mod common;

use std::time::{Duration, Instant};

use common::{batch, values, TestBroker};
use kafka_protocol::records::Compression;

#[tokio::test]
async fn produce_then_fetch_roundtrip_all_codecs() {
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client.create_topic("codecs", 1).await;
    let mut expected = Vec::new();
    for (i, codec) in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let texts: Vec<String> = (0..3).map(|j| format!("{codec:?}-{j}")).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (code, base) = client
            .produce("codecs", 0, batch(&refs, common::now_ms(), codec), -1)
            .await;
        assert_eq!((code, base), (0, i as i64 * 3));
        expected.extend(
            texts
                .into_iter()
                .enumerate()
                .map(|(j, t)| ((i * 3 + j) as i64, t)),
        );
    }
    let response = client.fetch("codecs", 0, 0, 0).await;
    let p = &response.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert_eq!(p.high_watermark, 15);
    assert_eq!(values(p.records.as_ref().unwrap()), expected);
    // A fetch from the middle of a batch returns that whole batch.
    let response = client.fetch("codecs", 0, 4, 0).await;
    let got = values(
        response.responses[0].partitions[0]
            .records
            .as_ref()
            .unwrap(),
    );
    assert_eq!(got.first().map(|v| v.0), Some(3));
    broker.running.shutdown().await;
}

#[tokio::test]
async fn long_poll_is_woken_by_an_append_not_the_timer() {
    let broker = TestBroker::start().await;
    let mut producer = broker.client().await;
    producer.create_topic("wake", 1).await;
    let mut consumer = broker.client().await;
    let started = Instant::now();
    let fetch = tokio::spawn(async move { consumer.fetch("wake", 0, 0, 20_000).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, _) = producer
        .produce("wake", 0, batch(&["hello"], 5, Compression::None), 1)
        .await;
    assert_eq!(code, 0);
    let response = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .expect("woken before the 20 s wait")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let records = response.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(values(&records), vec![(0, "hello".to_owned())]);
    broker.running.shutdown().await;
}

#[tokio::test]
async fn fetch_waits_for_max_wait_when_nothing_arrives() {
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client.create_topic("idle", 1).await;
    let started = Instant::now();
    let response = client.fetch("idle", 0, 0, 300).await;
    assert!(started.elapsed() >= Duration::from_millis(290));
    assert!(response.responses[0].partitions[0]
        .records
        .as_ref()
        .unwrap()
        .is_empty());
    broker.running.shutdown().await;
}

#[tokio::test]
async fn produce_errors_follow_kafka() {
    let broker = TestBroker::start_with(|c| c.message_max_bytes = 2_000).await;
    let mut client = broker.client().await;
    client.create_topic("errs", 1).await;
    // Unknown topic and partition.
    assert_eq!(
        client
            .produce("nope", 0, batch(&["x"], 0, Compression::None), 1)
            .await
            .0,
        3
    );
    assert_eq!(
        client
            .produce("errs", 7, batch(&["x"], 0, Compression::None), 1)
            .await
            .0,
        3
    );
    // Too large for message.max.bytes.
    let big = "x".repeat(5_000);
    assert_eq!(
        client
            .produce("errs", 0, batch(&[&big], 0, Compression::None), 1)
            .await
            .0,
        10
    );
    // Corrupt: a flipped byte breaks the CRC.
    let mut corrupt = batch(&["payload"], 0, Compression::None).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(client.produce("errs", 0, corrupt.into(), 1).await.0, 2);
    // Invalid acks.
    assert_eq!(
        client
            .produce("errs", 0, batch(&["x"], 0, Compression::None), 5)
            .await
            .0,
        21
    );
    // Nothing of the above was stored.
    let response = client.fetch("errs", 0, 0, 0).await;
    assert_eq!(response.responses[0].partitions[0].high_watermark, 0);
    broker.running.shutdown().await;
}

#[tokio::test]
async fn fetch_out_of_range_and_unknown() {
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client.create_topic("range", 1).await;
    let _ = client
        .produce("range", 0, batch(&["a", "b"], 0, Compression::None), 1)
        .await;
    assert_eq!(
        client.fetch("range", 0, 3, 0).await.responses[0].partitions[0].error_code,
        1
    );
    assert_eq!(
        client.fetch("range", 0, 2, 0).await.responses[0].partitions[0].error_code,
        0
    );
    assert_eq!(
        client.fetch("missing", 0, 0, 0).await.responses[0].partitions[0].error_code,
        3
    );
    broker.running.shutdown().await;
}

#[tokio::test]
async fn data_survives_restart_with_durable_flush() {
    let broker =
        TestBroker::start_with(|c| c.log_flush_policy = metrobus::config::FlushPolicy::Durable)
            .await;
    let mut client = broker.client().await;
    client.create_topic("durable", 2).await;
    for i in 0..10 {
        let (code, base) = client
            .produce(
                "durable",
                i % 2,
                batch(&[&format!("v{i}")], 0, Compression::None),
                -1,
            )
            .await;
        assert_eq!((code, base), (0, i64::from(i / 2)));
    }
    drop(client);
    let broker = broker.restart(|_| {}).await;
    let mut client = broker.client().await;
    let response = client.fetch("durable", 1, 0, 0).await;
    let got: Vec<String> = values(
        response.responses[0].partitions[0]
            .records
            .as_ref()
            .unwrap(),
    )
    .into_iter()
    .map(|v| v.1)
    .collect();
    assert_eq!(got, vec!["v1", "v3", "v5", "v7", "v9"]);
    // New appends continue after the stored end.
    assert_eq!(
        client
            .produce("durable", 1, batch(&["more"], 0, Compression::None), 1)
            .await,
        (0, 5)
    );
    broker.running.shutdown().await;
}

#[tokio::test]
async fn request_memory_budget_applies_backpressure_without_deadlock() {
    // Room for about two of these requests at once: the rest wait for memory.
    let broker = TestBroker::start_with(|c| {
        c.socket_request_max_bytes = 64 * 1024;
        c.queued_max_request_bytes = 64 * 1024;
    })
    .await;
    let mut admin = broker.client().await;
    admin.create_topic("budget", 1).await;
    let payload = "m".repeat(25_000);
    let mut producers = Vec::new();
    for _ in 0..12 {
        let mut client = broker.client().await;
        let records = batch(&[&payload], common::now_ms(), Compression::None);
        producers.push(tokio::spawn(async move {
            client.produce("budget", 0, records, 1).await.0
        }));
    }
    for producer in producers {
        let code = tokio::time::timeout(Duration::from_secs(20), producer)
            .await
            .expect("no deadlock")
            .unwrap();
        assert_eq!(code, 0);
    }
    assert_eq!(
        admin.fetch("budget", 0, 0, 0).await.responses[0].partitions[0].high_watermark,
        12
    );
    broker.running.shutdown().await;
}

/// A broker dropped without `shutdown` (a test that returns or panics
/// early) must still close its database once its runtime is gone: a
/// database left open at process exit makes RocksDB abort the whole test
/// binary. Proven by opening the same directory again: RocksDB refuses a
/// second open in one process while the first is alive.
#[test]
fn a_dropped_broker_releases_its_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    };
    let first = runtime();
    first.block_on(async {
        let running = metrobus::broker::start(common::test_config(dir.path()))
            .await
            .expect("broker starts");
        let mut client = common::Client::connect(&running.kafka_addr().to_string()).await;
        client.create_topic("dropped", 1).await;
        let (code, _) = client
            .produce(
                "dropped",
                0,
                batch(&["kept"], common::now_ms(), Compression::None),
                -1,
            )
            .await;
        assert_eq!(code, 0);
        drop(running);
    });
    drop(first);

    let second = runtime();
    second.block_on(async {
        let running = metrobus::broker::start(common::test_config(dir.path()))
            .await
            .expect("the directory is free again once the first broker is dropped");
        running.shutdown().await;
    });
}
