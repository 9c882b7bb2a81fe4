//! Rewriting a tenant's requests to internal names and the responses back.
//!
//! A tenant's client (a [`Principal`](super::Principal) with a
//! [`TenantScope`]) names things its own way (`metrics`); handlers,
//! storage and the coordinators only see internal names (`acme.metrics`).
//! The dispatch calls [`ScopeRequest::scope_in`] on every decoded request
//! of such a client and [`ScopeResponse::scope_out`] on its handler's
//! response before encoding it. Nothing else in the broker knows tenants'
//! names; super users and anonymous principals skip both calls.
//!
//! The rules, the same for every API:
//!
//! - Topic names, group ids and transactional ids in a request become
//!   internal names ([`TenantScope::to_internal`]); in a response they go
//!   back ([`TenantScope::to_external`]). Empty names stay empty.
//! - Nothing about a resource the tenant does not own leaves the broker.
//!   Responses that enumerate (Metadata for all topics, ListGroups,
//!   OffsetFetch of all of a group's topics) drop such entries. Fields that
//!   echo the request only ever hold the tenant's own names; should one
//!   hold another name all the same, it is blanked rather than shown.
//! - A topic id in a request that is not one of the tenant's topics (another
//!   tenant's, an internal topic's, or no topic at all) is replaced by a
//!   fresh random id, so the handler answers UNKNOWN_TOPIC_ID exactly as for
//!   an id that does not exist; [`Substitutions`] remembers the original,
//!   which the outbound rewrite puts back.
//! - Error messages lose the tenant's prefix
//!   ([`TenantScope::strip_message`]).
//! - Config resources: topics (and groups) are names to map; broker, broker
//!   logger and client metrics resources belong to the cluster, not to a
//!   tenant: they are taken out of the request and answered
//!   CLUSTER_AUTHORIZATION_FAILED in their place in the response.
//!
//! Member metadata and assignments (consumer protocol bytes) are opaque and
//! left alone, as are config values.

use std::collections::HashMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::{
    alter_configs_request, alter_configs_response, incremental_alter_configs_request,
    incremental_alter_configs_response, AddOffsetsToTxnRequest, AddOffsetsToTxnResponse,
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, AlterConfigsRequest,
    AlterConfigsResponse, ApiVersionsRequest, ApiVersionsResponse, CreatePartitionsRequest,
    CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, DeleteRecordsRequest, DeleteRecordsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeClusterRequest, DescribeClusterResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, DescribeGroupsRequest, DescribeGroupsResponse, EndTxnRequest,
    EndTxnResponse, FetchRequest, FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    HeartbeatRequest, HeartbeatResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, InitProducerIdRequest, InitProducerIdResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, ProduceRequest, ProduceResponse, SyncGroupRequest,
    SyncGroupResponse, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::cluster::metadata::MetadataImage;
use crate::tenant::TenantScope;

/// Kafka's ConfigResource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_BROKER_LOGGER: i8 = 8;
const RESOURCE_CLIENT_METRICS: i8 = 16;
const RESOURCE_GROUP: i8 = 32;

/// FindCoordinator key types whose keys are names a tenant owns.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Kafka's message for CLUSTER_AUTHORIZATION_FAILED.
const CLUSTER_AUTHORIZATION_MESSAGE: &str = "Cluster authorization failed.";

/// What the inbound rewrite leaves for the outbound one.
#[derive(Debug, Default)]
pub struct Substitutions {
    /// Substitute topic id -> the id the client sent.
    topic_ids: HashMap<Uuid, Uuid>,
    /// Config resources taken out of the request, in request order.
    denied: Vec<DeniedResource>,
}

/// A config resource the tenant may not address.
#[derive(Debug)]
struct DeniedResource {
    /// Its position in the request as the client sent it.
    index: usize,
    resource_type: i8,
    /// As the client sent it.
    name: StrBytes,
}

impl Substitutions {
    /// Lets a topic id of one of the tenant's topics through; replaces any
    /// other (not nil: nil means "no id") by a fresh random one.
    fn topic_id_in(&mut self, scope: &TenantScope, image: &MetadataImage, id: &mut Uuid) {
        if id.is_nil()
            || image
                .topic_by_id(id)
                .is_some_and(|topic| scope.owns(&topic.name))
        {
            return;
        }
        let substitute = loop {
            let candidate = Uuid::new_v4();
            if image.topic_by_id(&candidate).is_none() && !self.topic_ids.contains_key(&candidate) {
                break candidate;
            }
        };
        let _ = self.topic_ids.insert(substitute, *id);
        *id = substitute;
    }

    /// Puts a substituted topic id back.
    fn topic_id_out(&self, id: &mut Uuid) {
        if let Some(original) = self.topic_ids.get(id) {
            *id = *original;
        }
    }
}

/// A request as a tenant's client sent it, rewritten to internal names.
pub trait ScopeRequest {
    fn scope_in(&mut self, scope: &TenantScope, image: &MetadataImage, subst: &mut Substitutions);
}

/// A handler's response, rewritten to the names the tenant's client uses.
pub trait ScopeResponse {
    fn scope_out(&mut self, scope: &TenantScope, subst: &Substitutions);
}

/// A name in a request: the internal name (empty stays empty).
fn name_in(scope: &TenantScope, name: &mut StrBytes) {
    if !name.is_empty() {
        *name = StrBytes::from_string(scope.to_internal(name));
    }
}

/// A name in a response: the client's name; empty stays empty, and a name
/// the tenant does not own is blanked, never shown.
fn name_out(scope: &TenantScope, name: &mut StrBytes) {
    if name.is_empty() {
        return;
    }
    *name = match scope.to_external(name) {
        Some(external) => StrBytes::from_string(external.to_owned()),
        None => StrBytes::new(),
    };
}

/// Whether an entry of a listing may be shown: unnamed, or the tenant's.
fn visible(scope: &TenantScope, name: &str) -> bool {
    name.is_empty() || scope.owns(name)
}

/// An error message naming things as the client does.
fn message_out(scope: &TenantScope, message: &mut Option<StrBytes>) {
    if let Some(m) = message {
        if m.contains(scope.prefix()) {
            *m = StrBytes::from_string(scope.strip_message(m));
        }
    }
}

// ---------------------------------------------------------------------------
// APIs without names.

impl ScopeRequest for ApiVersionsRequest {
    fn scope_in(&mut self, _: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {}
}

impl ScopeResponse for ApiVersionsResponse {
    fn scope_out(&mut self, _: &TenantScope, _: &Substitutions) {}
}

impl ScopeRequest for DescribeClusterRequest {
    fn scope_in(&mut self, _: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {}
}

impl ScopeResponse for DescribeClusterResponse {
    fn scope_out(&mut self, scope: &TenantScope, _: &Substitutions) {
        message_out(scope, &mut self.error_message);
    }
}

// ---------------------------------------------------------------------------
// Produce, fetch and offsets.

impl ScopeRequest for ProduceRequest {
    fn scope_in(&mut self, scope: &TenantScope, image: &MetadataImage, subst: &mut Substitutions) {
        if let Some(id) = &mut self.transactional_id {
            name_in(scope, &mut id.0);
        }
        for topic in &mut self.topic_data {
            name_in(scope, &mut topic.name.0);
            subst.topic_id_in(scope, image, &mut topic.topic_id);
        }
    }
}

impl ScopeResponse for ProduceResponse {
    fn scope_out(&mut self, scope: &TenantScope, subst: &Substitutions) {
        for topic in &mut self.responses {
            name_out(scope, &mut topic.name.0);
            subst.topic_id_out(&mut topic.topic_id);
            for partition in &mut topic.partition_responses {
                message_out(scope, &mut partition.error_message);
                for record_error in &mut partition.record_errors {
                    message_out(scope, &mut record_error.batch_index_error_message);
                }
            }
        }
    }
}

impl ScopeRequest for FetchRequest {
    fn scope_in(&mut self, scope: &TenantScope, image: &MetadataImage, subst: &mut Substitutions) {
        for topic in &mut self.topics {
            name_in(scope, &mut topic.topic.0);
            subst.topic_id_in(scope, image, &mut topic.topic_id);
        }
        for topic in &mut self.forgotten_topics_data {
            name_in(scope, &mut topic.topic.0);
            subst.topic_id_in(scope, image, &mut topic.topic_id);
        }
    }
}

impl ScopeResponse for FetchResponse {
    fn scope_out(&mut self, scope: &TenantScope, subst: &Substitutions) {
        for topic in &mut self.responses {
            name_out(scope, &mut topic.topic.0);
            subst.topic_id_out(&mut topic.topic_id);
        }
    }
}

impl ScopeRequest for ListOffsetsRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {
        for topic in &mut self.topics {
            name_in(scope, &mut topic.name.0);
        }
    }
}

impl ScopeResponse for ListOffsetsResponse {
    fn scope_out(&mut self, scope: &TenantScope, _: &Substitutions) {
        for topic in &mut self.topics {
            name_out(scope, &mut topic.name.0);
        }
    }
}

impl ScopeRequest for DeleteRecordsRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {
        for topic in &mut self.topics {
            name_in(scope, &mut topic.name.0);
        }
    }
}

impl ScopeResponse for DeleteRecordsResponse {
    fn scope_out(&mut self, scope: &TenantScope, _: &Substitutions) {
        for topic in &mut self.topics {
            name_out(scope, &mut topic.name.0);
        }
    }
}

impl ScopeRequest for OffsetForLeaderEpochRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {
        for topic in &mut self.topics {
            name_in(scope, &mut topic.topic.0);
        }
    }
}

