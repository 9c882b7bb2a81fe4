//! Client quotas: Kafka's entity model (`user`, `client-id`) plus our
//! `tenant` entity, the pure resolution of which quota applies to a
//! request, and [`ClientQuotaManager`], which measures rates the way
//! Kafka does and answers how long a client must be throttled.
//!
//! # Entities and keys
//!
//! A quota entity is one of `[user]`, `[client-id]`, `[user, client-id]`
//! (Kafka's) or `[tenant]` (a Metrobus extension); each name is either a
//! name or `<default>` (`None`). Keys: `producer_byte_rate`,
//! `consumer_byte_rate` (bytes per second) and `request_percentage` (the
//! percentage of one request-handling thread's time, as in Kafka). Quotas
//! live in the metadata log ([`crate::cluster::records::MetadataRecord::AlterClientQuotas`]).
//!
//! # Which quota applies
//!
//! Each key resolves separately; the first entity below that has a value
//! for the key wins (Kafka's order, with the tenant levels inserted):
//!
//! 1. `user=U, client-id=C`
//! 2. `user=U, client-id=<default>`
//! 3. `user=U`
//! 4. `tenant=T` (the principal's tenant)
//! 5. `user=<default>, client-id=C`
//! 6. `user=<default>, client-id=<default>`
//! 7. `user=<default>`
//! 8. `tenant=<default>`
//! 9. `client-id=C`
//! 10. `client-id=<default>`
//!
//! That is: a quota naming the user beats its tenant's; a quota naming the
//! tenant beats any default; at the same level of naming, Kafka's user
//! entity beats the tenant. Super users and anonymous principals have no
//! tenant and skip levels 4 and 8.
//!
//! The budget is shared by everything the winning entity covers, as in
//! Kafka: a `user=U` quota is one budget for all of U's client ids; a
//! `tenant=T` quota (named or default) is **one budget for all of T's
//! users and client ids together**; a `<default>` part gives each actual
//! name its own budget (`user=<default>` is a budget per user).
//!
//! # Measuring and throttling
//!
//! As Kafka's `ClientQuotaManager`: a rate over `quota.window.num` samples
//! of `quota.window.size.seconds` each (the elapsed time is at least
//! `num - 1` whole windows, so a new client's first burst is averaged over
//! that span). After recording a value, if the rate is above the quota the
//! client is throttled for `(rate - quota) / quota * window` ms: the delay
//! that brings the rate back to the quota if nothing more is recorded.
//! Byte rates are not capped (Kafka's `ClientQuotaManager.throttleTime`);
//! request time is capped at one window (`quota.window.size.seconds`, as
//! Kafka's `ClientRequestQuotaManager` bounds it). The broker
//! answers at once with `throttle_time_ms` and then reads nothing more from
//! the connection until the time has passed (KIP-219).
//!
//! What is recorded, and when:
//!
//! - Produce: the request's record-batch bytes, when the request is
//!   dispatched (Kafka records after the append, but it handles one request
//!   per connection at a time; ours are pipelined, and librdkafka keeps up
//!   to a million in flight, so recording later would let every frame
//!   already in the socket through before the mute). The throttle time is
//!   in the response.
//! - Fetch: the records' bytes, before answering; a throttled fetch is
//!   answered empty with the throttle time and its bytes are taken back,
//!   as in Kafka.
//! - Request time (`request_percentage`): the time spent dispatching the
//!   request and polling its future (not the time it waits, such as a long
//!   poll), as a percentage of one thread's second, recorded once the
//!   request is done: it mutes the connection, but its throttle time is
//!   not in that request's response (measured too late for it).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::tenant::Principal;

/// A part of a quota entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntityType {
    User,
    ClientId,
    /// A Metrobus extension: all of a tenant's users together.
    Tenant,
}

impl EntityType {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "user" => Some(Self::User),
            "client-id" => Some(Self::ClientId),
            "tenant" => Some(Self::Tenant),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::ClientId => "client-id",
            Self::Tenant => "tenant",
        }
    }
}

/// A quota entity: its parts sorted by type, at most one of each, in one
/// of the combinations [`QuotaEntity::new`] accepts. A name of `None` is
/// the `<default>` entity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity(Vec<(EntityType, Option<String>)>);

