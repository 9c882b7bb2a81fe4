//! A transactional id's state as a pure state machine: the decisions of
//! Kafka's transaction coordinator for InitProducerId, AddPartitionsToTxn,
//! AddOffsetsToTxn, EndTxn and transaction timeouts, with their error codes.
//!
//! [`super::transaction_coordinator`] stores this state, writes the commit
//! and abort markers and serves the requests. Nothing here does I/O: each
//! function takes
//! the current state and a request and returns the next state and what to
//! do, or the Kafka error to answer with.
//!
//! States and transitions are Kafka's (`TransactionState`, before KIP-890's
//! epoch bump per transaction):
//!
//! ```text
//! Empty ──add──▶ Ongoing ──end(commit)──▶ PrepareCommit ──markers──▶ CompleteCommit
//!   ▲              │  └─────end(abort)/timeout──▶ PrepareAbort ──markers──▶ CompleteAbort
//!   └─init─────────┘ (init on Ongoing: fence with a new epoch, then abort)
//! ```
//!
//! Complete* behave like Empty for the next transaction. Prepare* wait for
//! their markers: requests meanwhile get CONCURRENT_TRANSACTIONS, which
//! clients retry.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;

/// The last epoch a producer id may use; the next InitProducerId takes a
/// new producer id (Kafka: `Short.MaxValue - 1`, one left for fencing).
pub const MAX_PRODUCER_EPOCH: i16 = i16::MAX - 1;

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    /// No transaction since the last InitProducerId.
    Empty,
    /// Partitions added; records may be written.
    Ongoing,
    /// EndTxn(commit) accepted; commit markers being written.
    PrepareCommit,
    /// EndTxn(abort), a timeout or a fencing InitProducerId; abort markers
    /// being written.
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    /// Kafka's name, for DescribeTransactions and ListTransactions.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    /// No transaction in flight: the next one may begin.
    fn is_idle(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

/// A partition taking part in a transaction: topic name and index.
pub type TxnPartition = (String, i32);

/// One transactional id's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// `transaction.timeout.ms` the producer asked for.
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions of the transaction in flight.
    pub partitions: BTreeSet<TxnPartition>,
    /// When the transaction in flight began (ms), -1 if none.
    pub start_ms: i64,
    /// When this state was last changed (ms).
    pub update_ms: i64,
}

/// What InitProducerId asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitRequest {
    pub timeout_ms: i32,
    /// The producer id and epoch the client had (KIP-360), or -1.
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// What InitProducerId does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitDecision {
    /// Store this state and answer with its producer id and epoch.
    Ready(TxnMetadata),
    /// A new producer id is needed (an unknown transactional id, or an
    /// exhausted epoch): allocate one, then call [`init_with_new_id`].
    NeedProducerId,
    /// A transaction was in flight: it is fenced and aborted under a new
    /// epoch. Store this (PrepareAbort) state, write abort markers to its
    /// partitions, and answer CONCURRENT_TRANSACTIONS; the client retries
    /// and gets a fresh epoch once the abort completes.
    AbortThenRetry(TxnMetadata),
}

/// Checks the timeout a producer asks for against
/// `transaction.max.timeout.ms`.
fn check_timeout(timeout_ms: i32, max_timeout_ms: i32) -> Result<(), ResponseError> {
    if timeout_ms <= 0 || timeout_ms > max_timeout_ms {
        return Err(ResponseError::InvalidTransactionTimeout);
    }
    Ok(())
}

/// InitProducerId for a transactional id in state `current` (`None`: never
/// seen, or expired).
pub fn init(
    current: Option<&TxnMetadata>,
    request: InitRequest,
    max_timeout_ms: i32,
    now_ms: i64,
) -> Result<InitDecision, ResponseError> {
    check_timeout(request.timeout_ms, max_timeout_ms)?;
    let Some(current) = current else {
        return Ok(InitDecision::NeedProducerId);
    };
    // KIP-360: a client that names its previous producer id and epoch must
    // be the latest one (or the one just before a bump it did not see).
    if request.producer_id >= 0 {
        let same_id = request.producer_id == current.producer_id;
        let current_or_retry = request.producer_epoch == current.producer_epoch
            || request.producer_epoch == current.producer_epoch.wrapping_sub(1);
        if !same_id || !current_or_retry {
            return Err(ResponseError::ProducerFenced);
        }
    }
    match current.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort => {
            Err(ResponseError::ConcurrentTransactions)
        }
        TxnState::Ongoing => {
            // Fence the old producer with a new epoch, then abort its
            // transaction under that epoch so its late writes are refused.
            let mut next = current.clone();
            next.producer_epoch = next_epoch(current.producer_epoch);
            next.state = TxnState::PrepareAbort;
            next.update_ms = now_ms;
            Ok(InitDecision::AbortThenRetry(next))
        }
        _ if current.producer_epoch >= MAX_PRODUCER_EPOCH => Ok(InitDecision::NeedProducerId),
        _ => {
            let mut next = current.clone();
            next.producer_epoch = current.producer_epoch + 1;
            next.timeout_ms = request.timeout_ms;
            next.state = TxnState::Empty;
            next.partitions.clear();
            next.start_ms = -1;
            next.update_ms = now_ms;
            Ok(InitDecision::Ready(next))
        }
    }
}

