//! A small blocking Kafka client for the `metrobus user` and `metrobus
//! tenant` commands: one connection, optionally logged in with SASL PLAIN
//! (the password travels as in any PLAIN login: use it on a trusted network
//! or a TLS listener), one request at a time.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// The longest answer the client accepts.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(30);

/// A user name and password.
#[derive(Clone)]
pub struct Login {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login").field("user", &self.user).finish()
    }
}

/// One connection to a broker.
#[derive(Debug)]
pub struct AdminClient {
    stream: TcpStream,
    correlation_id: i32,
}

/// An answer's error as a Result: its message, or its code when it has none.
pub fn check(error_code: i16, error_message: Option<StrBytes>) -> anyhow::Result<()> {
    if error_code == 0 {
        return Ok(());
    }
    bail!(
        "{}",
        error_message
            .map(|m| m.to_string())
            .unwrap_or_else(|| format!("error {error_code}"))
    )
}

impl AdminClient {
    /// Connects to `bootstrap` (`HOST:PORT`) and logs in if `login` is set
    /// (the listener must be SASL_PLAINTEXT with PLAIN enabled).
    pub fn connect(bootstrap: &str, login: Option<&Login>) -> anyhow::Result<Self> {
        let addr = bootstrap
            .to_socket_addrs()
            .with_context(|| format!("resolving {bootstrap}"))?
            .next()
            .with_context(|| format!("{bootstrap} resolves to nothing"))?;
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
            .with_context(|| format!("connecting to {bootstrap}"))?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        let mut client = AdminClient {
            stream,
            correlation_id: 0,
        };
        if let Some(login) = login {
            client.login(login)?;
        }
        Ok(client)
    }

    fn login(&mut self, login: &Login) -> anyhow::Result<()> {
        let handshake: SaslHandshakeResponse = self.call(
            1,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        )?;
        if handshake.error_code != 0 {
            bail!(
                "the broker does not offer SASL PLAIN here (error {}; it offers {:?})",
                handshake.error_code,
                handshake.mechanisms
            );
        }
        let mut token = Vec::new();
        token.push(0);
        token.extend_from_slice(login.user.as_bytes());
        token.push(0);
        token.extend_from_slice(login.password.as_bytes());
        let answer: SaslAuthenticateResponse = self.call(
            0,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
        )?;
        check(answer.error_code, answer.error_message)
            .map_err(|e| anyhow::anyhow!("login as {} failed: {e}", login.user))
    }

    /// Sends `request` as `version` and reads its response.
    pub fn call<R>(&mut self, version: i16, request: &R) -> anyhow::Result<R::Response>
    where
        R: Request,
    {
        self.correlation_id += 1;
        let api_key = ApiKey::try_from(R::KEY).map_err(|_| anyhow::anyhow!("bad api key"))?;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("metrobus-cli")));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header.encode(&mut frame, R::header_version(version))?;
        request.encode(&mut frame, version)?;
        let length = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        self.stream.write_all(&frame).context("sending a request")?;
        let mut length = [0u8; 4];
        self.stream
            .read_exact(&mut length)
            .context("the broker closed the connection")?;
        let length = i32::from_be_bytes(length);
        if length < 4 || length as usize > MAX_RESPONSE_BYTES {
            bail!("the broker sent a frame of {length} bytes");
        }
        let mut body = vec![0u8; length as usize];
        self.stream
            .read_exact(&mut body)
            .context("reading a response")?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(
            &mut body,
            <R::Response as HeaderVersion>::header_version(version),
        )?;
        if header.correlation_id != self.correlation_id {
            bail!("response to another request ({})", header.correlation_id);
        }
        let response = R::Response::decode(&mut body, version)
            .with_context(|| format!("decoding the {api_key:?} response"))?;
        if body.has_remaining() {
            bail!(
                "{} bytes left after the {api_key:?} response",
                body.remaining()
            );
        }
        Ok(response)
    }
}
