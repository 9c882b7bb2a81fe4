//! OffsetForLeaderEpoch: where a leader epoch ends, from the epoch cache, so
//! a client (or a returning follower) can detect log truncation.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::broker::Broker;
use crate::protocol::{count_error, RequestContext};
use crate::tenant::acl::operation;

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let image = broker.image();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let record = image.topic(topic.topic.as_str());
            let authorized = context.may_topic(&image, operation::DESCRIBE, topic.topic.as_str());
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let entry = EpochEndOffset::default().with_partition(p.partition);
                    let log = record.and_then(|r| broker.replicas.logs().get(r.id, p.partition));
                    let error = |code: ResponseError| {
                        count_error(ApiKey::OffsetForLeaderEpoch, code.code());
                        EpochEndOffset::default()
                            .with_partition(p.partition)
                            .with_error_code(code.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1)
                    };
                    if !authorized {
                        return error(ResponseError::TopicAuthorizationFailed);
                    }
                    let Some(log) = log else {
                        return error(ResponseError::UnknownTopicOrPartition);
                    };
                    let current = log.offsets().leader_epoch;
                    if p.current_leader_epoch >= 0 && p.current_leader_epoch < current {
                        return error(ResponseError::FencedLeaderEpoch);
                    }
                    if p.current_leader_epoch > current {
                        return error(ResponseError::UnknownLeaderEpoch);
                    }
                    match log.end_offset_for_epoch(p.leader_epoch) {
                        Some((epoch, end)) => entry.with_leader_epoch(epoch).with_end_offset(end),
                        // Older than anything we have, or an empty log:
                        // Kafka answers UNDEFINED_EPOCH and the log end.
                        None if current <= p.leader_epoch => entry
                            .with_leader_epoch(current)
                            .with_end_offset(log.offsets().log_end_offset),
                        None => entry.with_leader_epoch(-1).with_end_offset(-1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
