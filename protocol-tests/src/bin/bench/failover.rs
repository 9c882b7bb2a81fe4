//! The `failover` scenario: produce at a fixed rate with acks=all to one
//! partition of a 3-partition topic on a cluster, `kill -9` that
//! partition's leader, and report the time from the kill to the first
//! acknowledged record that was sent after it (the window in which the
//! partition took no writes). `--target` picks the partition: one led by a
//! node that is not the active controller, or the one the controller itself
//! leads (then the controller must be re-elected too before anyone can
//! move the partition).

use std::net::ToSocketAddrs;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Args;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::ClientContext;

use protocol_tests::cluster::metadata::{node_view, NodeView};

use crate::kafka::{ensure_topic, KafkaArgs};
use crate::report::JsonLine;

#[derive(Args, Debug)]
pub(crate) struct FailoverArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[arg(long, short = 't')]
    topic: String,
    /// Every broker's node id and pid: `1=1234,2=1240,3=1251`
    #[arg(long)]
    pids: String,
    /// Records per second
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Producing before the kill
    #[arg(long, default_value_t = 3)]
    warmup_seconds: u64,
    /// Give up this long after the kill
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
    #[arg(long)]
    idempotent: bool,
    /// Whose partition to kill the leader of: `leader` (a node that is not
    /// the active controller) or `controller` (the active controller)
    #[arg(long, default_value = "leader")]
    target: Target,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Leader,
    Controller,
}

/// Partitions of the scenario's topic: with leaders balanced over three
/// nodes, one is led by the active controller and the others are not.
const PARTITIONS: i32 = 3;

/// Nanoseconds since the run's start of the kill (u64::MAX before it) and
/// of the first acknowledged record sent after it.
#[derive(Default)]
struct Clock {
    base: Option<Instant>,
    kill_ns: AtomicU64,
    first_after_ns: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
}

