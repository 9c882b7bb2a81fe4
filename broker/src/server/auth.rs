//! Who a connection is. On a SASL listener a connection must authenticate
//! (SaslHandshake v1, then SaslAuthenticate until done) before any request
//! other than ApiVersions; the exchange runs here, in request order, because
//! it changes the principal every later request carries. A session lasts
//! `connections.max.reauth.ms` (KIP-368): the client re-authenticates on
//! the same connection, as the same principal, or is closed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::Decodable;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::metrics;
use crate::protocol::{self, sasl, Outcome};
use crate::server::endpoint::SecurityProtocol;
use crate::tenant::sasl::{principal_for, AuthFailure, SaslExchange, Step};
use crate::tenant::Principal;

/// What the connection does with a request, by its API key.
#[derive(Debug)]
pub enum Gate {
    /// Serve it as the connection's principal.
    Dispatch,
    /// A SASL step: [`ConnectionAuth::handle`].
    Authenticate,
    /// Close the connection (reason, detail).
    Refuse(&'static str, String),
}

/// The answer to a SASL step: a response body, and whether the connection
/// closes after it.
#[derive(Debug)]
pub struct AuthReply {
    pub outcome: Outcome,
    pub close: Option<String>,
}

/// A connection's authentication state.
#[derive(Debug)]
pub struct ConnectionAuth {
    protocol: SecurityProtocol,
    principal: Arc<Principal>,
    /// Whether `principal` was proven (always, without SASL).
    authenticated: bool,
    /// When the session ends (`connections.max.reauth.ms`).
    expires: Option<Instant>,
    /// The mechanism of the exchange in progress or last completed.
    mechanism: Option<String>,
    /// The exchange between a handshake and its last SaslAuthenticate.
    exchange: Option<SaslExchange>,
}

impl ConnectionAuth {
    pub fn new(protocol: SecurityProtocol) -> Self {
        let sasl = protocol.uses_sasl();
        ConnectionAuth {
            protocol,
            // Listeners without SASL are for a trusted network: their
            // clients are anonymous and may do everything.
            principal: Arc::new(if sasl {
                Principal {
                    name: "ANONYMOUS".to_owned(),
                    tenant: None,
                    super_user: false,
                }
            } else {
                Principal::anonymous()
            }),
            authenticated: !sasl,
            expires: None,
            mechanism: None,
            exchange: None,
        }
    }

    pub fn principal(&self) -> &Arc<Principal> {
        &self.principal
    }

    /// Decides what happens to a request of `api_key`.
    pub fn gate(&self, api_key: ApiKey) -> Gate {
        if !self.protocol.uses_sasl() {
            return Gate::Dispatch;
        }
        match api_key {
            ApiKey::ApiVersions => Gate::Dispatch,
            ApiKey::SaslHandshake | ApiKey::SaslAuthenticate => Gate::Authenticate,
            _ if !self.authenticated => Gate::Refuse(
                "unauthenticated",
                format!("{api_key:?} before SASL authentication"),
            ),
            _ if self.exchange.is_some() => Gate::Refuse(
                "illegal_sasl_state",
                format!("{api_key:?} during SASL re-authentication"),
            ),
            _ if self.expires.is_some_and(|at| Instant::now() >= at) => Gate::Refuse(
                "reauthentication_required",
                format!(
                    "{api_key:?} after the SASL session expired ({} {})",
                    self.mechanism.as_deref().unwrap_or(""),
                    self.principal.name
                ),
            ),
            _ => Gate::Dispatch,
        }
    }

    /// Runs one SASL step.
    pub async fn handle(
        &mut self,
        api_key: ApiKey,
        version: i16,
        mut body: Bytes,
        broker: &Arc<Broker>,
    ) -> Result<AuthReply, String> {
        match api_key {
            ApiKey::SaslHandshake => {
                let request =
                    SaslHandshakeRequest::decode(&mut body, version).map_err(|e| e.to_string())?;
                Ok(self.handshake(request.mechanism.as_str(), version, broker))
            }
            _ => {
                let request = SaslAuthenticateRequest::decode(&mut body, version)
                    .map_err(|e| e.to_string())?;
                Ok(self.authenticate(request.auth_bytes, version, broker).await)
            }
        }
    }

