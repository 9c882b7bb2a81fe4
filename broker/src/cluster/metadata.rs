//! The metadata image: an immutable view of the cluster (brokers, topics,
//! partitions and their leaders, settings) that every request reads, and
//! [`MetadataImage::apply`], the pure function that advances it by one
//! metadata-log record. Every node replays the same log, so every node's
//! image converges on the same state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use uuid::Uuid;

use crate::cluster::records::{
    BrokerRegistration, ControllerReply, MetadataRecord, PartitionChange, PartitionRegistration,
    ScramCredentialChange,
};
use crate::cluster::topic_record::TopicRecord;
use crate::config::{BrokerConfig, DYNAMIC_SETTINGS};
use crate::error::{Error, Result};
use crate::tenant::acl::AclBinding;
use crate::tenant::quota::{self, ClientQuotas};
use crate::tenant::scram::ScramCredential;

/// Kafka's longest legal topic name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Kafka's topic name rule: 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("topic name is empty".to_owned())
    } else if name == "." || name == ".." {
        Some(format!("topic name cannot be \"{name}\""))
    } else if name.len() > MAX_TOPIC_NAME_LEN {
        Some(format!(
            "topic name is longer than {MAX_TOPIC_NAME_LEN} characters"
        ))
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        Some(format!(
            "topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ))
    } else {
        None
    };
    match reason {
        Some(message) => Err(Error::api_msg(
            ResponseError::InvalidTopicException,
            message,
        )),
        None => Ok(()),
    }
}

/// What every request handler reads: the cluster at one point of the
/// metadata log.
#[derive(Debug, Default, Clone)]
pub struct MetadataImage {
    pub cluster_id: String,
    /// The broker settings in force: static config with the dynamic
    /// settings applied on top.
    pub broker_config: Arc<BrokerConfig>,
    /// Settings changed at run time (cluster-wide), by name.
    pub dynamic_broker_configs: BTreeMap<String, String>,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    topics_by_name: HashMap<String, Arc<TopicRecord>>,
    topics_by_id: HashMap<Uuid, Arc<TopicRecord>>,
    partitions: HashMap<Uuid, Arc<Vec<PartitionRegistration>>>,
    /// The first producer id not yet allocated.
    pub next_producer_id: i64,
    /// SCRAM credentials by user and Kafka mechanism id (salted and
    /// hashed: the log never holds a password).
    pub scram_credentials: BTreeMap<String, BTreeMap<i8, ScramCredential>>,
    /// Every ACL (resource names are internal names).
    pub acls: Arc<BTreeSet<AclBinding>>,
    /// Client quotas by entity and key ([`crate::tenant::quota`]).
    pub client_quotas: ClientQuotas,
    /// The metadata log index this image includes.
    pub applied_index: u64,
}

/// The parts of an image a snapshot stores (the rest is derived).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ImageData {
    pub cluster_id: String,
    pub dynamic_broker_configs: BTreeMap<String, String>,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: Vec<(TopicRecord, Vec<PartitionRegistration>)>,
    pub next_producer_id: i64,
    pub scram_credentials: BTreeMap<String, BTreeMap<i8, ScramCredential>>,
    pub acls: Vec<AclBinding>,
    pub client_quotas: ClientQuotas,
}

impl ImageData {
    /// Decodes a snapshot's image.
    pub fn decode(bytes: &[u8]) -> bincode::Result<Self> {
        bincode::deserialize(bytes)
    }
}

impl MetadataImage {
    /// An empty image for a node whose static settings are `config`.
    pub fn empty(config: Arc<BrokerConfig>) -> Self {
        MetadataImage {
            broker_config: config,
            ..MetadataImage::default()
        }
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<TopicRecord>> {
        self.topics_by_name.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicRecord>> {
        self.topics_by_id.get(id)
    }

    /// All topics, in no particular order.
    pub fn topics(&self) -> impl Iterator<Item = &Arc<TopicRecord>> {
        self.topics_by_name.values()
    }

    /// A topic's partitions, by index.
    pub fn partitions(&self, topic_id: &Uuid) -> &[PartitionRegistration] {
        self.partitions
            .get(topic_id)
            .map(|p| p.as_slice())
            .unwrap_or(&[])
    }

    pub fn partition(&self, topic_id: &Uuid, index: i32) -> Option<&PartitionRegistration> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions(topic_id).get(i))
    }

