//! librdkafka clients: configuration, contexts, and the helpers every
//! broker scenario shares (topic creation, sending, draining, assignment).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Args;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

use crate::payload::{Header, KIND_MEASURED};

/// How many librdkafka error lines to print before going quiet.
const MAX_PRINTED_ERRORS: u64 = 20;

#[derive(Args, Debug)]
pub(crate) struct KafkaArgs {
    /// Bootstrap servers, comma separated
    #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
    pub(crate) brokers: String,
    /// Extra librdkafka property, KEY=VALUE; repeatable; applied last
    #[arg(short = 'X', long = "property", value_name = "KEY=VALUE")]
    pub(crate) properties: Vec<String>,
}

/// The `--acks` values librdkafka accepts.
pub(crate) const ACKS_VALUES: [&str; 4] = ["0", "1", "all", "-1"];

/// `-1` and `all` are the same setting; reports say `all`.
pub(crate) fn acks_label(acks: &str) -> &str {
    if acks == "-1" {
        "all"
    } else {
        acks
    }
}

/// Prints librdkafka's global errors (connection refused, all brokers down,
/// ...) to stderr, the first few only.
#[derive(Debug, Default)]
pub(crate) struct ErrorPrinter {
    printed: AtomicU64,
}

impl ErrorPrinter {
    fn report(&self, error: &KafkaError, reason: &str) {
        let n = self.printed.fetch_add(1, Ordering::Relaxed);
        if n < MAX_PRINTED_ERRORS {
            eprintln!("librdkafka: {error}: {reason}");
        } else if n == MAX_PRINTED_ERRORS {
            eprintln!("librdkafka: further errors suppressed");
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct ConsumerCtx {
    errors: ErrorPrinter,
}

impl ClientContext for ConsumerCtx {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.report(&error, reason);
    }
}

impl ConsumerContext for ConsumerCtx {}

/// Producer context counting delivery reports. With `ack_clock` set it also
/// records the send-to-ack latency of the latency scenario's measured records.
#[derive(Debug, Default)]
pub(crate) struct DeliveryStats {
    errors: ErrorPrinter,
    /// Delivery reports: successes and failures.
    pub(crate) ok: AtomicU64,
    failed: AtomicU64,
    /// Records librdkafka refused at send time (no delivery report follows).
    rejected: AtomicU64,
    pub(crate) bytes: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// The run's clock base and run id, for the latency scenario.
    ack_clock: Option<(Instant, u64)>,
    ack_latencies: Mutex<Vec<u64>>,
}

impl DeliveryStats {
    /// Stats that also record send-to-ack latencies of the measured records
    /// of run `run`, whose send times count from `base`.
    pub(crate) fn with_ack_clock(base: Instant, run: u64, expected_records: usize) -> Self {
        Self {
            ack_clock: Some((base, run)),
            ack_latencies: Mutex::new(Vec::with_capacity(expected_records)),
            ..Self::default()
        }
    }

    /// Records with a delivery report, successful or not.
    pub(crate) fn done(&self) -> u64 {
        self.ok.load(Ordering::Acquire) + self.failed.load(Ordering::Acquire)
    }

    /// Failed records: failed delivery reports plus records refused at send.
    pub(crate) fn errors(&self) -> u64 {
        self.failed.load(Ordering::Acquire) + self.rejected.load(Ordering::Acquire)
    }

    /// A record `send` refused.
    pub(crate) fn note_rejected(&self, error: &KafkaError) {
        self.rejected.fetch_add(1, Ordering::AcqRel);
        self.note_first_error(error);
    }

    fn note_failed(&self, error: &KafkaError) {
        self.failed.fetch_add(1, Ordering::AcqRel);
        self.note_first_error(error);
    }

    fn note_first_error(&self, error: &KafkaError) {
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(error.to_string());
        }
    }

    pub(crate) fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn take_ack_latencies(&self) -> Vec<u64> {
        std::mem::take(&mut *self.ack_latencies.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn note_ack(&self, payload: Option<&[u8]>) {
        let Some((base, run)) = self.ack_clock else {
            return;
        };
        let Some(header) = payload.and_then(Header::parse) else {
            return;
        };
        if header.run == run && header.kind == KIND_MEASURED {
            let now = base.elapsed().as_nanos() as u64;
            self.ack_latencies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(now.saturating_sub(header.sent_ns));
        }
    }
}

impl ClientContext for DeliveryStats {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.report(&error, reason);
    }
}

impl ProducerContext for DeliveryStats {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        match result {
            Ok(message) => {
                self.note_ack(message.payload());
                self.bytes
                    .fetch_add(message.payload_len() as u64, Ordering::Relaxed);
                self.ok.fetch_add(1, Ordering::AcqRel);
            }
            Err((error, _message)) => self.note_failed(error),
        }
    }
}

pub(crate) type BenchProducer = BaseProducer<DeliveryStats>;
pub(crate) type BenchConsumer = BaseConsumer<ConsumerCtx>;

fn base_config(kafka: &KafkaArgs) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("client.id", "metrobus-bench")
        .set("socket.nagle.disable", "true");
    config
}

fn apply_overrides(config: &mut ClientConfig, kafka: &KafkaArgs) -> Result<()> {
    for property in &kafka.properties {
        let (key, value) = property
            .split_once('=')
            .ok_or_else(|| anyhow!("-X expects KEY=VALUE, got {property:?}"))?;
        config.set(key.trim(), value.trim());
    }
    Ok(())
}

/// Producer settings of a producer benchmark; what the command line gives.
#[derive(Debug)]
pub(crate) struct ProducerSettings<'a> {
    pub(crate) acks: &'a str,
    pub(crate) idempotent: bool,
    pub(crate) linger_ms: u64,
    /// librdkafka's message.timeout.ms: bounds how long a record may wait.
    pub(crate) delivery_timeout: Duration,
}

