//! Producer and assign-mode consumer round trips with librdkafka (rdkafka).

use std::collections::HashMap;
use std::time::Duration;

use protocol_tests::rdkafka::consumer::Consumer;
use protocol_tests::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use protocol_tests::rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use protocol_tests::rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use protocol_tests::rdkafka::Offset;
use protocol_tests::rdkafka::Timestamp;
use protocol_tests::{
    assign, consume_n, consume_to_end, create_topic, expect_no_message, now_millis, unique_name,
    BrokerProcess, XorShift, OP_TIMEOUT,
};

/// Sends one record and returns (partition, offset) or the error code.
async fn send(
    producer: &FutureProducer,
    record: FutureRecord<'_, [u8], [u8]>,
) -> Result<(i32, i64), KafkaError> {
    match tokio::time::timeout(OP_TIMEOUT * 2, producer.send(record, OP_TIMEOUT)).await {
        Err(_) => panic!("delivery not reported within {:?}", OP_TIMEOUT * 2),
        Ok(Ok(d)) => Ok((d.partition, d.offset)),
        Ok(Err((e, _))) => Err(e),
    }
}

fn header_list(m: &OwnedMessage) -> Vec<(String, Option<Vec<u8>>)> {
    match m.headers() {
        None => Vec::new(),
        Some(h) => h
            .iter()
            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_headers_timestamps_and_nulls_round_trip() {
    let broker = BrokerProcess::start_default();
    let admin = broker.admin();
    let topic = unique_name("roundtrip");
    create_topic(&admin, &topic, 1, &[]).await.unwrap();
    let producer = broker.producer(&[]);

    let ts_base = now_millis() - 60_000;
    struct Case {
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<(&'static str, Option<&'static [u8]>)>,
        ts: Option<i64>,
    }
    let cases = vec![
        Case {
            key: Some(b"key-1".to_vec()),
            value: Some(b"value-1".to_vec()),
            headers: vec![
                ("h1", Some(b"one".as_slice())),
                ("h2", Some(b"".as_slice())),
                ("h-null", None),
                ("h1", Some(b"duplicate key keeps order".as_slice())),
            ],
            ts: Some(ts_base),
        },
        Case {
            key: None,
            value: Some(b"null key".to_vec()),
            headers: vec![],
            ts: Some(ts_base + 1),
        },
        Case {
            key: Some(b"tombstone".to_vec()),
            value: None,
            headers: vec![("only", Some(b"\x00\x01\xff binary".as_slice()))],
            ts: Some(ts_base + 2),
        },
        Case {
            key: None,
            value: None,
            headers: vec![],
            ts: Some(ts_base + 3),
        },
        Case {
            key: Some(Vec::new()),
            value: Some(Vec::new()),
            headers: vec![],
            ts: Some(ts_base - 3_600_000),
        },
        Case {
            key: Some(b"producer-timestamp".to_vec()),
            value: Some(vec![0xAB; 3000]),
            headers: vec![],
            ts: None,
        },
    ];

    let before = now_millis();
    let mut delivered = Vec::new();
    for c in &cases {
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).partition(0);
        if let Some(k) = &c.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = &c.value {
            rec = rec.payload(v.as_slice());
        }
        if let Some(ts) = c.ts {
            rec = rec.timestamp(ts);
        }
        if !c.headers.is_empty() {
            let mut h = OwnedHeaders::new();
            for (k, v) in &c.headers {
                h = h.insert(Header { key: k, value: *v });
            }
            rec = rec.headers(h);
        }
        delivered.push(send(&producer, rec).await.expect("delivery"));
    }
    let after = now_millis();
    let offsets: Vec<i64> = delivered.iter().map(|d| d.1).collect();
    assert_eq!(
        offsets,
        (0..cases.len() as i64).collect::<Vec<_>>(),
        "delivery reports must give consecutive offsets from 0"
    );

    let consumer = broker.consumer(&[]);
    assign(&consumer, &topic, 1, Offset::Beginning);
    let msgs = consume_n(&consumer, cases.len(), OP_TIMEOUT).unwrap();
    for (i, (c, m)) in cases.iter().zip(&msgs).enumerate() {
        assert_eq!(m.offset(), i as i64, "offset of record {i}");
        assert_eq!(m.partition(), 0);
        assert_eq!(m.key(), c.key.as_deref(), "key of record {i}");
        assert_eq!(m.payload(), c.value.as_deref(), "value of record {i}");
        let want: Vec<(String, Option<Vec<u8>>)> = c
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec)))
            .collect();
        assert_eq!(header_list(m), want, "headers of record {i}");
        match (c.ts, m.timestamp()) {
            (Some(ts), got) => {
                assert_eq!(got, Timestamp::CreateTime(ts), "timestamp of record {i}")
            }
            (None, Timestamp::CreateTime(t)) => assert!(
                (before..=after).contains(&t),
                "producer-set CreateTime {t} outside [{before}, {after}]"
            ),
            (None, other) => panic!("record {i}: expected CreateTime, got {other:?}"),
        }
    }
    expect_no_message(&consumer, Duration::from_millis(500)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_megabyte_record_fits_and_larger_gets_message_too_large() {
    let broker = BrokerProcess::start_default();
    let admin = broker.admin();
    let topic = unique_name("large");
    create_topic(&admin, &topic, 1, &[]).await.unwrap();
    let producer = broker.producer(&[
        ("message.max.bytes", "4000000"),
        ("compression.type", "none"),
        ("linger.ms", "0"),
        ("retries", "0"),
    ]);
    // Random bytes, so that no codec could shrink it even if one were used.
    let big = XorShift::new(7).bytes(1_000_000);
    let (_, off) = send(
        &producer,
        FutureRecord::to(&topic)
            .partition(0)
            .key(b"big".as_slice())
            .payload(big.as_slice()),
    )
    .await
    .expect("a 1,000,000-byte record is below Kafka's default message.max.bytes (1048588)");
    assert_eq!(off, 0);

    // The broker default (message.max.bytes = 1048588) must reject this.
    let too_big = XorShift::new(8).bytes(1_100_000);
    let err = send(
        &producer,
        FutureRecord::to(&topic)
            .partition(0)
            .key(b"too-big".as_slice())
            .payload(too_big.as_slice()),
    )
    .await
    .expect_err("a 1,100,000-byte batch must be rejected by the broker");
    assert_eq!(
        err.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge),
        "expected MESSAGE_TOO_LARGE (10), got {err:?}"
    );

    // A small record after the rejected one takes offset 1: nothing of the
    // rejected batch was stored.
    let (_, off) = send(
        &producer,
        FutureRecord::to(&topic)
            .partition(0)
            .payload(b"small".as_slice()),
    )
    .await
    .unwrap();
    assert_eq!(off, 1, "the rejected batch must not take an offset");

    let consumer = broker.consumer(&[]);
    assign(&consumer, &topic, 1, Offset::Beginning);
    let msgs = consume_to_end(&consumer, 1, OP_TIMEOUT).unwrap();
    assert_eq!(msgs.len(), 2, "exactly the 1 MB record and the small one");
    assert_eq!(
        msgs[0].payload(),
        Some(big.as_slice()),
        "1 MB payload intact"
    );
    assert_eq!(msgs[0].key(), Some(b"big".as_slice()));
    assert_eq!(msgs[1].payload(), Some(b"small".as_slice()));
    let (lo, hi) = consumer
        .fetch_watermarks(&topic, 0, OP_TIMEOUT)
        .expect("watermarks");
    assert_eq!((lo, hi), (0, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_records_exactly_once_in_order_per_partition() {
    const N: usize = 100_000;
    const PARTS: i32 = 3;
    let broker = BrokerProcess::start_default();
    let admin = broker.admin();
    let topic = unique_name("bulk");
    create_topic(&admin, &topic, PARTS, &[]).await.unwrap();
    let producer = broker.producer(&[
        ("queue.buffering.max.messages", "1000000"),
        ("linger.ms", "10"),
        ("batch.num.messages", "10000"),
        // Without idempotence, ordering under retries needs one in flight;
        // no retries are expected on loopback, but keep order guaranteed.
        ("max.in.flight.requests.per.connection", "1"),
    ]);

    let mut futures = Vec::with_capacity(N);
    for i in 0..N {
        let key = format!("key-{i}");
        let value = format!("value-{i:08}");
        let part = (i % PARTS as usize) as i32;
        let rec = FutureRecord::to(&topic)
            .partition(part)
            .key(key.as_bytes())
            .payload(value.as_bytes());
        match producer.send_result(rec) {
            Ok(f) => futures.push((i, part, f)),
            Err((e, _)) => panic!("enqueue of record {i} failed: {e}"),
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    let mut per_part_offsets: HashMap<i32, Vec<(i64, usize)>> = HashMap::new();
    for (i, part, f) in futures {
        let d = tokio::time::timeout(OP_TIMEOUT, f)
            .await
            .expect("delivery report")
            .expect("producer alive")
            .unwrap_or_else(|(e, _)| panic!("record {i} failed: {e}"));
        assert_eq!(d.partition, part);
        per_part_offsets
            .entry(part)
            .or_default()
            .push((d.offset, i));
    }
    for (p, offs) in &per_part_offsets {
        // Records were sent in index order per partition, so offsets must
        // be 0, 1, 2, ... in that same order.
        for (n, (off, i)) in offs.iter().enumerate() {
            assert_eq!(*off, n as i64, "partition {p}: record {i} got offset {off}");
        }
    }

    let consumer = broker.consumer(&[]);
    assign(&consumer, &topic, PARTS, Offset::Beginning);
    let msgs = consume_to_end(&consumer, PARTS as usize, Duration::from_secs(180)).unwrap();
    assert_eq!(msgs.len(), N, "consumed count");
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut seen = vec![false; N];
    for m in &msgs {
        let p = m.partition();
        let want = next.entry(p).or_insert(0);
        assert_eq!(
            m.offset(),
            *want,
            "partition {p}: offsets must be consecutive"
        );
        *want += 1;
        let v = std::str::from_utf8(m.payload().expect("payload")).unwrap();
        let i: usize = v.strip_prefix("value-").unwrap().parse().unwrap();
        assert_eq!(
            i % PARTS as usize,
            p as usize,
            "record {i} in wrong partition"
        );
        assert_eq!(m.key(), Some(format!("key-{i}").as_bytes()));
        let off_in_part = (i / PARTS as usize) as i64;
        assert_eq!(m.offset(), off_in_part, "record {i} out of order");
        assert!(!seen[i], "record {i} consumed twice");
        seen[i] = true;
    }
    assert!(seen.iter().all(|s| *s), "some record missing");
    for p in 0..PARTS {
        let (lo, hi) = consumer.fetch_watermarks(&topic, p, OP_TIMEOUT).unwrap();
        let expect = N as i64 / PARTS as i64 + i64::from((N as i64 % PARTS as i64) > p as i64);
        assert_eq!((lo, hi), (0, expect), "watermarks of partition {p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_four_codecs_round_trip() {
    let broker = BrokerProcess::start_default();
    let admin = broker.admin();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = unique_name(&format!("codec-{codec}"));
        create_topic(&admin, &topic, 1, &[]).await.unwrap();
        let producer = broker.producer(&[("compression.type", codec), ("linger.ms", "50")]);
        let n = 500;
        let values: Vec<String> = (0..n)
            .map(|i| format!("{codec} record {i} {}", "compressible text ".repeat(20)))
            .collect();
        let mut futs = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let key = format!("k{i}");
            let rec = FutureRecord::to(&topic)
                .partition(0)
                .key(key.as_bytes())
                .payload(v.as_bytes())
                .headers(OwnedHeaders::new().insert(Header {
                    key: "codec",
                    value: Some(codec),
                }));
            futs.push(producer.send_result(rec).map_err(|(e, _)| e).unwrap());
        }
        for (i, f) in futs.into_iter().enumerate() {
            let d = tokio::time::timeout(OP_TIMEOUT, f)
                .await
                .expect("delivery report")
                .unwrap()
                .unwrap_or_else(|(e, _)| panic!("{codec}: record {i} failed: {e}"));
            assert_eq!(d.offset, i as i64, "{codec}: offset of record {i}");
        }
        let consumer = broker.consumer(&[]);
        assign(&consumer, &topic, 1, Offset::Beginning);
        let msgs = consume_to_end(&consumer, 1, OP_TIMEOUT).unwrap();
        assert_eq!(msgs.len(), n, "{codec}: consumed count");
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(m.offset(), i as i64, "{codec}: offset");
            assert_eq!(
                m.key(),
                Some(format!("k{i}").as_bytes()),
                "{codec}: key {i}"
            );
            assert_eq!(
                m.payload(),
                Some(values[i].as_bytes()),
                "{codec}: value {i}"
            );
            assert_eq!(
                header_list(m),
                vec![("codec".to_string(), Some(codec.as_bytes().to_vec()))],
                "{codec}: headers {i}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_one_and_all() {
    let broker = BrokerProcess::start_default();
    let admin = broker.admin();
    let topic = unique_name("acks");
    create_topic(&admin, &topic, 1, &[]).await.unwrap();
    let per = 200usize;
    let mut expected = Vec::new();
    for acks in ["0", "1", "all"] {
        let producer = broker.producer(&[("acks", acks), ("linger.ms", "2")]);
        let mut futs = Vec::new();
        for i in 0..per {
            let v = format!("acks={acks} #{i}");
            expected.push(v.clone());
            let rec = FutureRecord::<[u8], [u8]>::to(&topic)
                .partition(0)
                .payload(v.as_bytes());
            futs.push(producer.send_result(rec).map_err(|(e, _)| e).unwrap());
        }
        for (i, f) in futs.into_iter().enumerate() {
            let d = tokio::time::timeout(OP_TIMEOUT, f)
                .await
                .expect("delivery report")
                .unwrap()
                .unwrap_or_else(|(e, _)| panic!("acks={acks}: record {i} failed: {e}"));
            if acks != "0" {
                assert!(d.offset >= 0, "acks={acks}: offset reported");
            }
        }
        producer.flush(OP_TIMEOUT).unwrap();
        // With acks=0 the client cannot know when the broker appended; the
        // records of the next producer must still come after these, so wait
        // for them here.
        let consumer = broker.consumer(&[]);
        assign(&consumer, &topic, 1, Offset::Beginning);
        let msgs = consume_n(&consumer, expected.len(), OP_TIMEOUT)
            .unwrap_or_else(|e| panic!("acks={acks}: {e:#}"));
        let got: Vec<String> = msgs
            .iter()
            .map(|m| String::from_utf8(m.payload().unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(got, expected, "acks={acks}: all records in order");
        expect_no_message(&consumer, Duration::from_millis(300)).unwrap();
    }
}
