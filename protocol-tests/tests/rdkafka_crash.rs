//! Durability: every record acknowledged with acks=all survives `kill -9`
//! and a restart on the same data directory; SIGTERM shuts down cleanly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol_tests::rdkafka::consumer::Consumer;
use protocol_tests::rdkafka::message::Message;
use protocol_tests::rdkafka::producer::FutureRecord;
use protocol_tests::rdkafka::Offset;
use protocol_tests::{
    assign, consume_to_end, create_topic, partition_count, unique_name, BrokerOptions,
    BrokerProcess, OP_TIMEOUT,
};

const PARTS: i32 = 3;

/// (partition, offset) -> payload of every acknowledged record.
type Acked = Arc<Mutex<HashMap<(i32, i64), String>>>;

fn check_all_present(broker: &BrokerProcess, topic: &str, acked: &HashMap<(i32, i64), String>) {
    let consumer = broker.consumer(&[]);
    assign(&consumer, topic, PARTS, Offset::Beginning);
    let msgs = consume_to_end(&consumer, PARTS as usize, Duration::from_secs(120)).unwrap();
    let mut stored: HashMap<(i32, i64), String> = HashMap::new();
    for m in &msgs {
        let v = String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap();
        assert!(
            stored.insert((m.partition(), m.offset()), v).is_none(),
            "offset {}/{} delivered twice",
            m.partition(),
            m.offset()
        );
    }
    let mut missing = Vec::new();
    for (k, v) in acked {
        match stored.get(k) {
            Some(s) if s == v => {}
            Some(s) => panic!("{k:?}: acknowledged {v:?} but stored {s:?}"),
            None => missing.push(*k),
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged records lost after kill -9 (first: {:?})",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
    // Per partition the log has no holes below what was acknowledged.
    for p in 0..PARTS {
        let max_acked = acked.keys().filter(|(q, _)| *q == p).map(|(_, o)| *o).max();
        if let Some(max) = max_acked {
            for o in 0..=max {
                assert!(stored.contains_key(&(p, o)), "hole at {p}/{o}");
            }
        }
    }
}

async fn crash_while_producing(policy: Option<&str>) {
    let mut opts = BrokerOptions::new();
    if let Some(p) = policy {
        opts = opts.env("METROBUS_LOG_FLUSH_POLICY", p);
    }
    let mut broker = BrokerProcess::start(opts).unwrap_or_else(|e| panic!("{e:#}"));
    let admin = broker.admin();
    let topic = unique_name("crash");
    create_topic(&admin, &topic, PARTS, &[]).await.unwrap();
    drop(admin);

    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = broker.producer(&[
        ("acks", "all"),
        ("linger.ms", "1"),
        ("message.timeout.ms", "5000"),
        ("retries", "0"),
    ]);
    let task = {
        let acked = acked.clone();
        let stop = stop.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            let mut pending = tokio::task::JoinSet::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let payload = format!("crash-record-{i}");
                let part = (i % PARTS as u64) as i32;
                let rec = FutureRecord::<[u8], [u8]>::to(&topic)
                    .partition(part)
                    .payload(payload.as_bytes());
                match producer.send_result(rec).map_err(|(e, _)| e) {
                    Ok(f) => {
                        let acked = acked.clone();
                        pending.spawn(async move {
                            if let Ok(Ok(d)) = f.await {
                                acked
                                    .lock()
                                    .unwrap()
                                    .insert((d.partition, d.offset), payload);
                            }
                        });
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                }
                i += 1;
                // Keep a bounded number in flight so acks keep flowing.
                while pending.len() > 2000 {
                    pending.join_next().await;
                }
            }
            // Drain: every outstanding delivery resolves (ack or error)
            // within message.timeout.ms.
            while pending.join_next().await.is_some() {}
            i
        })
    };

    // Let a good number of records be acknowledged, then kill mid-stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 5000 {
        assert!(
            Instant::now() < deadline,
            "only {} records acknowledged in 60 s",
            acked.lock().unwrap().len()
        );
        broker.assert_alive();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker.kill9();
    let acked_at_kill = acked.lock().unwrap().len();
    // The producer keeps sending into the dead broker for a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let sent = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("producer task did not finish")
        .expect("producer task panicked");
    let acked = acked.lock().unwrap().clone();
    assert!(
        (sent as usize) > acked.len(),
        "the kill must land while records are still in flight (sent {sent}, acked {})",
        acked.len()
    );
    assert!(acked.len() >= acked_at_kill);

    broker.restart().unwrap();
    let consumer = broker.consumer(&[]);
    assert_eq!(
        partition_count(&consumer, &topic).unwrap(),
        PARTS as usize,
        "topic survives the crash"
    );
    check_all_present(&broker, &topic, &acked);

    // And the broker takes new writes after the restart, after the old ones.
    let producer = broker.producer(&[]);
    let d = producer
        .send(
            FutureRecord::<[u8], [u8]>::to(&topic)
                .partition(0)
                .payload(b"after restart".as_slice()),
            OP_TIMEOUT,
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("produce after restart: {e}"));
    let max0 = acked
        .keys()
        .filter(|(p, _)| *p == 0)
        .map(|(_, o)| *o)
        .max()
        .unwrap_or(-1);
    assert!(
        d.offset > max0,
        "new offset {} must follow acked {max0}",
        d.offset
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_records_survive_kill_9_durable_policy() {
    crash_while_producing(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_records_survive_kill_9_replicated_policy() {
    // No fsync, but a process crash (not a power loss) must still lose
    // nothing that was acknowledged: the OS has the writes.
    crash_while_producing(Some("replicated")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_a_clean_shutdown_and_data_survives() {
    let mut broker = BrokerProcess::start_default();
    let admin = broker.admin();
    let topic = unique_name("sigterm");
    create_topic(&admin, &topic, 1, &[("retention.ms", "86400000")])
        .await
        .unwrap();
    drop(admin);
    let producer = broker.producer(&[]);
    for i in 0..50 {
        let v = format!("v{i}");
        producer
            .send(
                FutureRecord::<[u8], [u8]>::to(&topic)
                    .partition(0)
                    .payload(v.as_bytes()),
                OP_TIMEOUT,
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    }
    drop(producer);
    let status = broker.terminate().expect("SIGTERM shutdown");
    assert!(status.success(), "SIGTERM exit status: {status}");

    broker.restart().unwrap();
    let consumer = broker.consumer(&[]);
    assert_eq!(
        consumer.fetch_watermarks(&topic, 0, OP_TIMEOUT).unwrap(),
        (0, 50)
    );
    assign(&consumer, &topic, 1, Offset::Beginning);
    let msgs = consume_to_end(&consumer, 1, OP_TIMEOUT).unwrap();
    assert_eq!(msgs.len(), 50);
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.payload(), Some(format!("v{i}").as_bytes()));
    }
    let admin = broker.admin();
    let res = admin
        .describe_configs(
            [&protocol_tests::rdkafka::admin::ResourceSpecifier::Topic(
                &topic,
            )],
            &protocol_tests::rdkafka::admin::AdminOptions::new(),
        )
        .await
        .unwrap();
    let cfg = res.into_iter().next().unwrap().unwrap();
    assert_eq!(
        cfg.get("retention.ms")
            .and_then(|e| e.value.clone())
            .as_deref(),
        Some("86400000"),
        "topic config survives a restart"
    );
}
