//! The internal RPC between nodes, on `controller.listener` (TCP): Raft's
//! messages, proposals forwarded to the active controller, broker
//! heartbeats, ISR changes (AlterPartition), controlled shutdown, replica
//! fetching and transaction markers. Kafka clients never see it, as Kafka keeps its controller and
//! inter-broker traffic apart from client listeners.
//!
//! Framing: a big-endian u32 length, then a bincode body; a replica fetch
//! response's record batches follow its body as they are. A connection
//! carries one call at a time (request, then response); each user owns its
//! connection, so nothing is locked across a call. A frame over
//! [`MAX_FRAME`] or one that does not decode closes the connection.

use std::time::Duration;

use bytes::Bytes;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::cluster::controller::TypeConfig;
use crate::cluster::records::{BrokerRegistration, ControllerReply, MetadataRecord};
use crate::replication::txn_markers::{MarkerResults, TxnMarkers};

/// The largest frame either side accepts: replica fetches are bounded by
/// `replica.fetch.response.max.bytes` well below this.
pub const MAX_FRAME: usize = 256 * 1024 * 1024;

type NodeId = u64;

/// A broker's periodic heartbeat to the active controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokerHeartbeat {
    pub registration: BrokerRegistration,
    /// How far this broker has applied the metadata log.
    pub applied_index: u64,
}

/// The controller's answer to a heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatReply {
    pub error_code: i16,
    /// Whether the controller has this broker fenced right now.
    pub fenced: bool,
}

/// A partition leader's request to change its ISR (Kafka's AlterPartition).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlterPartitionRequest {
    pub broker: i32,
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// One partition of a follower's fetch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaFetchPartition {
    pub topic_id: Uuid,
    pub partition: i32,
    pub fetch_offset: i64,
    /// The leader epoch the follower believes is current.
    pub leader_epoch: i32,
    /// The epoch of the last batch the follower has (-1: none), so the
    /// leader can tell whether their logs diverged (KIP-595's check).
    pub last_fetched_epoch: i32,
}

/// A follower's fetch from a leader (Kafka's Fetch with a replica id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaFetchRequest {
    pub replica_id: i32,
    pub max_wait_ms: u64,
    pub min_bytes: usize,
    pub max_bytes: usize,
    pub partitions: Vec<ReplicaFetchPartition>,
}

/// One partition of a leader's answer to a follower.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaFetchedPartition {
    pub topic_id: Uuid,
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Set when the follower's log diverged: truncate to this end offset of
    /// this epoch before fetching again.
    pub diverging_epoch: Option<(i32, i64)>,
    /// Travels after the bincode body, not in it (see [`encode_response`]):
    /// bincode would copy it once into the frame and once more out of it.
    #[serde(skip)]
    pub records: Bytes,
    /// The length of `records` on the wire; set by [`encode_response`].
    pub records_len: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RpcRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A metadata record for the active controller to commit.
    Propose(MetadataRecord),
    Heartbeat(BrokerHeartbeat),
    AlterPartition(AlterPartitionRequest),
    /// A broker stopping cleanly asks the controller to move its
    /// leadership away first.
    ControlledShutdown {
        broker: i32,
    },
    ReplicaFetch(ReplicaFetchRequest),
    /// A transaction coordinator's markers for partitions this node leads.
    WriteTxnMarkers(TxnMarkers),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// The reply of the applied record, or NOT_CONTROLLER (41) with the
    /// leader this node knows of.
    Propose(ControllerReply),
    Heartbeat(HeartbeatReply),
    AlterPartition(ControllerReply),
    ControlledShutdown(ControllerReply),
    ReplicaFetch(Vec<ReplicaFetchedPartition>),
    WriteTxnMarkers(MarkerResults),
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("rpc i/o with {0}: {1}")]
    Io(String, std::io::Error),
    #[error("rpc to {0} timed out")]
    Timeout(String),
    #[error("rpc codec: {0}")]
    Codec(String),
    #[error("unexpected rpc response from {0}")]
    Unexpected(String),
}

pub(crate) async fn read_frame<R: AsyncReadExt + Unpin>(
    reader: &mut R,
) -> std::io::Result<Vec<u8>> {
    let len = reader.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("rpc frame of {len} bytes is over the {MAX_FRAME} limit"),
        ));
    }
    // Read into spare capacity: zeroing a replica fetch's megabytes first
    // would cost as much as a copy.
    let mut body = Vec::with_capacity(len);
    let mut limited = (&mut *reader).take(len as u64);
    while body.len() < len {
        if limited.read_buf(&mut body).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(body)
}

pub(crate) async fn write_frame<W: AsyncWriteExt + Unpin>(
    writer: &mut W,
    body: &[u8],
) -> std::io::Result<()> {
    write_frame_parts(writer, body, &[]).await
}

