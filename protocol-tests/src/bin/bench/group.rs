//! The `group` scenario: consume throughput through a consumer group, then
//! the rebalance time when one member leaves.
//!
//! Phase 1: `consumers` members subscribe to a pre-filled topic in a new
//! group and read `records` records between them; seconds run from the
//! first record any member gets to the last.
//!
//! Phase 2: a producer keeps writing to every partition while the last
//! member closes (LeaveGroup). The rebalance time runs from that close
//! until every partition has delivered a record written after it to one of
//! the survivors: the group noticed, rebalanced, and consumption resumed
//! everywhere, including the partitions the leaver had.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::Message as _;

use crate::kafka::{
    consumer_config, create_consumer, create_producer, wait_for_topic, DeliveryStats, KafkaArgs,
    ProducerSettings,
};
use crate::report::JsonLine;

/// Payload prefix of records written after the leaver closed (the
/// pre-filled records are random bytes; 8 bytes make a clash negligible).
const AFTER_LEAVE: &[u8; 8] = b"MB-LEAVE";

#[derive(Args, Debug)]
pub(crate) struct GroupArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[arg(long, short = 't')]
    topic: String,
    /// Records to consume in phase 1 (the topic must hold at least these)
    #[arg(long, short = 'n', default_value_t = 1_000_000)]
    records: u64,
    /// Members of the group
    #[arg(long, default_value_t = 3)]
    consumers: usize,
    #[arg(long, default_value_t = 120)]
    max_seconds: u64,
    /// Consumer fetch.wait.max.ms
    #[arg(long, default_value_t = 10)]
    fetch_wait_ms: u64,
    /// Consumer heartbeat.interval.ms (how soon survivors learn of a rebalance)
    #[arg(long, default_value_t = 3000)]
    heartbeat_ms: u64,
    /// Records per second per partition written during phase 2
    #[arg(long, default_value_t = 200)]
    phase2_rate: u64,
}

/// What the members share.
#[derive(Default)]
struct Shared {
    consumed: AtomicU64,
    bytes: AtomicU64,
    first: Mutex<Option<Instant>>,
    last: Mutex<Option<Instant>>,
    /// Partition -> first time a record written after the leave arrived.
    resumed: Mutex<HashMap<i32, Instant>>,
    /// Set when the leaving member is to close.
    leave: AtomicBool,
    stop: AtomicBool,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

fn member(args: &GroupArgs, group: &str, index: usize, shared: Arc<Shared>) -> Result<()> {
    let mut config = consumer_config(&args.kafka, args.fetch_wait_ms)?;
    config
        .set("group.id", group)
        .set("client.id", format!("metrobus-bench-{index}"))
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("heartbeat.interval.ms", args.heartbeat_ms.to_string());
    let consumer = create_consumer(&config)?;
    consumer.subscribe(&[&args.topic])?;
    let leaver = index + 1 == args.consumers;
    while !shared.stop.load(Ordering::Relaxed) {
        if leaver && shared.leave.load(Ordering::Acquire) {
            // Dropping the consumer closes it: LeaveGroup.
            return Ok(());
        }
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(message)) => {
                let now = Instant::now();
                let payload = message.payload().unwrap_or(&[]);
                if payload.starts_with(AFTER_LEAVE) {
                    let _ = shared
                        .resumed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(message.partition())
                        .or_insert(now);
                    continue;
                }
                if shared.leave.load(Ordering::Relaxed) {
                    // Phase 2 re-reads (from the last commit) are not counted.
                    continue;
                }
                shared.consumed.fetch_add(1, Ordering::Relaxed);
                shared
                    .bytes
                    .fetch_add(payload.len() as u64, Ordering::Relaxed);
                shared
                    .first
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(now);
                *shared.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
            }
            Some(Err(error)) if shared.errors.fetch_add(1, Ordering::Relaxed) == 0 => {
                eprintln!("member {index}: {error}");
                *shared.first_error.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(error.to_string());
            }
            Some(Err(_)) => {}
            None => {}
        }
    }
    Ok(())
}

