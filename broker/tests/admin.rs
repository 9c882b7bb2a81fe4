//! Topic administration, configs, offsets lookups, DeleteRecords and
//! retention through an in-process broker.

mod common;

use std::time::Duration;

use common::{batch, creatable, name, values, TestBroker};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// IncrementalAlterConfigs SET of one config on one resource.
fn incremental_set(
    resource_type: i8,
    resource: &str,
    key: &str,
    value: &str,
) -> IncrementalAlterConfigsRequest {
    IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(s(resource))
        .with_configs(vec![AlterableConfig::default()
            .with_name(s(key))
            .with_config_operation(0)
            .with_value(Some(s(value)))])])
}

/// Legacy AlterConfigs setting one topic config.
fn alter_topic(topic: &str, key: &str, value: &str) -> AlterConfigsRequest {
    AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(s(topic))
            .with_configs(vec![alter_configs_request::AlterableConfig::default()
                .with_name(s(key))
                .with_value(Some(s(value)))]),
    ])
}

/// DescribeConfigs of the given resources, all configs each.
fn describe_configs(resources: &[(i8, &str)]) -> DescribeConfigsRequest {
    DescribeConfigsRequest::default().with_resources(
        resources
            .iter()
            .map(|(kind, name)| {
                DescribeConfigsResource::default()
                    .with_resource_type(*kind)
                    .with_resource_name(s(name))
            })
            .collect(),
    )
}

#[tokio::test]
async fn create_topics_validates_like_kafka() {
    let broker = TestBroker::start_with(|c| c.num_partitions = 3).await;
    let mut client = broker.client().await;
    let response = client
        .create_topics(
            vec![
                creatable("ok", -1, &[("retention.ms", "1000")]),
                creatable("bad/name", 1, &[]),
                creatable("zero", 0, &[]),
                creatable("badconf", 1, &[("retention.ms", "soon")]),
                creatable("unknownconf", 1, &[("no.such", "1")]),
                creatable("dup", 1, &[]),
                creatable("dup", 1, &[]),
                creatable("rf3", 1, &[]).with_replication_factor(3),
            ],
            false,
        )
        .await;
    let codes: Vec<(String, i16)> = response
        .topics
        .iter()
        .map(|t| (t.name.to_string(), t.error_code))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("ok".into(), 0),
            ("bad/name".into(), 17),
            ("zero".into(), 37),
            ("badconf".into(), 40),
            ("unknownconf".into(), 40),
            ("dup".into(), 42),
            ("dup".into(), 42),
            ("rf3".into(), 38),
        ]
    );
    assert_eq!(response.topics[0].num_partitions, 3);
    assert_ne!(response.topics[0].topic_id, uuid::Uuid::nil());
    let again = client
        .create_topics(vec![creatable("ok", 1, &[])], false)
        .await;
    assert_eq!(again.topics[0].error_code, 36);
    // validate_only creates nothing.
    let dry = client
        .create_topics(vec![creatable("dry", 2, &[])], true)
        .await;
    assert_eq!(dry.topics[0].error_code, 0);
    let metadata: MetadataResponse = client
        .send(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
    let names: Vec<String> = metadata
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    assert_eq!(names, vec!["ok"]);
    broker.running.shutdown().await;
}

#[tokio::test]
async fn metadata_auto_creates_only_when_allowed() {
    let broker = TestBroker::start_with(|c| c.num_partitions = 2).await;
    let mut client = broker.client().await;
    let ask = |topic: &str, allow: bool| {
        MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name(topic)))
            ]))
            .with_allow_auto_topic_creation(allow)
    };
    let r: MetadataResponse = client.send(ApiKey::Metadata, 12, &ask("auto", false)).await;
    assert_eq!(r.topics[0].error_code, 3);
    let r: MetadataResponse = client.send(ApiKey::Metadata, 12, &ask("auto", true)).await;
    assert_eq!(r.topics[0].error_code, 0);
    assert_eq!(r.topics[0].partitions.len(), 2);
    assert_eq!(r.brokers.len(), 1);
    let r: MetadataResponse = client
        .send(ApiKey::Metadata, 12, &ask("in valid", true))
        .await;
    assert_eq!(r.topics[0].error_code, 17);
    broker.running.shutdown().await;

    let broker = TestBroker::start_with(|c| c.auto_create_topics_enable = false).await;
    let mut client = broker.client().await;
    let r: MetadataResponse = client.send(ApiKey::Metadata, 12, &ask("auto", true)).await;
    assert_eq!(r.topics[0].error_code, 3);
    broker.running.shutdown().await;
}

