//! OffsetCommit: checks each partition here (known topic, metadata size),
//! then commits the rest through the group coordinator in one write.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetCommitRequest, OffsetCommitResponse};

use crate::broker::Broker;
use crate::coordinator::group_coordinator::OffsetCommit;
use crate::protocol::{count_error, RequestContext};
use crate::tenant::acl::operation;

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let image = broker.image();
    let max_metadata = broker.config.offset_metadata_max_bytes;
    // Per partition: an early error, or an index into `commits`.
    let mut outcomes: Vec<Vec<Result<usize, ResponseError>>> = Vec::new();
    let mut commits = Vec::new();
    let group_id = request.group_id.as_str();
    // READ on the group, then on each topic, once each.
    let group_ok = context.may_group(&image, operation::READ, group_id);
    for topic in &request.topics {
        let record = image.topic(topic.name.as_str());
        let topic_ok = group_ok && context.may_topic(&image, operation::READ, topic.name.as_str());
        let mut row = Vec::new();
        for p in &topic.partitions {
            let metadata = p.committed_metadata.as_deref().unwrap_or("");
            let outcome = if group_id.is_empty() {
                Err(ResponseError::InvalidGroupId)
            } else if !group_ok {
                Err(ResponseError::GroupAuthorizationFailed)
            } else if !topic_ok {
                Err(ResponseError::TopicAuthorizationFailed)
            } else if !record.is_some_and(|r| (0..r.partitions).contains(&p.partition_index)) {
                Err(ResponseError::UnknownTopicOrPartition)
            } else if metadata.len() > max_metadata {
                Err(ResponseError::OffsetMetadataTooLarge)
            } else {
                commits.push(OffsetCommit {
                    topic: topic.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: metadata.to_owned(),
                });
                Ok(commits.len() - 1)
            };
            row.push(outcome);
        }
        outcomes.push(row);
    }
    let results = if commits.is_empty() {
        Vec::new()
    } else {
        broker
            .groups
            .commit_offsets(
                group_id,
                request.generation_id_or_member_epoch,
                request.member_id.as_str(),
                request.group_instance_id.as_deref(),
                commits,
            )
            .await
    };
    let topics = request
        .topics
        .iter()
        .zip(outcomes)
        .map(|(topic, row)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(row)
                .map(|(p, outcome)| {
                    let result = outcome.and_then(|i| {
                        results
                            .get(i)
                            .copied()
                            .unwrap_or(Err(ResponseError::UnknownServerError))
                    });
                    let code = result.err().map_or(0, |e| e.code());
                    count_error(ApiKey::OffsetCommit, code);
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