pub(crate) fn group(args: &GroupArgs) -> Result<bool> {
    if args.consumers < 2 {
        bail!("--consumers must be at least 2 (one of them leaves)");
    }
    let probe = create_consumer(&consumer_config(&args.kafka, args.fetch_wait_ms)?)?;
    let partitions = wait_for_topic(probe.client(), &args.topic, Duration::from_secs(30))?;
    drop(probe);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let group = format!("metrobus-bench-group-{}-{nanos}", std::process::id());
    let shared = Arc::new(Shared::default());
    let begin = Instant::now();
    let deadline = begin + Duration::from_secs(args.max_seconds);
    let outcome = thread::scope(|scope| -> Result<(f64, Option<f64>)> {
        let handles: Vec<_> = (0..args.consumers)
            .map(|i| {
                let shared = shared.clone();
                let group = group.clone();
                scope.spawn(move || member(args, &group, i, shared))
            })
            .collect();
        // Phase 1.
        while shared.consumed.load(Ordering::Relaxed) < args.records && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let first = *shared.first.lock().unwrap_or_else(|p| p.into_inner());
        let last = *shared.last.lock().unwrap_or_else(|p| p.into_inner());
        let seconds = match (first, last) {
            (Some(f), Some(l)) => (l - f).as_secs_f64(),
            _ => 0.0,
        };
        // Phase 2: write to every partition while the last member leaves.
        let producer = create_producer(
            &args.kafka,
            &ProducerSettings {
                acks: "1",
                idempotent: false,
                linger_ms: 1,
                delivery_timeout: Duration::from_secs(30),
            },
            DeliveryStats::default(),
        )?;
        let left_at = Instant::now();
        shared.leave.store(true, Ordering::Release);
        let phase2_deadline = left_at + Duration::from_secs(60);
        let period = Duration::from_micros(1_000_000 / args.phase2_rate.max(1));
        let mut payload = [0u8; 100];
        payload[..AFTER_LEAVE.len()].copy_from_slice(AFTER_LEAVE);
        let mut rebalance = None;
        while Instant::now() < phase2_deadline {
            for p in 0..partitions {
                let record = rdkafka::producer::BaseRecord::<'_, (), [u8]>::to(&args.topic)
                    .payload(&payload[..])
                    .partition(p);
                let _ = producer.send(record);
            }
            producer.poll(Duration::ZERO);
            let resumed = shared.resumed.lock().unwrap_or_else(|p| p.into_inner());
            let done: HashSet<i32> = resumed.keys().copied().collect();
            if done.len() == partitions as usize {
                rebalance = resumed.values().max().map(|t| (*t - left_at).as_secs_f64());
                break;
            }
            drop(resumed);
            thread::sleep(period);
        }
        shared.stop.store(true, Ordering::Relaxed);
        for handle in handles {
            match handle.join() {
                Ok(result) => result?,
                Err(_) => bail!("a member thread panicked"),
            }
        }
        Ok((seconds, rebalance))
    })?;
    let (seconds, rebalance) = outcome;
    let records = shared.consumed.load(Ordering::Relaxed);
    let complete = records >= args.records && rebalance.is_some();
    let mut line = JsonLine::new("group");
    line.str("brokers", &args.kafka.brokers)
        .str("topic", &args.topic)
        .int("partitions", partitions)
        .int("consumers", args.consumers as u64)
        .int("heartbeat_ms", args.heartbeat_ms)
        .int("target_records", args.records)
        .throughput(records, shared.bytes.load(Ordering::Relaxed), seconds);
    match rebalance {
        Some(s) => line.num("rebalance_ms", s * 1e3, 1),
        None => line.null("rebalance_ms"),
    };
    line.int("errors", shared.errors.load(Ordering::Relaxed))
        .bool("complete", complete)
        .opt_str(
            "first_error",
            shared
                .first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_deref(),
        )
        .print();
    Ok(complete)
}
