//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on a topic's
//! overrides (APPEND and SUBTRACT only on list configs, as in Kafka).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::protocol::alter_configs::{apply_resource, duplicates, outcome_fields};
use crate::protocol::RequestContext;
use crate::tenant::acl::{operation, resource_type};

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Config names whose values are comma lists.
const LIST_CONFIGS: &[&str] = &["cleanup.policy"];

/// Applies the operations to a topic's current overrides. Pure.
pub fn apply_ops(
    current: &BTreeMap<String, String>,
    ops: &[AlterableConfig],
) -> Result<BTreeMap<String, String>> {
    let mut next = current.clone();
    for op in ops {
        let name = op.name.to_string();
        let value = op.value.as_ref().map(|v| v.to_string());
        match op.config_operation {
            OP_SET => {
                let value = value.ok_or_else(|| {
                    Error::api_msg(
                        ResponseError::InvalidRequest,
                        format!("Null value not supported for {name}"),
                    )
                })?;
                let _ = next.insert(name, value);
            }
            OP_DELETE => {
                let _ = next.remove(&name);
            }
            OP_APPEND | OP_SUBTRACT => {
                if !LIST_CONFIGS.contains(&name.as_str()) {
                    return Err(Error::api_msg(
                        ResponseError::InvalidConfig,
                        format!("Config value append is not allowed for config key: {name}"),
                    ));
                }
                let default = crate::log::topic_config::find(&name)
                    .map(|d| d.fixed_default)
                    .unwrap_or("");
                let existing = next
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| default.to_owned());
                let mut items: Vec<String> = existing
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect();
                for item in value
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    if op.config_operation == OP_APPEND {
                        if !items.iter().any(|i| i == item) {
                            items.push(item.to_owned());
                        }
                    } else {
                        items.retain(|i| i != item);
                    }
                }
                let _ = next.insert(name, items.join(","));
            }
            other => {
                return Err(Error::api_msg(
                    ResponseError::InvalidRequest,
                    format!("unknown config operation {other}"),
                ))
            }
        }
    }
    Ok(next)
}

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let seen = duplicates(
        request
            .resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    let image = broker.image();
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        let name = resource.resource_name.as_str();
        let mut names: Vec<&str> = resource.configs.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        let repeated = names.windows(2).any(|w| w[0] == w[1]);
        let outcome = if seen[&(resource.resource_type, name.to_owned())] > 1 {
            Err(Error::api_msg(
                ResponseError::InvalidRequest,
                "Duplicate resource in request",
            ))
        } else if resource.resource_type == resource_type::TOPIC
            && !context.may_topic(&image, operation::ALTER_CONFIGS, name)
        {
            Err(Error::api(ResponseError::TopicAuthorizationFailed))
        } else if repeated {
            Err(Error::api_msg(
                ResponseError::InvalidRequest,
                "Error due to duplicate config keys",
            ))
        } else {
            let ops = resource.configs.clone();
            apply_resource(
                &broker,
                resource.resource_type,
                name,
                move |current| apply_ops(current, &ops),
                request.validate_only,
            )
            .await
        };
        let (code, message) = outcome_fields(outcome, ApiKey::IncrementalAlterConfigs);
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::str_bytes;

    fn op(name: &str, operation: i8, value: Option<&str>) -> AlterableConfig {
        AlterableConfig::default()
            .with_name(str_bytes(name))
            .with_config_operation(operation)
            .with_value(value.map(str_bytes))
    }

    #[test]
    fn set_delete_append_subtract() {
        let mut current = BTreeMap::new();
        let _ = current.insert("retention.ms".to_owned(), "5".to_owned());
        let next = apply_ops(
            &current,
            &[
                op("retention.ms", OP_DELETE, None),
                op("retention.bytes", OP_SET, Some("100")),
                op("cleanup.policy", OP_APPEND, Some("compact")),
            ],
        )
        .unwrap();
        assert_eq!(next.get("retention.ms"), None);
        assert_eq!(next["retention.bytes"], "100");
        assert_eq!(next["cleanup.policy"], "delete,compact");
        let next = apply_ops(&next, &[op("cleanup.policy", OP_SUBTRACT, Some("delete"))]).unwrap();
        assert_eq!(next["cleanup.policy"], "compact");
        assert_eq!(
            apply_ops(&next, &[op("retention.ms", OP_APPEND, Some("1"))])
                .unwrap_err()
                .code(),
            40
        );
        assert_eq!(
            apply_ops(&next, &[op("retention.ms", OP_SET, None)])
                .unwrap_err()
                .code(),
            42
        );
    }
}
