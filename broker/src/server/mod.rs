//! The Kafka listener and connections.
//!
//! - [`listener`]: accept loop, `max.connections`, accept back-off, shutdown.
//! - [`endpoint`]: `listeners` specifications and security protocols.
//! - [`tls`]: the TLS server config of SSL and SASL_SSL listeners.
//! - [`auth`]: a connection's principal and its SASL exchange.
//! - [`connection`]: framing, header decoding, in-order pipelined responses,
//!   `socket.request.max.bytes`, `queued.max.requests`, idle timeout.

pub mod auth;
pub mod connection;
pub mod endpoint;
pub mod listener;
pub mod tls;
