//! The `latency` scenario: a producer sends at a fixed rate, stamping each
//! record with its send time; a consumer in the same process, started and
//! positioned first, measures send-to-consume latency. The producer's
//! delivery reports give send-to-ack latency too.
//!
//! Sequence: create the topic; position the consumer at every partition's
//! high watermark; warm up (one record per partition, repeated, until the
//! consumer has seen each partition, so connections are up and fetches are
//! parked); send RATE*SECONDS measured records paced by time; drain.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Args;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::Message as _;
use rdkafka::producer::Producer as _;
use rdkafka::Offset;

use crate::kafka::{
    acks_label, assign_all, consumer_config, create_consumer, create_producer, drain_producer,
    ensure_topic, send_record, BenchConsumer, BenchProducer, DeliveryStats, KafkaArgs,
    ProducerSettings, ACKS_VALUES,
};
use crate::payload::{Header, PayloadPool, HEADER_LEN, KIND_MEASURED, KIND_WARMUP};
use crate::report::{JsonLine, ACK_KEYS, E2E_KEYS};

#[derive(Args, Debug)]
pub(crate) struct LatencyArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[arg(long, short = 't')]
    topic: String,
    /// Partitions to create the topic with, if it does not exist
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Records per second
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Record value size in bytes (at least 17: the timestamp header)
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Seconds of producing at RATE (RATE*SECONDS records)
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value = "all", value_parser = ACKS_VALUES)]
    acks: String,
    #[arg(long)]
    idempotent: bool,
    #[arg(long, default_value_t = 1)]
    linger_ms: u64,
    /// Consumer fetch.wait.max.ms: latencies well under it mean fetches are
    /// woken by appends rather than answered by the timer
    #[arg(long, default_value_t = 100)]
    fetch_wait_ms: u64,
    /// After producing, wait at most this long for acks and for the consumer
    #[arg(long, default_value_t = 30)]
    drain_seconds: u64,
}

/// State the producer (main thread) and the consumer thread share.
#[derive(Debug)]
struct Shared {
    /// Clock base of the send timestamps in payloads.
    base: Instant,
    /// Identifies this run's records in the topic.
    run: u64,
    stop: AtomicBool,
    /// Measured records the consumer must see before it may stop;
    /// `u64::MAX` until the producer knows.
    expected: AtomicU64,
    /// Partitions on which the consumer has seen a warm-up record.
    warm_partitions: AtomicU64,
    /// Measured records the consumer has seen.
    received: AtomicU64,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

/// What the consumer thread measured.
#[derive(Debug, Default)]
struct ConsumerReport {
    latencies: Vec<u64>,
    bytes: u64,
    errors: u64,
    first_error: Option<String>,
    duplicates: u64,
}

/// The consumer thread; dropping the handle stops and joins it.
#[derive(Debug)]
struct ConsumerHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<ConsumerReport>>,
}

impl ConsumerHandle {
    /// Starts the consumer and returns once it is assigned every partition
    /// at its high watermark.
    /// The thread ends by itself after `limit` at the latest.
    fn start(
        config: ClientConfig,
        topic: &str,
        partitions: i32,
        shared: &Arc<Shared>,
        limit: Duration,
    ) -> Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let topic = topic.to_string();
        let thread_shared = shared.clone();
        let thread = thread::Builder::new()
            .name("latency-consumer".into())
            .spawn(
                move || match positioned_consumer(&config, &topic, partitions) {
                    Ok(consumer) => {
                        let _ = ready_tx.send(Ok(()));
                        consume_until_stopped(&consumer, &thread_shared, limit)
                    }
                    Err(error) => {
                        let _ = ready_tx.send(Err(error));
                        ConsumerReport::default()
                    }
                },
            )
            .context("spawning consumer thread")?;
        let handle = Self {
            shared: shared.clone(),
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(error)) => Err(error.context("positioning consumer")),
            Err(_) => bail!("consumer was not positioned within 60 s"),
        }
    }

    fn finish(mut self) -> Result<ConsumerReport> {
        self.shared.stop.store(true, Ordering::Release);
        let thread = self
            .thread
            .take()
            .ok_or_else(|| anyhow!("consumer already joined"))?;
        thread
            .join()
            .map_err(|_| anyhow!("consumer thread panicked"))
    }
}

impl Drop for ConsumerHandle {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub(crate) fn latency(args: &LatencyArgs) -> Result<bool> {
    if args.size < HEADER_LEN {
        bail!("--size must be at least {HEADER_LEN} (timestamp header)");
    }
    if args.rate == 0 || args.seconds == 0 {
        bail!("--rate and --seconds must be positive");
    }
    let partitions = ensure_topic(&args.kafka, &args.topic, args.partitions)?;
    let total = args.rate * args.seconds;
    let shared = Arc::new(Shared {
        base: Instant::now(),
        run: run_id(),
        stop: AtomicBool::new(false),
        expected: AtomicU64::new(u64::MAX),
        warm_partitions: AtomicU64::new(0),
        received: AtomicU64::new(0),
    });
    let config = consumer_config(&args.kafka, args.fetch_wait_ms)?;
    // Generous: warm-up (30 s), sending (at most 2*seconds + 10 s) and two drains.
    let consumer_limit = Duration::from_secs(args.seconds * 2 + args.drain_seconds * 2 + 60);
    let consumer = ConsumerHandle::start(config, &args.topic, partitions, &shared, consumer_limit)?;

