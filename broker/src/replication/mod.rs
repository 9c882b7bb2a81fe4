//! The replica manager: appends, fetches, offset lookups and log-start moves
//! for the partitions this node hosts. On a single node every partition has
//! one replica, the leader here; the cluster issue adds followers, the ISR
//! and high-watermark rules behind the same calls.

pub mod fetch;
pub mod replica_manager;

pub use replica_manager::ReplicaManager;
