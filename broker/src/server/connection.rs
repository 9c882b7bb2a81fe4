//! One Kafka connection.
//!
//! The reader half reads a frame, decodes its header, hands the request to
//! [`crate::protocol::dispatch`] (which fixes any ordering, such as the order
//! of appends, before returning), spawns the response future and queues its
//! handle. The writer half awaits the handles in arrival order, so responses
//! leave in request order while the requests themselves run concurrently
//! (a long-polling fetch does not hold up the produce behind it).
//!
//! Bad input never panics and never affects other connections: an oversized
//! or malformed frame, an unknown API key, or an unsupported version closes
//! this connection after logging why.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::broker::Broker;
use crate::metrics;
use crate::protocol::{self, versions, Outcome, RequestContext};

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
    shutdown: CancellationToken,
) {
    let (read_half, write_half) = stream.into_split();
    let (queue, pending) = mpsc::channel(broker.config.queued_max_requests);
    let writer_done = CancellationToken::new();
    let writer = tokio::spawn(write_responses(write_half, pending, writer_done.clone()));
    let reason = read_requests(read_half, peer, &broker, queue, &shutdown, &writer_done).await;
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

async fn read_requests(
    read_half: OwnedReadHalf,
    peer: SocketAddr,
    broker: &Arc<Broker>,
    queue: mpsc::Sender<Pending>,
    shutdown: &CancellationToken,
    writer_done: &CancellationToken,
) -> Close {
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    let max_frame = broker.config.socket_request_max_bytes;
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
        let pending = match decode_and_dispatch(frame, peer, broker, memory) {
            Ok(pending) => pending,
            Err(close) => return close,
        };
        if queue.send(pending).await.is_err() {
            return Close::Quiet;
        }
    }
}

/// Reads a frame body of `length` bytes into a buffer of exactly that
/// capacity, without zero-filling it first (a multi-megabyte produce would
/// otherwise be written twice).
async fn read_frame_body(
    reader: &mut BufReader<OwnedReadHalf>,
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
    memory: OwnedSemaphorePermit,
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
    };
    let future = {
        let _entered = span.enter();
        protocol::dispatch(broker, &context, frame).map_err(|e| {
            Close::Violation("malformed_request", format!("{api_key:?} v{version}: {e}"))
        })?
    };
    let timer = metrics::REQUEST_DURATION_SECONDS
        .with_label_values(&[versions::api_name(api_key)])
        .start_timer();
    metrics::REQUESTS_TOTAL
        .with_label_values(&[versions::api_name(api_key)])
        .inc();
    let task = tokio::spawn(
        async move {
            let outcome = future.await;
            timer.observe_duration();
            drop(memory);
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

async fn write_responses(
    write_half: OwnedWriteHalf,
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
