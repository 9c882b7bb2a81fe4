//! openraft's network over our RPC: one [`RpcConnection`] per Raft client
//! (openraft makes one per target and replication stream). A refused or
//! broken connection is `Unreachable`, which makes openraft back off
//! instead of retrying hot.

// openraft's traits fix the error types (StorageError, RPCError), which
// are large; boxing them is not ours to choose.
#![allow(clippy::result_large_err)]
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;

use crate::cluster::controller::TypeConfig;
use crate::cluster::rpc::{RpcConnection, RpcError, RpcRequest, RpcResponse};

type NodeId = u64;

/// Makes a [`PeerClient`] for each target openraft talks to.
#[derive(Debug, Clone, Default)]
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            connection: RpcConnection::new(node.addr.clone()),
        }
    }
}

/// Raft's client for one peer.
#[derive(Debug)]
pub struct PeerClient {
    target: NodeId,
    connection: RpcConnection,
}

fn transport_error<E: std::error::Error>(e: RpcError) -> RPCError<NodeId, BasicNode, E> {
    match e {
        RpcError::Connect(..) | RpcError::Io(..) => RPCError::Unreachable(Unreachable::new(&e)),
        other => RPCError::Network(NetworkError::new(&other)),
    }
}

impl PeerClient {
    async fn call(
        &mut self,
        request: RpcRequest,
        option: &RPCOption,
    ) -> Result<RpcResponse, RpcError> {
        // openraft's hard TTL bounds a call; never wait less than a moment.
        let timeout = option.hard_ttl().max(Duration::from_millis(50));
        self.connection.call(&request, timeout).await
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(RpcRequest::AppendEntries(rpc), &option).await {
            Ok(RpcResponse::AppendEntries(result)) => {
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(transport_error(RpcError::Unexpected(
                self.connection.addr().to_owned(),
            ))),
            Err(e) => Err(transport_error(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self.call(RpcRequest::InstallSnapshot(rpc), &option).await {
            Ok(RpcResponse::InstallSnapshot(result)) => {
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(transport_error(RpcError::Unexpected(
                self.connection.addr().to_owned(),
            ))),
            Err(e) => Err(transport_error(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(RpcRequest::Vote(rpc), &option).await {
            Ok(RpcResponse::Vote(result)) => {
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(transport_error(RpcError::Unexpected(
                self.connection.addr().to_owned(),
            ))),
            Err(e) => Err(transport_error(e)),
        }
    }
}