    fn handshake(&mut self, mechanism: &str, version: i16, broker: &Arc<Broker>) -> AuthReply {
        let enabled = broker.config.sasl_mechanisms();
        let reply = |code: i16, close: Option<String>| AuthReply {
            outcome: protocol::encode(&sasl::handshake_response(code, &enabled), version),
            close,
        };
        if self.exchange.is_some() {
            return reply(
                ResponseError::IllegalSaslState.code(),
                Some("SaslHandshake during an exchange".to_owned()),
            );
        }
        if !enabled.iter().any(|m| m == mechanism) {
            return reply(
                ResponseError::UnsupportedSaslMechanism.code(),
                Some(format!("unsupported SASL mechanism {mechanism:?}")),
            );
        }
        // KIP-368: a re-authentication keeps the mechanism.
        if self.authenticated && self.mechanism.as_deref() != Some(mechanism) {
            return reply(
                ResponseError::IllegalSaslState.code(),
                Some("re-authentication must use the same mechanism".to_owned()),
            );
        }
        let Some(exchange) = SaslExchange::new(mechanism) else {
            return reply(
                ResponseError::UnsupportedSaslMechanism.code(),
                Some(format!("unsupported SASL mechanism {mechanism:?}")),
            );
        };
        self.exchange = Some(exchange);
        self.mechanism = Some(mechanism.to_owned());
        reply(0, None)
    }

    async fn authenticate(
        &mut self,
        token: Bytes,
        version: i16,
        broker: &Arc<Broker>,
    ) -> AuthReply {
        let mechanism = self.mechanism.clone().unwrap_or_default();
        let Some(mut exchange) = self.exchange.take() else {
            return AuthReply {
                outcome: protocol::encode(
                    &sasl::authenticate_response(
                        ResponseError::IllegalSaslState.code(),
                        Some("SaslAuthenticate before SaslHandshake"),
                        Vec::new(),
                        0,
                    ),
                    version,
                ),
                close: Some("SaslAuthenticate before SaslHandshake".to_owned()),
            };
        };
        let image = broker.image();
        // PBKDF2 is deliberately slow: not on an async worker, and at most
        // one exchange step per core at a time, so a flood of logins (each
        // connection's failures already wait) cannot take every core.
        let Ok(_permit) = auth_cpu().acquire().await else {
            return AuthReply {
                outcome: Outcome::Close("shutting down".to_owned()),
                close: Some("shutting down".to_owned()),
            };
        };
        let stepped = tokio::task::spawn_blocking(move || {
            let step = exchange.step(&token, &image);
            (exchange, step)
        })
        .await;
        let step = match stepped {
            Ok((exchange, Ok(Step::Continue(response)))) => {
                self.exchange = Some(exchange);
                return AuthReply {
                    outcome: protocol::encode(
                        &sasl::authenticate_response(0, None, response, 0),
                        version,
                    ),
                    close: None,
                };
            }
            Ok((_, step)) => step,
            Err(e) => Err(AuthFailure(format!("authentication task failed: {e}"))),
        };
        let result = step.and_then(|step| match step {
            Step::Done { response, user } => {
                let principal = principal_for(&user, &broker.config)?;
                if self.authenticated && principal.name != self.principal.name {
                    return Err(AuthFailure(
                        "re-authentication must keep the principal".to_owned(),
                    ));
                }
                Ok((response, principal))
            }
            Step::Continue(_) => unreachable_step(),
        });
        match result {
            Ok((response, principal)) => {
                metrics::SASL_AUTHENTICATIONS_TOTAL
                    .with_label_values(&[&mechanism, "ok"])
                    .inc();
                if !self.authenticated {
                    info!(principal = %principal.name, mechanism = %mechanism, "authenticated");
                }
                let lifetime = broker.config.connections_max_reauth_ms;
                self.expires =
                    (lifetime > 0).then(|| Instant::now() + Duration::from_millis(lifetime as u64));
                self.principal = Arc::new(principal);
                self.authenticated = true;
                AuthReply {
                    outcome: protocol::encode(
                        &sasl::authenticate_response(0, None, response, lifetime),
                        version,
                    ),
                    close: None,
                }
            }
            Err(failure) => {
                metrics::SASL_AUTHENTICATIONS_TOTAL
                    .with_label_values(&[&mechanism, "failed"])
                    .inc();
                warn!(mechanism = %mechanism, reason = %failure, "authentication failed");
                // Kafka's brake on password guessing: every failure costs
                // the client this long before its answer and the close.
                let delay = broker.config.connection_failed_authentication_delay_ms;
                tokio::time::sleep(Duration::from_millis(delay)).await;
                AuthReply {
                    outcome: protocol::encode(
                        &sasl::authenticate_response(
                            ResponseError::SaslAuthenticationFailed.code(),
                            Some(&failure.0),
                            Vec::new(),
                            0,
                        ),
                        version,
                    ),
                    close: Some(format!("authentication failed: {failure}")),
                }
            }
        }
    }
}

/// Permits for concurrent SASL steps: one per core.
fn auth_cpu() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    })
}

/// `Step::Done` is the only step that reaches here: `Continue` returned
/// earlier.
fn unreachable_step<T>() -> Result<T, AuthFailure> {
    Err(AuthFailure("unexpected SASL step".to_owned()))
}
