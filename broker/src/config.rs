//! Typed broker configuration.
//!
//! Precedence: built-in defaults < config file (TOML) < environment
//! (`METROBUS_` + the setting name upper-cased, dots as underscores) <
//! command-line flags. Settings carry Kafka's property names where Kafka has
//! one. Nested TOML tables are flattened to dotted names, so
//! `log.retention.ms = 1000` and `[log.retention] ms = 1000` are the same
//! setting. Unknown names and invalid values fail startup with a message that
//! says which setting and why.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context};

use crate::log::reclaim::BlobGcPolicy;
use crate::server::endpoint::{self, ListenerSpec};

/// When appends become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Every write batch is fsynced before it is acknowledged; concurrent
    /// producers share one fsync (group commit). Survives power loss.
    Durable,
    /// No fsync (Kafka's default): the OS page cache holds the write-ahead
    /// log, which survives a process crash; durability across power loss
    /// comes from replicas.
    Replicated,
}

impl FromStr for FlushPolicy {
    type Err = anyhow::Error;
    fn from_str(value: &str) -> anyhow::Result<Self> {
        match value {
            "durable" => Ok(FlushPolicy::Durable),
            "replicated" => Ok(FlushPolicy::Replicated),
            other => bail!("expected `durable` or `replicated`, got `{other}`"),
        }
    }
}

impl fmt::Display for FlushPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FlushPolicy::Durable => "durable",
            FlushPolicy::Replicated => "replicated",
        })
    }
}

