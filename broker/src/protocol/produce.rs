//! Produce: resolve and check every partition first, then one call to the
//! replica manager that queues all appends at once (fixing their order on
//! arrival), then wait and merge the results.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::Decodable;

use crate::broker::Broker;
use crate::coordinator::group_coordinator::OFFSETS_TOPIC;
use crate::error::Error;
use crate::log::topic_config::TopicConfig;
use crate::protocol::{
    count_error, encode, resolve_topic, str_bytes, Outcome, RequestContext, ResponseFuture,
};
use crate::replication::replica_manager::AppendRequest;

/// Where a partition's answer comes from: an early error or an append.
enum Slot {
    Failed(Error),
    Appended(usize),
}

pub fn dispatch(
    broker: &Arc<Broker>,
    context: &RequestContext,
    mut body: Bytes,
) -> Result<ResponseFuture, String> {
    let version = context.api_version;
    let request = ProduceRequest::decode(&mut body, version).map_err(|e| e.to_string())?;
    let acks = request.acks;
    let image = broker.image();
    let mut appends = Vec::new();
    let mut slots: Vec<Vec<(i32, Slot)>> = Vec::with_capacity(request.topic_data.len());
    for topic in &request.topic_data {
        let record = resolve_topic(&image, version >= 13, topic.name.as_str(), &topic.topic_id);
        let topic_config = record.map(|r| TopicConfig::resolve(&r.configs, &image.broker_config));
        let mut topic_slots = Vec::with_capacity(topic.partition_data.len());
        for data in &topic.partition_data {
            let slot = if !matches!(acks, -1..=1) {
                Slot::Failed(Error::api(ResponseError::InvalidRequiredAcks))
            } else {
                match (record, &topic_config) {
                    // Only the coordinator writes Kafka's internal topic.
                    (Ok(record), Ok(_)) if record.name == OFFSETS_TOPIC => {
                        Slot::Failed(Error::api_msg(
                            ResponseError::InvalidTopicException,
                            format!("cannot append to internal topic {OFFSETS_TOPIC}"),
                        ))
                    }
                    (Ok(record), Ok(config)) => {
                        match (
                            broker.replicas.logs().get(record.id, data.index),
                            &data.records,
                        ) {
                            (None, _) => {
                                Slot::Failed(Error::api(ResponseError::UnknownTopicOrPartition))
                            }
                            (Some(_), None) => Slot::Failed(Error::api_msg(
                                ResponseError::InvalidRecord,
                                "produce request without records",
                            )),
                            (Some(log), Some(records)) => {
                                appends.push(AppendRequest {
                                    partition: log,
                                    records: records.clone(),
                                    max_message_bytes: config.max_message_bytes,
                                });
                                Slot::Appended(appends.len() - 1)
                            }
                        }
                    }
                    (Err(unknown), _) => Slot::Failed(Error::api(unknown)),
                    (Ok(_), Err(unknown)) => Slot::Failed(Error::api(*unknown)),
                }
            };
            topic_slots.push((data.index, slot));
        }
        slots.push(topic_slots);
    }
    let appended = broker.replicas.append_records(appends);
    Ok(Box::pin(async move {
        let mut results = appended.await.into_iter().map(Some).collect::<Vec<_>>();
        let mut any_error = false;
        let responses = request
            .topic_data
            .iter()
            .zip(slots)
            .map(|(topic, topic_slots)| {
                let partitions = topic_slots
                    .into_iter()
                    .map(|(index, slot)| {
                        let result = match slot {
                            Slot::Failed(e) => Err(e),
                            Slot::Appended(i) => results[i].take().unwrap_or_else(|| {
                                Err(Error::Internal("append result taken twice".into()))
                            }),
                        };
                        let response = PartitionProduceResponse::default()
                            .with_index(index)
                            .with_log_append_time_ms(-1);
                        match result {
                            Ok(done) => response
                                .with_base_offset(done.base_offset)
                                .with_log_start_offset(done.log_start_offset),
                            Err(e) => {
                                any_error = true;
                                count_error(ApiKey::Produce, e.code());
                                response
                                    .with_error_code(e.code())
                                    .with_base_offset(-1)
                                    .with_log_start_offset(-1)
                                    .with_error_message(e.client_message().map(|m| str_bytes(&m)))
                            }
                        }
                    })
                    .collect();
                TopicProduceResponse::default()
                    .with_name(topic.name.clone())
                    .with_topic_id(topic.topic_id)
                    .with_partition_responses(partitions)
            })
            .collect();
        if acks == 0 {
            // Kafka closes an acks=0 connection on error: the client has no
            // other way to learn it should refresh its metadata.
            return if any_error {
                Outcome::Close("acks=0 produce failed".to_owned())
            } else {
                Outcome::NoResponse
            };
        }
        encode(
            &ProduceResponse::default().with_responses(responses),
            version,
        )
    }))
}