/// The epoch that fences `epoch` (saturating: an exhausted producer id is
/// replaced at the next InitProducerId anyway).
fn next_epoch(epoch: i16) -> i16 {
    epoch.saturating_add(1)
}

/// The state of a transactional id given a freshly allocated producer id.
pub fn init_with_new_id(producer_id: i64, timeout_ms: i32, now_ms: i64) -> TxnMetadata {
    TxnMetadata {
        producer_id,
        producer_epoch: 0,
        timeout_ms,
        state: TxnState::Empty,
        partitions: BTreeSet::new(),
        start_ms: -1,
        update_ms: now_ms,
    }
}

/// Checks that a request comes from the transactional id's current producer.
fn check_producer(
    current: Option<&TxnMetadata>,
    producer_id: i64,
    producer_epoch: i16,
) -> Result<&TxnMetadata, ResponseError> {
    let current = current.ok_or(ResponseError::InvalidProducerIdMapping)?;
    if current.producer_id != producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if current.producer_epoch != producer_epoch {
        return Err(ResponseError::ProducerFenced);
    }
    Ok(current)
}

/// AddPartitionsToTxn (and AddOffsetsToTxn, whose partition is the group's
/// `__consumer_offsets` partition). `None`: nothing changes (every
/// partition is in already), answer success without a write.
pub fn add_partitions(
    current: Option<&TxnMetadata>,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[TxnPartition],
    now_ms: i64,
) -> Result<Option<TxnMetadata>, ResponseError> {
    let current = check_producer(current, producer_id, producer_epoch)?;
    match current.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort => {
            return Err(ResponseError::ConcurrentTransactions)
        }
        TxnState::Ongoing if partitions.iter().all(|p| current.partitions.contains(p)) => {
            return Ok(None)
        }
        _ => {}
    }
    let mut next = current.clone();
    if current.state.is_idle() {
        next.partitions.clear();
        next.start_ms = now_ms;
    }
    next.partitions.extend(partitions.iter().cloned());
    next.state = TxnState::Ongoing;
    next.update_ms = now_ms;
    Ok(Some(next))
}

/// What EndTxn does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndDecision {
    /// Store this Prepare* state, answer success, then write the markers
    /// and store [`complete`]'s state.
    Prepare(TxnMetadata),
    /// The same EndTxn again, already done or in progress: answer success
    /// (done) or CONCURRENT_TRANSACTIONS (in progress) without a write.
    Retry(Result<(), ResponseError>),
}

/// EndTxn: commit (`commit`) or abort the transaction in flight.
pub fn end(
    current: Option<&TxnMetadata>,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    now_ms: i64,
) -> Result<EndDecision, ResponseError> {
    let current = check_producer(current, producer_id, producer_epoch)?;
    match (current.state, commit) {
        (TxnState::Ongoing, _) => {
            let mut next = current.clone();
            next.state = if commit {
                TxnState::PrepareCommit
            } else {
                TxnState::PrepareAbort
            };
            next.update_ms = now_ms;
            Ok(EndDecision::Prepare(next))
        }
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
            Ok(EndDecision::Retry(Ok(())))
        }
        (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => Ok(
            EndDecision::Retry(Err(ResponseError::ConcurrentTransactions)),
        ),
        // Ending a transaction that never began, or the opposite of the
        // one that ended.
        _ => Err(ResponseError::InvalidTxnState),
    }
}

/// After the markers of a Prepare* state are written: the Complete* state.
/// `None` if `current` was not waiting for markers.
pub fn complete(current: &TxnMetadata, now_ms: i64) -> Option<TxnMetadata> {
    let state = match current.state {
        TxnState::PrepareCommit => TxnState::CompleteCommit,
        TxnState::PrepareAbort => TxnState::CompleteAbort,
        _ => return None,
    };
    let mut next = current.clone();
    next.state = state;
    next.partitions.clear();
    next.start_ms = -1;
    next.update_ms = now_ms;
    Some(next)
}

