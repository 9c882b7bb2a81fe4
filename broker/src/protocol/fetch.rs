//! Fetch: resolve partitions, one long-polling read through the replica
//! manager, then map the results back in request order.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, ProducerId};

use crate::broker::Broker;
use crate::error::Error;
use crate::protocol::{count_error, resolve_topic, throttle, RequestContext};
use crate::replication::fetch::{FetchData, FetchLimits, FetchSpec};
use crate::tenant::acl::operation;
use crate::tenant::quota::{tenant_label, QuotaKey};

/// Kafka's `fetch.max.bytes` default: the most one fetch response carries.
pub const FETCH_MAX_BYTES: usize = 57_671_680;

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: FetchRequest,
) -> FetchResponse {
    let version = context.api_version;
    let image = broker.image();
    let mut specs = Vec::new();
    // Per topic, per partition: an early error or an index into `specs`.
    let mut plan: Vec<Vec<(i32, Result<usize, Error>)>> = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let record = resolve_topic(&image, version >= 13, topic.topic.as_str(), &topic.topic_id);
        // READ on the topic, once per topic of the request.
        let authorized = match record {
            Ok(record) => context.may_topic(&image, operation::READ, &record.name),
            Err(_) => {
                version >= 13 || context.may_topic(&image, operation::READ, topic.topic.as_str())
            }
        };
        let entries = topic
            .partitions
            .iter()
            .map(|p| {
                let slot = match record.map(|r| broker.replicas.logs().get(r.id, p.partition)) {
                    _ if !authorized => Err(Error::api(ResponseError::TopicAuthorizationFailed)),
                    Err(unknown) => Err(Error::api(unknown)),
                    Ok(None) => Err(Error::api(ResponseError::UnknownTopicOrPartition)),
                    Ok(Some(log)) => {
                        specs.push(FetchSpec {
                            log,
                            fetch_offset: p.fetch_offset,
                            partition_max_bytes: p.partition_max_bytes.max(0) as usize,
                            current_leader_epoch: p.current_leader_epoch,
                        });
                        Ok(specs.len() - 1)
                    }
                };
                (p.partition, slot)
            })
            .collect();
        plan.push(entries);
    }
    let limits = FetchLimits {
        max_wait: Duration::from_millis(request.max_wait_ms.max(0) as u64),
        min_bytes: request.min_bytes.max(0) as usize,
        max_bytes: (request.max_bytes.max(0) as usize).min(FETCH_MAX_BYTES),
        read_committed: request.isolation_level == 1,
    };
    let results = match broker.replicas.fetch(specs, limits).await {
        Ok(data) => data,
        Err(e) => {
            count_error(ApiKey::Fetch, e.code());
            return FetchResponse::default().with_error_code(e.code());
        }
    };
    let mut results: Vec<Option<FetchData>> = results.into_iter().map(Some).collect();
    let read_committed = request.isolation_level == 1;
    let responses: Vec<FetchableTopicResponse> = request
        .topics
        .iter()
        .zip(plan)
        .map(|(topic, entries)| {
            let partitions = entries
                .into_iter()
                .map(|(index, slot)| {
                    let data = slot.and_then(|i| {
                        results[i]
                            .take()
                            .ok_or_else(|| Error::Internal("fetch result taken twice".into()))
                    });
                    partition_data(index, data, read_committed)
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions)
        })
        .collect();
    // Kafka records the fetch quota before answering; a client over it
    // gets an empty answer with the throttle time (the bytes it would
    // have had are taken back) and its connection is muted.
    let fetched_bytes: usize = responses
        .iter()
        .flat_map(|t: &FetchableTopicResponse| &t.partitions)
        .filter_map(|p| p.records.as_ref().map(|r| r.len()))
        .sum();
    let current = broker.image();
    let quotas = &current.client_quotas;
    let throttle_ms = broker.quotas.record(
        quotas,
        QuotaKey::ConsumerByteRate,
        &context.principal,
        &context.client_id,
        fetched_bytes as f64,
    );
    if throttle_ms > 0 {
        broker.quotas.unrecord(
            quotas,
            QuotaKey::ConsumerByteRate,
            &context.principal,
            &context.client_id,
            fetched_bytes as f64,
        );
        throttle(&context, QuotaKey::ConsumerByteRate, throttle_ms);
        return FetchResponse::default()
            .with_throttle_time_ms(throttle_ms.min(i32::MAX as u64) as i32);
    }
    crate::metrics::TENANT_BYTES_OUT_TOTAL
        .with_label_values(&[tenant_label(&context.principal)])
        .inc_by(fetched_bytes as u64);
    FetchResponse::default().with_responses(responses)
}

fn partition_data(
    index: i32,
    data: Result<FetchData, Error>,
    read_committed: bool,
) -> PartitionData {
    let base = PartitionData::default().with_partition_index(index);
    let failed = |e: Error| {
        count_error(ApiKey::Fetch, e.code());
        PartitionData::default()
            .with_partition_index(index)
            .with_error_code(e.code())
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1)
            .with_records(Some(Bytes::new()))
    };
    match data {
        Err(e) => failed(e),
        Ok(data) => {
            let aborted = read_committed.then(|| {
                data.aborted
                    .iter()
                    .map(|a| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(a.producer_id))
                            .with_first_offset(a.first_offset)
                    })
                    .collect()
            });
            let with_offsets = base
                .with_high_watermark(data.high_watermark)
                .with_last_stable_offset(data.last_stable_offset)
                .with_log_start_offset(data.log_start_offset)
                .with_aborted_transactions(aborted);
            match data.result {
                Ok(records) => with_offsets.with_records(Some(records)),
                Err(e) => {
                    count_error(ApiKey::Fetch, e.code());
                    with_offsets
                        .with_error_code(e.code())
                        .with_records(Some(Bytes::new()))
                }
            }
        }
    }
}
