//! DescribeGroups: state, protocol and members of each group. A group that
//! does not exist is "Dead" (v0-5) or GROUP_ID_NOT_FOUND (v6+, KIP-1043).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{ApiKey, DescribeGroupsRequest, DescribeGroupsResponse};

use crate::broker::Broker;
use crate::protocol::{count_error, str_bytes, RequestContext};
use crate::tenant::acl::operation;

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let version = context.api_version;
    let image = broker.image();
    let mut groups = Vec::new();
    for group_id in &request.groups {
        let entry = DescribedGroup::default().with_group_id(group_id.clone());
        let described = if group_id.is_empty() {
            Err(ResponseError::InvalidGroupId)
        } else if !context.may_group(&image, operation::DESCRIBE, group_id.as_str()) {
            Err(ResponseError::GroupAuthorizationFailed)
        } else {
            broker.groups.describe_group(group_id.as_str()).await
        };
        groups.push(match described {
            Ok(Some(d)) => entry
                .with_group_state(str_bytes(d.state.name()))
                .with_protocol_type(str_bytes(&d.protocol_type))
                .with_protocol_data(str_bytes(&d.protocol))
                .with_members(
                    d.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(str_bytes(&m.member_id))
                                .with_group_instance_id(if version >= 4 {
                                    m.group_instance_id.as_deref().map(str_bytes)
                                } else {
                                    None
                                })
                                .with_client_id(str_bytes(&m.client_id))
                                .with_client_host(str_bytes(&m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                ),
            Ok(None) if version >= 6 => {
                count_error(
                    ApiKey::DescribeGroups,
                    ResponseError::GroupIdNotFound.code(),
                );
                entry
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(str_bytes(&format!(
                        "group {} not found",
                        group_id.as_str()
                    ))))
                    .with_group_state(str_bytes("Dead"))
            }
            Ok(None) => entry.with_group_state(str_bytes("Dead")),
            Err(e) => {
                count_error(ApiKey::DescribeGroups, e.code());
                entry.with_error_code(e.code())
            }
        });
    }
    DescribeGroupsResponse::default().with_groups(groups)
}