impl QuotaEntity {
    /// Checks and normalizes an entity: `[user]`, `[client-id]`, `[user,
    /// client-id]` or `[tenant]` (with a valid tenant name, or default).
    pub fn new(mut parts: Vec<(EntityType, Option<String>)>) -> Result<Self, String> {
        parts.sort_by_key(|(t, _)| *t);
        let types: Vec<EntityType> = parts.iter().map(|(t, _)| *t).collect();
        match types.as_slice() {
            [EntityType::User] | [EntityType::ClientId] => {}
            [EntityType::User, EntityType::ClientId] => {}
            [EntityType::Tenant] => {
                if let Some(name) = &parts[0].1 {
                    crate::tenant::validate_tenant_name(name)
                        .map_err(|e| format!("invalid tenant entity: {e}"))?;
                }
            }
            [] => return Err("Invalid empty client quota entity".to_owned()),
            _ => {
                let mut seen = types.clone();
                seen.dedup();
                return Err(if seen.len() != types.len() {
                    "Duplicate entity type in client quota entity".to_owned()
                } else {
                    format!(
                        "Invalid quota entity combination: {}",
                        types
                            .iter()
                            .map(|t| t.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
            }
        }
        Ok(Self(parts))
    }

    pub fn parts(&self) -> &[(EntityType, Option<String>)] {
        &self.0
    }

    /// The part of type `t`: `Some(None)` for a default part.
    pub fn get(&self, t: EntityType) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(part, _)| *part == t)
            .map(|(_, name)| name.as_deref())
    }

    fn of(parts: &[(EntityType, Option<&str>)]) -> Self {
        Self(
            parts
                .iter()
                .map(|(t, n)| (*t, n.map(str::to_owned)))
                .collect(),
        )
    }
}

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum QuotaKey {
    ProducerByteRate,
    ConsumerByteRate,
    RequestPercentage,
}

impl QuotaKey {
    pub const ALL: [QuotaKey; 3] = [
        Self::ProducerByteRate,
        Self::ConsumerByteRate,
        Self::RequestPercentage,
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProducerByteRate => "producer_byte_rate",
            Self::ConsumerByteRate => "consumer_byte_rate",
            Self::RequestPercentage => "request_percentage",
        }
    }

    /// The metric label of the quota.
    pub fn label(self) -> &'static str {
        match self {
            Self::ProducerByteRate => "produce",
            Self::ConsumerByteRate => "fetch",
            Self::RequestPercentage => "request",
        }
    }

    /// Checks a value to set: positive and finite; byte rates are whole
    /// numbers (Kafka's LONG type).
    pub fn validate(self, value: f64) -> Result<(), String> {
        if !value.is_finite() || value <= 0.0 {
            return Err(format!(
                "Illegal value {value} for quota {}: must be a positive number",
                self.as_str()
            ));
        }
        if self != Self::RequestPercentage && (value.fract() != 0.0 || value > i64::MAX as f64) {
            return Err(format!(
                "Cannot set quota {} of type LONG to non-integral value {value}",
                self.as_str()
            ));
        }
        Ok(())
    }
}

/// A quota value in a record: compared by bits, so records stay `Eq`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct QuotaValue(pub f64);

impl PartialEq for QuotaValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for QuotaValue {}

/// One quota set (`Some`) or removed (`None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaChange {
    pub entity: QuotaEntity,
    pub key: QuotaKey,
    pub value: Option<QuotaValue>,
}

/// The quotas in force, by entity and key.
pub type ClientQuotas = BTreeMap<QuotaEntity, BTreeMap<QuotaKey, f64>>;

/// Applies one change (pure; used by the metadata image). Returns a Kafka
/// error code: a value that is not a valid quota is refused again here,
/// whatever the proposer checked. Removing an absent quota is not an error.
pub fn apply_change(quotas: &mut ClientQuotas, change: &QuotaChange) -> i16 {
    match change.value {
        Some(QuotaValue(value)) => {
            if change.key.validate(value).is_err() {
                return kafka_protocol::error::ResponseError::InvalidRequest.code();
            }
            let _ = quotas
                .entry(change.entity.clone())
                .or_default()
                .insert(change.key, value);
        }
        None => {
            if let Some(values) = quotas.get_mut(&change.entity) {
                let _ = values.remove(&change.key);
                if values.is_empty() {
                    let _ = quotas.remove(&change.entity);
                }
            }
        }
    }
    0
}

