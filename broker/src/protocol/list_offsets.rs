//! ListOffsets: earliest, latest, max timestamp and by-timestamp lookups,
//! all partitions looked up concurrently.

use std::sync::Arc;

use futures_util::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};

use crate::broker::Broker;
use crate::error::Error;
use crate::protocol::{count_error, RequestContext};
use crate::tenant::acl::operation;

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let image = broker.image();
    // The leader epoch field exists from v4 on.
    let with_epoch = context.api_version >= 4;
    let read_committed = request.isolation_level == 1;
    let topics = request.topics.iter().map(|topic| {
        let record = image.topic(topic.name.as_str()).cloned();
        // DESCRIBE on the topic, once per topic of the request.
        let authorized = context.may_topic(&image, operation::DESCRIBE, topic.name.as_str());
        let broker = broker.clone();
        async move {
            let lookups = topic.partitions.iter().map(|p| {
                let log = record
                    .as_ref()
                    .and_then(|r| broker.replicas.logs().get(r.id, p.partition_index));
                let broker = broker.clone();
                async move {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let result = match log {
                        _ if !authorized => {
                            Err(Error::api(ResponseError::TopicAuthorizationFailed))
                        }
                        None => Err(Error::api(ResponseError::UnknownTopicOrPartition)),
                        Some(log) if !log.is_leader() => {
                            Err(Error::api(ResponseError::NotLeaderOrFollower))
                        }
                        Some(log) => {
                            let epoch = log.offsets().leader_epoch;
                            if p.current_leader_epoch >= 0 && p.current_leader_epoch < epoch {
                                Err(Error::api(ResponseError::FencedLeaderEpoch))
                            } else if p.current_leader_epoch > epoch {
                                Err(Error::api(ResponseError::UnknownLeaderEpoch))
                            } else {
                                broker
                                    .replicas
                                    .list_offset(log, p.timestamp, read_committed)
                                    .await
                            }
                        }
                    };
                    match result {
                        Ok(found) => response
                            .with_offset(found.offset)
                            .with_timestamp(found.timestamp)
                            .with_leader_epoch(if with_epoch { found.leader_epoch } else { -1 }),
                        Err(e) => {
                            count_error(ApiKey::ListOffsets, e.code());
                            response
                                .with_error_code(e.code())
                                .with_offset(-1)
                                .with_timestamp(-1)
                                .with_leader_epoch(-1)
                        }
                    }
                }
            });
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(join_all(lookups).await)
        }
    });
    ListOffsetsResponse::default().with_topics(join_all(topics).await)
}