    /// Registered brokers that are not fenced, by id.
    pub fn live_brokers(&self) -> Vec<i32> {
        self.brokers
            .values()
            .filter(|b| !b.fenced && !b.shutting_down)
            .map(|b| b.id)
            .collect()
    }

    /// The state a snapshot keeps.
    pub fn to_data(&self) -> ImageData {
        let mut topics: Vec<_> = self
            .topics_by_id
            .values()
            .map(|t| (TopicRecord::clone(t), self.partitions(&t.id).to_vec()))
            .collect();
        topics.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        ImageData {
            cluster_id: self.cluster_id.clone(),
            dynamic_broker_configs: self.dynamic_broker_configs.clone(),
            brokers: self.brokers.clone(),
            topics,
            next_producer_id: self.next_producer_id,
            scram_credentials: self.scram_credentials.clone(),
            acls: self.acls.iter().cloned().collect(),
            client_quotas: self.client_quotas.clone(),
        }
    }

    /// The image a snapshot describes, on a node with `static_config`.
    pub fn from_data(data: ImageData, static_config: &Arc<BrokerConfig>, index: u64) -> Self {
        let mut image = MetadataImage::empty(static_config.clone());
        image.cluster_id = data.cluster_id;
        image.brokers = data.brokers;
        image.next_producer_id = data.next_producer_id;
        image.scram_credentials = data.scram_credentials;
        image.acls = Arc::new(data.acls.into_iter().collect());
        image.client_quotas = data.client_quotas;
        image.applied_index = index;
        match effective_config(static_config, &data.dynamic_broker_configs) {
            Ok(effective) => image.broker_config = Arc::new(effective),
            Err(e) => {
                tracing::warn!(error = %e, "dynamic settings in the snapshot are invalid here")
            }
        }
        image.dynamic_broker_configs = data.dynamic_broker_configs;
        for (topic, partitions) in data.topics {
            image.put_topic(topic, partitions);
        }
        image
    }

    fn put_topic(&mut self, topic: TopicRecord, partitions: Vec<PartitionRegistration>) {
        let topic = Arc::new(topic);
        let _ = self
            .topics_by_name
            .insert(topic.name.clone(), topic.clone());
        let _ = self.partitions.insert(topic.id, Arc::new(partitions));
        let _ = self.topics_by_id.insert(topic.id, topic);
    }

