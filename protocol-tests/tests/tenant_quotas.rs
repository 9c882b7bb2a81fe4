//! Client quotas per tenant with librdkafka: a tenant producing as fast as
//! it can against a low produce quota is throttled near its quota, while
//! another tenant producing at a fixed rate keeps its throughput and
//! latency; quotas are managed by super users only (the `metrobus tenant
//! quota` command speaks AlterClientQuotas and DescribeClientQuotas).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol_tests::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use protocol_tests::rdkafka::producer::{FutureProducer, FutureRecord};
use protocol_tests::rdkafka::ClientConfig;
use protocol_tests::tenancy::{create, produce, sasl_client, secured_options, ADMIN, ALICE, BOB};
use protocol_tests::{http_get, BrokerProcess};

/// The quota set on alice's tenant, bytes per second.
const QUOTA: u64 = 256 * 1024;
const MESSAGE: usize = 1024;
/// Bob's fixed rate, messages per second.
const BOB_RATE: u64 = 200;

fn start() -> BrokerProcess {
    // Kafka's rate is measured over `quota.window.num` windows (11 by
    // default: a new client's first burst is averaged over 10 s); three
    // windows of a second reach the steady state within this test.
    let opts = secured_options(None)
        .env("METROBUS_QUOTA_WINDOW_NUM", "3")
        .env("METROBUS_QUOTA_WINDOW_SIZE_SECONDS", "1");
    BrokerProcess::start(opts).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Runs `metrobus ARGS` against the SASL listener as `user`.
fn cli(broker: &BrokerProcess, user: (&str, &str), args: &[&str]) -> (bool, String) {
    let bin = protocol_tests::metrobus_bin().expect("metrobus binary");
    let out = std::process::Command::new(&bin)
        .args(args)
        .args([
            "--bootstrap",
            &broker.listener("SASL_PLAINTEXT").to_string(),
            "--admin-user",
            user.0,
        ])
        .env("METROBUS_ADMIN_PASSWORD", user.1)
        .output()
        .expect("metrobus");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// What a fixed-rate producer achieved.
struct Steady {
    sent: usize,
    /// Delivered within the run (plus a short grace for the last ones).
    delivered_in_time: usize,
    /// Per message, send to acknowledgement.
    latencies: Vec<Duration>,
}

impl Steady {
    fn rate(&self, run: Duration) -> f64 {
        self.delivered_in_time as f64 / run.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::MAX;
        }
        sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
    }
}

/// Produces `rate` messages per second of [`MESSAGE`] bytes for `run`.
async fn produce_steadily(cfg: &ClientConfig, topic: &str, rate: u64, run: Duration) -> Steady {
    let producer: FutureProducer = cfg
        .clone()
        .set("acks", "1")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "20000")
        .create()
        .expect("producer");
    let payload = vec![b'b'; MESSAGE];
    // Connecting, logging in and fetching metadata are not the rate's.
    let _ = producer
        .send(
            FutureRecord::<(), _>::to(topic).payload(&payload),
            Duration::from_secs(20),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("warming up {topic}: {e}"));
    let started = Instant::now();
    let deadline = started + run + Duration::from_millis(250);
    let mut ticks = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    let mut waits = Vec::new();
    while started.elapsed() < run {
        let _ = ticks.tick().await;
        let sent_at = Instant::now();
        let delivery = producer
            .send_result(FutureRecord::<(), _>::to(topic).payload(&payload))
            .unwrap_or_else(|(e, _)| panic!("queueing to {topic}: {e}"));
        waits.push(tokio::spawn(async move {
            let result = delivery.await;
            let done = Instant::now();
            match result {
                Ok(Ok(_)) => Some((done - sent_at, done)),
                _ => None,
            }
        }));
    }
    let mut steady = Steady {
        sent: waits.len(),
        delivered_in_time: 0,
        latencies: Vec::with_capacity(waits.len()),
    };
    for wait in waits {
        if let Some((latency, done)) = wait.await.expect("delivery task") {
            steady.latencies.push(latency);
            if done <= deadline {
                steady.delivered_in_time += 1;
            }
        }
    }
    steady
}

