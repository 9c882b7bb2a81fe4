//! What the cluster did with the load: [`GroupReader`], a consumer group
//! member that reads the topic on its own thread during the test and
//! remembers what it saw, and [`read_log`] plus [`verify_log`], which read
//! every partition from the beginning at the end and check that each
//! acknowledged record is there exactly once, at its offset, in order.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::load::{Ack, THREAD_LIFETIME};
use crate::unique_name;

/// What a [`GroupReader`] saw.
#[derive(Debug, Default)]
struct SeenState {
    /// (partition, offset) -> sequence number.
    records: HashMap<(i32, i64), u64>,
    /// Deliveries of an offset already seen (allowed: at-least-once).
    redeliveries: usize,
    /// An offset seen with two different records: the reader was served
    /// data that was later replaced (read above the high watermark).
    conflicts: Vec<String>,
    /// Consumer errors (most are transient during a failover).
    errors: Vec<String>,
}

/// A consumer group member reading a topic on its own thread (subscribe,
/// auto commit, from the earliest offset) for the whole test.
#[derive(Debug)]
pub struct GroupReader {
    seen: Arc<(Mutex<SeenState>, Condvar)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    group_id: String,
}

/// The totals of a stopped [`GroupReader`].
#[derive(Debug, Clone)]
pub struct GroupSummary {
    /// The group id.
    pub group_id: String,
    /// Distinct offsets seen.
    pub distinct: usize,
    /// Deliveries of an offset already seen.
    pub redeliveries: usize,
    /// Offsets seen with two different records.
    pub conflicts: Vec<String>,
    /// Consumer errors reported along the way.
    pub errors: Vec<String>,
}

