//! The metadata controller: a Raft group (openraft) of the configured
//! voters — three in a cluster, this node alone when single — that owns the
//! metadata log. Any node proposes records ([`Controller::propose`]); the
//! Raft leader (the *active controller*) commits them, and every node
//! replays them into its [`MetadataImage`].
//!
//! The active controller also runs the cluster's automatic decisions in
//! [`Controller::run_active_duties`]: it fences brokers whose heartbeats
//! stopped (moving their leadership to the rest of the ISR), unfences them
//! when they return, and restores preferred leaders. The decisions are pure
//! ([`decisions`]); this module only feeds them and commits their records.
//!
//! - [`log_store`]: the Raft log and vote on RocksDB.
//! - [`state_machine`]: applies records, publishes images, snapshots.
//! - [`network`]: openraft's transport over [`crate::cluster::rpc`].

pub mod decisions;
pub mod log_store;
pub mod network;
pub mod state_machine;

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Config as RaftConfig, Raft, ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::cluster::metadata::{new_cluster_id, MetadataImage};
use crate::cluster::records::{ControllerReply, MetadataRecord, ScramCredentialChange};
use crate::cluster::rpc::{
    AlterPartitionRequest, BrokerHeartbeat, HeartbeatReply, RpcConnection, RpcRequest, RpcResponse,
};
use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::log::db::Db;
use crate::metrics;
use crate::tenant::scram::{ScramCredential, ScramMechanism};