/// Produces as fast as librdkafka accepts for `run`; returns the bytes
/// acknowledged in total and those acknowledged after `steady_from`.
async fn produce_flat_out(
    cfg: &ClientConfig,
    topic: &str,
    run: Duration,
    steady_from: Duration,
) -> (u64, u64) {
    let producer: FutureProducer = cfg
        .clone()
        .set("acks", "1")
        .set("linger.ms", "5")
        // Requests of at most 64 KiB, so that alice's throughput is
        // smooth enough to measure over a few seconds.
        .set("message.max.bytes", "65536")
        .set("batch.size", "65536")
        // A bounded queue: "as fast as it can" without buffering gigabytes.
        .set("queue.buffering.max.kbytes", "2048")
        .set("queue.buffering.max.messages", "2048")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let payload = vec![b'a'; MESSAGE];
    let total = Arc::new(AtomicU64::new(0));
    let steady = Arc::new(AtomicU64::new(0));
    let timeline: Arc<Vec<AtomicU64>> = Arc::new((0..16).map(|_| AtomicU64::new(0)).collect());
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < run && sent < 1_000_000 {
        match producer.send_result(FutureRecord::<(), _>::to(topic).payload(&payload)) {
            Ok(delivery) => {
                sent += 1;
                let (total, steady, timeline) = (total.clone(), steady.clone(), timeline.clone());
                drop(tokio::spawn(async move {
                    if let Ok(Ok(_)) = delivery.await {
                        let _ = total.fetch_add(MESSAGE as u64, Ordering::Relaxed);
                        let at = started.elapsed();
                        let bucket = ((at.as_millis() / 500) as usize).min(15);
                        let _ = timeline[bucket].fetch_add(1, Ordering::Relaxed);
                        if at >= steady_from && at <= run {
                            let _ = steady.fetch_add(MESSAGE as u64, Ordering::Relaxed);
                        }
                    }
                }));
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err((e, _)) => panic!("producing to {topic}: {e}"),
        }
    }
    // Whatever is still queued is abandoned with the producer.
    drop(producer);
    tokio::time::sleep(Duration::from_millis(100)).await;
    eprintln!(
        "alice's acknowledged messages per 500 ms: {:?}",
        timeline
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect::<Vec<_>>()
    );
    (
        total.load(Ordering::Relaxed),
        steady.load(Ordering::Relaxed),
    )
}

fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.split(',').all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_quota_slows_down_and_others_keep_their_throughput() {
    let broker = start();
    let alice = sasl_client(&broker, "SCRAM-SHA-256", ALICE);
    let bob = sasl_client(&broker, "SCRAM-SHA-256", BOB);
    create(&alice.create().expect("admin"), "load", 1).await;
    create(&bob.create().expect("admin"), "steady", 1).await;

    // Bob alone first: the baseline.
    let baseline_run = Duration::from_secs(3);
    let alone = produce_steadily(&bob, "steady", BOB_RATE, baseline_run).await;

    let (ok, out) = cli(
        &broker,
        ADMIN,
        &[
            "tenant",
            "quota",
            "acme",
            "--producer-byte-rate",
            &QUOTA.to_string(),
        ],
    );
    assert!(ok, "{out}");

    // Alice floods while bob keeps his rate.
    let run = Duration::from_secs(6);
    let steady_from = Duration::from_secs(2);
    let flood = tokio::spawn({
        let alice = alice.clone();
        async move { produce_flat_out(&alice, "load", run, steady_from).await }
    });
    let loaded = produce_steadily(&bob, "steady", BOB_RATE, run).await;
    let (alice_total, alice_steady) = flood.await.expect("alice's producer");

    let alice_rate = alice_total as f64 / run.as_secs_f64();
    let alice_steady_rate = alice_steady as f64 / (run - steady_from).as_secs_f64();
    let bob_alone_rate = alone.rate(baseline_run);
    let bob_rate = loaded.rate(run);
    let (p50_alone, p99_alone) = (alone.percentile(0.5), alone.percentile(0.99));
    let (p50, p99) = (loaded.percentile(0.5), loaded.percentile(0.99));
    let metrics = http_get(broker.http_addr(), "/metrics", Duration::from_secs(5))
        .expect("metrics")
        .text();
    let throttle_acme = metric(
        &metrics,
        "metrobus_tenant_throttle_time_seconds_total",
        "tenant=\"acme\",quota=\"produce\"",
    );
    let throttle_globex = metric(
        &metrics,
        "metrobus_tenant_throttle_time_seconds_total",
        "tenant=\"globex\"",
    );
    let report = format!(
        "quota {QUOTA} B/s; alice {alice_rate:.0} B/s over {run:?} ({:.2}x), {alice_steady_rate:.0} B/s after {steady_from:?} ({:.2}x); \
         bob alone {bob_alone_rate:.1} msg/s p50 {p50_alone:?} p99 {p99_alone:?}; \
         bob with alice {bob_rate:.1} msg/s ({}/{} sent) p50 {p50:?} p99 {p99:?}; \
         throttle acme {throttle_acme:.2} s, globex {throttle_globex:.2} s",
        alice_rate / QUOTA as f64,
        alice_steady_rate / QUOTA as f64,
        loaded.delivered_in_time,
        loaded.sent,
    );
    eprintln!("{report}");

    // Alice is throttled near her quota once the burst allowance is spent.
    let ratio = alice_steady_rate / QUOTA as f64;
    assert!((0.5..=1.5).contains(&ratio), "{report}");
    assert!(alice_rate < 2.0 * QUOTA as f64, "{report}");
    assert!(throttle_acme > 0.5, "{report}");
    assert_eq!(throttle_globex, 0.0, "{report}");
    // Bob keeps his rate within 10% and his latency stays close to what
    // it was alone (10% plus 10 ms for a small, busy machine's jitter).
    assert!(bob_rate >= 0.9 * BOB_RATE as f64, "{report}");
    assert!(bob_alone_rate >= 0.9 * BOB_RATE as f64, "{report}");
    assert!(
        p99 <= p99_alone.mul_f64(1.1) + Duration::from_millis(10),
        "{report}"
    );
    assert!(
        p50 <= p50_alone.mul_f64(1.1) + Duration::from_millis(5),
        "{report}"
    );
    let tenant_bytes_in = metric(
        &metrics,
        "metrobus_tenant_bytes_in_total",
        "tenant=\"acme\"",
    );
    assert!(
        tenant_bytes_in >= alice_total as f64,
        "{report}: {tenant_bytes_in}"
    );
}

#[test]
fn only_super_users_manage_quotas_and_bad_values_are_refused() {
    let broker = start();
    // A tenant's user cannot set or read quotas, not even its own.
    let (ok, out) = cli(
        &broker,
        ALICE,
        &["tenant", "quota", "acme", "--producer-byte-rate", "1000000"],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("Cluster authorization failed"), "{out}");
    let (ok, out) = cli(&broker, ALICE, &["tenant", "quotas"]);
    assert!(!ok && out.contains("Cluster authorization failed"), "{out}");

    // The super user sets, reads back, changes and removes quotas.
    let (ok, out) = cli(
        &broker,
        ADMIN,
        &[
            "tenant",
            "quota",
            "acme",
            "--producer-byte-rate",
            "1000",
            "--consumer-byte-rate",
            "2000",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(
        &broker,
        ADMIN,
        &[
            "tenant",
            "quota",
            "<default>",
            "--request-percentage",
            "12.5",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(&broker, ADMIN, &["tenant", "quotas"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("tenant=acme\tproducer_byte_rate=1000,consumer_byte_rate=2000"),
        "{out}"
    );
    assert!(
        out.contains("tenant=<default>\trequest_percentage=12.5"),
        "{out}"
    );
    let (ok, out) = cli(&broker, ADMIN, &["tenant", "quota", "acme"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("tenant=acme") && !out.contains("<default>"),
        "{out}"
    );
    let (ok, out) = cli(
        &broker,
        ADMIN,
        &["tenant", "quota", "acme", "--remove", "producer_byte_rate"],
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(&broker, ADMIN, &["tenant", "quota", "acme"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("tenant=acme\tconsumer_byte_rate=2000") && !out.contains("producer"),
        "{out}"
    );

    // Bad values and keys get INVALID_REQUEST, and change nothing.
    for bad in [
        &["tenant", "quota", "acme", "--request-percentage=-1"][..],
        &["tenant", "quota", "acme", "--request-percentage", "NaN"],
        &["tenant", "quota", "acme", "--request-percentage", "inf"],
        &["tenant", "quota", "acme", "--producer-byte-rate", "0"],
        &["tenant", "quota", "acme", "--remove", "bogus_rate"],
    ] {
        let (ok, out) = cli(&broker, ADMIN, bad);
        assert!(!ok, "{bad:?}: {out}");
    }
    let (ok, out) = cli(&broker, ADMIN, &["tenant", "quotas"]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().count(), 2, "{out}");
    // The broker is still up and answering.
    let (ok, out) = cli(&broker, ADMIN, &["tenant", "list"]);
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_request_time_quota_is_throttled() {
    let broker = start();
    let alice = sasl_client(&broker, "SCRAM-SHA-256", ALICE);
    create(&alice.create().expect("admin"), "t", 1).await;
    // A thousandth of a percent of a thread: every request is over it.
    let (ok, out) = cli(
        &broker,
        ADMIN,
        &["tenant", "quota", "acme", "--request-percentage", "0.001"],
    );
    assert!(ok, "{out}");
    let started = Instant::now();
    produce(&alice, "t", &["one", "two"]).await;
    let metrics = http_get(broker.http_addr(), "/metrics", Duration::from_secs(5))
        .expect("metrics")
        .text();
    let throttled = metric(
        &metrics,
        "metrobus_tenant_throttle_time_seconds_total",
        "tenant=\"acme\",quota=\"request\"",
    );
    assert!(throttled > 0.0, "{throttled}");
    // Throttled, but it still gets through (a throttle is at most 3 s).
    assert!(started.elapsed() < Duration::from_secs(30));
}