#[tokio::test]
async fn delete_topic_and_create_partitions() {
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client.create_topic("gone", 1).await;
    let _ = client
        .produce("gone", 0, batch(&["x"], 0, Compression::None), 1)
        .await;
    let request = DeleteTopicsRequest::default().with_topics(vec![
        DeleteTopicState::default().with_name(Some(name("gone"))),
        DeleteTopicState::default().with_name(Some(name("never"))),
    ]);
    let response: DeleteTopicsResponse = client.send(ApiKey::DeleteTopics, 6, &request).await;
    assert_eq!(response.responses[0].error_code, 0);
    assert_eq!(response.responses[1].error_code, 3);
    assert_eq!(
        client.fetch("gone", 0, 0, 0).await.responses[0].partitions[0].error_code,
        3
    );
    // A new topic of the same name starts empty.
    client.create_topic("gone", 1).await;
    assert_eq!(
        client.fetch("gone", 0, 0, 0).await.responses[0].partitions[0].high_watermark,
        0
    );

    let grow = |count| {
        CreatePartitionsRequest::default().with_topics(vec![CreatePartitionsTopic::default()
            .with_name(name("gone"))
            .with_count(count)])
    };
    let r: CreatePartitionsResponse = client.send(ApiKey::CreatePartitions, 3, &grow(4)).await;
    assert_eq!(r.results[0].error_code, 0);
    let r: CreatePartitionsResponse = client.send(ApiKey::CreatePartitions, 3, &grow(2)).await;
    assert_eq!(r.results[0].error_code, 37);
    assert_eq!(
        client
            .produce("gone", 3, batch(&["p3"], 0, Compression::None), 1)
            .await,
        (0, 0)
    );
    broker.running.shutdown().await;
}

