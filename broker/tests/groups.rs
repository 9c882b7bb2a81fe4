//! Consumer groups and committed offsets through an in-process broker: the
//! classic protocol's request flow and error codes, persistence across a
//! restart, offset expiry and compaction of `__consumer_offsets`.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::{name, Client, TestBroker};
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const MEMBER_ID_REQUIRED: i16 = 79;
const UNKNOWN_MEMBER_ID: i16 = 25;
const ILLEGAL_GENERATION: i16 = 22;
const REBALANCE_IN_PROGRESS: i16 = 27;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const INVALID_TOPIC: i16 = 17;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// A consumer protocol subscription (v0) to `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(topics.len() as i32);
    for t in topics {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1);
    b.freeze()
}

fn join_request(group: &str, member_id: &str, topics: &[&str]) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(subscription(topics))])
}

/// JoinGroup v5 through the member-id-required round; the final response.
async fn join(client: &mut Client, group: &str, topics: &[&str]) -> JoinGroupResponse {
    let first: JoinGroupResponse = client
        .send(ApiKey::JoinGroup, 5, &join_request(group, "", topics))
        .await;
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    assert!(!first.member_id.is_empty());
    client
        .send(
            ApiKey::JoinGroup,
            5,
            &join_request(group, first.member_id.as_str(), topics),
        )
        .await
}

async fn sync(
    client: &mut Client,
    group: &str,
    generation: i32,
    member: &str,
    assignments: &[(&str, &[u8])],
) -> SyncGroupResponse {
    let request = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::copy_from_slice(a))
                })
                .collect(),
        );
    client.send(ApiKey::SyncGroup, 5, &request).await
}

async fn heartbeat(client: &mut Client, group: &str, generation: i32, member: &str) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member));
    let response: HeartbeatResponse = client.send(ApiKey::Heartbeat, 4, &request).await;
    response.error_code
}

async fn commit(
    client: &mut Client,
    group: &str,
    generation: i32,
    member: &str,
    topic: &str,
    offsets: &[(i32, i64)],
) -> Vec<i16> {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(name(topic))
            .with_partitions(
                offsets
                    .iter()
                    .map(|(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                            .with_committed_metadata(Some(s("meta")))
                    })
                    .collect(),
            )]);
    let response: OffsetCommitResponse = client.send(ApiKey::OffsetCommit, 8, &request).await;
    response.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

/// OffsetFetch v8 of all of a group's offsets: (topic, partition, offset).
async fn fetch_offsets(client: &mut Client, group: &str) -> (i16, Vec<(String, i32, i64)>) {
    // Null topics: every committed offset of the group.
    let request =
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(None)]);
    let mut response: OffsetFetchResponse;
    let mut tries = 0;
    loop {
        response = client.send(ApiKey::OffsetFetch, 8, &request).await;
        // Right after a start the coordinator may still be loading.
        if response.groups[0].error_code != COORDINATOR_LOAD_IN_PROGRESS || tries > 100 {
            break;
        }
        tries += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let g = &response.groups[0];
    let mut rows: Vec<(String, i32, i64)> = g
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index, p.committed_offset))
        })
        .collect();
    rows.sort();
    (g.error_code, rows)
}

async fn describe(client: &mut Client, group: &str, version: i16) -> DescribedGroup {
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let mut response: DescribeGroupsResponse =
        client.send(ApiKey::DescribeGroups, version, &request).await;
    response.groups.remove(0)
}

