//! [`GroupCoordinator`]: runs the group state machines ([`super::group`])
//! for the groups whose `__consumer_offsets` partition this node leads,
//! keeps their waiting JoinGroup and SyncGroup requests, their timers, and
//! writes group metadata and committed offsets through the normal log.
//!
//! State lives in memory and in `__consumer_offsets` (Kafka's record layout,
//! [`super::record`]); at startup each partition of that topic is replayed
//! and, until it is, requests for its groups get
//! COORDINATOR_LOAD_IN_PROGRESS. A group's partition is Kafka's
//! `abs(groupId.hashCode) % offsets.topic.num.partitions`, so the group
//! lives where Kafka would put it and can move with its partition's leader.
//!
//! Locking: one mutex over every group, never held across an `.await`.
//! Writes are queued with the log writer while the lock is held, which fixes
//! their order in the log; their results are awaited after it is released.
//!
//! Timers: each group has a task that sleeps until the group's next
//! deadline (session expiry, end of a join phase) or until a request
//! changes the group, whichever comes first. Nothing polls.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::group::{
    CommittedOffset, Effects, Group, GroupConfig, GroupState, JoinOutcome, JoinParams, JoinResult,
    Protocol, Reply, SyncOutcome, SyncResult,
};
use super::internal_topic::{follow_images, InternalTopic, PartitionStatus, TxnProducer};
use super::record::{self, GroupValue, MemberValue, OffsetValue, RecordKey};
use crate::cluster::store::MetadataStore;
use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::log::now_ms;
use crate::log::writer::AppendResult;
use crate::metrics;
use crate::replication::txn_markers::TxnCompletion;
use crate::replication::ReplicaManager;

/// Kafka's internal topic of group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

pub use super::internal_topic::partition_for;

/// One offset to commit.
#[derive(Debug, Clone)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

impl OffsetCommit {
    /// The offset as committed at `now`, written at `log_offset`.
    fn committed(&self, now: i64, log_offset: i64) -> CommittedOffset {
        CommittedOffset {
            offset: self.offset,
            leader_epoch: self.leader_epoch,
            metadata: self.metadata.clone(),
            commit_timestamp_ms: now,
            log_offset,
        }
    }
}

/// The `__consumer_offsets` records of `offsets` committed at `now`.
fn offset_records(
    group_id: &str,
    offsets: &[OffsetCommit],
    now: i64,
) -> Vec<(Bytes, Option<Bytes>)> {
    offsets
        .iter()
        .map(|o| {
            (
                record::offset_key(group_id, &o.topic, o.partition),
                Some(record::offset_value(&OffsetValue {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata.clone(),
                    commit_timestamp: now,
                })),
            )
        })
        .collect()
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

/// A group, the requests waiting on it, and its timer's wake-up.
struct Slot {
    group: Group,
    join_waiters: HashMap<String, oneshot::Sender<JoinResult>>,
    sync_waiters: HashMap<String, oneshot::Sender<SyncResult>>,
    wake: Arc<Notify>,
}

#[derive(Default)]
struct Inner {
    groups: HashMap<String, Slot>,
    partitions: HashMap<i32, PartitionStatus>,
    /// Writes queued and not yet answered, per partition: a snapshot
    /// (compaction) waits until there are none.
    in_flight: HashMap<i32, usize>,
    /// Transactional offset commits waiting for their producer's marker.
    pending_txn: HashMap<i64, Vec<PendingTxnOffset>>,
}

/// An offset committed inside a transaction, not yet committed or aborted.
#[derive(Debug, Clone)]
struct PendingTxnOffset {
    group: String,
    topic: String,
    partition: i32,
    committed: CommittedOffset,
}

type WriteFuture = Pin<Box<dyn Future<Output = Result<AppendResult>> + Send>>;

/// Answers to send once a write (if any) is durable.
struct Delivery {
    joins: Vec<(oneshot::Sender<JoinResult>, JoinResult)>,
    syncs: Vec<(oneshot::Sender<SyncResult>, SyncResult)>,
    write: Option<WriteFuture>,
}

impl Delivery {
    async fn finish(self) {
        let written = match self.write {
            Some(write) => match write.await {
                Ok(_) => true,
                Err(e) => {
                    warn!(error = %e, "writing group metadata failed");
                    false
                }
            },
            None => true,
        };
        for (tx, result) in self.joins {
            let _ = tx.send(if written {
                result
            } else {
                JoinResult::error(ResponseError::CoordinatorNotAvailable, &result.member_id)
            });
        }
        for (tx, result) in self.syncs {
            let _ = tx.send(if written {
                result
            } else {
                Err(ResponseError::CoordinatorNotAvailable)
            });
        }
    }
}

/// The group coordinator of this node.
pub struct GroupCoordinator {
    config: Arc<BrokerConfig>,
    group_config: GroupConfig,
    metadata: Arc<MetadataStore>,
    replicas: Arc<ReplicaManager>,
    /// `__consumer_offsets`.
    topic: InternalTopic,
    inner: Mutex<Inner>,
    /// Woken whenever an offsets partition finishes loading.
    loaded: Notify,
    shutdown: CancellationToken,
    /// Loading, expiry and timer tasks: joined at shutdown so none outlives
    /// the broker (they hold the log, hence the database).
    tasks: Mutex<JoinSet<()>>,
}

impl std::fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCoordinator").finish_non_exhaustive()
    }
}

