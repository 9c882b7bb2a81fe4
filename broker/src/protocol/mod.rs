//! Kafka APIs: one file per API translating wire types to domain calls and
//! back; one dispatch `match`; one supported-versions table ([`versions`]).
//! Handlers hold no storage logic.

pub mod alter_configs;
pub mod api_versions;
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
pub mod sync_group;
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

/// What the connection knows about a request besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: String,
    pub peer: SocketAddr,
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
/// returns the rest as a future.
fn run<Req, Resp, Fut>(
    mut body: Bytes,
    version: i16,
    handler: impl FnOnce(Req) -> Fut,
) -> Result<ResponseFuture, String>
where
    Req: Decodable,
    Resp: Encodable + Send + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
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
    let v = context.api_version;
    match context.api_key {
        ApiKey::Produce => produce::dispatch(broker, context, body),
        ApiKey::Fetch => run(body, v, move |r| fetch::handle(b, c, r)),
        ApiKey::ListOffsets => run(body, v, move |r| list_offsets::handle(b, c, r)),
        ApiKey::Metadata => run(body, v, move |r| metadata::handle(b, c, r)),
        ApiKey::ApiVersions => run(body, v, move |r| api_versions::handle(c, r)),
        ApiKey::CreateTopics => run(body, v, move |r| create_topics::handle(b, c, r)),
        ApiKey::DeleteTopics => run(body, v, move |r| delete_topics::handle(b, c, r)),
        ApiKey::CreatePartitions => run(body, v, move |r| create_partitions::handle(b, c, r)),
        ApiKey::DescribeConfigs => run(body, v, move |r| describe_configs::handle(b, c, r)),
        ApiKey::AlterConfigs => run(body, v, move |r| alter_configs::handle(b, c, r)),
        ApiKey::IncrementalAlterConfigs => {
            run(body, v, move |r| incremental_alter_configs::handle(b, c, r))
        }
        ApiKey::DeleteRecords => run(body, v, move |r| delete_records::handle(b, c, r)),
        ApiKey::DescribeCluster => run(body, v, move |r| describe_cluster::handle(b, c, r)),
        ApiKey::OffsetForLeaderEpoch => {
            run(body, v, move |r| offset_for_leader_epoch::handle(b, c, r))
        }
        ApiKey::FindCoordinator => run(body, v, move |r| find_coordinator::handle(b, c, r)),
        ApiKey::JoinGroup => run(body, v, move |r| join_group::handle(b, c, r)),
        ApiKey::SyncGroup => run(body, v, move |r| sync_group::handle(b, c, r)),
        ApiKey::Heartbeat => run(body, v, move |r| heartbeat::handle(b, c, r)),
        ApiKey::LeaveGroup => run(body, v, move |r| leave_group::handle(b, c, r)),
        ApiKey::OffsetCommit => run(body, v, move |r| offset_commit::handle(b, c, r)),
        ApiKey::OffsetFetch => run(body, v, move |r| offset_fetch::handle(b, c, r)),
        ApiKey::DescribeGroups => run(body, v, move |r| describe_groups::handle(b, c, r)),
        ApiKey::ListGroups => run(body, v, move |r| list_groups::handle(b, c, r)),
        ApiKey::DeleteGroups => run(body, v, move |r| delete_groups::handle(b, c, r)),
        ApiKey::OffsetDelete => run(body, v, move |r| offset_delete::handle(b, c, r)),
        ApiKey::InitProducerId => run(body, v, move |r| init_producer_id::handle(b, c, r)),
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
