//! Wire-level behaviour that client libraries hide: the ApiVersions list,
//! no response to acks=0, CRC validation, ListOffsets MAX_TIMESTAMP.

use protocol_tests::rdkafka::message::Message;
use protocol_tests::rdkafka::{Offset, Timestamp};
use protocol_tests::wire::{self, api, ApiRange, Conn, RawRecord};
use protocol_tests::{
    assign, consume_to_end, create_topic, now_millis, unique_name, BrokerProcess, OP_TIMEOUT,
};

/// The APIs issue 2 requires, by key and name.
const REQUIRED: &[(i16, &str)] = &[
    (0, "Produce"),
    (1, "Fetch"),
    (2, "ListOffsets"),
    (3, "Metadata"),
    (18, "ApiVersions"),
    (19, "CreateTopics"),
    (20, "DeleteTopics"),
    (21, "DeleteRecords"),
    (23, "OffsetForLeaderEpoch"),
    (32, "DescribeConfigs"),
    (33, "AlterConfigs"),
    (37, "CreatePartitions"),
    (44, "IncrementalAlterConfigs"),
    (60, "DescribeCluster"),
];

/// (offset, key, value, timestamp) of a consumed record.
type StoredRecord = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Timestamp);

fn range(apis: &[ApiRange], key: i16) -> Option<ApiRange> {
    apis.iter().copied().find(|a| a.key == key)
}

