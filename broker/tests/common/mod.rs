//! Helpers for in-process broker tests: a broker on port 0 in a temp dir,
//! a minimal Kafka client that speaks the raw protocol, and a [`Session`]
//! that sends one principal's requests straight to the dispatch.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use metrobus::broker::{self, RunningBroker};
use metrobus::config::BrokerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A broker in a temp dir; the dir lives as long as this value.
pub struct TestBroker {
    pub running: RunningBroker,
    pub dir: tempfile::TempDir,
}

pub fn test_config(dir: &std::path::Path) -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.listeners = "127.0.0.1:0".into();
    config.http_listener = "127.0.0.1:0".into();
    config.log_dirs = dir.to_path_buf();
    config.log_flush_policy = metrobus::config::FlushPolicy::Replicated;
    config
}

impl TestBroker {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut BrokerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let running = broker::start(config).await.expect("broker starts");
        TestBroker { running, dir }
    }

    /// Stops the broker and starts a new one on the same data.
    pub async fn restart(self, tweak: impl FnOnce(&mut BrokerConfig)) -> Self {
        let TestBroker { running, dir } = self;
        running.shutdown().await;
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let running = broker::start(config).await.expect("broker restarts");
        TestBroker { running, dir }
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.running.kafka_addr().to_string()).await
    }
}

/// A raw Kafka protocol client, one request at a time.
pub struct Client {
    pub stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    pub async fn connect(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Client {
            stream,
            correlation_id: 0,
        }
    }

    /// Sends a request and decodes its response.
    pub async fn send<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Resp {
        self.send_only(api, version, request).await;
        self.receive(api, version).await
    }

    pub async fn send_only<Req: Encodable>(&mut self, api: ApiKey, version: i16, request: &Req) {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("test-client")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, api.request_header_version(version))
            .expect("encode header");
        request.encode(&mut body, version).expect("encode request");
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).await.expect("write");
    }

    pub async fn receive<Resp: Decodable>(&mut self, api: ApiKey, version: i16) -> Resp {
        let mut frame = self.read_frame().await.expect("a response frame");
        let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))
            .expect("header");
        assert_eq!(
            header.correlation_id, self.correlation_id,
            "responses come in order"
        );
        let response = Resp::decode(&mut frame, version).expect("decode response");
        assert_eq!(
            frame.remaining(),
            0,
            "no trailing bytes in {api:?} v{version}"
        );
        response
    }

    /// Reads one frame, or `None` if the broker closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let read = async {
            let length = self.stream.read_i32().await.ok()?;
            let mut frame = vec![0u8; length as usize];
            self.stream.read_exact(&mut frame).await.ok()?;
            Some(Bytes::from(frame))
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("broker answers or closes in time")
    }

    /// True once the broker has closed the connection.
    pub async fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) => false,
            Err(_) => panic!("connection neither closed nor answered"),
        }
    }
}

/// Milliseconds since the epoch, for record timestamps that retention keeps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A record batch of `values` with the given timestamps and compression.
pub fn batch(values: &[&str], timestamp: i64, compression: Compression) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch when offset - sequence changes.
            sequence: i as i32 - 1,
            timestamp: timestamp + i as i64,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: IndexMap::new(),
        })
        .collect();
    encode_records(&records, compression)
}

/// One batch from producer `pid` at `epoch`, one unkeyed record per value,
/// sequences from `first_seq`; `transactional` sets the batch's flag.
pub fn producer_batch(
    pid: i64,
    epoch: i16,
    first_seq: i32,
    transactional: bool,
    values: &[String],
) -> Bytes {
    let timestamp = now_ms();
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: first_seq.wrapping_add(i as i32),
            timestamp,
            key: None,
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: IndexMap::new(),
        })
        .collect();
    encode_records(&records, Compression::None)
}

/// Encodes records as magic v2 batches (one, while their offset - sequence
/// stays the same).
pub fn encode_records(records: &[Record], compression: Compression) -> Bytes {
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode batch");
    out.freeze()
}

/// Decodes every record value in a fetched record set, with offsets.
pub fn values(records: &Bytes) -> Vec<(i64, String)> {
    let mut buf = records.clone();
    let sets =
        kafka_protocol::records::RecordBatchDecoder::decode_all(&mut buf).expect("decode records");
    sets.into_iter()
        .flat_map(|s| s.records)
        .map(|r| {
            (
                r.offset,
                String::from_utf8_lossy(r.value.as_deref().unwrap_or(b"")).into_owned(),
            )
        })
        .collect()
}

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse, ProduceRequest,
    ProduceResponse, TopicName,
};

pub fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

pub fn creatable(topic: &str, partitions: i32, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(-1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string((*k).to_owned()))
                        .with_value(Some(StrBytes::from_string((*v).to_owned())))
                })
                .collect(),
        )
}

