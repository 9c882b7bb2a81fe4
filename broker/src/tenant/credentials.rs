//! Kafka's rules for AlterUserScramCredentials, pure: which users' changes
//! are valid, and the metadata-log changes for those that are. A user with
//! any invalid change has none applied (Kafka's per-user atomicity).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;

use crate::cluster::metadata::MetadataImage;
use crate::cluster::records::ScramCredentialChange;
use crate::config::BrokerConfig;
use crate::tenant::scram::{ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};
use crate::tenant::{tenant_of_user, validate_tenant_name};

/// A requested change, decoded from the wire.
#[derive(Debug, Clone)]
pub enum Alteration {
    Delete {
        user: String,
        mechanism: i8,
    },
    Upsert {
        user: String,
        mechanism: i8,
        iterations: i32,
        salt: Vec<u8>,
        salted_password: Vec<u8>,
    },
}

impl Alteration {
    fn user(&self) -> &str {
        match self {
            Self::Delete { user, .. } | Self::Upsert { user, .. } => user,
        }
    }

    fn mechanism(&self) -> i8 {
        match self {
            Self::Delete { mechanism, .. } | Self::Upsert { mechanism, .. } => *mechanism,
        }
    }
}

/// A user's outcome before the log: `Ok` if its changes go to the log.
pub type UserOutcome = Result<(), (ResponseError, String)>;

/// The plan: each user's outcome (in first-seen order) and the changes to
/// propose (only of users whose outcome is `Ok`), with their user's index.
#[derive(Debug, Default)]
pub struct Plan {
    pub users: Vec<(String, UserOutcome)>,
    pub changes: Vec<(usize, ScramCredentialChange)>,
}

/// Validates alterations as Kafka does, plus our rule that a user is a
/// super user or a tenant's (`NAME@TENANT`).
pub fn plan(alterations: &[Alteration], image: &MetadataImage, config: &BrokerConfig) -> Plan {
    let mut order: Vec<String> = Vec::new();
    let mut by_user: BTreeMap<&str, Vec<&Alteration>> = BTreeMap::new();
    for alteration in alterations {
        if !by_user.contains_key(alteration.user()) {
            order.push(alteration.user().to_owned());
        }
        by_user
            .entry(alteration.user())
            .or_default()
            .push(alteration);
    }
    let mut plan = Plan::default();
    for (index, user) in order.into_iter().enumerate() {
        let wanted = &by_user[user.as_str()];
        let outcome = check_user(&user, wanted, image, config);
        if outcome.is_ok() {
            for alteration in wanted {
                let change = match alteration {
                    Alteration::Delete { mechanism, .. } => ScramCredentialChange {
                        user: user.clone(),
                        mechanism: *mechanism,
                        credential: None,
                    },
                    Alteration::Upsert {
                        mechanism,
                        iterations,
                        salt,
                        salted_password,
                        ..
                    } => ScramCredentialChange {
                        user: user.clone(),
                        mechanism: *mechanism,
                        credential: ScramMechanism::from_kafka_type(*mechanism).map(|m| {
                            ScramCredential::from_salted_password(
                                m,
                                salted_password,
                                salt,
                                *iterations,
                            )
                        }),
                    },
                };
                plan.changes.push((index, change));
            }
        }
        plan.users.push((user, outcome));
    }
    plan
}