/// Whose usage a quota counts: every request resolved to the same budget
/// shares one rate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Budget {
    /// All of a tenant's users and clients.
    Tenant(String),
    /// Kafka's sensor tags: the user and client id the winning entity
    /// distinguishes (empty when it covers all of them).
    Client { user: String, client_id: String },
}

/// The quota that applies to a request, and the budget it counts against.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedQuota {
    pub bound: f64,
    pub budget: Budget,
}

/// Which quota for `key` applies to `user` (of `tenant`) with `client_id`;
/// `None` when no entity has one (no limit). See the module doc.
pub fn resolve(
    quotas: &ClientQuotas,
    key: QuotaKey,
    user: &str,
    tenant: Option<&str>,
    client_id: &str,
) -> Option<ResolvedQuota> {
    use EntityType::{ClientId, Tenant, User};
    if quotas.is_empty() {
        return None;
    }
    let per_client = || Budget::Client {
        user: user.to_owned(),
        client_id: client_id.to_owned(),
    };
    let per_user = || Budget::Client {
        user: user.to_owned(),
        client_id: String::new(),
    };
    let per_client_id = || Budget::Client {
        user: String::new(),
        client_id: client_id.to_owned(),
    };
    let mut candidates: Vec<(QuotaEntity, Budget)> = vec![
        (
            QuotaEntity::of(&[(User, Some(user)), (ClientId, Some(client_id))]),
            per_client(),
        ),
        (
            QuotaEntity::of(&[(User, Some(user)), (ClientId, None)]),
            per_client(),
        ),
        (QuotaEntity::of(&[(User, Some(user))]), per_user()),
    ];
    if let Some(tenant) = tenant {
        candidates.push((
            QuotaEntity::of(&[(Tenant, Some(tenant))]),
            Budget::Tenant(tenant.to_owned()),
        ));
    }
    candidates.extend([
        (
            QuotaEntity::of(&[(User, None), (ClientId, Some(client_id))]),
            per_client(),
        ),
        (
            QuotaEntity::of(&[(User, None), (ClientId, None)]),
            per_client(),
        ),
        (QuotaEntity::of(&[(User, None)]), per_user()),
    ]);
    if let Some(tenant) = tenant {
        candidates.push((
            QuotaEntity::of(&[(Tenant, None)]),
            Budget::Tenant(tenant.to_owned()),
        ));
    }
    candidates.extend([
        (
            QuotaEntity::of(&[(ClientId, Some(client_id))]),
            per_client_id(),
        ),
        (QuotaEntity::of(&[(ClientId, None)]), per_client_id()),
    ]);
    candidates.into_iter().find_map(|(entity, budget)| {
        quotas
            .get(&entity)
            .and_then(|values| values.get(&key))
            .map(|&bound| ResolvedQuota { bound, budget })
    })
}

/// `quota.window.num` and `quota.window.size.seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaConfig {
    pub samples: usize,
    pub window_ms: u64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            samples: 11,
            window_ms: 1000,
        }
    }
}

impl QuotaConfig {
    /// The whole measured span: samples older than this count nothing.
    pub fn span_ms(&self) -> u64 {
        self.window_ms * self.samples as u64
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    start_ms: u64,
    value: f64,
}

/// Kafka's `Rate` over a `SampledStat`: per-second rate of the values
/// recorded in the last `samples` windows.
#[derive(Debug, Clone)]
pub struct Rate {
    samples: Vec<Sample>,
    current: usize,
}

impl Rate {
    pub fn new(now_ms: u64) -> Self {
        Self {
            samples: vec![Sample {
                start_ms: now_ms,
                value: 0.0,
            }],
            current: 0,
        }
    }