impl ScopeResponse for OffsetForLeaderEpochResponse {
    fn scope_out(&mut self, scope: &TenantScope, _: &Substitutions) {
        for topic in &mut self.topics {
            name_out(scope, &mut topic.topic.0);
        }
    }
}

// ---------------------------------------------------------------------------
// Metadata and topic administration.

impl ScopeRequest for MetadataRequest {
    fn scope_in(&mut self, scope: &TenantScope, image: &MetadataImage, subst: &mut Substitutions) {
        for topic in self.topics.iter_mut().flatten() {
            if let Some(name) = &mut topic.name {
                name_in(scope, &mut name.0);
            }
            subst.topic_id_in(scope, image, &mut topic.topic_id);
        }
    }
}

impl ScopeResponse for MetadataResponse {
    fn scope_out(&mut self, scope: &TenantScope, subst: &Substitutions) {
        // All topics (a null list) lists everyone's: only the tenant's stay.
        self.topics
            .retain(|t| t.name.as_ref().is_none_or(|name| visible(scope, name)));
        for topic in &mut self.topics {
            if let Some(name) = &mut topic.name {
                name_out(scope, &mut name.0);
            }
            subst.topic_id_out(&mut topic.topic_id);
        }
    }
}

impl ScopeRequest for CreateTopicsRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {
        for topic in &mut self.topics {
            name_in(scope, &mut topic.name.0);
        }
    }
}

impl ScopeResponse for CreateTopicsResponse {
    fn scope_out(&mut self, scope: &TenantScope, _: &Substitutions) {
        for topic in &mut self.topics {
            name_out(scope, &mut topic.name.0);
            message_out(scope, &mut topic.error_message);
        }
    }
}

impl ScopeRequest for DeleteTopicsRequest {
    fn scope_in(&mut self, scope: &TenantScope, image: &MetadataImage, subst: &mut Substitutions) {
        for name in &mut self.topic_names {
            name_in(scope, &mut name.0);
        }
        for topic in &mut self.topics {
            if let Some(name) = &mut topic.name {
                name_in(scope, &mut name.0);
            }
            subst.topic_id_in(scope, image, &mut topic.topic_id);
        }
    }
}

impl ScopeResponse for DeleteTopicsResponse {
    fn scope_out(&mut self, scope: &TenantScope, subst: &Substitutions) {
        for topic in &mut self.responses {
            if let Some(name) = &mut topic.name {
                name_out(scope, &mut name.0);
            }
            subst.topic_id_out(&mut topic.topic_id);
            message_out(scope, &mut topic.error_message);
        }
    }
}

impl ScopeRequest for CreatePartitionsRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {
        for topic in &mut self.topics {
            name_in(scope, &mut topic.name.0);
        }
    }
}

impl ScopeResponse for CreatePartitionsResponse {
    fn scope_out(&mut self, scope: &TenantScope, _: &Substitutions) {
        for topic in &mut self.results {
            name_out(scope, &mut topic.name.0);
            message_out(scope, &mut topic.error_message);
        }
    }
}

// ---------------------------------------------------------------------------
// Configs: the three APIs share one treatment of resources.

/// What a config resource is to a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResourceKind {
    /// Named by one of the tenant's names (topics, groups).
    Named,
    /// The cluster's, not the tenant's business.
    Denied,
    /// A type the handlers refuse whatever its name: left as it is.
    Other,
}

fn resource_kind(resource_type: i8) -> ResourceKind {
    match resource_type {
        RESOURCE_TOPIC | RESOURCE_GROUP => ResourceKind::Named,
        RESOURCE_BROKER | RESOURCE_BROKER_LOGGER | RESOURCE_CLIENT_METRICS => ResourceKind::Denied,
        _ => ResourceKind::Other,
    }
}

/// A config resource of a request.
trait ConfigResource {
    fn resource(&mut self) -> (i8, &mut StrBytes);
}

/// A config resource's entry in a response.
trait ConfigResult {
    fn resource(&mut self) -> (i8, &mut StrBytes);
    fn error_message(&mut self) -> &mut Option<StrBytes>;
    /// The CLUSTER_AUTHORIZATION_FAILED answer to a denied resource.
    fn denied(resource_type: i8, name: StrBytes) -> Self;
}

/// Maps the names of a request's config resources and takes out the ones
/// the tenant may not address.
fn config_resources_in<R: ConfigResource>(
    scope: &TenantScope,
    subst: &mut Substitutions,
    resources: &mut Vec<R>,
) {
    let mut index = 0;
    resources.retain_mut(|resource| {
        let (resource_type, name) = resource.resource();
        let keep = match resource_kind(resource_type) {
            ResourceKind::Named => {
                name_in(scope, name);
                true
            }
            ResourceKind::Denied => {
                subst.denied.push(DeniedResource {
                    index,
                    resource_type,
                    name: name.clone(),
                });
                false
            }
            ResourceKind::Other => true,
        };
        index += 1;
        keep
    });
}

