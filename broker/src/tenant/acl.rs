//! ACLs with Kafka's model: a binding says that a principal (`User:NAME` or
//! `User:*`) from a host (`*` or an IP) is allowed or denied an operation on
//! resources named LITERALly (`*` for all of a type) or by PREFIX. Pure:
//! the types, the filters of DescribeAcls/DeleteAcls and the decision
//! ([`authorize`]); the bindings live in the metadata image.
//!
//! Resource names are internal names (`acme.payroll`, prefix `acme.`): an
//! operator writes them as the storage sees them.
//!
//! The decision, as Kafka's authorizer takes it, plus tenancy:
//! - super users may do everything;
//! - a tenant's principal may do nothing outside its prefix (the rewrite
//!   already keeps its names inside; this is a second wall);
//! - inside, a matching DENY wins; otherwise a matching ALLOW allows, and a
//!   tenant's users hold an implicit `ALLOW ALL` on `PREFIXED "<tenant>."`
//!   unless `tenant.default.acls.enable` is false;
//! - with nothing that allows, the answer is no (Kafka's
//!   `allow.everyone.if.no.acl.found=false`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::tenant::Principal;

/// Kafka's ResourceType codes.
pub mod resource_type {
    pub const UNKNOWN: i8 = 0;
    pub const ANY: i8 = 1;
    pub const TOPIC: i8 = 2;
    pub const GROUP: i8 = 3;
    pub const CLUSTER: i8 = 4;
    pub const TRANSACTIONAL_ID: i8 = 5;
    pub const DELEGATION_TOKEN: i8 = 6;
    pub const USER: i8 = 7;
}

/// Kafka's PatternType codes.
pub mod pattern_type {
    pub const UNKNOWN: i8 = 0;
    pub const ANY: i8 = 1;
    pub const MATCH: i8 = 2;
    pub const LITERAL: i8 = 3;
    pub const PREFIXED: i8 = 4;
}

/// Kafka's AclOperation codes.
pub mod operation {
    pub const UNKNOWN: i8 = 0;
    pub const ANY: i8 = 1;
    pub const ALL: i8 = 2;
    pub const READ: i8 = 3;
    pub const WRITE: i8 = 4;
    pub const CREATE: i8 = 5;
    pub const DELETE: i8 = 6;
    pub const ALTER: i8 = 7;
    pub const DESCRIBE: i8 = 8;
    pub const CLUSTER_ACTION: i8 = 9;
    pub const DESCRIBE_CONFIGS: i8 = 10;
    pub const ALTER_CONFIGS: i8 = 11;
    pub const IDEMPOTENT_WRITE: i8 = 12;
    pub const CREATE_TOKENS: i8 = 13;
    pub const DESCRIBE_TOKENS: i8 = 14;
}

/// Kafka's AclPermissionType codes.
pub mod permission {
    pub const UNKNOWN: i8 = 0;
    pub const ANY: i8 = 1;
    pub const DENY: i8 = 2;
    pub const ALLOW: i8 = 3;
}

/// A literal resource name matching every resource of its type.
pub const WILDCARD: &str = "*";
/// The principal matching every user.
pub const WILDCARD_PRINCIPAL: &str = "User:*";
/// The only name of the CLUSTER resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// One ACL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission: i8,
}

/// A DescribeAcls/DeleteAcls filter: `None` and the ANY codes match
/// everything; pattern MATCH matches the bindings that apply to the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission: i8,
}

fn known_resource_type(code: i8) -> bool {
    (resource_type::TOPIC..=resource_type::USER).contains(&code)
}

fn known_operation(code: i8) -> bool {
    (operation::ALL..=operation::DESCRIBE_TOKENS).contains(&code)
}

/// Whether a principal is `TYPE:NAME` with both parts non-empty.
fn valid_principal(principal: &str) -> bool {
    matches!(principal.split_once(':'), Some((kind, name)) if !kind.is_empty() && !name.is_empty())
}

fn valid_host(host: &str) -> bool {
    host == WILDCARD || host.parse::<IpAddr>().is_ok()
}

