//! Tenants over SASL with librdkafka (and kcat): SCRAM and PLAIN logins,
//! each tenant seeing and using only its own topics, groups and offsets
//! under its own names; super users seeing everything under internal names;
//! wrong passwords and skipped authentication refused; SASL over TLS.

use std::time::Duration;

use protocol_tests::rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use protocol_tests::rdkafka::{Offset, TopicPartitionList};
use protocol_tests::tenancy::{
    consumer, create, produce, sasl_client, sasl_ssl_client, secured_options, self_signed_keystore,
    values, ADMIN, ALICE, BOB,
};
use protocol_tests::wire::{self, Conn, Outcome};
use protocol_tests::{assign, find_on_path, list_topics, BrokerProcess, OP_TIMEOUT};

fn start() -> BrokerProcess {
    BrokerProcess::start(secured_options(None)).unwrap_or_else(|e| panic!("{e:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_share_names_and_never_see_each_other() {
    let broker = start();
    let alice = sasl_client(&broker, "SCRAM-SHA-256", ALICE);
    let bob = sasl_client(&broker, "SCRAM-SHA-512", BOB);
    let admin = sasl_client(&broker, "SCRAM-SHA-512", ADMIN);

    // Both tenants create a topic called `metrics`.
    create(&alice.create().expect("admin"), "metrics", 2).await;
    create(&bob.create().expect("admin"), "metrics", 1).await;
    produce(&alice, "metrics", &["acme-1", "acme-2"]).await;
    produce(&bob, "metrics", &["globex-1"]).await;

    // Each reads its own records only.
    let alice_consumer = consumer(&alice, "dash");
    assign(&alice_consumer, "metrics", 2, Offset::Beginning);
    let mut got = values(&alice_consumer, 2);
    got.sort();
    assert_eq!(got, ["acme-1", "acme-2"]);
    let bob_consumer = consumer(&bob, "dash");
    assign(&bob_consumer, "metrics", 1, Offset::Beginning);
    assert_eq!(values(&bob_consumer, 1), ["globex-1"]);

    // Listing shows a tenant its own names only: no other tenant's topic,
    // no internal topic.
    let mut alice_topics = list_topics(&alice_consumer).unwrap();
    alice_topics.sort();
    assert_eq!(alice_topics, ["metrics"]);
    assert_eq!(list_topics(&bob_consumer).unwrap(), ["metrics"]);
    // The super user sees the internal names.
    let admin_consumer = consumer(&admin, "ops");
    let admin_topics = list_topics(&admin_consumer).unwrap();
    for expected in ["acme.metrics", "globex.metrics"] {
        assert!(
            admin_topics.iter().any(|t| t == expected),
            "{admin_topics:?}"
        );
    }

    // Naming the other tenant's topic names one's own: alice's
    // `globex.metrics` is `acme.globex.metrics`, with none of bob's data.
    produce(&alice, "globex.metrics", &["acme-probe"]).await;
    let probe = consumer(&alice, "probe");
    assign(&probe, "globex.metrics", 1, Offset::Beginning);
    assert_eq!(values(&probe, 1), ["acme-probe"]);
    let admin_topics = list_topics(&admin_consumer).unwrap();
    assert!(
        admin_topics.iter().any(|t| t == "acme.globex.metrics"),
        "{admin_topics:?}"
    );
    let bob_again = consumer(&bob, "dash-2");
    assign(&bob_again, "metrics", 1, Offset::Beginning);
    assert_eq!(values(&bob_again, 1), ["globex-1"]);

    // Committed offsets and groups are per tenant: both have a group
    // `dash`, each with its own offsets.
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset("metrics", 0, Offset::Offset(1))
        .unwrap();
    alice_consumer
        .commit(&commit, CommitMode::Sync)
        .expect("alice commits");
    let committed = bob_consumer
        .committed_offsets(
            {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition("metrics", 0);
                tpl
            },
            OP_TIMEOUT,
        )
        .expect("bob's committed offsets");
    assert_eq!(
        committed.elements()[0].offset(),
        Offset::Invalid,
        "bob's group `dash` has no offset: alice's commit is hers"
    );
    let groups = bob_consumer
        .fetch_group_list(None, OP_TIMEOUT)
        .expect("bob lists groups");
    for group in groups.groups() {
        assert!(!group.name().starts_with("acme."), "{}", group.name());
    }
    // Per-tenant metrics: acme has `metrics` and `globex.metrics`.
    protocol_tests::wait_until("tenant metrics", OP_TIMEOUT, || {
        let text = protocol_tests::http_get(broker.http_addr(), "/metrics", OP_TIMEOUT)
            .map(|r| r.text())
            .unwrap_or_default();
        Ok(text.contains("metrobus_tenant_topics{tenant=\"acme\"} 2")
            && text.contains("metrobus_tenant_topics{tenant=\"globex\"} 1")
            && text.contains("metrobus_tenant_consumer_lag_records{tenant=\"acme\"}"))
    })
    .expect("per-tenant metrics");
    let groups = admin_consumer
        .fetch_group_list(None, OP_TIMEOUT)
        .expect("admin lists groups");
    assert!(
        groups.groups().iter().any(|g| g.name() == "acme.dash"),
        "the super user sees internal group names"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_are_refused() {
    let broker = start();
    const WRONG: &str = "Wr0ng-Passw0rd-7f3a";
    let attempts = [
        ("SCRAM-SHA-256", (ALICE.0, WRONG)),
        ("SCRAM-SHA-512", ("nobody@acme", WRONG)),
        ("PLAIN", (BOB.0, WRONG)),
    ];
    for (mechanism, user) in attempts {
        let consumer: BaseConsumer = sasl_client(&broker, mechanism, user)
            .create()
            .expect("consumer");
        // librdkafka reports the refusal through its error callback and
        // the call fails as a transport failure.
        consumer
            .fetch_metadata(None, Duration::from_secs(5))
            .expect_err("a wrong login must not get metadata");
    }
    let metrics = protocol_tests::http_get(broker.http_addr(), "/metrics", OP_TIMEOUT)
        .expect("metrics")
        .text();
    let failed: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("metrobus_sasl_authentications_total") && l.contains("result=\"failed\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        failed >= attempts.len() as f64,
        "failures counted: {metrics}"
    );
    // PLAIN with the right password works (checked against SCRAM
    // credentials).
    let consumer: BaseConsumer = sasl_client(&broker, "PLAIN", ALICE)
        .create()
        .expect("consumer");
    consumer
        .fetch_metadata(None, OP_TIMEOUT)
        .expect("PLAIN login");
    let log = std::fs::read_to_string(broker.log_path()).unwrap_or_default();
    assert!(log.contains("authentication failed"), "failures are logged");
    assert!(!log.contains(WRONG), "the log never shows a password");
    assert!(!log.contains(ALICE.1), "the log never shows a password");
}

#[test]
fn requests_before_authentication_close_the_connection() {
    let broker = start();
    let sasl = broker.listener("SASL_PLAINTEXT");
    // ApiVersions is allowed before authentication.
    let apis = wire::api_versions(sasl).expect("ApiVersions before SASL");
    assert!(apis.iter().any(|a| a.key == 17 && a.min <= 1 && a.max >= 1));
    // A Metadata v1 request without authentication: closed, no answer.
    let mut conn = Conn::connect(sasl).unwrap();
    let mut request = wire::header_v1(3, 1, 7);
    request.i32(-1);
    conn.send(&wire::frame(&request.0)).unwrap();
    match conn.outcome(Duration::from_secs(10)).unwrap() {
        Outcome::Closed => {}
        other => panic!("expected a close, got {other:?}"),
    }
    // SaslAuthenticate before SaslHandshake: ILLEGAL_SASL_STATE, then close.
    let mut conn = Conn::connect(sasl).unwrap();
    let mut request = wire::header_v1(36, 0, 8);
    request.i32(0);
    let body = conn
        .round_trip(&wire::frame(&request.0), 8)
        .expect("an answer");
    assert_eq!(
        i16::from_be_bytes([body[0], body[1]]),
        34,
        "ILLEGAL_SASL_STATE"
    );
    match conn.outcome(Duration::from_secs(10)).unwrap() {
        Outcome::Closed => {}
        other => panic!("expected a close, got {other:?}"),
    }
    // An unknown mechanism: UNSUPPORTED_SASL_MECHANISM with our list.
    let mut conn = Conn::connect(sasl).unwrap();
    let mut request = wire::header_v1(17, 1, 9);
    request.string(Some("GSSAPI"));
    let body = conn
        .round_trip(&wire::frame(&request.0), 9)
        .expect("an answer");
    assert_eq!(i16::from_be_bytes([body[0], body[1]]), 33);
    let listed = String::from_utf8_lossy(&body);
    assert!(listed.contains("SCRAM-SHA-256") && listed.contains("PLAIN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_listener_serves_tenants_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (keystore, ca) = self_signed_keystore(dir.path()).expect("certificate");
    let broker =
        BrokerProcess::start(secured_options(Some(&keystore))).unwrap_or_else(|e| panic!("{e:#}"));
    let alice = sasl_ssl_client(&broker, &ca, "SCRAM-SHA-512", ALICE);
    create(&alice.create().expect("admin"), "secure", 1).await;
    produce(&alice, "secure", &["over-tls"]).await;
    let consumer = consumer(&alice, "tls");
    assign(&consumer, "secure", 1, Offset::Beginning);
    assert_eq!(values(&consumer, 1), ["over-tls"]);
    // The metadata answer on the TLS listener names the TLS port.
    let md = consumer.fetch_metadata(None, OP_TIMEOUT).unwrap();
    assert_eq!(
        md.brokers()[0].port() as u16,
        broker.listener("SASL_SSL").port()
    );
    // kcat over SASL_SSL: alice's listing, nothing else.
    let kcat = find_on_path("kcat")
        .or_else(|| find_on_path("kafkacat"))
        .expect("kcat is not installed: run scripts/install-test-tools.sh");
    let out = std::process::Command::new(kcat)
        .args(["-b", &broker.listener("SASL_SSL").to_string(), "-L"])
        .args(["-X", "security.protocol=SASL_SSL"])
        .args(["-X", &format!("ssl.ca.location={}", ca.display())])
        .args(["-X", "sasl.mechanisms=SCRAM-SHA-256"])
        .args(["-X", &format!("sasl.username={}", ALICE.0)])
        .args(["-X", &format!("sasl.password={}", ALICE.1)])
        .output()
        .expect("kcat");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{listing}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(listing.contains("topic \"secure\""), "{listing}");
    assert!(!listing.contains("acme."), "{listing}");
    // A client that does not trust the certificate cannot connect.
    let untrusting: BaseConsumer = sasl_client(&broker, "SCRAM-SHA-512", ALICE)
        .set("bootstrap.servers", broker.listener("SASL_SSL").to_string())
        .set("security.protocol", "SASL_SSL")
        .create()
        .unwrap();
    assert!(untrusting
        .fetch_metadata(None, Duration::from_secs(5))
        .is_err());
}

#[test]
fn kcat_logs_in_with_scram_and_lists_only_its_tenant() {
    let kcat = find_on_path("kcat")
        .or_else(|| find_on_path("kafkacat"))
        .expect("kcat is not installed: run scripts/install-test-tools.sh");
    let broker = start();
    let sasl = broker.listener("SASL_PLAINTEXT").to_string();
    let login = |user: (&str, &str)| {
        vec![
            "-b".to_owned(),
            sasl.clone(),
            "-X".to_owned(),
            "security.protocol=SASL_PLAINTEXT".to_owned(),
            "-X".to_owned(),
            "sasl.mechanisms=SCRAM-SHA-256".to_owned(),
            "-X".to_owned(),
            format!("sasl.username={}", user.0),
            "-X".to_owned(),
            format!("sasl.password={}", user.1),
        ]
    };
    let run = |args: Vec<String>, input: Option<&str>| {
        use std::io::Write;
        let mut child = std::process::Command::new(&kcat)
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kcat");
        if let Some(input) = input {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // Bob produces to his `events` (auto-created), alice produces to hers.
    for (user, value) in [(BOB, "globex-event"), (ALICE, "acme-event")] {
        let mut args = login(user);
        args.extend(["-P", "-t", "events"].map(String::from));
        let (ok, out) = run(args, Some(&format!("{value}\n")));
        assert!(ok, "kcat -P as {}: {out}", user.0);
    }
    let mut args = login(ALICE);
    args.extend(["-C", "-t", "events", "-o", "beginning", "-e", "-q"].map(String::from));
    let (ok, out) = run(args, None);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "acme-event");
    let mut args = login(ALICE);
    args.push("-L".to_owned());
    let (ok, out) = run(args, None);
    assert!(ok, "{out}");
    assert!(out.contains("topic \"events\""), "{out}");
    assert!(!out.contains("globex"), "alice's listing leaks: {out}");
    assert!(!out.contains("__consumer_offsets"), "{out}");
    // A wrong password fails.
    let (ok, out) = run(
        {
            let mut args = login((ALICE.0, "nope"));
            args.extend(["-L", "-m", "5"].map(String::from));
            args
        },
        None,
    );
    assert!(!ok, "a wrong password must fail: {out}");
}

#[test]
fn cli_creates_tenants_and_users_that_log_in() {
    let broker = start();
    let bin = protocol_tests::metrobus_bin().expect("metrobus binary");
    let sasl = broker.listener("SASL_PLAINTEXT").to_string();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(&bin)
            .args(args)
            .args(["--bootstrap", &sasl, "--admin-user", ADMIN.0])
            .env("METROBUS_ADMIN_PASSWORD", ADMIN.1)
            .output()
            .expect("metrobus");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = cli(&[
        "tenant",
        "create",
        "initech",
        "--user",
        "peter",
        "--password",
        "tps-report",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["user", "add", "milton@initech", "--password", "stapler"]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["user", "list"]);
    assert!(ok, "{out}");
    for user in ["admin", "alice@acme", "peter@initech", "milton@initech"] {
        assert!(out.contains(user), "{user} in {out}");
    }
    assert!(out.contains("SCRAM-SHA-512(iterations=4096)"), "{out}");
    let (ok, out) = cli(&["tenant", "list"]);
    assert!(ok, "{out}");
    assert!(
        out.lines()
            .any(|l| l.split('\t').collect::<Vec<_>>() == ["initech", "2", "0"]),
        "{out}"
    );
    // The new user logs in with both mechanisms.
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let consumer: BaseConsumer =
            sasl_client(&broker, mechanism, ("peter@initech", "tps-report"))
                .create()
                .unwrap();
        consumer.fetch_metadata(None, OP_TIMEOUT).expect("login");
    }
    let (ok, out) = cli(&["user", "delete", "milton@initech"]);
    assert!(ok, "{out}");
    let consumer: BaseConsumer =
        sasl_client(&broker, "SCRAM-SHA-256", ("milton@initech", "stapler"))
            .create()
            .unwrap();
    assert!(consumer
        .fetch_metadata(None, Duration::from_secs(5))
        .is_err());
    // Bad input: a dotted tenant name, a wrong admin password, a tenant's user.
    let (ok, out) = cli(&["tenant", "create", "a.b", "--user", "x", "--password", "y"]);
    assert!(!ok && out.contains("tenant name"), "{out}");
    let out = std::process::Command::new(&bin)
        .args([
            "user",
            "list",
            "--bootstrap",
            &sasl,
            "--admin-user",
            ALICE.0,
        ])
        .env("METROBUS_ADMIN_PASSWORD", ALICE.1)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("uthorization"),
        "{text}"
    );
}

/// KIP-368: with `connections.max.reauth.ms`, librdkafka re-authenticates
/// on the same connection before the session ends, and nothing is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_and_clients_reauthenticate() {
    let broker = BrokerProcess::start(
        secured_options(None).env("METROBUS_CONNECTIONS_MAX_REAUTH_MS", "2000"),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let alice = sasl_client(&broker, "SCRAM-SHA-256", ALICE);
    create(&alice.create().expect("admin"), "reauth", 1).await;
    let producer: protocol_tests::rdkafka::producer::FutureProducer = alice
        .clone()
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    let started = std::time::Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(7) {
        producer
            .send(
                protocol_tests::rdkafka::producer::FutureRecord::<(), _>::to("reauth")
                    .payload("tick"),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("record {sent}: {e}"));
        sent += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = protocol_tests::http_get(broker.http_addr(), "/metrics", OP_TIMEOUT)
        .expect("metrics")
        .text();
    let sum = |prefix: &str, label: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(
        sum(
            "metrobus_connections_closed_total",
            "reason=\"reauthentication_required\""
        ),
        0.0,
        "a client was cut off instead of re-authenticating:\n{metrics}"
    );
    let logins = sum("metrobus_sasl_authentications_total", "result=\"ok\"");
    // Admin connection + producer connections, each re-authenticated at
    // least twice in 7 s of 2 s sessions.
    assert!(logins >= 4.0, "{logins} logins in 7 s:\n{metrics}");
    assert!(sent > 20);
}

/// Names that try to leave the tenant's prefix stay inside it or are
/// refused as Kafka refuses illegal names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_cannot_escape_the_tenant_prefix() {
    use protocol_tests::rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
    use protocol_tests::rdkafka::types::RDKafkaErrorCode;
    let broker = start();
    let admin: protocol_tests::rdkafka::admin::AdminClient<_> =
        sasl_client(&broker, "SCRAM-SHA-256", ALICE)
            .create()
            .expect("admin");
    let long = "x".repeat(246);
    let names = [
        "../x",
        "globex.metrics",
        ".",
        "..",
        "a/b",
        long.as_str(),
        "ok.name",
    ];
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, 1, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(
            &topics,
            &AdminOptions::new().operation_timeout(Some(OP_TIMEOUT)),
        )
        .await
        .expect("create_topics");
    let outcome: Vec<(String, Option<RDKafkaErrorCode>)> = results
        .into_iter()
        .map(|r| match r {
            Ok(name) => (name, None),
            Err((name, code)) => (name, Some(code)),
        })
        .collect();
    for (name, code) in &outcome {
        match name.as_str() {
            "globex.metrics" | "ok.name" | "." | ".." => {
                assert_eq!(*code, None, "{name} is a legal name under acme.")
            }
            _ => assert_eq!(
                *code,
                Some(RDKafkaErrorCode::InvalidTopic),
                "{name} must be refused"
            ),
        }
    }
    // Nothing landed outside acme's prefix.
    let admin_view = consumer(&sasl_client(&broker, "SCRAM-SHA-512", ADMIN), "ops");
    for topic in list_topics(&admin_view).unwrap() {
        assert!(
            topic.starts_with("acme.") || topic.starts_with("__"),
            "{topic} escaped the prefix"
        );
    }
    // And bob cannot see or reach acme's `globex.metrics`.
    let bob = consumer(&sasl_client(&broker, "SCRAM-SHA-512", BOB), "bob");
    assert!(list_topics(&bob).unwrap().is_empty());
}
