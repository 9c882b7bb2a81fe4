//! Idempotent producers with a real client (issue 3): an rdkafka producer
//! with `enable.idempotence=true` whose connections are cut mid-stream, or
//! whose broker is killed with `kill -9` and restarted, still ends with
//! every record stored exactly once and in order per partition.
//!
//! The broker advertises a [`CuttingProxy`] as its address, so the client
//! only ever talks through the proxy: the proxy cuts every connection right
//! after a produce request reached the broker and before its response got
//! back, which makes the client retry batches the broker already appended.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol_tests::proxy::CuttingProxy;
use protocol_tests::rdkafka::client::ClientContext;
use protocol_tests::rdkafka::config::RDKafkaLogLevel;
use protocol_tests::rdkafka::error::KafkaError;
use protocol_tests::rdkafka::message::Message;
use protocol_tests::rdkafka::producer::{FutureProducer, FutureRecord};
use protocol_tests::rdkafka::Offset;
use protocol_tests::{
    assign, consume_to_end, create_topic, http_get, unique_name, BrokerOptions, BrokerProcess,
};

const PARTS: i32 = 3;
const RECORDS: u64 = 20_000;

/// A broker whose advertised address is a new proxy in front of it.
async fn broker_behind_proxy(cut_every: u64) -> (BrokerProcess, CuttingProxy) {
    let proxy = CuttingProxy::start(None, cut_every)
        .await
        .expect("proxy starts");
    let opts = BrokerOptions::new().env(
        "METROBUS_ADVERTISED_LISTENERS",
        format!("PLAINTEXT://{}", proxy.addr()),
    );
    let broker = BrokerProcess::start(opts).unwrap_or_else(|e| panic!("{e:#}"));
    proxy.set_upstream(broker.kafka_addr());
    (broker, proxy)
}

/// Keeps the client's log (idempotence state changes with `debug=eos`) in
/// memory, to print when a test fails.
#[derive(Debug, Default, Clone)]
struct RecordingContext {
    lines: Arc<Mutex<Vec<String>>>,
}

impl RecordingContext {
    fn record(&self, line: String) {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }

    /// The last `n` lines, for a failure message.
    fn tail(&self, n: usize) -> String {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl ClientContext for RecordingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.record(format!("{level:?} {fac} {log_message}"));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.record(format!("ERROR {error}: {reason}"));
    }
}

type Producer = FutureProducer<RecordingContext>;

/// An idempotent producer that talks through the proxy, and its log.
fn idempotent_producer(
    proxy: &CuttingProxy,
    overrides: &[(&str, &str)],
) -> (Producer, RecordingContext) {
    let mut cfg = protocol_tests::rdkafka::ClientConfig::new();
    cfg.set("bootstrap.servers", proxy.addr().to_string())
        .set("broker.address.family", "v4")
        .set("client.id", "metrobus-idempotence-test")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "120000")
        .set("reconnect.backoff.ms", "10")
        .set("reconnect.backoff.max.ms", "500")
        .set("debug", "eos");
    for (k, v) in overrides {
        cfg.set(*k, *v);
    }
    let log = RecordingContext::default();
    let producer = cfg
        .create_with_context(log.clone())
        .expect("creating idempotent producer");
    (producer, log)
}

fn key(i: u64) -> String {
    format!("{i:06}")
}

/// Deliveries in flight: each resolves to the record's error, if any.
struct Deliveries {
    tasks: Vec<tokio::task::JoinHandle<Result<(), String>>>,
    acked: Arc<AtomicUsize>,
    client_log: RecordingContext,
    started: Instant,
}

impl Deliveries {
    /// Records acknowledged so far.
    fn acked(&self) -> usize {
        self.acked.load(Ordering::Acquire)
    }

    /// Awaits every delivery (bounded) and fails on any error, with the
    /// end of the client's log (or the broker's, if it died).
    async fn all_ok(self, broker: &mut BrokerProcess) {
        let all = async {
            for (i, task) in self.tasks.into_iter().enumerate() {
                match task.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(format!("record {i} was not delivered: {e}")),
                    Err(e) => return Err(format!("record {i}: delivery task failed: {e}")),
                }
            }
            Ok(())
        };
        let failure = match tokio::time::timeout(Duration::from_secs(180), all).await {
            Ok(Ok(())) => return,
            Ok(Err(failure)) => failure,
            Err(_) => "not every record was delivered within 180 s".to_owned(),
        };
        // A broker that died (or was killed from outside) explains it.
        broker.assert_alive();
        panic!(
            "{failure} (after {:?}); end of the client's log:\n{}",
            self.started.elapsed(),
            self.client_log.tail(300)
        );
    }
}

