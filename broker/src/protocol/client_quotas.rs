//! DescribeClientQuotas and AlterClientQuotas: super users manage quotas
//! for Kafka's entities (`user`, `client-id`) and our `tenant` entity
//! ([`crate::tenant::quota`]). Anyone else gets
//! CLUSTER_AUTHORIZATION_FAILED, as Kafka answers without DESCRIBE_CONFIGS
//! or ALTER_CONFIGS on the cluster. Unknown entity types (Kafka's `ip`
//! too: connection quotas are not implemented) and keys, invalid
//! combinations and values that are not positive finite numbers get
//! INVALID_REQUEST; nothing a client sends can panic here.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_client_quotas_request::EntryData as AlterEntry;
use kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AlteredEntity, EntryData as AlterResult,
};
use kafka_protocol::messages::describe_client_quotas_response::{
    EntityData as DescribedEntity, EntryData as DescribedEntry, ValueData,
};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};

use crate::broker::Broker;
use crate::protocol::{count_error, str_bytes, RequestContext};
use crate::tenant::quota::{EntityType, QuotaChange, QuotaEntity, QuotaKey, QuotaValue};

const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

fn invalid(message: impl Into<String>) -> (i16, Option<String>) {
    (ResponseError::InvalidRequest.code(), Some(message.into()))
}

fn not_authorized() -> (i16, Option<String>) {
    (
        ResponseError::ClusterAuthorizationFailed.code(),
        Some("Cluster authorization failed.".to_owned()),
    )
}

/// One entry's changes, or why it is refused.
fn plan_entry(entry: &AlterEntry) -> Result<Vec<QuotaChange>, (i16, Option<String>)> {
    let mut parts = Vec::with_capacity(entry.entity.len());
    for part in &entry.entity {
        let Some(t) = EntityType::parse(part.entity_type.as_str()) else {
            return Err(invalid(format!(
                "Unsupported quota entity type: {}",
                part.entity_type.as_str()
            )));
        };
        parts.push((t, part.entity_name.as_ref().map(|n| n.to_string())));
    }
    let entity = QuotaEntity::new(parts).map_err(invalid)?;
    let mut keys = BTreeSet::new();
    let mut changes = Vec::with_capacity(entry.ops.len());
    for op in &entry.ops {
        let Some(key) = QuotaKey::parse(op.key.as_str()) else {
            return Err(invalid(format!("Unknown quota key: {}", op.key.as_str())));
        };
        if !keys.insert(key) {
            return Err(invalid(format!(
                "Duplicate quota key in one entity: {}",
                key.as_str()
            )));
        }
        let value = if op.remove {
            None
        } else {
            key.validate(op.value).map_err(invalid)?;
            Some(QuotaValue(op.value))
        };
        changes.push(QuotaChange {
            entity: entity.clone(),
            key,
            value,
        });
    }
    Ok(changes)
}

pub async fn handle_alter(
    broker: Arc<Broker>,
    context: RequestContext,
    request: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let mut outcomes: Vec<(i16, Option<String>)> = Vec::with_capacity(request.entries.len());
    // Per change: the entry it belongs to.
    let mut owners = Vec::new();
    let mut changes = Vec::new();
    for (i, entry) in request.entries.iter().enumerate() {
        if !context.principal.super_user {
            outcomes.push(not_authorized());
            continue;
        }
        match plan_entry(entry) {
            Ok(planned) => {
                outcomes.push((0, None));
                owners.extend(std::iter::repeat_n(i, planned.len()));
                changes.extend(planned);
            }
            Err(refused) => outcomes.push(refused),
        }
    }
    if !request.validate_only && !changes.is_empty() {
        match broker.metadata.alter_client_quotas(changes).await {
            Ok(codes) => {
                for (owner, code) in owners.iter().zip(codes) {
                    if code != 0 && outcomes[*owner].0 == 0 {
                        outcomes[*owner] = (code, None);
                    }
                }
            }
            Err(e) => {
                for owner in owners {
                    outcomes[owner] = (e.code(), Some(e.to_string()));
                }
            }
        }
    }
    let entries = request
        .entries
        .iter()
        .zip(outcomes)
        .map(|(entry, (code, message))| {
            count_error(context.api_key, code);
            AlterResult::default()
                .with_error_code(code)
                .with_error_message(message.as_deref().map(str_bytes))
                .with_entity(
                    entry
                        .entity
                        .iter()
                        .map(|e| {
                            AlteredEntity::default()
                                .with_entity_type(e.entity_type.clone())
                                .with_entity_name(e.entity_name.clone())
                        })
                        .collect(),
                )
        })
        .collect();
    AlterClientQuotasResponse::default().with_entries(entries)
}

/// A describe filter's component: the type and what its name must be.
struct Component {
    entity_type: EntityType,
    /// `None`: any name (`MATCH_TYPE_SPECIFIED`); `Some(None)`: the
    /// default; `Some(Some(n))`: exactly `n`.
    name: Option<Option<String>>,
}