#[tokio::test]
async fn configs_describe_and_incremental_alter() {
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client.create_topic("conf", 1).await;
    let alter = incremental_set(TOPIC, "conf", "retention.ms", "12345");
    let r: IncrementalAlterConfigsResponse = client
        .send(ApiKey::IncrementalAlterConfigs, 1, &alter)
        .await;
    assert_eq!(r.responses[0].error_code, 0);
    let bad = alter_topic("conf", "retention.ms", "forever");
    let r: AlterConfigsResponse = client.send(ApiKey::AlterConfigs, 2, &bad).await;
    assert_eq!(
        r.responses[0].error_code, 40,
        "{:?}",
        r.responses[0].error_message
    );
    let missing = alter_topic("missing", "retention.ms", "1000");
    let r: AlterConfigsResponse = client.send(ApiKey::AlterConfigs, 2, &missing).await;
    assert_eq!(r.responses[0].error_code, 3);
    let describe = describe_configs(&[(TOPIC, "conf"), (BROKER, "1"), (TOPIC, "missing")]);
    let r: DescribeConfigsResponse = client.send(ApiKey::DescribeConfigs, 4, &describe).await;
    let topic = &r.results[0];
    let retention = topic
        .configs
        .iter()
        .find(|c| c.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(retention.value.as_deref(), Some("12345"));
    assert_eq!(retention.config_source, 1);
    let cleanup = topic
        .configs
        .iter()
        .find(|c| c.name.as_str() == "cleanup.policy")
        .unwrap();
    assert_eq!(cleanup.value.as_deref(), Some("delete"));
    let broker_configs = &r.results[1];
    assert_eq!(broker_configs.error_code, 0);
    assert!(broker_configs
        .configs
        .iter()
        .any(|c| c.name.as_str() == "num.partitions"));
    assert_eq!(r.results[2].error_code, 3);
    broker.running.shutdown().await;
}

#[tokio::test]
async fn dynamic_broker_configs_change_topic_defaults() {
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client.create_topic("dyn", 1).await;
    let set = |name: &str, value: &str| incremental_set(BROKER, "1", name, value);
    let r: IncrementalAlterConfigsResponse = client
        .send(
            ApiKey::IncrementalAlterConfigs,
            1,
            &set("log.retention.ms", "5000"),
        )
        .await;
    assert_eq!(
        r.responses[0].error_code, 0,
        "{:?}",
        r.responses[0].error_message
    );
    let r: IncrementalAlterConfigsResponse = client
        .send(
            ApiKey::IncrementalAlterConfigs,
            1,
            &set("num.partitions", "3"),
        )
        .await;
    assert_eq!(r.responses[0].error_code, 42, "static settings are refused");
    let r: IncrementalAlterConfigsResponse = client
        .send(
            ApiKey::IncrementalAlterConfigs,
            1,
            &set("message.max.bytes", "-5"),
        )
        .await;
    assert_eq!(r.responses[0].error_code, 40, "invalid values are refused");
    let describe = describe_configs(&[(TOPIC, "dyn"), (BROKER, "1")]);
    let r: DescribeConfigsResponse = client.send(ApiKey::DescribeConfigs, 4, &describe).await;
    let topic_retention = r.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(
        (
            topic_retention.value.as_deref(),
            topic_retention.config_source
        ),
        (Some("5000"), 3)
    );
    let broker_retention = r.results[1]
        .configs
        .iter()
        .find(|c| c.name.as_str() == "log.retention.ms")
        .unwrap();
    assert_eq!(
        (
            broker_retention.value.as_deref(),
            broker_retention.read_only
        ),
        (Some("5000"), false)
    );
    // The change survives a restart.
    drop(client);
    let broker = broker.restart(|_| {}).await;
    let mut client = broker.client().await;
    let r: DescribeConfigsResponse = client.send(ApiKey::DescribeConfigs, 4, &describe).await;
    let topic_retention = r.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(topic_retention.value.as_deref(), Some("5000"));
    broker.running.shutdown().await;
}

#[tokio::test]
async fn list_offsets_by_timestamp_and_delete_records() {
    let broker = TestBroker::start_with(|c| c.log_retention_ms = -1).await;
    let mut client = broker.client().await;
    client.create_topic("times", 1).await;
    // Retention must not interfere: these timestamps are decades old.
    // Offsets 0..3 at t=1000.., 3..6 at t=5000.., 6..9 at t=3000..
    for base in [1_000, 5_000, 3_000] {
        let (code, _) = client
            .produce(
                "times",
                0,
                batch(&["a", "b", "c"], base, Compression::None),
                1,
            )
            .await;
        assert_eq!(code, 0);
    }
    let lookup = |ts: i64| {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(name("times"))
                .with_partitions(vec![
                    ListOffsetsPartition::default().with_timestamp(ts)
                ])])
    };
    let at = |r: ListOffsetsResponse| {
        (
            r.topics[0].partitions[0].offset,
            r.topics[0].partitions[0].timestamp,
        )
    };
    assert_eq!(
        at(client.send(ApiKey::ListOffsets, 7, &lookup(-2)).await),
        (0, -1)
    );
    assert_eq!(
        at(client.send(ApiKey::ListOffsets, 7, &lookup(-1)).await),
        (9, -1)
    );
    assert_eq!(
        at(client.send(ApiKey::ListOffsets, 7, &lookup(1_001)).await),
        (1, 1_001)
    );
    assert_eq!(
        at(client.send(ApiKey::ListOffsets, 7, &lookup(3_001)).await),
        (3, 5_000)
    );
    assert_eq!(
        at(client.send(ApiKey::ListOffsets, 7, &lookup(-3)).await),
        (5, 5_002)
    );
    assert_eq!(
        at(client.send(ApiKey::ListOffsets, 7, &lookup(9_999)).await),
        (-1, -1)
    );

    let delete = |offset| {
        DeleteRecordsRequest::default().with_topics(vec![DeleteRecordsTopic::default()
            .with_name(name("times"))
            .with_partitions(vec![DeleteRecordsPartition::default().with_offset(offset)])])
    };
    let r: DeleteRecordsResponse = client.send(ApiKey::DeleteRecords, 2, &delete(4)).await;
    assert_eq!(
        (
            r.topics[0].partitions[0].error_code,
            r.topics[0].partitions[0].low_watermark
        ),
        (0, 4)
    );
    let r: DeleteRecordsResponse = client.send(ApiKey::DeleteRecords, 2, &delete(100)).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 1);
    assert_eq!(
        at(client.send(ApiKey::ListOffsets, 7, &lookup(-2)).await),
        (4, -1)
    );
    assert_eq!(
        client.fetch("times", 0, 2, 0).await.responses[0].partitions[0].error_code,
        1
    );
    let response = client.fetch("times", 0, 4, 0).await;
    assert_eq!(response.responses[0].partitions[0].log_start_offset, 4);
    broker.running.shutdown().await;
}