impl AclBinding {
    /// Why CreateAcls refuses this binding (Kafka's INVALID_REQUEST
    /// cases), or `None`.
    pub fn invalid_reason(&self) -> Option<String> {
        if !known_resource_type(self.resource_type) {
            return Some(format!("invalid resource type {}", self.resource_type));
        }
        if !matches!(
            self.pattern_type,
            pattern_type::LITERAL | pattern_type::PREFIXED
        ) {
            return Some(format!(
                "invalid pattern type {}: only LITERAL and PREFIXED bindings can be created",
                self.pattern_type
            ));
        }
        if self.resource_name.is_empty() {
            return Some("resource name is empty".to_owned());
        }
        if self.pattern_type == pattern_type::PREFIXED && self.resource_name == WILDCARD {
            return Some("a PREFIXED pattern cannot be `*`".to_owned());
        }
        if self.resource_type == resource_type::CLUSTER && self.resource_name != CLUSTER_NAME {
            return Some(format!(
                "the cluster resource is named `{CLUSTER_NAME}`, not `{}`",
                self.resource_name
            ));
        }
        if !known_operation(self.operation) {
            return Some(format!("invalid operation {}", self.operation));
        }
        if !matches!(self.permission, permission::ALLOW | permission::DENY) {
            return Some(format!("invalid permission type {}", self.permission));
        }
        if !valid_principal(&self.principal) {
            return Some(format!(
                "invalid principal `{}`: expected TYPE:NAME such as User:alice@acme",
                self.principal
            ));
        }
        if !valid_host(&self.host) {
            return Some(format!(
                "invalid host `{}`: expected `*` or an IP address",
                self.host
            ));
        }
        None
    }

    /// Whether this binding applies to resource `name` of `kind`.
    fn covers(&self, kind: i8, name: &str) -> bool {
        self.resource_type == kind
            && match self.pattern_type {
                pattern_type::LITERAL => {
                    self.resource_name == name || self.resource_name == WILDCARD
                }
                pattern_type::PREFIXED => name.starts_with(self.resource_name.as_str()),
                _ => false,
            }
    }

    fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == WILDCARD_PRINCIPAL)
            && (self.host == host || self.host == WILDCARD)
    }
}

impl AclFilter {
    /// The filter matching every binding.
    pub fn any() -> Self {
        AclFilter {
            resource_type: resource_type::ANY,
            resource_name: None,
            pattern_type: pattern_type::ANY,
            principal: None,
            host: None,
            operation: operation::ANY,
            permission: permission::ANY,
        }
    }

    /// Why this filter is refused (an UNKNOWN or out-of-range code), or
    /// `None`.
    pub fn invalid_reason(&self) -> Option<String> {
        if self.resource_type != resource_type::ANY && !known_resource_type(self.resource_type) {
            return Some(format!("invalid resource type {}", self.resource_type));
        }
        if !(pattern_type::ANY..=pattern_type::PREFIXED).contains(&self.pattern_type) {
            return Some(format!("invalid pattern type {}", self.pattern_type));
        }
        if self.operation != operation::ANY && !known_operation(self.operation) {
            return Some(format!("invalid operation {}", self.operation));
        }
        if !(permission::ANY..=permission::ALLOW).contains(&self.permission) {
            return Some(format!("invalid permission type {}", self.permission));
        }
        None
    }

    /// Kafka's `AclBindingFilter.matches`.
    pub fn matches(&self, binding: &AclBinding) -> bool {
        if self.resource_type != resource_type::ANY && self.resource_type != binding.resource_type {
            return false;
        }
        if !matches!(self.pattern_type, pattern_type::ANY | pattern_type::MATCH)
            && self.pattern_type != binding.pattern_type
        {
            return false;
        }
        let name_matches = match &self.resource_name {
            None => true,
            Some(name) if self.pattern_type == pattern_type::MATCH => match binding.pattern_type {
                pattern_type::LITERAL => {
                    binding.resource_name == *name || binding.resource_name == WILDCARD
                }
                pattern_type::PREFIXED => name.starts_with(binding.resource_name.as_str()),
                _ => false,
            },
            Some(name) => binding.resource_name == *name,
        };
        name_matches
            && self
                .principal
                .as_ref()
                .is_none_or(|p| *p == binding.principal)
            && self.host.as_ref().is_none_or(|h| *h == binding.host)
            && (self.operation == operation::ANY || self.operation == binding.operation)
            && (self.permission == permission::ANY || self.permission == binding.permission)
    }
}