    pub fn record(&mut self, config: &QuotaConfig, value: f64, now_ms: u64) {
        let complete =
            now_ms.saturating_sub(self.samples[self.current].start_ms) >= config.window_ms;
        if complete {
            self.current = (self.current + 1) % config.samples.max(1);
            let fresh = Sample {
                start_ms: now_ms,
                value: 0.0,
            };
            if self.current >= self.samples.len() {
                self.samples.push(fresh);
            } else {
                self.samples[self.current] = fresh;
            }
        }
        self.samples[self.current].value += value;
    }

    /// Resets samples older than the whole span (they count nothing).
    fn purge(&mut self, config: &QuotaConfig, now_ms: u64) {
        let expire = config.span_ms();
        for sample in &mut self.samples {
            if now_ms.saturating_sub(sample.start_ms) >= expire {
                *sample = Sample {
                    start_ms: now_ms,
                    value: 0.0,
                };
            }
        }
    }

    /// The span the rate is measured over, in ms: since the oldest sample
    /// began, but at least `samples - 1` whole windows (and at least 1 ms).
    pub fn window_ms(&mut self, config: &QuotaConfig, now_ms: u64) -> u64 {
        self.purge(config, now_ms);
        let oldest = self
            .samples
            .iter()
            .map(|s| s.start_ms)
            .min()
            .unwrap_or(now_ms);
        let mut elapsed = now_ms.saturating_sub(oldest);
        let full = elapsed / config.window_ms;
        let min_full = config.samples.saturating_sub(1) as u64;
        if full < min_full {
            elapsed += (min_full - full) * config.window_ms;
        }
        elapsed.max(1)
    }

    /// Per second.
    pub fn measure(&mut self, config: &QuotaConfig, now_ms: u64) -> f64 {
        let window = self.window_ms(config, now_ms);
        let total: f64 = self.samples.iter().map(|s| s.value).sum();
        total / (window as f64 / 1000.0)
    }

    fn last_ms(&self) -> u64 {
        self.samples[self.current].start_ms
    }
}

/// Kafka's throttle time for a rate above its bound: `(rate - bound) /
/// bound * window`; request time is capped at one window, as in Kafka.
pub fn throttle_ms(
    config: &QuotaConfig,
    key: QuotaKey,
    rate: f64,
    bound: f64,
    window_ms: u64,
) -> u64 {
    if rate <= bound || bound <= 0.0 {
        return 0;
    }
    let ms = ((rate - bound) / bound * window_ms as f64).round();
    // `as` saturates: an absurd rate gives u64::MAX, never a panic.
    let ms = ms as u64;
    match key {
        QuotaKey::RequestPercentage => ms.min(config.window_ms),
        QuotaKey::ProducerByteRate | QuotaKey::ConsumerByteRate => ms,
    }
}

/// Measures each budget's rates and answers throttle times.
#[derive(Debug)]
pub struct ClientQuotaManager {
    config: QuotaConfig,
    base: Instant,
    /// Never held across an await: every method is synchronous.
    rates: Mutex<Rates>,
}

#[derive(Debug, Default)]
struct Rates {
    by_budget: HashMap<(QuotaKey, Budget), Rate>,
    last_purge_ms: u64,
}

impl ClientQuotaManager {
    pub fn new(config: QuotaConfig) -> Self {
        Self {
            config,
            base: Instant::now(),
            rates: Mutex::new(Rates::default()),
        }
    }

    pub fn config(&self) -> &QuotaConfig {
        &self.config
    }

    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// Records `value` for a request of `principal` with `client_id` and
    /// answers how long to throttle it (0: within its quota or no quota).
    pub fn record(
        &self,
        quotas: &ClientQuotas,
        key: QuotaKey,
        principal: &Principal,
        client_id: &str,
        value: f64,
    ) -> u64 {
        let tenant = principal.tenant.as_ref().map(|t| t.tenant());
        let Some(quota) = resolve(quotas, key, &principal.name, tenant, client_id) else {
            return 0;
        };
        self.record_at(key, quota, value, self.now_ms())
    }