/// The replica manager's way to the group coordinator when a transaction
/// marker lands in an offsets partition.
#[derive(Debug)]
pub struct GroupTxnCompletion(pub std::sync::Weak<GroupCoordinator>);

impl TxnCompletion for GroupTxnCompletion {
    fn complete_txn(&self, offsets_partition: i32, producer_id: i64, commit: bool) {
        if let Some(groups) = self.0.upgrade() {
            groups.complete_txn(offsets_partition, producer_id, commit);
        }
    }
}

fn storage_to_commit_error(e: &Error) -> ResponseError {
    match e {
        Error::Api {
            code: ResponseError::MessageTooLarge | ResponseError::RecordListTooLarge,
            ..
        } => ResponseError::InvalidCommitOffsetSize,
        _ => ResponseError::CoordinatorNotAvailable,
    }
}

impl GroupCoordinator {
    pub fn new(
        config: Arc<BrokerConfig>,
        metadata: Arc<MetadataStore>,
        replicas: Arc<ReplicaManager>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let group_config = GroupConfig {
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            min_session_timeout_ms: config.group_min_session_timeout_ms,
            max_session_timeout_ms: config.group_max_session_timeout_ms,
            max_size: config.group_max_size,
        };
        let mut configs = BTreeMap::new();
        let _ = configs.insert("cleanup.policy".to_owned(), "compact".to_owned());
        // Offsets are not deleted by time: they expire per group.
        let _ = configs.insert("retention.ms".to_owned(), "-1".to_owned());
        let topic = InternalTopic::new(
            OFFSETS_TOPIC,
            config.offsets_topic_num_partitions,
            configs,
            config.clone(),
            metadata.clone(),
            replicas.clone(),
        );
        Arc::new(GroupCoordinator {
            config,
            group_config,
            metadata,
            replicas,
            topic,
            inner: Mutex::new(Inner::default()),
            loaded: Notify::new(),
            shutdown,
            tasks: Mutex::new(JoinSet::new()),
        })
    }

