//! SyncGroup: the leader hands in the assignment; every member waits for
//! its share.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, SyncGroupRequest, SyncGroupResponse};

use crate::broker::Broker;
use crate::protocol::{count_error, str_bytes, RequestContext};
use crate::tenant::acl::operation;

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: SyncGroupRequest,
) -> SyncGroupResponse {
    let group_id = request.group_id.as_str();
    let authorized = context.may_group(&broker.image(), operation::READ, group_id);
    let result = if group_id.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else if !authorized {
        Err(ResponseError::GroupAuthorizationFailed)
    } else {
        let assignments = request
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect();
        broker
            .groups
            .sync_group(
                group_id,
                request.generation_id,
                request.member_id.as_str(),
                request.group_instance_id.as_deref(),
                request.protocol_type.as_deref(),
                request.protocol_name.as_deref(),
                assignments,
            )
            .await
    };
    let response = SyncGroupResponse::default();
    let response = if context.api_version >= 5 && authorized {
        // v5 echoes the group's protocol so the client can check it.
        let description = broker.groups.protocol_of(group_id);
        response
            .with_protocol_type(description.0.as_deref().map(str_bytes))
            .with_protocol_name(description.1.as_deref().map(str_bytes))
    } else {
        response
    };
    match result {
        Ok(assignment) => response.with_assignment(assignment),
        Err(e) => {
            count_error(ApiKey::SyncGroup, e.code());
            response
                .with_error_code(e.code())
                .with_assignment(Bytes::new())
                .with_protocol_type(None)
                .with_protocol_name(None)
        }
    }
}
