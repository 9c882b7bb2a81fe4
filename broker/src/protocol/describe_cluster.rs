//! DescribeCluster: the registered, unfenced brokers and the active
//! controller.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use crate::broker::Broker;
use crate::protocol::metadata::CLUSTER_OPERATIONS;
use crate::protocol::{str_bytes, RequestContext};

/// Kafka's endpoint types: 1 = brokers, 2 = controllers.
const ENDPOINT_BROKERS: i8 = 1;

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let node = BrokerId(broker.node_id());
    let response = DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(str_bytes(&broker.image().cluster_id))
        .with_controller_id(BrokerId(broker.controller().leader().unwrap_or(node.0)))
        .with_cluster_authorized_operations(if request.include_cluster_authorized_operations {
            CLUSTER_OPERATIONS
        } else {
            i32::MIN
        });
    if context.api_version >= 1 && request.endpoint_type != ENDPOINT_BROKERS {
        return response
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(str_bytes("only the brokers endpoint type is served")));
    }
    let brokers = broker
        .image()
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| {
            let (host, port) = b.address_for(&context.listener);
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(str_bytes(host))
                .with_port(port)
        })
        .collect();
    response.with_brokers(brokers)
}
