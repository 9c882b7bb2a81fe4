//! One Kafka connection.
//!
//! The reader half reads a frame, decodes its header, hands the request to
//! [`crate::protocol::dispatch`] (which fixes any ordering, such as the order
//! of appends, before returning), spawns the response future and queues its
//! handle. The writer half awaits the handles in arrival order, so responses
//! leave in request order while the requests themselves run concurrently
//! (a long-polling fetch does not hold up the produce behind it).
//!
//! On a SASL listener the reader runs the authentication exchange itself,
//! in order ([`crate::server::auth`]), and refuses other requests until it
//! has succeeded. TLS listeners wrap the stream first.
//!
//! Bad input never panics and never affects other connections: an oversized
//! or malformed frame, an unknown API key, or an unsupported version closes
//! this connection after logging why.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::broker::Broker;
use crate::metrics;
use crate::protocol::{self, versions, Outcome, RequestContext};
use crate::server::auth::{ConnectionAuth, Gate};
use crate::server::listener::ListenerSecurity;
use crate::tenant::{quota, Principal};

/// How long a client has to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A response on its way: the correlation id, header version and the task.
struct Pending {
    correlation_id: i32,
    header_version: i16,
    task: JoinHandle<Outcome>,
}

/// Why a connection was closed by the broker.
#[derive(Debug)]
enum Close {
    /// The peer closed or the connection is idle or shutting down: no log.
    Quiet,
    /// A protocol violation, logged with the reason and counted.
    Violation(&'static str, String),
}

/// Serves one connection until it closes or `shutdown` is cancelled.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    security: Arc<ListenerSecurity>,
    shutdown: CancellationToken,
) {
    match &security.tls {
        None => {
            let (read_half, write_half) = stream.into_split();
            serve_halves(read_half, write_half, peer, broker, security, shutdown).await
        }
        Some(acceptor) => {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => accepted,
            };
            match accepted {
                Ok(Ok(tls)) => {
                    let (read_half, write_half) = tokio::io::split(tls);
                    serve_halves(read_half, write_half, peer, broker, security, shutdown).await
                }
                Ok(Err(e)) => {
                    info!(%peer, error = %e, "TLS handshake failed");
                    metrics::CONNECTIONS_CLOSED_TOTAL
                        .with_label_values(&["tls_handshake_failed"])
                        .inc();
                }
                Err(_) => {
                    info!(%peer, "TLS handshake timed out");
                    metrics::CONNECTIONS_CLOSED_TOTAL
                        .with_label_values(&["tls_handshake_failed"])
                        .inc();
                }
            }
        }
    }
}

async fn serve_halves<R, W>(
    read_half: R,
    write_half: W,
    peer: SocketAddr,
    broker: Arc<Broker>,
    security: Arc<ListenerSecurity>,
    shutdown: CancellationToken,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (queue, pending) = mpsc::channel(broker.config.queued_max_requests);
    let writer_done = CancellationToken::new();
    let writer = tokio::spawn(write_responses(write_half, pending, writer_done.clone()));
    let connection = Connection {
        peer,
        broker: &broker,
        security: &security,
        queue,
        shutdown: &shutdown,
        writer_done: &writer_done,
    };
    let reason = connection.read_requests(read_half).await;
    match reason {
        Close::Quiet => debug!(%peer, "connection closed"),
        Close::Violation(kind, detail) => {
            info!(%peer, reason = kind, detail = %detail, "closing connection");
            metrics::CONNECTIONS_CLOSED_TOTAL
                .with_label_values(&[kind])
                .inc();
        }
    }
    // The queue sender is dropped: the writer drains what is in flight.
    let _ = writer.await;
}

/// The reader side's view of its connection.
struct Connection<'a> {
    peer: SocketAddr,
    broker: &'a Arc<Broker>,
    security: &'a Arc<ListenerSecurity>,
    queue: mpsc::Sender<Pending>,
    shutdown: &'a CancellationToken,
    writer_done: &'a CancellationToken,
}

