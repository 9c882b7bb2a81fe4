//! DeleteRecords: moves partitions' log start offsets forward.

use std::sync::Arc;

use futures_util::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest, DeleteRecordsResponse};

use crate::broker::Broker;
use crate::error::Error;
use crate::protocol::{count_error, RequestContext};
use crate::tenant::acl::operation;

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let image = broker.image();
    let topics = request.topics.iter().map(|topic| {
        let record = image.topic(topic.name.as_str()).cloned();
        let authorized = context.may_topic(&image, operation::DELETE, topic.name.as_str());
        let broker = broker.clone();
        async move {
            let partitions = topic.partitions.iter().map(|p| {
                let log = record
                    .as_ref()
                    .and_then(|r| broker.replicas.logs().get(r.id, p.partition_index));
                let broker = broker.clone();
                async move {
                    let result = match log {
                        _ if !authorized => {
                            Err(Error::api(ResponseError::TopicAuthorizationFailed))
                        }
                        None => Err(Error::api(ResponseError::UnknownTopicOrPartition)),
                        Some(log) if !log.is_leader() => {
                            Err(Error::api(ResponseError::NotLeaderOrFollower))
                        }
                        Some(log) => broker.replicas.delete_records(log, p.offset).await,
                    };
                    let entry = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index);
                    match result {
                        Ok(low_watermark) => entry.with_low_watermark(low_watermark),
                        Err(e) => {
                            count_error(ApiKey::DeleteRecords, e.code());
                            entry.with_low_watermark(-1).with_error_code(e.code())
                        }
                    }
                }
            });
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(join_all(partitions).await)
        }
    });
    DeleteRecordsResponse::default().with_topics(join_all(topics).await)
}
