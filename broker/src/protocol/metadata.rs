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
use crate::coordinator::transaction_coordinator::TRANSACTION_STATE_TOPIC;
use crate::protocol::{str_bytes, topic_name, RequestContext};
use crate::tenant::acl::operation;

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
    let image = broker.image();
    // DESCRIBE on each topic, once per topic; the operations a client may
    // do on it only when asked for.
    let may = |op: i8, name: &str| context.may_topic(&image, op, name);
    let ops_of = |name: &str| {
        if topic_ops == OPERATIONS_OMITTED || context.principal.super_user {
            topic_ops
        } else {
            (0..=MAX_OPERATION)
                .filter(|op| TOPIC_OPERATIONS & (1 << op) != 0 && may(*op, name))
                .fold(0, |bits, op| bits | (1 << op))
        }
    };
    match requested {
        None => {
            let mut all: Vec<_> = image
                .topics()
                .filter(|t| may(operation::DESCRIBE, &t.name))
                .cloned()
                .collect();
            all.sort_by(|a, b| a.name.cmp(&b.name));
            topics.extend(all.iter().map(|t| describe(&broker, t, ops_of(&t.name))));
        }
        Some(list) => {
            for wanted in list {
                let topic = match &wanted.name {
                    Some(name) if !may(operation::DESCRIBE, name.as_str()) => {
                        MetadataResponseTopic::default()
                            .with_name(Some(name.clone()))
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                            .with_topic_authorized_operations(topic_ops)
                    }
                    Some(name) => {
                        let name = name.as_str();
                        let create = allow_create && may(operation::CREATE, name);
                        let unauthorized_create = allow_create && !create;
                        by_name(&broker, name, create, unauthorized_create, ops_of(name)).await
                    }
                    None => match image.topic_by_id(&wanted.topic_id) {
                        Some(t) if !may(operation::DESCRIBE, &t.name) => {
                            unknown_id(wanted.topic_id, topic_ops)
                        }
                        Some(t) => describe(&broker, t, ops_of(&t.name)),
                        None => unknown_id(wanted.topic_id, topic_ops),
                    },
                };
                topics.push(topic);
            }
        }
    }
    let image = broker.image();
    let brokers = image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| {
            let (host, port) = b.address_for(&context.listener);
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(host))
                .with_port(port)
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(&image.cluster_id)))
        .with_controller_id(BrokerId(broker.controller().leader().unwrap_or(node.0)))
        .with_topics(topics)
        .with_cluster_authorized_operations(
            if request.include_cluster_authorized_operations && (8..=10).contains(&version) {
                CLUSTER_OPERATIONS
            } else {
                OPERATIONS_OMITTED
            },
        )
}

/// The highest AclOperation code in [`TOPIC_OPERATIONS`].
const MAX_OPERATION: i8 = 14;

/// `allow_create`: create the topic if unknown; `unauthorized_create`: it
/// would have been created but the principal may not create it.
async fn by_name(
    broker: &Arc<Broker>,
    name: &str,
    allow_create: bool,
    unauthorized_create: bool,
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
    if unauthorized_create {
        return error(ResponseError::TopicAuthorizationFailed.code());
    }
    if !allow_create {
        return error(ResponseError::UnknownTopicOrPartition.code());
    }
    let partitions = broker.config.num_partitions;
    match broker
        .create_topic(
            name.to_owned(),
            partitions,
            broker.config.replication_factor(),
            None,
            BTreeMap::new(),
        )
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

/// A topic id that is unknown (or not the principal's to see).
fn unknown_id(id: Uuid, ops: i32) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_topic_id(id)
        .with_error_code(ResponseError::UnknownTopicId.code())
        .with_topic_authorized_operations(ops)
}

fn describe(broker: &Broker, topic: &TopicRecord, ops: i32) -> MetadataResponseTopic {
    let image = broker.image();
    let ids = |list: &[i32]| list.iter().map(|id| BrokerId(*id)).collect::<Vec<_>>();
    let partitions = image
        .partitions(&topic.id)
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let entry = MetadataResponsePartition::default()
                .with_partition_index(index as i32)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_leader_epoch(p.leader_epoch)
                .with_leader_id(BrokerId(p.leader));
            // Offline replicas: assigned brokers that are fenced.
            let offline: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|r| image.brokers.get(r).is_none_or(|b| b.fenced))
                .collect();
            let entry = entry.with_offline_replicas(ids(&offline));
            if p.leader < 0 {
                entry.with_error_code(ResponseError::LeaderNotAvailable.code())
            } else {
                entry
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name == OFFSETS_TOPIC || topic.name == TRANSACTION_STATE_TOPIC)
        .with_partitions(partitions)
        .with_topic_authorized_operations(ops)
}