struct Ctx(Arc<Clock>);

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: Box<u64>) {
        let clock = &self.0;
        match result {
            Ok(_) => {
                let _ = clock.acked.fetch_add(1, Ordering::Relaxed);
                if *sent_ns >= clock.kill_ns.load(Ordering::Acquire) {
                    let now = clock
                        .base
                        .map(|b| b.elapsed().as_nanos() as u64)
                        .unwrap_or(0);
                    let _ = clock.first_after_ns.fetch_min(now, Ordering::AcqRel);
                }
            }
            Err(_) => {
                let _ = clock.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn parse_pids(text: &str) -> Result<Vec<(i32, u32)>> {
    text.split(',')
        .map(|pair| {
            let (id, pid) = pair
                .split_once('=')
                .ok_or_else(|| anyhow!("--pids expects ID=PID pairs, got {pair:?}"))?;
            Ok((id.trim().parse()?, pid.trim().parse()?))
        })
        .collect()
}

/// The partition to fail over and its leader, as the first bootstrap
/// broker sees them: one whose leader is (or is not, per `target`) the
/// active controller. Waits up to 30 s for every partition to have a leader.
fn pick_partition(brokers: &str, topic: &str, target: Target) -> Result<(i32, i32)> {
    let first = brokers.split(',').next().unwrap_or_default().trim();
    let addr = first
        .to_socket_addrs()
        .with_context(|| format!("resolving {first}"))?
        .next()
        .ok_or_else(|| anyhow!("{first} resolves to nothing"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = node_view(addr, topic, Duration::from_secs(10));
        if let Ok(NodeView {
            controller: Some(controller),
            partitions,
        }) = &view
        {
            let found = partitions.iter().find_map(|p| {
                let leader = p.leader?;
                ((leader == *controller) == (target == Target::Controller))
                    .then_some((p.partition, leader))
            });
            if let Some(found) = found {
                return Ok(found);
            }
        }
        if Instant::now() >= deadline {
            bail!("no partition of {topic} is led as --target {target:?} asks: {view:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn failover(args: &FailoverArgs) -> Result<bool> {
    if args.rate == 0 {
        bail!("--rate must be positive");
    }
    let pids = parse_pids(&args.pids)?;
    let _ = ensure_topic(&args.kafka, &args.topic, PARTITIONS)?;
    let (partition, leader) = pick_partition(&args.kafka.brokers, &args.topic, args.target)?;
    let clock = Arc::new(Clock {
        base: Some(Instant::now()),
        kill_ns: AtomicU64::new(u64::MAX),
        first_after_ns: AtomicU64::new(u64::MAX),
        ..Clock::default()
    });
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.kafka.brokers)
        .set("acks", "all")
        .set("enable.idempotence", args.idempotent.to_string())
        .set("linger.ms", "1")
        .set("message.timeout.ms", (args.max_seconds * 1000).to_string())
        .set("request.timeout.ms", "5000")
        .set("retry.backoff.ms", "50")
        .set("retry.backoff.max.ms", "500");
    for property in &args.kafka.properties {
        if let Some((k, v)) = property.split_once('=') {
            config.set(k.trim(), v.trim());
        }
    }
    let producer: BaseProducer<Ctx> = config.create_with_context(Ctx(clock.clone()))?;
    let base = clock.base.unwrap_or_else(Instant::now);
    let interval = Duration::from_nanos(1_000_000_000 / args.rate);
    let payload = vec![b'x'; 1024];
    let mut next = Instant::now();
    let mut killed: Option<(i32, Instant)> = None;
    let mut sent = 0u64;
    let deadline_after_kill = Duration::from_secs(args.max_seconds);
    loop {
        let now = Instant::now();
        if killed.is_none() && now.duration_since(base) >= Duration::from_secs(args.warmup_seconds)
        {
            let pid = pids
                .iter()
                .find(|(id, _)| *id == leader)
                .map(|(_, pid)| *pid)
                .ok_or_else(|| anyhow!("no pid given for node {leader}"))?;
            let status = Command::new("kill")
                .arg("-9")
                .arg(pid.to_string())
                .status()?;
            if !status.success() {
                bail!("kill -9 {pid} failed");
            }
            clock
                .kill_ns
                .store(base.elapsed().as_nanos() as u64, Ordering::Release);
            eprintln!(
                "bench failover: killed node {leader} (pid {pid}), leader of partition {partition} ({:?})",
                args.target
            );
            killed = Some((leader, Instant::now()));
        }
        if let Some((_, at)) = killed {
            let found = clock.first_after_ns.load(Ordering::Acquire) != u64::MAX;
            if found || at.elapsed() >= deadline_after_kill {
                break;
            }
        }
        if now >= next {
            let sent_ns = Box::new(base.elapsed().as_nanos() as u64);
            let record = BaseRecord::with_opaque_to(&args.topic, sent_ns)
                .partition(partition)
                .payload(&payload[..]);
            if producer.send::<(), [u8]>(record).is_ok() {
                sent += 1;
            }
            next += interval;
        }
        producer.poll(Duration::from_millis(1));
    }
    let _ = producer.flush(Duration::from_secs(10));
    let kill_ns = clock.kill_ns.load(Ordering::Acquire);
    let first = clock.first_after_ns.load(Ordering::Acquire);
    let failover_ms = (first != u64::MAX).then(|| (first - kill_ns) as f64 / 1e6);
    let mut line = JsonLine::new("failover");
    line.int("sent", sent)
        .int("acked", clock.acked.load(Ordering::Relaxed))
        .int("failed", clock.failed.load(Ordering::Relaxed))
        .int("rate", args.rate)
        .int("killed_node", killed.map(|(id, _)| id).unwrap_or(-1))
        .str(
            "target",
            if args.target == Target::Controller {
                "controller"
            } else {
                "leader"
            },
        )
        .int("partition", partition)
        .bool("idempotent", args.idempotent)
        .bool("complete", failover_ms.is_some());
    if let Some(ms) = failover_ms {
        line.num("failover_ms", ms, 1);
    }
    line.print();
    Ok(failover_ms.is_some())
}
