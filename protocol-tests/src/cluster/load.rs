//! Load for failure tests: [`ProduceLoad`], an idempotent, `acks=all`
//! rdkafka producer on its own thread that sends a bounded number of
//! records (payload = the record's sequence number, keys spread over the
//! partitions), optionally at a fixed rate, and records every
//! acknowledgement in an [`AckLedger`]: partition, offset, sequence number,
//! when it was sent and when acked. [`super::verify`] checks the log against
//! the ledger afterwards.
//!
//! All waits are bounded and wake on events (a condition variable signalled
//! by the delivery callback), not on polling.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

/// Different keys the load cycles through (spread over the partitions by
/// librdkafka's partitioner).
const KEY_SPREAD: u64 = 997;
/// How long the sender waits for the records in flight at its end: the
/// message timeout (45 s) plus a margin. A join must allow the send deadline
/// plus this.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a reader or producer thread may live at most, whatever the
/// test does.
pub(super) const THREAD_LIFETIME: Duration = Duration::from_secs(600);

/// One acknowledged record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The record's sequence number (its payload).
    pub seq: u64,
    /// Partition the broker stored it in.
    pub partition: i32,
    /// Offset the broker acknowledged.
    pub offset: i64,
    /// When it was handed to the producer.
    pub sent_at: Instant,
    /// When the acknowledgement arrived.
    pub acked_at: Instant,
}

/// A record the producer gave up on (or could not enqueue).
#[derive(Debug, Clone)]
pub struct ProduceError {
    /// The record's sequence number.
    pub seq: u64,
    /// When the failure was reported.
    pub at: Instant,
    /// What librdkafka said.
    pub error: String,
}

#[derive(Debug, Default)]
struct LedgerState {
    acks: Vec<Ack>,
    errors: Vec<ProduceError>,
    /// Enqueued and not yet reported (acked or failed).
    in_flight: usize,
    sent: u64,
}

/// Every acknowledgement and error of a [`ProduceLoad`]; shared with the
/// producer's delivery callback, which signals a condition variable on each
/// report.
#[derive(Debug, Clone, Default)]
pub struct AckLedger {
    inner: Arc<(Mutex<LedgerState>, Condvar)>,
}

impl AckLedger {
    fn lock(&self) -> MutexGuard<'_, LedgerState> {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, outcome: std::result::Result<Ack, ProduceError>) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        match outcome {
            Ok(ack) => state.acks.push(ack),
            Err(error) => state.errors.push(error),
        }
        drop(state);
        self.inner.1.notify_all();
    }

    /// Every acknowledgement so far, in arrival order.
    pub fn acks(&self) -> Vec<Ack> {
        self.lock().acks.clone()
    }

    /// Number of acknowledgements so far.
    pub fn ack_count(&self) -> usize {
        self.lock().acks.len()
    }

    /// Every error so far.
    pub fn errors(&self) -> Vec<ProduceError> {
        self.lock().errors.clone()
    }

    /// Records handed to the producer so far.
    pub fn sent(&self) -> u64 {
        self.lock().sent
    }

    /// Waits until some acknowledgement satisfies `pred` (checking those
    /// already there first); returns the earliest such one.
    pub fn wait_for_ack<F>(&self, what: &str, timeout: Duration, pred: F) -> Result<Ack>
    where
        F: Fn(&Ack) -> bool,
    {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        let mut checked = 0;
        loop {
            if let Some(ack) = state.acks[checked..].iter().find(|a| pred(a)) {
                return Ok(*ack);
            }
            checked = state.acks.len();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "timed out after {timeout:?} waiting for {what} ({} sent, {} acks, {} errors so far, last error: {:?})",
                    state.sent,
                    state.acks.len(),
                    state.errors.len(),
                    state.errors.last().map(|e| &e.error)
                );
            }
            state = self
                .inner
                .1
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits until at least `n` records are acknowledged.
    pub fn wait_for_acks(&self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while state.acks.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "timed out after {timeout:?}: {} of {n} records acknowledged ({} errors, last: {:?})",
                    state.acks.len(),
                    state.errors.len(),
                    state.errors.last().map(|e| &e.error)
                );
            }
            state = self
                .inner
                .1
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(())
    }

    /// Blocks the sender while `max` records are in flight, until `deadline`.
    fn wait_in_flight_below(&self, max: usize, deadline: Instant) -> bool {
        let mut state = self.lock();
        while state.in_flight >= max {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .inner
                .1
                .wait_timeout(state, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Counts a record as in flight before it is handed to librdkafka, so
    /// that an early delivery report never finds the count at zero.
    fn begin_send(&self) {
        let mut state = self.lock();
        state.in_flight += 1;
        state.sent += 1;
    }

    /// Undoes [`Self::begin_send`] when librdkafka did not take the record.
    fn cancel_send(&self) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        state.sent = state.sent.saturating_sub(1);
    }

    fn failed_to_enqueue(&self, seq: u64, error: String) {
        self.lock().errors.push(ProduceError {
            seq,
            at: Instant::now(),
            error,
        });
        self.inner.1.notify_all();
    }

    /// Waits (a moment) for any report; for the sender when the queue is full.
    fn wait_for_report(&self, max: Duration) {
        let state = self.lock();
        let _unused = self.inner.1.wait_timeout(state, max);
    }
}

/// What a record carries through librdkafka to its delivery report.
#[derive(Debug)]
struct Sent {
    seq: u64,
    at: Instant,
}

/// Sends delivery reports to the ledger.
struct LedgerContext {
    ledger: AckLedger,
}

impl ClientContext for LedgerContext {}

impl ProducerContext for LedgerContext {
    type DeliveryOpaque = Box<Sent>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Sent>) {
        let now = Instant::now();
        let outcome = match result {
            Ok(message) => Ok(Ack {
                seq: sent.seq,
                partition: message.partition(),
                offset: message.offset(),
                sent_at: sent.at,
                acked_at: now,
            }),
            Err((error, _)) => Err(ProduceError {
                seq: sent.seq,
                at: now,
                error: error.to_string(),
            }),
        };
        self.ledger.record(outcome);
    }
}

