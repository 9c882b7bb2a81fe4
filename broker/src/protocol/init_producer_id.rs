//! InitProducerId: a fresh producer id at epoch 0 for an idempotent
//! producer that may write somewhere (KIP-679); for a transactional id, the
//! transaction coordinator's id and next epoch (fencing the id's previous
//! producer), given WRITE on the transactional id.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use tracing::{debug, warn};

use crate::broker::Broker;
use crate::protocol::{count_error, RequestContext};
use crate::tenant::acl;

/// The id and epoch fields' "none" values.
const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;

fn failed(code: i16) -> InitProducerIdResponse {
    count_error(ApiKey::InitProducerId, code);
    InitProducerIdResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(NO_PRODUCER_ID))
        .with_producer_epoch(NO_PRODUCER_EPOCH)
}

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    if let Some(transactional_id) = &request.transactional_id {
        if transactional_id.is_empty() {
            // As Kafka's transaction coordinator answers an empty id.
            return failed(ResponseError::InvalidRequest.code());
        }
        let id = transactional_id.as_str();
        if !context.authorize(
            &broker.image(),
            acl::operation::WRITE,
            acl::resource_type::TRANSACTIONAL_ID,
            id,
        ) {
            debug!(transactional_id = %id, principal = %context.principal.name,
                "refusing a transactional id: no WRITE on it");
            return failed(ResponseError::TransactionalIdAuthorizationFailed.code());
        }
        return match broker
            .txns
            .init_producer_id(
                id,
                request.transaction_timeout_ms,
                request.producer_id.0,
                request.producer_epoch,
            )
            .await
        {
            Ok((producer_id, epoch)) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch),
            Err(e) => failed(e.code()),
        };
    }
    // KIP-679: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic.
    let image = broker.image();
    if !context.authorize(
        &image,
        acl::operation::IDEMPOTENT_WRITE,
        acl::resource_type::CLUSTER,
        acl::CLUSTER_NAME,
    ) && !context.may_write_some_topic(&image)
    {
        debug!(principal = %context.principal.name, "refusing a producer id: may write to no topic");
        return failed(ResponseError::ClusterAuthorizationFailed.code());
    }
    // KIP-360 (v3+): an existing id and epoch come together or not at all.
    let has_id = request.producer_id.0 != NO_PRODUCER_ID;
    let has_epoch = request.producer_epoch != NO_PRODUCER_EPOCH;
    if has_id != has_epoch {
        return failed(ResponseError::InvalidRequest.code());
    }
    // Without a transactional id Kafka hands out a new producer id at epoch
    // 0 even when the client sends its current one: the old id's sequences
    // are then simply never used again.
    match broker.producer_ids.generate_async().await {
        Ok(producer_id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(0),
        Err(e) => {
            warn!(error = %e, "allocating a producer id failed");
            failed(e.code())
        }
    }
}