impl GroupReader {
    /// Joins group `group_id` (a fresh one: it starts from the beginning)
    /// and reads `topic` until stopped.
    pub fn start(base: ClientConfig, group_id: &str, topic: &str) -> Result<Self> {
        let mut cfg = base;
        cfg.set("group.id", group_id)
            .set("client.id", unique_name("cluster-group-reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("enable.partition.eof", "false");
        let consumer: BaseConsumer = cfg.create().context("creating the group reader")?;
        consumer
            .subscribe(&[topic])
            .context("subscribing the group reader")?;
        let seen: Arc<(Mutex<SeenState>, Condvar)> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let seen = seen.clone();
            let stop = stop.clone();
            thread::Builder::new()
                .name("cluster-group-reader".to_owned())
                .spawn(move || read_group(&consumer, &seen, &stop))
                .context("spawning the group reader")?
        };
        Ok(GroupReader {
            seen,
            stop,
            thread: Some(thread),
            group_id: group_id.to_owned(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, SeenState> {
        self.seen.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The acknowledged records the reader has not seen (or saw with a
    /// different payload).
    pub fn missing(&self, acks: &[Ack]) -> Vec<Ack> {
        let seen = self.lock();
        missing_from(&seen.records, acks)
    }

    /// Waits until the reader has seen every record in `acks`.
    pub fn wait_until_seen(&self, acks: &[Ack], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut seen = self.lock();
        loop {
            let missing = missing_from(&seen.records, acks);
            if missing.is_empty() {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "group {} did not see {} of {} acknowledged records within {timeout:?} \
                     (first: {:?}; consumer errors: {:?})",
                    self.group_id,
                    missing.len(),
                    acks.len(),
                    &missing[..missing.len().min(5)],
                    &seen.errors[seen.errors.len().saturating_sub(5)..]
                );
            }
            seen = self
                .seen
                .1
                .wait_timeout(seen, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Stops the reader and returns what it saw.
    pub fn stop(mut self) -> GroupSummary {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let seen = self.lock();
        GroupSummary {
            group_id: self.group_id.clone(),
            distinct: seen.records.len(),
            redeliveries: seen.redeliveries,
            conflicts: seen.conflicts.clone(),
            errors: seen.errors.clone(),
        }
    }
}

impl Drop for GroupReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn read_group(consumer: &BaseConsumer, seen: &(Mutex<SeenState>, Condvar), stop: &AtomicBool) {
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < THREAD_LIFETIME {
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let mut state = seen.0.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(message) => {
                let key = (message.partition(), message.offset());
                match parse_seq(message.payload()) {
                    Ok(seq) => match state.records.insert(key, seq) {
                        None => {}
                        Some(previous) if previous == seq => state.redeliveries += 1,
                        Some(previous) => {
                            let conflict =
                                format!("{}/{}: first {previous}, then {seq}", key.0, key.1);
                            state.conflicts.push(conflict);
                        }
                    },
                    Err(e) => state.errors.push(format!("{}/{}: {e:#}", key.0, key.1)),
                }
            }
            Err(error) => state.errors.push(error.to_string()),
        }
        drop(state);
        seen.1.notify_all();
    }
    consumer.unsubscribe();
}

fn missing_from(records: &HashMap<(i32, i64), u64>, acks: &[Ack]) -> Vec<Ack> {
    acks.iter()
        .filter(|a| records.get(&(a.partition, a.offset)) != Some(&a.seq))
        .copied()
        .collect()
}

fn parse_seq(payload: Option<&[u8]>) -> Result<u64> {
    let bytes = payload.ok_or_else(|| anyhow!("record without a payload"))?;
    let text = std::str::from_utf8(bytes).context("payload is not UTF-8")?;
    text.parse()
        .with_context(|| format!("payload {text:?} is not a sequence number"))
}

/// One stored record: partition, offset, sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Sequence number (payload).
    pub seq: u64,
}

/// What [`read_log`] read.
#[derive(Debug, Clone)]
pub struct LogRead {
    /// Every record, in the order read (per partition by offset).
    pub records: Vec<Stored>,
    /// Every partition reached its end past the highest acknowledged
    /// offset; false when the timeout came first.
    pub complete: bool,
    /// Consumer errors seen while reading.
    pub errors: Vec<String>,
}

/// Reads partitions `0..partitions` of `topic` from the beginning with a
/// fresh consumer (assign mode) until each has reached its end past the
/// highest acknowledged offset in `acks` (a new leader's high watermark may
/// lag for a moment), at most `timeout`.
pub fn read_log(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: i32,
    acks: &[Ack],
    timeout: Duration,
) -> Result<LogRead> {
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .context("building the assignment")?;
    }
    consumer
        .assign(&assignment)
        .context("assigning partitions")?;
    let mut needed: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, -1)).collect();
    for ack in acks {
        let entry = needed.entry(ack.partition).or_insert(-1);
        *entry = (*entry).max(ack.offset);
    }
    // Per partition: next offset to read, and whether the end was reached
    // since the last record.
    let mut next: BTreeMap<i32, i64> = needed.keys().map(|&p| (p, 0)).collect();
    let mut at_end: BTreeMap<i32, bool> = needed.keys().map(|&p| (p, false)).collect();
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let deadline = Instant::now() + timeout;
    let done = |next: &BTreeMap<i32, i64>, at_end: &BTreeMap<i32, bool>| {
        needed.iter().all(|(p, max)| at_end[p] && next[p] > *max)
    };
    while !done(&next, &at_end) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(LogRead {
                records,
                complete: false,
                errors,
            });
        }
        match consumer.poll(left.min(Duration::from_millis(500))) {
            None => {}
            Some(Ok(message)) => {
                let seq = parse_seq(message.payload())
                    .with_context(|| format!("{}/{}", message.partition(), message.offset()))?;
                let _ = next.insert(message.partition(), message.offset() + 1);
                let _ = at_end.insert(message.partition(), false);
                records.push(Stored {
                    partition: message.partition(),
                    offset: message.offset(),
                    seq,
                });
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                let _ = at_end.insert(partition, true);
            }
            Some(Err(error)) => errors.push(error.to_string()),
        }
    }
    Ok(LogRead {
        records,
        complete: true,
        errors,
    })
}

/// The result of a successful [`verify_log`].
#[derive(Debug, Clone, Copy)]
pub struct LogCheck {
    /// Records in the log.
    pub stored: usize,
    /// Acknowledged records (all found).
    pub acked: usize,
    /// Records in the log that were never acknowledged (their producer
    /// gave up or the test stopped first; allowed).
    pub unacknowledged: usize,
}

/// Checks the log against the acknowledgements: every acknowledged record
/// is stored at its offset with its sequence number; no offset is read
/// twice; no sequence number is stored twice; per partition the sequence
/// numbers strictly increase with the offset (the producer's order).
pub fn verify_log(read: &LogRead, acks: &[Ack]) -> Result<LogCheck> {
    let mut by_offset: HashMap<(i32, i64), u64> = HashMap::with_capacity(read.records.len());
    let mut by_seq: HashMap<u64, (i32, i64)> = HashMap::with_capacity(read.records.len());
    let mut problems = Vec::new();
    for record in &read.records {
        let at = (record.partition, record.offset);
        if by_offset.insert(at, record.seq).is_some() {
            problems.push(format!("offset {}/{} read twice", at.0, at.1));
        }
        if let Some(first) = by_seq.insert(record.seq, at) {
            problems.push(format!(
                "sequence {} stored twice: at {}/{} and {}/{}",
                record.seq, first.0, first.1, at.0, at.1
            ));
        }
    }
    let mut per_partition: BTreeMap<i32, Vec<(i64, u64)>> = BTreeMap::new();
    for (&(partition, offset), &seq) in &by_offset {
        per_partition
            .entry(partition)
            .or_default()
            .push((offset, seq));
    }
    for (partition, records) in &mut per_partition {
        records.sort_unstable();
        for pair in records.windows(2) {
            if pair[1].1 <= pair[0].1 {
                problems.push(format!(
                    "out of order in partition {partition}: offset {} has sequence {}, offset {} has {}",
                    pair[0].0, pair[0].1, pair[1].0, pair[1].1
                ));
            }
        }
    }
    let mut lost = Vec::new();
    for ack in acks {
        match by_offset.get(&(ack.partition, ack.offset)) {
            Some(&seq) if seq == ack.seq => {}
            Some(&seq) => problems.push(format!(
                "{}/{} was acknowledged for sequence {} but holds {seq}",
                ack.partition, ack.offset, ack.seq
            )),
            None => lost.push(*ack),
        }
    }
    if !lost.is_empty() {
        lost.sort_by_key(|a| (a.partition, a.offset));
        problems.push(format!(
            "{} of {} acknowledged records are missing (first: {})",
            lost.len(),
            acks.len(),
            lost.iter()
                .take(10)
                .map(|a| format!("{}/{} seq {}", a.partition, a.offset, a.seq))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !problems.is_empty() {
        let shown = problems.len().min(20);
        bail!(
            "{} problems in the log ({} records read{}); first {shown}:\n  {}",
            problems.len(),
            read.records.len(),
            if read.complete {
                String::new()
            } else {
                format!(
                    ", reading timed out; consumer errors: {:?}",
                    &read.errors[..read.errors.len().min(5)]
                )
            },
            problems[..shown].join("\n  ")
        );
    }
    let acked = acks.len();
    Ok(LogCheck {
        stored: read.records.len(),
        acked,
        unacknowledged: read.records.len().saturating_sub(acked),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(partition: i32, offset: i64, seq: u64) -> Ack {
        let now = Instant::now();
        Ack {
            seq,
            partition,
            offset,
            sent_at: now,
            acked_at: now,
        }
    }

    fn log(records: &[(i32, i64, u64)]) -> LogRead {
        LogRead {
            records: records
                .iter()
                .map(|&(partition, offset, seq)| Stored {
                    partition,
                    offset,
                    seq,
                })
                .collect(),
            complete: true,
            errors: Vec::new(),
        }
    }

    #[test]
    fn a_complete_ordered_log_passes() {
        let read = log(&[(0, 0, 1), (0, 1, 4), (1, 0, 2), (1, 1, 3), (0, 2, 9)]);
        let check = verify_log(&read, &[ack(0, 0, 1), ack(1, 1, 3), ack(0, 1, 4)]).unwrap();
        assert_eq!((check.stored, check.acked, check.unacknowledged), (5, 3, 2));
    }

    #[test]
    fn loss_duplicates_reordering_and_replacement_fail() {
        let lost = verify_log(&log(&[(0, 0, 1)]), &[ack(0, 1, 2)]).unwrap_err();
        assert!(format!("{lost:#}").contains("1 of 1 acknowledged records are missing"));
        let duplicate = verify_log(&log(&[(0, 0, 1), (0, 1, 1)]), &[]).unwrap_err();
        assert!(format!("{duplicate:#}").contains("sequence 1 stored twice"));
        let reordered = verify_log(&log(&[(0, 0, 5), (0, 1, 3)]), &[]).unwrap_err();
        assert!(format!("{reordered:#}").contains("out of order in partition 0"));
        let replaced = verify_log(&log(&[(0, 0, 5)]), &[ack(0, 0, 4)]).unwrap_err();
        assert!(format!("{replaced:#}").contains("acknowledged for sequence 4 but holds 5"));
    }
}
