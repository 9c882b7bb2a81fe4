//! Heartbeat: keeps a member's session alive and tells it of rebalances.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, HeartbeatRequest, HeartbeatResponse};

use crate::broker::Broker;
use crate::protocol::{count_error, RequestContext};
use crate::tenant::acl::operation;

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: HeartbeatRequest,
) -> HeartbeatResponse {
    let group_id = request.group_id.as_str();
    let result = if group_id.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else if !context.may_group(&broker.image(), operation::READ, group_id) {
        Err(ResponseError::GroupAuthorizationFailed)
    } else {
        broker
            .groups
            .heartbeat(
                group_id,
                request.generation_id,
                request.member_id.as_str(),
                request.group_instance_id.as_deref(),
            )
            .await
    };
    let code = result.err().map_or(0, |e| e.code());
    count_error(ApiKey::Heartbeat, code);
    HeartbeatResponse::default().with_error_code(code)
}
