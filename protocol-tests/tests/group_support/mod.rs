//! Shared pieces of the consumer-group tests (issue 3): a librdkafka group
//! member that records what it received and every rebalance callback, a
//! kcat `-G` member run as a separate process (so that it can be killed
//! without a LeaveGroup), keyed production with the offsets the broker gave,
//! and committed-offset and metrics lookups.
//!
//! Each test file uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use protocol_tests::rdkafka::client::ClientContext;
use protocol_tests::rdkafka::config::RDKafkaLogLevel;
use protocol_tests::rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance,
};
use protocol_tests::rdkafka::error::KafkaError;
use protocol_tests::rdkafka::message::Message;
use protocol_tests::rdkafka::producer::{FutureProducer, FutureRecord};
use protocol_tests::rdkafka::{Offset, TopicPartitionList};
use protocol_tests::{
    find_on_path, http_get, unique_name, BrokerOptions, BrokerProcess, OP_TIMEOUT,
};

/// Broker settings that make group tests fast: no initial rebalance delay
/// and session timeouts down to one second.
pub(crate) const FAST_GROUP_ENV: &[(&str, &str)] = &[
    ("METROBUS_GROUP_INITIAL_REBALANCE_DELAY_MS", "0"),
    ("METROBUS_GROUP_MIN_SESSION_TIMEOUT_MS", "1000"),
];

/// Session timeout of the test members, in ms (librdkafka's default is 45 s).
pub(crate) const SESSION_TIMEOUT_MS: u64 = 6000;

/// Bound on any wait for a group to converge or records to arrive.
pub(crate) const GROUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts a broker with [`FAST_GROUP_ENV`] plus `extra`.
pub(crate) fn start_group_broker(extra: &[(&str, &str)]) -> BrokerProcess {
    let mut opts = BrokerOptions::new();
    for (k, v) in FAST_GROUP_ENV.iter().chain(extra) {
        opts = opts.env(*k, *v);
    }
    BrokerProcess::start(opts).unwrap_or_else(|e| panic!("{e:#}"))
}

/// One rebalance callback as librdkafka delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RebalanceEvent {
    Assign(BTreeSet<i32>),
    Revoke(BTreeSet<i32>),
    Error(String),
}

/// A consumer context that records rebalance callbacks and, when asked,
/// commits the processed offsets of revoked partitions before giving them up
/// (the usual "commit in onPartitionsRevoked" pattern).
#[derive(Debug)]
pub(crate) struct GroupContext {
    name: String,
    topic: String,
    commit_on_revoke: bool,
    verbose: bool,
    events: Mutex<Vec<RebalanceEvent>>,
    /// Next offset to process per partition (last delivered + 1).
    processed: Mutex<BTreeMap<i32, i64>>,
    /// Errors of commits made from the revoke callback.
    revoke_commit_errors: Mutex<Vec<String>>,
}

fn partitions_of(tpl: &TopicPartitionList) -> BTreeSet<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        let important = matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
                | RDKafkaLogLevel::Warning
        );
        if important || self.verbose {
            eprintln!("[{}] librdkafka {level:?} {fac}: {log_message}", self.name);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        eprintln!("[{}] librdkafka error: {error}: {reason}", self.name);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let event = match rebalance {
            Rebalance::Assign(tpl) => RebalanceEvent::Assign(partitions_of(tpl)),
            Rebalance::Revoke(tpl) => RebalanceEvent::Revoke(partitions_of(tpl)),
            Rebalance::Error(e) => RebalanceEvent::Error(e.to_string()),
        };
        eprintln!("[{}] rebalance: {event:?}", self.name);
        if let (RebalanceEvent::Revoke(revoked), true) = (&event, self.commit_on_revoke) {
            let processed = self.processed.lock().unwrap().clone();
            let mut tpl = TopicPartitionList::new();
            for p in revoked {
                if let Some(next) = processed.get(p) {
                    tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*next))
                        .unwrap();
                }
            }
            if tpl.count() > 0 {
                if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                    eprintln!("[{}] commit on revoke failed: {e}", self.name);
                    self.revoke_commit_errors
                        .lock()
                        .unwrap()
                        .push(format!("{e} (committing {processed:?})"));
                }
            }
        }
        self.events.lock().unwrap().push(event);
    }
}

/// One record as a member received it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Delivery {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) value: String,
}

/// A librdkafka consumer subscribed to one topic in a group.
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) consumer: BaseConsumer<GroupContext>,
    pub(crate) topic: String,
    /// Everything received, in order.
    pub(crate) deliveries: Vec<Delivery>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("name", &self.name)
            .field("assignment", &self.assignment())
            .field("deliveries", &self.deliveries.len())
            .finish()
    }
}