/// Encodes a response: its bincode body, then what travels after the body
/// (a replica fetch's records, in partition order), sent without copying.
pub(crate) fn encode_response(
    response: &mut RpcResponse,
) -> Result<(Vec<u8>, Vec<Bytes>), RpcError> {
    let mut payload = Vec::new();
    if let RpcResponse::ReplicaFetch(partitions) = response {
        for p in partitions.iter_mut() {
            p.records_len = p.records.len() as u64;
            if !p.records.is_empty() {
                payload.push(p.records.clone());
            }
        }
    }
    let body = bincode::serialize(response).map_err(|e| RpcError::Codec(e.to_string()))?;
    Ok((body, payload))
}

/// Decodes a response frame written by [`encode_response`]: the records
/// become slices of the frame itself.
pub(crate) fn decode_response(frame: Bytes) -> Result<RpcResponse, RpcError> {
    let mut rest: &[u8] = &frame;
    let mut response: RpcResponse =
        bincode::deserialize_from(&mut rest).map_err(|e| RpcError::Codec(e.to_string()))?;
    let mut at = frame.len() - rest.len();
    if let RpcResponse::ReplicaFetch(partitions) = &mut response {
        for p in partitions.iter_mut() {
            let end = usize::try_from(p.records_len)
                .ok()
                .and_then(|len| at.checked_add(len))
                .filter(|end| *end <= frame.len())
                .ok_or_else(|| RpcError::Codec("replica fetch records past the frame".into()))?;
            p.records = frame.slice(at..end);
            at = end;
        }
    }
    if at != frame.len() {
        return Err(RpcError::Codec(format!(
            "{} bytes after the response",
            frame.len() - at
        )));
    }
    Ok(response)
}

/// Writes one frame made of `body` and then `payload`.
pub(crate) async fn write_frame_parts<W: AsyncWriteExt + Unpin>(
    writer: &mut W,
    body: &[u8],
    payload: &[Bytes],
) -> std::io::Result<()> {
    let total = payload
        .iter()
        .fold(body.len(), |n, p| n.saturating_add(p.len()));
    let len = u32::try_from(total)
        .ok()
        .filter(|l| (*l as usize) <= MAX_FRAME)
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "rpc frame too large")
        })?;
    writer.write_u32(len).await?;
    writer.write_all(body).await?;
    for part in payload {
        writer.write_all(part).await?;
    }
    writer.flush().await
}

/// One connection to a peer's RPC listener, opened on first use and again
/// after any failure. Owned by one caller at a time.
#[derive(Debug)]
pub struct RpcConnection {
    addr: String,
    stream: Option<(
        BufReader<tokio::net::tcp::OwnedReadHalf>,
        BufWriter<tokio::net::tcp::OwnedWriteHalf>,
    )>,
}

impl RpcConnection {
    pub fn new(addr: impl Into<String>) -> Self {
        RpcConnection {
            addr: addr.into(),
            stream: None,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one request and waits for its response, within `timeout`.
    pub async fn call(
        &mut self,
        request: &RpcRequest,
        timeout: Duration,
    ) -> Result<RpcResponse, RpcError> {
        let body = bincode::serialize(request).map_err(|e| RpcError::Codec(e.to_string()))?;
        let addr = self.addr.clone();
        let outcome = tokio::time::timeout(timeout, self.exchange(&body)).await;
        match outcome {
            Ok(Ok(frame)) => decode_response(Bytes::from(frame)).inspect_err(|_| {
                self.stream = None;
            }),
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                // A late response would answer the next request: drop the
                // connection so that can never happen.
                self.stream = None;
                Err(RpcError::Timeout(addr))
            }
        }
    }

    async fn exchange(&mut self, body: &[u8]) -> Result<Vec<u8>, RpcError> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.addr)
                .await
                .map_err(|e| RpcError::Connect(self.addr.clone(), e))?;
            let _ = stream.set_nodelay(true);
            let (read, write) = stream.into_split();
            self.stream = Some((BufReader::new(read), BufWriter::new(write)));
        }
        let addr = self.addr.clone();
        let Some((reader, writer)) = self.stream.as_mut() else {
            return Err(RpcError::Unexpected(addr));
        };
        write_frame(writer, body)
            .await
            .map_err(|e| RpcError::Io(addr.clone(), e))?;
        read_frame(reader).await.map_err(|e| RpcError::Io(addr, e))
    }
}

