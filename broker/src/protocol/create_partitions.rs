//! CreatePartitions: grow a topic's partition count (never shrink it).

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{ApiKey, CreatePartitionsRequest, CreatePartitionsResponse};

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::protocol::{count_error, str_bytes, RequestContext};
use crate::tenant::acl::operation;

fn check(broker: &Broker, topic: &CreatePartitionsTopic) -> Result<()> {
    let name = topic.name.as_str();
    let current = broker
        .image()
        .topic(name)
        .map(|t| t.partitions)
        .ok_or_else(|| {
            Error::api_msg(
                ResponseError::UnknownTopicOrPartition,
                format!("The topic '{name}' does not exist."),
            )
        })?;
    if topic.count < current {
        return Err(Error::api_msg(
            ResponseError::InvalidPartitions,
            format!("The topic {name} currently has {current} partition(s); {} would not be an increase.", topic.count),
        ));
    }
    if topic.count == current {
        return Err(Error::api_msg(
            ResponseError::InvalidPartitions,
            format!("Topic already has {current} partition(s)."),
        ));
    }
    // Null means automatic placement; some clients send an empty list.
    if let Some(assignments) = topic.assignments.as_ref().filter(|a| !a.is_empty()) {
        let added = (topic.count - current) as usize;
        if assignments.len() != added {
            return Err(Error::api_msg(
                ResponseError::InvalidReplicaAssignment,
                format!("Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.", assignments.len()),
            ));
        }
        if assignments.iter().any(|a| {
            a.broker_ids.is_empty() || a.broker_ids.iter().any(|id| id.0 != broker.node_id())
        }) {
            return Err(Error::api_msg(
                ResponseError::InvalidReplicaAssignment,
                "assignment names unknown brokers",
            ));
        }
    }
    Ok(())
}

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for topic in &request.topics {
        *seen.entry(topic.name.as_str()).or_default() += 1;
    }
    let image = broker.image();
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let outcome = if seen[topic.name.as_str()] > 1 {
            Err(Error::api_msg(
                ResponseError::InvalidRequest,
                "Duplicate topic in request.",
            ))
        } else if !context.may_topic(&image, operation::ALTER, topic.name.as_str()) {
            Err(Error::api(ResponseError::TopicAuthorizationFailed))
        } else {
            match check(&broker, topic) {
                Ok(()) if request.validate_only => Ok(()),
                Ok(()) => {
                    let count = topic.count;
                    broker
                        .update_topic(topic.name.to_string(), move |record| {
                            if count <= record.partitions {
                                return Err(Error::api(ResponseError::InvalidPartitions));
                            }
                            record.partitions = count;
                            Ok(())
                        })
                        .await
                        .map(|_| ())
                }
                Err(e) => Err(e),
            }
        };
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        results.push(match outcome {
            Ok(()) => result,
            Err(e) => {
                count_error(ApiKey::CreatePartitions, e.code());
                result
                    .with_error_code(e.code())
                    .with_error_message(e.client_message().map(|m| str_bytes(&m)))
            }
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
