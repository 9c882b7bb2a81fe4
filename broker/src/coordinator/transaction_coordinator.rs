//! [`TransactionCoordinator`]: serves InitProducerId for transactional ids,
//! AddPartitionsToTxn, AddOffsetsToTxn and EndTxn for the transactional ids
//! whose `__transaction_state` partition this node leads, runs the state
//! machine of [`super::transaction`], stores each change in that partition
//! (acks=all) before answering, and ends transactions by writing markers to
//! their partitions' leaders ([`crate::replication::txn_markers`]).
//!
//! A new leader of a `__transaction_state` partition replays it; until
//! then, requests for its ids get COORDINATOR_LOAD_IN_PROGRESS.
//! Transactions found in PrepareCommit or PrepareAbort get their markers
//! written again (markers are idempotent: a second COMMIT of a closed
//! transaction changes nothing). Open ones are aborted by the timeout loop
//! once their `transaction.timeout.ms` passes.
//!
//! Locking: one mutex over every transactional id, never held across an
//! `.await`. A change in flight marks its id `pending`; another request
//! meanwhile gets CONCURRENT_TRANSACTIONS, which clients retry.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::internal_topic::{follow_images, InternalTopic, PartitionStatus};
use super::producer_id::ProducerIdManager;
use super::record;
use super::transaction::{self, EndDecision, InitDecision, InitRequest, TxnMetadata, TxnState};
use crate::cluster::rpc::{RpcConnection, RpcRequest, RpcResponse};
use crate::cluster::store::MetadataStore;
use crate::config::BrokerConfig;
use crate::error::Error;
use crate::log::now_ms;
use crate::metrics;
use crate::replication::txn_markers::{self, TxnMarkers};
use crate::replication::ReplicaManager;

/// Kafka's internal topic of transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// How long EndTxn (and an InitProducerId that aborts) waits for the
/// markers before answering anyway: the outcome is decided and stored once
/// Prepare* is, and the markers are retried until written.
const MARKER_WAIT: Duration = Duration::from_secs(5);

/// The pause between rounds of marker writes that failed.
const MARKER_RETRY: Duration = Duration::from_millis(100);

/// How long one marker RPC to another node may take.
const MARKER_RPC_TIMEOUT: Duration = Duration::from_secs(10);

type TxnResult<T> = std::result::Result<T, ResponseError>;

/// One transactional id.
#[derive(Debug)]
struct Slot {
    /// None until the first InitProducerId is stored.
    meta: Option<TxnMetadata>,
    /// A change is being written.
    pending: bool,
}

#[derive(Debug, Default)]
struct Inner {
    txns: HashMap<String, Slot>,
    partitions: HashMap<i32, PartitionStatus>,
}

/// The transaction coordinator of this node.
pub struct TransactionCoordinator {
    config: Arc<BrokerConfig>,
    metadata: Arc<MetadataStore>,
    replicas: Arc<ReplicaManager>,
    producer_ids: Arc<ProducerIdManager>,
    /// `__transaction_state`.
    topic: InternalTopic,
    inner: Mutex<Inner>,
    /// Woken whenever a partition finishes loading.
    loaded: Notify,
    /// Woken whenever a transaction completes (its markers are written).
    completed: Notify,
    shutdown: CancellationToken,
    tasks: Mutex<JoinSet<()>>,
}

impl std::fmt::Debug for TransactionCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionCoordinator")
            .finish_non_exhaustive()
    }
}

/// What a failed write answers: NOT_COORDINATOR once the partition moved.
fn write_error(e: &Error) -> ResponseError {
    match e {
        Error::Api {
            code: ResponseError::NotCoordinator | ResponseError::NotLeaderOrFollower,
            ..
        } => ResponseError::NotCoordinator,
        _ => ResponseError::CoordinatorNotAvailable,
    }
}

