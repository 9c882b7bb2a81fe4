//! Tenancy and security: who a connection is ([`Principal`]), which names
//! it may use ([`TenantScope`], the one place where a tenant's names become
//! internal names and back), SASL authentication ([`scram`], [`sasl`]) and
//! the rewriting of requests and responses for a tenant ([`rewrite`]) and
//! client quotas per tenant, user and client id ([`quota`]).
//!
//! Storage, replication, the controller and the coordinators only ever see
//! internal names (`acme.metrics`); a tenant's client only ever sees its own
//! names (`metrics`).

pub mod acl;
pub mod credentials;
pub mod quota;
pub mod rewrite;
pub mod sasl;
pub mod scram;

use std::fmt;

/// The separator between a tenant's name and its resources' names: the
/// tenant `acme` owns every name that starts with `acme.`.
pub const PREFIX_SEPARATOR: char = '.';

/// The longest tenant name. Kafka's topic names stop at 249 characters;
/// this leaves a tenant at least 200 of them.
pub const MAX_TENANT_NAME_LEN: usize = 48;

/// Who a connection is, fixed once it has authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user name as authenticated (`alice@acme`, `admin`), or
    /// `ANONYMOUS` on a listener without authentication.
    pub name: String,
    /// The tenant whose names this principal uses; `None` for super users
    /// and anonymous principals, who see internal names.
    pub tenant: Option<TenantScope>,
    /// Super users (and anonymous principals on PLAINTEXT listeners, which
    /// are for a trusted network) may do everything.
    pub super_user: bool,
}

impl Principal {
    /// The principal of a listener without authentication.
    pub fn anonymous() -> Self {
        Self {
            name: "ANONYMOUS".to_owned(),
            tenant: None,
            super_user: true,
        }
    }

    /// Kafka's form, as ACLs name it: `User:alice@acme`.
    pub fn kafka_principal(&self) -> String {
        format!("User:{}", self.name)
    }
}

/// Why a name cannot be a tenant's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantNameError {
    Empty,
    TooLong,
    /// Only ASCII letters, digits, `_` and `-`: no `.`, so that no tenant's
    /// prefix is a prefix of another's (`acme.` and `acme.eu.` would be).
    IllegalCharacter,
}

impl fmt::Display for TenantNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "tenant name is empty"),
            Self::TooLong => write!(
                f,
                "tenant name is longer than {MAX_TENANT_NAME_LEN} characters"
            ),
            Self::IllegalCharacter => write!(
                f,
                "tenant name may contain only ASCII letters, digits, '_' and '-'"
            ),
        }
    }
}

/// Checks a tenant name.
pub fn validate_tenant_name(name: &str) -> Result<(), TenantNameError> {
    if name.is_empty() {
        Err(TenantNameError::Empty)
    } else if name.len() > MAX_TENANT_NAME_LEN {
        Err(TenantNameError::TooLong)
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Err(TenantNameError::IllegalCharacter)
    } else {
        Ok(())
    }
}

/// The tenant of a user name: the part after the last `@` (`alice@acme` is
/// a user of `acme`). `None` for a name without `@` (an operator).
pub fn tenant_of_user(user: &str) -> Option<&str> {
    user.rsplit_once('@').map(|(_, tenant)| tenant)
}

/// The tenant an internal resource name would belong to: the part before
/// the first `.`, if that is a valid tenant name (`acme.metrics` -> `acme`).
/// Whether such a tenant exists is the caller's question.
pub fn tenant_of_resource(internal: &str) -> Option<&str> {
    let (tenant, rest) = internal.split_once(PREFIX_SEPARATOR)?;
    (!rest.is_empty() && validate_tenant_name(tenant).is_ok()).then_some(tenant)
}

/// A tenant's view of names. Every tenant name, topic, group id and
/// transactional id, maps to `"{tenant}.{name}"`; nothing else is visible.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantScope {
    tenant: String,
    /// `"{tenant}."`.
    prefix: String,
}