/// Whether an ALLOW for `granted` allows `wanted` (Kafka's implications:
/// ALL allows everything; READ, WRITE, DELETE and ALTER allow DESCRIBE;
/// ALTER_CONFIGS allows DESCRIBE_CONFIGS).
fn allow_implies(granted: i8, wanted: i8) -> bool {
    granted == wanted
        || granted == operation::ALL
        || (wanted == operation::DESCRIBE
            && matches!(
                granted,
                operation::READ | operation::WRITE | operation::DELETE | operation::ALTER
            ))
        || (wanted == operation::DESCRIBE_CONFIGS && granted == operation::ALTER_CONFIGS)
}

/// The decision for `principal` connecting from `host` wanting `op` on
/// resource `name` (internal) of type `kind`, given every binding.
/// `tenant_defaults`: `tenant.default.acls.enable`.
pub fn authorize<'a>(
    acls: impl IntoIterator<Item = &'a AclBinding>,
    tenant_defaults: bool,
    principal: &Principal,
    host: &str,
    op: i8,
    kind: i8,
    name: &str,
) -> bool {
    if principal.super_user {
        return true;
    }
    let mut allowed = false;
    if let Some(scope) = &principal.tenant {
        // Tenants' resources are topics, groups and transactional ids
        // under their prefix; nothing else is theirs.
        let tenants_kind = matches!(
            kind,
            resource_type::TOPIC | resource_type::GROUP | resource_type::TRANSACTIONAL_ID
        );
        if !tenants_kind || !scope.owns(name) {
            return false;
        }
        allowed = tenant_defaults;
    }
    let user = principal.kafka_principal();
    for acl in acls {
        if !acl.covers(kind, name) || !acl.applies_to(&user, host) {
            continue;
        }
        match acl.permission {
            permission::DENY if acl.operation == op || acl.operation == operation::ALL => {
                return false
            }
            permission::ALLOW if allow_implies(acl.operation, op) => allowed = true,
            _ => {}
        }
    }
    allowed
}

/// Whether `principal` may write to at least one topic: Kafka's
/// `authorizeByResourceType(TOPIC, WRITE)`, which since KIP-679 lets a
/// producer get a producer id (InitProducerId without a transactional id)
/// instead of IDEMPOTENT_WRITE on the cluster. An ALLOW for WRITE (or ALL)
/// counts unless a DENY covers every topic it names; a tenant's bindings
/// count only within its prefix, where its default rights (`tenant_defaults`)
/// are an ALLOW on the whole prefix.
pub fn may_write_some_topic<'a>(
    acls: impl IntoIterator<Item = &'a AclBinding>,
    tenant_defaults: bool,
    principal: &Principal,
    host: &str,
) -> bool {
    if principal.super_user {
        return true;
    }
    let user = principal.kafka_principal();
    let writes: Vec<&AclBinding> = acls
        .into_iter()
        .filter(|a| {
            a.resource_type == resource_type::TOPIC
                && (a.operation == operation::WRITE || a.operation == operation::ALL)
                && a.applies_to(&user, host)
        })
        .collect();
    // Each ALLOW as the topics it names: (prefixed, name); a literal `*` is
    // every topic, the empty prefix.
    let mut allowed: Vec<(bool, String)> = writes
        .iter()
        .filter(|a| a.permission == permission::ALLOW)
        .filter_map(|a| match a.pattern_type {
            pattern_type::LITERAL if a.resource_name == WILDCARD => Some((true, String::new())),
            pattern_type::LITERAL => Some((false, a.resource_name.clone())),
            pattern_type::PREFIXED => Some((true, a.resource_name.clone())),
            _ => None,
        })
        .collect();
    if let Some(scope) = &principal.tenant {
        let prefix = scope.prefix();
        // Narrowed to the tenant's own topics, the only ones it can touch.
        allowed = allowed
            .into_iter()
            .filter_map(|(prefixed, name)| match prefixed {
                true if prefix.starts_with(name.as_str()) => Some((true, prefix.to_owned())),
                true if name.starts_with(prefix) => Some((true, name)),
                false if scope.owns(&name) => Some((false, name)),
                _ => None,
            })
            .collect();
        if tenant_defaults {
            allowed.push((true, prefix.to_owned()));
        }
    }
    let denied = |prefixed: bool, name: &str| {
        writes
            .iter()
            .filter(|a| a.permission == permission::DENY)
            .any(|d| match d.pattern_type {
                pattern_type::LITERAL => {
                    d.resource_name == WILDCARD || (!prefixed && d.resource_name == name)
                }
                pattern_type::PREFIXED => name.starts_with(d.resource_name.as_str()),
                _ => false,
            })
    };
    allowed
        .iter()
        .any(|(prefixed, name)| !denied(*prefixed, name))
}

