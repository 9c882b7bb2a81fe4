//! FindCoordinator: the node that coordinates a group or a transactional
//! id: the leader of its `__consumer_offsets` or `__transaction_state`
//! partition (this node answers for itself once that partition is loaded).
//! v4+ batches keys.

use std::sync::Arc;

use futures_util::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use crate::broker::Broker;
use crate::protocol::{count_error, str_bytes, RequestContext};
use crate::tenant::acl::{operation, resource_type};

/// `key_type` of a group.
const GROUP_KEY: i8 = 0;
/// `key_type` of a transactional id.
const TRANSACTION_KEY: i8 = 1;

/// The coordinator's node id, host and port.
async fn find(
    broker: &Arc<Broker>,
    key: &str,
    key_type: i8,
    context: &RequestContext,
) -> Result<(i32, String, i32), ResponseError> {
    let listener: &str = &context.listener;
    let image = broker.image();
    let (found, other) = match key_type {
        GROUP_KEY => {
            if !context.may_group(&image, operation::DESCRIBE, key) {
                return Err(ResponseError::GroupAuthorizationFailed);
            }
            (
                broker.groups.find_coordinator(key).await,
                broker.groups.coordinator_node(key),
            )
        }
        TRANSACTION_KEY => {
            if !context.authorize(
                &image,
                operation::DESCRIBE,
                resource_type::TRANSACTIONAL_ID,
                key,
            ) {
                return Err(ResponseError::TransactionalIdAuthorizationFailed);
            }
            (
                broker.txns.find_coordinator(key).await,
                broker.txns.coordinator_node(key),
            )
        }
        _ => return Err(ResponseError::InvalidRequest),
    };
    match found {
        Ok(()) => {
            let (host, port) = broker.advertised_address(listener);
            Ok((broker.node_id(), host, port))
        }
        Err(ResponseError::NotCoordinator) => {
            let image = broker.image();
            other
                .and_then(|id| image.brokers.get(&id))
                .filter(|b| !b.fenced)
                .map(|b| {
                    let (host, port) = b.address_for(listener);
                    (b.id, host.to_owned(), port)
                })
                .ok_or(ResponseError::CoordinatorNotAvailable)
        }
        Err(e) => Err(e),
    }
}

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    if context.api_version >= 4 {
        let lookups = request.coordinator_keys.iter().map(|key| {
            let broker = broker.clone();
            let context = &context;
            async move {
                let found = find(&broker, key.as_str(), request.key_type, context).await;
                let entry = Coordinator::default().with_key(key.clone());
                match found {
                    Ok((node, host, port)) => entry
                        .with_node_id(BrokerId(node))
                        .with_host(str_bytes(&host))
                        .with_port(port),
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
    match find(&broker, request.key.as_str(), request.key_type, &context).await {
        Ok((node, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(node))
            .with_host(str_bytes(&host))
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