/// How a [`Member`] is configured beyond the defaults.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemberOptions<'a> {
    /// librdkafka properties (e.g. `partition.assignment.strategy`).
    pub(crate) config: Vec<(&'a str, &'a str)>,
    /// Commit the processed offsets of revoked partitions in the callback.
    pub(crate) commit_on_revoke: bool,
}

impl Member {
    /// Creates a consumer in `group` (manual commits, earliest reset, a
    /// [`SESSION_TIMEOUT_MS`] session with 500 ms heartbeats) and subscribes
    /// it to `topic`. `RDKAFKA_DEBUG` (e.g. `cgrp`) turns librdkafka's debug
    /// log on, printed to stderr.
    pub(crate) fn join(
        broker: &BrokerProcess,
        group: &str,
        topic: &str,
        name: &str,
        opts: MemberOptions<'_>,
    ) -> Member {
        let debug = std::env::var("RDKAFKA_DEBUG").ok();
        let mut cfg = broker.client_config();
        cfg.set("client.id", name)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
            .set("heartbeat.interval.ms", "500")
            .set("fetch.wait.max.ms", "100");
        if let Some(d) = &debug {
            cfg.set("debug", d);
        }
        for (k, v) in &opts.config {
            cfg.set(*k, *v);
        }
        let context = GroupContext {
            name: name.to_owned(),
            topic: topic.to_owned(),
            commit_on_revoke: opts.commit_on_revoke,
            verbose: debug.is_some(),
            events: Mutex::new(Vec::new()),
            processed: Mutex::new(BTreeMap::new()),
            revoke_commit_errors: Mutex::new(Vec::new()),
        };
        let consumer: BaseConsumer<GroupContext> = cfg
            .create_with_context(context)
            .unwrap_or_else(|e| panic!("creating consumer {name}: {e}"));
        consumer
            .subscribe(&[topic])
            .unwrap_or_else(|e| panic!("{name}: subscribe: {e}"));
        Member {
            name: name.to_owned(),
            consumer,
            topic: topic.to_owned(),
            deliveries: Vec::new(),
        }
    }

    /// One poll: serves callbacks and takes at most one record.
    pub(crate) fn poll(&mut self, timeout: Duration) -> Result<()> {
        match self.consumer.poll(timeout) {
            None => Ok(()),
            Some(Ok(m)) => {
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                let _ = self
                    .consumer
                    .context()
                    .processed
                    .lock()
                    .unwrap()
                    .insert(m.partition(), m.offset() + 1);
                self.deliveries.push(Delivery {
                    partition: m.partition(),
                    offset: m.offset(),
                    value,
                });
                Ok(())
            }
            Some(Err(KafkaError::PartitionEOF(_))) => Ok(()),
            Some(Err(e)) => bail!(
                "{}: consumer error after {} records: {e}",
                self.name,
                self.deliveries.len()
            ),
        }
    }

    /// The partitions librdkafka currently has assigned.
    pub(crate) fn assignment(&self) -> BTreeSet<i32> {
        self.consumer
            .assignment()
            .map(|tpl| partitions_of(&tpl))
            .unwrap_or_default()
    }

    /// The rebalance callbacks so far.
    pub(crate) fn events(&self) -> Vec<RebalanceEvent> {
        self.consumer.context().events.lock().unwrap().clone()
    }

    /// Errors of commits made in the revoke callback.
    pub(crate) fn revoke_commit_errors(&self) -> Vec<String> {
        self.consumer
            .context()
            .revoke_commit_errors
            .lock()
            .unwrap()
            .clone()
    }

    /// Next offset to process per partition, from what was received.
    pub(crate) fn processed(&self) -> BTreeMap<i32, i64> {
        self.consumer.context().processed.lock().unwrap().clone()
    }

    /// Commits the given next-offsets synchronously.
    pub(crate) fn commit(&self, offsets: &BTreeMap<i32, i64>) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o))?;
        }
        self.consumer
            .commit(&tpl, CommitMode::Sync)
            .with_context(|| format!("{}: committing {offsets:?}", self.name))
    }

    /// Commits the processed offsets of the partitions it owns now.
    pub(crate) fn commit_processed(&self) -> Result<()> {
        let owned = self.assignment();
        let offsets: BTreeMap<i32, i64> = self
            .processed()
            .into_iter()
            .filter(|(p, _)| owned.contains(p))
            .collect();
        if offsets.is_empty() {
            return Ok(());
        }
        self.commit(&offsets)
    }
}

