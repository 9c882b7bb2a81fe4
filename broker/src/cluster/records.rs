//! The metadata log's records: every decision about brokers, topics,
//! partitions and their leadership is one of these, committed through the
//! Raft controller and replayed by every node into its
//! [`crate::cluster::metadata::MetadataImage`].
//!
//! A record carries a whole decision (the proposer computed the assignment
//! or the new ISR), and applying it re-checks its preconditions against the
//! image (the name is still free, the partition epoch still matches), so two
//! proposers racing on stale images cannot both win: the log order decides
//! and the loser gets an error reply. Applying is pure and deterministic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::tenant::acl::AclBinding;
use crate::tenant::quota::QuotaChange;
use crate::tenant::scram::ScramCredential;
use uuid::Uuid;

use crate::cluster::topic_record::TopicRecord;

/// A broker as the controller knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub id: i32,
    /// The Kafka listener clients are told to use.
    pub host: String,
    pub port: i32,
    /// The internal RPC address (replica fetching, controller requests).
    pub rpc_address: String,
    /// Every Kafka listener's advertised address, by listener name
    /// (`host`/`port` are the first's). A client is told the addresses of
    /// the listener it connected to.
    pub endpoints: Vec<Endpoint>,
    /// A fresh id per process start: tells a restart from a long pause.
    pub incarnation: u64,
    /// Fenced brokers lead nothing and are not in any ISR's future.
    pub fenced: bool,
    /// Set by a controlled shutdown: the broker is leaving, move work away.
    pub shutting_down: bool,
}

/// A listener's advertised address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: i32,
}

impl BrokerRegistration {
    /// The address of listener `name`, or the first listener's when the
    /// broker has no listener of that name.
    pub fn address_for(&self, listener: &str) -> (&str, i32) {
        self.endpoints
            .iter()
            .find(|e| e.listener == listener)
            .map(|e| (e.host.as_str(), e.port))
            .unwrap_or((self.host.as_str(), self.port))
    }
}

/// One partition's replica set and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRegistration {
    /// The assigned replicas; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// The in-sync replicas, the leader included.
    pub isr: Vec<i32>,
    /// -1 when no in-sync replica is alive (offline).
    pub leader: i32,
    /// Bumped on every leader change; fences stale leaders and fetchers.
    pub leader_epoch: i32,
    /// Bumped on every change; guards AlterPartition against stale views.
    pub partition_epoch: i32,
}

impl PartitionRegistration {
    /// A new partition led by the first of `replicas` that is in `live`.
    pub fn new(replicas: Vec<i32>, live: &[i32]) -> Self {
        let isr: Vec<i32> = replicas
            .iter()
            .copied()
            .filter(|r| live.contains(r))
            .collect();
        let leader = isr.first().copied().unwrap_or(-1);
        PartitionRegistration {
            isr: if isr.is_empty() {
                replicas.clone()
            } else {
                isr
            },
            replicas,
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }
}

/// A change to one partition, applied only if `expected_partition_epoch`
/// (when given) still matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChange {
    pub topic_id: Uuid,
    pub partition: i32,
    pub expected_partition_epoch: Option<i32>,
    pub leader: Option<i32>,
    pub isr: Option<Vec<i32>>,
    pub replicas: Option<Vec<i32>>,
}

/// One entry of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// The first record: the cluster's id. Ignored once one is set.
    InitCluster {
        cluster_id: String,
        /// `sasl.seed.users`' credentials, set with the cluster id so that
        /// no client can find the cluster up without them.
        seed_credentials: Vec<ScramCredentialChange>,
    },
    /// A broker starts (or restarts): its addresses; it stays fenced until
    /// it has caught up with the metadata log.
    RegisterBroker(BrokerRegistration),
    FenceBroker {
        id: i32,
    },
    UnfenceBroker {
        id: i32,
    },
    /// A controlled shutdown began: the broker leads nothing from now on.
    BeginShutdown {
        id: i32,
    },
    CreateTopic {
        topic: TopicRecord,
        /// Replicas of each partition, in partition order.
        assignments: Vec<Vec<i32>>,
    },
    SetTopicConfigs {
        topic_id: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// New partitions appended to a topic.
    CreatePartitions {
        topic_id: Uuid,
        assignments: Vec<Vec<i32>>,
    },
    DeleteTopic {
        topic_id: Uuid,
    },
    PartitionChanges(Vec<PartitionChange>),
    SetDynamicBrokerConfigs(BTreeMap<String, String>),
    /// Reserves `count` producer ids; the reply carries the first.
    AllocateProducerIds {
        count: i64,
    },
    /// SCRAM credentials set or removed, all at once; the reply's
    /// `partition_errors` has one code per change.
    AlterScramCredentials(Vec<ScramCredentialChange>),
    /// ACLs added (one already present stays, once); `partition_errors`
    /// has one code per binding.
    CreateAcls(Vec<AclBinding>),
    /// ACLs removed, as the proposer resolved its filters; one code per
    /// binding in `partition_errors` (RESOURCE_NOT_FOUND: already gone).
    DeleteAcls(Vec<AclBinding>),
    /// Client quotas set or removed, all at once; the reply's
    /// `partition_errors` has one code per change.
    AlterClientQuotas(Vec<QuotaChange>),
}

/// One user's credential for one SCRAM mechanism: set (`Some`) or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredentialChange {
    pub user: String,
    /// Kafka's mechanism id (1: SCRAM-SHA-256, 2: SCRAM-SHA-512).
    pub mechanism: i8,
    pub credential: Option<ScramCredential>,
}

/// What applying a record answers to its proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ControllerReply {
    /// A Kafka error code (0: applied).
    pub error_code: i16,
    pub message: Option<String>,
    /// AllocateProducerIds: the first id of the block.
    pub value: i64,
    /// PartitionChanges: one error code per change, in order.
    pub partition_errors: Vec<i16>,
    /// The metadata log index the record was applied at; a proposer waits
    /// for its own image to reach it before relying on the change.
    pub applied_index: u64,
}

impl ControllerReply {
    pub fn ok() -> Self {
        ControllerReply::default()
    }

    pub fn error(code: i16, message: impl Into<String>) -> Self {
        ControllerReply {
            error_code: code,
            message: Some(message.into()),
            ..ControllerReply::default()
        }
    }
}
