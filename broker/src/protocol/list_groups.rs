//! ListGroups: the groups this node coordinates, filtered by state (v4+)
//! and type (v5+; every group here is a "classic" group).

use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{ApiKey, GroupId, ListGroupsRequest, ListGroupsResponse};

use crate::broker::Broker;
use crate::coordinator::group::GroupState;
use crate::protocol::{count_error, str_bytes, RequestContext};
use crate::tenant::acl::operation;

const CLASSIC: &str = "classic";

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    let version = context.api_version;
    let listed = match broker.groups.list_groups() {
        Ok(listed) => listed,
        Err(e) => {
            count_error(ApiKey::ListGroups, e.code());
            return ListGroupsResponse::default().with_error_code(e.code());
        }
    };
    let image = broker.image();
    let states: Vec<Option<GroupState>> = request
        .states_filter
        .iter()
        .map(|s| GroupState::parse(s.as_str()))
        .collect();
    let type_ok = request.types_filter.is_empty()
        || request
            .types_filter
            .iter()
            .any(|t| t.as_str().eq_ignore_ascii_case(CLASSIC));
    let mut groups: Vec<ListedGroup> = listed
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&Some(g.state)))
        .filter(|_| type_ok)
        // Only the groups the principal may DESCRIBE.
        .filter(|g| context.may_group(&image, operation::DESCRIBE, &g.group_id))
        .map(|g| {
            let entry = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&g.group_id)))
                .with_protocol_type(str_bytes(&g.protocol_type));
            let entry = if version >= 4 {
                entry.with_group_state(str_bytes(g.state.name()))
            } else {
                entry
            };
            if version >= 5 {
                entry.with_group_type(str_bytes(CLASSIC))
            } else {
                entry
            }
        })
        .collect();
    groups.sort_by(|a, b| a.group_id.as_str().cmp(b.group_id.as_str()));
    ListGroupsResponse::default().with_groups(groups)
}
