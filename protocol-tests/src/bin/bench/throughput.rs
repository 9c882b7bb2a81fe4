//! The `produce` and `consume` throughput scenarios.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::Message as _;
use rdkafka::producer::Producer as _;
use rdkafka::Offset;

use crate::kafka::{
    acks_label, assign_all, consumer_config, create_consumer, create_producer, drain_producer,
    ensure_topic, send_record, wait_for_topic, DeliveryStats, KafkaArgs, ProducerSettings,
    ACKS_VALUES,
};
use crate::payload::PayloadPool;
use crate::report::JsonLine;

#[derive(Args, Debug)]
pub(crate) struct ProduceArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[arg(long, short = 't')]
    topic: String,
    /// Partitions to create the topic with, if it does not exist
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    #[arg(long, short = 'n', default_value_t = 1_000_000)]
    records: u64,
    /// Record value size in bytes (no key)
    #[arg(long, default_value_t = 100)]
    size: usize,
    #[arg(long, default_value = "1", value_parser = ACKS_VALUES)]
    acks: String,
    #[arg(long)]
    idempotent: bool,
    /// Send in transactions of this many records, each committed (needs
    /// `-X transactional.id=...`); 0: no transactions
    #[arg(long, default_value_t = 0)]
    transaction_records: u64,
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Stop sending after this long (records not sent are reported, not errors)
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
    /// After sending, wait at most this long for the outstanding delivery reports
    #[arg(long, default_value_t = 30)]
    flush_seconds: u64,
}

#[derive(Args, Debug)]
pub(crate) struct ConsumeArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[arg(long, short = 't')]
    topic: String,
    #[arg(long, short = 'n', default_value_t = 1_000_000)]
    records: u64,
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
    /// Consumer fetch.wait.max.ms
    #[arg(long, default_value_t = 10)]
    fetch_wait_ms: u64,
}

/// Produces `records` records round-robin over the partitions and waits for
/// every delivery report. Seconds run from the first send to the last report.
pub(crate) fn produce(args: &ProduceArgs) -> Result<bool> {
    if args.size == 0 {
        bail!("--size must be at least 1");
    }
    let partitions = ensure_topic(&args.kafka, &args.topic, args.partitions)?;
    let settings = ProducerSettings {
        acks: &args.acks,
        idempotent: args.idempotent,
        linger_ms: args.linger_ms,
        delivery_timeout: Duration::from_secs(args.max_seconds + args.flush_seconds),
    };
    let producer = create_producer(&args.kafka, &settings, DeliveryStats::default())?;
    let stats = producer.context();
    let pool = PayloadPool::new(args.size);
    let txn_timeout = Duration::from_secs(args.flush_seconds);
    let in_transactions = args.transaction_records > 0;
    if in_transactions {
        producer
            .init_transactions(txn_timeout)
            .context("init_transactions (is -X transactional.id set?)")?;
    }
    let mut transactions = 0u64;
    // Whether a transaction is begun and not yet committed.
    let mut open = false;

    let start = Instant::now();
    if in_transactions {
        producer.begin_transaction().context("begin_transaction")?;
        open = true;
    }
    let deadline = start + Duration::from_secs(args.max_seconds);
    let mut sent = 0u64;
    let mut timed_out = false;
    for i in 0..args.records {
        let partition = (i % partitions as u64) as i32;
        match send_record(&producer, &args.topic, partition, pool.get(i), deadline) {
            Ok(true) => sent += 1,
            Ok(false) => {
                timed_out = true;
                break;
            }
            Err(error) => stats.note_rejected(&error),
        }
        if in_transactions && (i + 1) % args.transaction_records == 0 {
            // Commit flushes the transaction's records first.
            producer
                .commit_transaction(txn_timeout)
                .context("commit_transaction")?;
            transactions += 1;
            open = false;
            if i + 1 < args.records {
                producer.begin_transaction().context("begin_transaction")?;
                open = true;
            }
        }
        if i % 1024 == 1023 {
            producer.poll(Duration::ZERO);
            if Instant::now() >= deadline && i + 1 < args.records {
                timed_out = true;
                break;
            }
        }
    }
    if open {
        producer
            .commit_transaction(txn_timeout)
            .context("commit_transaction")?;
        transactions += 1;
    }
    let send_seconds = start.elapsed().as_secs_f64();
    let undelivered = drain_producer(&producer, sent, Duration::from_secs(args.flush_seconds));
    let seconds = start.elapsed().as_secs_f64();

    let ok = stats.ok.load(Ordering::Acquire);
    let errors = stats.errors();
    let bytes = stats.bytes.load(Ordering::Acquire);
    JsonLine::new("produce")
        .str("brokers", &args.kafka.brokers)
        .str("topic", &args.topic)
        .int("partitions", partitions)
        .int("size", args.size as u64)
        .str("acks", acks_label(&args.acks))
        .bool("idempotent", args.idempotent)
        .int("transaction_records", args.transaction_records)
        .int("transactions", transactions)
        .int("linger_ms", args.linger_ms)
        .int("target_records", args.records)
        .throughput(ok, bytes, seconds)
        .num("send_seconds", send_seconds, 3)
        .int("errors", errors)
        .int("undelivered", undelivered)
        .bool("complete", ok == args.records && !timed_out)
        .opt_str("first_error", stats.first_error().as_deref())
        .print();
    Ok(errors == 0 && undelivered == 0)
}

/// Reads every partition from the beginning until `records` records have
/// arrived. Seconds run from the first record to the last, so connecting
/// and the first fetch round trip are left out (`first_record_ms` has them).
pub(crate) fn consume(args: &ConsumeArgs) -> Result<bool> {
    let consumer = create_consumer(&consumer_config(&args.kafka, args.fetch_wait_ms)?)?;
    let begin = Instant::now();
    let partitions = wait_for_topic(consumer.client(), &args.topic, Duration::from_secs(30))?;
    assign_all(&consumer, &args.topic, partitions, |_| {
        Ok(Offset::Beginning)
    })?;

    let deadline = begin + Duration::from_secs(args.max_seconds);
    let mut records = 0u64;
    let mut bytes = 0u64;
    let mut errors = 0u64;
    let mut first_error: Option<String> = None;
    let mut first_at: Option<Instant> = None;
    let mut last_at = begin;
    while records < args.records && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                last_at = Instant::now();
                first_at.get_or_insert(last_at);
                records += 1;
                bytes += (message.payload_len() + message.key().map_or(0, <[u8]>::len)) as u64;
            }
            Some(Err(error)) => {
                errors += 1;
                if first_error.is_none() {
                    eprintln!("consume error: {error}");
                    first_error = Some(error.to_string());
                }
            }
            None => {}
        }
    }
    let seconds = first_at.map_or(0.0, |first| (last_at - first).as_secs_f64());
    let first_record_ms = first_at.map_or(f64::NAN, |first| (first - begin).as_secs_f64() * 1e3);
    let complete = records >= args.records;
    JsonLine::new("consume")
        .str("brokers", &args.kafka.brokers)
        .str("topic", &args.topic)
        .int("partitions", partitions)
        .int("fetch_wait_ms", args.fetch_wait_ms)
        .int("target_records", args.records)
        .throughput(records, bytes, seconds)
        .num("total_seconds", begin.elapsed().as_secs_f64(), 3)
        .num("first_record_ms", first_record_ms, 1)
        .int("errors", errors)
        .bool("complete", complete)
        .opt_str("first_error", first_error.as_deref())
        .print();
    Ok(complete)
}