/// Queues every record (key and value `key(i)`, partition `i % PARTS`).
fn send_all(producer: &Producer, client_log: &RecordingContext, topic: &str) -> Deliveries {
    let started = Instant::now();
    let acked = Arc::new(AtomicUsize::new(0));
    let tasks = (0..RECORDS)
        .map(|i| {
            let k = key(i);
            let record = FutureRecord::to(topic)
                .partition((i % PARTS as u64) as i32)
                .key(k.as_bytes())
                .payload(k.as_bytes());
            let delivery = producer
                .send_result(record)
                .unwrap_or_else(|(e, _)| panic!("queueing record {i}: {e}"));
            let acked = acked.clone();
            tokio::spawn(async move {
                match delivery.await {
                    Ok(Ok(_)) => {
                        let _ = acked.fetch_add(1, Ordering::AcqRel);
                        Ok(())
                    }
                    Ok(Err((e, _))) => Err(e.to_string()),
                    Err(_) => Err("delivery future cancelled".to_owned()),
                }
            })
        })
        .collect();
    Deliveries {
        tasks,
        acked,
        client_log: client_log.clone(),
        started,
    }
}

/// Reads the whole topic and checks that each partition holds exactly its
/// records, each once, in the order they were sent.
fn check_exactly_once_in_order(broker: &BrokerProcess, topic: &str) {
    let consumer = broker.consumer(&[]);
    assign(&consumer, topic, PARTS, Offset::Beginning);
    let messages = consume_to_end(&consumer, PARTS as usize, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e:#}"));
    for p in 0..PARTS {
        let stored: Vec<String> = messages
            .iter()
            .filter(|m| m.partition() == p)
            .map(|m| String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned())
            .collect();
        let expected: Vec<String> = (0..RECORDS)
            .filter(|i| (i % PARTS as u64) as i32 == p)
            .map(key)
            .collect();
        if let Some(at) =
            (0..stored.len().max(expected.len())).find(|&at| stored.get(at) != expected.get(at))
        {
            panic!(
                "partition {p}: {} records stored, {} sent; first difference at position {at}: \
                 stored {:?}, expected {:?}",
                stored.len(),
                expected.len(),
                stored.get(at),
                expected.get(at)
            );
        }
    }
}

/// A counter's value from the broker's `/metrics`.
fn metric(broker: &BrokerProcess, name: &str) -> f64 {
    let response =
        http_get(broker.http_addr(), "/metrics", Duration::from_secs(10)).expect("GET /metrics");
    response
        .text()
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} not in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_mid_stream_leave_every_record_once_and_in_order() {
    // Small batches so that there are many produce requests to cut after.
    let (mut broker, proxy) = broker_behind_proxy(8).await;
    let topic = unique_name("idempotent-cut");
    create_topic(&broker.admin(), &topic, PARTS, &[])
        .await
        .unwrap();
    let (producer, client_log) = idempotent_producer(&proxy, &[("batch.num.messages", "100")]);
    send_all(&producer, &client_log, &topic)
        .all_ok(&mut broker)
        .await;
    broker.assert_alive();
    let cuts = proxy.cuts();
    assert!(
        cuts >= 5,
        "the proxy cut the connections only {cuts} times in {} produce requests",
        proxy.produce_requests()
    );
    // Cut requests had reached the broker: their retries were duplicates,
    // answered with the original offsets.
    let duplicates = metric(&broker, "metrobus_log_duplicate_batches_total");
    assert!(duplicates >= 1.0, "{cuts} cuts but no duplicate batch");
    eprintln!(
        "{cuts} cuts, {duplicates} duplicate batches, {} produce requests, {} connections",
        proxy.produce_requests(),
        proxy.connections()
    );
    drop(producer);
    check_exactly_once_in_order(&broker, &topic);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_and_restarted_mid_stream_leaves_every_record_once_and_in_order() {
    let (mut broker, proxy) = broker_behind_proxy(0).await;
    let topic = unique_name("idempotent-kill");
    create_topic(&broker.admin(), &topic, PARTS, &[])
        .await
        .unwrap();
    let (producer, client_log) = idempotent_producer(&proxy, &[("batch.num.messages", "200")]);
    let deliveries = send_all(&producer, &client_log, &topic);
    // Kill once a part of the records is acknowledged, the rest in flight
    // or queued.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let acked = deliveries.acked();
        if acked >= RECORDS as usize / 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {acked} records acknowledged in 60 s"
        );
        broker.assert_alive();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    broker.kill9();
    let acked_at_kill = deliveries.acked();
    assert!(
        acked_at_kill < RECORDS as usize,
        "the kill must land mid-stream"
    );
    proxy.cut_all();
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker.restart().unwrap_or_else(|e| panic!("{e:#}"));
    proxy.set_upstream(broker.kafka_addr());
    deliveries.all_ok(&mut broker).await;
    eprintln!("{acked_at_kill} of {RECORDS} records acknowledged at the kill");
    drop(producer);
    check_exactly_once_in_order(&broker, &topic);
}