#[test]
fn api_versions_v0_and_v3_list_the_required_apis() {
    let mut broker = BrokerProcess::start_default();
    let mut c = Conn::connect(broker.kafka_addr()).unwrap();
    let body = c.round_trip(&wire::api_versions_v0(1), 1).unwrap();
    let (err, v0) = wire::parse_api_versions_v0(&body).unwrap();
    assert_eq!(err, 0);

    let body = c.round_trip(&wire::api_versions_flexible(2, 3), 2).unwrap();
    let (err, v3, throttle, _tags) = wire::parse_api_versions_v3(&body).unwrap();
    assert_eq!(err, 0);
    assert_eq!(throttle, 0);
    assert_eq!(v0, v3, "v0 and v3 answers list the same ranges");

    let mut keys: Vec<i16> = v3.iter().map(|a| a.key).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), v3.len(), "an api listed twice: {v3:?}");
    for a in &v3 {
        assert!(0 <= a.min && a.min <= a.max, "bad range {a:?}");
    }
    for (key, name) in REQUIRED {
        assert!(range(&v3, *key).is_some(), "{name} ({key}) not advertised");
    }
    let av = range(&v3, api::API_VERSIONS).unwrap();
    assert_eq!(av.min, 0, "ApiVersions must accept v0");
    assert!(av.max >= 3);
    let produce = range(&v3, api::PRODUCE).unwrap();
    assert!(
        produce.min <= 3 && produce.max >= 7,
        "Produce range {produce:?}: v3 must be accepted, current clients need v7+"
    );
    let fetch = range(&v3, api::FETCH).unwrap();
    assert!(
        fetch.min <= 4 && fetch.max >= 11,
        "Fetch range {fetch:?}: v4 must be accepted, current clients need v11+"
    );
    broker.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_produce_acks0_crc_and_unknown_partition() {
    let mut broker = BrokerProcess::start_default();
    let admin = broker.admin();
    let topic = unique_name("raw");
    create_topic(&admin, &topic, 1, &[]).await.unwrap();
    let apis = wire::api_versions(broker.kafka_addr()).unwrap();
    let produce = range(&apis, api::PRODUCE).unwrap();
    assert!(
        produce.min <= 3 && produce.max >= 3,
        "Produce v3 not advertised: {produce:?}"
    );

    let t0 = now_millis() - 1000;
    let batch_a = wire::record_batch(&[
        RawRecord {
            key: Some(b"a0"),
            value: Some(b"acks0-first"),
            timestamp: t0,
        },
        RawRecord {
            key: None,
            value: Some(b"acks0-second"),
            timestamp: t0 + 1,
        },
    ]);
    let mut c = Conn::connect(broker.kafka_addr()).unwrap();

    // acks=0: the broker sends nothing back. The next response on the
    // connection must belong to the next request.
    c.send(&wire::produce_v3(1, 0, &topic, 0, &batch_a))
        .unwrap();
    let body = c
        .round_trip(&wire::api_versions_v0(2), 2)
        .expect("after an acks=0 Produce the next response is the next request's");
    assert_eq!(wire::parse_api_versions_v0(&body).unwrap().0, 0);

    // acks=1 lands after the two acks=0 records.
    let batch_b = wire::record_batch(&[RawRecord {
        key: Some(b"b"),
        value: Some(b"acks1"),
        timestamp: t0 + 2,
    }]);
    let body = c
        .round_trip(&wire::produce_v3(3, 1, &topic, 0, &batch_b), 3)
        .unwrap();
    let res = wire::parse_produce_v3(&body).unwrap();
    assert_eq!(res, vec![(topic.clone(), 0, 0, 2)], "acks=1 produce result");

    // A flipped bit inside the CRC-covered part: CORRUPT_MESSAGE (2).
    let mut corrupt = wire::record_batch(&[RawRecord {
        key: Some(b"c"),
        value: Some(b"corrupted payload"),
        timestamp: t0 + 3,
    }]);
    let last = corrupt.len() - 3;
    corrupt[last] ^= 0x01;
    let body = c
        .round_trip(&wire::produce_v3(4, 1, &topic, 0, &corrupt), 4)
        .expect("a corrupt batch gets an error response, not a close");
    let res = wire::parse_produce_v3(&body).unwrap();
    assert_eq!(res.len(), 1);
    assert_eq!(
        res[0].2, 2,
        "CORRUPT_MESSAGE for a CRC mismatch, got {res:?}"
    );

    // A wrong magic byte: CORRUPT_MESSAGE (Kafka 4 accepts only magic 2;
    // a v2 batch whose magic byte is mangled cannot be validated).
    let mut bad_magic = batch_b.clone();
    bad_magic[16] = 7;
    let body = c
        .round_trip(&wire::produce_v3(5, 1, &topic, 0, &bad_magic), 5)
        .expect("a bad magic byte gets an error response");
    let res = wire::parse_produce_v3(&body).unwrap();
    assert_ne!(
        res[0].2, 0,
        "a batch with magic 7 must be rejected: {res:?}"
    );

    // A partition that does not exist: UNKNOWN_TOPIC_OR_PARTITION (3).
    let body = c
        .round_trip(&wire::produce_v3(6, 1, &topic, 7, &batch_b), 6)
        .unwrap();
    let res = wire::parse_produce_v3(&body).unwrap();
    assert_eq!(res, vec![(topic.clone(), 7, 3, -1)], "unknown partition");

    // A topic that does not exist (Produce never auto-creates).
    let missing = unique_name("raw-missing");
    let body = c
        .round_trip(&wire::produce_v3(7, 1, &missing, 0, &batch_b), 7)
        .unwrap();
    let res = wire::parse_produce_v3(&body).unwrap();
    assert_eq!(res, vec![(missing.clone(), 0, 3, -1)], "unknown topic");

    // Exactly the three good records are stored, with what was sent.
    let consumer = broker.consumer(&[]);
    assign(&consumer, &topic, 1, Offset::Beginning);
    let msgs = consume_to_end(&consumer, 1, OP_TIMEOUT).unwrap();
    let got: Vec<StoredRecord> = msgs
        .iter()
        .map(|m| {
            (
                m.offset(),
                m.key().map(<[u8]>::to_vec),
                m.payload().map(<[u8]>::to_vec),
                m.timestamp(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                0,
                Some(b"a0".to_vec()),
                Some(b"acks0-first".to_vec()),
                Timestamp::CreateTime(t0)
            ),
            (
                1,
                None,
                Some(b"acks0-second".to_vec()),
                Timestamp::CreateTime(t0 + 1)
            ),
            (
                2,
                Some(b"b".to_vec()),
                Some(b"acks1".to_vec()),
                Timestamp::CreateTime(t0 + 2)
            ),
        ]
    );
    broker.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_earliest_latest_timestamp_and_max_timestamp() {
    let mut broker = BrokerProcess::start_default();
    let admin = broker.admin();
    let topic = unique_name("maxts");
    create_topic(&admin, &topic, 1, &[]).await.unwrap();
    let apis = wire::api_versions(broker.kafka_addr()).unwrap();
    let lo = range(&apis, api::LIST_OFFSETS).unwrap();
    assert!(
        lo.max >= 7,
        "ListOffsets v7 (MAX_TIMESTAMP, KIP-734) not advertised: {lo:?}"
    );

    let t = now_millis() - 10_000;
    // One batch, timestamps out of order: the maximum is at offset 1.
    let batch = wire::record_batch(&[
        RawRecord {
            key: None,
            value: Some(b"0"),
            timestamp: t,
        },
        RawRecord {
            key: None,
            value: Some(b"1"),
            timestamp: t + 5000,
        },
        RawRecord {
            key: None,
            value: Some(b"2"),
            timestamp: t + 1000,
        },
    ]);
    let mut c = Conn::connect(broker.kafka_addr()).unwrap();
    let body = c
        .round_trip(&wire::produce_v3(1, -1, &topic, 0, &batch), 1)
        .unwrap();
    assert_eq!(
        wire::parse_produce_v3(&body).unwrap(),
        vec![(topic.clone(), 0, 0, 0)]
    );

    let cases: &[(i64, &str, i64, Option<i64>)] = &[
        (-2, "EARLIEST", 0, None),
        (-1, "LATEST", 3, None),
        (-3, "MAX_TIMESTAMP", 1, Some(t + 5000)),
        (t + 2000, "timestamp t+2000", 1, Some(t + 5000)),
        (t, "timestamp t", 0, Some(t)),
        (t + 5001, "timestamp past the max", -1, Some(-1)),
    ];
    for (i, (ts, what, want_off, want_ts)) in cases.iter().enumerate() {
        let corr = 10 + i as i32;
        let body = c
            .round_trip(&wire::list_offsets_v7(corr, &topic, 0, *ts), corr)
            .unwrap_or_else(|e| panic!("ListOffsets {what}: {e:#}"));
        let (err, got_ts, got_off) = wire::parse_list_offsets_v7(&body)
            .unwrap_or_else(|e| panic!("ListOffsets {what}: {e:#}"));
        assert_eq!(err, 0, "ListOffsets {what}: error code");
        assert_eq!(got_off, *want_off, "ListOffsets {what}: offset");
        if let Some(wt) = want_ts {
            assert_eq!(got_ts, *wt, "ListOffsets {what}: timestamp");
        }
    }
    broker.assert_alive();
}