openraft::declare_raft_types!(
    /// The metadata log's Raft types.
    pub TypeConfig:
        D = MetadataRecord,
        R = ControllerReply,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// How long a proposal may look for a leader and wait for its commit.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the active controller checks liveness and balance.
const DUTY_TICK: Duration = Duration::from_millis(200);

impl ControllerReply {
    /// The reply as a result: a non-zero code is that Kafka error.
    pub fn into_result(self) -> Result<ControllerReply> {
        if self.error_code == 0 {
            return Ok(self);
        }
        let code = ResponseError::try_from_code(self.error_code)
            .unwrap_or(ResponseError::UnknownServerError);
        Err(match self.message {
            Some(message) => Error::api_msg(code, message),
            None => Error::api(code),
        })
    }
}

/// What the active controller remembers of each broker's heartbeats. Not
/// in the log: a new active controller starts everyone's clock afresh.
#[derive(Debug, Default)]
struct Liveness {
    /// Broker id -> when its last heartbeat arrived, and the metadata index
    /// it had applied by then.
    last_heartbeat: HashMap<i32, (Instant, u64)>,
    /// When this node last became the active controller.
    active_since: Option<Instant>,
    /// When preferred leaders were last checked.
    last_balance: Option<Instant>,
    /// Since when each fenced broker has been seen fenced by this
    /// controller, for self-healing reassignment.
    fenced_since: HashMap<i32, Instant>,
    /// The Raft leader this node last heard from (AppendEntries) and when:
    /// once this node takes over, when the old controller went silent.
    leader_contact: Option<(i32, Instant)>,
}

/// This node's handle on the metadata controller.
pub struct Controller {
    node_id: i32,
    config: Arc<BrokerConfig>,
    raft: Raft<TypeConfig>,
    /// Voter id -> RPC address.
    voters: BTreeMap<u64, String>,
    images: watch::Receiver<Arc<MetadataImage>>,
    liveness: Mutex<Liveness>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("node_id", &self.node_id)
            .field("voters", &self.voters)
            .field("leader", &self.leader())
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// Opens the metadata log on `db`, starts Raft, and forms the voter
    /// group on first start. Does not wait for a leader.
    pub async fn start(config: Arc<BrokerConfig>, db: Arc<Db>) -> anyhow::Result<Arc<Self>> {
        let voters = config.controller_voters()?;
        let (publisher, images) = watch::channel(Arc::new(MetadataImage::empty(config.clone())));
        let load_db = db.clone();
        let load_config = config.clone();
        let state_machine = tokio::task::spawn_blocking(move || {
            state_machine::StateMachine::load(load_db, load_config, publisher)
                .map_err(|e| anyhow::anyhow!("loading the metadata snapshot: {e}"))
        })
        .await??;
        let single = voters.len() == 1;
        // openraft waits out the old leader's lease (election_timeout_max)
        // before a random election timeout between min and max starts: a
        // new controller about 3 to 4 times `controller.quorum.election.
        // timeout.ms` after the old one went silent.
        let election = config.controller_quorum_election_timeout_ms;
        let raft_config = RaftConfig {
            cluster_name: "metrobus".to_owned(),
            heartbeat_interval: 100,
            election_timeout_min: if single { 150 } else { election },
            election_timeout_max: if single { 300 } else { election * 2 },
            snapshot_policy: SnapshotPolicy::LogsSinceLast(5000),
            max_in_snapshot_log_to_keep: 1000,
            ..RaftConfig::default()
        }
        .validate()?;
        let raft = Raft::new(
            config.node_id as u64,
            Arc::new(raft_config),
            network::Network,
            log_store::LogStore::new(db),
            state_machine,
        )
        .await?;
        let members: BTreeMap<u64, BasicNode> = voters
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
            .collect();
        // Every voter initialises with the same membership: safe, and the
        // cluster forms whichever node starts first.
        match raft.initialize(members).await {
            Ok(()) => info!(voters = voters.len(), "metadata log initialised"),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Arc::new(Controller {
            node_id: config.node_id,
            config,
            raft,
            voters,
            images,
            liveness: Mutex::new(Liveness::default()),
        }))
    }

    /// The latest applied image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.images.borrow().clone()
    }

    /// A receiver woken on every new image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.images.clone()
    }

    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// The active controller's node id, if one is known.
    pub fn leader(&self) -> Option<i32> {
        self.raft
            .metrics()
            .borrow()
            .current_leader
            .map(|l| l as i32)
    }

    pub fn is_active(&self) -> bool {
        self.leader() == Some(self.node_id)
    }

    /// Whether this node is the active controller *and* a majority of the
    /// voters confirms it now. openraft 0.9 keeps calling a leader cut off
    /// from its majority the leader until it hears a higher term, so acting
    /// on [`Self::is_active`] alone would let an isolated controller keep
    /// answering its own heartbeats (staying ready) and deciding on a stale
    /// view. One quorum round trip, bounded by a heartbeat interval.
    pub async fn confirm_active(&self) -> bool {
        if !self.is_active() {
            return false;
        }
        let bound = Duration::from_millis(self.config.broker_heartbeat_interval_ms.max(100));
        matches!(
            tokio::time::timeout(bound, self.raft.ensure_linearizable()).await,
            Ok(Ok(_))
        )
    }

    /// A voter's RPC address, from `controller.quorum.voters`.
    pub fn voter_address(&self, id: u64) -> Option<String> {
        self.voters.get(&id).cloned()
    }

    /// Commits `record` through the active controller (this node or a
    /// forward) and returns its reply; the local image includes it when
    /// this returns.
    pub async fn propose(&self, record: MetadataRecord) -> Result<ControllerReply> {
        let deadline = tokio::time::Instant::now() + PROPOSE_TIMEOUT;
        let mut metrics = self.raft.metrics();
        loop {
            let leader = metrics.borrow_and_update().current_leader;
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            match leader {
                Some(leader) if leader == self.node_id as u64 => {
                    // Without a quorum a write never commits: bound it.
                    match tokio::time::timeout(remaining, self.raft.client_write(record.clone()))
                        .await
                    {
                        Ok(Ok(response)) => {
                            let reply = response.data;
                            self.wait_applied(reply.applied_index).await;
                            return Ok(reply);
                        }
                        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {}
                        Ok(Err(e)) => {
                            return Err(Error::api_msg(ResponseError::NotController, e.to_string()))
                        }
                        Err(_) => {}
                    }
                }
                Some(leader) => {
                    if let Some(addr) = self.voter_address(leader) {
                        let mut connection = RpcConnection::new(addr);
                        match connection
                            .call(&RpcRequest::Propose(record.clone()), remaining)
                            .await
                        {
                            Ok(RpcResponse::Propose(reply))
                                if reply.error_code != ResponseError::NotController.code() =>
                            {
                                self.wait_applied(reply.applied_index).await;
                                return Ok(reply);
                            }
                            Ok(_) => {}
                            Err(e) => debug!(error = %e, leader, "forwarding a proposal failed"),
                        }
                    }
                }
                None => {}
            }
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Err(Error::api_msg(
                    ResponseError::RequestTimedOut,
                    "no active controller answered in time",
                ));
            }
            // Wake on the next Raft state change (a leader elected), or
            // retry shortly after a failed forward.
            let _ =
                tokio::time::timeout(remaining.min(Duration::from_millis(200)), metrics.changed())
                    .await;
        }
    }

    /// Answers a proposal forwarded by another node: commits it if this
    /// node is the active controller, else NOT_CONTROLLER.
    pub async fn propose_local(&self, record: MetadataRecord) -> ControllerReply {
        match tokio::time::timeout(PROPOSE_TIMEOUT, self.raft.client_write(record)).await {
            Ok(Ok(response)) => response.data,
            Ok(Err(e)) => {
                ControllerReply::error(ResponseError::NotController.code(), e.to_string())
            }
            Err(_) => ControllerReply::error(
                ResponseError::RequestTimedOut.code(),
                "the metadata log did not commit in time",
            ),
        }
    }

    /// Waits (bounded) until the local image has applied `index`.
    pub async fn wait_applied(&self, index: u64) {
        let mut images = self.images.clone();
        let _ = tokio::time::timeout(
            PROPOSE_TIMEOUT,
            images.wait_for(|image| image.applied_index >= index),
        )
        .await;
    }

    /// Whether this process has joined: registered as `incarnation` (not a
    /// registration left from before a restart), unfenced, and its image
    /// has a cluster id.
    pub fn ready(&self, incarnation: u64) -> bool {
        let image = self.image();
        !image.cluster_id.is_empty()
            && image
                .brokers
                .get(&self.node_id)
                .is_some_and(|b| b.incarnation == incarnation && !b.fenced && !b.shutting_down)
    }

    /// Notes an AppendEntries from the Raft leader `leader` (heartbeats
    /// included), whose silence a successor measures from the last one.
    pub fn note_leader_contact(&self, leader: i32) {
        if leader != self.node_id {
            self.liveness
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .leader_contact = Some((leader, Instant::now()));
        }
    }

    /// The active controller's side of a heartbeat: note the time; register
    /// a new or restarted broker (fenced, its leadership moved away);
    /// unfence one that has caught up.
    pub async fn handle_heartbeat(&self, heartbeat: BrokerHeartbeat) -> HeartbeatReply {
        if !self.is_active() {
            return HeartbeatReply {
                error_code: ResponseError::NotController.code(),
                fenced: true,
            };
        }
        let id = heartbeat.registration.id;
        {
            let mut liveness = self.liveness.lock().unwrap_or_else(|p| p.into_inner());
            let _ = liveness
                .last_heartbeat
                .insert(id, (Instant::now(), heartbeat.applied_index));
        }
        let image = self.image();
        let known = image.brokers.get(&id);
        let same_process = known.is_some_and(|b| {
            b.incarnation == heartbeat.registration.incarnation
                && b.host == heartbeat.registration.host
                && b.port == heartbeat.registration.port
                && b.rpc_address == heartbeat.registration.rpc_address
                && b.endpoints == heartbeat.registration.endpoints
        });
        if !same_process {
            info!(
                broker = id,
                incarnation = heartbeat.registration.incarnation,
                "registering broker"
            );
            let mut registration = heartbeat.registration.clone();
            registration.fenced = true;
            registration.shutting_down = false;
            if let Err(e) = self
                .propose(MetadataRecord::RegisterBroker(registration))
                .await
            {
                warn!(broker = id, error = %e, "registering a broker failed");
            }
            // A restarted broker may have lost its place: lead nothing until
            // it is unfenced again.
            self.move_leadership_away(id).await;
            return HeartbeatReply {
                error_code: 0,
                fenced: true,
            };
        }
        let fenced = known.is_some_and(|b| b.fenced);
        if fenced && heartbeat.applied_index + 1 >= image.applied_index {
            info!(
                broker = id,
                "unfencing broker: it has caught up with the metadata log"
            );
            // Offline partitions it can lead get it back first, so that
            // when it counts as ready its partitions are online.
            let back = decisions::on_broker_back(&image, id);
            self.commit_partition_changes(back, "broker back").await;
            if self
                .propose(MetadataRecord::UnfenceBroker { id })
                .await
                .is_ok()
            {
                return HeartbeatReply {
                    error_code: 0,
                    fenced: false,
                };
            }
        }
        HeartbeatReply {
            error_code: 0,
            fenced: known.is_some_and(|b| b.fenced),
        }
    }

    /// Fences nothing, but elects new leaders for every partition `broker`
    /// leads and takes it out of every ISR.
    async fn move_leadership_away(&self, broker: i32) {
        let changes = decisions::on_broker_gone(&self.image(), broker);
        self.commit_partition_changes(changes, "broker gone").await;
    }

    async fn commit_partition_changes(
        &self,
        changes: Vec<crate::cluster::records::PartitionChange>,
        why: &str,
    ) {
        if changes.is_empty() {
            return;
        }
        let count = changes.len();
        match self
            .propose(MetadataRecord::PartitionChanges(changes))
            .await
        {
            Ok(reply) => {
                let refused = reply.partition_errors.iter().filter(|c| **c != 0).count();
                info!(
                    changes = count,
                    refused, why, "partition leadership changed"
                );
            }
            Err(e) => warn!(error = %e, why, "partition changes failed"),
        }
    }

    /// Sends an ISR change to the active controller (here or remote).
    pub async fn alter_partition(&self, request: AlterPartitionRequest) -> ControllerReply {
        match self.leader() {
            Some(leader) if leader == self.node_id => self.handle_alter_partition(request).await,
            Some(leader) => match self.voter_address(leader as u64) {
                Some(addr) => {
                    let mut connection = RpcConnection::new(addr);
                    match connection
                        .call(
                            &RpcRequest::AlterPartition(request),
                            Duration::from_secs(10),
                        )
                        .await
                    {
                        Ok(RpcResponse::AlterPartition(reply)) => {
                            self.wait_applied(reply.applied_index).await;
                            reply
                        }
                        Ok(_) => ControllerReply::error(
                            ResponseError::UnknownServerError.code(),
                            "unexpected answer",
                        ),
                        Err(e) => ControllerReply::error(
                            ResponseError::NotController.code(),
                            e.to_string(),
                        ),
                    }
                }
                None => ControllerReply::error(
                    ResponseError::NotController.code(),
                    "unknown controller address",
                ),
            },
            None => {
                ControllerReply::error(ResponseError::NotController.code(), "no active controller")
            }
        }
    }

    /// The active controller's side of AlterPartition.
    pub async fn handle_alter_partition(&self, request: AlterPartitionRequest) -> ControllerReply {
        if !self.is_active() {
            return ControllerReply::error(
                ResponseError::NotController.code(),
                "not the active controller",
            );
        }
        let image = self.image();
        let Some(current) = image.partition(&request.topic_id, request.partition) else {
            return ControllerReply::error(
                ResponseError::UnknownTopicOrPartition.code(),
                "unknown partition",
            );
        };
        if let Err(code) = decisions::check_alter_isr(
            current,
            request.broker,
            request.leader_epoch,
            request.partition_epoch,
            &request.new_isr,
            &image.live_brokers(),
        ) {
            return ControllerReply::error(code.code(), format!("{code:?}"));
        }
        let change = crate::cluster::records::PartitionChange {
            topic_id: request.topic_id,
            partition: request.partition,
            expected_partition_epoch: Some(request.partition_epoch),
            leader: None,
            isr: Some(request.new_isr.clone()),
            replicas: None,
        };
        match self
            .propose(MetadataRecord::PartitionChanges(vec![change]))
            .await
        {
            Ok(reply) => {
                let code = reply.partition_errors.first().copied().unwrap_or(0);
                if code == 0 {
                    let expanded = request.new_isr.len() > current.isr.len();
                    if expanded {
                        metrics::ISR_EXPANDS_TOTAL.inc();
                    } else {
                        metrics::ISR_SHRINKS_TOTAL.inc();
                    }
                    info!(topic_id = %request.topic_id, partition = request.partition,
                        isr = ?request.new_isr, "ISR changed");
                    ControllerReply {
                        applied_index: reply.applied_index,
                        ..ControllerReply::ok()
                    }
                } else {
                    ControllerReply::error(code, "partition changed meanwhile")
                }
            }
            Err(e) => ControllerReply::error(e.code(), e.to_string()),
        }
    }

    /// The active controller's side of a controlled shutdown: the broker
    /// stops leading and leaves every ISR now, before it exits.
    pub async fn handle_controlled_shutdown(&self, broker: i32) -> ControllerReply {
        if !self.is_active() {
            return ControllerReply::error(
                ResponseError::NotController.code(),
                "not the active controller",
            );
        }
        info!(broker, "controlled shutdown: moving leadership away");
        match self
            .propose(MetadataRecord::BeginShutdown { id: broker })
            .await
        {
            Ok(_) => {
                self.move_leadership_away(broker).await;
                ControllerReply {
                    applied_index: self.image().applied_index,
                    ..ControllerReply::ok()
                }
            }
            Err(e) => ControllerReply::error(e.code(), e.to_string()),
        }
    }

    /// Runs until cancelled, acting whenever this node is the active
    /// controller: initialise the cluster id, fence silent brokers, restore
    /// preferred leaders.
    pub async fn run_active_duties(self: Arc<Self>, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(DUTY_TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            self.record_metrics();
            if !self.is_active() {
                self.liveness
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .active_since = None;
                continue;
            }
            self.active_tick().await;
        }
    }

    fn record_metrics(&self) {
        let metrics_now = self.raft.metrics().borrow().clone();
        metrics::CONTROLLER_ACTIVE.set(i64::from(metrics_now.state == ServerState::Leader));
        metrics::RAFT_TERM.set(metrics_now.current_term as i64);
        metrics::RAFT_COMMIT_INDEX.set(
            metrics_now
                .last_applied
                .map(|l| l.index as i64)
                .unwrap_or(0),
        );
    }

    /// SCRAM credentials (both mechanisms) for `sasl.seed.users`, which
    /// the cluster's first record sets, so a new cluster has its operator
    /// account from the start.
    fn seed_credentials(&self) -> Vec<ScramCredentialChange> {
        let seeds = self.config.seed_users().unwrap_or_default();
        seeds
            .iter()
            .flat_map(|(user, password)| {
                [ScramMechanism::Sha256, ScramMechanism::Sha512].map(|mechanism| {
                    let salt = ScramCredential::new_random_salt();
                    ScramCredentialChange {
                        user: user.clone(),
                        mechanism: mechanism.kafka_type(),
                        credential: Some(ScramCredential::from_password(
                            mechanism,
                            password.as_bytes(),
                            &salt,
                            ScramMechanism::MIN_ITERATIONS,
                        )),
                    }
                })
            })
            .collect()
    }

    async fn active_tick(&self) {
        if !self.confirm_active().await {
            // Cut off from the majority: decide nothing on a stale view.
            return;
        }
        let image = self.image();
        if image.cluster_id.is_empty() {
            let cluster_id = self
                .config
                .cluster_id
                .clone()
                .unwrap_or_else(new_cluster_id);
            let seed_credentials = self.seed_credentials();
            info!(%cluster_id, seeded_users = seed_credentials.len() / 2, "initialising the cluster");
            if let Err(e) = self
                .propose(MetadataRecord::InitCluster {
                    cluster_id,
                    seed_credentials,
                })
                .await
            {
                warn!(error = %e, "initialising the cluster id failed");
            }
            return;
        }
        let session = Duration::from_millis(self.config.broker_session_timeout_ms);
        let now = Instant::now();
        let (silent, balance_due, long_gone) = {
            let mut liveness = self.liveness.lock().unwrap_or_else(|p| p.into_inner());
            let since = *liveness.active_since.get_or_insert(now);
            // A new active controller has heard nobody yet: live brokers
            // find it within a heartbeat or two, so it waits four heartbeat
            // intervals (at most a session) before fencing anyone, and the
            // old controller a session after its last Raft message. That
            // keeps a failover that also lost the controller short.
            let heartbeat = Duration::from_millis(self.config.broker_heartbeat_interval_ms);
            let grace = session.min(heartbeat * 4);
            let min_grace = session.min(heartbeat * 2);
            let silent: Vec<i32> = image
                .brokers
                .values()
                .filter(|b| !b.fenced)
                .filter(|b| {
                    let silence = decisions::Silence {
                        since_heartbeat: liveness
                            .last_heartbeat
                            .get(&b.id)
                            .filter(|(at, _)| *at >= since)
                            .map(|(at, _)| now.duration_since(*at)),
                        since_led: liveness
                            .leader_contact
                            .filter(|(leader, _)| *leader == b.id)
                            .map(|(_, at)| now.duration_since(at)),
                        since_active: now.duration_since(since),
                    };
                    decisions::is_silent(silence, session, grace, min_grace)
                })
                .map(|b| b.id)
                .collect();
            let interval = Duration::from_secs(self.config.leader_imbalance_check_interval_seconds);
            liveness
                .fenced_since
                .retain(|id, _| image.brokers.get(id).is_some_and(|b| b.fenced));
            for broker in image.brokers.values().filter(|b| b.fenced) {
                let _ = liveness.fenced_since.entry(broker.id).or_insert(now);
            }
            let delay = Duration::from_millis(self.config.replica_reassignment_delay_ms);
            let long_gone: Vec<i32> = liveness
                .fenced_since
                .iter()
                .filter(|(_, since)| now.duration_since(**since) >= delay)
                .map(|(id, _)| *id)
                .collect();
            let balance_due = self.config.auto_leader_rebalance_enable
                && liveness
                    .last_balance
                    .is_none_or(|at| now.duration_since(at) >= interval);
            if balance_due {
                liveness.last_balance = Some(now);
            }
            (silent, balance_due, long_gone)
        };
        for broker in silent {
            warn!(
                broker,
                session_timeout_ms = session.as_millis() as u64,
                "broker missed its heartbeats: fencing it"
            );
            if self
                .propose(MetadataRecord::FenceBroker { id: broker })
                .await
                .is_ok()
            {
                self.move_leadership_away(broker).await;
            }
        }
        // Repair leftovers (an earlier controller died between fencing a
        // broker and moving its partitions): idempotent when done.
        let image = self.image();
        for broker in image
            .brokers
            .values()
            .filter(|b| b.fenced || b.shutting_down)
        {
            let changes = decisions::on_broker_gone(&image, broker.id);
            self.commit_partition_changes(changes, "fenced broker still listed")
                .await;
        }
        for broker in long_gone {
            let changes = decisions::reassign_away(&self.image(), broker);
            if !changes.is_empty() {
                warn!(broker, partitions = changes.len(),
                    "broker gone longer than replica.reassignment.delay.ms: moving its replicas to live brokers");
            }
            self.commit_partition_changes(changes, "self-healing reassignment")
                .await;
        }
        if balance_due {
            let changes = decisions::preferred_leader_changes(&self.image());
            self.commit_partition_changes(changes, "preferred leader election")
                .await;
        }
    }
}
