//! One SASL exchange on a connection (PLAIN or SCRAM) and who it proves the
//! client to be. The connection drives it one SaslAuthenticate at a time;
//! the checks are CPU work (PBKDF2), so the connection runs [`step`] on a
//! blocking thread.
//!
//! [`step`]: SaslExchange::step

use std::fmt;

use crate::cluster::metadata::MetadataImage;
use crate::config::BrokerConfig;
use crate::tenant::scram::{self, ScramMechanism, ScramServer};
use crate::tenant::{tenant_of_user, Principal, TenantScope};

/// The mechanisms this broker implements (`sasl.enabled.mechanisms` picks
/// from these).
pub const MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// Why an exchange failed. The text goes to the client and the log: it
/// never contains a password or a proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure(pub String);

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one SaslAuthenticate step answers.
#[derive(Debug)]
pub enum Step {
    /// Send these bytes and wait for the client's next message.
    Continue(Vec<u8>),
    /// Authenticated as `user`; send these bytes (possibly empty).
    Done { response: Vec<u8>, user: String },
}

/// One exchange in progress.
#[derive(Debug)]
pub enum SaslExchange {
    Plain,
    /// The server, and whether the client-first message has been handled.
    Scram(Box<ScramServer>, bool),
}

impl SaslExchange {
    /// An exchange for `mechanism`, if it is one of ours.
    pub fn new(mechanism: &str) -> Option<Self> {
        if mechanism == "PLAIN" {
            return Some(Self::Plain);
        }
        ScramMechanism::from_name(mechanism)
            .map(|m| Self::Scram(Box::new(ScramServer::new(m)), false))
    }

    /// Processes the client's next message against the credentials in
    /// `image`.
    pub fn step(&mut self, message: &[u8], image: &MetadataImage) -> Result<Step, AuthFailure> {
        match self {
            Self::Plain => {
                let plain = scram::parse_plain(message).map_err(|e| AuthFailure(e.to_string()))?;
                // PLAIN checks against the SCRAM credentials: whichever
                // mechanism the user has (passwords are never stored).
                let verified = [ScramMechanism::Sha512, ScramMechanism::Sha256]
                    .into_iter()
                    .find_map(|m| {
                        image
                            .scram_credential(&plain.username, m.kafka_type())
                            .map(|c| (m, c))
                    })
                    .is_some_and(|(m, credential)| {
                        scram::verify_plain(m, credential, plain.password.as_bytes())
                    });
                if verified {
                    Ok(Step::Done {
                        response: Vec::new(),
                        user: plain.username,
                    })
                } else {
                    Err(AuthFailure(
                        "Authentication failed: Invalid username or password".to_owned(),
                    ))
                }
            }
            Self::Scram(server, first_done) => {
                if !*first_done {
                    *first_done = true;
                    let mechanism = server.mechanism().kafka_type();
                    let response = server
                        .client_first(message, |user| {
                            image.scram_credential(user, mechanism).cloned()
                        })
                        .map_err(|e| AuthFailure(e.to_string()))?;
                    Ok(Step::Continue(response))
                } else {
                    let (response, user) = server
                        .client_final(message)
                        .map_err(|e| AuthFailure(e.to_string()))?;
                    Ok(Step::Done { response, user })
                }
            }
        }
    }
}

/// The principal of an authenticated user: a super user, or a user of the
/// tenant its name ends in (`alice@acme`). A user that is neither may not
/// connect: it could see nothing.
pub fn principal_for(user: &str, config: &BrokerConfig) -> Result<Principal, AuthFailure> {
    if config.is_super_user(user) {
        return Ok(Principal {
            name: user.to_owned(),
            tenant: None,
            super_user: true,
        });
    }
    let tenant = tenant_of_user(user).ok_or_else(|| {
        AuthFailure(format!(
            "user {user} is neither a super user nor a tenant's user (NAME@TENANT)"
        ))
    })?;
    let scope = TenantScope::new(tenant).map_err(|e| AuthFailure(format!("user {user}: {e}")))?;
    Ok(Principal {
        name: user.to_owned(),
        tenant: Some(scope),
        super_user: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals() {
        let mut config = BrokerConfig::default();
        config.set("super.users", "User:admin").unwrap();
        let admin = principal_for("admin", &config).unwrap();
        assert!(admin.super_user && admin.tenant.is_none());
        let alice = principal_for("alice@acme", &config).unwrap();
        assert!(!alice.super_user);
        assert_eq!(alice.tenant.unwrap().prefix(), "acme.");
        assert!(principal_for("bob", &config).is_err());
        assert!(principal_for("bob@a.b", &config).is_err());
        assert!(principal_for("bob@", &config).is_err());
    }

    #[test]
    fn unknown_mechanisms_have_no_exchange() {
        assert!(SaslExchange::new("GSSAPI").is_none());
        assert!(SaslExchange::new("PLAIN").is_some());
        assert!(SaslExchange::new("SCRAM-SHA-512").is_some());
    }
}