/// Maps the names of a response's config results back and answers the
/// denied resources in their places.
fn config_results_out<R: ConfigResult>(
    scope: &TenantScope,
    subst: &Substitutions,
    results: &mut Vec<R>,
) {
    for result in results.iter_mut() {
        let (resource_type, name) = result.resource();
        if resource_kind(resource_type) == ResourceKind::Named {
            name_out(scope, name);
        }
        message_out(scope, result.error_message());
    }
    // In request order, each goes back where the client put it.
    for denied in &subst.denied {
        let at = denied.index.min(results.len());
        results.insert(at, R::denied(denied.resource_type, denied.name.clone()));
    }
}

fn denied_message() -> Option<StrBytes> {
    Some(StrBytes::from_static_str(CLUSTER_AUTHORIZATION_MESSAGE))
}

/// The config APIs' resources and results have the same fields under
/// different types.
macro_rules! config_types {
    ($($resource:ty => $result:ty),* $(,)?) => {$(
        impl ConfigResource for $resource {
            fn resource(&mut self) -> (i8, &mut StrBytes) {
                (self.resource_type, &mut self.resource_name)
            }
        }

        impl ConfigResult for $result {
            fn resource(&mut self) -> (i8, &mut StrBytes) {
                (self.resource_type, &mut self.resource_name)
            }
            fn error_message(&mut self) -> &mut Option<StrBytes> {
                &mut self.error_message
            }
            fn denied(resource_type: i8, name: StrBytes) -> Self {
                <$result>::default()
                    .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                    .with_error_message(denied_message())
                    .with_resource_type(resource_type)
                    .with_resource_name(name)
            }
        }
    )*};
}

config_types! {
    DescribeConfigsResource => DescribeConfigsResult,
    alter_configs_request::AlterConfigsResource
        => alter_configs_response::AlterConfigsResourceResponse,
    incremental_alter_configs_request::AlterConfigsResource
        => incremental_alter_configs_response::AlterConfigsResourceResponse,
}

impl ScopeRequest for DescribeConfigsRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, subst: &mut Substitutions) {
        config_resources_in(scope, subst, &mut self.resources);
    }
}

impl ScopeResponse for DescribeConfigsResponse {
    fn scope_out(&mut self, scope: &TenantScope, subst: &Substitutions) {
        config_results_out(scope, subst, &mut self.results);
    }
}

impl ScopeRequest for AlterConfigsRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, subst: &mut Substitutions) {
        config_resources_in(scope, subst, &mut self.resources);
    }
}

impl ScopeResponse for AlterConfigsResponse {
    fn scope_out(&mut self, scope: &TenantScope, subst: &Substitutions) {
        config_results_out(scope, subst, &mut self.responses);
    }
}

impl ScopeRequest for IncrementalAlterConfigsRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, subst: &mut Substitutions) {
        config_resources_in(scope, subst, &mut self.resources);
    }
}

impl ScopeResponse for IncrementalAlterConfigsResponse {
    fn scope_out(&mut self, scope: &TenantScope, subst: &Substitutions) {
        config_results_out(scope, subst, &mut self.responses);
    }
}

// ---------------------------------------------------------------------------
// Coordinators and groups.

impl ScopeRequest for FindCoordinatorRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {
        // Other key types name nothing a tenant owns; the handler refuses
        // them whatever the key.
        if matches!(self.key_type, KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION) {
            name_in(scope, &mut self.key);
            for key in &mut self.coordinator_keys {
                name_in(scope, key);
            }
        }
    }
}

impl ScopeResponse for FindCoordinatorResponse {
    fn scope_out(&mut self, scope: &TenantScope, _: &Substitutions) {
        message_out(scope, &mut self.error_message);
        for coordinator in &mut self.coordinators {
            // Keys echo the request: a key of a type that is not mapped
            // comes back as the client sent it.
            if scope.owns(&coordinator.key) {
                name_out(scope, &mut coordinator.key);
            }
            message_out(scope, &mut coordinator.error_message);
        }
    }
}

impl ScopeRequest for JoinGroupRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {
        name_in(scope, &mut self.group_id.0);
    }
}

impl ScopeResponse for JoinGroupResponse {
    fn scope_out(&mut self, _: &TenantScope, _: &Substitutions) {}
}

impl ScopeRequest for SyncGroupRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {
        name_in(scope, &mut self.group_id.0);
    }
}

impl ScopeResponse for SyncGroupResponse {
    fn scope_out(&mut self, _: &TenantScope, _: &Substitutions) {}
}

impl ScopeRequest for HeartbeatRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {
        name_in(scope, &mut self.group_id.0);
    }
}

impl ScopeResponse for HeartbeatResponse {
    fn scope_out(&mut self, _: &TenantScope, _: &Substitutions) {}
}

impl ScopeRequest for LeaveGroupRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {
        name_in(scope, &mut self.group_id.0);
    }
}

impl ScopeResponse for LeaveGroupResponse {
    fn scope_out(&mut self, _: &TenantScope, _: &Substitutions) {}
}

impl ScopeRequest for OffsetCommitRequest {
    fn scope_in(&mut self, scope: &TenantScope, image: &MetadataImage, subst: &mut Substitutions) {
        name_in(scope, &mut self.group_id.0);
        for topic in &mut self.topics {
            name_in(scope, &mut topic.name.0);
            subst.topic_id_in(scope, image, &mut topic.topic_id);
        }
    }
}

impl ScopeResponse for OffsetCommitResponse {
    fn scope_out(&mut self, scope: &TenantScope, subst: &Substitutions) {
        for topic in &mut self.topics {
            name_out(scope, &mut topic.name.0);
            subst.topic_id_out(&mut topic.topic_id);
        }
    }
}

impl ScopeRequest for OffsetFetchRequest {
    fn scope_in(&mut self, scope: &TenantScope, image: &MetadataImage, subst: &mut Substitutions) {
        name_in(scope, &mut self.group_id.0);
        for topic in self.topics.iter_mut().flatten() {
            name_in(scope, &mut topic.name.0);
        }
        for group in &mut self.groups {
            name_in(scope, &mut group.group_id.0);
            for topic in group.topics.iter_mut().flatten() {
                name_in(scope, &mut topic.name.0);
                subst.topic_id_in(scope, image, &mut topic.topic_id);
            }
        }
    }
}

impl ScopeResponse for OffsetFetchResponse {
    fn scope_out(&mut self, scope: &TenantScope, subst: &Substitutions) {
        // Null topics list all of a group's offsets: only the tenant's
        // topics stay.
        self.topics.retain(|t| visible(scope, &t.name));
        for topic in &mut self.topics {
            name_out(scope, &mut topic.name.0);
        }
        for group in &mut self.groups {
            name_out(scope, &mut group.group_id.0);
            group.topics.retain(|t| visible(scope, &t.name));
            for topic in &mut group.topics {
                name_out(scope, &mut topic.name.0);
                subst.topic_id_out(&mut topic.topic_id);
            }
        }
    }
}

impl ScopeRequest for OffsetDeleteRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {
        name_in(scope, &mut self.group_id.0);
        for topic in &mut self.topics {
            name_in(scope, &mut topic.name.0);
        }
    }
}

impl ScopeResponse for OffsetDeleteResponse {
    fn scope_out(&mut self, scope: &TenantScope, _: &Substitutions) {
        for topic in &mut self.topics {
            name_out(scope, &mut topic.name.0);
        }
    }
}

impl ScopeRequest for DescribeGroupsRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {
        for group in &mut self.groups {
            name_in(scope, &mut group.0);
        }
    }
}