    /// Spawns a background task owned by the coordinator.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        // Reap finished ones (timers of deleted groups) as we go.
        while tasks.try_join_next().is_some() {}
        drop(tasks.spawn(task));
    }

    /// Stops the background tasks and waits for them. Called after the
    /// listeners have stopped, before the log closes.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        while tasks.join_next().await.is_some() {}
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn partitions(&self) -> i32 {
        self.topic.partitions()
    }

    /// Loads every partition of an existing offsets topic and starts the
    /// expiry loop. Returns at once; loading runs in the background.
    pub fn start(self: &Arc<Self>) {
        let this = self.clone();
        self.spawn(async move { this.leadership_loop().await });
        let this = self.clone();
        self.spawn(async move { this.cleanup_loop().await });
        let weak = Arc::downgrade(self);
        metrics::add_scrape_hook(Box::new(move || match weak.upgrade() {
            Some(this) => {
                this.export_metrics();
                true
            }
            None => false,
        }));
    }

    /// Creates the offsets topic if it does not exist yet (Kafka creates it
    /// on the first FindCoordinator too).
    async fn ensure_topic(&self) -> std::result::Result<(), ResponseError> {
        let Some(image) = self.topic.ensure().await? else {
            return Ok(());
        };
        // New and empty: the partitions led here are loaded at once.
        let mut inner = self.lock();
        for p in self.topic.led_partitions(&image).unwrap_or_default() {
            // Unless the leadership loop already started loading it: a
            // second, later "loaded" mark would let its replay overwrite
            // what requests changed meanwhile.
            let _ = inner.partitions.entry(p).or_insert(PartitionStatus::Loaded);
        }
        Ok(())
    }

    /// The node that coordinates `group_id`: the leader of its offsets
    /// partition (None while the topic is missing or the partition has no
    /// leader).
    pub fn coordinator_node(&self, group_id: &str) -> Option<i32> {
        self.topic.coordinator_node(group_id)
    }

    /// The offsets partition of a group (AddOffsetsToTxn adds it to the
    /// transaction).
    pub fn partition_of(&self, group_id: &str) -> i32 {
        self.topic.partition_of(group_id)
    }

    /// Follows the offsets topic's leadership until shutdown (see
    /// [`Self::sync_leadership`]).
    async fn leadership_loop(self: Arc<Self>) {
        follow_images(&self.metadata, &self.shutdown, |image| {
            let this = self.clone();
            async move { this.sync_leadership(&image).await }
        })
        .await;
    }

    /// Loads each offsets partition this node leads in `image` and has not
    /// loaded; forgets each it no longer leads (its groups live on the new
    /// leader now).
    pub async fn sync_leadership(
        self: &Arc<Self>,
        image: &Arc<crate::cluster::metadata::MetadataImage>,
    ) {
        let Some(topic) = image.topic(OFFSETS_TOPIC) else {
            return;
        };
        let led = self.topic.led_partitions(image).unwrap_or_default();
        let (to_load, to_drop) = {
            let mut inner = self.lock();
            let to_drop: Vec<i32> = inner
                .partitions
                .keys()
                .copied()
                .filter(|p| !led.contains(p))
                .collect();
            for p in &to_drop {
                let _ = inner.partitions.remove(p);
            }
            let partitions = topic.partitions;
            if !to_drop.is_empty() {
                inner
                    .groups
                    .retain(|g, _| !to_drop.contains(&partition_for(g, partitions)));
                for offsets in inner.pending_txn.values_mut() {
                    offsets.retain(|o| !to_drop.contains(&partition_for(&o.group, partitions)));
                }
                inner.pending_txn.retain(|_, offsets| !offsets.is_empty());
            }
            let to_load: Vec<i32> = led
                .iter()
                .copied()
                .filter(|p| !inner.partitions.contains_key(p))
                .collect();
            for p in &to_load {
                let _ = inner.partitions.insert(*p, PartitionStatus::Loading);
            }
            (to_load, to_drop)
        };
        if !to_drop.is_empty() {
            info!(partitions = ?to_drop, "no longer coordinating these offsets partitions");
        }
        self.topic.host(image, &to_load).await;
        for p in to_load {
            match self.load_partition(p).await {
                Ok(groups) => debug!(partition = p, groups, "offsets partition loaded"),
                Err(e) => warn!(partition = p, error = %e, "loading offsets partition failed"),
            }
            if let Some(status) = self.lock().partitions.get_mut(&p) {
                *status = PartitionStatus::Loaded;
            }
            self.loaded.notify_waiters();
        }
    }

    /// FindCoordinator for a group: this node, once the group's partition is
    /// loaded.
    pub async fn find_coordinator(&self, group_id: &str) -> std::result::Result<(), ResponseError> {
        self.ready(group_id).await.map(|_| ())
    }

    /// The checks every group request starts with; the group's partition.
    async fn ready(&self, group_id: &str) -> std::result::Result<i32, ResponseError> {
        self.ensure_topic().await?;
        self.topic
            .wait_ready(group_id, &self.loaded, |p| {
                self.lock().partitions.get(&p).copied()
            })
            .await
    }

    /// A group's slot, created (Empty) if missing, with its timer.
    fn slot<'a>(self: &Arc<Self>, inner: &'a mut Inner, group_id: &str) -> &'a mut Slot {
        if !inner.groups.contains_key(group_id) {
            let wake = Arc::new(Notify::new());
            let _ = inner.groups.insert(
                group_id.to_owned(),
                Slot {
                    group: Group::new(group_id, self.group_config, now_ms()),
                    join_waiters: HashMap::new(),
                    sync_waiters: HashMap::new(),
                    wake: wake.clone(),
                },
            );
            self.spawn_timer(group_id.to_owned(), wake);
        }
        inner.groups.get_mut(group_id).expect("inserted above")
    }

    fn spawn_timer(self: &Arc<Self>, group_id: String, wake: Arc<Notify>) {
        let this = self.clone();
        drop(tokio::spawn(
            async move { this.run_timer(group_id, wake).await },
        ));
    }

    async fn run_timer(self: Arc<Self>, group_id: String, wake: Arc<Notify>) {
        loop {
            let deadline = {
                let inner = self.lock();
                match inner.groups.get(&group_id) {
                    Some(slot) if Arc::ptr_eq(&slot.wake, &wake) => slot.group.next_deadline(),
                    // Deleted, or replaced by a new group of that name.
                    _ => return,
                }
            };
            let sleep = match deadline {
                Some(at) => Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = wake.notified() => continue,
                _ = tokio::time::sleep(sleep) => {}
            }
            if deadline.is_none() {
                continue;
            }
            let delivery = {
                let mut inner = self.lock();
                let now = now_ms();
                let Some(slot) = inner.groups.get_mut(&group_id) else {
                    return;
                };
                let effects = slot.group.on_timer(now);
                self.deliver(&mut inner, &group_id, effects)
            };
            self.finish_tracked(&group_id, delivery).await;
        }
    }

    /// Takes the waiters the effects answer and queues the group's metadata
    /// if it must be written first. Called with the lock held.
    fn deliver(&self, inner: &mut Inner, group_id: &str, effects: Effects) -> Delivery {
        let mut delivery = Delivery {
            joins: Vec::new(),
            syncs: Vec::new(),
            write: None,
        };
        if effects.rebalances > 0 {
            metrics::GROUP_REBALANCES_TOTAL.inc_by(u64::from(effects.rebalances));
        }
        let Some(slot) = inner.groups.get_mut(group_id) else {
            return delivery;
        };
        slot.wake.notify_one();
        for reply in effects.replies {
            match reply {
                Reply::Join(member, result) => {
                    if let Some(tx) = slot.join_waiters.remove(&member) {
                        delivery.joins.push((tx, result));
                    }
                }
                Reply::Sync(member, result) => {
                    if let Some(tx) = slot.sync_waiters.remove(&member) {
                        delivery.syncs.push((tx, result));
                    }
                }
            }
        }
        if effects.persist {
            let value = group_value(&slot.group);
            let key = record::group_key(group_id);
            let partition = partition_for(group_id, self.partitions());
            delivery.write = self
                .queue_records(inner, partition, vec![(key, Some(value))], None)
                .ok();
        }
        delivery
    }

    /// Queues records for one partition of the offsets topic with the log
    /// writer (their order is fixed now). Called with the lock held.
    fn queue_records(
        &self,
        inner: &mut Inner,
        partition: i32,
        records: Vec<(Bytes, Option<Bytes>)>,
        producer: Option<TxnProducer>,
    ) -> Result<WriteFuture> {
        let write = self.topic.append(partition, records, producer)?;
        *inner.in_flight.entry(partition).or_default() += 1;
        Ok(Box::pin(write))
    }

    fn write_done(&self, partition: i32) {
        let mut inner = self.lock();
        if let Some(n) = inner.in_flight.get_mut(&partition) {
            *n = n.saturating_sub(1);
        }
    }

    /// JoinGroup.
    pub async fn join_group(self: &Arc<Self>, group_id: &str, params: JoinParams) -> JoinResult {
        if let Err(e) = self.ready(group_id).await {
            return JoinResult::error(e, &params.member_id);
        }
        let member_id = params.member_id.clone();
        let (next, delivery) = {
            let mut inner = self.lock();
            let group_exists = inner.groups.contains_key(group_id);
            if !group_exists && !member_id.is_empty() && params.group_instance_id.is_none() {
                return JoinResult::error(ResponseError::UnknownMemberId, &member_id);
            }
            let slot = self.slot(&mut inner, group_id);
            let fresh = uuid::Uuid::new_v4().to_string();
            let (outcome, effects) = slot.group.join(params, now_ms(), &fresh);
            let next = match outcome {
                JoinOutcome::Now(result) => Ok(result),
                JoinOutcome::Wait(id) => {
                    let (tx, rx) = oneshot::channel();
                    if let Some(old) = slot.join_waiters.insert(id.clone(), tx) {
                        // A duplicate JoinGroup from the same member: the
                        // older one is superseded.
                        let _ =
                            old.send(JoinResult::error(ResponseError::RebalanceInProgress, &id));
                    }
                    Err(rx)
                }
            };
            (next, self.deliver(&mut inner, group_id, effects))
        };
        self.finish_tracked(group_id, delivery).await;
        match next {
            Ok(result) => result,
            Err(rx) => rx.await.unwrap_or_else(|_| {
                JoinResult::error(ResponseError::CoordinatorNotAvailable, &member_id)
            }),
        }
    }

    /// SyncGroup.
    #[allow(clippy::too_many_arguments)]
    pub async fn sync_group(
        self: &Arc<Self>,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        instance: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        self.ready(group_id).await?;
        let (next, delivery) = {
            let mut inner = self.lock();
            let Some(slot) = inner.groups.get_mut(group_id) else {
                return Err(ResponseError::UnknownMemberId);
            };
            let (outcome, effects) = slot.group.sync(
                generation_id,
                member_id,
                instance,
                protocol_type,
                protocol_name,
                assignments,
                now_ms(),
            );
            let next = match outcome {
                SyncOutcome::Now(result) => Ok(result),
                SyncOutcome::Wait(id) => {
                    let (tx, rx) = oneshot::channel();
                    let _ = slot.sync_waiters.insert(id, tx);
                    Err(rx)
                }
            };
            (next, self.deliver(&mut inner, group_id, effects))
        };
        self.finish_tracked(group_id, delivery).await;
        match next {
            Ok(result) => result,
            Err(rx) => rx
                .await
                .unwrap_or(Err(ResponseError::CoordinatorNotAvailable)),
        }
    }

    /// The group's protocol type and name (SyncGroup v5 echoes them).
    pub fn protocol_of(&self, group_id: &str) -> (Option<String>, Option<String>) {
        self.lock()
            .groups
            .get(group_id)
            .map(|s| (s.group.protocol_type.clone(), s.group.protocol_name.clone()))
            .unwrap_or_default()
    }

    /// Heartbeat.
    pub async fn heartbeat(
        self: &Arc<Self>,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        instance: Option<&str>,
    ) -> std::result::Result<(), ResponseError> {
        self.ready(group_id).await?;
        let mut inner = self.lock();
        match inner.groups.get_mut(group_id) {
            Some(slot) => slot
                .group
                .heartbeat(generation_id, member_id, instance, now_ms()),
            None => Err(ResponseError::UnknownMemberId),
        }
    }

    /// LeaveGroup: one result per member.
    pub async fn leave_group(
        self: &Arc<Self>,
        group_id: &str,
        members: Vec<(String, Option<String>)>,
    ) -> std::result::Result<Vec<std::result::Result<(), ResponseError>>, ResponseError> {
        self.ready(group_id).await?;
        let (results, delivery) = {
            let mut inner = self.lock();
            let Some(slot) = inner.groups.get_mut(group_id) else {
                return Ok(vec![Err(ResponseError::UnknownMemberId); members.len()]);
            };
            let (results, effects) = slot.group.leave(&members, now_ms());
            (results, self.deliver(&mut inner, group_id, effects))
        };
        self.finish_tracked(group_id, delivery).await;
        Ok(results)
    }

    async fn finish_tracked(&self, group_id: &str, delivery: Delivery) {
        let had_write = delivery.write.is_some();
        delivery.finish().await;
        if had_write {
            self.write_done(partition_for(group_id, self.partitions()));
        }
    }

    /// OffsetCommit: one result per offset, in order.
    pub async fn commit_offsets(
        self: &Arc<Self>,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        instance: Option<&str>,
        offsets: Vec<OffsetCommit>,
    ) -> Vec<std::result::Result<(), ResponseError>> {
        let all = |e: ResponseError| vec![Err(e); offsets.len()];
        let partition = match self.ready(group_id).await {
            Ok(p) => p,
            Err(e) => return all(e),
        };
        if offsets.is_empty() {
            return Vec::new();
        }
        let now = now_ms();
        let write = {
            let mut inner = self.lock();
            if !inner.groups.contains_key(group_id) && generation_id >= 0 {
                return all(ResponseError::IllegalGeneration);
            }
            let slot = self.slot(&mut inner, group_id);
            if let Err(e) = slot
                .group
                .validate_commit(generation_id, member_id, instance, now)
            {
                return all(e);
            }
            let records = offset_records(group_id, &offsets, now);
            match self.queue_records(&mut inner, partition, records, None) {
                Ok(write) => write,
                Err(e) => return all(storage_to_commit_error(&e)),
            }
        };
        let written = write.await;
        let mut inner = self.lock();
        if let Some(n) = inner.in_flight.get_mut(&partition) {
            *n = n.saturating_sub(1);
        }
        match written {
            Ok(at) => {
                if let Some(slot) = inner.groups.get_mut(group_id) {
                    for (i, o) in offsets.iter().enumerate() {
                        let committed = o.committed(now, at.base_offset + i as i64);
                        slot.group.apply_commit(&o.topic, o.partition, committed);
                    }
                }
                vec![Ok(()); offsets.len()]
            }
            Err(e) => {
                warn!(group = group_id, error = %e, "offset commit write failed");
                all(storage_to_commit_error(&e))
            }
        }
    }

    /// TxnOffsetCommit: offsets committed inside a producer's transaction.
    /// They are written now, as transactional records of the producer, and
    /// count once its COMMIT marker reaches the group's partition
    /// ([`Self::complete_txn`]). One result per offset, in order.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit_txn_offsets(
        self: &Arc<Self>,
        group_id: &str,
        producer: TxnProducer,
        generation_id: i32,
        member_id: &str,
        instance: Option<&str>,
        offsets: Vec<OffsetCommit>,
    ) -> Vec<std::result::Result<(), ResponseError>> {
        let all = |e: ResponseError| vec![Err(e); offsets.len()];
        let partition = match self.ready(group_id).await {
            Ok(p) => p,
            Err(e) => return all(e),
        };
        if offsets.is_empty() {
            return Vec::new();
        }
        let now = now_ms();
        let write = {
            let mut inner = self.lock();
            // Kafka checks the member only when the client names its
            // generation (TxnOffsetCommit v3+, KIP-447).
            if generation_id >= 0 {
                match inner.groups.get_mut(group_id) {
                    None => return all(ResponseError::IllegalGeneration),
                    Some(slot) => {
                        if let Err(e) =
                            slot.group
                                .validate_commit(generation_id, member_id, instance, now)
                        {
                            return all(e);
                        }
                    }
                }
            }
            let records = offset_records(group_id, &offsets, now);
            match self.queue_records(&mut inner, partition, records, Some(producer)) {
                Ok(write) => write,
                Err(e) => return all(storage_to_commit_error(&e)),
            }
        };
        let written = write.await;
        let mut inner = self.lock();
        if let Some(n) = inner.in_flight.get_mut(&partition) {
            *n = n.saturating_sub(1);
        }
        match written {
            Ok(at) => {
                let pending = inner.pending_txn.entry(producer.producer_id).or_default();
                for (i, o) in offsets.iter().enumerate() {
                    pending.push(PendingTxnOffset {
                        group: group_id.to_owned(),
                        topic: o.topic.clone(),
                        partition: o.partition,
                        committed: o.committed(now, at.base_offset + i as i64),
                    });
                }
                vec![Ok(()); offsets.len()]
            }
            Err(e) => {
                warn!(group = group_id, error = %e, "transactional offset commit write failed");
                all(storage_to_commit_error(&e))
            }
        }
    }

    /// The partitions of `group_id` with transactional offsets waiting for
    /// their transaction's outcome.
    pub fn pending_txn_offsets(&self, group_id: &str) -> HashSet<(String, i32)> {
        self.lock()
            .pending_txn
            .values()
            .flatten()
            .filter(|o| o.group == group_id)
            .map(|o| (o.topic.clone(), o.partition))
            .collect()
    }

    /// A transaction marker was written to offsets partition `partition`:
    /// the producer's pending offsets there count (COMMIT) or are dropped.
    pub fn complete_txn(self: &Arc<Self>, partition: i32, producer_id: i64, commit: bool) {
        let partitions = self.partitions();
        let mut inner = self.lock();
        let Some(mut pending) = inner.pending_txn.remove(&producer_id) else {
            return;
        };
        let (done, rest): (Vec<_>, Vec<_>) = pending
            .drain(..)
            .partition(|o| partition_for(&o.group, partitions) == partition);
        if !rest.is_empty() {
            let _ = inner.pending_txn.insert(producer_id, rest);
        }
        if !commit {
            return;
        }
        for o in done {
            let slot = self.slot(&mut inner, &o.group);
            slot.group.apply_commit(&o.topic, o.partition, o.committed);
        }
    }

    /// OffsetFetch: the committed offsets of the requested partitions (all
    /// of the group's when `partitions` is None).
    pub async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> std::result::Result<Vec<(String, i32, Option<CommittedOffset>)>, ResponseError> {
        self.ready(group_id).await?;
        let inner = self.lock();
        let group = inner.groups.get(group_id).map(|s| &s.group);
        Ok(match partitions {
            Some(wanted) => wanted
                .into_iter()
                .map(|(topic, partition)| {
                    let found = group
                        .and_then(|g| g.offsets.get(&(topic.clone(), partition)))
                        .cloned();
                    (topic, partition, found)
                })
                .collect(),
            None => group
                .map(|g| {
                    g.offsets
                        .iter()
                        .map(|((t, p), o)| (t.clone(), *p, Some(o.clone())))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// DescribeGroups for one group; `None` if it does not exist.
    pub async fn describe_group(
        &self,
        group_id: &str,
    ) -> std::result::Result<Option<GroupDescription>, ResponseError> {
        self.ready(group_id).await?;
        let inner = self.lock();
        let Some(slot) = inner.groups.get(group_id) else {
            return Ok(None);
        };
        let g = &slot.group;
        let stable = g.is(GroupState::Stable);
        let protocol = if stable {
            g.protocol_name.clone().unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Some(GroupDescription {
            state: g.state(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: g
                .members()
                .into_iter()
                .map(|m| MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }))
    }

    /// ListGroups: every group this node coordinates, or
    /// COORDINATOR_LOAD_IN_PROGRESS while a partition is loading.
    pub fn list_groups(&self) -> std::result::Result<Vec<GroupListing>, ResponseError> {
        let inner = self.lock();
        if inner
            .partitions
            .values()
            .any(|s| *s == PartitionStatus::Loading)
        {
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        Ok(inner
            .groups
            .values()
            .filter(|s| !s.group.is(GroupState::Dead))
            .map(|s| GroupListing {
                group_id: s.group.group_id.clone(),
                protocol_type: s.group.protocol_type.clone().unwrap_or_default(),
                state: s.group.state(),
            })
            .collect())
    }

    /// DeleteGroups for one group: only an empty one; its offsets go too.
    pub async fn delete_group(&self, group_id: &str) -> std::result::Result<(), ResponseError> {
        let partition = self.ready(group_id).await?;
        let write = {
            let mut inner = self.lock();
            let Some(slot) = inner.groups.get(group_id) else {
                return Err(ResponseError::GroupIdNotFound);
            };
            match slot.group.state() {
                GroupState::Dead => return Err(ResponseError::GroupIdNotFound),
                GroupState::Empty => {}
                _ => return Err(ResponseError::NonEmptyGroup),
            }
            let mut records: Vec<(Bytes, Option<Bytes>)> = slot
                .group
                .offsets
                .keys()
                .map(|(t, p)| (record::offset_key(group_id, t, *p), None))
                .collect();
            records.push((record::group_key(group_id), None));
            let write = self
                .queue_records(&mut inner, partition, records, None)
                .map_err(|e| storage_to_commit_error(&e))?;
            if let Some(mut slot) = inner.groups.remove(group_id) {
                let _ = slot.group.mark_dead(now_ms());
                slot.wake.notify_one();
            }
            write
        };
        let written = write.await;
        self.write_done(partition);
        written.map(|_| ()).map_err(|e| storage_to_commit_error(&e))
    }

    /// OffsetDelete: removes committed offsets of partitions the group does
    /// not consume. Per-partition results in order.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> std::result::Result<Vec<std::result::Result<(), ResponseError>>, ResponseError> {
        let partition = self.ready(group_id).await?;
        let (results, write) = {
            let mut inner = self.lock();
            let Some(slot) = inner.groups.get_mut(group_id) else {
                return Err(ResponseError::GroupIdNotFound);
            };
            let group = &mut slot.group;
            if group.is(GroupState::Dead) {
                return Err(ResponseError::GroupIdNotFound);
            }
            let consumer =
                group.protocol_type.as_deref() == Some(super::group::CONSUMER_PROTOCOL_TYPE);
            if !group.is(GroupState::Empty) && !consumer {
                return Err(ResponseError::NonEmptyGroup);
            }
            let subscribed = if group.is(GroupState::Empty) {
                HashSet::new()
            } else {
                group
                    .subscribed_topics()
                    .map(|s| s.into_iter().collect())
                    .unwrap_or_default()
            };
            let mut results = Vec::new();
            let mut records = Vec::new();
            for (topic, p) in partitions {
                if subscribed.contains(&topic) {
                    results.push(Err(ResponseError::GroupSubscribedToTopic));
                } else {
                    if group.offsets.remove(&(topic.clone(), p)).is_some() {
                        records.push((record::offset_key(group_id, &topic, p), None));
                    }
                    results.push(Ok(()));
                }
            }
            let write = if records.is_empty() {
                None
            } else {
                Some(
                    self.queue_records(&mut inner, partition, records, None)
                        .map_err(|e| storage_to_commit_error(&e))?,
                )
            };
            (results, write)
        };
        if let Some(write) = write {
            let written = write.await;
            self.write_done(partition);
            written.map_err(|e| storage_to_commit_error(&e))?;
        }
        Ok(results)
    }

    /// Replays one partition; returns the number of groups found.
    ///
    /// Transactional offset commits (TxnOffsetCommit) count once their
    /// producer's COMMIT marker follows them, and not at all after an
    /// ABORT; those still open at the end wait in memory for their marker
    /// (Kafka's pending transactional offsets).
    async fn load_partition(self: &Arc<Self>, partition: i32) -> Result<usize> {
        let records = self.topic.read_all(partition).await?;

        // Replay in log order: the last record per key wins.
        let mut values: BTreeMap<String, Option<GroupValue>> = BTreeMap::new();
        let mut offsets: BTreeMap<String, BTreeMap<(String, i32), CommittedOffset>> =
            BTreeMap::new();
        let mut pending: HashMap<i64, Vec<PendingTxnOffset>> = HashMap::new();
        for r in records {
            if let Some(commit) = r.marker {
                for p in pending.remove(&r.producer_id).unwrap_or_default() {
                    if commit {
                        let _ = offsets
                            .entry(p.group)
                            .or_default()
                            .insert((p.topic, p.partition), p.committed);
                    }
                }
                continue;
            }
            let Some(key) = r.key else { continue };
            let log_offset = r.offset;
            let value = r.value;
            match record::decode_key(key) {
                Ok(RecordKey::Offset {
                    group,
                    topic,
                    partition,
                }) if r.transactional => match value.map(record::decode_offset_value) {
                    Some(Ok(v)) => {
                        pending
                            .entry(r.producer_id)
                            .or_default()
                            .push(PendingTxnOffset {
                                group,
                                topic,
                                partition,
                                committed: CommittedOffset {
                                    offset: v.offset,
                                    leader_epoch: v.leader_epoch,
                                    metadata: v.metadata,
                                    commit_timestamp_ms: v.commit_timestamp,
                                    log_offset,
                                },
                            })
                    }
                    Some(Err(e)) => warn!(error = %e, "skipping a transactional offset record"),
                    None => {}
                },
                Ok(RecordKey::Offset {
                    group,
                    topic,
                    partition,
                }) => {
                    let entry = offsets.entry(group).or_default();
                    match value.map(record::decode_offset_value) {
                        Some(Ok(v)) => {
                            let _ = entry.insert(
                                (topic, partition),
                                CommittedOffset {
                                    offset: v.offset,
                                    leader_epoch: v.leader_epoch,
                                    metadata: v.metadata,
                                    commit_timestamp_ms: v.commit_timestamp,
                                    log_offset,
                                },
                            );
                        }
                        Some(Err(e)) => warn!(error = %e, "skipping an offset record"),
                        None => {
                            let _ = entry.remove(&(topic, partition));
                        }
                    }
                }
                Ok(RecordKey::Group { group }) => match value.map(record::decode_group_value) {
                    Some(Ok(v)) => {
                        let _ = values.insert(group, Some(v));
                    }
                    Some(Err(e)) => warn!(error = %e, "skipping a group record"),
                    None => {
                        let _ = values.insert(group, None);
                    }
                },
                Err(e) => warn!(error = %e, "skipping a record of the offsets topic"),
            }
        }
        let now = now_ms();
        let mut inner = self.lock();
        for (producer_id, offsets) in pending {
            inner
                .pending_txn
                .entry(producer_id)
                .or_default()
                .extend(offsets);
        }
        let mut names: HashSet<String> = values.keys().cloned().collect();
        names.extend(offsets.keys().cloned());
        let mut loaded = 0;
        for name in names {
            let value = values.remove(&name).flatten();
            let group_offsets = offsets.remove(&name).unwrap_or_default();
            if value.is_none() && group_offsets.is_empty() {
                continue;
            }
            let slot = self.slot(&mut inner, &name);
            if let Some(v) = value {
                let protocol = v.protocol.clone().unwrap_or_default();
                let members = v
                    .members
                    .into_iter()
                    .map(|m| {
                        let instance = m.group_instance_id.clone();
                        (
                            Group::restored_member(
                                m.member_id,
                                m.group_instance_id,
                                m.client_id,
                                m.client_host,
                                m.rebalance_timeout,
                                m.session_timeout,
                                Protocol {
                                    name: protocol.clone(),
                                    metadata: m.subscription,
                                },
                                m.assignment,
                            ),
                            instance,
                        )
                    })
                    .collect();
                slot.group.restore(
                    v.generation,
                    (!v.protocol_type.is_empty()).then_some(v.protocol_type),
                    v.protocol,
                    v.leader,
                    v.current_state_timestamp,
                    members,
                    now,
                );
            }
            slot.group.offsets = group_offsets;
            slot.wake.notify_one();
            loaded += 1;
        }
        debug!(partition, groups = loaded, "offsets partition loaded");
        Ok(loaded)
    }

    /// Expires committed offsets and empty groups every
    /// `offsets.retention.check.interval.ms`, and compacts the offsets topic.
    async fn cleanup_loop(self: Arc<Self>) {
        let period = Duration::from_millis(self.config.offsets_retention_check_interval_ms);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = ticker.tick() => {
                    self.expire_offsets(now_ms()).await;
                    self.compact().await;
                }
            }
        }
    }

    /// One expiry pass (Kafka's `cleanupGroupMetadata`) as of `now`.
    pub async fn expire_offsets(&self, now: i64) {
        let retention_ms = self.config.offsets_retention_minutes.saturating_mul(60_000);
        let mut writes = Vec::new();
        {
            let mut inner = self.lock();
            let names: Vec<String> = inner.groups.keys().cloned().collect();
            let partitions = self.partitions();
            for name in names {
                let Some(slot) = inner.groups.get_mut(&name) else {
                    continue;
                };
                let expired = slot.group.expired_offsets(now, retention_ms);
                let mut records: Vec<(Bytes, Option<Bytes>)> = Vec::new();
                for key in &expired {
                    let _ = slot.group.offsets.remove(key);
                    records.push((record::offset_key(&name, &key.0, key.1), None));
                }
                let remove = slot.group.is(GroupState::Empty) && slot.group.offsets.is_empty();
                if remove {
                    records.push((record::group_key(&name), None));
                    if let Some(mut slot) = inner.groups.remove(&name) {
                        let _ = slot.group.mark_dead(now);
                        slot.wake.notify_one();
                    }
                }
                if !records.is_empty() {
                    let partition = partition_for(&name, partitions);
                    debug!(group = %name, offsets = expired.len(), removed = remove, "expiring offsets");
                    match self.queue_records(&mut inner, partition, records, None) {
                        Ok(w) => writes.push((partition, w)),
                        Err(e) => warn!(error = %e, "queueing offset expiry failed"),
                    }
                }
            }
        }
        for (partition, write) in writes {
            if let Err(e) = write.await {
                warn!(error = %e, "writing offset expiry failed");
            }
            self.write_done(partition);
        }
    }

    /// Keeps the offsets topic bounded: when a partition holds more than
    /// `offsets.topic.segment.bytes`, the live state of its groups is
    /// written again as a snapshot and everything before it is deleted.
    /// Replaying from the snapshot gives the same state, so nothing is lost
    /// (this is what compaction achieves in Kafka, done as a whole).
    pub async fn compact(&self) {
        let image = self.metadata.image();
        let Some(topic) = image.topic(OFFSETS_TOPIC) else {
            return;
        };
        for p in 0..topic.partitions {
            let Some(log) = self.replicas.logs().get(topic.id, p) else {
                continue;
            };
            if log.size_bytes() <= self.config.offsets_topic_segment_bytes {
                continue;
            }
            let write = {
                let mut inner = self.lock();
                // A snapshot holds committed state only: while a transaction
                // has offsets pending here, its records must stay.
                let txn_pending = inner
                    .pending_txn
                    .values()
                    .flatten()
                    .any(|o| partition_for(&o.group, topic.partitions) == p);
                if inner.in_flight.get(&p).copied().unwrap_or(0) > 0
                    || inner.partitions.get(&p) != Some(&PartitionStatus::Loaded)
                    || txn_pending
                {
                    continue;
                }
                let mut records = Vec::new();
                for (name, slot) in &inner.groups {
                    if partition_for(name, topic.partitions) != p {
                        continue;
                    }
                    let g = &slot.group;
                    if g.protocol_type.is_some() {
                        records.push((record::group_key(name), Some(group_value(g))));
                    }
                    for ((t, part), o) in &g.offsets {
                        records.push((
                            record::offset_key(name, t, *part),
                            Some(record::offset_value(&OffsetValue {
                                offset: o.offset,
                                leader_epoch: o.leader_epoch,
                                metadata: o.metadata.clone(),
                                commit_timestamp: o.commit_timestamp_ms,
                            })),
                        ));
                    }
                }
                if records.is_empty() {
                    // Nothing live: everything up to the end can go.
                    None
                } else {
                    match self.queue_records(&mut inner, p, records, None) {
                        Ok(w) => Some(w),
                        Err(e) => {
                            warn!(error = %e, "queueing offsets snapshot failed");
                            continue;
                        }
                    }
                }
            };
            let new_start = match write {
                Some(w) => {
                    let written = w.await;
                    self.write_done(p);
                    match written {
                        Ok(at) => at.base_offset,
                        Err(e) => {
                            warn!(error = %e, "writing offsets snapshot failed");
                            continue;
                        }
                    }
                }
                None => -1,
            };
            match self.replicas.delete_records(log.clone(), new_start).await {
                Ok(start) => info!(
                    partition = p,
                    log_start = start,
                    "compacted offsets partition"
                ),
                Err(e) => warn!(partition = p, error = %e, "compacting offsets partition failed"),
            }
        }
    }

    /// Sets the group gauges: groups by state, and each committed offset's
    /// lag behind its partition's high watermark.
    fn export_metrics(&self) {
        let image = self.metadata.image();
        let inner = self.lock();
        let mut counts: HashMap<GroupState, i64> = HashMap::new();
        let mut tenant_lag: HashMap<&str, i64> =
            image.tenants().into_iter().map(|t| (t, 0)).collect();
        for slot in inner.groups.values() {
            let g = &slot.group;
            *counts.entry(g.state()).or_default() += 1;
            let tenant = crate::tenant::tenant_of_resource(&g.group_id);
            for ((topic, partition), o) in &g.offsets {
                let Some(record) = image.topic(topic) else {
                    continue;
                };
                let Some(log) = self.replicas.logs().get(record.id, *partition) else {
                    continue;
                };
                let hw = log.offsets().high_watermark;
                let labels = [g.group_id.as_str(), topic.as_str(), &partition.to_string()];
                let lag = (hw - o.offset).max(0);
                metrics::GROUP_LAG.with_label_values(&labels).set(lag);
                if let Some(sum) = tenant.and_then(|t| tenant_lag.get_mut(t)) {
                    *sum += lag;
                }
                metrics::GROUP_COMMITTED_OFFSET
                    .with_label_values(&labels)
                    .set(o.offset);
            }
        }
        for (tenant, lag) in tenant_lag {
            metrics::TENANT_CONSUMER_LAG
                .with_label_values(&[tenant])
                .set(lag);
        }
        for state in GroupState::ALL {
            metrics::GROUPS
                .with_label_values(&[state.name()])
                .set(counts.get(&state).copied().unwrap_or(0));
        }
    }
}

/// The group's metadata record value.
fn group_value(g: &Group) -> Bytes {
    let protocol = g.protocol_name.clone().unwrap_or_default();
    record::group_value(&GroupValue {
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        generation: g.generation_id,
        protocol: g.protocol_name.clone(),
        leader: g.leader_id.clone(),
        current_state_timestamp: g.state_timestamp_ms,
        members: g
            .members()
            .into_iter()
            .map(|m| MemberValue {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout: m.rebalance_timeout_ms,
                session_timeout: m.session_timeout_ms,
                subscription: m.metadata(&protocol),
                assignment: m.assignment.clone(),
            })
            .collect(),
    })
}