#[tokio::test]
async fn retention_by_time_and_size_runs_in_background() {
    let broker = TestBroker::start_with(|c| c.log_retention_check_interval_ms = 100).await;
    let mut client = broker.client().await;
    let response = client
        .create_topics(
            vec![
                creatable("old", 1, &[("retention.ms", "60000")]),
                creatable(
                    "big",
                    1,
                    &[("retention.bytes", "300"), ("retention.ms", "-1")],
                ),
            ],
            false,
        )
        .await;
    assert!(response.topics.iter().all(|t| t.error_code == 0));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let _ = client
        .produce(
            "old",
            0,
            batch(&["ancient"], now - 3_600_000, Compression::None),
            1,
        )
        .await;
    let _ = client
        .produce("old", 0, batch(&["fresh"], now, Compression::None), 1)
        .await;
    let filler = "f".repeat(100);
    for _ in 0..6 {
        let _ = client
            .produce("big", 0, batch(&[&filler], now, Compression::None), 1)
            .await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let old = client.fetch("old", 0, 1, 0).await.responses[0].partitions[0].log_start_offset;
        let big = client.fetch("big", 0, 5, 0).await.responses[0].partitions[0].log_start_offset;
        if old == 1 && big >= 3 {
            // Each batch is ~170 bytes: at least 300 bytes (two batches) stay.
            assert!(
                big <= 4,
                "retention.bytes keeps at least the limit, start {big}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "retention did not run: old start {old}, big start {big}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fresh = client.fetch("old", 0, 1, 0).await;
    assert_eq!(
        values(fresh.responses[0].partitions[0].records.as_ref().unwrap()),
        vec![(1, "fresh".to_owned())]
    );
    broker.running.shutdown().await;
}

/// Kafka's zigzag varint.
fn varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A gzip batch whose records section inflates to 300 MB of zeros: it fits
/// in message.max.bytes compressed, and a timestamp lookup that has to look
/// inside it must fail cleanly instead of exhausting memory.
fn gzip_bomb(timestamp: i64, value_mib: i64) -> bytes::Bytes {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // One valid record whose value is 300 MiB of zeros (past the 256 MiB
    // cap), so without the cap the lookup would succeed, having inflated it.
    let value_len: i64 = value_mib * 1024 * 1024;
    let mut head = vec![0u8, 0, 0, 1]; // attributes, timestamp delta, offset delta, null key
    varint(&mut head, value_len);
    let body_len = head.len() as i64 + value_len + 1; // + header count
    let mut prefix = Vec::new();
    varint(&mut prefix, body_len);
    encoder.write_all(&prefix).unwrap();
    encoder.write_all(&head).unwrap();
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..value_mib {
        encoder.write_all(&zeros).unwrap();
    }
    encoder.write_all(&[0]).unwrap(); // no headers
    let compressed = encoder.finish().unwrap();
    let mut b = vec![0u8; 61];
    b.extend_from_slice(&compressed);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    b[16] = 2;
    b[21..23].copy_from_slice(&1i16.to_be_bytes()); // gzip
    b[27..35].copy_from_slice(&timestamp.to_be_bytes());
    b[35..43].copy_from_slice(&timestamp.to_be_bytes());
    b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    b[57..61].copy_from_slice(&1i32.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.into()
}

#[tokio::test]
async fn decompression_bomb_is_refused_on_timestamp_lookup() {
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client.create_topic("bomb", 1).await;
    let now = common::now_ms();
    let lookup = |topic: &str| {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![
                    ListOffsetsPartition::default().with_timestamp(now - 1_000)
                ])])
    };
    // Control: the same encoding with an 8 MiB value is a valid batch.
    client.create_topic("not-a-bomb", 1).await;
    assert_eq!(
        client
            .produce("not-a-bomb", 0, gzip_bomb(now, 8), 1)
            .await
            .0,
        0
    );
    let r: ListOffsetsResponse = client
        .send(ApiKey::ListOffsets, 7, &lookup("not-a-bomb"))
        .await;
    let found = &r.topics[0].partitions[0];
    assert_eq!(
        (found.error_code, found.offset, found.timestamp),
        (0, 0, now)
    );

    let bomb = gzip_bomb(now, 300);
    assert!(
        bomb.len() < 1_048_588,
        "the bomb fits in message.max.bytes: {}",
        bomb.len()
    );
    assert_eq!(client.produce("bomb", 0, bomb, 1).await.0, 0);
    let r: ListOffsetsResponse = client.send(ApiKey::ListOffsets, 7, &lookup("bomb")).await;
    assert_ne!(
        r.topics[0].partitions[0].error_code, 0,
        "the lookup fails instead of inflating 300 MiB"
    );
    // The broker is still there for everyone.
    client.create_topic("after-bomb", 1).await;
    broker.running.shutdown().await;
}