/// Kafka's names of resource types, by code.
pub const RESOURCE_TYPE_NAMES: &[(i8, &str)] = &[
    (resource_type::ANY, "ANY"),
    (resource_type::TOPIC, "TOPIC"),
    (resource_type::GROUP, "GROUP"),
    (resource_type::CLUSTER, "CLUSTER"),
    (resource_type::TRANSACTIONAL_ID, "TRANSACTIONAL_ID"),
    (resource_type::DELEGATION_TOKEN, "DELEGATION_TOKEN"),
    (resource_type::USER, "USER"),
];

/// Kafka's names of pattern types, by code.
pub const PATTERN_TYPE_NAMES: &[(i8, &str)] = &[
    (pattern_type::ANY, "ANY"),
    (pattern_type::MATCH, "MATCH"),
    (pattern_type::LITERAL, "LITERAL"),
    (pattern_type::PREFIXED, "PREFIXED"),
];

/// Kafka's names of operations, by code.
pub const OPERATION_NAMES: &[(i8, &str)] = &[
    (operation::ANY, "ANY"),
    (operation::ALL, "ALL"),
    (operation::READ, "READ"),
    (operation::WRITE, "WRITE"),
    (operation::CREATE, "CREATE"),
    (operation::DELETE, "DELETE"),
    (operation::ALTER, "ALTER"),
    (operation::DESCRIBE, "DESCRIBE"),
    (operation::CLUSTER_ACTION, "CLUSTER_ACTION"),
    (operation::DESCRIBE_CONFIGS, "DESCRIBE_CONFIGS"),
    (operation::ALTER_CONFIGS, "ALTER_CONFIGS"),
    (operation::IDEMPOTENT_WRITE, "IDEMPOTENT_WRITE"),
    (operation::CREATE_TOKENS, "CREATE_TOKENS"),
    (operation::DESCRIBE_TOKENS, "DESCRIBE_TOKENS"),
];

/// Kafka's names of permission types, by code.
pub const PERMISSION_NAMES: &[(i8, &str)] = &[
    (permission::ANY, "ANY"),
    (permission::DENY, "DENY"),
    (permission::ALLOW, "ALLOW"),
];

/// The name of `code` in `table`, or the number.
pub fn name_of(table: &[(i8, &str)], code: i8) -> String {
    table
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, n)| (*n).to_owned())
        .unwrap_or_else(|| code.to_string())
}

/// The code of `name` in `table` (case and `-`/`_` insensitive).
pub fn code_of(table: &[(i8, &str)], name: &str) -> Option<i8> {
    let wanted = name.trim().replace('-', "_").to_ascii_uppercase();
    table.iter().find(|(_, n)| *n == wanted).map(|(c, _)| *c)
}

