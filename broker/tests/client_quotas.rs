//! Client quotas through the real dispatch of an in-process broker:
//! AlterClientQuotas and DescribeClientQuotas (super users only, strict and
//! non-strict filters, INVALID_REQUEST for bad input), and a tenant over
//! its produce or fetch quota answered with `throttle_time_ms` and its
//! connection muted for that long.

mod common;

use common::{batch, creatable, name, Session, TestBroker};
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

const INVALID_REQUEST: i16 = 42;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

impl Session {
    async fn alter(&self, version: i16, entries: Vec<EntryData>, validate_only: bool) -> Vec<i16> {
        let response: AlterClientQuotasResponse = self
            .send(
                ApiKey::AlterClientQuotas,
                version,
                &AlterClientQuotasRequest::default()
                    .with_entries(entries)
                    .with_validate_only(validate_only),
            )
            .await;
        response.entries.iter().map(|e| e.error_code).collect()
    }

    /// (error code, entries as "type=name,...|key=value,...").
    async fn describe(
        &self,
        version: i16,
        components: Vec<ComponentData>,
        strict: bool,
    ) -> (i16, Vec<String>) {
        let response: DescribeClientQuotasResponse = self
            .send(
                ApiKey::DescribeClientQuotas,
                version,
                &DescribeClientQuotasRequest::default()
                    .with_components(components)
                    .with_strict(strict),
            )
            .await;
        let mut entries: Vec<String> = response
            .entries
            .unwrap_or_default()
            .iter()
            .map(|e| {
                let entity: Vec<String> = e
                    .entity
                    .iter()
                    .map(|p| {
                        format!(
                            "{}={}",
                            p.entity_type.as_str(),
                            p.entity_name.as_deref().unwrap_or("<default>")
                        )
                    })
                    .collect();
                let values: Vec<String> = e
                    .values
                    .iter()
                    .map(|v| format!("{}={}", v.key.as_str(), v.value))
                    .collect();
                format!("{}|{}", entity.join(","), values.join(","))
            })
            .collect();
        entries.sort();
        (response.error_code, entries)
    }

    async fn produce(&self, topic: &str, values: &[&str]) -> ProduceResponse {
        let request = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_records(Some(batch(
                        values,
                        common::now_ms(),
                        Compression::None,
                    )))])]);
        self.send(ApiKey::Produce, 9, &request).await
    }

    async fn fetch(&self, topic: &str) -> FetchResponse {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![
                    FetchPartition::default().with_partition_max_bytes(1 << 20)
                ])]);
        self.send(ApiKey::Fetch, 12, &request).await
    }
}

fn entry(entity: &[(&str, Option<&str>)], ops: &[(&str, f64, bool)]) -> EntryData {
    EntryData::default()
        .with_entity(
            entity
                .iter()
                .map(|(t, n)| {
                    EntityData::default()
                        .with_entity_type(s(t))
                        .with_entity_name(n.map(s))
                })
                .collect(),
        )
        .with_ops(
            ops.iter()
                .map(|(k, v, remove)| {
                    OpData::default()
                        .with_key(s(k))
                        .with_value(*v)
                        .with_remove(*remove)
                })
                .collect(),
        )
}

fn component(entity_type: &str, match_type: i8, name: Option<&str>) -> ComponentData {
    ComponentData::default()
        .with_entity_type(s(entity_type))
        .with_match_type(match_type)
        .with_match(name.map(s))
}

