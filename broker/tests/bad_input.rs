//! Bad input over raw sockets: the broker closes that one connection (or
//! answers with a Kafka error) and keeps serving everyone else.

mod common;

use std::time::Duration;

use bytes::Buf;
use common::{Client, TestBroker};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::Decodable;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn still_serves(broker: &TestBroker) {
    let mut client = broker.client().await;
    let response: ApiVersionsResponse = client
        .send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(response.error_code, 0);
    assert!(response
        .api_keys
        .iter()
        .any(|k| k.api_key == 0 && k.max_version >= 9));
}

async fn raw(broker: &TestBroker, bytes: &[u8]) -> Client {
    let mut client = broker.client().await;
    client.stream.write_all(bytes).await.unwrap();
    client
}

#[tokio::test]
async fn garbage_and_bad_frames_close_only_that_connection() {
    let broker = TestBroker::start_with(|c| c.socket_request_max_bytes = 1024 * 1024).await;
    let cases: Vec<Vec<u8>> = vec![
        // Negative length.
        vec![0xff, 0xff, 0xff, 0xfe, 1, 2, 3],
        // 2 GiB frame, over socket.request.max.bytes.
        vec![0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0],
        // Too short for a header.
        vec![0, 0, 0, 3, 0, 1, 2],
        // Unknown API key 9999 with valid framing.
        vec![0, 0, 0, 10, 0x27, 0x0f, 0, 0, 0, 0, 0, 1, 0xff, 0xff],
        // Produce v9 whose body is garbage.
        vec![
            0, 0, 0, 14, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0xde, 0xad, 0xbe, 0xef,
        ],
        // Random bytes.
        (0..200u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect(),
    ];
    for case in cases {
        let mut client = raw(&broker, &case).await;
        assert!(client.is_closed().await, "connection closed after {case:?}");
        still_serves(&broker).await;
    }
    // A truncated frame followed by a close does not disturb anyone.
    let mut client = raw(&broker, &[0, 0, 1, 0, 0, 18]).await;
    client.stream.shutdown().await.unwrap();
    drop(client);
    still_serves(&broker).await;
    broker.running.shutdown().await;
}

#[tokio::test]
async fn too_new_api_versions_gets_v0_answer_with_error_35() {
    let broker = TestBroker::start().await;
    // ApiVersions v99, correlation id 7, client id "x", then an unknown body.
    let mut client = raw(
        &broker,
        &[
            0, 0, 0, 15, 0, 18, 0, 99, 0, 0, 0, 7, 0, 1, b'x', 1, 2, 3, 4,
        ],
    )
    .await;
    let mut frame = client.read_frame().await.expect("an answer");
    assert_eq!(frame.get_i32(), 7);
    let response = ApiVersionsResponse::decode(&mut frame, 0).unwrap();
    assert_eq!(response.error_code, 35);
    assert!(response
        .api_keys
        .iter()
        .any(|k| k.api_key == 18 && k.max_version == 4));
    still_serves(&broker).await;
    broker.running.shutdown().await;
}

#[tokio::test]
async fn unsupported_version_of_another_api_closes() {
    let broker = TestBroker::start().await;
    // Produce v2 (below our minimum of 3).
    let mut client = raw(&broker, &[0, 0, 0, 10, 0, 0, 0, 2, 0, 0, 0, 1, 0xff, 0xff]).await;
    assert!(client.is_closed().await);
    still_serves(&broker).await;
    broker.running.shutdown().await;
}

#[tokio::test]
async fn connection_limit_and_idle_timeout_are_enforced() {
    let broker = TestBroker::start_with(|c| {
        c.max_connections = 2;
        c.connections_max_idle_ms = 300;
    })
    .await;
    let addr = broker.running.kafka_addr();
    let first = TcpStream::connect(addr).await.unwrap();
    let second = TcpStream::connect(addr).await.unwrap();
    let mut third = Client::connect(&addr.to_string()).await;
    assert!(third.is_closed().await, "a third connection is refused");
    // The idle ones are closed after connections.max.idle.ms.
    tokio::time::sleep(Duration::from_millis(800)).await;
    drop((first, second));
    still_serves(&broker).await;
    broker.running.shutdown().await;
}