/// Tab-separated: resource type, name, pattern type, principal, host,
/// operation, permission (the `metrobus acl list` columns).
impl std::fmt::Display for AclBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            name_of(RESOURCE_TYPE_NAMES, self.resource_type),
            self.resource_name,
            name_of(PATTERN_TYPE_NAMES, self.pattern_type),
            self.principal,
            self.host,
            name_of(OPERATION_NAMES, self.operation),
            name_of(PERMISSION_NAMES, self.permission),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::TenantScope;

    fn binding(kind: i8, name: &str, pattern: i8, principal: &str, op: i8, perm: i8) -> AclBinding {
        AclBinding {
            resource_type: kind,
            resource_name: name.to_owned(),
            pattern_type: pattern,
            principal: principal.to_owned(),
            host: WILDCARD.to_owned(),
            operation: op,
            permission: perm,
        }
    }

    fn user(name: &str) -> Principal {
        let tenant = crate::tenant::tenant_of_user(name).map(|t| TenantScope::new(t).unwrap());
        Principal {
            name: name.to_owned(),
            tenant,
            super_user: false,
        }
    }

    use operation::*;
    use pattern_type::{LITERAL, PREFIXED};
    use permission::{ALLOW, DENY};
    use resource_type::{GROUP, TOPIC};

    #[test]
    fn writing_some_topic_follows_kip_679() {
        let bob = user("bob");
        let some = |acls: &[AclBinding], tenant_defaults, who: &Principal| {
            may_write_some_topic(acls.iter(), tenant_defaults, who, "h")
        };
        // No binding: no topic to write to.
        assert!(!some(&[], true, &bob));
        let write_x = binding(TOPIC, "x", LITERAL, "User:bob", WRITE, ALLOW);
        assert!(some(std::slice::from_ref(&write_x), false, &bob));
        // READ is not WRITE; another principal's ALLOW is not bob's.
        assert!(!some(
            &[binding(TOPIC, "x", LITERAL, "User:bob", READ, ALLOW)],
            false,
            &bob
        ));
        assert!(!some(
            &[binding(TOPIC, "x", LITERAL, "User:carol", ALL, ALLOW)],
            false,
            &bob
        ));
        // A DENY covering what the ALLOW names takes it away; one covering
        // only part of a prefix does not.
        let deny_prefix = binding(TOPIC, "x", PREFIXED, "User:*", WRITE, DENY);
        assert!(!some(&[write_x.clone(), deny_prefix], false, &bob));
        let allow_logs = binding(TOPIC, "logs.", PREFIXED, "User:bob", WRITE, ALLOW);
        let deny_one = binding(TOPIC, "logs.a", LITERAL, "User:bob", WRITE, DENY);
        assert!(some(&[allow_logs.clone(), deny_one], false, &bob));
        let deny_all = binding(TOPIC, "*", LITERAL, "User:bob", ALL, DENY);
        assert!(!some(&[allow_logs, deny_all], false, &bob));
    }

    #[test]
    fn a_tenant_writes_within_its_prefix_only() {
        let alice = user("alice@acme");
        let some = |acls: &[AclBinding], tenant_defaults| {
            may_write_some_topic(acls.iter(), tenant_defaults, &alice, "h")
        };
        // Its default rights are on its whole prefix.
        assert!(some(&[], true));
        assert!(!some(&[], false));
        // Without defaults, an ALLOW counts only if it reaches its topics.
        let elsewhere = binding(TOPIC, "globex.x", LITERAL, "User:alice@acme", WRITE, ALLOW);
        assert!(!some(std::slice::from_ref(&elsewhere), false));
        let own = binding(TOPIC, "acme.x", LITERAL, "User:alice@acme", WRITE, ALLOW);
        assert!(some(std::slice::from_ref(&own), false));
        let everything = binding(TOPIC, "*", LITERAL, "User:alice@acme", WRITE, ALLOW);
        assert!(some(std::slice::from_ref(&everything), false));
        // A DENY on its prefix takes even the defaults away.
        let deny = binding(TOPIC, "acme.", PREFIXED, "User:alice@acme", WRITE, DENY);
        assert!(!some(&[deny], true));
    }

    #[test]
    fn super_users_may_do_everything() {
        let deny = binding(TOPIC, "*", LITERAL, "User:*", ALL, DENY);
        let admin = Principal {
            name: "admin".into(),
            tenant: None,
            super_user: true,
        };
        assert!(authorize(
            [&deny],
            true,
            &admin,
            "1.2.3.4",
            READ,
            TOPIC,
            "x"
        ));
        assert!(authorize(
            [],
            false,
            &Principal::anonymous(),
            "::1",
            DELETE,
            TOPIC,
            "x"
        ));
    }

    #[test]
    fn tenants_own_their_prefix_by_default() {
        let alice = user("alice@acme");
        assert!(authorize(
            [],
            true,
            &alice,
            "h",
            READ,
            TOPIC,
            "acme.metrics"
        ));
        assert!(authorize([], true, &alice, "h", READ, GROUP, "acme.g"));
        // Never another tenant's, an internal topic, or the bare prefix.
        assert!(!authorize(
            [],
            true,
            &alice,
            "h",
            READ,
            TOPIC,
            "globex.metrics"
        ));
        assert!(!authorize(
            [],
            true,
            &alice,
            "h",
            READ,
            TOPIC,
            "__consumer_offsets"
        ));
        assert!(!authorize([], true, &alice, "h", READ, TOPIC, "acme."));
        assert!(!authorize(
            [],
            true,
            &alice,
            "h",
            ALTER,
            resource_type::CLUSTER,
            CLUSTER_NAME
        ));
        // Not even with an ALLOW for everyone.
        let everything = binding(TOPIC, "*", LITERAL, "User:*", ALL, ALLOW);
        assert!(!authorize(
            [&everything],
            true,
            &alice,
            "h",
            READ,
            TOPIC,
            "globex.x"
        ));
        // Without the defaults, nothing until an ALLOW says so.
        assert!(!authorize(
            [],
            false,
            &alice,
            "h",
            READ,
            TOPIC,
            "acme.metrics"
        ));
        assert!(authorize(
            [&everything],
            false,
            &alice,
            "h",
            READ,
            TOPIC,
            "acme.metrics"
        ));
    }

    #[test]
    fn deny_wins_over_allow_and_defaults() {
        let bob = user("bob@acme");
        let alice = user("alice@acme");
        let deny = binding(TOPIC, "acme.payroll", LITERAL, "User:bob@acme", READ, DENY);
        let allow = binding(TOPIC, "acme.", PREFIXED, "User:bob@acme", ALL, ALLOW);
        let acls = [deny.clone(), allow];
        assert!(!authorize(
            &acls,
            true,
            &bob,
            "h",
            READ,
            TOPIC,
            "acme.payroll"
        ));
        assert!(!authorize(
            &acls,
            false,
            &bob,
            "h",
            READ,
            TOPIC,
            "acme.payroll"
        ));
        // Only READ is denied; DESCRIBE and WRITE are not.
        assert!(authorize(
            &acls,
            true,
            &bob,
            "h",
            WRITE,
            TOPIC,
            "acme.payroll"
        ));
        assert!(authorize(
            &acls,
            true,
            &bob,
            "h",
            DESCRIBE,
            TOPIC,
            "acme.payroll"
        ));
        assert!(authorize(
            &acls,
            true,
            &bob,
            "h",
            READ,
            TOPIC,
            "acme.payroll2"
        ));
        assert!(authorize(
            &acls,
            true,
            &alice,
            "h",
            READ,
            TOPIC,
            "acme.payroll"
        ));
        // A DENY ALL denies every operation; a wildcard principal everyone.
        let deny_all = binding(TOPIC, "acme.pay", PREFIXED, "User:*", ALL, DENY);
        for op in [READ, WRITE, DESCRIBE, DELETE] {
            assert!(!authorize(
                [&deny_all],
                true,
                &alice,
                "h",
                op,
                TOPIC,
                "acme.payroll"
            ));
        }
        assert!(authorize(
            [&deny_all],
            true,
            &alice,
            "h",
            READ,
            TOPIC,
            "acme.pa"
        ));
    }

    #[test]
    fn hosts_and_implications() {
        let carol = user("carol@acme");
        let mut allow = binding(TOPIC, "acme.t", LITERAL, "User:carol@acme", READ, ALLOW);
        allow.host = "10.0.0.1".into();
        assert!(authorize(
            [&allow],
            false,
            &carol,
            "10.0.0.1",
            READ,
            TOPIC,
            "acme.t"
        ));
        assert!(!authorize(
            [&allow],
            false,
            &carol,
            "10.0.0.2",
            READ,
            TOPIC,
            "acme.t"
        ));
        // READ implies DESCRIBE, not WRITE.
        assert!(authorize(
            [&allow],
            false,
            &carol,
            "10.0.0.1",
            DESCRIBE,
            TOPIC,
            "acme.t"
        ));
        assert!(!authorize(
            [&allow],
            false,
            &carol,
            "10.0.0.1",
            WRITE,
            TOPIC,
            "acme.t"
        ));
        let alter_configs = binding(TOPIC, "acme.t", LITERAL, "User:*", ALTER_CONFIGS, ALLOW);
        assert!(authorize(
            [&alter_configs],
            false,
            &carol,
            "h",
            DESCRIBE_CONFIGS,
            TOPIC,
            "acme.t"
        ));
        assert!(!authorize(
            [&alter_configs],
            false,
            &carol,
            "h",
            DESCRIBE,
            TOPIC,
            "acme.t"
        ));
        // The resource type must match.
        let group = binding(GROUP, "acme.t", LITERAL, "User:*", ALL, ALLOW);
        assert!(!authorize(
            [&group],
            false,
            &carol,
            "h",
            READ,
            TOPIC,
            "acme.t"
        ));
    }

    #[test]
    fn creation_validation() {
        let good = binding(TOPIC, "acme.t", LITERAL, "User:a@acme", READ, ALLOW);
        assert_eq!(good.invalid_reason(), None);
        let bad = |f: &dyn Fn(&mut AclBinding)| {
            let mut b = good.clone();
            f(&mut b);
            b.invalid_reason()
        };
        assert!(bad(&|b| b.pattern_type = pattern_type::ANY).is_some());
        assert!(bad(&|b| b.pattern_type = pattern_type::MATCH).is_some());
        assert!(bad(&|b| b.pattern_type = 9).is_some());
        assert!(bad(&|b| b.resource_type = resource_type::ANY).is_some());
        assert!(bad(&|b| b.resource_type = -3).is_some());
        assert!(bad(&|b| b.operation = ANY).is_some());
        assert!(bad(&|b| b.operation = UNKNOWN).is_some());
        assert!(bad(&|b| b.operation = 99).is_some());
        assert!(bad(&|b| b.permission = permission::ANY).is_some());
        assert!(bad(&|b| b.principal = "alice".into()).is_some());
        assert!(bad(&|b| b.principal = "User:".into()).is_some());
        assert!(bad(&|b| b.host = "example.com".into()).is_some());
        assert!(bad(&|b| b.resource_name = String::new()).is_some());
        assert!(bad(&|b| {
            b.resource_type = resource_type::CLUSTER;
            b.resource_name = "x".into()
        })
        .is_some());
        assert_eq!(bad(&|b| b.host = "::1".into()), None);
    }

    #[test]
    fn filters_match_like_kafka() {
        let literal = binding(TOPIC, "acme.t", LITERAL, "User:a@acme", READ, ALLOW);
        let wildcard = binding(TOPIC, "*", LITERAL, "User:a@acme", READ, ALLOW);
        let prefixed = binding(TOPIC, "acme.", PREFIXED, "User:a@acme", READ, DENY);
        let group = binding(GROUP, "acme.t", LITERAL, "User:b@acme", WRITE, ALLOW);
        let all = [&literal, &wildcard, &prefixed, &group];
        let count = |f: &AclFilter| all.iter().filter(|b| f.matches(b)).count();
        assert_eq!(count(&AclFilter::any()), 4);
        let mut f = AclFilter::any();
        f.resource_type = TOPIC;
        assert_eq!(count(&f), 3);
        // ANY pattern with a name: exact names only.
        f.resource_name = Some("acme.t".into());
        assert_eq!(count(&f), 1);
        // MATCH: every binding that applies to the name.
        f.pattern_type = pattern_type::MATCH;
        assert_eq!(count(&f), 3);
        f.resource_name = Some("other".into());
        assert_eq!(count(&f), 1);
        // A specific pattern type: that type, exact name.
        f.pattern_type = PREFIXED;
        f.resource_name = Some("acme.".into());
        assert_eq!(count(&f), 1);
        f.resource_name = Some("acme.t".into());
        assert_eq!(count(&f), 0);
        let mut f = AclFilter::any();
        f.principal = Some("User:b@acme".into());
        assert_eq!(count(&f), 1);
        let mut f = AclFilter::any();
        f.permission = DENY;
        assert_eq!(count(&f), 1);
        let mut f = AclFilter::any();
        f.operation = READ;
        f.host = Some("*".into());
        assert_eq!(count(&f), 3);
        // Unknown codes are refused, ANY/MATCH are fine.
        assert_eq!(AclFilter::any().invalid_reason(), None);
        for change in [
            |f: &mut AclFilter| f.resource_type = resource_type::UNKNOWN,
            |f: &mut AclFilter| f.pattern_type = pattern_type::UNKNOWN,
            |f: &mut AclFilter| f.operation = UNKNOWN,
            |f: &mut AclFilter| f.permission = permission::UNKNOWN,
            |f: &mut AclFilter| f.permission = 7,
        ] {
            let mut f = AclFilter::any();
            change(&mut f);
            assert!(f.invalid_reason().is_some(), "{f:?}");
        }
    }
}