    let stats = DeliveryStats::with_ack_clock(shared.base, shared.run, total as usize);
    let settings = ProducerSettings {
        acks: &args.acks,
        idempotent: args.idempotent,
        linger_ms: args.linger_ms,
        delivery_timeout: Duration::from_secs(args.seconds + args.drain_seconds),
    };
    let producer = create_producer(&args.kafka, &settings, stats)?;
    let mut buf = PayloadPool::new(args.size).get(0).to_vec();

    let warm_sent = warm_up(&producer, &args.topic, partitions, &shared, &mut buf)?;
    let warm_ok = producer.context().ok.load(Ordering::Acquire);
    let warm_errors = producer.context().errors();

    let paced = send_paced(&producer, args, partitions, total, &shared, &mut buf);
    let drain = Duration::from_secs(args.drain_seconds);
    let undelivered = drain_producer(&producer, warm_sent + paced.sent, drain);
    let stats = producer.context();
    let delivery = Delivery {
        acked: stats.ok.load(Ordering::Acquire) - warm_ok,
        errors: stats.errors() - warm_errors,
        undelivered,
        first_error: stats.first_error(),
    };

    // Let the consumer catch up with everything acknowledged, bounded.
    shared.expected.store(delivery.acked, Ordering::Release);
    let catch_up_deadline = Instant::now() + drain;
    while shared.received.load(Ordering::Acquire) < delivery.acked
        && Instant::now() < catch_up_deadline
    {
        thread::sleep(Duration::from_millis(10));
    }
    let consumed = consumer.finish()?;
    let ack_latencies = stats.take_ack_latencies();
    Ok(print_report(
        args,
        partitions,
        &paced,
        &delivery,
        consumed,
        ack_latencies,
    ))
}

/// The producer's side of the measured records.
#[derive(Debug)]
struct Delivery {
    acked: u64,
    errors: u64,
    undelivered: u64,
    first_error: Option<String>,
}

/// Prints the scenario's JSON line; true if no record failed or was lost.
fn print_report(
    args: &LatencyArgs,
    partitions: i32,
    paced: &PacedSend,
    delivery: &Delivery,
    mut consumed: ConsumerReport,
    mut ack_latencies: Vec<u64>,
) -> bool {
    let total = args.rate * args.seconds;
    let received = consumed.latencies.len() as u64;
    let lost = delivery.acked.saturating_sub(received);
    let first_error = delivery
        .first_error
        .as_deref()
        .or(consumed.first_error.as_deref());
    JsonLine::new("latency")
        .str("brokers", &args.kafka.brokers)
        .str("topic", &args.topic)
        .int("partitions", partitions)
        .int("rate", args.rate)
        .int("size", args.size as u64)
        .str("acks", acks_label(&args.acks))
        .bool("idempotent", args.idempotent)
        .int("linger_ms", args.linger_ms)
        .int("fetch_wait_ms", args.fetch_wait_ms)
        .int("target_records", total)
        .throughput(received, consumed.bytes, paced.seconds)
        .num("max_send_lag_ms", paced.max_lag.as_secs_f64() * 1e3, 3)
        .latencies(&E2E_KEYS, &mut consumed.latencies)
        .latencies(&ACK_KEYS, &mut ack_latencies)
        .int("sent", paced.sent)
        .int("acked", delivery.acked)
        .int("errors", delivery.errors)
        .int("undelivered", delivery.undelivered)
        .int("lost", lost)
        .int("duplicates", consumed.duplicates)
        .int("consumer_errors", consumed.errors)
        .bool(
            "complete",
            !paced.timed_out && paced.sent == total && lost == 0,
        )
        .opt_str("first_error", first_error)
        .print();
    delivery.errors == 0 && delivery.undelivered == 0 && lost == 0
}

/// A per-run id from the wall clock and the pid.
fn run_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// A consumer assigned every partition at its current high watermark, so it
/// sees exactly the records produced after this returns.
fn positioned_consumer(
    config: &ClientConfig,
    topic: &str,
    partitions: i32,
) -> Result<BenchConsumer> {
    let consumer = create_consumer(config)?;
    assign_all(&consumer, topic, partitions, |partition| {
        let (_low, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .with_context(|| format!("watermarks of {topic}/{partition}"))?;
        Ok(Offset::Offset(high))
    })?;
    Ok(consumer)
}

/// Sends a warm-up record to every partition every 250 ms until the consumer
/// has seen one on each (at most 30 s); returns the warm-up records sent,
/// after waiting (bounded) for their delivery reports.
fn warm_up(
    producer: &BenchProducer,
    topic: &str,
    partitions: i32,
    shared: &Shared,
    buf: &mut [u8],
) -> Result<u64> {
    let all_warm = || shared.warm_partitions.load(Ordering::Acquire) >= partitions as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0u64;
    while !all_warm() {
        if Instant::now() >= deadline {
            bail!(
                "consumer saw warm-up records on only {} of {partitions} partitions within 30 s",
                shared.warm_partitions.load(Ordering::Acquire)
            );
        }
        for partition in 0..partitions {
            let header = Header {
                sent_ns: shared.now_ns(),
                run: shared.run,
                kind: KIND_WARMUP,
            };
            header.write(buf);
            let queue_deadline = Instant::now() + Duration::from_secs(5);
            if matches!(
                send_record(producer, topic, partition, buf, queue_deadline),
                Ok(true)
            ) {
                sent += 1;
            }
        }
        let round_end = Instant::now() + Duration::from_millis(250);
        while Instant::now() < round_end && !all_warm() {
            producer.poll(Duration::from_millis(10));
        }
    }
    let undelivered = drain_producer(producer, sent, Duration::from_secs(10));
    let failed = producer.context().errors();
    if undelivered > 0 || failed > 0 {
        eprintln!("latency: warm-up had {failed} failed and {undelivered} undelivered records");
    }
    Ok(sent)
}

#[derive(Debug)]
struct PacedSend {
    sent: u64,
    /// From the first send to the last.
    seconds: f64,
    /// Worst delay of a send behind its schedule.
    max_lag: Duration,
    timed_out: bool,
}

/// Record `i` is due at start + i/rate; whatever is due is sent at once, and
/// the timestamp in the payload is the actual send time.
fn send_paced(
    producer: &BenchProducer,
    args: &LatencyArgs,
    partitions: i32,
    total: u64,
    shared: &Shared,
    buf: &mut [u8],
) -> PacedSend {
    let interval_ns = 1e9 / args.rate as f64;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds * 2 + 10);
    let mut result = PacedSend {
        sent: 0,
        seconds: 0.0,
        max_lag: Duration::ZERO,
        timed_out: false,
    };
    for i in 0..total {
        let due = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
        result.max_lag = result.max_lag.max(wait_until(producer, due));
        if Instant::now() >= deadline {
            result.timed_out = true;
            break;
        }
        let header = Header {
            sent_ns: shared.now_ns(),
            run: shared.run,
            kind: KIND_MEASURED,
        };
        header.write(buf);
        let partition = (i % partitions as u64) as i32;
        match send_record(producer, &args.topic, partition, buf, deadline) {
            Ok(true) => result.sent += 1,
            Ok(false) => {
                result.timed_out = true;
                break;
            }
            Err(error) => producer.context().note_rejected(&error),
        }
        producer.poll(Duration::ZERO);
    }
    result.seconds = start.elapsed().as_secs_f64();
    result
}

/// Serves delivery reports until `due` (librdkafka waits in whole ms; the
/// last sub-millisecond is slept); returns how late it is past `due`.
fn wait_until(producer: &BenchProducer, due: Instant) -> Duration {
    loop {
        let now = Instant::now();
        if now >= due {
            return now - due;
        }
        let wait = due - now;
        if wait >= Duration::from_millis(1) {
            producer.poll(Duration::from_millis(wait.as_millis() as u64));
        } else {
            thread::sleep(wait);
        }
    }
}

/// The consumer thread's loop: records warm-up partitions and the latency
/// of each measured record until told to stop, until it has every expected
/// record, or at a hard time limit.
fn consume_until_stopped(
    consumer: &BenchConsumer,
    shared: &Shared,
    limit: Duration,
) -> ConsumerReport {
    let hard_deadline = Instant::now() + limit;
    let mut report = ConsumerReport::default();
    let mut warm: HashSet<i32> = HashSet::new();
    let mut seen_sends: HashSet<u64> = HashSet::new();
    while !shared.stop.load(Ordering::Acquire) && Instant::now() < hard_deadline {
        if report.latencies.len() as u64 >= shared.expected.load(Ordering::Acquire) {
            break;
        }
        let message = match consumer.poll(Duration::from_millis(20)) {
            None => continue,
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                report.errors += 1;
                if report.first_error.is_none() {
                    eprintln!("latency consumer error: {error}");
                    report.first_error = Some(error.to_string());
                }
                continue;
            }
        };
        let now = shared.now_ns();
        let Some(header) = message.payload().and_then(Header::parse) else {
            continue;
        };
        if header.run != shared.run {
            continue;
        }
        if header.kind == KIND_WARMUP {
            if warm.insert(message.partition()) {
                shared
                    .warm_partitions
                    .store(warm.len() as u64, Ordering::Release);
            }
        } else if !seen_sends.insert(header.sent_ns) {
            report.duplicates += 1;
        } else {
            report.latencies.push(now.saturating_sub(header.sent_ns));
            report.bytes += message.payload_len() as u64;
            shared.received.fetch_add(1, Ordering::AcqRel);
        }
    }
    report
}