impl Client {
    pub async fn create_topics(
        &mut self,
        topics: Vec<CreatableTopic>,
        validate_only: bool,
    ) -> CreateTopicsResponse {
        let request = CreateTopicsRequest::default()
            .with_topics(topics)
            .with_timeout_ms(5000)
            .with_validate_only(validate_only);
        self.send(ApiKey::CreateTopics, 7, &request).await
    }

    pub async fn create_topic(&mut self, topic: &str, partitions: i32) {
        let response = self
            .create_topics(vec![creatable(topic, partitions, &[])], false)
            .await;
        assert_eq!(
            response.topics[0].error_code, 0,
            "{:?}",
            response.topics[0].error_message
        );
    }

    /// Produces one batch to one partition; returns (error code, base offset).
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: Bytes,
        acks: i16,
    ) -> (i16, i64) {
        let request = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records))])]);
        let response: ProduceResponse = self.send(ApiKey::Produce, 9, &request).await;
        let p = &response.responses[0].partition_responses[0];
        if p.error_code != 0 {
            eprintln!(
                "produce to {topic}-{partition} failed: {} {:?}",
                p.error_code, p.error_message
            );
        }
        (p.error_code, p.base_offset)
    }

    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> FetchResponse {
        let request = FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(50 * 1024 * 1024)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(10 * 1024 * 1024)])]);
        self.send(ApiKey::Fetch, 12, &request).await
    }
}

/// Requests of one principal straight through the broker's dispatch, as a
/// connection passes them once it has authenticated.
pub struct Session {
    pub broker: std::sync::Arc<metrobus::broker::Broker>,
    pub principal: std::sync::Arc<metrobus::tenant::Principal>,
    /// The connection's mute (quota throttling).
    pub mute: std::sync::Arc<metrobus::protocol::ConnectionMute>,
}

impl Session {
    pub fn new(broker: &TestBroker, principal: metrobus::tenant::Principal) -> Self {
        Session {
            broker: broker.running.broker.clone(),
            principal: std::sync::Arc::new(principal),
            mute: Default::default(),
        }
    }

    /// The anonymous principal of a PLAINTEXT listener (may do everything).
    pub fn operator(broker: &TestBroker) -> Self {
        Self::new(broker, metrobus::tenant::Principal::anonymous())
    }

    /// `user@tenant`.
    pub fn tenant(broker: &TestBroker, user: &str, tenant: &str) -> Self {
        Self::new(
            broker,
            metrobus::tenant::Principal {
                name: format!("{user}@{tenant}"),
                tenant: Some(metrobus::tenant::TenantScope::new(tenant).expect("a tenant name")),
                super_user: false,
            },
        )
    }

    /// Sends `request` and decodes its response; panics on anything else.
    pub async fn send<Req: Encodable, Resp: Decodable>(
        &self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Resp {
        let mut body = BytesMut::new();
        request.encode(&mut body, version).expect("encode request");
        let context = metrobus::protocol::RequestContext {
            api_key: api,
            api_version: version,
            correlation_id: 1,
            client_id: "in-process-test".to_owned(),
            peer: "127.0.0.1:1".parse().expect("an address"),
            listener: "PLAINTEXT".into(),
            principal: self.principal.clone(),
            mute: self.mute.clone(),
        };
        let pending = metrobus::protocol::dispatch(&self.broker, &context, body.freeze())
            .expect("request decodes");
        match pending.await {
            metrobus::protocol::Outcome::Respond(mut body) => {
                let response = Resp::decode(&mut body, version).expect("decode response");
                assert!(body.is_empty(), "no trailing bytes in {api:?} v{version}");
                response
            }
            other => panic!("{api:?} v{version}: {other:?}"),
        }
    }
}

/// A one-partition topic with a fresh id, for tests that drive the
/// [`metrobus::log::LogManager`] directly.
pub fn one_partition_topic(name: &str) -> metrobus::cluster::topic_record::TopicRecord {
    metrobus::cluster::topic_record::TopicRecord {
        id: uuid::Uuid::new_v4(),
        name: name.to_owned(),
        partitions: 1,
        configs: std::collections::BTreeMap::new(),
    }
}

/// Appends a one-record batch of `value` through the log writer and waits
/// until it is committed.
pub fn append_value(
    logs: &metrobus::log::LogManager,
    log: &std::sync::Arc<metrobus::log::partition::PartitionLog>,
    value: &str,
) {
    let (reply, done) = tokio::sync::oneshot::channel();
    logs.writer().append(metrobus::log::writer::AppendJob {
        partition: log.clone(),
        records: batch(&[value], now_ms(), Compression::None),
        max_message_bytes: 1 << 20,
        origin: metrobus::log::writer::AppendOrigin::Client,
        reply,
    });
    let _ = done
        .blocking_recv()
        .expect("the writer answers")
        .expect("the append succeeds");
}
