//! The transactional producer's APIs: AddPartitionsToTxn (v0-3, the
//! client's form; v4+ is KIP-890's broker-to-broker form), AddOffsetsToTxn,
//! EndTxn and TxnOffsetCommit. Each checks its ACLs here, as Kafka's
//! `KafkaApis` does, and hands the rest to the transaction or group
//! coordinator.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, ApiKey, EndTxnRequest, EndTxnResponse, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};

use crate::broker::Broker;
use crate::coordinator::group_coordinator::OFFSETS_TOPIC;
use crate::coordinator::internal_topic::TxnProducer;
use crate::protocol::offset_commit::{outcome_code, plan, PartitionOffset};
use crate::protocol::{count_error, RequestContext};
use crate::tenant::acl::{operation, resource_type};

/// WRITE on the transactional id, which every one of these APIs needs.
fn may_use_txn_id(broker: &Broker, context: &RequestContext, id: &str) -> bool {
    context.authorize(
        &broker.image(),
        operation::WRITE,
        resource_type::TRANSACTIONAL_ID,
        id,
    )
}

/// A partition of AddPartitionsToTxn and the outcome of its checks.
type PartitionCheck = (i32, Result<(), ResponseError>);

fn code_of(result: Result<(), ResponseError>) -> i16 {
    result.err().map_or(0, |e| e.code())
}

pub async fn handle_add_partitions(
    broker: Arc<Broker>,
    context: RequestContext,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let id = request.v3_and_below_transactional_id.as_str();
    let image = broker.image();
    let txn_ok = may_use_txn_id(&broker, &context, id);
    // Per partition, the check's outcome; any failure fails the request,
    // the others answering OPERATION_NOT_ATTEMPTED, as Kafka answers.
    let mut checked: Vec<(String, Vec<PartitionCheck>)> = Vec::new();
    for topic in &request.v3_and_below_topics {
        let name = topic.name.as_str();
        let record = image.topic(name);
        let topic_ok = context.may_topic(&image, operation::WRITE, name);
        let rows = topic
            .partitions
            .iter()
            .map(|&p| {
                let outcome = if !txn_ok {
                    Err(ResponseError::TransactionalIdAuthorizationFailed)
                } else if !topic_ok {
                    Err(ResponseError::TopicAuthorizationFailed)
                } else if !record.is_some_and(|r| (0..r.partitions).contains(&p)) {
                    Err(ResponseError::UnknownTopicOrPartition)
                } else {
                    Ok(())
                };
                (p, outcome)
            })
            .collect();
        checked.push((name.to_owned(), rows));
    }
    let failed = checked
        .iter()
        .flat_map(|(_, rows)| rows)
        .any(|(_, r)| r.is_err());
    let result = if failed {
        None
    } else {
        let partitions: Vec<(String, i32)> = checked
            .iter()
            .flat_map(|(name, rows)| rows.iter().map(move |(p, _)| (name.clone(), *p)))
            .collect();
        Some(
            broker
                .txns
                .add_partitions(
                    id,
                    request.v3_and_below_producer_id.0,
                    request.v3_and_below_producer_epoch,
                    &partitions,
                )
                .await,
        )
    };
    let topics = request
        .v3_and_below_topics
        .iter()
        .zip(checked)
        .map(|(topic, (_, rows))| {
            let partitions = rows
                .into_iter()
                .map(|(p, outcome)| {
                    let code = match (&result, outcome) {
                        (Some(r), _) => code_of(*r),
                        (None, Err(e)) => e.code(),
                        (None, Ok(())) => ResponseError::OperationNotAttempted.code(),
                    };
                    count_error(ApiKey::AddPartitionsToTxn, code);
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(p)
                        .with_partition_error_code(code)
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name.clone())
                .with_results_by_partition(partitions)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)
}

pub async fn handle_add_offsets(
    broker: Arc<Broker>,
    context: RequestContext,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let id = request.transactional_id.as_str();
    let group = request.group_id.as_str();
    let result = if !may_use_txn_id(&broker, &context, id) {
        Err(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !context.may_group(&broker.image(), operation::READ, group) {
        Err(ResponseError::GroupAuthorizationFailed)
    } else {
        let partition = broker.groups.partition_of(group);
        broker
            .txns
            .add_partitions(
                id,
                request.producer_id.0,
                request.producer_epoch,
                &[(OFFSETS_TOPIC.to_owned(), partition)],
            )
            .await
    };
    let code = code_of(result);
    count_error(ApiKey::AddOffsetsToTxn, code);
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

pub async fn handle_end(
    broker: Arc<Broker>,
    context: RequestContext,
    request: EndTxnRequest,
) -> EndTxnResponse {
    let id = request.transactional_id.as_str();
    let result = if !may_use_txn_id(&broker, &context, id) {
        Err(ResponseError::TransactionalIdAuthorizationFailed)
    } else {
        broker
            .txns
            .end_txn(
                id,
                request.producer_id.0,
                request.producer_epoch,
                request.committed,
            )
            .await
    };
    let code = code_of(result);
    count_error(ApiKey::EndTxn, code);
    EndTxnResponse::default()
        .with_error_code(code)
        .with_producer_id(request.producer_id)
        .with_producer_epoch(request.producer_epoch)
}

pub async fn handle_txn_offset_commit(
    broker: Arc<Broker>,
    context: RequestContext,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let group_id = request.group_id.as_str();
    let denied = (!may_use_txn_id(&broker, &context, request.transactional_id.as_str()))
        .then_some(ResponseError::TransactionalIdAuthorizationFailed);
    let (outcomes, commits) = plan(
        &broker,
        &context,
        group_id,
        denied,
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
            .commit_txn_offsets(
                group_id,
                TxnProducer {
                    producer_id: request.producer_id.0,
                    producer_epoch: request.producer_epoch,
                },
                request.generation_id,
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
                    let code = outcome_code(ApiKey::TxnOffsetCommit, outcome, &results);
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
