//! OffsetDelete: removes a group's committed offsets for partitions it does
//! not consume (GROUP_SUBSCRIBED_TO_TOPIC for those it does).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetDeleteRequest, OffsetDeleteResponse};

use crate::broker::Broker;
use crate::protocol::{count_error, RequestContext};
use crate::tenant::acl::operation;

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group_id = request.group_id.as_str();
    let image = broker.image();
    // Unknown partitions are answered here; the rest go to the coordinator.
    let mut wanted = Vec::new();
    let mut early: Vec<Vec<Option<ResponseError>>> = Vec::new();
    for topic in &request.topics {
        let record = image.topic(topic.name.as_str());
        let topic_ok = context.may_topic(&image, operation::READ, topic.name.as_str());
        early.push(
            topic
                .partitions
                .iter()
                .map(|p| {
                    if !topic_ok {
                        Some(ResponseError::TopicAuthorizationFailed)
                    } else if record.is_some_and(|r| (0..r.partitions).contains(&p.partition_index))
                    {
                        wanted.push((topic.name.to_string(), p.partition_index));
                        None
                    } else {
                        Some(ResponseError::UnknownTopicOrPartition)
                    }
                })
                .collect(),
        );
    }
    let outcome = if group_id.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else if !context.may_group(&image, operation::DELETE, group_id) {
        Err(ResponseError::GroupAuthorizationFailed)
    } else {
        broker.groups.delete_offsets(group_id, wanted).await
    };
    let results = match outcome {
        Ok(results) => results,
        Err(e) => {
            count_error(ApiKey::OffsetDelete, e.code());
            return OffsetDeleteResponse::default().with_error_code(e.code());
        }
    };
    let mut results = results.into_iter();
    let topics = request
        .topics
        .iter()
        .zip(early)
        .map(|(topic, row)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(row)
                .map(|(p, early)| {
                    let error = match early {
                        Some(e) => Some(e),
                        None => results.next().and_then(|r| r.err()),
                    };
                    let code = error.map_or(0, |e| e.code());
                    count_error(ApiKey::OffsetDelete, code);
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
