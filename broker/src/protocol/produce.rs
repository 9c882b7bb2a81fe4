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
use crate::coordinator::transaction_coordinator::TRANSACTION_STATE_TOPIC;
use crate::error::Error;
use crate::log::batch::BatchHeader;
use crate::log::topic_config::TopicConfig;
use crate::log::writer::AppendOrigin;
use crate::protocol::{
    count_error, encode, resolve_topic, str_bytes, Outcome, RequestContext, ResponseFuture,
};
use crate::replication::replica_manager::AppendRequest;
use crate::tenant::acl::{operation, resource_type};
use crate::tenant::rewrite::{ScopeRequest, ScopeResponse, Substitutions};

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
    let mut request = ProduceRequest::decode(&mut body, version).map_err(|e| e.to_string())?;
    let image = broker.image();
    // A tenant's names become internal names here and go back in the
    // response below (crate::tenant::rewrite); for anyone else `scope` is
    // None and nothing is cloned or allocated.
    let scope = context.principal.tenant.clone();
    let mut subst = Substitutions::default();
    if let Some(scope) = &scope {
        request.scope_in(scope, &image, &mut subst);
    }
    let acks = request.acks;
    // Transactional records need a transactional id and WRITE on it,
    // checked once per request (Kafka's check; every partition gets the
    // error).
    let has_txn_records = request
        .topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .filter_map(|p| p.records.as_ref())
        .any(|r| BatchHeader::new(r).is_some_and(|h| h.is_transactional()));
    let txn_ok = !has_txn_records
        || request
            .transactional_id
            .as_ref()
            .filter(|id| !id.is_empty())
            .is_some_and(|id| {
                context.authorize(
                    &image,
                    operation::WRITE,
                    resource_type::TRANSACTIONAL_ID,
                    id.as_str(),
                )
            });
    let mut appends = Vec::new();
    // Per append: the partition and its min.insync.replicas, for acks=all.
    let mut waits = Vec::new();
    let mut slots: Vec<Vec<(i32, Slot)>> = Vec::with_capacity(request.topic_data.len());
    for topic in &request.topic_data {
        let record = resolve_topic(&image, version >= 13, topic.name.as_str(), &topic.topic_id);
        let topic_config = record.map(|r| TopicConfig::resolve(&r.configs, &image.broker_config));
        // WRITE on the topic, once per topic of the request.
        let authorized = match record {
            Ok(record) => context.may_topic(&image, operation::WRITE, &record.name),
            Err(_) => {
                version >= 13 || context.may_topic(&image, operation::WRITE, topic.name.as_str())
            }
        };
        let mut topic_slots = Vec::with_capacity(topic.partition_data.len());
        for data in &topic.partition_data {
            let slot = if !txn_ok {
                Slot::Failed(Error::api(
                    ResponseError::TransactionalIdAuthorizationFailed,
                ))
            } else if !authorized {
                Slot::Failed(Error::api(ResponseError::TopicAuthorizationFailed))
            } else if !matches!(acks, -1..=1) {
                Slot::Failed(Error::api(ResponseError::InvalidRequiredAcks))
            } else {
                match (record, &topic_config) {
                    // Only the coordinators write Kafka's internal topics.
                    (Ok(record), Ok(_))
                        if record.name == OFFSETS_TOPIC
                            || record.name == TRANSACTION_STATE_TOPIC =>
                    {
                        Slot::Failed(Error::api_msg(
                            ResponseError::InvalidTopicException,
                            format!("cannot append to internal topic {}", record.name),
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
                            (Some(log), _) if !log.is_leader() => {
                                Slot::Failed(Error::api(ResponseError::NotLeaderOrFollower))
                            }
                            (Some(log), Some(_))
                                if acks == -1
                                    && (log.isr_len() as i32) < config.min_insync_replicas =>
                            {
                                Slot::Failed(Error::api_msg(
                                    ResponseError::NotEnoughReplicas,
                                    format!(
                                        "the ISR has {} replicas, min.insync.replicas is {}",
                                        log.isr_len(),
                                        config.min_insync_replicas
                                    ),
                                ))
                            }
                            (Some(log), Some(records)) => {
                                waits.push((log.clone(), config.min_insync_replicas));
                                appends.push(AppendRequest {
                                    partition: log,
                                    records: records.clone(),
                                    max_message_bytes: config.max_message_bytes,
                                    origin: AppendOrigin::Client,
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
    // Kafka counts the produce quota in the request's bytes: here, the
    // record batches' bytes, whatever becomes of them. Kafka records them
    // once the append is done, but it handles one request per connection
    // at a time; here requests are pipelined (librdkafka keeps up to a
    // million in flight), so they are recorded now, as the request's place
    // in the log is fixed: the mute then holds back the very next frame.
    let produced_bytes: usize = request
        .topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .filter_map(|p| p.records.as_ref().map(|r| r.len()))
        .sum();
    crate::metrics::TENANT_BYTES_IN_TOTAL
        .with_label_values(&[crate::tenant::quota::tenant_label(&context.principal)])
        .inc_by(produced_bytes as u64);
    let throttle_ms = crate::protocol::record_quota(
        broker,
        context,
        crate::tenant::quota::QuotaKey::ProducerByteRate,
        produced_bytes as f64,
    );
    let appended = broker.replicas.append_records(appends);
    let replicas = broker.replicas.clone();
    let timeout = std::time::Duration::from_millis(request.timeout_ms.max(0) as u64);
    Ok(Box::pin(async move {
        let mut results = appended.await;
        if acks == -1 {
            // acks=all: every in-sync replica must have each batch. The
            // waits run together; the request timeout bounds them all.
            let pending = results
                .iter()
                .zip(&waits)
                .map(|(result, (log, min_insync))| {
                    let replicas = replicas.clone();
                    let end = result.as_ref().ok().map(|r| r.last_offset + 1);
                    let log = log.clone();
                    let min_insync = *min_insync;
                    async move {
                        match end {
                            Some(end) => {
                                replicas
                                    .wait_replicated(&log, end, min_insync, timeout)
                                    .await
                            }
                            None => Ok(()),
                        }
                    }
                });
            let outcomes = futures_util::future::join_all(pending).await;
            for (result, outcome) in results.iter_mut().zip(outcomes) {
                if let (Ok(_), Err(e)) = (&*result, outcome) {
                    *result = Err(e);
                }
            }
        }
        let mut results = results.into_iter().map(Some).collect::<Vec<_>>();
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
        let mut response = ProduceResponse::default()
            .with_responses(responses)
            .with_throttle_time_ms(throttle_ms.min(i32::MAX as u64) as i32);
        if let Some(scope) = &scope {
            response.scope_out(scope, &subst);
        }
        encode(&response, version)
    }))
}