/// A transaction open longer than its timeout is aborted by the
/// coordinator, under a new epoch so that its producer is fenced (Kafka
/// does the same). `None` if `current` has not timed out.
pub fn abort_if_timed_out(current: &TxnMetadata, now_ms: i64) -> Option<TxnMetadata> {
    if current.state != TxnState::Ongoing
        || now_ms
            < current
                .start_ms
                .saturating_add(i64::from(current.timeout_ms))
    {
        return None;
    }
    let mut next = current.clone();
    next.producer_epoch = next_epoch(current.producer_epoch);
    next.state = TxnState::PrepareAbort;
    next.update_ms = now_ms;
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_TIMEOUT: i32 = 900_000;

    fn request() -> InitRequest {
        InitRequest {
            timeout_ms: 60_000,
            producer_id: -1,
            producer_epoch: -1,
        }
    }

    fn p(topic: &str, partition: i32) -> TxnPartition {
        (topic.to_owned(), partition)
    }

    fn ready(decision: Result<InitDecision, ResponseError>) -> TxnMetadata {
        match decision {
            Ok(InitDecision::Ready(m)) => m,
            other => panic!("expected Ready, got {other:?}"),
        }
    }

    fn ongoing() -> TxnMetadata {
        let m = init_with_new_id(7, 60_000, 0);
        add_partitions(Some(&m), 7, 0, &[p("a", 0)], 10)
            .expect("add")
            .expect("changed")
    }

    #[test]
    fn a_new_transactional_id_needs_a_producer_id_then_starts_empty_at_epoch_0() {
        assert_eq!(
            init(None, request(), MAX_TIMEOUT, 0),
            Ok(InitDecision::NeedProducerId)
        );
        let m = init_with_new_id(7, 60_000, 5);
        assert_eq!(
            (m.producer_id, m.producer_epoch, m.state),
            (7, 0, TxnState::Empty)
        );
    }

    #[test]
    fn init_again_bumps_the_epoch_and_fences_the_old_producer() {
        let m = init_with_new_id(7, 60_000, 0);
        let next = ready(init(Some(&m), request(), MAX_TIMEOUT, 1));
        assert_eq!((next.producer_id, next.producer_epoch), (7, 1));
        // The old producer, at epoch 0, is fenced from now on.
        assert_eq!(
            add_partitions(Some(&next), 7, 0, &[p("a", 0)], 2),
            Err(ResponseError::ProducerFenced)
        );
    }

    #[test]
    fn an_exhausted_epoch_takes_a_new_producer_id() {
        let mut m = init_with_new_id(7, 60_000, 0);
        m.producer_epoch = MAX_PRODUCER_EPOCH;
        assert_eq!(
            init(Some(&m), request(), MAX_TIMEOUT, 1),
            Ok(InitDecision::NeedProducerId)
        );
    }

    #[test]
    fn init_during_a_transaction_aborts_it_under_a_new_epoch() {
        let m = ongoing();
        match init(Some(&m), request(), MAX_TIMEOUT, 20) {
            Ok(InitDecision::AbortThenRetry(next)) => {
                assert_eq!(next.state, TxnState::PrepareAbort);
                assert_eq!(next.producer_epoch, 1);
                assert_eq!(next.partitions, m.partitions, "markers go to these");
            }
            other => panic!("expected AbortThenRetry, got {other:?}"),
        }
    }

    #[test]
    fn init_while_markers_are_written_is_retried() {
        let mut m = ongoing();
        m.state = TxnState::PrepareCommit;
        assert_eq!(
            init(Some(&m), request(), MAX_TIMEOUT, 20),
            Err(ResponseError::ConcurrentTransactions)
        );
    }

    #[test]
    fn timeouts_outside_the_allowed_range_are_refused() {
        for timeout_ms in [0, -1, MAX_TIMEOUT + 1] {
            let request = InitRequest {
                timeout_ms,
                ..request()
            };
            assert_eq!(
                init(None, request, MAX_TIMEOUT, 0),
                Err(ResponseError::InvalidTransactionTimeout)
            );
        }
    }

    #[test]
    fn kip_360_init_with_a_stale_producer_is_fenced() {
        let m = ready(init(
            Some(&init_with_new_id(7, 60_000, 0)),
            request(),
            MAX_TIMEOUT,
            1,
        ));
        assert_eq!(m.producer_epoch, 1);
        let named = |producer_id, producer_epoch| InitRequest {
            producer_id,
            producer_epoch,
            ..request()
        };
        // The current epoch, or the one before (a bump it missed): allowed.
        assert!(init(Some(&m), named(7, 1), MAX_TIMEOUT, 2).is_ok());
        assert!(init(Some(&m), named(7, 0), MAX_TIMEOUT, 2).is_ok());
        // Another producer id, or an older epoch: fenced.
        assert_eq!(
            init(Some(&m), named(8, 1), MAX_TIMEOUT, 2),
            Err(ResponseError::ProducerFenced)
        );
        let mut later = m.clone();
        later.producer_epoch = 5;
        assert_eq!(
            init(Some(&later), named(7, 1), MAX_TIMEOUT, 2),
            Err(ResponseError::ProducerFenced)
        );
    }

    #[test]
    fn adding_partitions_begins_and_extends_a_transaction() {
        let m = ongoing();
        assert_eq!((m.state, m.start_ms), (TxnState::Ongoing, 10));
        let more = add_partitions(Some(&m), 7, 0, &[p("b", 1)], 11)
            .expect("add")
            .expect("changed");
        assert_eq!(more.partitions.len(), 2);
        assert_eq!(more.start_ms, 10, "the transaction began at the first add");
        // Nothing new: no write.
        assert_eq!(
            add_partitions(Some(&more), 7, 0, &[p("a", 0)], 12),
            Ok(None)
        );
    }

    #[test]
    fn adding_partitions_checks_the_producer() {
        let m = ongoing();
        assert_eq!(
            add_partitions(None, 7, 0, &[p("a", 0)], 1),
            Err(ResponseError::InvalidProducerIdMapping)
        );
        assert_eq!(
            add_partitions(Some(&m), 8, 0, &[p("a", 0)], 1),
            Err(ResponseError::InvalidProducerIdMapping)
        );
        let mut preparing = m.clone();
        preparing.state = TxnState::PrepareAbort;
        assert_eq!(
            add_partitions(Some(&preparing), 7, 0, &[p("c", 0)], 1),
            Err(ResponseError::ConcurrentTransactions)
        );
    }

    #[test]
    fn commit_prepares_then_completes_and_a_retry_succeeds() {
        let m = ongoing();
        let prepared = match end(Some(&m), 7, 0, true, 20) {
            Ok(EndDecision::Prepare(next)) => next,
            other => panic!("expected Prepare, got {other:?}"),
        };
        assert_eq!(prepared.state, TxnState::PrepareCommit);
        assert_eq!(
            end(Some(&prepared), 7, 0, true, 21),
            Ok(EndDecision::Retry(Err(
                ResponseError::ConcurrentTransactions
            )))
        );
        let done = complete(&prepared, 22).expect("was preparing");
        assert_eq!(done.state, TxnState::CompleteCommit);
        assert!(done.partitions.is_empty());
        assert_eq!(
            end(Some(&done), 7, 0, true, 23),
            Ok(EndDecision::Retry(Ok(())))
        );
        // Aborting what was committed is a state error.
        assert_eq!(
            end(Some(&done), 7, 0, false, 23),
            Err(ResponseError::InvalidTxnState)
        );
        // The next transaction starts afresh.
        let next = add_partitions(Some(&done), 7, 0, &[p("z", 0)], 30)
            .expect("add")
            .expect("changed");
        assert_eq!(next.partitions.len(), 1);
        assert_eq!(next.start_ms, 30);
    }

    #[test]
    fn ending_a_transaction_that_never_began_is_a_state_error() {
        let m = init_with_new_id(7, 60_000, 0);
        assert_eq!(
            end(Some(&m), 7, 0, true, 1),
            Err(ResponseError::InvalidTxnState)
        );
        assert_eq!(
            end(Some(&m), 7, 0, false, 1),
            Err(ResponseError::InvalidTxnState)
        );
        assert_eq!(
            end(Some(&m), 7, 3, false, 1),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(complete(&m, 1), None);
    }

    #[test]
    fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
        let m = ongoing();
        assert_eq!(abort_if_timed_out(&m, 10 + 59_999), None);
        let aborted = abort_if_timed_out(&m, 10 + 60_000).expect("timed out");
        assert_eq!(aborted.state, TxnState::PrepareAbort);
        assert_eq!(aborted.producer_epoch, 1);
        assert_eq!(
            end(Some(&aborted), 7, 0, true, 60_011),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(abort_if_timed_out(&init_with_new_id(7, 1, 0), 100), None);
    }
}
