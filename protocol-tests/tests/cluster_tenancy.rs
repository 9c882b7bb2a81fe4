//! Two tenants and a super user against a 3-node cluster: logins work on
//! every node (credentials live in the replicated metadata log), topics are
//! replicated under internal names, each tenant sees only its own topics,
//! records and group offsets, also after the node leading its partition is
//! killed, and both use one transactional.id without touching each other's
//! transactions.

use std::time::Duration;

use protocol_tests::cluster::{ClusterOptions, ClusterProcess};
use protocol_tests::rdkafka::config::ClientConfig;
use protocol_tests::rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use protocol_tests::rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use protocol_tests::rdkafka::{Offset, TopicPartitionList};
use protocol_tests::tenancy::{
    consumer, create, produce, sasl_client_for, values, ADMIN, ALICE, BOB,
};
use protocol_tests::{assign, list_topics, OP_TIMEOUT};

/// A transactional producer of `cfg`'s user, initialised.
fn transactional(cfg: &ClientConfig, id: &str) -> FutureProducer {
    let producer: FutureProducer = cfg
        .clone()
        .set("transactional.id", id)
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    producer.init_transactions(OP_TIMEOUT).unwrap();
    producer
}

async fn send(producer: &FutureProducer, topic: &str, value: &str) {
    producer
        .send(
            FutureRecord::<(), _>::to(topic).payload(value).partition(0),
            OP_TIMEOUT,
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("sending {value}: {e}"));
}

fn sasl_bootstrap(cluster: &ClusterProcess, skip: Option<i32>) -> String {
    cluster
        .nodes()
        .iter()
        .filter(|n| Some(n.node_id) != skip)
        .map(|n| n.sasl.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated_across_the_cluster_and_a_failover() {
    let mut cluster = ClusterProcess::start(
        ClusterOptions::new()
            .env("METROBUS_SUPER_USERS", "User:admin")
            .env(
                "METROBUS_SASL_SEED_USERS",
                format!(
                    "{}:{},{}:{},{}:{}",
                    ADMIN.0, ADMIN.1, ALICE.0, ALICE.1, BOB.0, BOB.1
                ),
            ),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    // Each node checks the same credentials: log in on each one alone.
    for node in cluster.nodes() {
        let only: BaseConsumer = sasl_client_for(&node.sasl.to_string(), "SCRAM-SHA-512", ALICE)
            .create()
            .unwrap();
        only.fetch_metadata(None, OP_TIMEOUT)
            .unwrap_or_else(|e| panic!("login on node {}: {e}", node.node_id));
    }
    let bootstrap = sasl_bootstrap(&cluster, None);
    let alice = sasl_client_for(&bootstrap, "SCRAM-SHA-256", ALICE);
    let bob = sasl_client_for(&bootstrap, "SCRAM-SHA-512", BOB);
    let admin = sasl_client_for(&bootstrap, "SCRAM-SHA-256", ADMIN);
    create(&alice.create().unwrap(), "metrics", 1).await;
    create(&bob.create().unwrap(), "metrics", 1).await;
    produce(&alice, "metrics", &["acme-1"]).await;
    produce(&bob, "metrics", &["globex-1"]).await;

    // Both tenants use transactional.id "poller": two transactional ids,
    // each fencing only its own tenant's producers.
    let alice_txn = transactional(&alice, "poller");
    let bob_txn = transactional(&bob, "poller");
    bob_txn.begin_transaction().unwrap();
    send(&bob_txn, "metrics", "globex-txn").await;
    let alice_again = transactional(&alice, "poller");
    alice_again.begin_transaction().unwrap();
    send(&alice_again, "metrics", "acme-txn").await;
    alice_again.commit_transaction(OP_TIMEOUT).unwrap();
    // Bob's open transaction was not touched by alice's second producer
    // (which fenced her first one only): it commits.
    drop(alice_txn);
    bob_txn.commit_transaction(OP_TIMEOUT).unwrap();

    let alice_consumer = consumer(&alice, "dash");
    assign(&alice_consumer, "metrics", 1, Offset::Beginning);
    assert_eq!(values(&alice_consumer, 2), ["acme-1", "acme-txn"]);
    assert_eq!(list_topics(&alice_consumer).unwrap(), ["metrics"]);
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("metrics", 0, Offset::Offset(3))
        .unwrap();
    alice_consumer.commit(&offsets, CommitMode::Sync).unwrap();

    // The super user sees both, replicated 3 times under internal names.
    let admin_consumer = consumer(&admin, "ops");
    let md = admin_consumer.fetch_metadata(None, OP_TIMEOUT).unwrap();
    for name in ["acme.metrics", "globex.metrics"] {
        let topic = md
            .topics()
            .iter()
            .find(|t| t.name() == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(topic.partitions()[0].replicas().len(), 3, "{name}");
    }

    // Kill the leader of acme.metrics once every replica (of the data and
    // of the committed offsets) is in sync: alice keeps working, alone.
    for topic in ["acme.metrics", "__consumer_offsets"] {
        cluster
            .wait_for_full_isr(topic, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{topic}: {e:#}"));
    }
    let leader = cluster.leader_of("acme.metrics", 0).unwrap();
    cluster.kill9(leader);
    let bootstrap = sasl_bootstrap(&cluster, Some(leader));
    let alice = sasl_client_for(&bootstrap, "SCRAM-SHA-256", ALICE);
    let bob = sasl_client_for(&bootstrap, "SCRAM-SHA-512", BOB);
    produce(&alice, "metrics", &["acme-2"]).await;
    let after = consumer(&alice, "dash");
    after.subscribe(&["metrics"]).unwrap();
    // The group resumes at alice's committed offset 3 (past her records
    // and the transaction's marker): only the new record.
    assert_eq!(values(&after, 1), ["acme-2"]);
    let bob_consumer = consumer(&bob, "dash");
    let committed = bob_consumer
        .committed_offsets(
            {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition("metrics", 0);
                tpl
            },
            OP_TIMEOUT,
        )
        .unwrap();
    assert_eq!(committed.elements()[0].offset(), Offset::Invalid);
    assign(&bob_consumer, "metrics", 1, Offset::Beginning);
    assert_eq!(values(&bob_consumer, 2), ["globex-1", "globex-txn"]);
    let wait = Duration::from_secs(2);
    assert!(bob_consumer.poll(wait).is_none(), "bob sees nothing more");
    cluster.restart(leader).unwrap();
    cluster.assert_alive();
}
