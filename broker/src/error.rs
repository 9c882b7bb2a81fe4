//! Error values. Every variant maps to exactly one Kafka error code, so that a
//! failure deep in storage becomes a per-partition `error_code` in the
//! response rather than a dropped connection.

use kafka_protocol::error::ResponseError;

/// The broker's error type below the protocol layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kafka-level failure with the code to send back, and an optional
    /// message for APIs that carry one.
    #[error("{}{}", api_error_name(*.code), .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Api {
        code: ResponseError,
        message: Option<String>,
    },
    /// RocksDB failed: the partition is unavailable on this node.
    #[error("storage error: {0}")]
    Storage(#[from] rocksdb::Error),
    /// An invariant broke inside the broker; logged, answered as
    /// UNKNOWN_SERVER_ERROR.
    #[error("internal error: {0}")]
    Internal(String),
}

fn api_error_name(code: ResponseError) -> String {
    format!("{code:?}")
}

impl Error {
    /// A Kafka error without a message.
    pub fn api(code: ResponseError) -> Self {
        Error::Api {
            code,
            message: None,
        }
    }

    /// A Kafka error with a message for the client.
    pub fn api_msg(code: ResponseError, message: impl Into<String>) -> Self {
        Error::Api {
            code,
            message: Some(message.into()),
        }
    }

    /// The Kafka error code this error is answered with.
    pub fn code(&self) -> i16 {
        match self {
            Error::Api { code, .. } => code.code(),
            Error::Storage(_) => ResponseError::KafkaStorageError.code(),
            Error::Internal(_) => ResponseError::UnknownServerError.code(),
        }
    }

    /// The message to send to clients, if the API carries one. Internal
    /// details of storage failures stay in the logs.
    pub fn client_message(&self) -> Option<String> {
        match self {
            Error::Api { message, .. } => message.clone(),
            Error::Storage(_) => Some("storage error on the broker".to_owned()),
            Error::Internal(_) => None,
        }
    }
}

/// Shorthand used across the broker.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kafka() {
        assert_eq!(Error::api(ResponseError::OffsetOutOfRange).code(), 1);
        assert_eq!(Error::Internal("x".into()).code(), -1);
        let msg = Error::api_msg(ResponseError::InvalidConfig, "bad").to_string();
        assert_eq!(msg, "InvalidConfig: bad");
    }
}