/// Every broker setting, resolved and validated.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `node.id`: this broker's id in metadata responses.
    pub node_id: i32,
    /// `listeners`: the Kafka listeners, `NAME://HOST:PORT,...` (a bare
    /// `HOST:PORT` is PLAINTEXT). See [`crate::server::endpoint`].
    pub listeners: String,
    /// `advertised.listeners`: the addresses clients are told to use, per
    /// listener name (default: `listeners`).
    pub advertised_listeners: Option<String>,
    /// `listener.security.protocol.map`: listener name to security protocol.
    pub listener_security_protocol_map: String,
    /// `sasl.enabled.mechanisms`: what SASL listeners offer.
    pub sasl_enabled_mechanisms: String,
    /// `super.users`: principals allowed everything, `User:NAME;User:NAME`.
    pub super_users: String,
    /// `sasl.seed.users`: `USER:PASSWORD,...` whose SCRAM credentials the
    /// cluster creates at first start (only for users without any).
    pub sasl_seed_users: String,
    /// `tenant.default.acls.enable`: a tenant's users may do everything on
    /// the tenant's resources unless a DENY ACL says otherwise; when false,
    /// only what ALLOW ACLs grant (not a Kafka setting).
    pub tenant_default_acls_enable: bool,
    /// `connections.max.reauth.ms`: SASL sessions last this long, then the
    /// client must re-authenticate (KIP-368); 0: forever.
    pub connections_max_reauth_ms: i64,
    /// `connection.failed.authentication.delay.ms`: how long a failed
    /// authentication waits before its answer and the close.
    pub connection_failed_authentication_delay_ms: u64,
    /// `ssl.keystore.location`: a PEM file with the private key and the
    /// certificate chain of SSL and SASL_SSL listeners.
    pub ssl_keystore_location: Option<PathBuf>,
    /// `ssl.keystore.type`: only `PEM`.
    pub ssl_keystore_type: String,
    /// `http.listener`: the address of `/metrics` and the health endpoints.
    pub http_listener: String,
    /// `log.dirs`: the RocksDB data directory.
    pub log_dirs: PathBuf,
    /// `cluster.id`: fixed cluster id; generated at first start when unset.
    pub cluster_id: Option<String>,
    /// `num.partitions`: partitions of an auto-created topic or of a
    /// CreateTopics request that asks for the default.
    pub num_partitions: i32,
    /// `default.replication.factor`: replicas of a new topic that asks for
    /// the default. Unset: 3 in a cluster, 1 on a single node.
    pub default_replication_factor: Option<i16>,
    /// `min.insync.replicas`: the default of the topic setting. Unset: 2 in
    /// a cluster, 1 on a single node.
    pub min_insync_replicas: Option<i32>,
    /// `controller.listener`: the internal RPC address (TCP: Raft, broker
    /// heartbeats, replica fetching; UDP: gossip).
    pub controller_listener: String,
    /// `controller.quorum.voters`: `id@host:port,...`, every node of the
    /// cluster. Empty: a single node, its own one-voter controller.
    pub controller_quorum_voters: String,
    /// `controller.quorum.election.timeout.ms`: how long the voters wait
    /// without hearing from the active controller before electing another
    /// (randomised up to twice this, after the old one's lease of twice
    /// this has run out).
    pub controller_quorum_election_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`: how often a broker heartbeats to the
    /// active controller.
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced and
    /// its partitions get new leaders.
    pub broker_session_timeout_ms: u64,
    /// `replica.lag.time.max.ms`: a follower that has not caught up for this
    /// long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// `replica.high.watermark.checkpoint.interval.ms`: how often each
    /// partition's high watermark is written down (what a restart serves
    /// from).
    pub replica_high_watermark_checkpoint_interval_ms: u64,
    /// `replica.fetch.wait.max.ms`: how long a follower's fetch waits for data.
    pub replica_fetch_wait_max_ms: u64,
    /// `replica.fetch.max.bytes`: bytes a follower fetches per partition.
    pub replica_fetch_max_bytes: usize,
    /// `replica.fetch.response.max.bytes`: bytes in one follower fetch.
    pub replica_fetch_response_max_bytes: usize,
    /// `auto.leader.rebalance.enable`: give leadership back to preferred replicas.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`: how often preferred leaders are checked.
    pub leader_imbalance_check_interval_seconds: u64,
    /// `replica.reassignment.delay.ms`: a broker fenced this long has its
    /// replicas moved to live brokers (self-healing; not a Kafka setting).
    pub replica_reassignment_delay_ms: u64,
    /// `auto.create.topics.enable`: Metadata requests create unknown topics.
    pub auto_create_topics_enable: bool,
    /// `delete.topic.enable`.
    pub delete_topic_enable: bool,
    /// `log.retention.ms`: default `retention.ms` of topics (-1: forever).
    pub log_retention_ms: i64,
    /// `log.retention.bytes`: default `retention.bytes` per partition.
    pub log_retention_bytes: i64,
    /// `log.retention.check.interval.ms`: how often retention runs.
    pub log_retention_check_interval_ms: u64,
    /// `log.blob.gc.garbage.ratio`: blob files are garbage-collected once
    /// this fraction of their bytes belongs to deleted batches (not Kafka).
    pub log_blob_gc_garbage_ratio: f64,
    /// `log.blob.gc.min.garbage.bytes`: and once at least this much.
    pub log_blob_gc_min_garbage_bytes: u64,
    /// `producer.id.expiration.ms`: an idempotent producer idle this long
    /// is forgotten by each partition (checked with retention).
    pub producer_id_expiration_ms: i64,
    /// `message.max.bytes`: the largest record batch a topic accepts by default.
    pub message_max_bytes: i32,
    /// `log.flush.policy`: `durable` (fsync, group commit) or `replicated`.
    /// Unset: durable on a single node, replicated in a cluster.
    pub log_flush_policy: FlushPolicy,
    /// `socket.request.max.bytes`: the largest request frame accepted.
    pub socket_request_max_bytes: i32,
    /// `max.connections`: connections beyond this are closed at accept.
    pub max_connections: usize,
    /// `connections.max.idle.ms`: a connection idle this long is closed.
    pub connections_max_idle_ms: u64,
    /// `queued.max.requests`: requests one connection may have in flight
    /// before the broker stops reading from it.
    pub queued_max_requests: usize,
    /// `queued.max.request.bytes`: bytes of requests in flight on the whole
    /// broker; a connection waits before reading a frame that would pass it.
    pub queued_max_request_bytes: i64,
    /// `quota.window.num`: samples a client quota's rate is measured over.
    pub quota_window_num: usize,
    /// `quota.window.size.seconds`: the length of each sample.
    pub quota_window_size_seconds: u64,
    /// `shutdown.timeout.ms`: how long a clean shutdown waits for requests
    /// in flight before aborting them.
    pub shutdown_timeout_ms: u64,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` when it is created.
    pub offsets_topic_num_partitions: i32,
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state` when it is
    /// created.
    pub transaction_state_log_num_partitions: i32,
    /// `transaction.max.timeout.ms`: the longest `transaction.timeout.ms` a producer may ask for.
    pub transaction_max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often the transaction
    /// coordinator aborts transactions open longer than their timeout.
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: u64,
    /// `offsets.topic.segment.bytes`: bytes a `__consumer_offsets` partition may hold before the
    /// coordinator compacts it (rewrites the live state, drops the rest).
    pub offsets_topic_segment_bytes: i64,
    /// `offsets.retention.minutes`: committed offsets of an empty group are kept this long.
    pub offsets_retention_minutes: i64,
    /// `offsets.retention.check.interval.ms`: how often offsets expire and the offsets topic is compacted.
    pub offsets_retention_check_interval_ms: u64,
    /// `offset.metadata.max.bytes`: the longest metadata string an offset commit may carry.
    pub offset_metadata_max_bytes: usize,
    /// `group.initial.rebalance.delay.ms`: how long a new group waits for more members
    /// before its first rebalance.
    pub group_initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`: the shortest session timeout a member may ask for.
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`: the longest session timeout a member may ask for.
    pub group_max_session_timeout_ms: i32,
    /// `group.max.size`: the most members a group may have.
    pub group_max_size: usize,
    /// Names of the settings given explicitly (file, environment or flag),
    /// so DescribeConfigs can tell a static setting from a default.
    pub explicit: std::collections::BTreeSet<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            listeners: "127.0.0.1:9092".to_owned(),
            advertised_listeners: None,
            listener_security_protocol_map: crate::server::endpoint::DEFAULT_PROTOCOL_MAP
                .to_owned(),
            sasl_enabled_mechanisms: "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512".to_owned(),
            super_users: String::new(),
            sasl_seed_users: String::new(),
            tenant_default_acls_enable: true,
            connections_max_reauth_ms: 0,
            connection_failed_authentication_delay_ms: 100,
            ssl_keystore_location: None,
            ssl_keystore_type: "PEM".to_owned(),
            http_listener: "127.0.0.1:9644".to_owned(),
            log_dirs: PathBuf::from("./data"),
            cluster_id: None,
            num_partitions: 1,
            default_replication_factor: None,
            min_insync_replicas: None,
            controller_listener: "127.0.0.1:9093".to_owned(),
            controller_quorum_voters: String::new(),
            controller_quorum_election_timeout_ms: 300,
            broker_heartbeat_interval_ms: 500,
            broker_session_timeout_ms: 2500,
            replica_lag_time_max_ms: 30_000,
            replica_high_watermark_checkpoint_interval_ms: 5000,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_max_bytes: 1_048_576,
            replica_fetch_response_max_bytes: 10_485_760,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
            replica_reassignment_delay_ms: 600_000,
            auto_create_topics_enable: true,
            delete_topic_enable: true,
            log_retention_ms: 7 * 24 * 60 * 60 * 1000,
            log_retention_bytes: -1,
            log_retention_check_interval_ms: 5 * 60 * 1000,
            log_blob_gc_garbage_ratio: BlobGcPolicy::default().garbage_ratio,
            log_blob_gc_min_garbage_bytes: BlobGcPolicy::default().min_garbage_bytes,
            producer_id_expiration_ms: 24 * 60 * 60 * 1000,
            message_max_bytes: 1_048_588,
            log_flush_policy: FlushPolicy::Durable,
            socket_request_max_bytes: 100 * 1024 * 1024,
            max_connections: 10_000,
            connections_max_idle_ms: 10 * 60 * 1000,
            queued_max_requests: 500,
            queued_max_request_bytes: 512 * 1024 * 1024,
            quota_window_num: 11,
            quota_window_size_seconds: 1,
            shutdown_timeout_ms: 10_000,
            offsets_topic_num_partitions: 50,
            transaction_state_log_num_partitions: 50,
            transaction_max_timeout_ms: 900_000,
            transaction_abort_timed_out_transaction_cleanup_interval_ms: 10_000,
            offsets_topic_segment_bytes: 100 * 1024 * 1024,
            offsets_retention_minutes: 7 * 24 * 60,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: i32::MAX as usize,
            explicit: std::collections::BTreeSet::new(),
        }
    }
}

