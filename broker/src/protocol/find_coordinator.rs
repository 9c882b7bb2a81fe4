//! FindCoordinator: the node that coordinates a group (this one, once the
//! group's `__consumer_offsets` partition is loaded). v4+ batches keys.

use std::sync::Arc;

use futures_util::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use crate::broker::Broker;
use crate::protocol::{count_error, str_bytes, RequestContext};

/// `key_type` of a group; 1 is a transactional id.
const GROUP_KEY: i8 = 0;

async fn find(broker: &Arc<Broker>, key: &str, key_type: i8) -> Result<(), ResponseError> {
    match key_type {
        GROUP_KEY => broker.groups.find_coordinator(key).await,
        // Transactions are not implemented. librdkafka retries
        // COORDINATOR_NOT_AVAILABLE forever but treats this code as fatal,
        // so a transactional client fails at once with a clear error (the
        // same answer InitProducerId gives a transactional id).
        1 => Err(ResponseError::TransactionalIdAuthorizationFailed),
        _ => Err(ResponseError::InvalidRequest),
    }
}

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let node = BrokerId(broker.node_id());
    let host = str_bytes(&broker.advertised_host);
    let port = broker.advertised_port;
    if context.api_version >= 4 {
        let lookups = request.coordinator_keys.iter().map(|key| {
            let broker = broker.clone();
            let host = host.clone();
            async move {
                let found = find(&broker, key.as_str(), request.key_type).await;
                let entry = Coordinator::default().with_key(key.clone());
                match found {
                    Ok(()) => entry.with_node_id(node).with_host(host).with_port(port),
                    Err(e) => {
                        count_error(ApiKey::FindCoordinator, e.code());
                        entry
                            .with_node_id(BrokerId(-1))
                            .with_port(-1)
                            .with_error_code(e.code())
                    }
                }
            }
        });
        return FindCoordinatorResponse::default().with_coordinators(join_all(lookups).await);
    }
    match find(&broker, request.key.as_str(), request.key_type).await {
        Ok(()) => FindCoordinatorResponse::default()
            .with_node_id(node)
            .with_host(host)
            .with_port(port),
        Err(e) => {
            count_error(ApiKey::FindCoordinator, e.code());
            FindCoordinatorResponse::default()
                .with_error_code(e.code())
                .with_node_id(BrokerId(-1))
                .with_port(-1)
        }
    }
}