    /// Applies one metadata-log record at `index`. Pure: the same record on
    /// the same image gives the same result on every node. A record whose
    /// preconditions no longer hold changes nothing and answers an error.
    pub fn apply(
        &mut self,
        record: &MetadataRecord,
        index: u64,
        static_config: &BrokerConfig,
    ) -> ControllerReply {
        self.applied_index = index;
        let mut reply = match record {
            MetadataRecord::InitCluster {
                cluster_id,
                seed_credentials,
            } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = cluster_id.clone();
                    for change in seed_credentials {
                        let _ = self.alter_scram_credential(change);
                    }
                }
                ControllerReply::ok()
            }
            MetadataRecord::RegisterBroker(registration) => {
                let _ = self.brokers.insert(registration.id, registration.clone());
                ControllerReply::ok()
            }
            MetadataRecord::FenceBroker { id } => self.with_broker(*id, |b| b.fenced = true),
            MetadataRecord::UnfenceBroker { id } => self.with_broker(*id, |b| {
                b.fenced = false;
                b.shutting_down = false;
            }),
            MetadataRecord::BeginShutdown { id } => {
                self.with_broker(*id, |b| b.shutting_down = true)
            }
            MetadataRecord::CreateTopic { topic, assignments } => {
                if self.topics_by_name.contains_key(&topic.name) {
                    ControllerReply::error(
                        ResponseError::TopicAlreadyExists.code(),
                        format!("Topic '{}' already exists.", topic.name),
                    )
                } else if self.topics_by_id.contains_key(&topic.id) {
                    ControllerReply::error(
                        ResponseError::TopicAlreadyExists.code(),
                        format!("topic id {} is taken", topic.id),
                    )
                } else {
                    let live = self.live_brokers();
                    let partitions = assignments
                        .iter()
                        .map(|replicas| PartitionRegistration::new(replicas.clone(), &live))
                        .collect();
                    let mut topic = topic.clone();
                    topic.partitions = assignments.len() as i32;
                    self.put_topic(topic, partitions);
                    ControllerReply::ok()
                }
            }
            MetadataRecord::SetTopicConfigs { topic_id, configs } => {
                match self.topics_by_id.get(topic_id) {
                    None => ControllerReply::error(
                        ResponseError::UnknownTopicOrPartition.code(),
                        "unknown topic",
                    ),
                    Some(topic) => {
                        let mut topic = TopicRecord::clone(topic);
                        topic.configs = configs.clone();
                        let partitions = self.partitions(topic_id).to_vec();
                        self.put_topic(topic, partitions);
                        ControllerReply::ok()
                    }
                }
            }
            MetadataRecord::CreatePartitions {
                topic_id,
                assignments,
            } => match self.topics_by_id.get(topic_id) {
                None => ControllerReply::error(
                    ResponseError::UnknownTopicOrPartition.code(),
                    "unknown topic",
                ),
                Some(topic) => {
                    let mut topic = TopicRecord::clone(topic);
                    let live = self.live_brokers();
                    let mut partitions = self.partitions(topic_id).to_vec();
                    partitions.extend(
                        assignments
                            .iter()
                            .map(|replicas| PartitionRegistration::new(replicas.clone(), &live)),
                    );
                    topic.partitions = partitions.len() as i32;
                    self.put_topic(topic, partitions);
                    ControllerReply::ok()
                }
            },
            MetadataRecord::DeleteTopic { topic_id } => match self.topics_by_id.remove(topic_id) {
                None => ControllerReply::error(
                    ResponseError::UnknownTopicOrPartition.code(),
                    "unknown topic",
                ),
                Some(topic) => {
                    let _ = self.topics_by_name.remove(&topic.name);
                    let _ = self.partitions.remove(topic_id);
                    ControllerReply::ok()
                }
            },
            MetadataRecord::PartitionChanges(changes) => {
                let partition_errors = changes.iter().map(|c| self.change_partition(c)).collect();
                ControllerReply {
                    partition_errors,
                    ..ControllerReply::ok()
                }
            }
            MetadataRecord::SetDynamicBrokerConfigs(dynamic) => {
                match effective_config(static_config, dynamic) {
                    Ok(effective) => {
                        self.broker_config = Arc::new(effective);
                        self.dynamic_broker_configs = dynamic.clone();
                        ControllerReply::ok()
                    }
                    Err(e) => ControllerReply::error(e.code(), e.to_string()),
                }
            }
            MetadataRecord::AlterScramCredentials(changes) => {
                let partition_errors = changes
                    .iter()
                    .map(|c| self.alter_scram_credential(c))
                    .collect();
                ControllerReply {
                    partition_errors,
                    ..ControllerReply::ok()
                }
            }
            MetadataRecord::CreateAcls(bindings) => {
                let acls = Arc::make_mut(&mut self.acls);
                for binding in bindings {
                    let _ = acls.insert(binding.clone());
                }
                ControllerReply {
                    partition_errors: vec![0; bindings.len()],
                    ..ControllerReply::ok()
                }
            }
            MetadataRecord::DeleteAcls(bindings) => {
                let acls = Arc::make_mut(&mut self.acls);
                let partition_errors = bindings
                    .iter()
                    .map(|b| {
                        if acls.remove(b) {
                            0
                        } else {
                            ResponseError::ResourceNotFound.code()
                        }
                    })
                    .collect();
                ControllerReply {
                    partition_errors,
                    ..ControllerReply::ok()
                }
            }
            MetadataRecord::AlterClientQuotas(changes) => {
                let partition_errors = changes
                    .iter()
                    .map(|c| quota::apply_change(&mut self.client_quotas, c))
                    .collect();
                ControllerReply {
                    partition_errors,
                    ..ControllerReply::ok()
                }
            }
            MetadataRecord::AllocateProducerIds { count } => {
                let first = self.next_producer_id;
                match first.checked_add(*count) {
                    Some(next) if *count > 0 => {
                        self.next_producer_id = next;
                        ControllerReply {
                            value: first,
                            ..ControllerReply::ok()
                        }
                    }
                    _ => ControllerReply::error(
                        ResponseError::UnknownServerError.code(),
                        "producer ids exhausted",
                    ),
                }
            }
        };
        reply.applied_index = index;
        reply
    }

    /// The tenants that have users.
    pub fn tenants(&self) -> std::collections::BTreeSet<&str> {
        self.scram_credentials
            .keys()
            .filter_map(|user| crate::tenant::tenant_of_user(user))
            .collect()
    }

    /// A user's credential for a SCRAM mechanism (Kafka's id).
    pub fn scram_credential(&self, user: &str, mechanism: i8) -> Option<&ScramCredential> {
        self.scram_credentials.get(user)?.get(&mechanism)
    }

    fn alter_scram_credential(&mut self, change: &ScramCredentialChange) -> i16 {
        match &change.credential {
            Some(credential) => {
                let _ = self
                    .scram_credentials
                    .entry(change.user.clone())
                    .or_default()
                    .insert(change.mechanism, credential.clone());
                0
            }
            None => {
                let Some(by_mechanism) = self.scram_credentials.get_mut(&change.user) else {
                    return ResponseError::ResourceNotFound.code();
                };
                if by_mechanism.remove(&change.mechanism).is_none() {
                    return ResponseError::ResourceNotFound.code();
                }
                if by_mechanism.is_empty() {
                    let _ = self.scram_credentials.remove(&change.user);
                }
                0
            }
        }
    }

    fn with_broker(
        &mut self,
        id: i32,
        change: impl FnOnce(&mut BrokerRegistration),
    ) -> ControllerReply {
        match self.brokers.get_mut(&id) {
            Some(broker) => {
                change(broker);
                ControllerReply::ok()
            }
            None => ControllerReply::error(
                ResponseError::BrokerIdNotRegistered.code(),
                format!("broker {id} is not registered"),
            ),
        }
    }

    /// One partition change; its error code (0: applied).
    fn change_partition(&mut self, change: &PartitionChange) -> i16 {
        let Some(current) = self
            .partitions
            .get(&change.topic_id)
            .and_then(|p| p.get(usize::try_from(change.partition).ok()?))
        else {
            return ResponseError::UnknownTopicOrPartition.code();
        };
        if let Some(expected) = change.expected_partition_epoch {
            if expected != current.partition_epoch {
                return ResponseError::InvalidUpdateVersion.code();
            }
        }
        let mut next = current.clone();
        if let Some(replicas) = &change.replicas {
            next.replicas = replicas.clone();
        }
        if let Some(isr) = &change.isr {
            if isr.is_empty() {
                return ResponseError::InvalidRequest.code();
            }
            next.isr = isr.clone();
        }
        if let Some(leader) = change.leader {
            if leader != next.leader {
                next.leader = leader;
                next.leader_epoch += 1;
            }
        }
        next.partition_epoch += 1;
        let index = change.partition as usize;
        if let Some(partitions) = self.partitions.get_mut(&change.topic_id) {
            Arc::make_mut(partitions)[index] = next;
        }
        0
    }
}

