//! Metrobus: a message bus that speaks the Apache Kafka wire protocol, with
//! partitions stored in RocksDB.
//!
//! Layout, one owner per module:
//!
//! - [`admin_client`]: the blocking client of the `user`/`tenant` commands.
//! - [`broker`]: builds and owns the components; start and stop order.
//! - [`config`]: typed config (defaults < file < `METROBUS_*` env < flags).
//! - [`error`]: error values, each mapped to a Kafka error code.
//! - [`server`]: the listener (connection limit) and connections (framing,
//!   in-order pipelined responses, limits).
//! - [`protocol`]: one file per Kafka API (wire <-> domain), one dispatch
//!   `match`, one supported-versions table.
//! - [`log`]: partition storage on RocksDB: key layout, batch header view,
//!   the writer thread with group commit, reads, retention.
//! - [`replication`]: the replica manager (append, fetch long-poll, offsets)
//!   and Kafka's ISR replication (leader and follower sides, pure rules).
//! - [`cluster`]: the metadata log (records, image), the Raft controller,
//!   internal RPC, gossip membership and heartbeats.
//! - [`coordinator`]: consumer groups, committed offsets, transactions,
//!   producer-id blocks.
//! - [`tenant`]: principals, tenants' names (the one mapping to internal
//!   names), SASL (PLAIN, SCRAM) and the rewriting of tenants' requests.
//! - [`metrics`]: Prometheus metrics and the HTTP endpoint.

pub mod admin_client;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod coordinator;
pub mod error;
pub mod log;
pub mod metrics;
pub mod protocol;
pub mod replication;
pub mod server;
pub mod tenant;