/// Polls every member in turn until `done` holds, at most `timeout`. The
/// error names `what` and each member's assignment and record count.
pub(crate) fn poll_until<F>(
    members: &mut [Member],
    what: &str,
    timeout: Duration,
    mut done: F,
) -> Result<()>
where
    F: FnMut(&[Member]) -> bool,
{
    let deadline = Instant::now() + timeout;
    loop {
        for m in members.iter_mut() {
            m.poll(Duration::from_millis(10))?;
        }
        if done(members) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out after {timeout:?} waiting for {what}; members: {:?}",
                members
            );
        }
    }
}

/// Polls every member for `dur` (to give stray records or rebalances the
/// chance to show up).
pub(crate) fn poll_for(members: &mut [Member], dur: Duration) -> Result<()> {
    let deadline = Instant::now() + dur;
    while Instant::now() < deadline {
        for m in members.iter_mut() {
            m.poll(Duration::from_millis(10))?;
        }
    }
    Ok(())
}

/// Whether the members own disjoint partitions, together `0..partitions`,
/// with the given sizes in member order.
pub(crate) fn assignment_is(members: &[Member], partitions: i32, sizes: &[usize]) -> bool {
    let sets: Vec<BTreeSet<i32>> = members.iter().map(Member::assignment).collect();
    let total: usize = sets.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
    sets.iter().map(BTreeSet::len).collect::<Vec<_>>() == sizes
        && total == union.len()
        && union == (0..partitions).collect()
}

/// A produced record: the value `value-{i}` under key `key-{i}`, where the
/// default partitioner put it.
pub(crate) type Produced = BTreeMap<(i32, i64), String>;

/// Produces records `range` with keys `key-{i}` and values `value-{i}` (or
/// `{prefix}-{i}`), lets the partitioner choose, and returns where each
/// landed.
pub(crate) async fn produce_keyed(
    producer: &FutureProducer,
    topic: &str,
    prefix: &str,
    range: std::ops::Range<usize>,
) -> Produced {
    let mut futs = Vec::new();
    for i in range {
        let key = format!("key-{i}");
        let value = format!("{prefix}-{i}");
        let rec = FutureRecord::to(topic)
            .key(key.as_bytes())
            .payload(value.as_bytes());
        let fut = producer
            .send_result(rec)
            .map_err(|(e, _)| e)
            .unwrap_or_else(|e| panic!("enqueueing record {i}: {e}"));
        futs.push((value, fut));
    }
    let mut out = Produced::new();
    for (value, f) in futs {
        let d = tokio::time::timeout(OP_TIMEOUT, f)
            .await
            .expect("delivery report in time")
            .expect("delivery report")
            .unwrap_or_else(|(e, _)| panic!("producing {value}: {e}"));
        let _ = out.insert((d.partition, d.offset), value);
    }
    out
}

/// Next offset after the last produced record per partition.
pub(crate) fn end_offsets(produced: &Produced) -> BTreeMap<i32, i64> {
    let mut ends = BTreeMap::new();
    for (p, o) in produced.keys() {
        let e = ends.entry(*p).or_insert(0);
        *e = (*e).max(o + 1);
    }
    ends
}

/// Checks that `deliveries` are exactly `expected`, each once, with the
/// right values; `what` names the scope in the failure.
pub(crate) fn assert_exactly_once(what: &str, deliveries: &[Delivery], expected: &Produced) {
    let mut seen: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for d in deliveries {
        match expected.get(&(d.partition, d.offset)) {
            Some(v) => assert_eq!(
                v, &d.value,
                "{what}: wrong value at {}/{}",
                d.partition, d.offset
            ),
            None => panic!(
                "{what}: unexpected record {}/{} {:?}",
                d.partition, d.offset, d.value
            ),
        }
        *seen.entry((d.partition, d.offset)).or_default() += 1;
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    let missing: Vec<_> = expected.keys().filter(|k| !seen.contains_key(k)).collect();
    assert!(
        duplicates.is_empty() && missing.is_empty(),
        "{what}: {} of {} records delivered more than once (first: {:?}), {} missing (first: {:?})",
        duplicates.len(),
        expected.len(),
        &duplicates[..duplicates.len().min(10)],
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

/// A consumer that only looks up committed offsets (OffsetFetch) for
/// `group`; it never joins the group.
pub(crate) fn offsets_observer(broker: &BrokerProcess, group: &str) -> BaseConsumer {
    broker.consumer(&[("group.id", group), ("enable.partition.eof", "false")])
}

/// The group's committed offsets for partitions `0..partitions` of `topic`
/// (`None` where nothing is committed).
pub(crate) fn committed(
    observer: &BaseConsumer,
    topic: &str,
    partitions: i32,
) -> Result<BTreeMap<i32, Option<i64>>> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let _ = tpl.add_partition(topic, p);
    }
    let res = observer
        .committed_offsets(tpl, OP_TIMEOUT)
        .context("OffsetFetch")?;
    let mut out = BTreeMap::new();
    for e in res.elements() {
        e.error()
            .with_context(|| format!("committed offset of {topic}/{}", e.partition()))?;
        let off = match e.offset() {
            Offset::Offset(o) => Some(o),
            Offset::Invalid => None,
            other => bail!("partition {}: committed offset {other:?}", e.partition()),
        };
        let _ = out.insert(e.partition(), off);
    }
    Ok(out)
}

/// The value of a counter or gauge without labels on the broker's
/// `/metrics`.
pub(crate) fn metric(broker: &BrokerProcess, name: &str) -> Result<f64> {
    let resp = http_get(broker.http_addr(), "/metrics", Duration::from_secs(10))?;
    let text = resp.text();
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .ok_or_else(|| anyhow!("{name} not in /metrics"))?;
    let value = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("no value in {line:?}"))?;
    value.parse().with_context(|| format!("parsing {line:?}"))
}

