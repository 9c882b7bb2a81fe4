//! The Kafka listener and connections.
//!
//! - [`listener`]: accept loop, `max.connections`, accept back-off, shutdown.
//! - [`connection`]: framing, header decoding, in-order pipelined responses,
//!   `socket.request.max.bytes`, `queued.max.requests`, idle timeout.

pub mod connection;
pub mod listener;