fn parse_filter(
    request: &DescribeClientQuotasRequest,
) -> Result<Vec<Component>, (i16, Option<String>)> {
    let mut seen = BTreeSet::new();
    let mut components = Vec::with_capacity(request.components.len());
    for c in &request.components {
        let Some(entity_type) = EntityType::parse(c.entity_type.as_str()) else {
            return Err(invalid(format!(
                "Unsupported quota entity type: {}",
                c.entity_type.as_str()
            )));
        };
        if !seen.insert(entity_type) {
            return Err(invalid(format!(
                "Duplicate entity type in filter: {}",
                entity_type.as_str()
            )));
        }
        let name = match c.match_type {
            MATCH_EXACT => match &c._match {
                Some(name) => Some(Some(name.to_string())),
                None => return Err(invalid("An exact match needs a name")),
            },
            MATCH_DEFAULT => Some(None),
            MATCH_SPECIFIED => None,
            other => return Err(invalid(format!("Unknown match type: {other}"))),
        };
        components.push(Component { entity_type, name });
    }
    Ok(components)
}

fn matches(entity: &QuotaEntity, components: &[Component], strict: bool) -> bool {
    let all_match = components.iter().all(|c| match entity.get(c.entity_type) {
        None => false,
        Some(name) => match &c.name {
            None => true,
            Some(wanted) => wanted.as_deref() == name,
        },
    });
    all_match && (!strict || entity.parts().len() == components.len())
}

pub async fn handle_describe(
    broker: Arc<Broker>,
    context: RequestContext,
    request: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let refused = if !context.principal.super_user {
        Err(not_authorized())
    } else {
        parse_filter(&request)
    };
    let components = match refused {
        Ok(components) => components,
        Err((code, message)) => {
            count_error(context.api_key, code);
            return DescribeClientQuotasResponse::default()
                .with_error_code(code)
                .with_error_message(message.as_deref().map(str_bytes))
                .with_entries(None);
        }
    };
    let image = broker.image();
    let entries = image
        .client_quotas
        .iter()
        .filter(|(entity, _)| matches(entity, &components, request.strict))
        .map(|(entity, values)| {
            DescribedEntry::default()
                .with_entity(
                    entity
                        .parts()
                        .iter()
                        .map(|(t, name)| {
                            DescribedEntity::default()
                                .with_entity_type(str_bytes(t.as_str()))
                                .with_entity_name(name.as_deref().map(str_bytes))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .iter()
                        .map(|(key, value)| {
                            ValueData::default()
                                .with_key(str_bytes(key.as_str()))
                                .with_value(*value)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::alter_client_quotas_request::{EntityData, OpData};
    use kafka_protocol::protocol::StrBytes;

    fn entry(entity: &[(&str, Option<&str>)], ops: &[(&str, f64, bool)]) -> AlterEntry {
        AlterEntry::default()
            .with_entity(
                entity
                    .iter()
                    .map(|(t, n)| {
                        EntityData::default()
                            .with_entity_type(StrBytes::from_string(t.to_string()))
                            .with_entity_name(n.map(|n| StrBytes::from_string(n.to_owned())))
                    })
                    .collect(),
            )
            .with_ops(
                ops.iter()
                    .map(|(k, v, remove)| {
                        OpData::default()
                            .with_key(StrBytes::from_string(k.to_string()))
                            .with_value(*v)
                            .with_remove(*remove)
                    })
                    .collect(),
            )
    }

    #[test]
    fn alter_entries_are_validated() {
        let ok = plan_entry(&entry(
            &[("tenant", Some("acme"))],
            &[
                ("producer_byte_rate", 1024.0, false),
                ("consumer_byte_rate", 0.0, true),
            ],
        ))
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].value, None);
        let invalid = ResponseError::InvalidRequest.code();
        for bad in [
            entry(&[("ip", None)], &[("producer_byte_rate", 1.0, false)]),
            entry(&[], &[("producer_byte_rate", 1.0, false)]),
            entry(&[("user", None), ("user", None)], &[]),
            entry(&[("tenant", Some("acme")), ("user", None)], &[]),
            entry(&[("user", None)], &[("bogus", 1.0, false)]),
            entry(&[("user", None)], &[("producer_byte_rate", -5.0, false)]),
            entry(
                &[("user", None)],
                &[("producer_byte_rate", f64::NAN, false)],
            ),
            entry(
                &[("user", None)],
                &[("request_percentage", f64::INFINITY, false)],
            ),
            entry(
                &[("user", None)],
                &[
                    ("producer_byte_rate", 1.0, false),
                    ("producer_byte_rate", 2.0, false),
                ],
            ),
        ] {
            assert_eq!(plan_entry(&bad).unwrap_err().0, invalid, "{bad:?}");
        }
    }

    #[test]
    fn filters_match_like_kafka() {
        let user_client = QuotaEntity::new(vec![
            (EntityType::User, Some("alice".into())),
            (EntityType::ClientId, None),
        ])
        .unwrap();
        let user = QuotaEntity::new(vec![(EntityType::User, Some("alice".into()))]).unwrap();
        let exact = |name: &str| Component {
            entity_type: EntityType::User,
            name: Some(Some(name.to_owned())),
        };
        assert!(matches(&user, &[exact("alice")], true));
        assert!(!matches(&user_client, &[exact("alice")], true));
        assert!(matches(&user_client, &[exact("alice")], false));
        assert!(!matches(&user, &[exact("bob")], false));
        let default_client = Component {
            entity_type: EntityType::ClientId,
            name: Some(None),
        };
        assert!(matches(&user_client, &[default_client], false));
        let any_tenant = Component {
            entity_type: EntityType::Tenant,
            name: None,
        };
        assert!(!matches(&user, &[any_tenant], false));
        assert!(matches(&user, &[], false));
        assert!(!matches(&user, &[], true));
    }
}