impl Connection<'_> {
    async fn read_requests<R: AsyncRead + Unpin + Send>(self, read_half: R) -> Close {
        let Connection {
            peer,
            broker,
            security,
            queue,
            shutdown,
            writer_done,
        } = self;
        let mut auth = ConnectionAuth::new(security.protocol);
        let mut reader = BufReader::with_capacity(64 * 1024, read_half);
        let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
        let max_frame = broker.config.socket_request_max_bytes;
        let mute = Arc::new(protocol::ConnectionMute::default());
        loop {
            let length = tokio::select! {
                _ = shutdown.cancelled() => return Close::Quiet,
                _ = writer_done.cancelled() => return Close::Quiet,
                read = tokio::time::timeout(idle, reader.read_i32()) => match read {
                    Err(_) => return Close::Quiet,
                    Ok(Err(_)) => return Close::Quiet,
                    Ok(Ok(length)) => length,
                },
            };
            if length < 8 || length > max_frame {
                return Close::Violation(
                    "invalid_frame_size",
                    format!("frame of {length} bytes (allowed 8..={max_frame})"),
                );
            }
            // Reserve the frame's bytes from the broker-wide budget before
            // reading it; the permit lives until the request is answered.
            let memory = tokio::select! {
                _ = shutdown.cancelled() => return Close::Quiet,
                permit = broker.request_memory.clone().acquire_many_owned(length as u32) => match permit {
                    Ok(permit) => permit,
                    Err(_) => return Close::Quiet,
                },
            };
            let frame = match read_frame_body(&mut reader, length as usize, idle, shutdown).await {
                Ok(frame) => frame,
                Err(close) => return close,
            };
            // A client over its quota: its requests wait in this frame and
            // the socket until its throttle time has passed (KIP-219). The
            // responses already queued still go out in order.
            while let Some(wait) = mute.remaining() {
                tokio::select! {
                    _ = shutdown.cancelled() => return Close::Quiet,
                    _ = writer_done.cancelled() => return Close::Quiet,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
            let gate = match ApiKey::try_from(raw_key) {
                Ok(api_key) => auth.gate(api_key),
                // Unknown keys are refused by the decoding below.
                Err(_) => Gate::Dispatch,
            };
            let (pending, close_after) = match gate {
                Gate::Refuse(kind, detail) => return Close::Violation(kind, detail),
                Gate::Dispatch => {
                    let principal = auth.principal().clone();
                    match decode_and_dispatch(
                        frame,
                        peer,
                        broker,
                        &security.name,
                        principal,
                        memory,
                        &mute,
                    ) {
                        Ok(pending) => (pending, None),
                        Err(close) => return close,
                    }
                }
                Gate::Authenticate => match authenticate(frame, broker, &mut auth).await {
                    Ok(step) => step,
                    Err(close) => return close,
                },
            };
            if queue.send(pending).await.is_err() {
                return Close::Quiet;
            }
            if let Some(reason) = close_after {
                // The writer sends the answer, then the connection closes.
                return Close::Violation("authentication_failed", reason);
            }
        }
    }
}

/// Runs a SASL step in order; its response, and a reason to close after it.
async fn authenticate(
    mut frame: Bytes,
    broker: &Arc<Broker>,
    auth: &mut ConnectionAuth,
) -> Result<(Pending, Option<String>), Close> {
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key)
        .map_err(|_| Close::Violation("unknown_api_key", format!("api key {raw_key}")))?;
    if !versions::is_supported(api_key, version) {
        return Err(Close::Violation(
            "unsupported_version",
            format!("{api_key:?} v{version} is not supported"),
        ));
    }
    let _header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| Close::Violation("malformed_header", e.to_string()))?;
    metrics::REQUESTS_TOTAL
        .with_label_values(&[versions::api_name(api_key)])
        .inc();
    let reply = auth
        .handle(api_key, version, frame, broker)
        .await
        .map_err(|e| {
            Close::Violation("malformed_request", format!("{api_key:?} v{version}: {e}"))
        })?;
    let outcome = reply.outcome;
    Ok((
        Pending {
            correlation_id,
            header_version: api_key.response_header_version(version),
            task: tokio::spawn(async move { outcome }),
        },
        reply.close,
    ))
}

/// Reads a frame body of `length` bytes into a buffer of exactly that
/// capacity, without zero-filling it first (a multi-megabyte produce would
/// otherwise be written twice).
async fn read_frame_body<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    length: usize,
    idle: Duration,
    shutdown: &CancellationToken,
) -> Result<Bytes, Close> {
    let mut frame = BytesMut::with_capacity(length);
    // `take` stops at the frame's end even if the buffer has spare capacity.
    let mut body = reader.take(length as u64);
    while frame.len() < length {
        let read = tokio::select! {
            _ = shutdown.cancelled() => return Err(Close::Quiet),
            read = tokio::time::timeout(idle, body.read_buf(&mut frame)) => read,
        };
        match read {
            Ok(Ok(n)) if n > 0 => {}
            _ => {
                return Err(Close::Violation(
                    "truncated_frame",
                    format!("peer sent less than {length} bytes"),
                ))
            }
        }
    }
    Ok(frame.freeze())
}

