//! Cluster metadata and membership.
//!
//! - [`records`]: the metadata log's records and replies.
//! - [`metadata`]: the immutable [`metadata::MetadataImage`] and the pure
//!   function that applies a record to it.
//! - [`controller`]: the Raft controller (openraft) that commits records,
//!   and the active controller's automatic decisions.
//! - [`store`]: the handle request handlers use to read and change metadata.
//! - [`rpc`]: the internal RPC between nodes.
//! - [`membership`]: gossip (chitchat), heartbeats, controlled shutdown.

pub mod controller;
pub mod membership;
pub mod metadata;
pub mod records;
pub mod rpc;
pub mod store;
pub mod topic_record;
