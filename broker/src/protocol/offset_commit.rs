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

/// One partition of an offset commit, as the client sent it.
pub(crate) struct PartitionOffset<'a> {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<&'a str>,
}

/// Per topic, per partition: the early error, or the index of its commit.
pub(crate) type Outcomes = Vec<Vec<Result<usize, ResponseError>>>;

/// Checks each partition of an offset commit (OffsetCommit and
/// TxnOffsetCommit) and collects the commits: `denied` first (a check of
/// the whole request that failed), then the group id, READ on the group and
/// on the topic, a known partition and the metadata size.
pub(crate) fn plan<'a>(
    broker: &Broker,
    context: &RequestContext,
    group_id: &str,
    denied: Option<ResponseError>,
    topics: impl Iterator<Item = (&'a str, Vec<PartitionOffset<'a>>)>,
) -> (Outcomes, Vec<OffsetCommit>) {
    let image = broker.image();
    let max_metadata = broker.config.offset_metadata_max_bytes;
    // READ on the group, then on each topic, once each.
    let group_ok = context.may_group(&image, operation::READ, group_id);
    let mut outcomes = Vec::new();
    let mut commits = Vec::new();
    for (topic, partitions) in topics {
        let record = image.topic(topic);
        let topic_ok = group_ok && context.may_topic(&image, operation::READ, topic);
        let mut row = Vec::with_capacity(partitions.len());
        for p in partitions {
            let metadata = p.metadata.unwrap_or("");
            let outcome = if let Some(e) = denied {
                Err(e)
            } else if group_id.is_empty() {
                Err(ResponseError::InvalidGroupId)
            } else if !group_ok {
                Err(ResponseError::GroupAuthorizationFailed)
            } else if !topic_ok {
                Err(ResponseError::TopicAuthorizationFailed)
            } else if !record.is_some_and(|r| (0..r.partitions).contains(&p.partition)) {
                Err(ResponseError::UnknownTopicOrPartition)
            } else if metadata.len() > max_metadata {
                Err(ResponseError::OffsetMetadataTooLarge)
            } else {
                commits.push(OffsetCommit {
                    topic: topic.to_owned(),
                    partition: p.partition,
                    offset: p.offset,
                    leader_epoch: p.leader_epoch,
                    metadata: metadata.to_owned(),
                });
                Ok(commits.len() - 1)
            };
            row.push(outcome);
        }
        outcomes.push(row);
    }
    (outcomes, commits)
}

/// A partition's error code once the commits are done (counted).
pub(crate) fn outcome_code(
    api: ApiKey,
    outcome: Result<usize, ResponseError>,
    results: &[Result<(), ResponseError>],
) -> i16 {
    let result = outcome.and_then(|i| {
        results
            .get(i)
            .copied()
            .unwrap_or(Err(ResponseError::UnknownServerError))
    });
    let code = result.err().map_or(0, |e| e.code());
    count_error(api, code);
    code
}

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group_id = request.group_id.as_str();
    let (outcomes, commits) = plan(
        &broker,
        &context,
        group_id,
        None,
        request.topics.iter().map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| PartitionOffset {
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_deref(),
                })
                .collect();
            (t.name.as_str(), partitions)
        }),
    );
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
                    let code = outcome_code(ApiKey::OffsetCommit, outcome, &results);
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