#[tokio::test]
async fn join_sync_heartbeat_commit_and_leave() {
    let broker = TestBroker::start_with(|c| c.group_initial_rebalance_delay_ms = 0).await;
    let mut client = broker.client().await;
    client.create_topic("events", 2).await;

    let found: FindCoordinatorResponse = client
        .send(
            ApiKey::FindCoordinator,
            4,
            &FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g1"), s("g2")]),
        )
        .await;
    assert_eq!(found.coordinators.len(), 2);
    for c in &found.coordinators {
        assert_eq!(c.error_code, 0);
        assert_eq!(c.port, broker.running.kafka_addr().port() as i32);
    }

    let joined = join(&mut client, "g1", &["events"]).await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    let me = joined.member_id.to_string();
    assert_eq!(joined.leader.as_str(), me);
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));

    let synced = sync(&mut client, "g1", 1, &me, &[(&me, b"assignment")]).await;
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"assignment");
    assert_eq!(synced.protocol_name.as_deref(), Some("range"));
    assert_eq!(heartbeat(&mut client, "g1", 1, &me).await, 0);
    assert_eq!(
        heartbeat(&mut client, "g1", 7, &me).await,
        ILLEGAL_GENERATION
    );
    assert_eq!(
        heartbeat(&mut client, "g1", 1, "nobody").await,
        UNKNOWN_MEMBER_ID
    );

    assert_eq!(
        commit(&mut client, "g1", 1, &me, "events", &[(0, 5), (1, 7)]).await,
        vec![0, 0]
    );
    assert_eq!(
        commit(&mut client, "g1", 0, &me, "events", &[(0, 6)]).await,
        vec![ILLEGAL_GENERATION]
    );
    assert_eq!(
        commit(&mut client, "g1", 1, &me, "nope", &[(0, 6)]).await,
        vec![UNKNOWN_TOPIC_OR_PARTITION]
    );
    let (code, rows) = fetch_offsets(&mut client, "g1").await;
    assert_eq!(code, 0);
    assert_eq!(rows, vec![("events".into(), 0, 5), ("events".into(), 1, 7)]);

    let described = describe(&mut client, "g1", 5).await;
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(described.protocol_type.as_str(), "consumer");
    assert_eq!(described.members.len(), 1);
    assert_eq!(&described.members[0].member_assignment[..], b"assignment");

    let listed: ListGroupsResponse = client
        .send(
            ApiKey::ListGroups,
            4,
            &ListGroupsRequest::default().with_states_filter(vec![s("stable")]),
        )
        .await;
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(listed.groups[0].group_id.as_str(), "g1");

    // A non-empty group cannot be deleted, and its subscribed topics'
    // offsets cannot be deleted.
    let deleted: DeleteGroupsResponse = client
        .send(
            ApiKey::DeleteGroups,
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g1"))]),
        )
        .await;
    assert_eq!(deleted.results[0].error_code, NON_EMPTY_GROUP);
    let offset_delete = OffsetDeleteRequest::default()
        .with_group_id(GroupId(s("g1")))
        .with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(name("events"))
            .with_partitions(vec![
                OffsetDeleteRequestPartition::default().with_partition_index(0)
            ])]);
    let response: OffsetDeleteResponse = client.send(ApiKey::OffsetDelete, 0, &offset_delete).await;
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        GROUP_SUBSCRIBED_TO_TOPIC
    );

    let left: LeaveGroupResponse = client
        .send(
            ApiKey::LeaveGroup,
            5,
            &LeaveGroupRequest::default()
                .with_group_id(GroupId(s("g1")))
                .with_members(vec![MemberIdentity::default().with_member_id(s(&me))]),
        )
        .await;
    assert_eq!(left.error_code, 0);
    assert_eq!(left.members[0].error_code, 0);
    assert_eq!(
        describe(&mut client, "g1", 5).await.group_state.as_str(),
        "Empty"
    );

    // Empty now: offsets can be deleted, then the group.
    let response: OffsetDeleteResponse = client.send(ApiKey::OffsetDelete, 0, &offset_delete).await;
    assert_eq!(response.error_code, 0);
    assert_eq!(response.topics[0].partitions[0].error_code, 0);
    let (_, rows) = fetch_offsets(&mut client, "g1").await;
    assert_eq!(rows, vec![("events".into(), 1, 7)]);
    let deleted: DeleteGroupsResponse = client
        .send(
            ApiKey::DeleteGroups,
            2,
            &DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(s("g1")), GroupId(s("missing"))]),
        )
        .await;
    assert_eq!(deleted.results[0].error_code, 0);
    assert_eq!(deleted.results[1].error_code, GROUP_ID_NOT_FOUND);
    assert_eq!(fetch_offsets(&mut client, "g1").await.1, vec![]);
    assert_eq!(
        describe(&mut client, "g1", 5).await.group_state.as_str(),
        "Dead"
    );
    assert_eq!(
        describe(&mut client, "g1", 6).await.error_code,
        GROUP_ID_NOT_FOUND
    );

    // Clients cannot write the internal topic.
    let (code, _) = client
        .produce(
            "__consumer_offsets",
            0,
            common::batch(
                &["x"],
                common::now_ms(),
                kafka_protocol::records::Compression::None,
            ),
            1,
        )
        .await;
    assert_eq!(code, INVALID_TOPIC);
    broker.running.shutdown().await;
}

