//! Coordinators: consumer groups and their committed offsets, and the
//! producer ids of idempotent producers.
//!
//! - [`group`]: the classic group protocol as a pure state machine.
//! - [`record`]: the `__consumer_offsets` record layout (Kafka's).
//! - [`group_coordinator`]: waiting requests, timers, storage and loading.
//! - [`producer_id`]: producer-id blocks for InitProducerId.
//! - [`transaction`]: a transactional id's state machine, pure (groundwork:
//!   the transaction coordinator is not built yet).

pub mod group;
pub mod group_coordinator;
pub mod producer_id;
pub mod record;
pub mod transaction;
