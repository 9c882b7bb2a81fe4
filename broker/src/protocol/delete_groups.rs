//! DeleteGroups: deletes empty groups and their committed offsets.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{ApiKey, DeleteGroupsRequest, DeleteGroupsResponse};

use crate::broker::Broker;
use crate::protocol::{count_error, RequestContext};
use crate::tenant::acl::operation;

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let image = broker.image();
    let mut results = Vec::new();
    for group_id in &request.groups_names {
        let outcome = if group_id.is_empty() {
            Err(ResponseError::InvalidGroupId)
        } else if !context.may_group(&image, operation::DELETE, group_id.as_str()) {
            Err(ResponseError::GroupAuthorizationFailed)
        } else {
            broker.groups.delete_group(group_id.as_str()).await
        };
        let code = outcome.err().map_or(0, |e| e.code());
        count_error(ApiKey::DeleteGroups, code);
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id.clone())
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
