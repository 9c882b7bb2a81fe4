//! Transactions with librdkafka (issue 5's transactional ids, on the
//! transaction coordinator): a transactional producer commits and aborts;
//! read_committed consumers see committed records only and wait at an
//! open transaction; a second producer with the same transactional.id
//! fences the first; consume-transform-produce commits its consumer's
//! offsets in the transaction; and two tenants using the same
//! transactional.id never touch each other's transactions.

use std::time::{Duration, Instant};

use protocol_tests::rdkafka::config::ClientConfig;
use protocol_tests::rdkafka::consumer::{BaseConsumer, Consumer};
use protocol_tests::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use protocol_tests::rdkafka::message::Message;
use protocol_tests::rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use protocol_tests::rdkafka::{Offset, TopicPartitionList};
use protocol_tests::tenancy::{create, sasl_client, secured_options, ALICE, BOB};
use protocol_tests::{assign, create_topic, unique_name, BrokerProcess, OP_TIMEOUT};

const TXN_TIMEOUT: Duration = Duration::from_secs(30);

fn transactional_producer(cfg: &ClientConfig, id: &str) -> FutureProducer {
    let producer: FutureProducer = cfg
        .clone()
        .set("transactional.id", id)
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "5")
        .create()
        .expect("transactional producer");
    producer
        .init_transactions(TXN_TIMEOUT)
        .unwrap_or_else(|e| panic!("init_transactions for {id}: {e}"));
    producer
}

async fn send_all(producer: &FutureProducer, topic: &str, values: &[&str]) {
    for v in values {
        producer
            .send(
                FutureRecord::<(), _>::to(topic).payload(*v).partition(0),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("sending {v}: {e}"));
    }
}

async fn committed_txn(producer: &FutureProducer, topic: &str, values: &[&str], commit: bool) {
    producer.begin_transaction().expect("begin_transaction");
    send_all(producer, topic, values).await;
    if commit {
        producer
            .commit_transaction(TXN_TIMEOUT)
            .expect("commit_transaction");
    } else {
        producer
            .abort_transaction(TXN_TIMEOUT)
            .expect("abort_transaction");
    }
}

fn consumer(cfg: &ClientConfig, isolation: &str) -> BaseConsumer {
    cfg.clone()
        .set("group.id", unique_name("txn-reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer")
}

/// Values read until the partition's EOF (one partition), bounded.
fn read_to_eof(consumer: &BaseConsumer) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "no EOF within 30 s: {out:?}");
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Ok(m)) => out.push(String::from_utf8_lossy(m.payload().unwrap_or(b"")).into()),
            Some(Err(KafkaError::PartitionEOF(_))) => return out,
            Some(Err(e)) => panic!("consumer error after {out:?}: {e}"),
        }
    }
}