/// Serves the RPC listener until `shutdown`: one task per connection, one
/// call at a time on each.
pub async fn serve(
    listener: tokio::net::TcpListener,
    controller: std::sync::Arc<crate::cluster::controller::Controller>,
    replicas: std::sync::Arc<crate::replication::ReplicaManager>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "rpc accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let controller = controller.clone();
        let replicas = replicas.clone();
        let shutdown = shutdown.clone();
        let _ = connections.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                outcome = serve_connection(stream, &controller, &replicas) => {
                    if let Err(e) = outcome {
                        tracing::debug!(%peer, error = %e, "rpc connection closed");
                    }
                }
            }
        });
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(
    stream: TcpStream,
    controller: &crate::cluster::controller::Controller,
    replicas: &std::sync::Arc<crate::replication::ReplicaManager>,
) -> std::io::Result<()> {
    let (read, write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut writer = BufWriter::new(write);
    loop {
        let body = match read_frame(&mut reader).await {
            Ok(body) => body,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let request: RpcRequest = bincode::deserialize(&body)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        let mut response = match request {
            RpcRequest::AppendEntries(rpc) => {
                if let Some(leader) = rpc.vote.leader_id().voted_for() {
                    controller.note_leader_contact(leader as i32);
                }
                RpcResponse::AppendEntries(controller.raft().append_entries(rpc).await)
            }
            RpcRequest::Vote(rpc) => RpcResponse::Vote(controller.raft().vote(rpc).await),
            RpcRequest::InstallSnapshot(rpc) => {
                RpcResponse::InstallSnapshot(controller.raft().install_snapshot(rpc).await)
            }
            RpcRequest::Propose(record) => {
                RpcResponse::Propose(controller.propose_local(record).await)
            }
            RpcRequest::Heartbeat(heartbeat) => {
                RpcResponse::Heartbeat(controller.handle_heartbeat(heartbeat).await)
            }
            RpcRequest::AlterPartition(request) => {
                RpcResponse::AlterPartition(controller.handle_alter_partition(request).await)
            }
            RpcRequest::ControlledShutdown { broker } => {
                RpcResponse::ControlledShutdown(controller.handle_controlled_shutdown(broker).await)
            }
            RpcRequest::ReplicaFetch(request) => {
                RpcResponse::ReplicaFetch(replicas.replica_fetch(request).await)
            }
            RpcRequest::WriteTxnMarkers(markers) => {
                RpcResponse::WriteTxnMarkers(replicas.write_txn_markers(markers).await)
            }
        };
        let (body, payload) = encode_response(&mut response)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        write_frame_parts(&mut writer, &body, &payload).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(partition: i32, records: &'static [u8]) -> ReplicaFetchedPartition {
        ReplicaFetchedPartition {
            topic_id: Uuid::from_u128(7),
            partition,
            error_code: 0,
            high_watermark: 10,
            log_start_offset: 0,
            diverging_epoch: None,
            records: Bytes::from_static(records),
            records_len: 0,
        }
    }

    async fn frame_of(mut response: RpcResponse) -> Vec<u8> {
        let (body, payload) = encode_response(&mut response).unwrap();
        let mut wire = Vec::new();
        write_frame_parts(&mut wire, &body, &payload).await.unwrap();
        let mut reader: &[u8] = &wire;
        read_frame(&mut reader).await.unwrap()
    }

    #[tokio::test]
    async fn replica_fetch_records_travel_after_the_body() {
        let frame = frame_of(RpcResponse::ReplicaFetch(vec![
            fetched(0, b"first batch"),
            fetched(1, b""),
            fetched(2, b"third"),
        ]))
        .await;
        let RpcResponse::ReplicaFetch(partitions) = decode_response(Bytes::from(frame)).unwrap()
        else {
            panic!("not a replica fetch");
        };
        let records: Vec<&[u8]> = partitions.iter().map(|p| &p.records[..]).collect();
        assert_eq!(records, [&b"first batch"[..], b"", b"third"]);
        assert_eq!(partitions[2].partition, 2);
        assert_eq!(partitions[2].high_watermark, 10);
    }

    #[tokio::test]
    async fn other_responses_and_bad_frames() {
        let frame = frame_of(RpcResponse::Heartbeat(HeartbeatReply {
            error_code: 0,
            fenced: false,
        }))
        .await;
        assert!(matches!(
            decode_response(Bytes::from(frame.clone())),
            Ok(RpcResponse::Heartbeat(_))
        ));
        // Trailing bytes, and records cut short, are refused.
        let mut long = frame;
        long.push(0);
        assert!(decode_response(Bytes::from(long)).is_err());
        let mut short = frame_of(RpcResponse::ReplicaFetch(vec![fetched(0, b"batch")])).await;
        let _ = short.pop();
        assert!(decode_response(Bytes::from(short)).is_err());
        // A frame that ends before its length is an error, not a hang.
        let mut cut: &[u8] = &[0, 0, 0, 9, 1, 2, 3];
        let err = read_frame(&mut cut).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
