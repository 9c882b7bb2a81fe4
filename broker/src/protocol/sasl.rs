//! SaslHandshake and SaslAuthenticate: the wire side. The exchange itself
//! belongs to the connection ([`crate::server::auth`]), because it changes
//! who the connection is; these requests reach the dispatch only where no
//! exchange is expected (a listener without SASL), and get
//! ILLEGAL_SASL_STATE, as Kafka answers.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};

use crate::protocol::str_bytes;

pub fn handshake_response(code: i16, mechanisms: &[String]) -> SaslHandshakeResponse {
    SaslHandshakeResponse::default()
        .with_error_code(code)
        .with_mechanisms(mechanisms.iter().map(|m| str_bytes(m)).collect())
}

pub fn authenticate_response(
    code: i16,
    message: Option<&str>,
    auth_bytes: Vec<u8>,
    session_lifetime_ms: i64,
) -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(code)
        .with_error_message(message.map(str_bytes))
        .with_auth_bytes(Bytes::from(auth_bytes))
        .with_session_lifetime_ms(session_lifetime_ms)
}

pub async fn handle_handshake(request: SaslHandshakeRequest) -> SaslHandshakeResponse {
    let _ = request;
    handshake_response(ResponseError::IllegalSaslState.code(), &[])
}

pub async fn handle_authenticate(request: SaslAuthenticateRequest) -> SaslAuthenticateResponse {
    let _ = request;
    authenticate_response(
        ResponseError::IllegalSaslState.code(),
        Some("this listener does not use SASL"),
        Vec::new(),
        0,
    )
}