impl TransactionCoordinator {
    pub fn new(
        config: Arc<BrokerConfig>,
        metadata: Arc<MetadataStore>,
        replicas: Arc<ReplicaManager>,
        producer_ids: Arc<ProducerIdManager>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let mut configs = BTreeMap::new();
        let _ = configs.insert("cleanup.policy".to_owned(), "compact".to_owned());
        let _ = configs.insert("retention.ms".to_owned(), "-1".to_owned());
        // Kafka's default for this topic: a transaction's state survives
        // the loss of one replica.
        let _ = configs.insert("min.insync.replicas".to_owned(), "2".to_owned());
        let topic = InternalTopic::new(
            TRANSACTION_STATE_TOPIC,
            config.transaction_state_log_num_partitions,
            configs,
            config.clone(),
            metadata.clone(),
            replicas.clone(),
        );
        Arc::new(TransactionCoordinator {
            config,
            metadata,
            replicas,
            producer_ids,
            topic,
            inner: Mutex::new(Inner::default()),
            loaded: Notify::new(),
            completed: Notify::new(),
            shutdown,
            tasks: Mutex::new(JoinSet::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        while tasks.try_join_next().is_some() {}
        drop(tasks.spawn(task));
    }

    /// Starts following the topic's leadership and the timeout loop.
    pub fn start(self: &Arc<Self>) {
        let this = self.clone();
        self.spawn(async move { this.leadership_loop().await });
        let this = self.clone();
        self.spawn(async move { this.timeout_loop().await });
    }

    /// Stops the background tasks and waits for them.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        while tasks.join_next().await.is_some() {}
    }

    /// The node that coordinates `transactional_id`, if known.
    pub fn coordinator_node(&self, transactional_id: &str) -> Option<i32> {
        self.topic.coordinator_node(transactional_id)
    }

    /// FindCoordinator for a transactional id: this node, once the id's
    /// partition is loaded.
    pub async fn find_coordinator(&self, transactional_id: &str) -> TxnResult<()> {
        self.ready(transactional_id).await.map(|_| ())
    }

    async fn ensure_topic(&self) -> TxnResult<()> {
        if let Some(image) = self.topic.ensure().await? {
            let mut inner = self.lock();
            for p in self.topic.led_partitions(&image).unwrap_or_default() {
                let _ = inner.partitions.entry(p).or_insert(PartitionStatus::Loaded);
            }
            self.loaded.notify_waiters();
        }
        Ok(())
    }

    /// The checks every request starts with; the id's partition.
    async fn ready(&self, transactional_id: &str) -> TxnResult<i32> {
        self.ensure_topic().await?;
        self.topic
            .wait_ready(transactional_id, &self.loaded, |p| {
                self.lock().partitions.get(&p).copied()
            })
            .await
    }

    async fn leadership_loop(self: Arc<Self>) {
        follow_images(&self.metadata, &self.shutdown, |image| {
            let this = self.clone();
            async move { this.sync_leadership(&image).await }
        })
        .await;
    }

    /// Loads each partition this node leads in `image` and has not loaded;
    /// forgets each it no longer leads.
    pub async fn sync_leadership(
        self: &Arc<Self>,
        image: &Arc<crate::cluster::metadata::MetadataImage>,
    ) {
        let Some(led) = self.topic.led_partitions(image) else {
            return;
        };
        let partitions = self.topic.partitions();
        let to_load = {
            let mut inner = self.lock();
            let dropped: Vec<i32> = inner
                .partitions
                .keys()
                .copied()
                .filter(|p| !led.contains(p))
                .collect();
            if !dropped.is_empty() {
                info!(partitions = ?dropped, "no longer coordinating these transaction state partitions");
                for p in &dropped {
                    let _ = inner.partitions.remove(p);
                }
                inner.txns.retain(|id, _| {
                    !dropped.contains(&super::internal_topic::partition_for(id, partitions))
                });
            }
            let to_load: Vec<i32> = led
                .iter()
                .copied()
                .filter(|p| !inner.partitions.contains_key(p))
                .collect();
            for p in &to_load {
                let _ = inner.partitions.insert(*p, PartitionStatus::Loading);
            }
            to_load
        };
        self.topic.host(image, &to_load).await;
        for p in to_load {
            match self.load_partition(p).await {
                Ok(n) => debug!(
                    partition = p,
                    transactional_ids = n,
                    "transaction state partition loaded"
                ),
                Err(e) => {
                    warn!(partition = p, error = %e, "loading transaction state partition failed")
                }
            }
            if let Some(status) = self.lock().partitions.get_mut(&p) {
                *status = PartitionStatus::Loaded;
            }
            self.loaded.notify_waiters();
        }
    }

    /// Replays one partition (the last record per id wins) and resumes the
    /// transactions that were waiting for their markers.
    async fn load_partition(self: &Arc<Self>, partition: i32) -> crate::error::Result<usize> {
        let records = self.topic.read_all(partition).await?;
        let mut found: HashMap<String, Option<TxnMetadata>> = HashMap::new();
        for r in records {
            let Some(key) = r.key else { continue };
            let id = match record::decode_txn_key(key) {
                Ok(id) => id,
                Err(e) => {
                    warn!(error = %e, "skipping a record of the transaction state topic");
                    continue;
                }
            };
            match r.value.map(record::decode_txn_value) {
                Some(Ok(meta)) => {
                    let _ = found.insert(id, Some(meta));
                }
                Some(Err(e)) => warn!(error = %e, "skipping a transaction state record"),
                None => {
                    let _ = found.insert(id, None);
                }
            }
        }
        let mut resume = Vec::new();
        let count = {
            let mut inner = self.lock();
            for (id, meta) in found {
                let Some(meta) = meta else { continue };
                if matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
                    resume.push(id.clone());
                }
                let _ = inner.txns.insert(
                    id,
                    Slot {
                        meta: Some(meta),
                        pending: false,
                    },
                );
            }
            inner.txns.len()
        };
        for id in resume {
            info!(transactional_id = %id, "resuming the markers of a transaction");
            let this = self.clone();
            self.spawn(async move { this.complete(id).await });
        }
        Ok(count)
    }

    /// Marks `id` pending and returns its current state, unless a change is
    /// already in flight.
    fn begin(&self, id: &str) -> TxnResult<Option<TxnMetadata>> {
        let mut inner = self.lock();
        let slot = inner.txns.entry(id.to_owned()).or_insert(Slot {
            meta: None,
            pending: false,
        });
        if slot.pending {
            return Err(ResponseError::ConcurrentTransactions);
        }
        slot.pending = true;
        Ok(slot.meta.clone())
    }

    /// Ends a change begun with [`Self::begin`]: stores `next` (if any) in
    /// memory once it is written.
    /// An id that still has no stored state is forgotten: a request naming
    /// an unknown id (refused) leaves nothing behind.
    fn finish(&self, id: &str, next: Option<TxnMetadata>) {
        let mut inner = self.lock();
        if let Some(slot) = inner.txns.get_mut(id) {
            slot.pending = false;
            if let Some(next) = next {
                slot.meta = Some(next);
            }
            if slot.meta.is_none() {
                let _ = inner.txns.remove(id);
            }
        }
    }

    /// Writes `next` for `id` (between begin and finish).
    async fn persist(&self, partition: i32, id: &str, next: &TxnMetadata) -> TxnResult<()> {
        let write = self
            .topic
            .append(
                partition,
                vec![(record::txn_key(id), Some(record::txn_value(next)))],
                None,
            )
            .map_err(|e| write_error(&e))?;
        match write.await {
            Ok(_) => Ok(()),
            Err(e) => {
                warn!(transactional_id = %id, error = %e, "writing transaction state failed");
                Err(write_error(&e))
            }
        }
    }

    /// Begin, decide, persist, finish: the path of every change. `decide`
    /// returns the state to store (None: nothing to write) and the answer.
    async fn change<T>(
        &self,
        partition: i32,
        id: &str,
        decide: impl FnOnce(Option<&TxnMetadata>) -> TxnResult<(Option<TxnMetadata>, T)>,
    ) -> TxnResult<T> {
        let current = self.begin(id)?;
        let (next, answer) = match decide(current.as_ref()) {
            Ok(decided) => decided,
            Err(e) => {
                self.finish(id, None);
                return Err(e);
            }
        };
        if let Some(next) = &next {
            if let Err(e) = self.persist(partition, id, next).await {
                self.finish(id, None);
                return Err(e);
            }
        }
        self.finish(id, next);
        Ok(answer)
    }

    /// InitProducerId with a transactional id: its producer id and a new
    /// epoch, fencing the previous producer (aborting its open transaction).
    pub async fn init_producer_id(
        self: &Arc<Self>,
        id: &str,
        timeout_ms: i32,
        producer_id: i64,
        producer_epoch: i16,
    ) -> TxnResult<(i64, i16)> {
        let partition = self.ready(id).await?;
        let request = InitRequest {
            timeout_ms,
            producer_id,
            producer_epoch,
        };
        let max_timeout = self.config.transaction_max_timeout_ms;
        let deadline = tokio::time::Instant::now() + MARKER_WAIT;
        loop {
            let completed = self.completed.notified();
            let now = now_ms();
            // A fresh producer id, when one is needed, is taken before the
            // change begins: its allocation may wait on the controller.
            let needs_id = {
                let inner = self.lock();
                let current = inner.txns.get(id).and_then(|s| s.meta.as_ref());
                matches!(
                    transaction::init(current, request, max_timeout, now),
                    Ok(InitDecision::NeedProducerId)
                )
            };
            let fresh_id = if needs_id {
                Some(self.producer_ids.generate_async().await.map_err(|e| {
                    warn!(error = %e, "allocating a producer id failed");
                    ResponseError::CoordinatorNotAvailable
                })?)
            } else {
                None
            };
            let outcome = match self
                .change(partition, id, |current| {
                    match transaction::init(current, request, max_timeout, now)? {
                        InitDecision::Ready(next) => {
                            let answer = (next.producer_id, next.producer_epoch);
                            Ok((Some(next), Some(answer)))
                        }
                        InitDecision::NeedProducerId => {
                            // Raced with another change: retry the round.
                            let fresh = fresh_id.ok_or(ResponseError::ConcurrentTransactions)?;
                            let next = transaction::init_with_new_id(fresh, timeout_ms, now);
                            Ok((Some(next), Some((fresh, 0))))
                        }
                        InitDecision::AbortThenRetry(next) => Ok((Some(next), None)),
                    }
                })
                .await
            {
                // Markers of an ending transaction are being written (or
                // another change is in flight): wait for it, then retry.
                Err(ResponseError::ConcurrentTransactions) => {
                    if tokio::time::timeout_at(deadline, completed).await.is_err() {
                        return Err(ResponseError::ConcurrentTransactions);
                    }
                    continue;
                }
                other => other?,
            };
            match outcome {
                Some(answer) => {
                    debug!(transactional_id = %id, producer_id = answer.0, epoch = answer.1,
                        "transactional producer initialised");
                    return Ok(answer);
                }
                None => {
                    // The open transaction is being aborted under a new
                    // epoch: wait for it, then take the next epoch.
                    let this = self.clone();
                    let owned = id.to_owned();
                    self.spawn(async move { this.complete(owned).await });
                    if tokio::time::timeout_at(deadline, completed).await.is_err() {
                        return Err(ResponseError::ConcurrentTransactions);
                    }
                }
            }
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets
    /// partition).
    pub async fn add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
    ) -> TxnResult<()> {
        let partition = self.ready(id).await?;
        let now = now_ms();
        self.change(partition, id, |current| {
            let next =
                transaction::add_partitions(current, producer_id, producer_epoch, partitions, now)?;
            Ok((next, ()))
        })
        .await
    }

    /// EndTxn: stores PrepareCommit or PrepareAbort, then writes the
    /// markers and stores the Complete* state. Answers once the markers
    /// are written, or after [`MARKER_WAIT`] (the outcome is decided).
    pub async fn end_txn(
        self: &Arc<Self>,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> TxnResult<()> {
        let partition = self.ready(id).await?;
        let now = now_ms();
        let prepared = self
            .change(partition, id, |current| {
                match transaction::end(current, producer_id, producer_epoch, commit, now)? {
                    EndDecision::Prepare(next) => Ok((Some(next), Ok(true))),
                    EndDecision::Retry(answer) => Ok((None, answer.map(|()| false))),
                }
            })
            .await??;
        if !prepared {
            return Ok(());
        }
        let this = self.clone();
        let owned = id.to_owned();
        self.spawn(async move { this.complete(owned).await });
        let deadline = tokio::time::Instant::now() + MARKER_WAIT;
        loop {
            // Registered before the state is read, so a completion in
            // between still wakes this wait.
            let completed = self.completed.notified();
            let state = self
                .lock()
                .txns
                .get(id)
                .and_then(|s| s.meta.as_ref().map(|m| m.state));
            if !matches!(
                state,
                Some(TxnState::PrepareCommit | TxnState::PrepareAbort)
            ) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, completed).await.is_err() {
                debug!(transactional_id = %id, "markers still pending; answering EndTxn");
                return Ok(());
            }
        }
    }

    /// Writes the markers of `id`'s Prepare* state, then stores its
    /// Complete* state. Retries until done, the coordinator moves, or the
    /// broker stops.
    async fn complete(self: Arc<Self>, id: String) {
        let Some(meta) = self
            .lock()
            .txns
            .get(&id)
            .and_then(|s| s.meta.clone())
            .filter(|m| matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort))
        else {
            return;
        };
        let commit = meta.state == TxnState::PrepareCommit;
        let coordinator_epoch = self
            .topic
            .log(self.topic.partition_of(&id))
            .map(|log| log.offsets().leader_epoch)
            .unwrap_or(0);
        let mut remaining: Vec<(String, i32)> = meta.partitions.iter().cloned().collect();
        while !remaining.is_empty() {
            if self.shutdown.is_cancelled()
                || self.coordinator_node(&id) != Some(self.config.node_id)
            {
                return;
            }
            remaining = self
                .send_markers(&meta, commit, coordinator_epoch, remaining)
                .await;
            if !remaining.is_empty() {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(MARKER_RETRY) => {}
                }
            }
        }
        let partition = self.topic.partition_of(&id);
        loop {
            let outcome = self
                .change(partition, &id, |current| match current {
                    Some(current)
                        if current.producer_id == meta.producer_id
                            && current.producer_epoch == meta.producer_epoch
                            && current.state == meta.state =>
                    {
                        Ok((transaction::complete(current, now_ms()), ()))
                    }
                    // Changed meanwhile (cannot happen while Prepare*
                    // refuses every change; kept safe).
                    _ => Ok((None, ())),
                })
                .await;
            match outcome {
                Ok(()) => break,
                Err(ResponseError::ConcurrentTransactions) => {}
                Err(e) => {
                    warn!(transactional_id = %id, error = ?e, "storing a completed transaction failed");
                    if self.coordinator_node(&id) != Some(self.config.node_id) {
                        return;
                    }
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(MARKER_RETRY) => {}
            }
        }
        metrics::TXN_COMPLETED_TOTAL
            .with_label_values(&[if commit { "commit" } else { "abort" }])
            .inc();
        debug!(transactional_id = %id, commit, "transaction completed");
        self.completed.notify_waiters();
    }

    /// One round of markers: groups the partitions by leader, writes them
    /// (here or through the leader's RPC), returns those to retry.
    async fn send_markers(
        &self,
        meta: &TxnMetadata,
        commit: bool,
        coordinator_epoch: i32,
        partitions: Vec<(String, i32)>,
    ) -> Vec<(String, i32)> {
        let image = self.metadata.image();
        let mut retry = Vec::new();
        let mut by_leader: HashMap<i32, Vec<(Uuid, i32)>> = HashMap::new();
        let mut names: HashMap<Uuid, String> = HashMap::new();
        for (topic, p) in partitions {
            let Some(record) = image.topic(&topic) else {
                // Deleted: nothing left to mark (Kafka drops it too).
                continue;
            };
            match image.partition(&record.id, p).map(|r| r.leader) {
                Some(leader) if leader >= 0 => {
                    let _ = names.insert(record.id, topic.clone());
                    by_leader.entry(leader).or_default().push((record.id, p));
                }
                Some(_) => retry.push((topic, p)),
                None => {}
            }
        }
        for (leader, partitions) in by_leader {
            let markers = TxnMarkers {
                producer_id: meta.producer_id,
                producer_epoch: meta.producer_epoch,
                commit,
                coordinator_epoch,
                partitions: partitions.clone(),
            };
            let results = if leader == self.config.node_id {
                Ok(self.replicas.write_txn_markers(markers).await)
            } else {
                self.remote_markers(leader, markers).await
            };
            match results {
                Ok(results) => {
                    for (topic_id, p, code) in results {
                        if txn_markers::is_retriable(code) {
                            if let Some(name) = names.get(&topic_id) {
                                retry.push((name.clone(), p));
                            }
                        } else if code != 0 {
                            warn!(producer_id = meta.producer_id, %topic_id, partition = p, code,
                                "dropping a transaction marker");
                        }
                    }
                }
                Err(e) => {
                    debug!(leader, error = %e, "sending transaction markers failed");
                    retry.extend(
                        partitions
                            .into_iter()
                            .filter_map(|(id, p)| names.get(&id).map(|n| (n.clone(), p))),
                    );
                }
            }
        }
        retry
    }

    async fn remote_markers(
        &self,
        leader: i32,
        markers: TxnMarkers,
    ) -> std::result::Result<txn_markers::MarkerResults, String> {
        let addr = self
            .metadata
            .image()
            .brokers
            .get(&leader)
            .map(|b| b.rpc_address.clone())
            .ok_or_else(|| format!("no address for node {leader}"))?;
        let mut connection = RpcConnection::new(addr);
        match connection
            .call(&RpcRequest::WriteTxnMarkers(markers), MARKER_RPC_TIMEOUT)
            .await
        {
            Ok(RpcResponse::WriteTxnMarkers(results)) => Ok(results),
            Ok(_) => Err("unexpected rpc response".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Aborts transactions open longer than their timeout, every
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    async fn timeout_loop(self: Arc<Self>) {
        let period = Duration::from_millis(
            self.config
                .transaction_abort_timed_out_transaction_cleanup_interval_ms,
        );
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            self.abort_timed_out().await;
        }
    }

    async fn abort_timed_out(self: &Arc<Self>) {
        let now = now_ms();
        let expired: Vec<String> = self
            .lock()
            .txns
            .iter()
            .filter(|(_, s)| {
                !s.pending
                    && s.meta
                        .as_ref()
                        .is_some_and(|m| transaction::abort_if_timed_out(m, now).is_some())
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let partition = self.topic.partition_of(&id);
            let aborted = self
                .change(partition, &id, |current| {
                    let next = current.and_then(|m| transaction::abort_if_timed_out(m, now));
                    let aborting = next.is_some();
                    Ok((next, aborting))
                })
                .await;
            if let Ok(true) = aborted {
                info!(transactional_id = %id, "aborting a transaction open past its timeout");
                let this = self.clone();
                self.spawn(async move { this.complete(id).await });
            }
        }
    }
}
