//! Kafka APIs: one file per API translating wire types to domain calls and
//! back; one dispatch `match`; one supported-versions table ([`versions`]).
//! Handlers hold no storage logic.

pub mod acls;
pub mod alter_configs;
pub mod api_versions;
pub mod client_quotas;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sasl;
pub mod sync_group;
pub mod transactions;
pub mod user_scram_credentials;
pub mod versions;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};
use tracing::warn;

use crate::broker::Broker;
use crate::tenant::rewrite::{ScopeRequest, ScopeResponse, Substitutions};

/// What the connection knows about a request besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: String,
    pub peer: SocketAddr,
    /// The name of the listener it arrived on: answers name that
    /// listener's addresses.
    pub listener: Arc<str>,
    /// Who sent it: fixed when the connection authenticated.
    pub principal: Arc<crate::tenant::Principal>,
    /// The connection's throttle: a request over its client's quota mutes
    /// the connection through it.
    pub mute: Arc<ConnectionMute>,
}

/// Until when a connection reads no further request (KIP-219: the broker
/// answers a throttled request at once with `throttle_time_ms`, then stops
/// reading from the client for that long). Shared by the connection's
/// reader, which waits on it before handling the next frame, and its
/// requests, which extend it; lock-free, so nothing holds a lock across an
/// await.
#[derive(Debug)]
pub struct ConnectionMute {
    base: std::time::Instant,
    until_ms: std::sync::atomic::AtomicU64,
}

