//! Metadata: brokers, cluster id, and the requested topics (all when the
//! list is null, or empty at v0), creating unknown ones when
//! `auto.create.topics.enable` and the request allow it.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use uuid::Uuid;

use crate::broker::Broker;
use crate::cluster::metadata::validate_topic_name;
use crate::cluster::topic_record::TopicRecord;
use crate::coordinator::group_coordinator::OFFSETS_TOPIC;
use crate::protocol::{str_bytes, topic_name, RequestContext};

/// Kafka's "authorized operations not requested" marker.
const OPERATIONS_OMITTED: i32 = i32::MIN;
/// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS,
/// ALTER_CONFIGS as Kafka's AclOperation bit set.
pub const TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
/// CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS,
/// IDEMPOTENT_WRITE.
pub const CLUSTER_OPERATIONS: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: MetadataRequest,
) -> MetadataResponse {
    let version = context.api_version;
    let node = BrokerId(broker.node_id());
    let requested = match &request.topics {
        None => None,
        Some(list) if list.is_empty() && version == 0 => None,
        Some(list) => Some(list),
    };
    let allow_create = broker.config.auto_create_topics_enable
        && (version < 4 || request.allow_auto_topic_creation);
    // Authorized operations exist from v8 on; the cluster ones only to v10.
    let topic_ops = if request.include_topic_authorized_operations && version >= 8 {
        TOPIC_OPERATIONS
    } else {
        OPERATIONS_OMITTED
    };
    let mut topics = Vec::new();
    match requested {
        None => {
            let image = broker.image();
            let mut all: Vec<_> = image.topics().cloned().collect();
            all.sort_by(|a, b| a.name.cmp(&b.name));
            topics.extend(all.iter().map(|t| describe(&broker, t, topic_ops)));
        }
        Some(list) => {
            for wanted in list {
                let topic = match &wanted.name {
                    Some(name) => by_name(&broker, name.as_str(), allow_create, topic_ops).await,
                    None => by_id(&broker, wanted.topic_id, topic_ops),
                };
                topics.push(topic);
            }
        }
    }
    let broker_entry = MetadataResponseBroker::default()
        .with_node_id(node)
        .with_host(str_bytes(&broker.advertised_host))
        .with_port(broker.advertised_port);
    MetadataResponse::default()
        .with_brokers(vec![broker_entry])
        .with_cluster_id(Some(str_bytes(&broker.image().cluster_id)))
        .with_controller_id(node)
        .with_topics(topics)
        .with_cluster_authorized_operations(
            if request.include_cluster_authorized_operations && (8..=10).contains(&version) {
                CLUSTER_OPERATIONS
            } else {
                OPERATIONS_OMITTED
            },
        )
}

async fn by_name(
    broker: &Arc<Broker>,
    name: &str,
    allow_create: bool,
    ops: i32,
) -> MetadataResponseTopic {
    if let Some(record) = broker.image().topic(name).cloned() {
        return describe(broker, &record, ops);
    }
    let error = |code: i16| {
        MetadataResponseTopic::default()
            .with_name(Some(topic_name(name)))
            .with_error_code(code)
            .with_topic_authorized_operations(ops)
    };
    if let Err(e) = validate_topic_name(name) {
        return error(e.code());
    }
    if !allow_create {
        return error(ResponseError::UnknownTopicOrPartition.code());
    }
    let partitions = broker.config.num_partitions;
    match broker
        .create_topic(name.to_owned(), partitions, BTreeMap::new())
        .await
    {
        Ok(record) => describe(broker, &record, ops),
        Err(e) if e.code() == ResponseError::TopicAlreadyExists.code() => {
            match broker.image().topic(name) {
                Some(record) => describe(broker, record, ops),
                None => error(ResponseError::LeaderNotAvailable.code()),
            }
        }
        Err(e) => error(e.code()),
    }
}

fn by_id(broker: &Arc<Broker>, id: Uuid, ops: i32) -> MetadataResponseTopic {
    match broker.image().topic_by_id(&id) {
        Some(record) => describe(broker, record, ops),
        None => MetadataResponseTopic::default()
            .with_topic_id(id)
            .with_error_code(ResponseError::UnknownTopicId.code())
            .with_topic_authorized_operations(ops),
    }
}

fn describe(broker: &Broker, topic: &TopicRecord, ops: i32) -> MetadataResponseTopic {
    let node = BrokerId(broker.node_id());
    let partitions = (0..topic.partitions)
        .map(|index| {
            let epoch = broker
                .replicas
                .logs()
                .get(topic.id, index)
                .map(|log| log.offsets().leader_epoch);
            let entry = MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node]);
            match epoch {
                Some(epoch) => entry.with_leader_id(node).with_leader_epoch(epoch),
                None => entry
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1))
                    .with_leader_epoch(-1),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name == OFFSETS_TOPIC)
        .with_partitions(partitions)
        .with_topic_authorized_operations(ops)
}