/// The names of every setting, in documentation order.
pub const SETTING_NAMES: &[&str] = &[
    "node.id",
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "sasl.enabled.mechanisms",
    "super.users",
    "sasl.seed.users",
    "tenant.default.acls.enable",
    "connections.max.reauth.ms",
    "connection.failed.authentication.delay.ms",
    "ssl.keystore.location",
    "ssl.keystore.type",
    "http.listener",
    "log.dirs",
    "cluster.id",
    "num.partitions",
    "default.replication.factor",
    "min.insync.replicas",
    "controller.listener",
    "controller.quorum.voters",
    "controller.quorum.election.timeout.ms",
    "broker.heartbeat.interval.ms",
    "broker.session.timeout.ms",
    "replica.lag.time.max.ms",
    "replica.high.watermark.checkpoint.interval.ms",
    "replica.fetch.wait.max.ms",
    "replica.fetch.max.bytes",
    "replica.fetch.response.max.bytes",
    "auto.leader.rebalance.enable",
    "leader.imbalance.check.interval.seconds",
    "replica.reassignment.delay.ms",
    "auto.create.topics.enable",
    "delete.topic.enable",
    "log.retention.ms",
    "log.retention.bytes",
    "log.retention.check.interval.ms",
    "log.blob.gc.garbage.ratio",
    "log.blob.gc.min.garbage.bytes",
    "producer.id.expiration.ms",
    "message.max.bytes",
    "log.flush.policy",
    "socket.request.max.bytes",
    "max.connections",
    "connections.max.idle.ms",
    "queued.max.requests",
    "queued.max.request.bytes",
    "quota.window.num",
    "quota.window.size.seconds",
    "shutdown.timeout.ms",
    "offsets.topic.num.partitions",
    "offsets.topic.segment.bytes",
    "transaction.state.log.num.partitions",
    "transaction.max.timeout.ms",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
    "offsets.retention.minutes",
    "offsets.retention.check.interval.ms",
    "offset.metadata.max.bytes",
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.max.size",
];

fn parse<T: FromStr>(name: &str, value: &str) -> anyhow::Result<T>
where
    T::Err: fmt::Display,
{
    value
        .trim()
        .parse::<T>()
        .map_err(|e| anyhow::anyhow!("invalid value `{value}` for `{name}`: {e}"))
}

