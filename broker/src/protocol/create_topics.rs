//! CreateTopics, with Kafka's validation order and errors; `validate_only`
//! runs every check and creates nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse};

use crate::broker::Broker;
use crate::cluster::metadata::validate_topic_name;
use crate::error::{Error, Result};
use crate::log::topic_config;
use crate::protocol::describe_configs::topic_entries;
use crate::protocol::{count_error, str_bytes, RequestContext};
use crate::tenant::acl::operation;

/// A request topic that passed validation.
#[derive(Debug)]
struct ValidTopic {
    partitions: i32,
    replication_factor: i16,
    /// Replicas per partition when the request gave them.
    assignments: Option<Vec<Vec<i32>>>,
    configs: BTreeMap<String, String>,
}

fn invalid(code: ResponseError, message: impl Into<String>) -> Error {
    Error::api_msg(code, message)
}

/// Checks one topic of the request against Kafka's rules.
fn validate(broker: &Broker, topic: &CreatableTopic) -> Result<ValidTopic> {
    let name = topic.name.as_str();
    validate_topic_name(name)?;
    if broker.image().topic(name).is_some() {
        return Err(invalid(
            ResponseError::TopicAlreadyExists,
            format!("Topic '{name}' already exists."),
        ));
    }
    let image = broker.image();
    let live_brokers = image.live_brokers().len() as i32;
    let (partitions, replication_factor, assignments) = if topic.assignments.is_empty() {
        let partitions = match topic.num_partitions {
            -1 => broker.config.num_partitions,
            n if n < 1 => {
                return Err(invalid(
                    ResponseError::InvalidPartitions,
                    "Number of partitions was set to an invalid non-positive value.",
                ))
            }
            n => n,
        };
        let replication_factor = match topic.replication_factor {
            -1 => broker.config.replication_factor(),
            n if n < 1 => {
                return Err(invalid(
                    ResponseError::InvalidReplicationFactor,
                    "Replication factor must be larger than 0, or -1 to use the default value.",
                ))
            }
            n => n,
        };
        (partitions, replication_factor, None)
    } else {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err(invalid(
                ResponseError::InvalidRequest,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
            ));
        }
        let (partitions, replication_factor) = validate_assignments(broker, topic)?;
        let assignments = topic
            .assignments
            .iter()
            .map(|a| a.broker_ids.iter().map(|id| id.0).collect())
            .collect();
        (partitions, replication_factor, Some(assignments))
    };
    if i32::from(replication_factor) > live_brokers {
        return Err(invalid(
            ResponseError::InvalidReplicationFactor,
            format!(
                "Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only {live_brokers} broker(s) are registered."
            ),
        ));
    }
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        let key = config.name.as_str();
        let value = config.value.as_ref().ok_or_else(|| {
            invalid(
                ResponseError::InvalidConfig,
                format!("Null value not supported for topic configs: {key}"),
            )
        })?;
        topic_config::validate(key, value.as_str())
            .map_err(|m| invalid(ResponseError::InvalidConfig, m))?;
        let _ = configs.insert(key.to_owned(), value.to_string());
    }
    Ok(ValidTopic {
        partitions,
        replication_factor,
        assignments,
        configs,
    })
}

fn validate_assignments(broker: &Broker, topic: &CreatableTopic) -> Result<(i32, i16)> {
    let mut replication_factor = None;
    for (expected, assignment) in topic.assignments.iter().enumerate() {
        if assignment.partition_index != expected as i32 {
            return Err(invalid(
                ResponseError::InvalidReplicaAssignment,
                "Partitions should be a consecutive 0-based integer sequence",
            ));
        }
        let replicas = assignment.broker_ids.len() as i16;
        let image = broker.image();
        let mut distinct = assignment
            .broker_ids
            .iter()
            .map(|id| id.0)
            .collect::<Vec<_>>();
        distinct.sort_unstable();
        distinct.dedup();
        if replicas == 0
            || distinct.len() != assignment.broker_ids.len()
            || assignment
                .broker_ids
                .iter()
                .any(|id| !image.brokers.contains_key(&id.0))
        {
            return Err(invalid(
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "replica assignment {:?} names unknown brokers",
                    assignment.broker_ids
                ),
            ));
        }
        if *replication_factor.get_or_insert(replicas) != replicas {
            return Err(invalid(
                ResponseError::InvalidReplicaAssignment,
                "All partitions should have the same number of replicas",
            ));
        }
    }
    Ok((
        topic.assignments.len() as i32,
        replication_factor.unwrap_or(1),
    ))
}

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for topic in &request.topics {
        *seen.entry(topic.name.as_str()).or_default() += 1;
    }
    let image = broker.image();
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.as_str();
        let outcome = if seen[name] > 1 {
            Err(invalid(
                ResponseError::InvalidRequest,
                format!("Create topics request from client contains duplicate topic name {name}"),
            ))
        } else if !context.may_topic(&image, operation::CREATE, name) {
            Err(Error::api(ResponseError::TopicAuthorizationFailed))
        } else {
            match validate(&broker, topic) {
                Ok(valid) if request.validate_only => Ok((valid, None)),
                Ok(valid) => broker
                    .create_topic(
                        name.to_owned(),
                        valid.partitions,
                        valid.replication_factor,
                        valid.assignments.clone(),
                        valid.configs.clone(),
                    )
                    .await
                    .map(|record| (valid, Some(record.id))),
                Err(e) => Err(e),
            }
        };
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        results.push(match outcome {
            Ok((valid, topic_id)) => {
                let configs = topic_entries(&valid.configs, &broker.image())
                    .into_iter()
                    .map(|entry| {
                        CreatableTopicConfigs::default()
                            .with_name(str_bytes(&entry.name))
                            .with_value(Some(str_bytes(&entry.value)))
                            .with_config_source(entry.source)
                    })
                    .collect();
                result
                    .with_topic_id(topic_id.unwrap_or_default())
                    .with_num_partitions(valid.partitions)
                    .with_replication_factor(valid.replication_factor)
                    .with_configs(Some(configs))
            }
            Err(e) => {
                count_error(ApiKey::CreateTopics, e.code());
                result
                    .with_error_code(e.code())
                    .with_error_message(e.client_message().map(|m| str_bytes(&m)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            }
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}
