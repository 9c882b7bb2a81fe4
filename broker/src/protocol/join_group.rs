//! JoinGroup: relays to the group coordinator; the answer may wait for the
//! rest of the group (the join phase of a rebalance).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{ApiKey, JoinGroupRequest, JoinGroupResponse};

use crate::broker::Broker;
use crate::coordinator::group::{JoinParams, JoinResult, Protocol};
use crate::protocol::{count_error, str_bytes, RequestContext};
use crate::tenant::acl::operation;

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: JoinGroupRequest,
) -> JoinGroupResponse {
    let version = context.api_version;
    let group_id = request.group_id.as_str();
    let result = if group_id.is_empty() {
        JoinResult::error(ResponseError::InvalidGroupId, request.member_id.as_str())
    } else if !context.may_group(&broker.image(), operation::READ, group_id) {
        JoinResult::error(
            ResponseError::GroupAuthorizationFailed,
            request.member_id.as_str(),
        )
    } else {
        let params = JoinParams {
            member_id: request.member_id.to_string(),
            group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
            client_id: context.client_id.clone(),
            client_host: format!("/{}", context.peer.ip()),
            session_timeout_ms: request.session_timeout_ms,
            // v0 has no rebalance timeout: Kafka uses the session timeout.
            rebalance_timeout_ms: if version == 0 {
                request.session_timeout_ms
            } else {
                request.rebalance_timeout_ms
            },
            protocol_type: request.protocol_type.to_string(),
            protocols: request
                .protocols
                .iter()
                .map(|p| Protocol {
                    name: p.name.to_string(),
                    metadata: p.metadata.clone(),
                })
                .collect(),
            require_known_member_id: version >= 4,
        };
        broker.groups.join_group(group_id, params).await
    };
    let code = result.error.map_or(0, |e| e.code());
    count_error(ApiKey::JoinGroup, code);
    // Fields a version cannot carry must stay at their defaults.
    let members = result
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(&m.member_id))
                .with_group_instance_id(if version >= 5 {
                    m.group_instance_id.as_deref().map(str_bytes)
                } else {
                    None
                })
                .with_metadata(m.metadata)
        })
        .collect();
    let protocol_name = match result.protocol_name {
        Some(name) => Some(str_bytes(&name)),
        None if version < 7 => Some(str_bytes("")),
        None => None,
    };
    JoinGroupResponse::default()
        .with_error_code(code)
        .with_generation_id(result.generation_id)
        .with_protocol_type(if version >= 7 {
            result.protocol_type.as_deref().map(str_bytes)
        } else {
            None
        })
        .with_protocol_name(protocol_name)
        .with_leader(str_bytes(&result.leader_id))
        .with_skip_assignment(version >= 9 && result.skip_assignment)
        .with_member_id(str_bytes(&result.member_id))
        .with_members(members)
}