/// Settings of a [`ProduceLoad`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Topic to write to.
    pub topic: String,
    /// Records to send at most (sequence numbers `0..records`).
    pub records: u64,
    /// Records per second; `None` sends as fast as the in-flight bound lets.
    pub rate_per_sec: Option<u32>,
    /// Records enqueued and not yet acknowledged or failed, at most.
    pub max_in_flight: usize,
    /// How long the sender may send; it stops early when this passes.
    pub send_deadline: Duration,
    /// Producer settings on top of the load's own (acks=all, idempotence).
    pub producer_config: Vec<(String, String)>,
}

impl LoadOptions {
    /// `records` records to `topic`, unpaced, at most 5000 in flight, for at
    /// most 120 s.
    pub fn new(topic: &str, records: u64) -> Self {
        LoadOptions {
            topic: topic.to_owned(),
            records,
            rate_per_sec: None,
            max_in_flight: 5000,
            send_deadline: Duration::from_secs(120),
            producer_config: Vec::new(),
        }
    }

    /// Paces the sender at `rate` records per second.
    pub fn rate(mut self, rate: u32) -> Self {
        self.rate_per_sec = Some(rate.max(1));
        self
    }

    /// Sets how long the sender may send.
    pub fn send_deadline(mut self, deadline: Duration) -> Self {
        self.send_deadline = deadline;
        self
    }

    /// Overrides a producer setting.
    pub fn producer_set(mut self, key: &str, value: &str) -> Self {
        self.producer_config
            .push((key.to_owned(), value.to_owned()));
        self
    }
}

/// The totals of a finished [`ProduceLoad`].
#[derive(Debug, Clone)]
pub struct LoadSummary {
    /// Records handed to the producer.
    pub sent: u64,
    /// Records acknowledged.
    pub acked: usize,
    /// Records that failed (timed out, refused, or not enqueued).
    pub errors: usize,
    /// Records still unreported when the producer was dropped (flush timed
    /// out); their outcome is unknown.
    pub unresolved: i32,
    /// librdkafka's fatal error, if the producer hit one (e.g. an
    /// idempotence violation).
    pub fatal: Option<String>,
    /// How long sending and draining took.
    pub elapsed: Duration,
}

impl fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent={} acked={} errors={} unresolved={} fatal={} elapsed_ms={}",
            self.sent,
            self.acked,
            self.errors,
            self.unresolved,
            self.fatal.as_deref().unwrap_or("none"),
            self.elapsed.as_millis()
        )
    }
}

/// A producer thread sending a bounded load; see the module doc.
#[derive(Debug)]
pub struct ProduceLoad {
    ledger: AckLedger,
    stop: Arc<AtomicBool>,
    done: mpsc::Receiver<Result<LoadSummary>>,
    thread: Option<JoinHandle<()>>,
}