impl BrokerConfig {
    /// Sets one setting by its name from its text form.
    pub fn set(&mut self, name: &str, value: &str) -> anyhow::Result<()> {
        match name {
            "node.id" => self.node_id = parse(name, value)?,
            "listeners" => self.listeners = value.trim().to_owned(),
            "advertised.listeners" => self.advertised_listeners = Some(value.trim().to_owned()),
            "listener.security.protocol.map" => {
                self.listener_security_protocol_map = value.trim().to_owned()
            }
            "sasl.enabled.mechanisms" => self.sasl_enabled_mechanisms = value.trim().to_owned(),
            "super.users" => self.super_users = value.trim().to_owned(),
            "sasl.seed.users" => self.sasl_seed_users = value.trim().to_owned(),
            "tenant.default.acls.enable" => self.tenant_default_acls_enable = parse(name, value)?,
            "connections.max.reauth.ms" => self.connections_max_reauth_ms = parse(name, value)?,
            "connection.failed.authentication.delay.ms" => {
                self.connection_failed_authentication_delay_ms = parse(name, value)?
            }
            "ssl.keystore.location" => self.ssl_keystore_location = Some(PathBuf::from(value)),
            "ssl.keystore.type" => self.ssl_keystore_type = value.trim().to_owned(),
            "http.listener" => self.http_listener = value.to_owned(),
            "log.dirs" => self.log_dirs = PathBuf::from(value),
            "cluster.id" => self.cluster_id = Some(value.to_owned()),
            "num.partitions" => self.num_partitions = parse(name, value)?,
            "default.replication.factor" => {
                self.default_replication_factor = Some(parse(name, value)?)
            }
            "min.insync.replicas" => self.min_insync_replicas = Some(parse(name, value)?),
            "controller.listener" => self.controller_listener = value.to_owned(),
            "controller.quorum.voters" => self.controller_quorum_voters = value.to_owned(),
            "controller.quorum.election.timeout.ms" => {
                self.controller_quorum_election_timeout_ms = parse(name, value)?
            }
            "broker.heartbeat.interval.ms" => {
                self.broker_heartbeat_interval_ms = parse(name, value)?
            }
            "broker.session.timeout.ms" => self.broker_session_timeout_ms = parse(name, value)?,
            "replica.lag.time.max.ms" => self.replica_lag_time_max_ms = parse(name, value)?,
            "replica.high.watermark.checkpoint.interval.ms" => {
                self.replica_high_watermark_checkpoint_interval_ms = parse(name, value)?
            }
            "replica.fetch.wait.max.ms" => self.replica_fetch_wait_max_ms = parse(name, value)?,
            "replica.fetch.max.bytes" => self.replica_fetch_max_bytes = parse(name, value)?,
            "replica.fetch.response.max.bytes" => {
                self.replica_fetch_response_max_bytes = parse(name, value)?
            }
            "auto.leader.rebalance.enable" => {
                self.auto_leader_rebalance_enable = parse(name, value)?
            }
            "leader.imbalance.check.interval.seconds" => {
                self.leader_imbalance_check_interval_seconds = parse(name, value)?
            }
            "replica.reassignment.delay.ms" => {
                self.replica_reassignment_delay_ms = parse(name, value)?
            }
            "auto.create.topics.enable" => self.auto_create_topics_enable = parse(name, value)?,
            "delete.topic.enable" => self.delete_topic_enable = parse(name, value)?,
            "log.retention.ms" => self.log_retention_ms = parse(name, value)?,
            "log.retention.bytes" => self.log_retention_bytes = parse(name, value)?,
            "log.retention.check.interval.ms" => {
                self.log_retention_check_interval_ms = parse(name, value)?
            }
            "log.blob.gc.garbage.ratio" => self.log_blob_gc_garbage_ratio = parse(name, value)?,
            "log.blob.gc.min.garbage.bytes" => {
                self.log_blob_gc_min_garbage_bytes = parse(name, value)?
            }
            "producer.id.expiration.ms" => self.producer_id_expiration_ms = parse(name, value)?,
            "message.max.bytes" => self.message_max_bytes = parse(name, value)?,
            "log.flush.policy" => self.log_flush_policy = parse(name, value)?,
            "socket.request.max.bytes" => self.socket_request_max_bytes = parse(name, value)?,
            "max.connections" => self.max_connections = parse(name, value)?,
            "connections.max.idle.ms" => self.connections_max_idle_ms = parse(name, value)?,
            "queued.max.requests" => self.queued_max_requests = parse(name, value)?,
            "queued.max.request.bytes" => self.queued_max_request_bytes = parse(name, value)?,
            "quota.window.num" => self.quota_window_num = parse(name, value)?,
            "quota.window.size.seconds" => self.quota_window_size_seconds = parse(name, value)?,
            "shutdown.timeout.ms" => self.shutdown_timeout_ms = parse(name, value)?,
            "offsets.topic.num.partitions" => {
                self.offsets_topic_num_partitions = parse(name, value)?
            }
            "offsets.topic.segment.bytes" => self.offsets_topic_segment_bytes = parse(name, value)?,
            "transaction.state.log.num.partitions" => {
                self.transaction_state_log_num_partitions = parse(name, value)?
            }
            "transaction.max.timeout.ms" => self.transaction_max_timeout_ms = parse(name, value)?,
            "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
                self.transaction_abort_timed_out_transaction_cleanup_interval_ms =
                    parse(name, value)?
            }
            "offsets.retention.minutes" => self.offsets_retention_minutes = parse(name, value)?,
            "offsets.retention.check.interval.ms" => {
                self.offsets_retention_check_interval_ms = parse(name, value)?
            }
            "offset.metadata.max.bytes" => self.offset_metadata_max_bytes = parse(name, value)?,
            "group.initial.rebalance.delay.ms" => {
                self.group_initial_rebalance_delay_ms = parse(name, value)?
            }
            "group.min.session.timeout.ms" => {
                self.group_min_session_timeout_ms = parse(name, value)?
            }
            "group.max.session.timeout.ms" => {
                self.group_max_session_timeout_ms = parse(name, value)?
            }
            "group.max.size" => self.group_max_size = parse(name, value)?,
            other => bail!("unknown setting `{other}`"),
        }
        let _ = self.explicit.insert(name.to_owned());
        Ok(())
    }

    /// The current value of a setting in its text form, for DescribeConfigs.
    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "node.id" => self.node_id.to_string(),
            "listeners" => self.listeners.clone(),
            "advertised.listeners" => self
                .advertised_listeners
                .clone()
                .unwrap_or_else(|| self.listeners.clone()),
            "listener.security.protocol.map" => self.listener_security_protocol_map.clone(),
            "sasl.enabled.mechanisms" => self.sasl_enabled_mechanisms.clone(),
            "super.users" => self.super_users.clone(),
            // A secret: never shown.
            "sasl.seed.users" => return None,
            "tenant.default.acls.enable" => self.tenant_default_acls_enable.to_string(),
            "connections.max.reauth.ms" => self.connections_max_reauth_ms.to_string(),
            "connection.failed.authentication.delay.ms" => {
                self.connection_failed_authentication_delay_ms.to_string()
            }
            "ssl.keystore.location" => self.ssl_keystore_location.as_ref()?.display().to_string(),
            "ssl.keystore.type" => self.ssl_keystore_type.clone(),
            "http.listener" => self.http_listener.clone(),
            "log.dirs" => self.log_dirs.display().to_string(),
            "cluster.id" => self.cluster_id.clone()?,
            "num.partitions" => self.num_partitions.to_string(),
            "default.replication.factor" => self.replication_factor().to_string(),
            "min.insync.replicas" => self.min_insync().to_string(),
            "controller.listener" => self.controller_listener.clone(),
            "controller.quorum.voters" => self.controller_quorum_voters.clone(),
            "controller.quorum.election.timeout.ms" => {
                self.controller_quorum_election_timeout_ms.to_string()
            }
            "broker.heartbeat.interval.ms" => self.broker_heartbeat_interval_ms.to_string(),
            "broker.session.timeout.ms" => self.broker_session_timeout_ms.to_string(),
            "replica.lag.time.max.ms" => self.replica_lag_time_max_ms.to_string(),
            "replica.high.watermark.checkpoint.interval.ms" => self
                .replica_high_watermark_checkpoint_interval_ms
                .to_string(),
            "replica.fetch.wait.max.ms" => self.replica_fetch_wait_max_ms.to_string(),
            "replica.fetch.max.bytes" => self.replica_fetch_max_bytes.to_string(),
            "replica.fetch.response.max.bytes" => self.replica_fetch_response_max_bytes.to_string(),
            "auto.leader.rebalance.enable" => self.auto_leader_rebalance_enable.to_string(),
            "leader.imbalance.check.interval.seconds" => {
                self.leader_imbalance_check_interval_seconds.to_string()
            }
            "replica.reassignment.delay.ms" => self.replica_reassignment_delay_ms.to_string(),
            "auto.create.topics.enable" => self.auto_create_topics_enable.to_string(),
            "delete.topic.enable" => self.delete_topic_enable.to_string(),
            "log.retention.ms" => self.log_retention_ms.to_string(),
            "log.retention.bytes" => self.log_retention_bytes.to_string(),
            "log.retention.check.interval.ms" => self.log_retention_check_interval_ms.to_string(),
            "log.blob.gc.garbage.ratio" => self.log_blob_gc_garbage_ratio.to_string(),
            "log.blob.gc.min.garbage.bytes" => self.log_blob_gc_min_garbage_bytes.to_string(),
            "producer.id.expiration.ms" => self.producer_id_expiration_ms.to_string(),
            "message.max.bytes" => self.message_max_bytes.to_string(),
            "log.flush.policy" => self.log_flush_policy.to_string(),
            "socket.request.max.bytes" => self.socket_request_max_bytes.to_string(),
            "max.connections" => self.max_connections.to_string(),
            "connections.max.idle.ms" => self.connections_max_idle_ms.to_string(),
            "queued.max.requests" => self.queued_max_requests.to_string(),
            "queued.max.request.bytes" => self.queued_max_request_bytes.to_string(),
            "quota.window.num" => self.quota_window_num.to_string(),
            "quota.window.size.seconds" => self.quota_window_size_seconds.to_string(),
            "shutdown.timeout.ms" => self.shutdown_timeout_ms.to_string(),
            "offsets.topic.num.partitions" => self.offsets_topic_num_partitions.to_string(),
            "offsets.topic.segment.bytes" => self.offsets_topic_segment_bytes.to_string(),
            "transaction.state.log.num.partitions" => {
                self.transaction_state_log_num_partitions.to_string()
            }
            "transaction.max.timeout.ms" => self.transaction_max_timeout_ms.to_string(),
            "transaction.abort.timed.out.transaction.cleanup.interval.ms" => self
                .transaction_abort_timed_out_transaction_cleanup_interval_ms
                .to_string(),
            "offsets.retention.minutes" => self.offsets_retention_minutes.to_string(),
            "offsets.retention.check.interval.ms" => {
                self.offsets_retention_check_interval_ms.to_string()
            }
            "offset.metadata.max.bytes" => self.offset_metadata_max_bytes.to_string(),
            "group.initial.rebalance.delay.ms" => self.group_initial_rebalance_delay_ms.to_string(),
            "group.min.session.timeout.ms" => self.group_min_session_timeout_ms.to_string(),
            "group.max.session.timeout.ms" => self.group_max_session_timeout_ms.to_string(),
            "group.max.size" => self.group_max_size.to_string(),
            _ => return None,
        })
    }

    /// Whether a setting was given explicitly rather than left at default.
    pub fn is_explicit(&self, name: &str) -> bool {
        self.explicit.contains(name)
    }

    /// Settings whose default depends on the mode: a cluster node not told
    /// otherwise uses the `replicated` flush policy (Kafka's default): an
    /// acknowledged write is on every in-sync replica, so durability comes
    /// from the replicas rather than an fsync on each; a single node keeps
    /// `durable`, its only copy.
    pub fn resolve_mode_defaults(&mut self) {
        if self.is_cluster() && !self.is_explicit("log.flush.policy") {
            self.log_flush_policy = FlushPolicy::Replicated;
        }
    }

    /// Whether this node is part of a multi-node cluster.
    pub fn is_cluster(&self) -> bool {
        !self.controller_quorum_voters.trim().is_empty()
    }

    /// `default.replication.factor` in force.
    pub fn replication_factor(&self) -> i16 {
        self.default_replication_factor
            .unwrap_or(if self.is_cluster() { 3 } else { 1 })
    }

    /// `min.insync.replicas` in force as the topic default.
    pub fn min_insync(&self) -> i32 {
        self.min_insync_replicas
            .unwrap_or(if self.is_cluster() { 2 } else { 1 })
    }

    /// The controller voters by id: `controller.quorum.voters`, or this
    /// node alone.
    pub fn controller_voters(&self) -> anyhow::Result<BTreeMap<u64, String>> {
        if !self.is_cluster() {
            let mut single = BTreeMap::new();
            let _ = single.insert(self.node_id.max(0) as u64, self.controller_listener.clone());
            return Ok(single);
        }
        let mut voters = BTreeMap::new();
        for entry in self.controller_quorum_voters.split(',').map(str::trim) {
            let (id, addr) = entry.split_once('@').with_context(|| {
                format!("`controller.quorum.voters` entry `{entry}` is not ID@HOST:PORT")
            })?;
            let id: u64 = parse("controller.quorum.voters", id)?;
            if addr
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                bail!("`controller.quorum.voters` entry `{entry}` has no HOST:PORT");
            }
            if voters.insert(id, addr.to_owned()).is_some() {
                bail!("`controller.quorum.voters` lists node {id} twice");
            }
        }
        Ok(voters)
    }

    /// The listeners to bind, parsed.
    pub fn listener_specs(&self) -> anyhow::Result<Vec<ListenerSpec>> {
        endpoint::parse_listeners(&self.listeners, &self.listener_security_protocol_map)
            .context("in `listeners`")
    }

    /// The addresses clients are told to use, one per listener (in
    /// `listeners` order): `advertised.listeners` where it names the
    /// listener, else the listener's own address.
    pub fn advertised_specs(&self) -> anyhow::Result<Vec<ListenerSpec>> {
        let listeners = self.listener_specs()?;
        let Some(advertised) = &self.advertised_listeners else {
            return Ok(listeners);
        };
        let advertised =
            endpoint::parse_listeners(advertised, &self.listener_security_protocol_map)
                .context("in `advertised.listeners`")?;
        for spec in &advertised {
            if !listeners.iter().any(|l| l.name == spec.name) {
                bail!(
                    "`advertised.listeners` names `{}`, which is not in `listeners`",
                    spec.name
                );
            }
        }
        Ok(listeners
            .into_iter()
            .map(|l| {
                advertised
                    .iter()
                    .find(|a| a.name == l.name)
                    .cloned()
                    .unwrap_or(l)
            })
            .collect())
    }

    /// `sasl.enabled.mechanisms` as a list.
    pub fn sasl_mechanisms(&self) -> Vec<String> {
        self.sasl_enabled_mechanisms
            .split(',')
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
            .collect()
    }

    /// Whether `user` is one of `super.users` (`User:NAME;User:NAME`).
    pub fn is_super_user(&self, user: &str) -> bool {
        self.super_users
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("User:"))
            .any(|name| name == user)
    }

    /// `sasl.seed.users` as `(user, password)` pairs.
    pub fn seed_users(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for entry in self.sasl_seed_users.split(',').map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            let (user, password) = entry
                .split_once(':')
                .filter(|(u, p)| !u.is_empty() && !p.is_empty())
                .context("`sasl.seed.users` entries must be USER:PASSWORD")?;
            out.push((user.to_owned(), password.to_owned()));
        }
        Ok(out)
    }

    /// Applies a TOML document on top of the current values.
    pub fn apply_toml(&mut self, text: &str) -> anyhow::Result<()> {
        let table: toml::Table = text.parse().context("config file is not valid TOML")?;
        let mut flat = BTreeMap::new();
        flatten("", &toml::Value::Table(table), &mut flat)?;
        for (name, value) in flat {
            self.set(&name, &value)?;
        }
        Ok(())
    }

    /// Applies `METROBUS_*` variables from the given environment. A variable
    /// with the prefix that names no setting is an error, so that a typo
    /// does not go unnoticed.
    pub fn apply_env<I>(&mut self, vars: I) -> anyhow::Result<()>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        for (key, value) in vars {
            let Some(rest) = key.strip_prefix("METROBUS_") else {
                continue;
            };
            if NON_SETTING_ENV.contains(&rest) {
                continue;
            }
            let name = SETTING_NAMES
                .iter()
                .find(|name| env_name(name) == key)
                .ok_or_else(|| {
                    anyhow::anyhow!("unknown setting in environment variable `{key}`")
                })?;
            self.set(name, &value)
                .with_context(|| format!("from environment variable `{key}`"))?;
        }
        Ok(())
    }

    /// Loads defaults, then the file (if any), then the process environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut config = BrokerConfig::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?;
            config
                .apply_toml(&text)
                .with_context(|| format!("in config file {}", path.display()))?;
        }
        config.apply_env(std::env::vars())?;
        Ok(config)
    }

    /// Checks cross-setting rules and ranges; called once before startup.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.num_partitions < 1 {
            bail!("`num.partitions` must be at least 1");
        }
        if self.replication_factor() < 1 || self.min_insync() < 1 {
            bail!("`default.replication.factor` and `min.insync.replicas` must be at least 1");
        }
        let voters = self.controller_voters()?;
        if !voters.contains_key(&(self.node_id as u64)) {
            bail!(
                "`controller.quorum.voters` must list this node (`node.id` = {})",
                self.node_id
            );
        }
        if self.node_id < 0 {
            bail!("`node.id` must not be negative");
        }
        if self.broker_heartbeat_interval_ms == 0
            || self.broker_session_timeout_ms <= self.broker_heartbeat_interval_ms
        {
            bail!("`broker.session.timeout.ms` must be longer than `broker.heartbeat.interval.ms` (> 0)");
        }
        if self.replica_lag_time_max_ms < 1 || self.replica_fetch_max_bytes == 0 {
            bail!("`replica.lag.time.max.ms` and `replica.fetch.max.bytes` must be positive");
        }
        // Raft heartbeats go out every 100 ms; an election timeout that
        // short would elect on every scheduling hiccup.
        if self.controller_quorum_election_timeout_ms < 200 {
            bail!("`controller.quorum.election.timeout.ms` must be at least 200");
        }
        if self.replica_high_watermark_checkpoint_interval_ms == 0 {
            bail!("`replica.high.watermark.checkpoint.interval.ms` must be positive");
        }
        if self.message_max_bytes < 64 {
            bail!("`message.max.bytes` must be at least 64");
        }
        if self.socket_request_max_bytes < 1024 {
            bail!("`socket.request.max.bytes` must be at least 1024");
        }
        if !(1..=1000).contains(&self.quota_window_num)
            || !(1..=3600).contains(&self.quota_window_size_seconds)
        {
            bail!("`quota.window.num` must be 1..=1000 and `quota.window.size.seconds` 1..=3600");
        }
        if self.max_connections == 0 || self.queued_max_requests == 0 {
            bail!("`max.connections` and `queued.max.requests` must be at least 1");
        }
        // Every frame must fit in the budget, or it would wait forever.
        if self.queued_max_request_bytes < i64::from(self.socket_request_max_bytes)
            || self.queued_max_request_bytes > i64::from(u32::MAX)
        {
            bail!(
                "`queued.max.request.bytes` must be between `socket.request.max.bytes` ({}) and {}",
                self.socket_request_max_bytes,
                u32::MAX
            );
        }
        if self.offsets_topic_num_partitions < 1 || self.offsets_retention_check_interval_ms == 0 {
            bail!("`offsets.topic.num.partitions` and `offsets.retention.check.interval.ms` must be positive");
        }
        if self.transaction_state_log_num_partitions < 1
            || self.transaction_max_timeout_ms < 1
            || self.transaction_abort_timed_out_transaction_cleanup_interval_ms == 0
        {
            bail!("`transaction.state.log.num.partitions`, `transaction.max.timeout.ms` and `transaction.abort.timed.out.transaction.cleanup.interval.ms` must be positive");
        }
        if self.group_min_session_timeout_ms < 1
            || self.group_max_session_timeout_ms < self.group_min_session_timeout_ms
        {
            bail!("`group.min.session.timeout.ms` must be positive and at most `group.max.session.timeout.ms`");
        }
        if self.group_initial_rebalance_delay_ms < 0 || self.group_max_size == 0 {
            bail!("`group.initial.rebalance.delay.ms` must not be negative and `group.max.size` must be positive");
        }
        if self.log_retention_check_interval_ms == 0 {
            bail!("`log.retention.check.interval.ms` must be positive");
        }
        // Not `!(0 < r <= 1)` spelled out: NaN must fail too.
        if !(self.log_blob_gc_garbage_ratio > 0.0 && self.log_blob_gc_garbage_ratio <= 1.0) {
            bail!("`log.blob.gc.garbage.ratio` must be above 0 and at most 1");
        }
        if self.producer_id_expiration_ms < 1 {
            bail!("`producer.id.expiration.ms` must be at least 1");
        }
        if self.log_retention_ms < -1 || self.log_retention_bytes < -1 {
            bail!("retention settings must be -1 (unlimited) or non-negative");
        }
        let listeners = self.advertised_specs()?;
        for mechanism in self.sasl_mechanisms() {
            if !crate::tenant::sasl::MECHANISMS.contains(&mechanism.as_str()) {
                bail!(
                    "`sasl.enabled.mechanisms`: `{mechanism}` is not supported (supported: {})",
                    crate::tenant::sasl::MECHANISMS.join(", ")
                );
            }
        }
        if listeners.iter().any(|l| l.protocol.uses_sasl()) && self.sasl_mechanisms().is_empty() {
            bail!("a SASL listener needs at least one of `sasl.enabled.mechanisms`");
        }
        if listeners.iter().any(|l| l.protocol.uses_tls()) && self.ssl_keystore_location.is_none() {
            bail!("an SSL or SASL_SSL listener needs `ssl.keystore.location` (a PEM file with the key and certificate chain)");
        }
        if self.ssl_keystore_type != "PEM" {
            bail!("`ssl.keystore.type` must be PEM");
        }
        if self.connections_max_reauth_ms < 0 {
            bail!("`connections.max.reauth.ms` must not be negative");
        }
        let _ = self.seed_users()?;
        for (user, _) in self.seed_users()? {
            if !self.is_super_user(&user) && crate::tenant::tenant_of_user(&user).is_none() {
                bail!("`sasl.seed.users`: `{user}` is neither in `super.users` nor a tenant's user (NAME@TENANT)");
            }
        }
        for (name, addr) in [("http.listener", &self.http_listener)] {
            if addr
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                bail!("`{name}` must be HOST:PORT, got `{addr}`");
            }
        }
        Ok(())
    }
}