/// A producer tuned for throughput: big batches and queue, no compression.
pub(crate) fn create_producer(
    kafka: &KafkaArgs,
    settings: &ProducerSettings<'_>,
    stats: DeliveryStats,
) -> Result<BenchProducer> {
    let mut config = base_config(kafka);
    config
        .set("acks", settings.acks)
        .set("enable.idempotence", settings.idempotent.to_string())
        .set("linger.ms", settings.linger_ms.to_string())
        .set("batch.size", "1000000")
        .set("batch.num.messages", "100000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "2000000")
        .set("compression.type", "none")
        .set(
            "message.timeout.ms",
            settings.delivery_timeout.as_millis().max(1000).to_string(),
        );
    apply_overrides(&mut config, kafka)?;
    config
        .create_with_context(stats)
        .context("creating producer")
}

/// A consumer for `assign()` (no group membership, nothing committed).
pub(crate) fn consumer_config(kafka: &KafkaArgs, fetch_wait_ms: u64) -> Result<ClientConfig> {
    let mut config = base_config(kafka);
    config
        .set("group.id", "metrobus-bench")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        .set("fetch.min.bytes", "1")
        .set("queued.min.messages", "1000000");
    apply_overrides(&mut config, kafka)?;
    Ok(config)
}

pub(crate) fn create_consumer(config: &ClientConfig) -> Result<BenchConsumer> {
    config
        .create_with_context(ConsumerCtx::default())
        .context("creating consumer")
}

/// Creates the topic if missing (replication factor 1) and waits until
/// every partition has a leader; returns the topic's partition count. An
/// existing topic is used as it is, whatever its partition count.
pub(crate) fn ensure_topic(kafka: &KafkaArgs, topic: &str, partitions: i32) -> Result<i32> {
    let mut config = base_config(kafka);
    // A metadata request must not create the topic with the broker's defaults.
    config.set("allow.auto.create.topics", "false");
    apply_overrides(&mut config, kafka)?;
    let admin: AdminClient<DefaultClientContext> =
        config.create().context("creating admin client")?;
    if let Ok(existing) = probe_topic(admin.inner(), topic) {
        return Ok(existing);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building tokio runtime")?;
    // -1: the broker's default.replication.factor (1 on a single node, 3 in
    // a cluster), so the same scenario measures both.
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    let options = AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(30)))
        .operation_timeout(Some(Duration::from_secs(30)));
    let results = runtime
        .block_on(async {
            // The timer must be created inside the runtime.
            let create = admin.create_topics([&new_topic], &options);
            tokio::time::timeout(Duration::from_secs(40), create).await
        })
        .map_err(|_| anyhow!("create topic {topic}: timed out"))?
        .with_context(|| format!("create topic {topic}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("create topic {name}: {code}"),
        }
    }
    wait_for_topic(admin.inner(), topic, Duration::from_secs(30))
}

/// Waits until the topic is in the metadata with a leader for every
/// partition; returns its partition count.
pub(crate) fn wait_for_topic<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    limit: Duration,
) -> Result<i32> {
    let deadline = Instant::now() + limit;
    loop {
        let problem = match probe_topic(client, topic) {
            Ok(partitions) => return Ok(partitions),
            Err(problem) => problem,
        };
        if Instant::now() >= deadline {
            bail!("topic {topic} not ready after {limit:?}: {problem}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// One metadata request: the partition count if the topic exists and every
/// partition has a leader, else what is missing.
fn probe_topic<C: ClientContext>(client: &Client<C>, topic: &str) -> Result<i32, String> {
    let metadata = client
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err("topic missing from metadata".to_string());
    };
    if let Some(error) = found.error() {
        return Err(format!("topic error {error:?}"));
    }
    if found.partitions().is_empty() {
        return Err("topic has no partitions".to_string());
    }
    let leaderless = found
        .partitions()
        .iter()
        .filter(|p| p.leader() < 0 || p.error().is_some())
        .count();
    if leaderless > 0 {
        return Err(format!("{leaderless} partition(s) without a leader"));
    }
    Ok(found.partitions().len() as i32)
}

/// Sends one record, polling while librdkafka's queue is full. Returns
/// `Ok(false)` (nothing sent) if `deadline` passes while waiting for room.
pub(crate) fn send_record(
    producer: &BenchProducer,
    topic: &str,
    partition: i32,
    payload: &[u8],
    deadline: Instant,
) -> Result<bool, KafkaError> {
    loop {
        let record = BaseRecord::<'_, (), [u8]>::to(topic)
            .payload(payload)
            .partition(partition);
        match producer.send(record) {
            Ok(()) => return Ok(true),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                if Instant::now() >= deadline {
                    return Ok(false);
                }
                producer.poll(Duration::from_millis(5));
            }
            Err((error, _)) => return Err(error),
        }
    }
}

/// Polls until `sent` records have delivery reports or `limit` passes;
/// returns how many are still undelivered.
pub(crate) fn drain_producer(producer: &BenchProducer, sent: u64, limit: Duration) -> u64 {
    let stats = producer.context();
    let deadline = Instant::now() + limit;
    while stats.done() < sent && Instant::now() < deadline {
        producer.poll(Duration::from_millis(50));
    }
    sent.saturating_sub(stats.done())
}

/// Assigns every partition of `topic`, each at the offset `offset_for` gives.
pub(crate) fn assign_all(
    consumer: &BenchConsumer,
    topic: &str,
    partitions: i32,
    offset_for: impl Fn(i32) -> Result<Offset>,
) -> Result<()> {
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, offset_for(partition)?)
            .context("building assignment")?;
    }
    consumer.assign(&assignment).context("assign")
}
