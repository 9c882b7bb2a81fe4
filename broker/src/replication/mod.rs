//! The replica manager: appends, fetches, offset lookups and log-start moves
//! for the partitions this node hosts, and Kafka's replication protocol
//! between them.
//!
//! - [`partition`]: the ISR and high-watermark rules, pure.
//! - [`checkpoint`]: high-watermark checkpoints, what a restart serves from.
//! - [`replica_manager`]: the [`ReplicaManager`] and reconciliation with
//!   the metadata image (become leader, become follower).
//! - [`fetch`]: the consumers' fetch path (long polls on watches).
//! - [`leader`]: followers' fetches, ISR maintenance, acks=all waits.
//! - [`follower`]: the fetchers that pull from leaders.
//! - [`txn_markers`]: transaction markers written on partition leaders.

pub mod checkpoint;
pub mod fetch;
pub mod follower;
pub mod leader;
pub mod partition;
pub mod replica_manager;
pub mod txn_markers;

pub use replica_manager::ReplicaManager;