fn decode_and_dispatch(
    mut frame: Bytes,
    peer: SocketAddr,
    broker: &Arc<Broker>,
    listener: &Arc<str>,
    principal: Arc<Principal>,
    memory: OwnedSemaphorePermit,
    mute: &Arc<protocol::ConnectionMute>,
) -> Result<Pending, Close> {
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key)
        .map_err(|_| Close::Violation("unknown_api_key", format!("api key {raw_key}")))?;
    if !versions::is_supported(api_key, version) {
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer a too-new ApiVersions in v0 form with our list,
            // so the client can pick a version we speak.
            let body = protocol::api_versions::unsupported_version_body();
            return Ok(Pending {
                correlation_id,
                header_version: 0,
                task: tokio::spawn(async move { Outcome::Respond(body) }),
            });
        }
        return Err(Close::Violation(
            "unsupported_version",
            format!("{api_key:?} v{version} is not supported"),
        ));
    }
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| Close::Violation("malformed_header", e.to_string()))?;
    let client_id = header
        .client_id
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default();
    let span = tracing::debug_span!("request", api = ?api_key, version, correlation_id, client_id = %client_id, %peer);
    let context = RequestContext {
        api_key,
        api_version: version,
        correlation_id,
        client_id,
        peer,
        listener: listener.clone(),
        principal,
        mute: mute.clone(),
    };
    let dispatch_started = Instant::now();
    let mut future = {
        let _entered = span.enter();
        protocol::dispatch(broker, &context, frame).map_err(|e| {
            Close::Violation("malformed_request", format!("{api_key:?} v{version}: {e}"))
        })?
    };
    // The request's handling time, as Kafka's request quota counts a
    // handler thread's time: the synchronous dispatch plus every poll of
    // its future (not the time it waits, such as a fetch's long poll).
    let mut busy = dispatch_started.elapsed();
    metrics::TENANT_REQUESTS_TOTAL
        .with_label_values(&[quota::tenant_label(&context.principal)])
        .inc();
    let quota_broker = broker.clone();
    let timer = metrics::REQUEST_DURATION_SECONDS
        .with_label_values(&[versions::api_name(api_key)])
        .start_timer();
    metrics::REQUESTS_TOTAL
        .with_label_values(&[versions::api_name(api_key)])
        .inc();
    let task = tokio::spawn(
        async move {
            let outcome = std::future::poll_fn(|cx| {
                let started = Instant::now();
                let poll = future.as_mut().poll(cx);
                busy += started.elapsed();
                poll
            })
            .await;
            timer.observe_duration();
            drop(memory);
            // As a percentage of one thread's second: 100 is a whole thread.
            let percent = busy.as_secs_f64() * 100.0;
            let _ = protocol::record_quota(
                &quota_broker,
                &context,
                quota::QuotaKey::RequestPercentage,
                percent,
            );
            outcome
        }
        .instrument(span),
    );
    Ok(Pending {
        correlation_id,
        header_version: api_key.response_header_version(version),
        task,
    })
}

async fn write_responses<W: AsyncWrite + Unpin>(
    write_half: W,
    mut pending: mpsc::Receiver<Pending>,
    done: CancellationToken,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, write_half);
    let mut frame = BytesMut::new();
    while let Some(next) = pending.recv().await {
        let body = match next.task.await {
            Ok(Outcome::Respond(body)) => body,
            Ok(Outcome::NoResponse) => continue,
            Ok(Outcome::Close(reason)) => {
                info!(reason = %reason, "closing connection after a request");
                break;
            }
            Err(e) => {
                warn!(error = %e, "request task failed");
                break;
            }
        };
        frame.clear();
        let header = ResponseHeader::default().with_correlation_id(next.correlation_id);
        frame.put_i32(0);
        if header.encode(&mut frame, next.header_version).is_err() {
            break;
        }
        frame.extend_from_slice(&body);
        let length = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        if writer.write_all(&frame).await.is_err() {
            break;
        }
        // Flush once nothing else is ready, so pipelined responses share a
        // syscall without delaying a lone one.
        if pending.is_empty() && writer.flush().await.is_err() {
            break;
        }
        if frame.capacity() > 1024 * 1024 {
            frame = BytesMut::new();
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
    done.cancel();
    // Whatever is still queued is abandoned with the connection.
    pending.close();
    while let Some(next) = pending.recv().await {
        next.task.abort();
    }
}