/// Settings that IncrementalAlterConfigs / AlterConfigs may change at run
/// time, cluster-wide, as Kafka allows for these three; the rest are static.
pub const DYNAMIC_SETTINGS: &[&str] = &[
    "log.retention.bytes",
    "log.retention.ms",
    "message.max.bytes",
];

/// Variables with our prefix that are not settings (the log filter).
const NON_SETTING_ENV: &[&str] = &["LOG", "ADMIN_PASSWORD", "USER_PASSWORD"];

/// `log.retention.ms` -> `METROBUS_LOG_RETENTION_MS`.
pub fn env_name(setting: &str) -> String {
    format!("METROBUS_{}", setting.to_uppercase().replace('.', "_"))
}

fn flatten(
    prefix: &str,
    value: &toml::Value,
    out: &mut BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let text = match value {
        toml::Value::Table(table) => {
            for (key, inner) in table {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&name, inner, out)?;
            }
            return Ok(());
        }
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Float(f) => f.to_string(),
        other => bail!("setting `{prefix}` has an unsupported value type: {other}"),
    };
    if out.insert(prefix.to_owned(), text).is_some() {
        bail!("setting `{prefix}` is given twice");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings without a value by default (or never shown: a secret).
    const UNSET_BY_DEFAULT: &[&str] = &["cluster.id", "sasl.seed.users", "ssl.keystore.location"];

    #[test]
    fn defaults_are_valid_and_match_kafka() {
        let config = BrokerConfig::default();
        config.validate().unwrap();
        assert_eq!(config.listeners, "127.0.0.1:9092");
        assert_eq!(config.message_max_bytes, 1_048_588);
        assert_eq!(config.log_retention_ms, 604_800_000);
        assert_eq!(config.producer_id_expiration_ms, 86_400_000);
        assert!(SETTING_NAMES
            .iter()
            .all(|n| config.get(n).is_some() || UNSET_BY_DEFAULT.contains(n)));
    }

    #[test]
    fn toml_nested_and_dotted_are_the_same() {
        let mut a = BrokerConfig::default();
        a.apply_toml("log.retention.ms = 1000\nnum.partitions = 3")
            .unwrap();
        let mut b = BrokerConfig::default();
        b.apply_toml("num.partitions = 3\n[log.retention]\nms = 1000")
            .unwrap();
        assert_eq!(a.log_retention_ms, 1000);
        assert_eq!(b.log_retention_ms, 1000);
        assert_eq!(b.num_partitions, 3);
    }

    #[test]
    fn unknown_and_invalid_settings_are_rejected() {
        let mut config = BrokerConfig::default();
        let err = config.apply_toml("num.partition = 3").unwrap_err();
        assert!(format!("{err:#}").contains("unknown setting `num.partition`"));
        let err = config.apply_toml("num.partitions = \"many\"").unwrap_err();
        assert!(format!("{err:#}").contains("num.partitions"));
        let err = config
            .apply_toml("log.flush.policy = \"sometimes\"")
            .unwrap_err();
        assert!(format!("{err:#}").contains("durable"));
        config.num_partitions = 0;
        assert!(config.validate().is_err());
        let mut config = BrokerConfig::default();
        config.queued_max_request_bytes = i64::from(config.socket_request_max_bytes) - 1;
        assert!(config.validate().is_err());
    }

    #[test]
    fn env_overrides_and_rejects_typos() {
        let mut config = BrokerConfig::default();
        config
            .apply_env([("METROBUS_NUM_PARTITIONS".to_owned(), "4".to_owned())])
            .unwrap();
        assert_eq!(config.num_partitions, 4);
        assert!(config
            .apply_env([("METROBUS_NUM_PARTITION".to_owned(), "4".to_owned())])
            .is_err());
        config
            .apply_env([("METROBUS_LOG".to_owned(), "debug".to_owned())])
            .unwrap();
        assert_eq!(
            env_name("auto.create.topics.enable"),
            "METROBUS_AUTO_CREATE_TOPICS_ENABLE"
        );
    }

    #[test]
    fn documented_single_node_file_lists_every_setting_at_its_default() {
        let text = include_str!("../../config/single.toml");
        let mut from_file = BrokerConfig::default();
        from_file.apply_toml(text).unwrap();
        let defaults = BrokerConfig::default();
        for name in SETTING_NAMES {
            assert_eq!(from_file.get(name), defaults.get(name), "{name}");
            assert!(text.contains(name), "config/single.toml documents {name}");
        }
    }

    #[test]
    fn listener_scheme_is_accepted() {
        let mut config = BrokerConfig::default();
        config
            .set("listeners", "PLAINTEXT://0.0.0.0:19092")
            .unwrap();
        assert_eq!(config.listener_specs().unwrap()[0].address, "0.0.0.0:19092");
        config.set("listeners", "SSL://0.0.0.0:1").unwrap();
        assert!(config.validate().is_err(), "SSL without a keystore");
        config.set("ssl.keystore.location", "/x.pem").unwrap();
        config.validate().unwrap();
    }

    #[test]
    fn advertised_listeners_follow_listener_names() {
        let mut config = BrokerConfig::default();
        config
            .set(
                "listeners",
                "PLAINTEXT://0.0.0.0:9092,SASL_PLAINTEXT://0.0.0.0:9094",
            )
            .unwrap();
        config
            .set("advertised.listeners", "SASL_PLAINTEXT://kafka-1:9094")
            .unwrap();
        let advertised = config.advertised_specs().unwrap();
        assert_eq!(advertised[0].address, "0.0.0.0:9092");
        assert_eq!(advertised[1].address, "kafka-1:9094");
        config
            .set("advertised.listeners", "SSL://kafka-1:9093")
            .unwrap();
        assert!(config.advertised_specs().is_err());
    }

    #[test]
    fn super_users_and_seeds() {
        let mut config = BrokerConfig::default();
        config.set("super.users", "User:admin; User:ops").unwrap();
        assert!(config.is_super_user("admin") && config.is_super_user("ops"));
        assert!(!config.is_super_user("alice@acme"));
        config
            .set("sasl.seed.users", "admin:admin-secret,alice@acme:p:w")
            .unwrap();
        assert_eq!(
            config.seed_users().unwrap(),
            vec![
                ("admin".to_owned(), "admin-secret".to_owned()),
                ("alice@acme".to_owned(), "p:w".to_owned())
            ]
        );
        config.validate().unwrap();
        assert_eq!(
            config.get("sasl.seed.users"),
            None,
            "a secret is never shown"
        );
        config.set("sasl.seed.users", "bob:pw").unwrap();
        assert!(
            config.validate().is_err(),
            "bob has no tenant and is no super user"
        );
        config.set("sasl.seed.users", "").unwrap();
        config.set("sasl.enabled.mechanisms", "GSSAPI").unwrap();
        assert!(config.validate().is_err());
    }
}