/// Applies dynamic settings to the static config; an invalid one is an
/// INVALID_CONFIG error naming it.
pub fn effective_config(
    static_config: &BrokerConfig,
    dynamic: &BTreeMap<String, String>,
) -> Result<BrokerConfig> {
    let mut effective = static_config.clone();
    for (name, value) in dynamic {
        if !DYNAMIC_SETTINGS.contains(&name.as_str()) {
            return Err(Error::api_msg(
                ResponseError::InvalidRequest,
                format!("Cannot update these configs dynamically: [{name}]"),
            ));
        }
        effective
            .set(name, value)
            .map_err(|e| Error::api_msg(ResponseError::InvalidConfig, format!("{e:#}")))?;
    }
    effective
        .validate()
        .map_err(|e| Error::api_msg(ResponseError::InvalidConfig, format!("{e:#}")))?;
    Ok(effective)
}

/// A cluster id in Kafka's form: 16 random bytes, URL-safe base64, no padding.
pub fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = Uuid::new_v4().into_bytes();
    let mut out = String::with_capacity(22);
    let mut bits: u32 = 0;
    let mut nbits = 0;
    for byte in bytes {
        bits = (bits << 8) | u32::from(byte);
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(ALPHABET[((bits >> nbits) & 63) as usize] as char);
        }
    }
    if nbits > 0 {
        out.push(ALPHABET[((bits << (6 - nbits)) & 63) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka() {
        assert!(validate_topic_name("metrics.cpu_load-1").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(250)] {
            assert_eq!(validate_topic_name(bad).unwrap_err().code(), 17, "{bad}");
        }
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
    }

    #[test]
    fn cluster_id_has_kafka_shape() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert_ne!(id, new_cluster_id());
    }

    fn broker(id: i32) -> BrokerRegistration {
        BrokerRegistration {
            id,
            host: "127.0.0.1".into(),
            port: 9092 + id,
            rpc_address: format!("127.0.0.1:{}", 9192 + id),
            endpoints: Vec::new(),
            incarnation: 1,
            fenced: false,
            shutting_down: false,
        }
    }

    fn topic(name: &str, id: u128) -> TopicRecord {
        TopicRecord {
            id: Uuid::from_u128(id),
            name: name.into(),
            partitions: 0,
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn apply_creates_changes_and_deletes_topics() {
        let config = BrokerConfig::default();
        let mut image = MetadataImage::empty(Arc::new(config.clone()));
        for id in 1..=3 {
            let _ = image.apply(&MetadataRecord::RegisterBroker(broker(id)), 1, &config);
        }
        let create = MetadataRecord::CreateTopic {
            topic: topic("a", 7),
            assignments: vec![vec![1, 2, 3], vec![2, 3, 1]],
        };
        assert_eq!(image.apply(&create, 2, &config).error_code, 0);
        assert_eq!(image.apply(&create, 3, &config).error_code, 36);
        let id = Uuid::from_u128(7);
        assert_eq!(image.topic("a").unwrap().partitions, 2);
        let p1 = image.partition(&id, 1).unwrap();
        assert_eq!((p1.leader, p1.isr.clone()), (2, vec![2, 3, 1]));
        // A change with a stale partition epoch is refused.
        let change = |epoch| PartitionChange {
            topic_id: id,
            partition: 0,
            expected_partition_epoch: Some(epoch),
            leader: Some(2),
            isr: Some(vec![2, 3]),
            replicas: None,
        };
        let reply = image.apply(
            &MetadataRecord::PartitionChanges(vec![change(0)]),
            4,
            &config,
        );
        assert_eq!(reply.partition_errors, vec![0]);
        let p0 = image.partition(&id, 0).unwrap();
        assert_eq!((p0.leader, p0.leader_epoch, p0.partition_epoch), (2, 1, 1));
        let reply = image.apply(
            &MetadataRecord::PartitionChanges(vec![change(0)]),
            5,
            &config,
        );
        assert_eq!(
            reply.partition_errors,
            vec![ResponseError::InvalidUpdateVersion.code()]
        );
        // Snapshots round-trip.
        let restored = MetadataImage::from_data(image.to_data(), &Arc::new(config.clone()), 5);
        assert_eq!(restored.partition(&id, 0), image.partition(&id, 0));
        assert_eq!(
            image
                .apply(&MetadataRecord::DeleteTopic { topic_id: id }, 6, &config)
                .error_code,
            0
        );
        assert!(image.topic("a").is_none() && image.partitions(&id).is_empty());
    }

    #[test]
    fn producer_id_blocks_never_overlap() {
        let config = BrokerConfig::default();
        let mut image = MetadataImage::empty(Arc::new(config.clone()));
        let a = image.apply(
            &MetadataRecord::AllocateProducerIds { count: 1000 },
            1,
            &config,
        );
        let b = image.apply(
            &MetadataRecord::AllocateProducerIds { count: 1000 },
            2,
            &config,
        );
        assert_eq!((a.value, b.value), (0, 1000));
    }

    #[test]
    fn acls_are_created_deleted_and_kept_in_snapshots() {
        use crate::tenant::acl::{operation, pattern_type, permission, resource_type};
        let config = BrokerConfig::default();
        let mut image = MetadataImage::empty(Arc::new(config.clone()));
        let acl = |name: &str| AclBinding {
            resource_type: resource_type::TOPIC,
            resource_name: name.into(),
            pattern_type: pattern_type::LITERAL,
            principal: "User:bob@acme".into(),
            host: "*".into(),
            operation: operation::READ,
            permission: permission::DENY,
        };
        let create = MetadataRecord::CreateAcls(vec![acl("acme.a"), acl("acme.b"), acl("acme.a")]);
        assert_eq!(image.apply(&create, 1, &config).partition_errors, [0, 0, 0]);
        assert_eq!(image.acls.len(), 2);
        let restored = MetadataImage::from_data(image.to_data(), &Arc::new(config.clone()), 1);
        assert_eq!(restored.acls, image.acls);
        let delete = MetadataRecord::DeleteAcls(vec![acl("acme.a"), acl("acme.c")]);
        assert_eq!(
            image.apply(&delete, 2, &config).partition_errors,
            [0, ResponseError::ResourceNotFound.code()]
        );
        assert_eq!(image.acls.iter().collect::<Vec<_>>(), [&acl("acme.b")]);
    }

    #[test]
    fn dynamic_settings_are_validated() {
        let config = BrokerConfig::default();
        let mut image = MetadataImage::empty(Arc::new(config.clone()));
        let mut dynamic = BTreeMap::new();
        let _ = dynamic.insert("log.retention.ms".to_owned(), "1000".to_owned());
        let record = MetadataRecord::SetDynamicBrokerConfigs(dynamic.clone());
        assert_eq!(image.apply(&record, 1, &config).error_code, 0);
        assert_eq!(image.broker_config.log_retention_ms, 1000);
        let _ = dynamic.insert("num.partitions".to_owned(), "2".to_owned());
        let record = MetadataRecord::SetDynamicBrokerConfigs(dynamic);
        assert_eq!(image.apply(&record, 2, &config).error_code, 42);
        assert_eq!(image.dynamic_broker_configs.len(), 1);
    }

    #[test]
    fn client_quotas_survive_snapshots() {
        use crate::tenant::quota::{QuotaEntity, QuotaKey};
        let mut new = ImageData {
            cluster_id: "c".to_owned(),
            ..ImageData::default()
        };
        let entity = QuotaEntity::new(vec![(
            crate::tenant::quota::EntityType::Tenant,
            Some("acme".to_owned()),
        )])
        .unwrap();
        let _ = new
            .client_quotas
            .entry(entity.clone())
            .or_default()
            .insert(QuotaKey::ProducerByteRate, 1024.0);
        let decoded = ImageData::decode(&bincode::serialize(&new).unwrap()).unwrap();
        assert_eq!(
            decoded.client_quotas[&entity][&QuotaKey::ProducerByteRate],
            1024.0
        );
        assert!(ImageData::decode(&[1, 2, 3]).is_err());
    }
}