impl ProduceLoad {
    /// Creates the producer (`enable.idempotence=true`, `acks=all`, 45 s
    /// message timeout, 5 s request timeout so that a request to a frozen
    /// leader gives up in time) and starts sending.
    pub fn start(base: ClientConfig, opts: LoadOptions) -> Result<Self> {
        let ledger = AckLedger::default();
        let mut cfg = base;
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "45000")
            .set("request.timeout.ms", "5000")
            .set("retry.backoff.ms", "50")
            .set("retry.backoff.max.ms", "500");
        for (key, value) in &opts.producer_config {
            cfg.set(key, value);
        }
        let producer: ThreadedProducer<LedgerContext> = cfg
            .create_with_context(LedgerContext {
                ledger: ledger.clone(),
            })
            .context("creating the idempotent producer")?;
        let stop = Arc::new(AtomicBool::new(false));
        let (done_tx, done) = mpsc::channel();
        let thread = {
            let ledger = ledger.clone();
            let stop = stop.clone();
            thread::Builder::new()
                .name("cluster-load".to_owned())
                .spawn(move || {
                    let result = send_all(&producer, &ledger, &stop, &opts);
                    let _ = done_tx.send(result);
                })
                .context("spawning the producer thread")?
        };
        Ok(ProduceLoad {
            ledger,
            stop,
            done,
            thread: Some(thread),
        })
    }

    /// The acknowledgements and errors so far.
    pub fn ledger(&self) -> &AckLedger {
        &self.ledger
    }

    /// Stops sending new records (those in flight still resolve).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits up to `timeout` for the sender to finish (all records sent,
    /// stopped, or past its deadline) and drain; returns the totals.
    pub fn join(mut self, timeout: Duration) -> Result<LoadSummary> {
        let result = match self.done.recv_timeout(timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.stop();
                bail!(
                    "the producer did not finish within {timeout:?} ({} sent, {} acked)",
                    self.ledger.sent(),
                    self.ledger.ack_count()
                )
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(anyhow!("the producer thread panicked"))
            }
        };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        result
    }
}

impl Drop for ProduceLoad {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The sender loop: paced, bounded in flight, stops on the flag, the
/// deadline or a fatal error; then flushes (bounded by the message timeout).
fn send_all(
    producer: &ThreadedProducer<LedgerContext>,
    ledger: &AckLedger,
    stop: &AtomicBool,
    opts: &LoadOptions,
) -> Result<LoadSummary> {
    let started = Instant::now();
    let deadline = started + opts.send_deadline.min(THREAD_LIFETIME);
    let mut fatal = None;
    'records: for seq in 0..opts.records {
        if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            break;
        }
        if let Some(rate) = opts.rate_per_sec {
            let due = started + Duration::from_secs_f64(seq as f64 / f64::from(rate));
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
        }
        if !ledger.wait_in_flight_below(opts.max_in_flight, deadline) {
            break;
        }
        let key = format!("k{}", seq % KEY_SPREAD);
        let payload = seq.to_string();
        let mut record = BaseRecord::with_opaque_to(
            &opts.topic,
            Box::new(Sent {
                seq,
                at: Instant::now(),
            }),
        )
        .key(&key)
        .payload(&payload);
        loop {
            ledger.begin_send();
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    ledger.cancel_send();
                    if Instant::now() >= deadline || stop.load(Ordering::Relaxed) {
                        break 'records;
                    }
                    ledger.wait_for_report(Duration::from_millis(50));
                    record = back;
                    record.delivery_opaque.at = Instant::now();
                }
                Err((error, _)) => {
                    ledger.cancel_send();
                    ledger.failed_to_enqueue(seq, error.to_string());
                    break;
                }
            }
        }
        if let Some((code, reason)) = producer.client().fatal_error() {
            fatal = Some(format!("{code:?}: {reason}"));
            break;
        }
    }
    // Everything enqueued resolves within message.timeout.ms; allow a margin.
    let _ = producer.flush(FLUSH_TIMEOUT);
    if fatal.is_none() {
        fatal = producer
            .client()
            .fatal_error()
            .map(|(code, reason)| format!("{code:?}: {reason}"));
    }
    let state = ledger.lock();
    Ok(LoadSummary {
        sent: state.sent,
        acked: state.acks.len(),
        errors: state.errors.len(),
        unresolved: producer.in_flight_count(),
        fatal,
        elapsed: started.elapsed(),
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

    #[test]
    fn ledger_waits_wake_on_reports() {
        let ledger = AckLedger::default();
        let writer = ledger.clone();
        let handle = thread::spawn(move || {
            for seq in 0..3 {
                writer.begin_send();
                writer.record(Ok(ack(seq as i32 % 2, 0, seq)));
            }
        });
        ledger.wait_for_acks(3, Duration::from_secs(10)).unwrap();
        let found = ledger
            .wait_for_ack("an ack on partition 1", Duration::from_secs(10), |a| {
                a.partition == 1
            })
            .unwrap();
        assert_eq!(found.seq, 1);
        handle.join().unwrap();
        assert!(ledger
            .wait_for_ack("never", Duration::from_millis(10), |a| a.partition == 7)
            .is_err());
    }
}
