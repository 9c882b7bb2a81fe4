//! Topic-level configs: the names Kafka uses, how each is validated, and how
//! a topic's overrides resolve against the broker defaults.

use std::collections::BTreeMap;

use crate::config::BrokerConfig;

/// One topic config Kafka defines and we accept.
#[derive(Debug)]
pub struct TopicConfigDef {
    pub name: &'static str,
    /// The broker setting that supplies its default, if any.
    pub broker_default: Option<&'static str>,
    /// The default when no broker setting supplies one.
    pub fixed_default: &'static str,
    pub kind: ConfigKind,
}

/// How a value is validated.
#[derive(Debug, Clone, Copy)]
pub enum ConfigKind {
    /// An integer with a minimum.
    Long {
        min: i64,
    },
    /// One of a fixed set of words (or a comma list of them).
    Choice(&'static [&'static str]),
    Bool,
}

/// Every topic config we accept, sorted by name. Values are stored and
/// reported; the ones the broker acts on are resolved by [`TopicConfig`].
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    def(
        "cleanup.policy",
        None,
        "delete",
        ConfigKind::Choice(&["delete", "compact"]),
    ),
    def(
        "compression.type",
        None,
        "producer",
        ConfigKind::Choice(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
    ),
    def(
        "delete.retention.ms",
        None,
        "86400000",
        ConfigKind::Long { min: 0 },
    ),
    def(
        "max.message.bytes",
        Some("message.max.bytes"),
        "1048588",
        ConfigKind::Long { min: 0 },
    ),
    def(
        "message.timestamp.type",
        None,
        "CreateTime",
        ConfigKind::Choice(&["CreateTime"]),
    ),
    def(
        "min.insync.replicas",
        Some("min.insync.replicas"),
        "1",
        ConfigKind::Long { min: 1 },
    ),
    def(
        "retention.bytes",
        Some("log.retention.bytes"),
        "-1",
        ConfigKind::Long { min: -1 },
    ),
    def(
        "retention.ms",
        Some("log.retention.ms"),
        "604800000",
        ConfigKind::Long { min: -1 },
    ),
    def(
        "segment.bytes",
        None,
        "1073741824",
        ConfigKind::Long { min: 14 },
    ),
    def("segment.ms", None, "604800000", ConfigKind::Long { min: 1 }),
    def(
        "unclean.leader.election.enable",
        None,
        "false",
        ConfigKind::Bool,
    ),
];

const fn def(
    name: &'static str,
    broker_default: Option<&'static str>,
    fixed_default: &'static str,
    kind: ConfigKind,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        broker_default,
        fixed_default,
        kind,
    }
}

/// Looks up a config definition by name.
pub fn find(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one name and value; the error text is what Kafka-style clients
/// show for INVALID_CONFIG.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let def = find(name).ok_or_else(|| format!("unknown topic config name: {name}"))?;
    match def.kind {
        ConfigKind::Long { min } => match value.trim().parse::<i64>() {
            Ok(v) if v >= min => Ok(()),
            Ok(v) => Err(format!(
                "invalid value {v} for configuration {name}: value must be at least {min}"
            )),
            Err(_) => Err(format!(
                "invalid value {value} for configuration {name}: not a number"
            )),
        },
        ConfigKind::Choice(words) => {
            let all_known = value.split(',').map(str::trim).all(|w| words.contains(&w));
            if all_known && !value.trim().is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "invalid value {value} for configuration {name}: must be one of {words:?}"
                ))
            }
        }
        ConfigKind::Bool => match value.trim() {
            "true" | "false" => Ok(()),
            _ => Err(format!(
                "invalid value {value} for configuration {name}: must be true or false"
            )),
        },
    }
}

/// A topic's effective config: its overrides over the broker defaults.
#[derive(Debug, Clone)]
pub struct TopicConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub max_message_bytes: i32,
    /// In-sync replicas an acks=all produce needs.
    pub min_insync_replicas: i32,
}

impl TopicConfig {
    /// Resolves the settings the broker acts on.
    pub fn resolve(overrides: &BTreeMap<String, String>, broker: &BrokerConfig) -> Self {
        let long = |name: &str, default: i64| {
            overrides
                .get(name)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(default)
        };
        TopicConfig {
            retention_ms: long("retention.ms", broker.log_retention_ms),
            retention_bytes: long("retention.bytes", broker.log_retention_bytes),
            max_message_bytes: long("max.message.bytes", i64::from(broker.message_max_bytes))
                .clamp(0, i64::from(i32::MAX)) as i32,
            min_insync_replicas: long("min.insync.replicas", i64::from(broker.min_insync()))
                .clamp(1, i64::from(i32::MAX)) as i32,
        }
    }
}

/// The default value of a topic config on this broker.
pub fn default_value(def: &TopicConfigDef, broker: &BrokerConfig) -> String {
    def.broker_default
        .and_then(|name| broker.get(name))
        .unwrap_or_else(|| def.fixed_default.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_follows_kafka_rules() {
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("retention.ms", "soon").is_err());
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        assert!(validate("cleanup.policy", "shred").is_err());
        assert!(validate("no.such.config", "1")
            .unwrap_err()
            .contains("unknown"));
        assert!(TOPIC_CONFIGS.windows(2).all(|w| w[0].name < w[1].name));
    }

    #[test]
    fn overrides_beat_broker_defaults() {
        let broker = BrokerConfig::default();
        let mut overrides = BTreeMap::new();
        let base = TopicConfig::resolve(&overrides, &broker);
        assert_eq!(base.retention_ms, broker.log_retention_ms);
        assert_eq!(base.max_message_bytes, 1_048_588);
        overrides.insert("retention.ms".to_owned(), "1000".to_owned());
        assert_eq!(TopicConfig::resolve(&overrides, &broker).retention_ms, 1000);
        assert_eq!(
            default_value(find("retention.bytes").unwrap(), &broker),
            "-1"
        );
    }
}
