//! ACL deny and allow with real clients: an operator (super user) manages
//! ACLs with `metrobus acl` (CreateAcls, DescribeAcls, DeleteAcls over
//! SASL); librdkafka clients of a tenant are refused what a DENY says, and,
//! with `tenant.default.acls.enable=false`, allowed only what an ALLOW says.

use std::time::{Duration, Instant};

use protocol_tests::rdkafka::config::ClientConfig;
use protocol_tests::rdkafka::consumer::{BaseConsumer, Consumer};
use protocol_tests::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use protocol_tests::rdkafka::message::Message;
use protocol_tests::rdkafka::producer::{FutureProducer, FutureRecord};
use protocol_tests::rdkafka::Offset;
use protocol_tests::tenancy::{
    consumer, create, produce, sasl_client, secured_options, values, ADMIN, ALICE, BOB,
};
use protocol_tests::{assign, list_topics, BrokerOptions, BrokerProcess, OP_TIMEOUT};

const CAROL: (&str, &str) = ("carol@acme", "carol-secret");

/// The tenancy broker with carol, a second user of `acme`, seeded too.
fn options() -> BrokerOptions {
    secured_options(None).env(
        "METROBUS_SASL_SEED_USERS",
        [ADMIN, ALICE, BOB, CAROL]
            .iter()
            .map(|(user, password)| format!("{user}:{password}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn start(opts: BrokerOptions) -> BrokerProcess {
    BrokerProcess::start(opts).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Runs `metrobus ARGS` against the SASL listener, logged in as `user`:
/// (success, stdout + stderr).
fn cli(broker: &BrokerProcess, user: (&str, &str), args: &[&str]) -> (bool, String) {
    let bin = protocol_tests::metrobus_bin().expect("metrobus binary");
    let out = std::process::Command::new(bin)
        .args(args)
        .args([
            "--bootstrap",
            &broker.listener("SASL_PLAINTEXT").to_string(),
            "--admin-user",
            user.0,
        ])
        .env("METROBUS_ADMIN_PASSWORD", user.1)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("metrobus");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The first thing a consumer's polls give within `wait`: a value or an
/// error code.
fn first_poll(consumer: &BaseConsumer, wait: Duration) -> Option<Result<String, KafkaError>> {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                return Some(Ok(
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()
                ))
            }
            Some(Err(e)) => return Some(Err(e)),
            None => {}
        }
    }
    None
}

fn is_topic_authorization_failed(e: &KafkaError) -> bool {
    e.rdkafka_error_code() == Some(RDKafkaErrorCode::TopicAuthorizationFailed)
}

/// Produces one value, returning the error if the broker refuses it.
async fn try_produce(cfg: &ClientConfig, topic: &str, value: &str) -> Result<(), KafkaError> {
    let producer: FutureProducer = cfg
        .clone()
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::<(), _>::to(topic).payload(value),
            Duration::from_secs(15),
        )
        .await
        .map(drop)
        .map_err(|(e, _)| e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_acl_refuses_reads_until_deleted() {
    let broker = start(options());
    let alice = sasl_client(&broker, "SCRAM-SHA-256", ALICE);
    let carol = sasl_client(&broker, "SCRAM-SHA-512", CAROL);
    create(&alice.create().expect("admin"), "secret", 1).await;
    produce(&alice, "secret", &["s-1"]).await;

    // Operators name resources by their internal names.
    let deny_carol_read = [
        "--topic",
        "acme.secret",
        "--principal",
        "User:carol@acme",
        "--operation",
        "READ",
        "--permission",
        "DENY",
    ];
    let (ok, out) = cli(
        &broker,
        ADMIN,
        &[&["acl", "add"][..], &deny_carol_read].concat(),
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(&broker, ADMIN, &["acl", "list"]);
    assert!(ok, "{out}");
    assert_eq!(
        out.trim(),
        "TOPIC\tacme.secret\tLITERAL\tUser:carol@acme\t*\tREAD\tDENY",
        "{out}"
    );

    // Carol may not read it; alice may.
    let carol_consumer = consumer(&carol, "c");
    assign(&carol_consumer, "secret", 1, Offset::Beginning);
    match first_poll(&carol_consumer, Duration::from_secs(15)) {
        Some(Err(e)) if is_topic_authorization_failed(&e) => {}
        other => panic!("carol read acme.secret: {other:?}"),
    }
    let alice_consumer = consumer(&alice, "a");
    assign(&alice_consumer, "secret", 1, Offset::Beginning);
    assert_eq!(values(&alice_consumer, 1), ["s-1"]);
    // Only READ is denied: carol still sees the topic and writes to it.
    assert!(list_topics(&carol_consumer)
        .unwrap()
        .contains(&"secret".to_owned()));
    produce(&carol, "secret", &["s-2"]).await;
    // And reads the tenant's other topics.
    produce(&alice, "public", &["p-1"]).await;
    let carol_public = consumer(&carol, "c2");
    assign(&carol_public, "public", 1, Offset::Beginning);
    assert_eq!(values(&carol_public, 1), ["p-1"]);

    // Tenants may not manage ACLs.
    let (ok, out) = cli(&broker, ALICE, &["acl", "list"]);
    assert!(!ok && out.contains("Cluster authorization failed"), "{out}");
    let (ok, out) = cli(
        &broker,
        ALICE,
        &[&["acl", "delete"][..], &deny_carol_read].concat(),
    );
    assert!(!ok && out.contains("Cluster authorization failed"), "{out}");

    // Deleting the ACL gives carol her rights back.
    let (ok, out) = cli(
        &broker,
        ADMIN,
        &["acl", "delete", "--principal", "User:carol@acme"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("deleted\tTOPIC\tacme.secret"), "{out}");
    let (ok, out) = cli(&broker, ADMIN, &["acl", "list"]);
    assert!(ok && out.trim().is_empty(), "{out}");
    let carol_again = consumer(&carol, "c3");
    assign(&carol_again, "secret", 1, Offset::Beginning);
    assert_eq!(values(&carol_again, 2), ["s-1", "s-2"]);

    // A host in an ACL is the client's address: a DENY from elsewhere does
    // not apply, one from 127.0.0.1 does.
    for (host, refused) in [("10.9.9.9", false), ("127.0.0.1", true)] {
        let (ok, out) = cli(
            &broker,
            ADMIN,
            &[
                "acl",
                "add",
                "--topic",
                "acme.secret",
                "--principal",
                "User:carol@acme",
                "--operation",
                "WRITE",
                "--permission",
                "DENY",
                "--host",
                host,
            ],
        );
        assert!(ok, "{out}");
        let result = try_produce(&carol, "secret", "s-3").await;
        match (refused, &result) {
            (false, Ok(())) => {}
            (true, Err(e)) if is_topic_authorization_failed(e) => {}
            _ => panic!("DENY WRITE from {host}: {result:?}"),
        }
    }
    let (ok, out) = cli(&broker, ADMIN, &["acl", "delete", "--operation", "WRITE"]);
    assert!(ok && out.lines().count() == 2, "{out}");

    // Bad input is refused with a message, not a crash.
    for bad in [
        &[
            "acl",
            "add",
            "--topic",
            "t",
            "--principal",
            "carol",
            "--operation",
            "READ",
        ][..],
        &[
            "acl",
            "add",
            "--topic",
            "t",
            "--principal",
            "User:x",
            "--operation",
            "FLY",
        ],
        &[
            "acl",
            "add",
            "--topic",
            "t",
            "--principal",
            "User:x",
            "--operation",
            "READ",
            "--pattern",
            "MATCH",
        ],
        &["acl", "add", "--principal", "User:x", "--operation", "READ"],
    ] {
        let (ok, out) = cli(&broker, ADMIN, bad);
        assert!(!ok && !out.contains("panicked"), "{bad:?}: {out}");
    }
    let (ok, out) = cli(&broker, ADMIN, &["acl", "list"]);
    assert!(ok && out.trim().is_empty(), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tenant_defaults_only_allow_acls_grant() {
    let broker = start(options().env("METROBUS_TENANT_DEFAULT_ACLS_ENABLE", "false"));
    let alice = sasl_client(&broker, "SCRAM-SHA-256", ALICE);
    let carol = sasl_client(&broker, "SCRAM-SHA-512", CAROL);
    for resource in ["--topic", "--group"] {
        let (ok, out) = cli(
            &broker,
            ADMIN,
            &[
                "acl",
                "add",
                resource,
                "acme.",
                "--pattern",
                "PREFIXED",
                "--principal",
                "User:carol@acme",
                "--operation",
                "ALL",
            ],
        );
        assert!(ok, "{out}");
    }

    // Carol creates, writes and reads acme's topics.
    create(&carol.create().expect("admin"), "orders", 1).await;
    produce(&carol, "orders", &["o-1"]).await;
    let carol_consumer = consumer(&carol, "billing");
    assign(&carol_consumer, "orders", 1, Offset::Beginning);
    assert_eq!(values(&carol_consumer, 1), ["o-1"]);

    // Alice, of the same tenant, can do nothing with them, even with her
    // group allowed (a consumer with a group id needs the group too).
    let (ok, out) = cli(
        &broker,
        ADMIN,
        &[
            "acl",
            "add",
            "--group",
            "acme.billing",
            "--principal",
            "User:alice@acme",
            "--operation",
            "READ",
        ],
    );
    assert!(ok, "{out}");
    let refused = try_produce(&alice, "orders", "a-1")
        .await
        .expect_err("alice produced without an ACL");
    assert!(is_topic_authorization_failed(&refused), "{refused:?}");
    let alice_consumer = consumer(&alice, "billing");
    assert!(list_topics(&alice_consumer).unwrap().is_empty());
    // Asked for by name, the topic is an authorization failure; assigned,
    // it gives nothing.
    let metadata = alice_consumer
        .fetch_metadata(Some("orders"), OP_TIMEOUT)
        .expect("metadata");
    assert_eq!(
        metadata.topics()[0].error().map(RDKafkaErrorCode::from),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    assign(&alice_consumer, "orders", 1, Offset::Beginning);
    match first_poll(&alice_consumer, Duration::from_secs(3)) {
        None => {}
        Some(Err(e)) if is_topic_authorization_failed(&e) => {}
        other => panic!("alice read acme.orders: {other:?}"),
    }

    // An ALLOW READ for alice on that one topic lets her read, not write.
    let (ok, out) = cli(
        &broker,
        ADMIN,
        &[
            "acl",
            "add",
            "--topic",
            "acme.orders",
            "--principal",
            "User:alice@acme",
            "--operation",
            "READ",
        ],
    );
    assert!(ok, "{out}");
    let alice_reader = consumer(&alice, "billing");
    assign(&alice_reader, "orders", 1, Offset::Beginning);
    assert_eq!(values(&alice_reader, 1), ["o-1"]);
    let refused = try_produce(&alice, "orders", "a-2")
        .await
        .expect_err("READ does not allow WRITE");
    assert!(is_topic_authorization_failed(&refused), "{refused:?}");

    // MATCH lists what applies to a name.
    let (ok, out) = cli(
        &broker,
        ADMIN,
        &[
            "acl",
            "list",
            "--topic",
            "acme.orders",
            "--pattern",
            "MATCH",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(out.trim().lines().count(), 2, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixed_deny_all_covers_admin_operations() {
    use protocol_tests::rdkafka::admin::{
        AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
    };
    use protocol_tests::rdkafka::client::DefaultClientContext;

    let broker = start(options());
    let alice = sasl_client(&broker, "SCRAM-SHA-256", ALICE);
    let carol = sasl_client(&broker, "SCRAM-SHA-512", CAROL);
    create(&alice.create().expect("admin"), "ops", 1).await;
    let (ok, out) = cli(
        &broker,
        ADMIN,
        &[
            "acl",
            "add",
            "--topic",
            "acme.ops",
            "--pattern",
            "PREFIXED",
            "--principal",
            "User:carol@acme",
            "--operation",
            "ALL",
            "--permission",
            "DENY",
        ],
    );
    assert!(ok, "{out}");
    let admin: AdminClient<DefaultClientContext> = carol.create().expect("admin");
    let opts = AdminOptions::new().operation_timeout(Some(OP_TIMEOUT));
    let code = |e: &RDKafkaErrorCode| *e;

    // CreateTopics under the prefix (acme.ops-2), DeleteTopics,
    // DescribeConfigs and AlterConfigs of acme.ops: all refused.
    let topic = NewTopic::new("ops-2", 1, TopicReplication::Fixed(-1));
    let created = admin.create_topics([&topic], &opts).await.expect("create");
    assert_eq!(
        created[0].as_ref().map_err(|(_, e)| code(e)).err(),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    let deleted = admin.delete_topics(&["ops"], &opts).await.expect("delete");
    assert_eq!(
        deleted[0].as_ref().map_err(|(_, e)| code(e)).err(),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic("ops")], &opts)
        .await
        .expect("describe_configs");
    // (rust-rdkafka drops a resource's error code: the refusal shows as a
    // resource without entries.)
    match &described[0] {
        Ok(resource) => assert!(resource.entries.is_empty(), "{resource:?}"),
        Err(e) => assert_eq!(*e, RDKafkaErrorCode::TopicAuthorizationFailed),
    }
    let alter = AlterConfig::new(ResourceSpecifier::Topic("ops")).set("retention.ms", "1000");
    let altered = admin
        .alter_configs([&alter], &opts)
        .await
        .expect("alter_configs");
    // (rust-rdkafka drops AlterConfigs' error codes too: below, alice sees
    // the setting unchanged.)
    let _ = altered;
    // Nor does it see the topic; alice, not covered, does all of it.
    let carol_consumer = consumer(&carol, "c");
    assert!(!list_topics(&carol_consumer)
        .unwrap()
        .contains(&"ops".to_owned()));
    let alice_admin: AdminClient<DefaultClientContext> = alice.create().expect("admin");
    let described = alice_admin
        .describe_configs([&ResourceSpecifier::Topic("ops")], &opts)
        .await
        .expect("describe_configs");
    let retention = described[0]
        .as_ref()
        .ok()
        .and_then(|r| r.get("retention.ms"))
        .and_then(|e| e.value.clone());
    assert_eq!(retention.as_deref(), Some("604800000"), "{described:?}");
    let deleted = alice_admin
        .delete_topics(&["ops"], &opts)
        .await
        .expect("delete");
    assert!(deleted[0].is_ok(), "{deleted:?}");
}

#[test]
fn invalid_acls_and_filters_are_refused_on_the_wire() {
    use protocol_tests::wire::{self, Conn, Outcome};

    let broker = start(options());
    // The PLAINTEXT listener's anonymous principal is a super user.
    let plain = broker.listener("PLAINTEXT");
    let i16_at = |body: &[u8], at: usize| i16::from_be_bytes([body[at], body[at + 1]]);

    // CreateAcls v1: one valid binding, then one bad field each.
    let good = (2i8, "acme.t", 3i8, "User:bob@acme", "*", 3i8, 3i8);
    let bad = [
        (2, "acme.t", 2, "User:bob@acme", "*", 3, 3), // pattern MATCH
        (2, "acme.t", 1, "User:bob@acme", "*", 3, 3), // pattern ANY
        (2, "acme.t", 3, "User:bob@acme", "*", 1, 3), // operation ANY
        (2, "acme.t", 3, "User:bob@acme", "*", 0, 3), // operation UNKNOWN
        (2, "acme.t", 3, "User:bob@acme", "*", 3, 1), // permission ANY
        (2, "acme.t", 3, "bob", "*", 3, 3),           // no principal type
        (2, "acme.t", 3, "User:bob@acme", "host", 3, 3), // not an IP
        (99, "acme.t", 3, "User:bob@acme", "*", 3, 3), // resource type
        (2, "", 3, "User:bob@acme", "*", 3, 3),       // empty name
    ];
    let mut request = wire::header_v1(30, 1, 1);
    request.i32(1 + bad.len() as i32);
    for (kind, name, pattern, principal, host, op, perm) in std::iter::once(good).chain(bad) {
        request
            .i8(kind)
            .string(Some(name))
            .i8(pattern)
            .string(Some(principal))
            .string(Some(host))
            .i8(op)
            .i8(perm);
    }
    let mut conn = Conn::connect(plain).unwrap();
    let body = conn
        .round_trip(&wire::frame(&request.0), 1)
        .expect("CreateAcls answer");
    // throttle_time_ms, results count, then (error_code, error_message).
    assert_eq!(i32::from_be_bytes(body[4..8].try_into().unwrap()), 10);
    let mut at = 8;
    let mut codes = Vec::new();
    for _ in 0..10 {
        codes.push(i16_at(&body, at));
        let len = i16_at(&body, at + 2);
        at += 4 + len.max(0) as usize;
    }
    assert_eq!(codes[0], 0, "{codes:?}");
    assert!(codes[1..].iter().all(|c| *c == 42), "{codes:?}");

    // DescribeAcls v1 with an UNKNOWN pattern type: INVALID_REQUEST.
    let mut request = wire::header_v1(29, 1, 2);
    request
        .i8(1)
        .string(None)
        .i8(0)
        .string(None)
        .string(None)
        .i8(1)
        .i8(1);
    let body = conn
        .round_trip(&wire::frame(&request.0), 2)
        .expect("DescribeAcls answer");
    assert_eq!(i16_at(&body, 4), 42);

    // DeleteAcls v1 with a filter of unknown permission: INVALID_REQUEST
    // for it; the valid filter deletes the one binding.
    let mut request = wire::header_v1(31, 1, 3);
    request.i32(2);
    for permission in [9i8, 1] {
        request
            .i8(1)
            .string(None)
            .i8(1)
            .string(None)
            .string(None)
            .i8(1)
            .i8(permission);
    }
    let body = conn
        .round_trip(&wire::frame(&request.0), 3)
        .expect("DeleteAcls answer");
    assert_eq!(i32::from_be_bytes(body[4..8].try_into().unwrap()), 2);
    assert_eq!(i16_at(&body, 8), 42);
    let (ok, out) = cli(&broker, ADMIN, &["acl", "list"]);
    assert!(ok && out.trim().is_empty(), "{out}");

    // A truncated CreateAcls closes the connection; the broker lives on.
    let mut request = wire::header_v1(30, 1, 4);
    request.i32(3).i8(2);
    let mut conn = Conn::connect(plain).unwrap();
    conn.send(&wire::frame(&request.0)).unwrap();
    match conn.outcome(Duration::from_secs(10)).unwrap() {
        Outcome::Closed => {}
        other => panic!("expected a close, got {other:?}"),
    }
    assert!(wire::api_versions(plain).is_ok());
}
