//! Coordinators: consumer groups and their committed offsets, transactions,
//! and the producer ids of idempotent and transactional producers.
//!
//! - [`group`]: the classic group protocol as a pure state machine.
//! - [`record`]: the `__consumer_offsets` record layout (Kafka's).
//! - [`group_coordinator`]: waiting requests, timers, storage and loading.
//! - [`producer_id`]: producer-id blocks for InitProducerId.
//! - [`transaction`]: a transactional id's state machine, pure.
//! - [`transaction_coordinator`]: transactional ids' requests, storage in
//!   `__transaction_state`, loading and the markers that end transactions.
//! - [`internal_topic`]: what both coordinators share about their topics.

pub mod group;
pub mod group_coordinator;
pub mod internal_topic;
pub mod producer_id;
pub mod record;
pub mod transaction;
pub mod transaction_coordinator;
