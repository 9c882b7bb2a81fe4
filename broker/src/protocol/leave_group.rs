//! LeaveGroup: one member (v0-2) or a batch of members (v3+, KIP-345).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{ApiKey, LeaveGroupRequest, LeaveGroupResponse};

use crate::broker::Broker;
use crate::protocol::{count_error, RequestContext};
use crate::tenant::acl::operation;

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let group_id = request.group_id.as_str();
    let batched = context.api_version >= 3;
    let members: Vec<(String, Option<String>)> = if batched {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let outcome = if group_id.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else if !context.may_group(&broker.image(), operation::READ, group_id) {
        Err(ResponseError::GroupAuthorizationFailed)
    } else {
        broker.groups.leave_group(group_id, members.clone()).await
    };
    let results = match outcome {
        Err(e) => {
            count_error(ApiKey::LeaveGroup, e.code());
            return LeaveGroupResponse::default().with_error_code(e.code());
        }
        Ok(results) => results,
    };
    if !batched {
        let code = results
            .first()
            .and_then(|r| r.err())
            .map_or(0, |e| e.code());
        count_error(ApiKey::LeaveGroup, code);
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let responses = request
        .members
        .iter()
        .zip(results)
        .map(|(m, r)| {
            let code = r.err().map_or(0, |e| e.code());
            count_error(ApiKey::LeaveGroup, code);
            MemberResponse::default()
                .with_member_id(m.member_id.clone())
                .with_group_instance_id(m.group_instance_id.clone())
                .with_error_code(code)
        })
        .collect();
    LeaveGroupResponse::default().with_members(responses)
}
