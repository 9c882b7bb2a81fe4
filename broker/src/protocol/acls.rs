//! CreateAcls, DescribeAcls and DeleteAcls: super users manage the ACLs
//! (resource names are internal names, as super users see them). Anyone
//! else gets CLUSTER_AUTHORIZATION_FAILED, as Kafka answers without ALTER or
//! DESCRIBE on the cluster. Invalid bindings and filters get
//! INVALID_REQUEST, as in Kafka.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::protocol::{count_error, str_bytes, RequestContext};
use crate::tenant::acl::{AclBinding, AclFilter};

const NOT_AUTHORIZED: &str = "Cluster authorization failed.";

fn opt_string(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

pub async fn handle_create(
    broker: Arc<Broker>,
    context: RequestContext,
    request: CreateAclsRequest,
) -> CreateAclsResponse {
    let result = |code: i16, message: Option<String>| {
        count_error(context.api_key, code);
        AclCreationResult::default()
            .with_error_code(code)
            .with_error_message(message.as_deref().map(str_bytes))
    };
    if !context.principal.super_user {
        return CreateAclsResponse::default().with_results(
            request
                .creations
                .iter()
                .map(|_| {
                    result(
                        ResponseError::ClusterAuthorizationFailed.code(),
                        Some(NOT_AUTHORIZED.to_owned()),
                    )
                })
                .collect(),
        );
    }
    let mut outcomes: Vec<(i16, Option<String>)> = Vec::with_capacity(request.creations.len());
    let mut owners = Vec::new();
    let mut bindings = Vec::new();
    for (i, creation) in request.creations.iter().enumerate() {
        let binding = AclBinding {
            resource_type: creation.resource_type,
            resource_name: creation.resource_name.to_string(),
            pattern_type: creation.resource_pattern_type,
            principal: creation.principal.to_string(),
            host: creation.host.to_string(),
            operation: creation.operation,
            permission: creation.permission_type,
        };
        match binding.invalid_reason() {
            Some(reason) => outcomes.push((ResponseError::InvalidRequest.code(), Some(reason))),
            None => {
                outcomes.push((0, None));
                owners.push(i);
                bindings.push(binding);
            }
        }
    }
    if !bindings.is_empty() {
        match broker.metadata.create_acls(bindings).await {
            Ok(codes) => {
                for (owner, code) in owners.iter().zip(codes) {
                    outcomes[*owner].0 = code;
                }
            }
            Err(e) => {
                for owner in owners {
                    outcomes[owner] = (e.code(), Some(e.to_string()));
                }
            }
        }
    }
    CreateAclsResponse::default().with_results(
        outcomes
            .into_iter()
            .map(|(code, message)| result(code, message))
            .collect(),
    )
}

pub async fn handle_describe(
    broker: Arc<Broker>,
    context: RequestContext,
    request: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let failed = |error: ResponseError, message: String| {
        count_error(context.api_key, error.code());
        DescribeAclsResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(&message)))
    };
    if !context.principal.super_user {
        return failed(
            ResponseError::ClusterAuthorizationFailed,
            NOT_AUTHORIZED.to_owned(),
        );
    }
    let filter = AclFilter {
        resource_type: request.resource_type_filter,
        resource_name: opt_string(&request.resource_name_filter),
        pattern_type: request.pattern_type_filter,
        principal: opt_string(&request.principal_filter),
        host: opt_string(&request.host_filter),
        operation: request.operation,
        permission: request.permission_type,
    };
    if let Some(reason) = filter.invalid_reason() {
        return failed(ResponseError::InvalidRequest, reason);
    }
    let image = broker.image();
    // By resource pattern, in the image's order.
    let mut resources: BTreeMap<(i8, &str, i8), Vec<AclDescription>> = BTreeMap::new();
    for binding in image.acls.iter().filter(|b| filter.matches(b)) {
        resources
            .entry((
                binding.resource_type,
                binding.resource_name.as_str(),
                binding.pattern_type,
            ))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str_bytes(&binding.principal))
                    .with_host(str_bytes(&binding.host))
                    .with_operation(binding.operation)
                    .with_permission_type(binding.permission),
            );
    }
    DescribeAclsResponse::default().with_resources(
        resources
            .into_iter()
            .map(|((kind, name, pattern), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(kind)
                    .with_resource_name(str_bytes(name))
                    .with_pattern_type(pattern)
                    .with_acls(acls)
            })
            .collect(),
    )
}

pub async fn handle_delete(
    broker: Arc<Broker>,
    context: RequestContext,
    request: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let failed = |error: ResponseError, message: String| {
        count_error(context.api_key, error.code());
        DeleteAclsFilterResult::default()
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(&message)))
    };
    if !context.principal.super_user {
        return DeleteAclsResponse::default().with_filter_results(
            request
                .filters
                .iter()
                .map(|_| {
                    failed(
                        ResponseError::ClusterAuthorizationFailed,
                        NOT_AUTHORIZED.to_owned(),
                    )
                })
                .collect(),
        );
    }
    let image = broker.image();
    // Per filter: its error, or the bindings it matches now.
    let plans: Vec<Result<Vec<AclBinding>, String>> = request
        .filters
        .iter()
        .map(|f| {
            let filter = AclFilter {
                resource_type: f.resource_type_filter,
                resource_name: opt_string(&f.resource_name_filter),
                pattern_type: f.pattern_type_filter,
                principal: opt_string(&f.principal_filter),
                host: opt_string(&f.host_filter),
                operation: f.operation,
                permission: f.permission_type,
            };
            match filter.invalid_reason() {
                Some(reason) => Err(reason),
                None => Ok(image
                    .acls
                    .iter()
                    .filter(|b| filter.matches(b))
                    .cloned()
                    .collect()),
            }
        })
        .collect();
    // Each binding once, even when several filters match it.
    let mut unique: Vec<AclBinding> = plans
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .flatten()
        .cloned()
        .collect();
    unique.sort();
    unique.dedup();
    let outcome: Result<BTreeMap<AclBinding, i16>, (i16, String)> = if unique.is_empty() {
        Ok(BTreeMap::new())
    } else {
        match broker.metadata.delete_acls(unique.clone()).await {
            Ok(codes) => Ok(unique.into_iter().zip(codes).collect()),
            Err(e) => Err((e.code(), e.to_string())),
        }
    };
    let results = plans
        .into_iter()
        .map(|plan| match (plan, &outcome) {
            (Err(reason), _) => failed(ResponseError::InvalidRequest, reason),
            (Ok(bindings), Err((code, message))) if !bindings.is_empty() => {
                count_error(context.api_key, *code);
                DeleteAclsFilterResult::default()
                    .with_error_code(*code)
                    .with_error_message(Some(str_bytes(message)))
            }
            (Ok(bindings), outcome) => DeleteAclsFilterResult::default().with_matching_acls(
                bindings
                    .iter()
                    // Removed by this request (another may have won).
                    .filter(|b| {
                        outcome
                            .as_ref()
                            .ok()
                            .and_then(|codes| codes.get(*b))
                            .is_some_and(|code| *code == 0)
                    })
                    .map(|b| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type)
                            .with_resource_name(str_bytes(&b.resource_name))
                            .with_pattern_type(b.pattern_type)
                            .with_principal(str_bytes(&b.principal))
                            .with_host(str_bytes(&b.host))
                            .with_operation(b.operation)
                            .with_permission_type(b.permission)
                    })
                    .collect(),
            ),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
