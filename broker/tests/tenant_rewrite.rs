//! A tenant's requests through the real dispatch and handlers of an
//! in-process broker. Authentication is not wired to the listener yet, so
//! the requests go straight to `protocol::dispatch` with a request context
//! that carries the tenant's principal; an operator (the anonymous
//! principal, as on a PLAINTEXT listener) checks what the broker stored.

mod common;

use common::{batch, creatable, name, values, Session, TestBroker};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use uuid::Uuid;

const UNKNOWN_TOPIC_ID: i16 = 100;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

impl Session {
    /// Metadata v12 of every topic: (name, id).
    async fn all_topics(&self) -> Vec<(String, Uuid)> {
        let response: MetadataResponse = self
            .send(
                ApiKey::Metadata,
                12,
                &MetadataRequest::default().with_topics(None),
            )
            .await;
        let mut topics: Vec<(String, Uuid)> = response
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                    t.topic_id,
                )
            })
            .collect();
        topics.sort();
        topics
    }

    async fn create_topic(&self, topic: &str) -> CreateTopicsResponse {
        let request = CreateTopicsRequest::default()
            .with_topics(vec![creatable(topic, 1, &[])])
            .with_timeout_ms(5000);
        self.send(ApiKey::CreateTopics, 7, &request).await
    }

    async fn fetch_values(&self, topic: &str) -> (String, Vec<(i64, String)>) {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![
                    FetchPartition::default().with_partition_max_bytes(1 << 20)
                ])]);
        let response: FetchResponse = self.send(ApiKey::Fetch, 12, &request).await;
        let answered = &response.responses[0];
        let partition = &answered.partitions[0];
        assert_eq!(partition.error_code, 0, "fetch {topic}");
        (
            answered.topic.to_string(),
            values(partition.records.as_ref().expect("records")),
        )
    }

    async fn commit(&self, group: &str, topic: &str, offset: i64) -> i16 {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default().with_committed_offset(offset)
                ])]);
        let response: OffsetCommitResponse = self.send(ApiKey::OffsetCommit, 8, &request).await;
        assert_eq!(response.topics[0].name.as_str(), topic);
        response.topics[0].partitions[0].error_code
    }

    /// Committed offsets of a group (OffsetFetch v8, all topics):
    /// (topic, offset).
    async fn offsets(&self, group: &str) -> Vec<(String, i64)> {
        let request =
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(None)]);
        let response: OffsetFetchResponse = self.send(ApiKey::OffsetFetch, 8, &request).await;
        let answered = &response.groups[0];
        assert_eq!(answered.group_id.as_str(), group);
        assert_eq!(answered.error_code, 0);
        answered
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.to_string(), p.committed_offset))
            })
            .collect()
    }

    async fn groups(&self) -> Vec<String> {
        for _ in 0..200 {
            let response: ListGroupsResponse = self
                .send(ApiKey::ListGroups, 4, &ListGroupsRequest::default())
                .await;
            if response.error_code != COORDINATOR_LOAD_IN_PROGRESS {
                assert_eq!(response.error_code, 0);
                return response
                    .groups
                    .iter()
                    .map(|g| g.group_id.to_string())
                    .collect();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the group coordinator never loaded");
    }
}

#[tokio::test]
async fn a_tenant_sees_and_uses_only_its_own_names() {
    let broker = TestBroker::start().await;
    let operator = Session::operator(&broker);
    let acme = Session::tenant(&broker, "alice", "acme");

    let created = operator.create_topic("other.metrics").await;
    assert_eq!(created.topics[0].error_code, 0);
    let created = acme.create_topic("metrics").await;
    assert_eq!(created.topics[0].error_code, 0);
    assert_eq!(created.topics[0].name.as_str(), "metrics");
    let acme_id = created.topics[0].topic_id;

    // FindCoordinator creates Kafka's offsets topic; its key comes back as
    // the client sent it.
    let found: FindCoordinatorResponse = acme
        .send(
            ApiKey::FindCoordinator,
            4,
            &FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g")]),
        )
        .await;
    assert_eq!(found.coordinators[0].key.as_str(), "g");

    let everything = operator.all_topics().await;
    let names: Vec<&str> = everything.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec!["__consumer_offsets", "acme.metrics", "other.metrics"]
    );
    let other_id = everything[2].1;
    assert_eq!(
        acme.all_topics().await,
        vec![("metrics".to_owned(), acme_id)]
    );

    // Records go to the internal topic and come back under the tenant's name.
    let request = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name("metrics"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_records(Some(batch(
                    &["a", "b"],
                    common::now_ms(),
                    Compression::None,
                )))])]);
    let produced: ProduceResponse = acme.send(ApiKey::Produce, 9, &request).await;
    assert_eq!(produced.responses[0].name.as_str(), "metrics");
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    let expected = vec![(0, "a".to_owned()), (1, "b".to_owned())];
    assert_eq!(
        acme.fetch_values("metrics").await,
        ("metrics".to_owned(), expected.clone())
    );
    assert_eq!(
        operator.fetch_values("acme.metrics").await,
        ("acme.metrics".to_owned(), expected)
    );

    // Another tenant's topic id is an unknown id, answered as sent.
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic_id(other_id)
            .with_partitions(vec![
                FetchPartition::default().with_partition_max_bytes(1 << 20)
            ])]);
    let fetched: FetchResponse = acme.send(ApiKey::Fetch, 13, &request).await;
    assert_eq!(fetched.responses[0].topic_id, other_id);
    assert_eq!(
        fetched.responses[0].partitions[0].error_code,
        UNKNOWN_TOPIC_ID
    );
    let request =
        MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(None)
            .with_topic_id(other_id)]));
    let described: MetadataResponse = acme.send(ApiKey::Metadata, 12, &request).await;
    assert_eq!(described.topics.len(), 1);
    assert_eq!(described.topics[0].error_code, UNKNOWN_TOPIC_ID);
    assert_eq!(described.topics[0].topic_id, other_id);
    assert!(described.topics[0]
        .name
        .as_ref()
        .is_none_or(|n| n.is_empty()));
    let request = DeleteTopicsRequest::default().with_topics(vec![
        kafka_protocol::messages::delete_topics_request::DeleteTopicState::default()
            .with_topic_id(other_id),
    ]);
    let deleted: DeleteTopicsResponse = acme.send(ApiKey::DeleteTopics, 6, &request).await;
    assert_eq!(deleted.responses[0].error_code, UNKNOWN_TOPIC_ID);
    assert_eq!(deleted.responses[0].topic_id, other_id);
    assert!(operator
        .all_topics()
        .await
        .contains(&("other.metrics".to_owned(), other_id)));

    // A tenant's "other.metrics" is its own.
    let created = acme.create_topic("other.metrics").await;
    assert_eq!(created.topics[0].error_code, 0);
    assert_eq!(created.topics[0].name.as_str(), "other.metrics");
    let names: Vec<String> = operator
        .all_topics()
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names.contains(&"acme.other.metrics".to_owned()),
        "{names:?}"
    );
    let created = acme.create_topic("metrics").await;
    assert_eq!(
        created.topics[0].error_message.as_deref(),
        Some("Topic 'metrics' already exists.")
    );

    // Broker configs are the cluster's, not the tenant's.
    let request = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_BROKER)
            .with_resource_name(s("")),
        DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(s("metrics")),
    ]);
    let configs: DescribeConfigsResponse = acme.send(ApiKey::DescribeConfigs, 4, &request).await;
    let answered: Vec<(i8, &str, i16)> = configs
        .results
        .iter()
        .map(|r| (r.resource_type, r.resource_name.as_str(), r.error_code))
        .collect();
    assert_eq!(
        answered,
        vec![
            (RESOURCE_BROKER, "", CLUSTER_AUTHORIZATION_FAILED),
            (RESOURCE_TOPIC, "metrics", 0)
        ]
    );
    assert!(!configs.results[1].configs.is_empty());
    let configs: DescribeConfigsResponse =
        operator.send(ApiKey::DescribeConfigs, 4, &request).await;
    assert_eq!(configs.results[0].error_code, 0);

    // Groups and committed offsets.
    assert_eq!(operator.commit("other.g", "other.metrics", 5).await, 0);
    assert_eq!(acme.commit("g", "metrics", 1).await, 0);
    assert_eq!(acme.offsets("g").await, vec![("metrics".to_owned(), 1)]);
    assert_eq!(
        operator.offsets("acme.g").await,
        vec![("acme.metrics".to_owned(), 1)]
    );
    let mut all_groups = operator.groups().await;
    all_groups.sort();
    assert_eq!(all_groups, vec!["acme.g", "other.g"]);
    assert_eq!(acme.groups().await, vec!["g"]);

    broker.running.shutdown().await;
}