impl ScopeResponse for DescribeGroupsResponse {
    fn scope_out(&mut self, scope: &TenantScope, _: &Substitutions) {
        for group in &mut self.groups {
            name_out(scope, &mut group.group_id.0);
            message_out(scope, &mut group.error_message);
        }
    }
}

impl ScopeRequest for ListGroupsRequest {
    fn scope_in(&mut self, _: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {}
}

impl ScopeResponse for ListGroupsResponse {
    fn scope_out(&mut self, scope: &TenantScope, _: &Substitutions) {
        self.groups.retain(|g| scope.owns(&g.group_id));
        for group in &mut self.groups {
            name_out(scope, &mut group.group_id.0);
        }
    }
}

impl ScopeRequest for DeleteGroupsRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {
        for group in &mut self.groups_names {
            name_in(scope, &mut group.0);
        }
    }
}

impl ScopeResponse for DeleteGroupsResponse {
    fn scope_out(&mut self, scope: &TenantScope, _: &Substitutions) {
        for result in &mut self.results {
            name_out(scope, &mut result.group_id.0);
        }
    }
}

impl ScopeRequest for InitProducerIdRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {
        if let Some(id) = &mut self.transactional_id {
            name_in(scope, &mut id.0);
        }
    }
}

impl ScopeResponse for InitProducerIdResponse {
    fn scope_out(&mut self, _: &TenantScope, _: &Substitutions) {}
}

// ---------------------------------------------------------------------------
// Transactions: the transactional id, and the topics and groups it names.

impl ScopeRequest for AddPartitionsToTxnRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {
        name_in(scope, &mut self.v3_and_below_transactional_id.0);
        for topic in &mut self.v3_and_below_topics {
            name_in(scope, &mut topic.name.0);
        }
        // v4+ (broker to broker) is not served; map it all the same so
        // nothing of it could ever name another tenant's resources.
        for txn in &mut self.transactions {
            name_in(scope, &mut txn.transactional_id.0);
            for topic in &mut txn.topics {
                name_in(scope, &mut topic.name.0);
            }
        }
    }
}

impl ScopeResponse for AddPartitionsToTxnResponse {
    fn scope_out(&mut self, scope: &TenantScope, _: &Substitutions) {
        for topic in &mut self.results_by_topic_v3_and_below {
            name_out(scope, &mut topic.name.0);
        }
        for txn in &mut self.results_by_transaction {
            name_out(scope, &mut txn.transactional_id.0);
            for topic in &mut txn.topic_results {
                name_out(scope, &mut topic.name.0);
            }
        }
    }
}

impl ScopeRequest for AddOffsetsToTxnRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {
        name_in(scope, &mut self.transactional_id.0);
        name_in(scope, &mut self.group_id.0);
    }
}

impl ScopeResponse for AddOffsetsToTxnResponse {
    fn scope_out(&mut self, _: &TenantScope, _: &Substitutions) {}
}

impl ScopeRequest for EndTxnRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {
        name_in(scope, &mut self.transactional_id.0);
    }
}

impl ScopeResponse for EndTxnResponse {
    fn scope_out(&mut self, _: &TenantScope, _: &Substitutions) {}
}

impl ScopeRequest for TxnOffsetCommitRequest {
    fn scope_in(&mut self, scope: &TenantScope, _: &MetadataImage, _: &mut Substitutions) {
        name_in(scope, &mut self.transactional_id.0);
        name_in(scope, &mut self.group_id.0);
        for topic in &mut self.topics {
            name_in(scope, &mut topic.name.0);
        }
    }
}