impl TenantScope {
    /// The scope of a valid tenant name.
    pub fn new(tenant: &str) -> Result<Self, TenantNameError> {
        validate_tenant_name(tenant)?;
        Ok(Self {
            tenant: tenant.to_owned(),
            prefix: format!("{tenant}{PREFIX_SEPARATOR}"),
        })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// `"acme."`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The internal name of one of the tenant's names. Whatever the client
    /// sent stays under the prefix: `../x` becomes `acme.../x` (an illegal
    /// topic name the usual validation refuses), `other.x` becomes
    /// `acme.other.x`. An empty name stays empty (it names nothing).
    pub fn to_internal(&self, name: &str) -> String {
        if name.is_empty() {
            String::new()
        } else {
            format!("{}{name}", self.prefix)
        }
    }

    /// The tenant's name for an internal name, or `None` if the internal
    /// name is not the tenant's (another tenant's, an internal topic).
    pub fn to_external<'a>(&self, internal: &'a str) -> Option<&'a str> {
        internal
            .strip_prefix(self.prefix.as_str())
            .filter(|rest| !rest.is_empty())
    }

    /// Whether an internal name is the tenant's.
    pub fn owns(&self, internal: &str) -> bool {
        self.to_external(internal).is_some()
    }

    /// A message for the tenant's client with every occurrence of its
    /// prefix removed, so errors name things as the client does.
    pub fn strip_message(&self, message: &str) -> String {
        message.replace(self.prefix.as_str(), "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names() {
        assert!(validate_tenant_name("acme").is_ok());
        assert!(validate_tenant_name("acme_eu-2").is_ok());
        assert_eq!(validate_tenant_name(""), Err(TenantNameError::Empty));
        assert_eq!(
            validate_tenant_name("acme.eu"),
            Err(TenantNameError::IllegalCharacter)
        );
        assert_eq!(
            validate_tenant_name("a/b"),
            Err(TenantNameError::IllegalCharacter)
        );
        assert_eq!(
            validate_tenant_name(&"a".repeat(MAX_TENANT_NAME_LEN + 1)),
            Err(TenantNameError::TooLong)
        );
    }

    #[test]
    fn resources_name_their_tenant() {
        assert_eq!(tenant_of_resource("acme.metrics"), Some("acme"));
        assert_eq!(tenant_of_resource("acme.a.b"), Some("acme"));
        assert_eq!(tenant_of_resource("acme."), None);
        assert_eq!(tenant_of_resource("__consumer_offsets"), None);
        assert_eq!(tenant_of_resource("a/b.c"), None);
    }

    #[test]
    fn user_names_carry_their_tenant() {
        assert_eq!(tenant_of_user("alice@acme"), Some("acme"));
        assert_eq!(tenant_of_user("a@b@acme"), Some("acme"));
        assert_eq!(tenant_of_user("admin"), None);
    }

    #[test]
    fn names_round_trip_and_never_escape() {
        let acme = TenantScope::new("acme").unwrap();
        let other = TenantScope::new("other").unwrap();
        for name in ["metrics", "../x", "other.x", ".", "..", "a.b.c", "acme.x"] {
            let internal = acme.to_internal(name);
            assert!(internal.starts_with("acme."), "{internal}");
            assert_eq!(acme.to_external(&internal), Some(name));
            assert!(!other.owns(&internal), "{internal}");
        }
        assert_eq!(acme.to_internal(""), "");
        assert_eq!(acme.to_external("acme."), None);
        assert_eq!(acme.to_external("acmex.y"), None);
        assert_eq!(acme.to_external("__consumer_offsets"), None);
        assert_eq!(acme.to_external("other.metrics"), None);
        assert_eq!(
            acme.strip_message("topic acme.metrics is gone"),
            "topic metrics is gone"
        );
    }
}