impl Default for ConnectionMute {
    fn default() -> Self {
        Self {
            base: std::time::Instant::now(),
            until_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl ConnectionMute {
    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// Mutes the connection for `ms` from now (a longer mute in force
    /// stays).
    pub fn mute_for(&self, ms: u64) {
        if ms > 0 {
            let until = self.now_ms().saturating_add(ms);
            let _ = self
                .until_ms
                .fetch_max(until, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// How long the connection stays muted, if it is.
    pub fn remaining(&self) -> Option<std::time::Duration> {
        let until = self.until_ms.load(std::sync::atomic::Ordering::Acquire);
        let now = self.now_ms();
        (until > now).then(|| std::time::Duration::from_millis(until - now))
    }
}

/// Records `value` against the quota `key` that applies to the request's
/// client; a client over it has its connection muted and the throttle time
/// counted. Returns the throttle time in ms (0: not throttled).
pub(crate) fn record_quota(
    broker: &Broker,
    context: &RequestContext,
    key: crate::tenant::quota::QuotaKey,
    value: f64,
) -> u64 {
    let image = broker.image();
    let ms = broker.quotas.record(
        &image.client_quotas,
        key,
        &context.principal,
        &context.client_id,
        value,
    );
    throttle(context, key, ms);
    ms
}

/// Mutes the connection for `ms` and counts it.
pub(crate) fn throttle(context: &RequestContext, key: crate::tenant::quota::QuotaKey, ms: u64) {
    if ms > 0 {
        context.mute.mute_for(ms);
        crate::metrics::TENANT_THROTTLE_TIME_SECONDS_TOTAL
            .with_label_values(&[
                crate::tenant::quota::tenant_label(&context.principal),
                key.label(),
            ])
            .inc_by(ms as f64 / 1000.0);
    }
}

impl RequestContext {
    /// Whether the principal may do `op` (Kafka's AclOperation code) on
    /// resource `name` (an internal name) of type `kind` (Kafka's
    /// ResourceType code), by the image's ACLs; see
    /// [`crate::tenant::acl::authorize`]. Super users never scan the ACLs.
    /// Handlers call this once per resource of a request.
    pub fn authorize(
        &self,
        image: &crate::cluster::metadata::MetadataImage,
        op: i8,
        kind: i8,
        name: &str,
    ) -> bool {
        if self.principal.super_user {
            return true;
        }
        crate::tenant::acl::authorize(
            image.acls.iter(),
            image.broker_config.tenant_default_acls_enable,
            &self.principal,
            &self.acl_host(image),
            op,
            kind,
            name,
        )
    }

    /// Whether the principal may write to at least one topic (KIP-679);
    /// see [`crate::tenant::acl::may_write_some_topic`].
    pub fn may_write_some_topic(&self, image: &crate::cluster::metadata::MetadataImage) -> bool {
        self.principal.super_user
            || crate::tenant::acl::may_write_some_topic(
                image.acls.iter(),
                image.broker_config.tenant_default_acls_enable,
                &self.principal,
                &self.acl_host(image),
            )
    }

    /// The peer's address as ACLs name it (an IPv4 client on a dual-stack
    /// socket as IPv4), only when there are ACLs to compare it with.
    fn acl_host(&self, image: &crate::cluster::metadata::MetadataImage) -> String {
        if image.acls.is_empty() {
            String::new()
        } else {
            self.peer.ip().to_canonical().to_string()
        }
    }

    /// [`Self::authorize`] on a topic.
    pub fn may_topic(
        &self,
        image: &crate::cluster::metadata::MetadataImage,
        op: i8,
        name: &str,
    ) -> bool {
        self.authorize(image, op, crate::tenant::acl::resource_type::TOPIC, name)
    }

    /// [`Self::authorize`] on a group.
    pub fn may_group(
        &self,
        image: &crate::cluster::metadata::MetadataImage,
        op: i8,
        name: &str,
    ) -> bool {
        self.authorize(image, op, crate::tenant::acl::resource_type::GROUP, name)
    }
}

/// What a request produces for its connection.
#[derive(Debug)]
pub enum Outcome {
    /// The encoded response body (the connection adds the header).
    Respond(Bytes),
    /// No response is sent (Produce with acks=0).
    NoResponse,
    /// The connection must be closed, for the reason given.
    Close(String),
}

/// A request in progress.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Encodes a response body, closing the connection if that fails (it only
/// can for a value the version cannot carry: a broker bug, logged).
pub(crate) fn encode<R: Encodable>(response: &R, version: i16) -> Outcome {
    let mut buffer = BytesMut::new();
    match response.encode(&mut buffer, version) {
        Ok(()) => Outcome::Respond(buffer.freeze()),
        Err(e) => {
            warn!(error = %e, version, "response encoding failed");
            Outcome::Close(format!("response encoding failed: {e}"))
        }
    }
}

/// Decodes the request, runs its handler's synchronous part now, and
/// returns the rest as a future. A tenant's request is rewritten to
/// internal names right after decoding and its response back to the
/// tenant's names before encoding ([`crate::tenant::rewrite`]); anyone
/// else's goes through untouched.
fn run<Req, Resp, Fut>(
    broker: &Arc<Broker>,
    context: &RequestContext,
    mut body: Bytes,
    handler: impl FnOnce(Req) -> Fut,
) -> Result<ResponseFuture, String>
where
    Req: Decodable + ScopeRequest,
    Resp: Encodable + ScopeResponse + Send + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    let Some(scope) = &context.principal.tenant else {
        return run_unscoped(context, body, handler);
    };
    let version = context.api_version;
    let mut request = Req::decode(&mut body, version).map_err(|e| e.to_string())?;
    let mut subst = Substitutions::default();
    request.scope_in(scope, &broker.image(), &mut subst);
    let response = handler(request);
    let principal = context.principal.clone();
    Ok(Box::pin(async move {
        let mut response = response.await;
        if let Some(scope) = &principal.tenant {
            response.scope_out(scope, &subst);
        }
        encode(&response, version)
    }))
}

/// [`run`] for APIs that carry no tenant's names: no rewriting.
fn run_unscoped<Req, Resp, Fut>(
    context: &RequestContext,
    mut body: Bytes,
    handler: impl FnOnce(Req) -> Fut,
) -> Result<ResponseFuture, String>
where
    Req: Decodable,
    Resp: Encodable + Send + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    let version = context.api_version;
    let request = Req::decode(&mut body, version).map_err(|e| e.to_string())?;
    let response = handler(request);
    Ok(Box::pin(async move { encode(&response.await, version) }))
}

/// Routes a decoded header's body to its API. Errors mean the body did not
/// decode: the connection is closed, as Kafka does.
pub fn dispatch(
    broker: &Arc<Broker>,
    context: &RequestContext,
    body: Bytes,
) -> Result<ResponseFuture, String> {
    let b = broker.clone();
    let c = context.clone();
    match context.api_key {
        ApiKey::Produce => produce::dispatch(broker, context, body),
        ApiKey::Fetch => run(broker, context, body, move |r| fetch::handle(b, c, r)),
        ApiKey::ListOffsets => run(broker, context, body, move |r| {
            list_offsets::handle(b, c, r)
        }),
        ApiKey::Metadata => run(broker, context, body, move |r| metadata::handle(b, c, r)),
        ApiKey::ApiVersions => run(broker, context, body, move |r| api_versions::handle(c, r)),
        ApiKey::CreateTopics => run(broker, context, body, move |r| {
            create_topics::handle(b, c, r)
        }),
        ApiKey::DeleteTopics => run(broker, context, body, move |r| {
            delete_topics::handle(b, c, r)
        }),
        ApiKey::CreatePartitions => run(broker, context, body, move |r| {
            create_partitions::handle(b, c, r)
        }),
        ApiKey::DescribeConfigs => run(broker, context, body, move |r| {
            describe_configs::handle(b, c, r)
        }),
        ApiKey::AlterConfigs => run(broker, context, body, move |r| {
            alter_configs::handle(b, c, r)
        }),
        ApiKey::IncrementalAlterConfigs => run(broker, context, body, move |r| {
            incremental_alter_configs::handle(b, c, r)
        }),
        ApiKey::DeleteRecords => run(broker, context, body, move |r| {
            delete_records::handle(b, c, r)
        }),
        ApiKey::DescribeCluster => run(broker, context, body, move |r| {
            describe_cluster::handle(b, c, r)
        }),
        ApiKey::OffsetForLeaderEpoch => run(broker, context, body, move |r| {
            offset_for_leader_epoch::handle(b, c, r)
        }),
        ApiKey::FindCoordinator => run(broker, context, body, move |r| {
            find_coordinator::handle(b, c, r)
        }),
        ApiKey::JoinGroup => run(broker, context, body, move |r| join_group::handle(b, c, r)),
        ApiKey::SyncGroup => run(broker, context, body, move |r| sync_group::handle(b, c, r)),
        ApiKey::Heartbeat => run(broker, context, body, move |r| heartbeat::handle(b, c, r)),
        ApiKey::LeaveGroup => run(broker, context, body, move |r| leave_group::handle(b, c, r)),
        ApiKey::OffsetCommit => run(broker, context, body, move |r| {
            offset_commit::handle(b, c, r)
        }),
        ApiKey::OffsetFetch => run(broker, context, body, move |r| {
            offset_fetch::handle(b, c, r)
        }),
        ApiKey::DescribeGroups => run(broker, context, body, move |r| {
            describe_groups::handle(b, c, r)
        }),
        ApiKey::ListGroups => run(broker, context, body, move |r| list_groups::handle(b, c, r)),
        ApiKey::DeleteGroups => run(broker, context, body, move |r| {
            delete_groups::handle(b, c, r)
        }),
        ApiKey::OffsetDelete => run(broker, context, body, move |r| {
            offset_delete::handle(b, c, r)
        }),
        ApiKey::InitProducerId => run(broker, context, body, move |r| {
            init_producer_id::handle(b, c, r)
        }),
        ApiKey::AddPartitionsToTxn => run(broker, context, body, move |r| {
            transactions::handle_add_partitions(b, c, r)
        }),
        ApiKey::AddOffsetsToTxn => run(broker, context, body, move |r| {
            transactions::handle_add_offsets(b, c, r)
        }),
        ApiKey::EndTxn => run(broker, context, body, move |r| {
            transactions::handle_end(b, c, r)
        }),
        ApiKey::TxnOffsetCommit => run(broker, context, body, move |r| {
            transactions::handle_txn_offset_commit(b, c, r)
        }),
        // These name no tenant's resource: SASL steps reach the dispatch
        // only off SASL listeners, and the credential APIs refuse anyone
        // but super users.
        ApiKey::SaslHandshake => run_unscoped(context, body, sasl::handle_handshake),
        ApiKey::SaslAuthenticate => run_unscoped(context, body, sasl::handle_authenticate),
        ApiKey::CreateAcls => run_unscoped(context, body, move |r| acls::handle_create(b, c, r)),
        ApiKey::DescribeAcls => {
            run_unscoped(context, body, move |r| acls::handle_describe(b, c, r))
        }
        ApiKey::DeleteAcls => run_unscoped(context, body, move |r| acls::handle_delete(b, c, r)),
        ApiKey::DescribeUserScramCredentials => run_unscoped(context, body, move |r| {
            user_scram_credentials::handle_describe(b, c, r)
        }),
        ApiKey::AlterUserScramCredentials => run_unscoped(context, body, move |r| {
            user_scram_credentials::handle_alter(b, c, r)
        }),
        // Quota entities name users, client ids and tenants, never a
        // tenant's resources; only super users may use these.
        ApiKey::DescribeClientQuotas => run_unscoped(context, body, move |r| {
            client_quotas::handle_describe(b, c, r)
        }),
        ApiKey::AlterClientQuotas => {
            run_unscoped(context, body, move |r| client_quotas::handle_alter(b, c, r))
        }
        other => Err(format!("{other:?} is not implemented")),
    }
}

/// Finds a request's topic by id (the APIs' versions that address topics by
/// UUID) or by name, with the error an unknown one gets in that form.
pub(crate) fn resolve_topic<'a>(
    image: &'a crate::cluster::metadata::MetadataImage,
    by_id: bool,
    name: &str,
    id: &uuid::Uuid,
) -> Result<&'a Arc<crate::cluster::topic_record::TopicRecord>, kafka_protocol::error::ResponseError>
{
    use kafka_protocol::error::ResponseError;
    if by_id {
        image.topic_by_id(id).ok_or(ResponseError::UnknownTopicId)
    } else {
        image
            .topic(name)
            .ok_or(ResponseError::UnknownTopicOrPartition)
    }
}

/// A wire topic name from a string.
pub(crate) fn topic_name(name: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(str_bytes(name))
}

/// A wire string from a string.
pub(crate) fn str_bytes(s: &str) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.to_owned())
}

/// Counts an error code returned by an API, for `/metrics`.
pub(crate) fn count_error(api: ApiKey, code: i16) {
    if code != 0 {
        crate::metrics::REQUEST_ERRORS_TOTAL
            .with_label_values(&[versions::api_name(api), &code.to_string()])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectionMute;
    use std::time::Duration;

    #[test]
    fn a_mute_extends_and_expires() {
        let mute = ConnectionMute::default();
        assert!(mute.remaining().is_none());
        mute.mute_for(0);
        assert!(mute.remaining().is_none());
        mute.mute_for(5_000);
        let long = mute.remaining().expect("muted");
        assert!(long > Duration::from_millis(4_000), "{long:?}");
        // A shorter mute does not cut a longer one short.
        mute.mute_for(10);
        assert!(mute.remaining().expect("muted") > Duration::from_millis(4_000));
        let short = ConnectionMute::default();
        short.mute_for(20);
        std::thread::sleep(Duration::from_millis(40));
        assert!(short.remaining().is_none());
    }
}
