//! Coordinators: consumer groups and their committed offsets.
//!
//! - [`group`]: the classic group protocol as a pure state machine.
//! - [`record`]: the `__consumer_offsets` record layout (Kafka's).
//! - [`group_coordinator`]: waiting requests, timers, storage and loading.

pub mod group;
pub mod group_coordinator;
pub mod record;
