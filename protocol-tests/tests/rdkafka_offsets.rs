//! ListOffsets (watermarks, by timestamp), out-of-range fetches and topic
//! auto-creation, through librdkafka.

use std::time::Duration;

use protocol_tests::rdkafka::consumer::Consumer;
use protocol_tests::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use protocol_tests::rdkafka::message::Message;
use protocol_tests::rdkafka::producer::FutureRecord;
use protocol_tests::rdkafka::{Offset, Timestamp, TopicPartitionList};
use protocol_tests::{
    assign, consume_n, consume_to_end, create_topic, expect_no_message, list_topics, now_millis,
    partition_count, unique_name, BrokerProcess, OP_TIMEOUT,
};

async fn produce_with_ts(broker: &BrokerProcess, topic: &str, partition: i32, ts: &[i64]) {
    let producer = broker.producer(&[]);
    for (i, t) in ts.iter().enumerate() {
        let v = format!("p{partition}-{i}");
        let d = producer
            .send(
                FutureRecord::<[u8], [u8]>::to(topic)
                    .partition(partition)
                    .payload(v.as_bytes())
                    .timestamp(*t),
                OP_TIMEOUT,
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
        assert_eq!(d.offset, i as i64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermarks_and_offsets_for_times() {
    let broker = BrokerProcess::start_default();
    let admin = broker.admin();
    let topic = unique_name("times");
    create_topic(&admin, &topic, 2, &[]).await.unwrap();
    let consumer = broker.consumer(&[]);
    assert_eq!(
        consumer.fetch_watermarks(&topic, 0, OP_TIMEOUT).unwrap(),
        (0, 0),
        "empty partition"
    );

    let t0 = now_millis() - 600_000;
    let mono: Vec<i64> = (0..10).map(|i| t0 + i * 1000).collect();
    produce_with_ts(&broker, &topic, 0, &mono).await;
    // Out of order: Kafka answers with the first offset whose timestamp is
    // >= the target, not a binary-search guess.
    let unordered = [t0, t0 + 5000, t0 + 1000, t0 + 2000];
    produce_with_ts(&broker, &topic, 1, &unordered).await;

    assert_eq!(
        consumer.fetch_watermarks(&topic, 0, OP_TIMEOUT).unwrap(),
        (0, 10)
    );
    assert_eq!(
        consumer.fetch_watermarks(&topic, 1, OP_TIMEOUT).unwrap(),
        (0, 4)
    );

    let cases: &[(i32, i64, Offset)] = &[
        (0, t0 - 1, Offset::Offset(0)),
        (0, t0, Offset::Offset(0)),
        (0, t0 + 3500, Offset::Offset(4)),
        (0, t0 + 9000, Offset::Offset(9)),
        (0, t0 + 9001, Offset::End),
        (1, t0 + 1500, Offset::Offset(1)),
        (1, t0 + 4000, Offset::Offset(1)),
        (1, t0 + 5001, Offset::End),
    ];
    for (p, ts, want) in cases {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, *p, Offset::Offset(*ts))
            .unwrap();
        let res = consumer
            .offsets_for_times(tpl, OP_TIMEOUT)
            .unwrap_or_else(|e| panic!("offsets_for_times p{p} ts {ts}: {e}"));
        let elem = res.find_partition(&topic, *p).expect("partition in result");
        elem.error()
            .unwrap_or_else(|e| panic!("offsets_for_times p{p} ts {ts}: {e}"));
        assert_eq!(
            elem.offset(),
            *want,
            "partition {p}, timestamp t0{:+}",
            ts - t0
        );
    }

    // Both partitions in one request.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(t0 + 2000))
        .unwrap();
    tpl.add_partition_offset(&topic, 1, Offset::Offset(t0 + 2000))
        .unwrap();
    let res = consumer.offsets_for_times(tpl, OP_TIMEOUT).unwrap();
    assert_eq!(
        res.find_partition(&topic, 0).unwrap().offset(),
        Offset::Offset(2)
    );
    assert_eq!(
        res.find_partition(&topic, 1).unwrap().offset(),
        Offset::Offset(1)
    );

    // Offset tail (ListOffsets latest, then fetch): the last two records.
    assign(&consumer, &topic, 1, Offset::OffsetTail(2));
    let msgs = consume_to_end(&consumer, 1, OP_TIMEOUT).unwrap();
    let got: Vec<(i64, Timestamp)> = msgs.iter().map(|m| (m.offset(), m.timestamp())).collect();
    assert_eq!(
        got,
        vec![
            (8, Timestamp::CreateTime(t0 + 8000)),
            (9, Timestamp::CreateTime(t0 + 9000))
        ]
    );
}

fn assert_reset_error(e: &KafkaError) {
    let code = e.rdkafka_error_code();
    assert!(
        matches!(
            code,
            Some(RDKafkaErrorCode::AutoOffsetReset) | Some(RDKafkaErrorCode::OffsetOutOfRange)
        ),
        "expected an offset-out-of-range / auto-offset-reset error, got {e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_fetch_follows_auto_offset_reset() {
    let broker = BrokerProcess::start_default();
    let admin = broker.admin();
    let topic = unique_name("reset");
    create_topic(&admin, &topic, 1, &[]).await.unwrap();
    let t0 = now_millis();
    produce_with_ts(&broker, &topic, 0, &[t0, t0 + 1, t0 + 2, t0 + 3, t0 + 4]).await;

    // earliest: offset 100 is past the end -> starts again at 0.
    let c = broker.consumer(&[("auto.offset.reset", "earliest")]);
    assign(&c, &topic, 1, Offset::Offset(100));
    let msgs = consume_n(&c, 5, OP_TIMEOUT).unwrap();
    let offs: Vec<i64> = msgs.iter().map(|m| m.offset()).collect();
    assert_eq!(offs, vec![0, 1, 2, 3, 4], "auto.offset.reset=earliest");

    // latest: nothing old, then the next new record.
    let c = broker.consumer(&[("auto.offset.reset", "latest")]);
    assign(&c, &topic, 1, Offset::Offset(100));
    expect_no_message(&c, Duration::from_secs(2)).unwrap();
    produce_with_ts_at(&broker, &topic, 5).await;
    let msgs = consume_n(&c, 1, OP_TIMEOUT).unwrap();
    assert_eq!(msgs[0].offset(), 5, "auto.offset.reset=latest");

    // error: the consumer surfaces the out-of-range error.
    let c = broker.consumer(&[("auto.offset.reset", "error")]);
    assign(&c, &topic, 1, Offset::Offset(100));
    let deadline = std::time::Instant::now() + OP_TIMEOUT;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no out-of-range error within {OP_TIMEOUT:?}"
        );
        match c.poll(Duration::from_millis(500)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => continue,
            Some(Err(e)) => {
                assert_reset_error(&e);
                break;
            }
            Some(Ok(m)) => panic!("auto.offset.reset=error delivered offset {}", m.offset()),
        }
    }

    // Below the log start offset after DeleteRecords: earliest goes to the
    // new log start.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(3))
        .unwrap();
    let opts = protocol_tests::rdkafka::admin::AdminOptions::new();
    let res = admin
        .delete_records(&tpl, &opts)
        .await
        .expect("delete_records");
    res.elements()[0]
        .error()
        .expect("delete_records partition 0");
    let c = broker.consumer(&[("auto.offset.reset", "earliest")]);
    assign(&c, &topic, 1, Offset::Offset(1));
    let msgs = consume_n(&c, 1, OP_TIMEOUT).unwrap();
    assert_eq!(msgs[0].offset(), 3, "reset to the log start offset");
}

async fn produce_with_ts_at(broker: &BrokerProcess, topic: &str, expect_offset: i64) {
    let producer = broker.producer(&[]);
    let d = producer
        .send(
            FutureRecord::<[u8], [u8]>::to(topic)
                .partition(0)
                .payload(b"late".as_slice()),
            OP_TIMEOUT,
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    assert_eq!(d.offset, expect_offset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_to_unknown_topic_auto_creates_with_num_partitions() {
    let broker = BrokerProcess::start_with_env(&[("METROBUS_NUM_PARTITIONS", "3")]);
    let consumer = broker.consumer(&[]);

    // A consumer's metadata request does not ask for creation
    // (allow_auto_topic_creation=false): nothing is created.
    let peek = unique_name("peeked");
    let md = consumer.fetch_metadata(Some(&peek), OP_TIMEOUT).unwrap();
    let t = md.topics().iter().find(|t| t.name() == peek).unwrap();
    assert!(t.error().is_some(), "unknown topic must carry an error");
    assert!(
        !list_topics(&consumer).unwrap().contains(&peek),
        "a Metadata request with allow_auto_topic_creation=false created {peek}"
    );

    // A producer's does.
    let topic = unique_name("auto");
    let producer = broker.producer(&[]);
    let d = producer
        .send(
            FutureRecord::<[u8], [u8]>::to(&topic)
                .key(b"k".as_slice())
                .payload(b"auto-created".as_slice()),
            OP_TIMEOUT,
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("produce to unknown topic with auto-create on: {e}"));
    assert_eq!(d.offset, 0);
    assert_eq!(
        partition_count(&consumer, &topic).unwrap(),
        3,
        "auto-created with num.partitions"
    );
    assign(&consumer, &topic, 3, Offset::Beginning);
    let msgs = consume_to_end(&consumer, 3, OP_TIMEOUT).unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].payload(), Some(b"auto-created".as_slice()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_create_disabled() {
    let broker = BrokerProcess::start_with_env(&[("METROBUS_AUTO_CREATE_TOPICS_ENABLE", "false")]);
    let consumer = broker.consumer(&[]);
    let topic = unique_name("not-auto");
    let producer = broker.producer(&[
        ("message.timeout.ms", "8000"),
        ("topic.metadata.propagation.max.ms", "2000"),
    ]);
    let res = producer
        .send(
            FutureRecord::<[u8], [u8]>::to(&topic).payload(b"nowhere".as_slice()),
            OP_TIMEOUT,
        )
        .await;
    match res {
        Ok(d) => panic!("produce to unknown topic succeeded with auto-create off: {d:?}"),
        Err((e, _)) => {
            let code = e.rdkafka_error_code();
            assert!(
                matches!(
                    code,
                    Some(RDKafkaErrorCode::UnknownTopic)
                        | Some(RDKafkaErrorCode::UnknownTopicOrPartition)
                ),
                "expected unknown topic, got {e:?}"
            );
        }
    }
    assert!(
        !list_topics(&consumer).unwrap().contains(&topic),
        "topic was created although auto.create.topics.enable=false"
    );
}