/// The kcat binary; panics with instructions when it is missing.
pub(crate) fn kcat_bin() -> PathBuf {
    std::env::var_os("KCAT_BIN")
        .map(PathBuf::from)
        .or_else(|| find_on_path("kcat"))
        .or_else(|| find_on_path("kafkacat"))
        .unwrap_or_else(|| {
            panic!(
                "kcat is not installed (Debian package `kcat`); run \
                 scripts/install-test-tools.sh or set KCAT_BIN. This test never skips."
            )
        })
}

/// A `kcat -G` balanced consumer in its own process, printing
/// `partition offset value` lines (unbuffered) to a file. Auto-commits
/// every 100 ms. Killed (SIGKILL) when dropped.
#[derive(Debug)]
pub(crate) struct KcatMember {
    child: Option<Child>,
    out_path: PathBuf,
    err_path: PathBuf,
    what: String,
}

impl KcatMember {
    /// Starts `kcat -G group topic` against the broker with `extra` `-X`
    /// properties.
    pub(crate) fn start(
        broker: &BrokerProcess,
        group: &str,
        topic: &str,
        extra: &[(&str, &str)],
    ) -> KcatMember {
        let n = unique_name("kcat-member");
        let out_path = broker.temp_dir().join(format!("{n}.out"));
        let err_path = broker.temp_dir().join(format!("{n}.err"));
        let session = format!("session.timeout.ms={SESSION_TIMEOUT_MS}");
        let mut args: Vec<String> = vec![
            "-b".into(),
            broker.bootstrap(),
            "-u".into(),
            "-f".into(),
            "%p %o %s\\n".into(),
        ];
        let mut props: Vec<String> = vec![
            "broker.address.family=v4".into(),
            session,
            "heartbeat.interval.ms=500".into(),
            "auto.offset.reset=earliest".into(),
            "auto.commit.interval.ms=100".into(),
            "fetch.wait.max.ms=100".into(),
        ];
        props.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
        for p in props {
            args.push("-X".into());
            args.push(p);
        }
        args.extend(["-G".into(), group.to_owned(), topic.to_owned()]);
        let what = format!("kcat {}", args.join(" "));
        let child = Command::new(kcat_bin())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        KcatMember {
            child: Some(child),
            out_path,
            err_path,
            what,
        }
    }

    /// The records printed so far (complete lines only).
    pub(crate) fn deliveries(&self) -> Vec<Delivery> {
        let text = fs::read_to_string(&self.out_path).unwrap_or_default();
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        complete
            .lines()
            .map(|l| {
                let mut parts = l.splitn(3, ' ');
                let parse = |s: Option<&str>| -> i64 {
                    s.and_then(|s| s.parse().ok())
                        .unwrap_or_else(|| panic!("bad kcat output line {l:?}"))
                };
                let partition = parse(parts.next()) as i32;
                let offset = parse(parts.next());
                Delivery {
                    partition,
                    offset,
                    value: parts.next().unwrap_or_default().to_owned(),
                }
            })
            .collect()
    }

    /// kcat's stderr (its rebalance and error messages).
    pub(crate) fn stderr(&self) -> String {
        fs::read_to_string(&self.err_path).unwrap_or_default()
    }

    /// Fails if kcat exited.
    pub(crate) fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "{} exited with {status}\n--- stderr ---\n{}",
                    self.what,
                    self.stderr()
                );
            }
        }
    }

    /// SIGKILL: the member vanishes without a LeaveGroup.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits (bounded) for kcat to commit, leave and exit.
    pub(crate) fn terminate(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -TERM failed: {status}");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{} did not exit within 30 s of SIGTERM\n{}",
                    self.what,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for KcatMember {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- {} stderr ---\n{}\n--- end of kcat stderr ---",
                self.what,
                self.stderr()
            );
        }
        self.kill9();
    }
}