/// Polls for the next `n` values, bounded; partition EOFs are skipped.
fn read_n(consumer: &BaseConsumer, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(Instant::now() < deadline, "only {out:?} within 30 s");
        match consumer.poll(Duration::from_millis(500)) {
            None | Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Ok(m)) => out.push(String::from_utf8_lossy(m.payload().unwrap_or(b"")).into()),
            Some(Err(e)) => panic!("consumer error after {out:?}: {e}"),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_records_only_reach_read_committed_consumers() {
    let broker = BrokerProcess::start_default();
    let topic = unique_name("txn");
    create_topic(&broker.admin(), &topic, 1, &[]).await.unwrap();
    let cfg = broker.client_config();
    let producer = transactional_producer(&cfg, &unique_name("tx"));
    committed_txn(&producer, &topic, &["c1", "c2", "c3"], true).await;
    committed_txn(&producer, &topic, &["a1", "a2"], false).await;
    committed_txn(&producer, &topic, &["c4"], true).await;

    let committed = consumer(&cfg, "read_committed");
    assign(&committed, &topic, 1, Offset::Beginning);
    assert_eq!(read_to_eof(&committed), ["c1", "c2", "c3", "c4"]);
    let uncommitted = consumer(&cfg, "read_uncommitted");
    assign(&uncommitted, &topic, 1, Offset::Beginning);
    assert_eq!(
        read_to_eof(&uncommitted),
        ["c1", "c2", "c3", "a1", "a2", "c4"]
    );

    // An open transaction holds read_committed consumers back until it
    // commits; read_uncommitted ones see it at once.
    producer.begin_transaction().expect("begin");
    send_all(&producer, &topic, &["open-1", "open-2"]).await;
    producer.flush(OP_TIMEOUT).expect("flush");
    assert_eq!(read_n(&uncommitted, 2), ["open-1", "open-2"]);
    let held = committed.poll(Duration::from_secs(2));
    assert!(
        !matches!(held, Some(Ok(_))),
        "a read_committed consumer got a record of an open transaction"
    );
    producer.commit_transaction(TXN_TIMEOUT).expect("commit");
    assert_eq!(read_n(&committed, 2), ["open-1", "open-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_producer_fences_the_old_and_aborts_its_transaction() {
    let broker = BrokerProcess::start_default();
    let topic = unique_name("fence");
    create_topic(&broker.admin(), &topic, 1, &[]).await.unwrap();
    let cfg = broker.client_config();
    let id = unique_name("tx-fence");
    let old = transactional_producer(&cfg, &id);
    old.begin_transaction().expect("begin");
    send_all(&old, &topic, &["zombie-1"]).await;
    old.flush(OP_TIMEOUT).expect("flush");

    // The new instance's init fences the old one and aborts its open
    // transaction.
    let new = transactional_producer(&cfg, &id);
    committed_txn(&new, &topic, &["fresh-1"], true).await;
    let err = old
        .commit_transaction(TXN_TIMEOUT)
        .expect_err("the fenced producer cannot commit");
    let fenced = matches!(
        err.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced)
    ) || err.to_string().to_lowercase().contains("fenced");
    assert!(fenced, "expected a fencing error, got {err}");

    let committed = consumer(&cfg, "read_committed");
    assign(&committed, &topic, 1, Offset::Beginning);
    assert_eq!(read_to_eof(&committed), ["fresh-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumed_offsets_commit_with_the_transaction() {
    let broker = BrokerProcess::start_default();
    let input = unique_name("txn-in");
    let output = unique_name("txn-out");
    let admin = broker.admin();
    create_topic(&admin, &input, 1, &[]).await.unwrap();
    create_topic(&admin, &output, 1, &[]).await.unwrap();
    let cfg = broker.client_config();
    let plain: FutureProducer = cfg.clone().create().expect("producer");
    send_all(&plain, &input, &["i1", "i2", "i3", "i4"]).await;

    let group = unique_name("ctp");
    let reader: BaseConsumer = cfg
        .clone()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    reader.subscribe(&[input.as_str()]).expect("subscribe");
    let producer = transactional_producer(&cfg, &unique_name("tx-ctp"));

    // Transform two records and commit, then two more and abort.
    for (round, commit) in [(0, true), (1, false)] {
        let got = read_n(&reader, 2);
        assert_eq!(got.len(), 2, "round {round}");
        producer.begin_transaction().expect("begin");
        let upper: Vec<String> = got.iter().map(|v| v.to_uppercase()).collect();
        let refs: Vec<&str> = upper.iter().map(String::as_str).collect();
        send_all(&producer, &output, &refs).await;
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(&input, 0, Offset::Offset(2 * (round + 1)))
            .expect("offset");
        producer
            .send_offsets_to_transaction(
                &offsets,
                &reader.group_metadata().expect("group metadata"),
                TXN_TIMEOUT,
            )
            .expect("send_offsets_to_transaction");
        if commit {
            producer.commit_transaction(TXN_TIMEOUT).expect("commit");
        } else {
            producer.abort_transaction(TXN_TIMEOUT).expect("abort");
        }
    }

    // The group's offset is the committed transaction's, not the aborted.
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(&input, 0);
    let committed = reader
        .committed_offsets(wanted, OP_TIMEOUT)
        .expect("committed offsets");
    let offset = committed.elements()[0].offset();
    assert_eq!(offset, Offset::Offset(2));
    let out = consumer(&cfg, "read_committed");
    assign(&out, &output, 1, Offset::Beginning);
    assert_eq!(read_to_eof(&out), ["I1", "I2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_share_a_transactional_id_without_touching_each_other() {
    let broker = BrokerProcess::start(secured_options(None)).unwrap_or_else(|e| panic!("{e:#}"));
    let alice = sasl_client(&broker, "SCRAM-SHA-256", ALICE);
    let bob = sasl_client(&broker, "SCRAM-SHA-512", BOB);
    create(&alice.create().expect("admin"), "events", 1).await;
    create(&bob.create().expect("admin"), "events", 1).await;

    // Both use transactional.id "poller"; bob's transaction stays open
    // while alice starts a second producer with the same id, which fences
    // alice's first producer only.
    let alice_1 = transactional_producer(&alice, "poller");
    let bob_1 = transactional_producer(&bob, "poller");
    bob_1.begin_transaction().expect("begin");
    send_all(&bob_1, "events", &["globex-1"]).await;
    committed_txn(&alice_1, "events", &["acme-1"], true).await;
    let alice_2 = transactional_producer(&alice, "poller");
    committed_txn(&alice_2, "events", &["acme-2"], true).await;
    let fenced = match alice_1.begin_transaction() {
        Err(_) => true,
        Ok(()) => {
            let sent = alice_1
                .send(
                    FutureRecord::<(), _>::to("events")
                        .payload("acme-zombie")
                        .partition(0),
                    Duration::from_secs(10),
                )
                .await;
            sent.is_err() || alice_1.commit_transaction(TXN_TIMEOUT).is_err()
        }
    };
    assert!(fenced, "alice's first producer is fenced");
    // Bob's open transaction was not touched: it commits.
    bob_1.commit_transaction(TXN_TIMEOUT).expect("bob commits");

    let alice_reader = consumer(&alice, "read_committed");
    assign(&alice_reader, "events", 1, Offset::Beginning);
    assert_eq!(read_to_eof(&alice_reader), ["acme-1", "acme-2"]);
    let bob_reader = consumer(&bob, "read_committed");
    assign(&bob_reader, "events", 1, Offset::Beginning);
    assert_eq!(read_to_eof(&bob_reader), ["globex-1"]);
}
