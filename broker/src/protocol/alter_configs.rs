//! AlterConfigs (the legacy API): replaces a topic's whole set of
//! overrides. Shared resource checks live here for IncrementalAlterConfigs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_request::AlterableConfig;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse, ApiKey};

use crate::broker::Broker;
use crate::cluster::metadata::validate_topic_name;
use crate::error::{Error, Result};
use crate::log::topic_config;
use crate::protocol::describe_configs::{check_broker_name, RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::tenant::acl::{operation, resource_type};
use kafka_protocol::protocol::StrBytes;

use crate::protocol::{count_error, str_bytes, RequestContext};

/// Applies a computed override set to a topic, or only checks it.
pub async fn apply_topic(
    broker: &Arc<Broker>,
    name: &str,
    compute: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>>,
    validate_only: bool,
) -> Result<()> {
    validate_topic_name(name)?;
    let current = broker
        .image()
        .topic(name)
        .map(|t| t.configs.clone())
        .ok_or_else(|| {
            Error::api_msg(
                ResponseError::UnknownTopicOrPartition,
                format!("Topic {name} does not exist"),
            )
        })?;
    let updated = compute(&current)?;
    for (key, value) in &updated {
        topic_config::validate(key, value)
            .map_err(|m| Error::api_msg(ResponseError::InvalidConfig, m))?;
    }
    if validate_only {
        return Ok(());
    }
    broker
        .update_topic(name.to_owned(), move |record| {
            record.configs = updated;
            Ok(())
        })
        .await
        .map(|_| ())
}

/// Changes the cluster-wide dynamic broker settings: `compute` maps the
/// current dynamic set to the new one. Only `DYNAMIC_SETTINGS` may be set;
/// anything else is refused as Kafka refuses a static config.
pub async fn apply_broker(
    broker: &Arc<Broker>,
    name: &str,
    compute: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>>,
    validate_only: bool,
) -> Result<()> {
    check_broker_name(broker, name)?;
    let updated = compute(&broker.image().dynamic_broker_configs)?;
    broker
        .metadata
        .set_dynamic_broker_configs(updated, validate_only)
        .await
}

/// Applies a computed config set to a topic or to the broker's dynamic
/// settings: the one place both alter APIs dispatch on the resource type.
pub async fn apply_resource(
    broker: &Arc<Broker>,
    resource_type: i8,
    name: &str,
    compute: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>>,
    validate_only: bool,
) -> Result<()> {
    match resource_type {
        RESOURCE_TOPIC => apply_topic(broker, name, compute, validate_only).await,
        RESOURCE_BROKER => apply_broker(broker, name, compute, validate_only).await,
        other => Err(Error::api_msg(
            ResponseError::InvalidRequest,
            format!("unsupported resource type {other}"),
        )),
    }
}

/// The legacy API's full config set; a null value is an invalid request.
fn non_null(configs: &[AlterableConfig]) -> Result<BTreeMap<String, String>> {
    configs
        .iter()
        .map(|c| {
            c.value
                .as_ref()
                .map(|v| (c.name.to_string(), v.to_string()))
                .ok_or_else(|| {
                    Error::api_msg(
                        ResponseError::InvalidRequest,
                        format!("Null value not supported for {}", c.name.as_str()),
                    )
                })
        })
        .collect()
}

/// Names that appear more than once in a request are each answered with
/// INVALID_REQUEST, as Kafka does.
pub fn duplicates<'a>(
    resources: impl Iterator<Item = (i8, &'a str)>,
) -> HashMap<(i8, String), usize> {
    let mut seen = HashMap::new();
    for (kind, name) in resources {
        *seen.entry((kind, name.to_owned())).or_default() += 1;
    }
    seen
}

/// The error code and message of one resource's outcome.
pub fn outcome_fields(outcome: Result<()>, api: ApiKey) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err(e) => {
            count_error(api, e.code());
            (e.code(), e.client_message().map(|m| str_bytes(&m)))
        }
    }
}

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
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
        let outcome = if seen[&(resource.resource_type, name.to_owned())] > 1 {
            Err(Error::api_msg(
                ResponseError::InvalidRequest,
                "Duplicate resource in request",
            ))
        } else if resource.resource_type == resource_type::TOPIC
            && !context.may_topic(&image, operation::ALTER_CONFIGS, name)
        {
            Err(Error::api(ResponseError::TopicAuthorizationFailed))
        } else {
            match non_null(&resource.configs) {
                Ok(wanted) => {
                    apply_resource(
                        &broker,
                        resource.resource_type,
                        name,
                        move |_| Ok(wanted),
                        request.validate_only,
                    )
                    .await
                }
                Err(e) => Err(e),
            }
        };
        let (code, message) = outcome_fields(outcome, ApiKey::AlterConfigs);
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}
