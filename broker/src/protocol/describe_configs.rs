//! DescribeConfigs for topic and broker resources, and the config listing
//! that CreateTopics reuses.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, DescribeConfigsResponse};

use crate::broker::Broker;
use crate::cluster::metadata::validate_topic_name;
use crate::cluster::metadata::MetadataImage;
use crate::config::{DYNAMIC_SETTINGS, SETTING_NAMES};
use crate::error::{Error, Result};
use crate::log::topic_config::{self, ConfigKind, TOPIC_CONFIGS};
use crate::protocol::{count_error, str_bytes, RequestContext};
use crate::tenant::acl::{operation, resource_type};

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// Kafka's ConfigSource values.
pub const SOURCE_TOPIC: i8 = 1;
pub const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// Kafka's ConfigType values.
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;

/// One config as DescribeConfigs and CreateTopics report it.
#[derive(Debug, Clone)]
pub struct ConfigEntry {
    pub name: String,
    pub value: String,
    pub source: i8,
    pub config_type: i8,
    pub read_only: bool,
    /// `(name, value, source)`, most specific first.
    pub synonyms: Vec<(String, String, i8)>,
}

/// Where a broker-level setting's value comes from.
fn broker_source(image: &MetadataImage, name: &str) -> i8 {
    if image.dynamic_broker_configs.contains_key(name) {
        SOURCE_DYNAMIC_DEFAULT_BROKER
    } else if image.broker_config.is_explicit(name) {
        SOURCE_STATIC_BROKER
    } else {
        SOURCE_DEFAULT
    }
}

/// Every topic config with its effective value and source.
pub fn topic_entries(
    overrides: &BTreeMap<String, String>,
    image: &MetadataImage,
) -> Vec<ConfigEntry> {
    let broker = &image.broker_config;
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let default = topic_config::default_value(def, broker);
            let default_source = def
                .broker_default
                .map_or(SOURCE_DEFAULT, |name| broker_source(image, name));
            let mut synonyms = Vec::new();
            if let Some(value) = overrides.get(def.name) {
                synonyms.push((def.name.to_owned(), value.clone(), SOURCE_TOPIC));
            }
            if let Some(broker_name) = def
                .broker_default
                .filter(|_| default_source != SOURCE_DEFAULT)
            {
                synonyms.push((broker_name.to_owned(), default.clone(), default_source));
            }
            let (value, source) = match overrides.get(def.name) {
                Some(value) => (value.clone(), SOURCE_TOPIC),
                None => (default, default_source),
            };
            ConfigEntry {
                name: def.name.to_owned(),
                value,
                source,
                config_type: match def.kind {
                    ConfigKind::Long { .. } => TYPE_LONG,
                    ConfigKind::Bool => TYPE_BOOLEAN,
                    ConfigKind::Choice(_) if def.name == "cleanup.policy" => TYPE_LIST,
                    ConfigKind::Choice(_) => TYPE_STRING,
                },
                read_only: false,
                synonyms,
            }
        })
        .collect()
}

/// Every broker setting. The dynamic ones (`DYNAMIC_SETTINGS`) can be
/// changed with IncrementalAlterConfigs; the rest are read-only here.
pub fn broker_entries(image: &MetadataImage) -> Vec<ConfigEntry> {
    SETTING_NAMES
        .iter()
        .filter_map(|name| {
            let value = image.broker_config.get(name)?;
            let source = broker_source(image, name);
            Some(ConfigEntry {
                name: (*name).to_owned(),
                synonyms: vec![((*name).to_owned(), value.clone(), source)],
                value,
                source,
                config_type: TYPE_STRING,
                read_only: !DYNAMIC_SETTINGS.contains(name),
            })
        })
        .collect()
}

/// Resolves a resource to its entries, or the error Kafka gives.
fn entries_for(broker: &Broker, resource_type: i8, name: &str) -> Result<Vec<ConfigEntry>> {
    match resource_type {
        RESOURCE_TOPIC => {
            validate_topic_name(name)?;
            let image = broker.image();
            let topic = image.topic(name).ok_or_else(|| {
                Error::api_msg(
                    ResponseError::UnknownTopicOrPartition,
                    format!("Topic {name} does not exist"),
                )
            })?;
            Ok(topic_entries(&topic.configs, &image))
        }
        RESOURCE_BROKER => {
            check_broker_name(broker, name)?;
            Ok(broker_entries(&broker.image()))
        }
        other => Err(Error::api_msg(
            ResponseError::InvalidRequest,
            format!("unsupported resource type {other}"),
        )),
    }
}

/// A broker resource names this node's id, or is empty (cluster default).
pub fn check_broker_name(broker: &Broker, name: &str) -> Result<()> {
    if name.is_empty() || name.parse::<i32>().ok() == Some(broker.node_id()) {
        Ok(())
    } else {
        Err(Error::api_msg(
            ResponseError::InvalidRequest,
            format!(
                "unexpected broker id, expected {} but received {name}",
                broker.node_id()
            ),
        ))
    }
}

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let image = broker.image();
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            // DESCRIBE_CONFIGS on a topic (tenants never get this far with
            // broker resources: the rewrite refuses them).
            let name = resource.resource_name.as_str();
            let described = if resource.resource_type == resource_type::TOPIC
                && !context.may_topic(&image, operation::DESCRIBE_CONFIGS, name)
            {
                Err(Error::api(ResponseError::TopicAuthorizationFailed))
            } else {
                entries_for(&broker, resource.resource_type, name)
            };
            match described {
                Ok(entries) => {
                    let configs = entries
                        .into_iter()
                        .filter(|e| {
                            // Null (or empty) asks for every config.
                            resource
                                .configuration_keys
                                .as_ref()
                                .filter(|keys| !keys.is_empty())
                                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name))
                        })
                        .map(|e| to_wire(e, request.include_synonyms, context.api_version))
                        .collect();
                    result.with_configs(configs)
                }
                Err(e) => {
                    count_error(ApiKey::DescribeConfigs, e.code());
                    result
                        .with_error_code(e.code())
                        .with_error_message(e.client_message().map(|m| str_bytes(&m)))
                }
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn to_wire(
    entry: ConfigEntry,
    include_synonyms: bool,
    version: i16,
) -> DescribeConfigsResourceResult {
    let synonyms = if include_synonyms {
        entry
            .synonyms
            .iter()
            .map(|(name, value, source)| {
                DescribeConfigsSynonym::default()
                    .with_name(str_bytes(name))
                    .with_value(Some(str_bytes(value)))
                    .with_source(*source)
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(&entry.name))
        .with_value(Some(str_bytes(&entry.value)))
        .with_read_only(entry.read_only)
        .with_config_source(entry.source)
        .with_synonyms(synonyms)
        .with_config_type(if version >= 3 { entry.config_type } else { 0 })
}
