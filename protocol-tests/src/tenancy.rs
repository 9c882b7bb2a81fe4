//! Shared setup of the tenancy tests: a broker with a PLAINTEXT and a SASL
//! listener (and optionally SASL_SSL), the `admin` super user and two
//! tenants' users seeded from config, and client configs that log in.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::{consume_n, BrokerOptions, BrokerProcess, OP_TIMEOUT};

pub const ADMIN: (&str, &str) = ("admin", "admin-secret");
pub const ALICE: (&str, &str) = ("alice@acme", "alice-secret");
pub const BOB: (&str, &str) = ("bob@globex", "bob-secret");

/// Options for a broker with PLAINTEXT and SASL_PLAINTEXT listeners, and,
/// when `keystore` is given, a SASL_SSL one.
pub fn secured_options(keystore: Option<&Path>) -> BrokerOptions {
    let mut listeners = "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0".to_owned();
    let mut opts = BrokerOptions::new()
        .env("METROBUS_SUPER_USERS", "User:admin")
        .env(
            "METROBUS_SASL_SEED_USERS",
            format!(
                "{}:{},{}:{},{}:{}",
                ADMIN.0, ADMIN.1, ALICE.0, ALICE.1, BOB.0, BOB.1
            ),
        );
    if let Some(keystore) = keystore {
        listeners.push_str(",SASL_SSL://127.0.0.1:0");
        opts = opts.env(
            "METROBUS_SSL_KEYSTORE_LOCATION",
            keystore.display().to_string(),
        );
    }
    opts.listeners(listeners)
}

/// A client config that logs in on the broker's SASL_PLAINTEXT listener.
pub fn sasl_client(broker: &BrokerProcess, mechanism: &str, user: (&str, &str)) -> ClientConfig {
    sasl_client_for(
        &broker.listener("SASL_PLAINTEXT").to_string(),
        mechanism,
        user,
    )
}

/// A client config that logs in on the SASL_PLAINTEXT listeners `bootstrap`.
pub fn sasl_client_for(bootstrap: &str, mechanism: &str, user: (&str, &str)) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("client.id", "metrobus-tenancy-tests")
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanisms", mechanism)
        .set("sasl.username", user.0)
        .set("sasl.password", user.1);
    cfg
}

/// A client config for the SASL_SSL listener, trusting `ca`.
pub fn sasl_ssl_client(
    broker: &BrokerProcess,
    ca: &Path,
    mechanism: &str,
    user: (&str, &str),
) -> ClientConfig {
    let mut cfg = sasl_client(broker, mechanism, user);
    cfg.set("bootstrap.servers", broker.listener("SASL_SSL").to_string())
        .set("security.protocol", "SASL_SSL")
        .set("ssl.ca.location", ca.display().to_string());
    cfg
}

/// A self-signed certificate for 127.0.0.1 and localhost made with the
/// `openssl` command: returns (keystore PEM with key and certificate, CA
/// PEM with the certificate).
pub fn self_signed_keystore(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let key = dir.join("server.key");
    let cert = dir.join("server.crt");
    let output = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .context("running openssl (apt-get install openssl)")?;
    if !output.status.success() {
        bail!(
            "openssl failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let keystore = dir.join("keystore.pem");
    let mut pem = std::fs::read(&key)?;
    pem.extend(std::fs::read(&cert)?);
    std::fs::write(&keystore, pem)?;
    Ok((keystore, cert))
}

/// Creates a topic (replication factor: the broker's default).
pub async fn create(admin: &AdminClient<DefaultClientContext>, name: &str, partitions: i32) {
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(-1));
    let opts = AdminOptions::new().operation_timeout(Some(OP_TIMEOUT));
    let results = admin
        .create_topics([&topic], &opts)
        .await
        .expect("create_topics");
    for r in results {
        r.unwrap_or_else(|(t, code)| panic!("creating {t}: {code:?}"));
    }
}

/// Produces `values` with acks=all, failing on any error.
pub async fn produce(cfg: &ClientConfig, topic: &str, values: &[&str]) {
    let producer: FutureProducer = cfg
        .clone()
        .set("acks", "all")
        .set("message.timeout.ms", "20000")
        .create()
        .expect("producer");
    for value in values {
        producer
            .send(
                FutureRecord::<(), _>::to(topic).payload(*value),
                Duration::from_secs(20),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("producing to {topic}: {e}"));
    }
}

/// A consumer of group `group`, from the earliest offset, no auto-commit.
pub fn consumer(cfg: &ClientConfig, group: &str) -> BaseConsumer {
    cfg.clone()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer")
}

/// The next `n` values as strings.
pub fn values(consumer: &BaseConsumer, n: usize) -> Vec<String> {
    consume_n(consumer, n, OP_TIMEOUT)
        .expect("consuming")
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
        .collect()
}