#[tokio::test]
async fn quotas_round_trip_for_super_users_only() {
    let broker = TestBroker::start().await;
    let operator = Session::operator(&broker);
    let alice = Session::tenant(&broker, "alice", "acme");

    // A tenant's user may neither set nor read quotas.
    let refused = alice
        .alter(
            1,
            vec![entry(
                &[("tenant", Some("acme"))],
                &[("producer_byte_rate", 1e6, false)],
            )],
            false,
        )
        .await;
    assert_eq!(refused, [CLUSTER_AUTHORIZATION_FAILED]);
    assert_eq!(
        alice.describe(1, vec![], false).await,
        (CLUSTER_AUTHORIZATION_FAILED, vec![])
    );

    // One good entry and several bad ones: each answered on its own.
    let codes = operator
        .alter(
            0,
            vec![
                entry(
                    &[("tenant", Some("acme"))],
                    &[
                        ("producer_byte_rate", 1024.0, false),
                        ("consumer_byte_rate", 2048.0, false),
                    ],
                ),
                entry(&[("ip", None)], &[("producer_byte_rate", 1.0, false)]),
                entry(&[("user", None)], &[("producer_byte_rate", -1.0, false)]),
                entry(
                    &[("user", None)],
                    &[("producer_byte_rate", f64::NAN, false)],
                ),
                entry(&[("user", None)], &[("no_such_key", 1.0, false)]),
                entry(
                    &[("tenant", None), ("user", None)],
                    &[("producer_byte_rate", 1.0, false)],
                ),
                entry(
                    &[("user", Some("bob@globex")), ("client-id", None)],
                    &[("request_percentage", 50.0, false)],
                ),
            ],
            false,
        )
        .await;
    assert_eq!(
        codes,
        [
            0,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
            0
        ]
    );
    // validate_only changes nothing.
    let codes = operator
        .alter(
            1,
            vec![entry(
                &[("client-id", None)],
                &[("producer_byte_rate", 5.0, false)],
            )],
            true,
        )
        .await;
    assert_eq!(codes, [0]);

    let everything = vec![
        "tenant=acme|producer_byte_rate=1024,consumer_byte_rate=2048".to_owned(),
        "user=bob@globex,client-id=<default>|request_percentage=50".to_owned(),
    ];
    assert_eq!(
        operator.describe(1, vec![], false).await,
        (0, everything.clone())
    );
    assert_eq!(operator.describe(0, vec![], true).await, (0, vec![]));
    // Exact, default and "any name" matches; strict excludes entities with
    // more parts than the filter.
    assert_eq!(
        operator
            .describe(1, vec![component("user", 0, Some("bob@globex"))], false)
            .await,
        (0, vec![everything[1].clone()])
    );
    assert_eq!(
        operator
            .describe(1, vec![component("user", 0, Some("bob@globex"))], true)
            .await,
        (0, vec![])
    );
    assert_eq!(
        operator
            .describe(1, vec![component("client-id", 1, None)], false)
            .await,
        (0, vec![everything[1].clone()])
    );
    assert_eq!(
        operator
            .describe(1, vec![component("tenant", 2, None)], true)
            .await,
        (0, vec![everything[0].clone()])
    );
    assert_eq!(
        operator
            .describe(1, vec![component("ip", 2, None)], false)
            .await
            .0,
        INVALID_REQUEST
    );
    assert_eq!(
        operator
            .describe(
                1,
                vec![component("user", 2, None), component("user", 1, None)],
                false
            )
            .await
            .0,
        INVALID_REQUEST
    );
    assert_eq!(
        operator
            .describe(1, vec![component("user", 7, None)], false)
            .await
            .0,
        INVALID_REQUEST
    );

    // Removal.
    let codes = operator
        .alter(
            1,
            vec![entry(
                &[("tenant", Some("acme"))],
                &[("producer_byte_rate", 0.0, true)],
            )],
            false,
        )
        .await;
    assert_eq!(codes, [0]);
    assert_eq!(
        operator
            .describe(1, vec![component("tenant", 0, Some("acme"))], true)
            .await,
        (0, vec!["tenant=acme|consumer_byte_rate=2048".to_owned()])
    );
}

#[tokio::test]
async fn a_tenant_over_its_quota_is_throttled_and_muted() {
    let broker = TestBroker::start().await;
    let operator = Session::operator(&broker);
    let alice = Session::tenant(&broker, "alice", "acme");
    let carol = Session::tenant(&broker, "carol", "acme");
    let bob = Session::tenant(&broker, "bob", "globex");
    for session in [&alice, &bob] {
        let created: CreateTopicsResponse = session
            .send(
                ApiKey::CreateTopics,
                7,
                &CreateTopicsRequest::default()
                    .with_topics(vec![creatable("t", 1, &[])])
                    .with_timeout_ms(5000),
            )
            .await;
        assert_eq!(created.topics[0].error_code, 0);
    }
    // 1 KB/s for all of acme, nothing for globex. With Kafka's defaults the
    // rate is measured over at least 10 s: 20 KB is 2 KB/s.
    let codes = operator
        .alter(
            1,
            vec![entry(
                &[("tenant", Some("acme"))],
                &[
                    ("producer_byte_rate", 1000.0, false),
                    ("consumer_byte_rate", 1000.0, false),
                ],
            )],
            false,
        )
        .await;
    assert_eq!(codes, [0]);

    let big = "x".repeat(20_000);
    let first = alice.produce("t", &[&big]).await;
    assert_eq!(first.responses[0].partition_responses[0].error_code, 0);
    // About (2000 - 1000) / 1000 * 10 s.
    assert!(
        (9_000..=11_000).contains(&first.throttle_time_ms),
        "{}",
        first.throttle_time_ms
    );
    let muted = alice.mute.remaining().expect("alice's connection is muted");
    assert!(muted.as_millis() > 8_000, "{muted:?}");
    // The tenant's budget is shared: carol (same tenant) is throttled too.
    let carols = carol.produce("t", &["small"]).await;
    assert!(carols.throttle_time_ms > 0);
    // Another tenant is not.
    let bobs = bob.produce("t", &[&big]).await;
    assert_eq!(bobs.throttle_time_ms, 0);
    assert!(bob.mute.remaining().is_none());

    // Fetching 20 KB at 1 KB/s: an empty answer with the throttle time,
    // and the bytes are not counted (the next fetch is throttled the same).
    let fetched = alice.fetch("t").await;
    assert!(fetched.throttle_time_ms > 0, "{}", fetched.throttle_time_ms);
    assert!(fetched.responses.is_empty());
    let again = alice.fetch("t").await;
    assert!(
        (again.throttle_time_ms - fetched.throttle_time_ms).abs() < 500,
        "{} vs {}",
        again.throttle_time_ms,
        fetched.throttle_time_ms
    );
    // Bob fetches his freely.
    let bobs = bob.fetch("t").await;
    assert_eq!(bobs.throttle_time_ms, 0);
    assert_eq!(bobs.responses.len(), 1);
}