async fn producer_id_error(session: &Session) -> i16 {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response: InitProducerIdResponse = session.send(ApiKey::InitProducerId, 4, &request).await;
    response.error_code
}

/// KIP-679: a producer id needs WRITE on some topic (or IDEMPOTENT_WRITE on
/// the cluster). A tenant's default rights give it; without them, one ACL
/// letting the user write to one of the tenant's topics is enough.
#[tokio::test]
async fn a_producer_id_needs_the_right_to_write_somewhere() {
    let with_defaults = TestBroker::start().await;
    let alice = Session::tenant(&with_defaults, "alice", "acme");
    assert_eq!(producer_id_error(&alice).await, 0);

    let broker = TestBroker::start_with(|c| c.tenant_default_acls_enable = false).await;
    let bob = Session::tenant(&broker, "bob", "acme");
    assert_eq!(
        producer_id_error(&bob).await,
        ResponseError::ClusterAuthorizationFailed.code()
    );
    // Another tenant's topic does not count, one of its own does.
    for (topic, expected) in [
        (
            "globex.metrics",
            ResponseError::ClusterAuthorizationFailed.code(),
        ),
        ("acme.metrics", 0),
    ] {
        let creation = create_acls_request::AclCreation::default()
            .with_resource_type(2) // TOPIC
            .with_resource_name(StrBytes::from_static_str(topic))
            .with_resource_pattern_type(3) // LITERAL
            .with_principal(StrBytes::from_static_str("User:bob@acme"))
            .with_host(StrBytes::from_static_str("*"))
            .with_operation(4) // WRITE
            .with_permission_type(3); // ALLOW
        let created: CreateAclsResponse = Session::operator(&broker)
            .send(
                ApiKey::CreateAcls,
                3,
                &CreateAclsRequest::default().with_creations(vec![creation]),
            )
            .await;
        assert_eq!(created.results[0].error_code, 0, "{created:?}");
        assert_eq!(
            producer_id_error(&bob).await,
            expected,
            "after WRITE on {topic}"
        );
    }
}