fn check_user(
    user: &str,
    wanted: &[&Alteration],
    image: &MetadataImage,
    config: &BrokerConfig,
) -> UserOutcome {
    if user.is_empty() {
        return Err((
            ResponseError::UnacceptableCredential,
            "Username must not be empty".to_owned(),
        ));
    }
    if !config.is_super_user(user) {
        match tenant_of_user(user) {
            None => {
                return Err((
                    ResponseError::UnacceptableCredential,
                    format!(
                        "user {user} is neither a super user nor a tenant's user (NAME@TENANT)"
                    ),
                ))
            }
            Some(tenant) => {
                if let Err(e) = validate_tenant_name(tenant) {
                    return Err((
                        ResponseError::UnacceptableCredential,
                        format!("user {user}: {e}"),
                    ));
                }
            }
        }
    }
    for (i, alteration) in wanted.iter().enumerate() {
        let mechanism = alteration.mechanism();
        if ScramMechanism::from_kafka_type(mechanism).is_none() {
            return Err((
                ResponseError::UnsupportedSaslMechanism,
                format!("Unknown SCRAM mechanism {mechanism}"),
            ));
        }
        if wanted[..i]
            .iter()
            .any(|other| other.mechanism() == mechanism)
        {
            return Err((
                ResponseError::DuplicateResource,
                format!("A user credential cannot be altered twice in the same request: {user}"),
            ));
        }
        match alteration {
            Alteration::Delete { .. } => {
                if image.scram_credential(user, mechanism).is_none() {
                    return Err((
                        ResponseError::ResourceNotFound,
                        format!("Attempt to delete a user credential that does not exist: {user}"),
                    ));
                }
            }
            Alteration::Upsert {
                iterations,
                salt,
                salted_password,
                ..
            } => {
                if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(iterations) {
                    return Err((
                        ResponseError::UnacceptableCredential,
                        format!(
                            "Iterations {iterations} must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"
                        ),
                    ));
                }
                if salt.is_empty() || salted_password.is_empty() {
                    return Err((
                        ResponseError::UnacceptableCredential,
                        "Credential must have a salt and a salted password".to_owned(),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn config() -> BrokerConfig {
        let mut config = BrokerConfig::default();
        config.set("super.users", "User:admin").unwrap();
        config
    }

    fn upsert(user: &str, mechanism: i8, iterations: i32) -> Alteration {
        Alteration::Upsert {
            user: user.into(),
            mechanism,
            iterations,
            salt: vec![1; 16],
            salted_password: vec![2; 32],
        }
    }

    #[test]
    fn valid_changes_become_log_changes() {
        let config = config();
        let image = MetadataImage::empty(Arc::new(config.clone()));
        let plan = plan(
            &[
                upsert("alice@acme", 1, 4096),
                upsert("alice@acme", 2, 8192),
                upsert("admin", 2, 4096),
            ],
            &image,
            &config,
        );
        assert_eq!(plan.users.len(), 2);
        assert!(plan.users.iter().all(|(_, outcome)| outcome.is_ok()));
        assert_eq!(plan.changes.len(), 3);
        assert_eq!(plan.changes[2].0, 1);
        assert!(plan.changes.iter().all(|(_, c)| c.credential.is_some()));
    }

    #[test]
    fn kafka_errors_per_user() {
        let config = config();
        let image = MetadataImage::empty(Arc::new(config.clone()));
        let cases = [
            (
                vec![upsert("bob", 1, 4096)],
                ResponseError::UnacceptableCredential,
            ),
            (
                vec![upsert("bob@a.b", 1, 4096)],
                ResponseError::UnacceptableCredential,
            ),
            (
                vec![upsert("", 1, 4096)],
                ResponseError::UnacceptableCredential,
            ),
            (
                vec![upsert("x@acme", 3, 4096)],
                ResponseError::UnsupportedSaslMechanism,
            ),
            (
                vec![upsert("x@acme", 1, 100)],
                ResponseError::UnacceptableCredential,
            ),
            (
                vec![upsert("x@acme", 1, 20000)],
                ResponseError::UnacceptableCredential,
            ),
            (
                vec![
                    upsert("x@acme", 1, 4096),
                    Alteration::Delete {
                        user: "x@acme".into(),
                        mechanism: 1,
                    },
                ],
                ResponseError::DuplicateResource,
            ),
            (
                vec![Alteration::Delete {
                    user: "x@acme".into(),
                    mechanism: 1,
                }],
                ResponseError::ResourceNotFound,
            ),
        ];
        for (alterations, expected) in cases {
            let plan = plan(&alterations, &image, &config);
            assert_eq!(plan.users.len(), 1);
            assert_eq!(
                plan.users[0].1.as_ref().unwrap_err().0,
                expected,
                "{alterations:?}"
            );
            assert!(
                plan.changes.is_empty(),
                "nothing of a refused user is applied"
            );
        }
    }
}