    /// Takes back a value recorded for a request whose answer was not sent
    /// (a throttled fetch answers empty, as in Kafka).
    pub fn unrecord(
        &self,
        quotas: &ClientQuotas,
        key: QuotaKey,
        principal: &Principal,
        client_id: &str,
        value: f64,
    ) {
        let tenant = principal.tenant.as_ref().map(|t| t.tenant());
        if let Some(quota) = resolve(quotas, key, &principal.name, tenant, client_id) {
            let _ = self.record_at(key, quota, -value, self.now_ms());
        }
    }

    pub(crate) fn record_at(
        &self,
        key: QuotaKey,
        quota: ResolvedQuota,
        value: f64,
        now_ms: u64,
    ) -> u64 {
        let config = self.config;
        let mut rates = match self.rates.lock() {
            Ok(rates) => rates,
            Err(poisoned) => poisoned.into_inner(),
        };
        // A budget idle for the whole span has a rate of zero: dropping it
        // loses nothing and bounds the map by the recently active clients.
        if now_ms.saturating_sub(rates.last_purge_ms) >= config.span_ms() {
            let span = config.span_ms();
            rates
                .by_budget
                .retain(|_, rate| now_ms.saturating_sub(rate.last_ms()) < span);
            rates.last_purge_ms = now_ms;
        }
        let rate = rates
            .by_budget
            .entry((key, quota.budget))
            .or_insert_with(|| Rate::new(now_ms));
        rate.record(&config, value, now_ms);
        let window = rate.window_ms(&config, now_ms);
        let observed = rate.measure(&config, now_ms);
        throttle_ms(&config, key, observed, quota.bound, window)
    }
}

/// The tenant label of a principal's metrics: its tenant, or `-`.
pub fn tenant_label(principal: &Principal) -> &str {
    principal.tenant.as_ref().map(|t| t.tenant()).unwrap_or("-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use EntityType::{ClientId, Tenant, User};

    fn set(quotas: &mut ClientQuotas, parts: &[(EntityType, Option<&str>)], value: f64) {
        let entity = QuotaEntity::new(
            parts
                .iter()
                .map(|(t, n)| (*t, n.map(str::to_owned)))
                .collect(),
        )
        .unwrap();
        let change = QuotaChange {
            entity,
            key: QuotaKey::ProducerByteRate,
            value: Some(QuotaValue(value)),
        };
        assert_eq!(apply_change(quotas, &change), 0);
    }

    fn bound(
        quotas: &ClientQuotas,
        user: &str,
        tenant: Option<&str>,
        client: &str,
    ) -> Option<(f64, Budget)> {
        resolve(quotas, QuotaKey::ProducerByteRate, user, tenant, client)
            .map(|q| (q.bound, q.budget))
    }

    fn client(user: &str, client_id: &str) -> Budget {
        Budget::Client {
            user: user.to_owned(),
            client_id: client_id.to_owned(),
        }
    }

    #[test]
    fn entities_are_checked_and_normalized() {
        let e = QuotaEntity::new(vec![(ClientId, Some("c".into())), (User, None)]).unwrap();
        assert_eq!(e.parts()[0].0, User);
        assert_eq!(e.get(User), Some(None));
        assert_eq!(e.get(ClientId), Some(Some("c")));
        assert!(QuotaEntity::new(vec![]).is_err());
        assert!(QuotaEntity::new(vec![(User, None), (User, Some("a".into()))]).is_err());
        assert!(QuotaEntity::new(vec![(Tenant, None), (User, None)]).is_err());
        assert!(QuotaEntity::new(vec![(Tenant, Some("a.b".into()))]).is_err());
        assert!(QuotaEntity::new(vec![(Tenant, Some("acme".into()))]).is_ok());
        assert_eq!(EntityType::parse("ip"), None);
    }

    #[test]
    fn values_are_checked() {
        let k = QuotaKey::ProducerByteRate;
        assert!(k.validate(1024.0).is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1.5] {
            assert!(k.validate(bad).is_err(), "{bad}");
        }
        assert!(QuotaKey::RequestPercentage.validate(12.5).is_ok());
        assert!(QuotaKey::RequestPercentage.validate(f64::NAN).is_err());
        let mut quotas = ClientQuotas::new();
        let change = QuotaChange {
            entity: QuotaEntity::new(vec![(User, None)]).unwrap(),
            key: k,
            value: Some(QuotaValue(f64::NAN)),
        };
        assert_ne!(apply_change(&mut quotas, &change), 0);
        assert!(quotas.is_empty());
    }

    #[test]
    fn removal_drops_the_entity() {
        let mut quotas = ClientQuotas::new();
        set(&mut quotas, &[(Tenant, Some("acme"))], 100.0);
        let remove = QuotaChange {
            entity: QuotaEntity::new(vec![(Tenant, Some("acme".into()))]).unwrap(),
            key: QuotaKey::ProducerByteRate,
            value: None,
        };
        assert_eq!(apply_change(&mut quotas, &remove), 0);
        assert!(quotas.is_empty());
        assert_eq!(apply_change(&mut quotas, &remove), 0);
    }

    #[test]
    fn kafka_precedence_with_tenants() {
        let mut q = ClientQuotas::new();
        assert_eq!(bound(&q, "alice@acme", Some("acme"), "app"), None);
        set(&mut q, &[(ClientId, None)], 10.0);
        assert_eq!(
            bound(&q, "alice@acme", Some("acme"), "app"),
            Some((10.0, client("", "app")))
        );
        set(&mut q, &[(ClientId, Some("app"))], 9.0);
        assert_eq!(
            bound(&q, "alice@acme", Some("acme"), "app"),
            Some((9.0, client("", "app")))
        );
        set(&mut q, &[(Tenant, None)], 8.0);
        assert_eq!(
            bound(&q, "alice@acme", Some("acme"), "app"),
            Some((8.0, Budget::Tenant("acme".into())))
        );
        // Super users have no tenant: the tenant levels are skipped.
        assert_eq!(
            bound(&q, "admin", None, "app"),
            Some((9.0, client("", "app")))
        );
        set(&mut q, &[(User, None)], 7.0);
        assert_eq!(
            bound(&q, "alice@acme", Some("acme"), "app"),
            Some((7.0, client("alice@acme", "")))
        );
        set(&mut q, &[(User, None), (ClientId, None)], 6.0);
        assert_eq!(
            bound(&q, "alice@acme", Some("acme"), "app"),
            Some((6.0, client("alice@acme", "app")))
        );
        set(&mut q, &[(User, None), (ClientId, Some("app"))], 5.0);
        assert_eq!(
            bound(&q, "alice@acme", Some("acme"), "app"),
            Some((5.0, client("alice@acme", "app")))
        );
        // A named tenant beats every default, and its users share it.
        set(&mut q, &[(Tenant, Some("acme"))], 4.0);
        assert_eq!(
            bound(&q, "alice@acme", Some("acme"), "app"),
            Some((4.0, Budget::Tenant("acme".into())))
        );
        assert_eq!(
            bound(&q, "carol@acme", Some("acme"), "other"),
            Some((4.0, Budget::Tenant("acme".into())))
        );
        // Another tenant still gets the defaults.
        assert_eq!(
            bound(&q, "bob@globex", Some("globex"), "app"),
            Some((5.0, client("bob@globex", "app")))
        );
        // A quota naming the user beats the tenant's.
        set(&mut q, &[(User, Some("alice@acme"))], 3.0);
        assert_eq!(
            bound(&q, "alice@acme", Some("acme"), "app"),
            Some((3.0, client("alice@acme", "")))
        );
        assert_eq!(
            bound(&q, "carol@acme", Some("acme"), "app"),
            Some((4.0, Budget::Tenant("acme".into())))
        );
        set(&mut q, &[(User, Some("alice@acme")), (ClientId, None)], 2.0);
        assert_eq!(
            bound(&q, "alice@acme", Some("acme"), "app"),
            Some((2.0, client("alice@acme", "app")))
        );
        set(
            &mut q,
            &[(User, Some("alice@acme")), (ClientId, Some("app"))],
            1.0,
        );
        assert_eq!(
            bound(&q, "alice@acme", Some("acme"), "app"),
            Some((1.0, client("alice@acme", "app")))
        );
        // Keys resolve separately.
        assert_eq!(
            resolve(
                &q,
                QuotaKey::ConsumerByteRate,
                "alice@acme",
                Some("acme"),
                "app"
            ),
            None
        );
    }

    const CONFIG: QuotaConfig = QuotaConfig {
        samples: 11,
        window_ms: 1000,
    };

    #[test]
    fn a_new_rate_spans_at_least_samples_minus_one_windows() {
        let mut rate = Rate::new(0);
        rate.record(&CONFIG, 20_000.0, 0);
        assert_eq!(rate.window_ms(&CONFIG, 0), 10_000);
        assert_eq!(rate.measure(&CONFIG, 0), 2_000.0);
        // Half a window later: still 10 full windows' minimum plus 0.5 s.
        assert_eq!(rate.window_ms(&CONFIG, 500), 10_500);
        // After the whole span, old samples count nothing.
        rate.record(&CONFIG, 1.0, 11_000);
        assert!(rate.measure(&CONFIG, 11_000) < 1.0);
    }

    #[test]
    fn throttle_time_is_kafkas() {
        let bytes = QuotaKey::ProducerByteRate;
        // Kafka: (observed - quota) / quota * window.
        assert_eq!(
            throttle_ms(&CONFIG, bytes, 2_000.0, 1_000.0, 10_000),
            10_000
        );
        assert_eq!(throttle_ms(&CONFIG, bytes, 1_100.0, 1_000.0, 10_000), 1_000);
        assert_eq!(throttle_ms(&CONFIG, bytes, 1_000.0, 1_000.0, 10_000), 0);
        assert_eq!(throttle_ms(&CONFIG, bytes, 500.0, 1_000.0, 10_000), 0);
        // Byte rates are not capped; request time is, at one window.
        assert_eq!(throttle_ms(&CONFIG, bytes, 31.0, 1.0, 10_000), 300_000);
        assert_eq!(throttle_ms(&CONFIG, bytes, f64::MAX, 1.0, 10_000), u64::MAX);
        let request = QuotaKey::RequestPercentage;
        assert_eq!(throttle_ms(&CONFIG, request, 31.0, 1.0, 10_000), 1_000);
        assert_eq!(throttle_ms(&CONFIG, request, 1.05, 1.0, 10_000), 500);
    }

    #[test]
    fn a_steady_client_converges_on_its_quota() {
        // A client that always sends again as soon as its throttle ends
        // gets about its quota.
        let config = QuotaConfig {
            samples: 3,
            window_ms: 1000,
        };
        let manager = ClientQuotaManager::new(config);
        let quota = ResolvedQuota {
            bound: 100_000.0,
            budget: Budget::Tenant("acme".into()),
        };
        let mut now = 0;
        let mut sent = 0.0;
        while now < 60_000 {
            let throttle =
                manager.record_at(QuotaKey::ProducerByteRate, quota.clone(), 16_384.0, now);
            sent += 16_384.0;
            now += throttle.max(5);
        }
        let rate = sent / 60.0;
        assert!((90_000.0..115_000.0).contains(&rate), "{rate}");
    }

    #[test]
    fn budgets_are_separate_and_unrecord_takes_back() {
        let manager = ClientQuotaManager::new(CONFIG);
        let acme = ResolvedQuota {
            bound: 1_000.0,
            budget: Budget::Tenant("acme".into()),
        };
        let globex = ResolvedQuota {
            bound: 1_000.0,
            budget: Budget::Tenant("globex".into()),
        };
        assert!(manager.record_at(QuotaKey::ProducerByteRate, acme.clone(), 20_000.0, 0) > 0);
        assert_eq!(
            manager.record_at(QuotaKey::ProducerByteRate, globex, 1_000.0, 0),
            0
        );
        assert_eq!(
            manager.record_at(QuotaKey::ConsumerByteRate, acme.clone(), 1_000.0, 0),
            0
        );
        // Taking the bytes back brings acme under its quota again.
        let _ = manager.record_at(QuotaKey::ProducerByteRate, acme.clone(), -20_000.0, 0);
        assert_eq!(
            manager.record_at(QuotaKey::ProducerByteRate, acme, 1_000.0, 0),
            0
        );
    }
}