impl ScopeResponse for TxnOffsetCommitResponse {
    fn scope_out(&mut self, scope: &TenantScope, _: &Substitutions) {
        for topic in &mut self.topics {
            name_out(scope, &mut topic.name.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
    use kafka_protocol::messages::describe_groups_response::DescribedGroup;
    use kafka_protocol::messages::fetch_request::FetchTopic;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::find_coordinator_response::Coordinator;
    use kafka_protocol::messages::list_groups_response::ListedGroup;
    use kafka_protocol::messages::list_offsets_request::ListOffsetsTopic;
    use kafka_protocol::messages::list_offsets_response::ListOffsetsTopicResponse;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
    use kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic;
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
    };
    use kafka_protocol::messages::produce_request::TopicProduceData;
    use kafka_protocol::messages::produce_response::{
        BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{GroupId, TopicName, TransactionalId};

    use super::*;
    use crate::cluster::records::MetadataRecord;
    use crate::cluster::topic_record::TopicRecord;
    use crate::config::BrokerConfig;

    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
    const UNKNOWN_TOPIC_ID: i16 = 100;

    const OFFSETS: u128 = 1;
    const ACME_METRICS: u128 = 2;
    const OTHER_METRICS: u128 = 3;
    const ACME_LOGS: u128 = 4;
    const ACMEX: u128 = 5;
    const NO_SUCH_TOPIC: u128 = 99;

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_owned())
    }

    fn topic(v: &str) -> TopicName {
        TopicName(s(v))
    }

    fn group(v: &str) -> GroupId {
        GroupId(s(v))
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn acme() -> TenantScope {
        TenantScope::new("acme").unwrap()
    }

    /// A cluster with Kafka's offsets topic, two of acme's topics, one of
    /// another tenant and one of a tenant whose name starts like acme's.
    fn image() -> MetadataImage {
        let config = BrokerConfig::default();
        let mut image = MetadataImage::empty(Arc::new(config.clone()));
        let topics = [
            ("__consumer_offsets", OFFSETS),
            ("acme.metrics", ACME_METRICS),
            ("other.metrics", OTHER_METRICS),
            ("acme.logs", ACME_LOGS),
            ("acmex.metrics", ACMEX),
        ];
        for (index, (name, topic_id)) in topics.into_iter().enumerate() {
            let record = MetadataRecord::CreateTopic {
                topic: TopicRecord {
                    id: id(topic_id),
                    name: name.to_owned(),
                    partitions: 0,
                    configs: BTreeMap::new(),
                },
                assignments: vec![vec![1]],
            };
            assert_eq!(
                image.apply(&record, index as u64 + 1, &config).error_code,
                0
            );
        }
        image
    }

    /// The inbound rewrite, the handler, the outbound rewrite: what a
    /// tenant's request goes through.
    fn round_trip<Req: ScopeRequest, Resp: ScopeResponse>(
        image: &MetadataImage,
        mut request: Req,
        handler: impl FnOnce(&MetadataImage, Req) -> Resp,
    ) -> Resp {
        let scope = acme();
        let mut subst = Substitutions::default();
        request.scope_in(&scope, image, &mut subst);
        let mut response = handler(image, request);
        response.scope_out(&scope, &subst);
        response
    }

    /// Like the Metadata handler: every topic for a null list, else each
    /// requested one by name or id, with the error an unknown one gets.
    fn metadata_handler(image: &MetadataImage, request: MetadataRequest) -> MetadataResponse {
        let describe = |t: &TopicRecord| {
            MetadataResponseTopic::default()
                .with_name(Some(topic(&t.name)))
                .with_topic_id(t.id)
                .with_is_internal(t.name == "__consumer_offsets")
        };
        let topics = match request.topics {
            None => {
                let mut all: Vec<_> = image.topics().collect();
                all.sort_by(|a, b| a.name.cmp(&b.name));
                all.into_iter().map(|t| describe(t)).collect()
            }
            Some(list) => list
                .iter()
                .map(|wanted| match &wanted.name {
                    Some(name) => match image.topic(name) {
                        Some(t) => describe(t),
                        None => MetadataResponseTopic::default()
                            .with_name(Some(name.clone()))
                            .with_error_code(UNKNOWN_TOPIC_OR_PARTITION),
                    },
                    None => match image.topic_by_id(&wanted.topic_id) {
                        Some(t) => describe(t),
                        None => MetadataResponseTopic::default()
                            .with_name(None)
                            .with_topic_id(wanted.topic_id)
                            .with_error_code(UNKNOWN_TOPIC_ID),
                    },
                })
                .collect(),
        };
        MetadataResponse::default()
            .with_cluster_id(Some(s("cluster")))
            .with_topics(topics)
    }

    fn names(response: &MetadataResponse) -> Vec<Option<&str>> {
        response
            .topics
            .iter()
            .map(|t| t.name.as_ref().map(|n| n.as_str()))
            .collect()
    }

    #[test]
    fn metadata_for_all_topics_shows_only_the_tenants_own() {
        let image = image();
        let all = MetadataRequest::default().with_topics(None);
        let response = round_trip(&image, all, metadata_handler);
        assert_eq!(names(&response), vec![Some("logs"), Some("metrics")]);
        let ids: Vec<Uuid> = response.topics.iter().map(|t| t.topic_id).collect();
        assert_eq!(ids, vec![id(ACME_LOGS), id(ACME_METRICS)]);
        assert!(response.topics.iter().all(|t| !t.is_internal));
        assert_eq!(response.cluster_id.as_deref(), Some("cluster"));

        // v0 asks for all topics with an empty list: the same answer.
        let v0 = MetadataRequest::default().with_topics(Some(Vec::new()));
        let response = round_trip(&image, v0, |image, request| {
            metadata_handler(image, request.with_topics(None))
        });
        assert_eq!(names(&response), vec![Some("logs"), Some("metrics")]);
    }

    #[test]
    fn metadata_by_name_and_id_stays_within_the_tenant() {
        let image = image();
        let wanted = |name: Option<&str>, topic_id: u128| {
            MetadataRequestTopic::default()
                .with_name(name.map(topic))
                .with_topic_id(id(topic_id))
        };
        let request = MetadataRequest::default().with_topics(Some(vec![
            wanted(Some("metrics"), 0),
            wanted(Some("other.metrics"), 0),
            wanted(None, OTHER_METRICS),
            wanted(None, ACME_METRICS),
            wanted(None, OFFSETS),
            wanted(Some("../x"), 0),
        ]));
        let mut seen = Vec::new();
        let response = round_trip(&image, request, |image, request| {
            for t in request.topics.iter().flatten() {
                seen.push((t.name.as_ref().map(|n| n.to_string()), t.topic_id));
            }
            metadata_handler(image, request)
        });
        let seen_names: Vec<_> = seen.iter().filter_map(|(n, _)| n.clone()).collect();
        assert_eq!(
            seen_names,
            vec!["acme.metrics", "acme.other.metrics", "acme.../x"]
        );
        assert!(!seen
            .iter()
            .any(|(_, i)| *i == id(OTHER_METRICS) || *i == id(OFFSETS)));
        assert!(seen.iter().any(|(_, i)| *i == id(ACME_METRICS)));

        assert_eq!(
            names(&response),
            vec![
                Some("metrics"),
                Some("other.metrics"),
                None,
                Some("metrics"),
                None,
                Some("../x")
            ]
        );
        let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
        assert_eq!(
            codes,
            vec![
                0,
                UNKNOWN_TOPIC_OR_PARTITION,
                UNKNOWN_TOPIC_ID,
                0,
                UNKNOWN_TOPIC_ID,
                UNKNOWN_TOPIC_OR_PARTITION
            ]
        );
        // The ids the client asked about come back as it sent them.
        assert_eq!(response.topics[2].topic_id, id(OTHER_METRICS));
        assert_eq!(response.topics[4].topic_id, id(OFFSETS));
        assert_eq!(response.topics[1].topic_id, Uuid::nil());
    }

    #[test]
    fn fetch_by_another_tenants_id_never_reaches_the_handler() {
        let image = image();
        let by_id = |n: u128| FetchTopic::default().with_topic_id(id(n));
        let request = FetchRequest::default().with_topics(vec![
            by_id(OTHER_METRICS),
            by_id(ACME_METRICS),
            by_id(NO_SUCH_TOPIC),
            by_id(OFFSETS),
        ]);
        let mut seen = Vec::new();
        let response = round_trip(&image, request, |image, request| {
            let responses = request
                .topics
                .iter()
                .map(|t| {
                    seen.push(t.topic_id);
                    let code = match image.topic_by_id(&t.topic_id) {
                        Some(_) => 0,
                        None => UNKNOWN_TOPIC_ID,
                    };
                    FetchableTopicResponse::default()
                        .with_topic(t.topic.clone())
                        .with_topic_id(t.topic_id)
                        .with_partitions(vec![PartitionData::default().with_error_code(code)])
                })
                .collect();
            FetchResponse::default().with_responses(responses)
        });
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[1], id(ACME_METRICS));
        for substitute in [seen[0], seen[2], seen[3]] {
            assert!(image.topic_by_id(&substitute).is_none(), "{substitute}");
            assert!(![id(OTHER_METRICS), id(OFFSETS), id(NO_SUCH_TOPIC)].contains(&substitute));
        }
        let answered: Vec<(Uuid, i16)> = response
            .responses
            .iter()
            .map(|t| (t.topic_id, t.partitions[0].error_code))
            .collect();
        assert_eq!(
            answered,
            vec![
                (id(OTHER_METRICS), UNKNOWN_TOPIC_ID),
                (id(ACME_METRICS), 0),
                (id(NO_SUCH_TOPIC), UNKNOWN_TOPIC_ID),
                (id(OFFSETS), UNKNOWN_TOPIC_ID),
            ]
        );
        assert!(response.responses.iter().all(|t| t.topic.is_empty()));
    }

    #[test]
    fn fetch_and_produce_by_name_round_trip() {
        let image = image();
        let request = FetchRequest::default()
            .with_topics(vec![FetchTopic::default().with_topic(topic("metrics"))]);
        let response = round_trip(&image, request, |_, request| {
            assert_eq!(request.topics[0].topic.as_str(), "acme.metrics");
            assert!(request.topics[0].topic_id.is_nil());
            FetchResponse::default().with_responses(vec![
                FetchableTopicResponse::default().with_topic(request.topics[0].topic.clone())
            ])
        });
        assert_eq!(response.responses[0].topic.as_str(), "metrics");
        assert!(response.responses[0].topic_id.is_nil());

        let request = ProduceRequest::default()
            .with_transactional_id(Some(TransactionalId(s("tx"))))
            .with_topic_data(vec![
                TopicProduceData::default().with_name(topic("metrics")),
                TopicProduceData::default().with_topic_id(id(OTHER_METRICS)),
            ]);
        let response = round_trip(&image, request, |_, request| {
            assert_eq!(
                request.transactional_id.as_deref().map(|t| t.as_str()),
                Some("acme.tx")
            );
            assert_eq!(request.topic_data[0].name.as_str(), "acme.metrics");
            assert_ne!(request.topic_data[1].topic_id, id(OTHER_METRICS));
            let responses = request
                .topic_data
                .iter()
                .map(|t| {
                    TopicProduceResponse::default()
                        .with_name(t.name.clone())
                        .with_topic_id(t.topic_id)
                        .with_partition_responses(vec![PartitionProduceResponse::default()
                            .with_error_message(Some(s(&format!(
                                "bad batch for {}",
                                t.name.as_str()
                            ))))
                            .with_record_errors(vec![BatchIndexAndErrorMessage::default()
                                .with_batch_index_error_message(Some(s(
                                    "record 0 of acme.metrics-0 is bad",
                                )))])])
                })
                .collect();
            ProduceResponse::default().with_responses(responses)
        });
        let first = &response.responses[0];
        assert_eq!(first.name.as_str(), "metrics");
        let partition = &first.partition_responses[0];
        assert_eq!(
            partition.error_message.as_deref(),
            Some("bad batch for metrics")
        );
        assert_eq!(
            partition.record_errors[0]
                .batch_index_error_message
                .as_deref(),
            Some("record 0 of metrics-0 is bad")
        );
        assert_eq!(response.responses[1].topic_id, id(OTHER_METRICS));
    }

    #[test]
    fn delete_topics_by_foreign_id_is_an_unknown_id() {
        let image = image();
        let request = DeleteTopicsRequest::default()
            .with_topics(vec![
                DeleteTopicState::default().with_topic_id(id(OTHER_METRICS)),
                DeleteTopicState::default().with_topic_id(id(ACME_LOGS)),
                DeleteTopicState::default().with_name(Some(topic("metrics"))),
            ])
            .with_topic_names(vec![topic("logs")]);
        let response = round_trip(&image, request, |image, request| {
            assert_eq!(request.topic_names[0].as_str(), "acme.logs");
            let responses = request
                .topics
                .iter()
                .map(|t| {
                    let found = match &t.name {
                        Some(name) => image.topic(name),
                        None => image.topic_by_id(&t.topic_id),
                    };
                    let result = DeletableTopicResult::default()
                        .with_name(t.name.clone())
                        .with_topic_id(t.topic_id);
                    match found {
                        Some(record) => result
                            .with_name(Some(topic(&record.name)))
                            .with_topic_id(record.id),
                        None => result.with_error_code(UNKNOWN_TOPIC_ID),
                    }
                })
                .collect();
            DeleteTopicsResponse::default().with_responses(responses)
        });
        let answered: Vec<(Option<&str>, Uuid, i16)> = response
            .responses
            .iter()
            .map(|r| {
                (
                    r.name.as_ref().map(|n| n.as_str()),
                    r.topic_id,
                    r.error_code,
                )
            })
            .collect();
        assert_eq!(
            answered,
            vec![
                (None, id(OTHER_METRICS), UNKNOWN_TOPIC_ID),
                (Some("logs"), id(ACME_LOGS), 0),
                (Some("metrics"), id(ACME_METRICS), 0),
            ]
        );
    }

    #[test]
    fn names_never_escape_the_tenants_prefix() {
        let image = image();
        let scope = acme();
        let tricky = [
            "../x",
            "other.metrics",
            "acme.x",
            ".",
            "__consumer_offsets",
            "metrics",
        ];
        let mut subst = Substitutions::default();

        let mut create = CreateTopicsRequest::default().with_topics(
            tricky
                .iter()
                .map(|n| CreatableTopic::default().with_name(topic(n)))
                .collect(),
        );
        create.scope_in(&scope, &image, &mut subst);
        let mut list_offsets = ListOffsetsRequest::default().with_topics(
            tricky
                .iter()
                .map(|n| ListOffsetsTopic::default().with_name(topic(n)))
                .collect(),
        );
        list_offsets.scope_in(&scope, &image, &mut subst);
        let mut commit = OffsetCommitRequest::default()
            .with_group_id(group("other.g"))
            .with_topics(
                tricky
                    .iter()
                    .map(|n| OffsetCommitRequestTopic::default().with_name(topic(n)))
                    .collect(),
            );
        commit.scope_in(&scope, &image, &mut subst);
        let mut describe =
            DescribeGroupsRequest::default().with_groups(tricky.iter().map(|n| group(n)).collect());
        describe.scope_in(&scope, &image, &mut subst);
        let mut init = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s("other.tx"))));
        init.scope_in(&scope, &image, &mut subst);
        let mut add = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(s("other.tx")))
            .with_v3_and_below_topics(
                tricky
                    .iter()
                    .map(|n| {
                        kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                            .with_name(topic(n))
                    })
                    .collect(),
            );
        add.scope_in(&scope, &image, &mut subst);
        let mut offsets = AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(s("other.tx")))
            .with_group_id(group("other.g"));
        offsets.scope_in(&scope, &image, &mut subst);
        let mut end =
            EndTxnRequest::default().with_transactional_id(TransactionalId(s("other.tx")));
        end.scope_in(&scope, &image, &mut subst);
        let mut txn_commit = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s("other.tx")))
            .with_group_id(group("other.g"))
            .with_topics(
                tricky
                    .iter()
                    .map(|n| {
                        kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                            .with_name(topic(n))
                    })
                    .collect(),
            );
        txn_commit.scope_in(&scope, &image, &mut subst);

        let mut all: Vec<String> = Vec::new();
        all.extend(create.topics.iter().map(|t| t.name.to_string()));
        all.extend(list_offsets.topics.iter().map(|t| t.name.to_string()));
        all.push(commit.group_id.to_string());
        all.extend(commit.topics.iter().map(|t| t.name.to_string()));
        all.extend(describe.groups.iter().map(|g| g.to_string()));
        all.extend(init.transactional_id.iter().map(|t| t.to_string()));
        all.push(add.v3_and_below_transactional_id.to_string());
        all.extend(add.v3_and_below_topics.iter().map(|t| t.name.to_string()));
        all.push(offsets.transactional_id.to_string());
        all.push(offsets.group_id.to_string());
        all.push(end.transactional_id.to_string());
        all.push(txn_commit.transactional_id.to_string());
        all.push(txn_commit.group_id.to_string());
        all.extend(txn_commit.topics.iter().map(|t| t.name.to_string()));
        assert_eq!(all.len(), 6 * tricky.len() + 8);
        for name in &all {
            assert!(name.starts_with("acme."), "{name}");
        }
        assert_eq!(create.topics[0].name.as_str(), "acme.../x");
        assert_eq!(create.topics[1].name.as_str(), "acme.other.metrics");
        assert_eq!(create.topics[2].name.as_str(), "acme.acme.x");
    }

    #[test]
    fn empty_names_stay_empty() {
        let image = image();
        let request = JoinGroupRequest::default().with_group_id(group(""));
        let _ = round_trip(&image, request, |_, request| {
            assert!(request.group_id.is_empty());
            JoinGroupResponse::default()
        });
        let request =
            InitProducerIdRequest::default().with_transactional_id(Some(TransactionalId(s(""))));
        let _ = round_trip(&image, request, |_, request| {
            assert_eq!(
                request.transactional_id.as_deref().map(|t| t.as_str()),
                Some("")
            );
            InitProducerIdResponse::default()
        });
        let request = InitProducerIdRequest::default().with_transactional_id(None);
        let _ = round_trip(&image, request, |_, request| {
            assert!(request.transactional_id.is_none());
            InitProducerIdResponse::default()
        });
    }

    #[test]
    fn list_groups_shows_only_the_tenants_groups() {
        let image = image();
        let response = round_trip(&image, ListGroupsRequest::default(), |_, _| {
            let listed = ["acme.a", "acme.b", "acmex.c", "other.a", "plain", "acme."]
                .iter()
                .map(|g| ListedGroup::default().with_group_id(group(g)))
                .collect();
            ListGroupsResponse::default().with_groups(listed)
        });
        let groups: Vec<&str> = response
            .groups
            .iter()
            .map(|g| g.group_id.as_str())
            .collect();
        assert_eq!(groups, vec!["a", "b"]);
    }

    #[test]
    fn group_apis_use_internal_group_ids() {
        let image = image();
        let _ = round_trip(
            &image,
            JoinGroupRequest::default().with_group_id(group("g")),
            |_, r| {
                assert_eq!(r.group_id.as_str(), "acme.g");
                JoinGroupResponse::default()
            },
        );
        let _ = round_trip(
            &image,
            SyncGroupRequest::default().with_group_id(group("g")),
            |_, r| {
                assert_eq!(r.group_id.as_str(), "acme.g");
                SyncGroupResponse::default()
            },
        );
        let _ = round_trip(
            &image,
            HeartbeatRequest::default().with_group_id(group("g")),
            |_, r| {
                assert_eq!(r.group_id.as_str(), "acme.g");
                HeartbeatResponse::default()
            },
        );
        let _ = round_trip(
            &image,
            LeaveGroupRequest::default().with_group_id(group("g")),
            |_, r| {
                assert_eq!(r.group_id.as_str(), "acme.g");
                LeaveGroupResponse::default()
            },
        );

        let request = DescribeGroupsRequest::default().with_groups(vec![group("g"), group("h")]);
        let response = round_trip(&image, request, |_, r| {
            let groups = r
                .groups
                .iter()
                .map(|g| {
                    DescribedGroup::default()
                        .with_group_id(g.clone())
                        .with_error_message(Some(s(&format!("group {} not found", g.as_str()))))
                })
                .collect();
            DescribeGroupsResponse::default().with_groups(groups)
        });
        assert_eq!(response.groups[0].group_id.as_str(), "g");
        assert_eq!(
            response.groups[1].error_message.as_deref(),
            Some("group h not found")
        );

        let request = DeleteGroupsRequest::default().with_groups_names(vec![group("g")]);
        let response = round_trip(&image, request, |_, r| {
            assert_eq!(r.groups_names[0].as_str(), "acme.g");
            DeleteGroupsResponse::default().with_results(vec![
                kafka_protocol::messages::delete_groups_response::DeletableGroupResult::default()
                    .with_group_id(r.groups_names[0].clone()),
            ])
        });
        assert_eq!(response.results[0].group_id.as_str(), "g");

        let request = OffsetDeleteRequest::default()
            .with_group_id(group("g"))
            .with_topics(vec![
                kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestTopic::default(
                )
                .with_name(topic("metrics")),
            ]);
        let response = round_trip(&image, request, |_, r| {
            assert_eq!(r.group_id.as_str(), "acme.g");
            assert_eq!(r.topics[0].name.as_str(), "acme.metrics");
            OffsetDeleteResponse::default().with_topics(vec![
                kafka_protocol::messages::offset_delete_response::OffsetDeleteResponseTopic::default()
                    .with_name(r.topics[0].name.clone()),
            ])
        });
        assert_eq!(response.topics[0].name.as_str(), "metrics");
    }

    #[test]
    fn offset_fetch_of_all_topics_hides_foreign_ones() {
        let image = image();
        // v1-7: one group, null topics lists all of its offsets.
        let request = OffsetFetchRequest::default()
            .with_group_id(group("g"))
            .with_topics(None);
        let response = round_trip(&image, request, |_, r| {
            assert_eq!(r.group_id.as_str(), "acme.g");
            assert!(r.topics.is_none());
            let topics = [
                "acme.metrics",
                "other.metrics",
                "__consumer_offsets",
                "acme.logs",
            ]
            .iter()
            .map(|t| OffsetFetchResponseTopic::default().with_name(topic(t)))
            .collect();
            OffsetFetchResponse::default().with_topics(topics)
        });
        let listed: Vec<&str> = response.topics.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(listed, vec!["metrics", "logs"]);

        // v1-7 with topics named.
        let request = OffsetFetchRequest::default()
            .with_group_id(group("g"))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default().with_name(topic("metrics"))
            ]));
        let _ = round_trip(&image, request, |_, r| {
            assert_eq!(r.topics.as_ref().unwrap()[0].name.as_str(), "acme.metrics");
            OffsetFetchResponse::default()
        });

        // v8+: several groups.
        let request = OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default().with_group_id(group("g")),
            OffsetFetchRequestGroup::default()
                .with_group_id(group("h"))
                .with_topics(Some(vec![
                    OffsetFetchRequestTopics::default().with_name(topic("logs")),
                    OffsetFetchRequestTopics::default().with_topic_id(id(OTHER_METRICS)),
                ])),
        ]);
        let response = round_trip(&image, request, |_, r| {
            assert_eq!(r.groups[0].group_id.as_str(), "acme.g");
            assert_eq!(r.groups[1].group_id.as_str(), "acme.h");
            let wanted = r.groups[1].topics.as_ref().unwrap();
            assert_eq!(wanted[0].name.as_str(), "acme.logs");
            assert_ne!(wanted[1].topic_id, id(OTHER_METRICS));
            let all = ["acme.metrics", "other.metrics", "acme.logs"]
                .iter()
                .map(|t| OffsetFetchResponseTopics::default().with_name(topic(t)))
                .collect();
            let named = wanted
                .iter()
                .map(|t| {
                    OffsetFetchResponseTopics::default()
                        .with_name(t.name.clone())
                        .with_topic_id(t.topic_id)
                })
                .collect();
            OffsetFetchResponse::default().with_groups(vec![
                OffsetFetchResponseGroup::default()
                    .with_group_id(r.groups[0].group_id.clone())
                    .with_topics(all),
                OffsetFetchResponseGroup::default()
                    .with_group_id(r.groups[1].group_id.clone())
                    .with_topics(named),
            ])
        });
        let g = &response.groups[0];
        assert_eq!(g.group_id.as_str(), "g");
        let listed: Vec<&str> = g.topics.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(listed, vec!["metrics", "logs"]);
        let h = &response.groups[1];
        assert_eq!(h.group_id.as_str(), "h");
        assert_eq!(h.topics[0].name.as_str(), "logs");
        assert_eq!(h.topics[1].topic_id, id(OTHER_METRICS));
    }

    #[test]
    fn find_coordinator_keys_are_the_tenants() {
        let image = image();
        // v0-3: one key.
        for key_type in [KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION] {
            let request = FindCoordinatorRequest::default()
                .with_key(s("g"))
                .with_key_type(key_type);
            let _ = round_trip(&image, request, |_, r| {
                assert_eq!(r.key.as_str(), "acme.g");
                FindCoordinatorResponse::default()
            });
        }
        // v4+: a batch; keys come back as the client sent them.
        let request = FindCoordinatorRequest::default().with_coordinator_keys(vec![
            s("a"),
            s("other.b"),
            s(""),
        ]);
        let response = round_trip(&image, request, |_, r| {
            let keys: Vec<&str> = r.coordinator_keys.iter().map(|k| k.as_str()).collect();
            assert_eq!(keys, vec!["acme.a", "acme.other.b", ""]);
            let coordinators = r
                .coordinator_keys
                .iter()
                .map(|k| {
                    Coordinator::default()
                        .with_key(k.clone())
                        .with_error_message(Some(s(&format!("no coordinator for {}", k.as_str()))))
                })
                .collect();
            FindCoordinatorResponse::default().with_coordinators(coordinators)
        });
        let keys: Vec<&str> = response
            .coordinators
            .iter()
            .map(|c| c.key.as_str())
            .collect();
        assert_eq!(keys, vec!["a", "other.b", ""]);
        assert_eq!(
            response.coordinators[0].error_message.as_deref(),
            Some("no coordinator for a")
        );
        // Other key types name nothing of the tenant's: left alone.
        let request = FindCoordinatorRequest::default()
            .with_key_type(2)
            .with_coordinator_keys(vec![s("x")]);
        let response = round_trip(&image, request, |_, r| {
            assert_eq!(r.coordinator_keys[0].as_str(), "x");
            FindCoordinatorResponse::default()
                .with_coordinators(vec![Coordinator::default().with_key(s("x"))])
        });
        assert_eq!(response.coordinators[0].key.as_str(), "x");
    }

    #[test]
    fn broker_config_resources_are_refused_in_their_place() {
        let image = image();
        let resource = |resource_type: i8, name: &str| {
            DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(s(name))
        };
        let request = DescribeConfigsRequest::default().with_resources(vec![
            resource(RESOURCE_BROKER, "1"),
            resource(RESOURCE_TOPIC, "metrics"),
            resource(RESOURCE_BROKER_LOGGER, "1"),
            resource(RESOURCE_TOPIC, "other.metrics"),
            resource(RESOURCE_BROKER, ""),
        ]);
        let mut handled = Vec::new();
        let response = round_trip(&image, request, |image, r| {
            let results = r
                .resources
                .iter()
                .map(|res| {
                    handled.push((res.resource_type, res.resource_name.to_string()));
                    let result = DescribeConfigsResult::default()
                        .with_resource_type(res.resource_type)
                        .with_resource_name(res.resource_name.clone());
                    match image.topic(&res.resource_name) {
                        Some(_) => result,
                        None => result
                            .with_error_code(UNKNOWN_TOPIC_OR_PARTITION)
                            .with_error_message(Some(s(&format!(
                                "Topic {} does not exist",
                                res.resource_name.as_str()
                            )))),
                    }
                })
                .collect();
            DescribeConfigsResponse::default().with_results(results)
        });
        assert_eq!(
            handled,
            vec![
                (RESOURCE_TOPIC, "acme.metrics".to_owned()),
                (RESOURCE_TOPIC, "acme.other.metrics".to_owned())
            ]
        );
        let answered: Vec<(i8, &str, i16)> = response
            .results
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str(), r.error_code))
            .collect();
        assert_eq!(
            answered,
            vec![
                (RESOURCE_BROKER, "1", CLUSTER_AUTHORIZATION_FAILED),
                (RESOURCE_TOPIC, "metrics", 0),
                (RESOURCE_BROKER_LOGGER, "1", CLUSTER_AUTHORIZATION_FAILED),
                (RESOURCE_TOPIC, "other.metrics", UNKNOWN_TOPIC_OR_PARTITION),
                (RESOURCE_BROKER, "", CLUSTER_AUTHORIZATION_FAILED),
            ]
        );
        assert_eq!(
            response.results[3].error_message.as_deref(),
            Some("Topic other.metrics does not exist")
        );
    }

    #[test]
    fn alter_configs_refuse_broker_resources() {
        let image = image();
        let request = AlterConfigsRequest::default().with_resources(vec![
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(s("metrics")),
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(RESOURCE_BROKER)
                .with_resource_name(s("1")),
        ]);
        let response = round_trip(&image, request, |_, r| {
            assert_eq!(r.resources.len(), 1);
            assert_eq!(r.resources[0].resource_name.as_str(), "acme.metrics");
            AlterConfigsResponse::default().with_responses(vec![
                alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(r.resources[0].resource_name.clone()),
            ])
        });
        let answered: Vec<(&str, i16)> = response
            .responses
            .iter()
            .map(|r| (r.resource_name.as_str(), r.error_code))
            .collect();
        assert_eq!(
            answered,
            vec![("metrics", 0), ("1", CLUSTER_AUTHORIZATION_FAILED)]
        );

        // Every resource refused: the handler sees none.
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(RESOURCE_BROKER_LOGGER)
                .with_resource_name(s("1")),
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(RESOURCE_BROKER)
                .with_resource_name(s("1")),
        ]);
        let response = round_trip(&image, request, |_, r| {
            assert!(r.resources.is_empty());
            IncrementalAlterConfigsResponse::default()
        });
        let answered: Vec<(i8, i16)> = response
            .responses
            .iter()
            .map(|r| (r.resource_type, r.error_code))
            .collect();
        assert_eq!(
            answered,
            vec![
                (RESOURCE_BROKER_LOGGER, CLUSTER_AUTHORIZATION_FAILED),
                (RESOURCE_BROKER, CLUSTER_AUTHORIZATION_FAILED)
            ]
        );
    }

    #[test]
    fn error_messages_name_things_the_clients_way() {
        let image = image();
        let request = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default().with_name(topic("metrics"))]);
        let response = round_trip(&image, request, |_, r| {
            let name = r.topics[0].name.clone();
            CreateTopicsResponse::default().with_topics(vec![CreatableTopicResult::default()
                .with_error_message(Some(s(&format!(
                    "Topic '{}' already exists.",
                    name.as_str()
                ))))
                .with_name(name)])
        });
        assert_eq!(response.topics[0].name.as_str(), "metrics");
        assert_eq!(
            response.topics[0].error_message.as_deref(),
            Some("Topic 'metrics' already exists.")
        );

        let request = CreatePartitionsRequest::default().with_topics(vec![
            kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic::default()
                .with_name(topic("logs")),
        ]);
        let response = round_trip(&image, request, |_, r| {
            CreatePartitionsResponse::default().with_results(vec![
                kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult::default()
                    .with_name(r.topics[0].name.clone())
                    .with_error_message(Some(s("The topic 'acme.logs' does not exist."))),
            ])
        });
        assert_eq!(response.results[0].name.as_str(), "logs");
        assert_eq!(
            response.results[0].error_message.as_deref(),
            Some("The topic 'logs' does not exist.")
        );
        // No message stays no message.
        let response = round_trip(&image, DescribeClusterRequest::default(), |_, _| {
            DescribeClusterResponse::default()
        });
        assert!(response.error_message.is_none());
    }

    #[test]
    fn echoed_names_of_other_tenants_are_blanked() {
        // A handler that echoed something the tenant does not own (it
        // cannot: every name it sees is the tenant's) would show nothing.
        let image = image();
        let response = round_trip(&image, ListOffsetsRequest::default(), |_, _| {
            ListOffsetsResponse::default().with_topics(vec![
                ListOffsetsTopicResponse::default().with_name(topic("other.metrics")),
                ListOffsetsTopicResponse::default().with_name(topic("acme.metrics")),
            ])
        });
        let listed: Vec<&str> = response.topics.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(listed, vec!["", "metrics"]);
    }
}