#[tokio::test]
async fn second_member_triggers_a_rebalance_both_get_answers() {
    let broker = TestBroker::start_with(|c| c.group_initial_rebalance_delay_ms = 0).await;
    let mut a = broker.client().await;
    let mut b = broker.client().await;
    a.create_topic("shared", 2).await;
    let first = join(&mut a, "g", &["shared"]).await;
    let a_id = first.member_id.to_string();
    assert_eq!(
        sync(&mut a, "g", 1, &a_id, &[(&a_id, b"all")])
            .await
            .error_code,
        0
    );

    // b joins: a learns of it from its heartbeat and rejoins; both answers
    // come once both have joined.
    let b_join = tokio::spawn(async move {
        let r = join(&mut b, "g", &["shared"]).await;
        (b, r)
    });
    let mut code = 0;
    for _ in 0..50 {
        code = heartbeat(&mut a, "g", 1, &a_id).await;
        if code == REBALANCE_IN_PROGRESS {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(code, REBALANCE_IN_PROGRESS);
    let rejoined: JoinGroupResponse = a
        .send(ApiKey::JoinGroup, 5, &join_request("g", &a_id, &["shared"]))
        .await;
    let (mut b, b_joined) = b_join.await.unwrap();
    assert_eq!(rejoined.error_code, 0);
    assert_eq!(b_joined.error_code, 0);
    assert_eq!(rejoined.generation_id, 2);
    assert_eq!(b_joined.generation_id, 2);
    // The leader stays the leader and alone gets the member list.
    assert_eq!(rejoined.leader.as_str(), a_id);
    assert_eq!(rejoined.members.len(), 2);
    assert!(b_joined.members.is_empty());
    let b_id = b_joined.member_id.to_string();

    let b_sync = tokio::spawn(async move {
        let r = sync(&mut b, "g", 2, &b_id, &[]).await;
        (b, r)
    });
    let a_synced = sync(
        &mut a,
        "g",
        2,
        &a_id,
        &[(&a_id, b"p0"), (b_joined.member_id.as_str(), b"p1")],
    )
    .await;
    let (_, b_synced) = b_sync.await.unwrap();
    assert_eq!(&a_synced.assignment[..], b"p0");
    assert_eq!(&b_synced.assignment[..], b"p1");
    broker.running.shutdown().await;
}

#[tokio::test]
async fn invalid_session_timeout_is_rejected() {
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    let request = join_request("g", "", &["t"]).with_session_timeout_ms(10);
    let response: JoinGroupResponse = client.send(ApiKey::JoinGroup, 5, &request).await;
    assert_eq!(response.error_code, INVALID_SESSION_TIMEOUT);
    broker.running.shutdown().await;
}

#[tokio::test]
async fn offsets_and_group_metadata_survive_restart() {
    let tweak = |c: &mut metrobus::config::BrokerConfig| c.group_initial_rebalance_delay_ms = 0;
    let broker = TestBroker::start_with(tweak).await;
    let mut client = broker.client().await;
    client.create_topic("durable", 3).await;
    let joined = join(&mut client, "keeper", &["durable"]).await;
    let me = joined.member_id.to_string();
    assert_eq!(
        sync(&mut client, "keeper", 1, &me, &[(&me, b"mine")])
            .await
            .error_code,
        0
    );
    for round in 0..20 {
        let codes = commit(
            &mut client,
            "keeper",
            1,
            &me,
            "durable",
            &[(0, round), (2, round * 2)],
        )
        .await;
        assert_eq!(codes, vec![0, 0]);
    }
    // A group that only stores offsets (generation -1, no member).
    assert_eq!(
        commit(&mut client, "standalone", -1, "", "durable", &[(1, 42)]).await,
        vec![0]
    );
    drop(client);

    let broker = broker.restart(tweak).await;
    let mut client = broker.client().await;
    let (code, rows) = fetch_offsets(&mut client, "keeper").await;
    assert_eq!(code, 0);
    assert_eq!(
        rows,
        vec![("durable".into(), 0, 19), ("durable".into(), 2, 38)]
    );
    assert_eq!(
        fetch_offsets(&mut client, "standalone").await.1,
        vec![("durable".into(), 1, 42)]
    );
    // The group came back Stable with its member and assignment; the
    // member can carry on where it was.
    let described = describe(&mut client, "keeper", 5).await;
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(described.members[0].member_id.as_str(), me);
    assert_eq!(&described.members[0].member_assignment[..], b"mine");
    assert_eq!(heartbeat(&mut client, "keeper", 1, &me).await, 0);
    broker.running.shutdown().await;
}

#[tokio::test]
async fn expired_offsets_and_empty_groups_are_removed() {
    let broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client.create_topic("old", 1).await;
    assert_eq!(
        commit(&mut client, "forgotten", -1, "", "old", &[(0, 3)]).await,
        vec![0]
    );
    let groups = broker.running.broker.groups.clone();
    // Not yet: retention is a week.
    groups.expire_offsets(common::now_ms()).await;
    assert_eq!(fetch_offsets(&mut client, "forgotten").await.1.len(), 1);
    groups
        .expire_offsets(common::now_ms() + 8 * 24 * 3600 * 1000)
        .await;
    assert_eq!(fetch_offsets(&mut client, "forgotten").await.1, vec![]);
    let listed: ListGroupsResponse = client
        .send(ApiKey::ListGroups, 4, &ListGroupsRequest::default())
        .await;
    assert!(listed.groups.is_empty(), "{:?}", listed.groups);
    // And it stays gone after a restart (the tombstones were written).
    drop(client);
    drop(groups);
    let broker = broker.restart(|_| {}).await;
    let mut client = broker.client().await;
    assert_eq!(fetch_offsets(&mut client, "forgotten").await.1, vec![]);
    broker.running.shutdown().await;
}

#[tokio::test]
async fn offsets_topic_is_compacted_and_state_survives() {
    let tweak = |c: &mut metrobus::config::BrokerConfig| {
        c.offsets_topic_num_partitions = 1;
        c.offsets_topic_segment_bytes = 4096;
    };
    let broker = TestBroker::start_with(tweak).await;
    let mut client = broker.client().await;
    client.create_topic("busy", 4).await;
    for round in 0..200i64 {
        let offsets: Vec<(i32, i64)> = (0..4).map(|p| (p, round * 10 + i64::from(p))).collect();
        assert_eq!(
            commit(&mut client, "committer", -1, "", "busy", &offsets).await,
            vec![0; 4]
        );
    }
    let b = broker.running.broker.clone();
    let image = b.image();
    let topic = image.topic("__consumer_offsets").unwrap().clone();
    let log = b.replicas.logs().get(topic.id, 0).unwrap();
    let before = log.size_bytes();
    assert!(before > 4096, "{before} bytes written");
    b.groups.compact().await;
    let after = log.size_bytes();
    assert!(after < 4096, "compacted to {after} bytes");
    assert!(log.offsets().log_start_offset > 0);
    let want: Vec<(String, i32, i64)> = (0..4)
        .map(|p| ("busy".to_owned(), p, 1990 + i64::from(p)))
        .collect();
    assert_eq!(fetch_offsets(&mut client, "committer").await.1, want);
    drop(client);
    drop(b);
    let broker = broker.restart(tweak).await;
    let mut client = broker.client().await;
    assert_eq!(fetch_offsets(&mut client, "committer").await.1, want);
    broker.running.shutdown().await;
}
