//! Consumer groups through librdkafka (issue 3): three members share six
//! partitions and get every record once; a member that leaves and one that
//! dies (a kcat process killed with SIGKILL) hand their partitions over at
//! the last commit; cooperative-sticky rebalances incrementally; a static
//! member restarts without a rebalance; a new member resumes at the committed
//! offset, also after a broker `kill -9`; and the group admin APIs.
//!
//! Members poll from the test thread in turn ([`poll_until`]); rebalance
//! callbacks are recorded per member. `RDKAFKA_DEBUG=cgrp` prints
//! librdkafka's group debug log.

mod group_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use group_support::{
    assert_exactly_once, assignment_is, committed, end_offsets, kcat_bin, metric, offsets_observer,
    poll_for, poll_until, produce_keyed, start_group_broker, Delivery, KcatMember, Member,
    MemberOptions, Produced, RebalanceEvent, GROUP_TIMEOUT, SESSION_TIMEOUT_MS,
};
use protocol_tests::rdkafka::admin::AdminOptions;
use protocol_tests::rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, RebalanceProtocol};
use protocol_tests::rdkafka::error::RDKafkaErrorCode;
use protocol_tests::rdkafka::{Offset, TopicPartitionList};
use protocol_tests::{create_topic, unique_name, wait_until, OP_TIMEOUT};

/// A group as DescribeGroups shows it (through `fetch_group_list`).
#[derive(Debug)]
struct GroupView {
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<MemberView>,
}

#[derive(Debug)]
struct MemberView {
    id: String,
    client_id: String,
    client_host: String,
    assignment: Vec<u8>,
}

/// Describes `group`; `None` when the answer does not include it.
fn group_view(describer: &BaseConsumer, group: &str) -> anyhow::Result<Option<GroupView>> {
    let list = describer.fetch_group_list(Some(group), OP_TIMEOUT)?;
    Ok(list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .map(|g| GroupView {
            state: g.state().to_owned(),
            protocol_type: g.protocol_type().to_owned(),
            protocol: g.protocol().to_owned(),
            members: g
                .members()
                .iter()
                .map(|m| MemberView {
                    id: m.id().to_owned(),
                    client_id: m.client_id().to_owned(),
                    client_host: m.client_host().to_owned(),
                    assignment: m.assignment().unwrap_or_default().to_vec(),
                })
                .collect(),
        }))
}

/// Names of every group ListGroups returns.
fn listed_groups(describer: &BaseConsumer) -> Vec<String> {
    describer
        .fetch_group_list(None, OP_TIMEOUT)
        .expect("listing groups")
        .groups()
        .iter()
        .map(|g| g.name().to_owned())
        .collect()
}

/// Waits until the group is Stable with `members` members.
fn wait_stable(members: &mut [Member], describer: &BaseConsumer, group: &str, count: usize) {
    poll_until(
        members,
        &format!("group {group} Stable with {count} members"),
        GROUP_TIMEOUT,
        |_| {
            matches!(group_view(describer, group),
                Ok(Some(v)) if v.state == "Stable" && v.members.len() == count)
        },
    )
    .unwrap();
}

fn since(deliveries: &[Delivery], from: usize) -> Vec<Delivery> {
    deliveries[from.min(deliveries.len())..].to_vec()
}

/// Whether `deliveries` include every record of `expected`.
fn covers(deliveries: &[Delivery], expected: &Produced) -> bool {
    let got: BTreeSet<(i32, i64)> = deliveries.iter().map(|d| (d.partition, d.offset)).collect();
    expected.keys().all(|k| got.contains(k))
}

fn only_partitions(produced: &Produced, partitions: &BTreeSet<i32>) -> Produced {
    produced
        .iter()
        .filter(|((p, _), _)| partitions.contains(p))
        .map(|(k, v)| (*k, v.clone()))
        .collect()
}

fn from_offsets(produced: &Produced, from: &BTreeMap<i32, i64>) -> Produced {
    produced
        .iter()
        .filter(|((p, o), _)| from.get(p).is_some_and(|f| o >= f))
        .map(|(k, v)| (*k, v.clone()))
        .collect()
}

fn merge(parts: &[&Produced]) -> Produced {
    parts
        .iter()
        .flat_map(|p| p.iter())
        .map(|(k, v)| (*k, v.clone()))
        .collect()
}

fn total_delivered(members: &[Member]) -> Vec<Delivery> {
    members
        .iter()
        .flat_map(|m| m.deliveries.iter().cloned())
        .collect()
}

/// Drops a consumer on another thread and waits for it at most `timeout`
/// (librdkafka's close can wait for an unreachable coordinator).
fn drop_bounded<T: Send + 'static>(value: T, timeout: Duration) {
    let (tx, rx) = mpsc::channel();
    let _detached = std::thread::spawn(move || {
        drop(value);
        let _ = tx.send(());
    });
    if rx.recv_timeout(timeout).is_err() {
        eprintln!("closing a consumer took longer than {timeout:?}; left behind");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_share_six_partitions_exactly_once() {
    let mut broker = start_group_broker(&[]);
    let topic = unique_name("group-three");
    create_topic(&broker.admin(), &topic, 6, &[]).await.unwrap();
    let group = unique_name("three");
    let mut members: Vec<Member> = (0..3)
        .map(|i| {
            let name = format!("member-{i}");
            Member::join(&broker, &group, &topic, &name, MemberOptions::default())
        })
        .collect();
    poll_until(
        &mut members,
        "3 members with 2 partitions each",
        GROUP_TIMEOUT,
        |ms| assignment_is(ms, 6, &[2, 2, 2]),
    )
    .unwrap();
    let describer = broker.consumer(&[]);
    wait_stable(&mut members, &describer, &group, 3);
    let view = group_view(&describer, &group).unwrap().unwrap();
    assert_eq!(view.protocol_type, "consumer", "{view:?}");
    assert_eq!(view.protocol, "range", "{view:?}");
    let client_ids: BTreeSet<&str> = view.members.iter().map(|m| m.client_id.as_str()).collect();
    assert_eq!(
        client_ids,
        BTreeSet::from(["member-0", "member-1", "member-2"]),
        "{view:?}"
    );
    let events_when_stable: Vec<usize> = members.iter().map(|m| m.events().len()).collect();
    let assignments: Vec<BTreeSet<i32>> = members.iter().map(Member::assignment).collect();

    let produced = produce_keyed(&broker.producer(&[]), &topic, "value", 0..3000).await;
    assert_eq!(
        end_offsets(&produced).len(),
        6,
        "records in every partition"
    );
    poll_until(&mut members, "all 3000 records", GROUP_TIMEOUT, |ms| {
        covers(&total_delivered(ms), &produced)
    })
    .unwrap();
    // A duplicate (a rebalance that rewinds) would arrive now.
    poll_for(&mut members, Duration::from_millis(500)).unwrap();

    for (i, m) in members.iter().enumerate() {
        let events = m.events();
        assert_eq!(
            events.len(),
            events_when_stable[i],
            "{}: rebalanced while consuming: {:?}",
            m.name,
            &events[events_when_stable[i]..]
        );
        assert_eq!(m.assignment(), assignments[i], "{}: assignment", m.name);
        assert_exactly_once(
            &m.name,
            &m.deliveries,
            &only_partitions(&produced, &assignments[i]),
        );
        for pair in m.deliveries.windows(2) {
            if pair[0].partition == pair[1].partition {
                assert!(
                    pair[0].offset < pair[1].offset,
                    "{}: order {pair:?}",
                    m.name
                );
            }
        }
    }
    assert_exactly_once("the group", &total_delivered(&members), &produced);
    drop(members);
    broker.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_leave_or_die_hand_over_at_the_last_commit() {
    let _ = kcat_bin();
    let broker = start_group_broker(&[]);
    let topic = unique_name("group-handover");
    create_topic(&broker.admin(), &topic, 6, &[]).await.unwrap();
    let group = unique_name("handover");
    let producer = broker.producer(&[]);
    let observer = offsets_observer(&broker, &group);
    let describer = broker.consumer(&[]);

    // The survivor commits what it processed whenever partitions are revoked
    // (an eager rebalance revokes all of them), so that after a rebalance it
    // re-reads nothing; the leaver commits only by hand.
    let survivor_opts = MemberOptions {
        config: Vec::new(),
        commit_on_revoke: true,
    };
    let mut members = vec![
        Member::join(&broker, &group, &topic, "leaver", MemberOptions::default()),
        Member::join(&broker, &group, &topic, "survivor", survivor_opts),
    ];
    let mut kcat = KcatMember::start(&broker, &group, &topic, &[]);
    poll_until(
        &mut members,
        "leaver and survivor with 2 partitions each (kcat the other 2)",
        GROUP_TIMEOUT,
        |ms| {
            let (a, b) = (ms[0].assignment(), ms[1].assignment());
            a.len() == 2 && b.len() == 2 && a.is_disjoint(&b)
        },
    )
    .unwrap();
    wait_stable(&mut members, &describer, &group, 3);
    kcat.assert_running();
    let leaver_parts = members[0].assignment();
    let survivor_parts = members[1].assignment();
    let kcat_parts: BTreeSet<i32> = (0..6)
        .filter(|p| !leaver_parts.contains(p) && !survivor_parts.contains(p))
        .collect();

    // Phase 1: everyone consumes its share.
    let phase1 = produce_keyed(&producer, &topic, "one", 0..600).await;
    let ends1 = end_offsets(&phase1);
    assert_eq!(ends1.len(), 6, "records in every partition");
    poll_until(
        &mut members,
        "phase 1 consumed by all three members",
        GROUP_TIMEOUT,
        |ms| {
            covers(&ms[0].deliveries, &only_partitions(&phase1, &leaver_parts))
                && covers(
                    &ms[1].deliveries,
                    &only_partitions(&phase1, &survivor_parts),
                )
                && covers(&kcat.deliveries(), &only_partitions(&phase1, &kcat_parts))
        },
    )
    .unwrap();
    // The leaver processed everything but commits only half of each
    // partition: the rest must be delivered again, nothing before it.
    let leaver_commit: BTreeMap<i32, i64> =
        leaver_parts.iter().map(|p| (*p, ends1[p] / 2)).collect();
    members[0].commit(&leaver_commit).unwrap();
    members[1].commit_processed().unwrap();
    wait_until(
        "kcat's auto-commits reach its partitions' ends",
        GROUP_TIMEOUT,
        || {
            let c = committed(&observer, &topic, 6)?;
            Ok(kcat_parts.iter().all(|p| c[p] == Some(ends1[p])))
        },
    )
    .unwrap();
    let c = committed(&observer, &topic, 6).unwrap();
    for p in 0..6 {
        let want = leaver_commit.get(&p).copied().unwrap_or(ends1[&p]);
        assert_eq!(
            c[&p],
            Some(want),
            "committed offset of partition {p}: {c:?}"
        );
    }

    // Phase 2: the leaver closes (LeaveGroup); the others take over its
    // partitions from its commit.
    let leaver = members.remove(0);
    let leaver_deliveries = leaver.deliveries.clone();
    let left_at = Instant::now();
    drop(leaver);
    let survivor_mark = members[0].deliveries.len();
    let kcat_mark = kcat.deliveries().len();
    let redo = from_offsets(&phase1, &leaver_commit);
    poll_until(
        &mut members,
        "survivor and kcat re-read the leaver's partitions from its commit",
        GROUP_TIMEOUT,
        |ms| {
            let mut after = since(&ms[0].deliveries, survivor_mark);
            after.extend(since(&kcat.deliveries(), kcat_mark));
            ms[0].assignment().len() == 3 && covers(&after, &redo)
        },
    )
    .unwrap();
    eprintln!("takeover after a leave: {:?}", left_at.elapsed());
    poll_for(&mut members, Duration::from_millis(500)).unwrap();
    kcat.assert_running();
    let mut after_leave = since(&members[0].deliveries, survivor_mark);
    after_leave.extend(since(&kcat.deliveries(), kcat_mark));
    assert_exactly_once("records delivered after the leave", &after_leave, &redo);

    members[0].commit_processed().unwrap();
    wait_until(
        "every partition committed at its end",
        GROUP_TIMEOUT,
        || {
            let c = committed(&observer, &topic, 6)?;
            Ok((0..6).all(|p| c[&p] == Some(ends1[&p])))
        },
    )
    .unwrap();

    // Phase 3: kcat dies without a LeaveGroup; after its session times out
    // the survivor owns everything and starts at kcat's commits.
    let survivor_mark = members[0].deliveries.len();
    let kcat_before_kill = kcat.deliveries();
    kcat.kill9();
    let killed_at = Instant::now();
    let phase2 = produce_keyed(&producer, &topic, "two", 600..1200).await;
    poll_until(
        &mut members,
        "the survivor owns all partitions and has every phase-2 record",
        GROUP_TIMEOUT + Duration::from_millis(SESSION_TIMEOUT_MS),
        |ms| {
            ms[0].assignment().len() == 6
                && covers(&since(&ms[0].deliveries, survivor_mark), &phase2)
        },
    )
    .unwrap();
    eprintln!(
        "takeover after a crash: {:?} (session timeout {SESSION_TIMEOUT_MS} ms)",
        killed_at.elapsed()
    );
    poll_for(&mut members, Duration::from_millis(500)).unwrap();
    assert_exactly_once(
        "survivor after the crash",
        &since(&members[0].deliveries, survivor_mark),
        &phase2,
    );

    // Over the whole run: nothing lost, and only what the leaver had not
    // committed was delivered twice.
    let mut all = leaver_deliveries;
    all.extend(members[0].deliveries.iter().cloned());
    all.extend(kcat_before_kill);
    let everything = merge(&[&phase1, &phase2]);
    assert!(covers(&all, &everything), "records lost");
    let mut count: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for d in &all {
        *count.entry((d.partition, d.offset)).or_default() += 1;
    }
    for ((p, o), n) in count {
        if n > 1 {
            assert!(
                n == 2
                    && leaver_commit
                        .get(&p)
                        .is_some_and(|c| o >= *c && o < ends1[&p]),
                "{p}/{o} delivered {n} times; only the leaver's uncommitted records may repeat"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_rebalances_incrementally() {
    let broker = start_group_broker(&[]);
    let topic = unique_name("group-coop");
    create_topic(&broker.admin(), &topic, 6, &[]).await.unwrap();
    let group = unique_name("coop");
    let producer = broker.producer(&[]);
    let opts = || MemberOptions {
        config: vec![("partition.assignment.strategy", "cooperative-sticky")],
        commit_on_revoke: true,
    };
    let mut members = vec![Member::join(&broker, &group, &topic, "first", opts())];
    poll_until(
        &mut members,
        "the first member owns all 6",
        GROUP_TIMEOUT,
        |ms| assignment_is(ms, 6, &[6]),
    )
    .unwrap();
    assert!(
        matches!(
            members[0].consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        ),
        "librdkafka uses the cooperative protocol"
    );
    let before = produce_keyed(&producer, &topic, "before", 0..1000).await;
    poll_until(
        &mut members,
        "records before the join",
        GROUP_TIMEOUT,
        |ms| covers(&ms[0].deliveries, &before),
    )
    .unwrap();
    members[0].commit_processed().unwrap();

    // Records keep arriving while the second member joins; the first
    // commits what it processed of the partitions it gives up.
    members.push(Member::join(&broker, &group, &topic, "second", opts()));
    let during = {
        let producer = producer.clone();
        let topic = topic.clone();
        tokio::spawn(async move { produce_keyed(&producer, &topic, "during", 1000..2000).await })
    };
    poll_until(&mut members, "3 + 3 partitions", GROUP_TIMEOUT, |ms| {
        assignment_is(ms, 6, &[3, 3])
    })
    .unwrap();
    let during = during.await.unwrap();
    let after = produce_keyed(&producer, &topic, "after", 2000..3000).await;
    let all = merge(&[&before, &during, &after]);
    poll_until(&mut members, "every record", GROUP_TIMEOUT, |ms| {
        covers(&total_delivered(ms), &all)
    })
    .unwrap();
    poll_for(&mut members, Duration::from_millis(500)).unwrap();

    for m in &members {
        assert!(
            m.revoke_commit_errors().is_empty(),
            "{}: commit in the revoke callback failed: {:?}",
            m.name,
            m.revoke_commit_errors()
        );
    }
    let first_events = members[0].events();
    let second_events = members[1].events();
    let kept = members[0].assignment();
    let moved = members[1].assignment();
    assert_eq!(
        first_events.first(),
        Some(&RebalanceEvent::Assign((0..6).collect())),
        "first: {first_events:?}"
    );
    // Replay the first member's callbacks: it never lost all its partitions
    // and gave up exactly what the second got, nothing it kept.
    let mut owned = BTreeSet::new();
    let mut revoked = BTreeSet::new();
    for (i, e) in first_events.iter().enumerate() {
        match e {
            RebalanceEvent::Assign(ps) => owned.extend(ps.iter().copied()),
            RebalanceEvent::Revoke(ps) => {
                owned.retain(|p| !ps.contains(p));
                revoked.extend(ps.iter().copied());
                assert!(
                    !owned.is_empty(),
                    "first member lost everything: {first_events:?}"
                );
            }
            RebalanceEvent::Error(err) => panic!("first: rebalance error {err}"),
        }
        if i > 0 {
            assert!(
                owned.len() >= 3,
                "first member fell below 3: {first_events:?}"
            );
        }
    }
    assert_eq!(owned, kept, "first: replayed callbacks vs assignment");
    assert_eq!(
        revoked, moved,
        "first gave up exactly the second's partitions: {first_events:?}"
    );
    let mut second_owned = BTreeSet::new();
    for e in &second_events {
        match e {
            RebalanceEvent::Assign(ps) => second_owned.extend(ps.iter().copied()),
            other => panic!("second: unexpected {other:?} in {second_events:?}"),
        }
    }
    assert_eq!(second_owned, moved, "second: {second_events:?}");
    assert_exactly_once("the group", &total_delivered(&members), &all);
    assert!(
        members[1]
            .deliveries
            .iter()
            .all(|d| !before.contains_key(&(d.partition, d.offset))),
        "the second member re-read records the first had committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_member_restart_causes_no_rebalance() {
    let broker = start_group_broker(&[]);
    let topic = unique_name("group-static");
    create_topic(&broker.admin(), &topic, 6, &[]).await.unwrap();
    let group = unique_name("static");
    let producer = broker.producer(&[]);
    let describer = broker.consumer(&[]);
    let opts = |id: &'static str| MemberOptions {
        config: vec![("group.instance.id", id)],
        commit_on_revoke: false,
    };
    let mut members = vec![
        Member::join(&broker, &group, &topic, "static-a", opts("instance-a")),
        Member::join(&broker, &group, &topic, "static-b", opts("instance-b")),
    ];
    poll_until(&mut members, "3 + 3 partitions", GROUP_TIMEOUT, |ms| {
        assignment_is(ms, 6, &[3, 3])
    })
    .unwrap();
    wait_stable(&mut members, &describer, &group, 2);
    let a_parts = members[0].assignment();
    let b_parts = members[1].assignment();
    let phase1 = produce_keyed(&producer, &topic, "one", 0..600).await;
    poll_until(&mut members, "phase 1", GROUP_TIMEOUT, |ms| {
        covers(&total_delivered(ms), &phase1)
    })
    .unwrap();
    members[0].commit_processed().unwrap();
    members[1].commit_processed().unwrap();
    let rebalances = metric(&broker, "metrobus_group_rebalances_total").unwrap();
    assert!(rebalances >= 1.0, "forming the group counted no rebalance");
    let b_events = members[1].events().len();
    let b_mark = members[1].deliveries.len();

    // A static member closes without LeaveGroup and comes back with the same
    // instance id well within its session timeout.
    let old = members.remove(0);
    let restarted_at = Instant::now();
    drop(old);
    members.insert(
        0,
        Member::join(
            &broker,
            &group,
            &topic,
            "static-a-again",
            opts("instance-a"),
        ),
    );
    poll_until(
        &mut members,
        "the restarted member gets its old partitions back",
        Duration::from_millis(SESSION_TIMEOUT_MS),
        |ms| ms[0].assignment() == a_parts,
    )
    .unwrap();
    eprintln!("static member back after {:?}", restarted_at.elapsed());
    let phase2 = produce_keyed(&producer, &topic, "two", 600..1200).await;
    poll_until(&mut members, "phase 2", GROUP_TIMEOUT, |ms| {
        let mut got = ms[0].deliveries.clone();
        got.extend(since(&ms[1].deliveries, b_mark));
        covers(&got, &phase2)
    })
    .unwrap();
    poll_for(&mut members, Duration::from_millis(500)).unwrap();

    let events = members[1].events();
    assert_eq!(
        events.len(),
        b_events,
        "the other member saw a rebalance: {:?}",
        &events[b_events..]
    );
    assert_eq!(
        metric(&broker, "metrobus_group_rebalances_total").unwrap(),
        rebalances,
        "metrobus_group_rebalances_total moved"
    );
    assert_exactly_once(
        "restarted static member",
        &members[0].deliveries,
        &only_partitions(&phase2, &a_parts),
    );
    assert_exactly_once(
        "other static member",
        &since(&members[1].deliveries, b_mark),
        &only_partitions(&phase2, &b_parts),
    );
    let view = group_view(&describer, &group).unwrap().unwrap();
    assert_eq!(view.state, "Stable", "{view:?}");
    assert_eq!(view.members.len(), 2, "{view:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_member_resumes_after_the_committed_offset() {
    let broker = start_group_broker(&[]);
    let topic = unique_name("group-resume");
    create_topic(&broker.admin(), &topic, 3, &[]).await.unwrap();
    let group = unique_name("resume");
    let produced = produce_keyed(&broker.producer(&[]), &topic, "value", 0..300).await;
    let ends = end_offsets(&produced);

    let mut first = vec![Member::join(
        &broker,
        &group,
        &topic,
        "first",
        MemberOptions::default(),
    )];
    poll_until(&mut first, "every record", GROUP_TIMEOUT, |ms| {
        covers(&ms[0].deliveries, &produced)
    })
    .unwrap();
    let marks: BTreeMap<i32, i64> = ends.iter().map(|(p, e)| (*p, e / 3)).collect();
    let mut tpl = TopicPartitionList::new();
    for (p, o) in &marks {
        tpl.add_partition_offset(&topic, *p, Offset::Offset(*o))
            .unwrap();
        tpl.find_partition(&topic, *p)
            .unwrap()
            .set_metadata(format!("checkpoint of {p}"));
    }
    first[0].consumer.commit(&tpl, CommitMode::Sync).unwrap();
    drop(first);

    let observer = offsets_observer(&broker, &group);
    let mut query = TopicPartitionList::new();
    for p in 0..3 {
        let _ = query.add_partition(&topic, p);
    }
    let got = observer.committed_offsets(query, OP_TIMEOUT).unwrap();
    for e in got.elements() {
        assert_eq!(
            e.offset(),
            Offset::Offset(marks[&e.partition()]),
            "partition {}",
            e.partition()
        );
        assert_eq!(e.metadata(), format!("checkpoint of {}", e.partition()));
    }

    let mut second = vec![Member::join(
        &broker,
        &group,
        &topic,
        "second",
        MemberOptions::default(),
    )];
    let expected = from_offsets(&produced, &marks);
    poll_until(
        &mut second,
        "records after the commit",
        GROUP_TIMEOUT,
        |ms| covers(&ms[0].deliveries, &expected),
    )
    .unwrap();
    poll_for(&mut second, Duration::from_millis(500)).unwrap();
    assert_exactly_once("second member", &second[0].deliveries, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_kill9() {
    let mut broker = start_group_broker(&[]);
    let topic = unique_name("group-kill9");
    create_topic(&broker.admin(), &topic, 3, &[]).await.unwrap();
    let produced = produce_keyed(&broker.producer(&[]), &topic, "value", 0..300).await;
    let ends = end_offsets(&produced);

    // A subscribed member commits and leaves (the group is Empty with
    // offsets); a standalone consumer commits for a second group (the
    // AlterConsumerGroupOffsets form: no generation, no member) and the
    // broker is killed right after that commit is acknowledged.
    let member_group = unique_name("kill9-member");
    let mut member = vec![Member::join(
        &broker,
        &member_group,
        &topic,
        "member",
        MemberOptions::default(),
    )];
    poll_until(&mut member, "every record", GROUP_TIMEOUT, |ms| {
        covers(&ms[0].deliveries, &produced)
    })
    .unwrap();
    let member_marks: BTreeMap<i32, i64> = ends.iter().map(|(p, e)| (*p, e / 2)).collect();
    member[0].commit(&member_marks).unwrap();
    drop(member);

    let simple_group = unique_name("kill9-simple");
    let simple = offsets_observer(&broker, &simple_group);
    let simple_marks: BTreeMap<i32, i64> = ends.iter().map(|(p, e)| (*p, e / 4)).collect();
    let mut tpl = TopicPartitionList::new();
    for (p, o) in &simple_marks {
        tpl.add_partition_offset(&topic, *p, Offset::Offset(*o))
            .unwrap();
    }
    simple.commit(&tpl, CommitMode::Sync).unwrap();
    broker.kill9();
    broker.restart().unwrap();
    drop_bounded(simple, Duration::from_secs(10));

    let as_committed = |m: &BTreeMap<i32, i64>| -> BTreeMap<i32, Option<i64>> {
        m.iter().map(|(p, o)| (*p, Some(*o))).collect()
    };
    let observer = offsets_observer(&broker, &member_group);
    assert_eq!(
        committed(&observer, &topic, 3).unwrap(),
        as_committed(&member_marks),
        "member group's offsets after kill -9"
    );
    let observer = offsets_observer(&broker, &simple_group);
    assert_eq!(
        committed(&observer, &topic, 3).unwrap(),
        as_committed(&simple_marks),
        "standalone group's offsets after kill -9"
    );
    let describer = broker.consumer(&[]);
    let listed = listed_groups(&describer);
    assert!(
        listed.contains(&member_group),
        "{member_group} not listed: {listed:?}"
    );
    assert!(
        listed.contains(&simple_group),
        "{simple_group} not listed: {listed:?}"
    );
    let view = group_view(&describer, &member_group).unwrap().unwrap();
    assert_eq!(view.state, "Empty", "{view:?}");

    let mut again = vec![Member::join(
        &broker,
        &member_group,
        &topic,
        "again",
        MemberOptions::default(),
    )];
    let expected = from_offsets(&produced, &member_marks);
    poll_until(
        &mut again,
        "records after the commit",
        GROUP_TIMEOUT,
        |ms| covers(&ms[0].deliveries, &expected),
    )
    .unwrap();
    poll_for(&mut again, Duration::from_millis(500)).unwrap();
    assert_exactly_once("member after the restart", &again[0].deliveries, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_lists_describes_alters_and_deletes_groups() {
    let broker = start_group_broker(&[]);
    let admin = broker.admin();
    let topic = unique_name("group-admin");
    create_topic(&admin, &topic, 4, &[]).await.unwrap();
    let group = unique_name("admin");
    let produced = produce_keyed(&broker.producer(&[]), &topic, "value", 0..200).await;
    let ends = end_offsets(&produced);
    let describer = broker.consumer(&[]);
    let observer = offsets_observer(&broker, &group);

    let mut members = vec![
        Member::join(&broker, &group, &topic, "admin-0", MemberOptions::default()),
        Member::join(&broker, &group, &topic, "admin-1", MemberOptions::default()),
    ];
    poll_until(
        &mut members,
        "2 + 2 partitions, each member with all records of its own",
        GROUP_TIMEOUT,
        |ms| {
            assignment_is(ms, 4, &[2, 2])
                && ms
                    .iter()
                    .all(|m| covers(&m.deliveries, &only_partitions(&produced, &m.assignment())))
        },
    )
    .unwrap();
    for m in &members {
        m.commit_processed().unwrap();
    }
    wait_stable(&mut members, &describer, &group, 2);

    // ListGroups + DescribeGroups.
    let listed = listed_groups(&describer);
    assert!(listed.contains(&group), "{group} not listed: {listed:?}");
    let view = group_view(&describer, &group).unwrap().unwrap();
    assert_eq!(
        (view.protocol_type.as_str(), view.protocol.as_str()),
        ("consumer", "range")
    );
    let ids: BTreeSet<&str> = view.members.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), 2, "distinct member ids: {view:?}");
    for m in &view.members {
        assert!(m.client_id.starts_with("admin-"), "{view:?}");
        assert!(!m.client_host.is_empty(), "client host: {view:?}");
        assert!(!m.assignment.is_empty(), "member assignment: {view:?}");
    }

    // OffsetFetch of the whole group.
    let as_committed: BTreeMap<i32, Option<i64>> =
        ends.iter().map(|(p, e)| (*p, Some(*e))).collect();
    assert_eq!(committed(&observer, &topic, 4).unwrap(), as_committed);

    // A group with members cannot be deleted.
    let opts = AdminOptions::new().operation_timeout(Some(OP_TIMEOUT));
    let res = admin.delete_groups(&[group.as_str()], &opts).await.unwrap();
    assert_eq!(
        res,
        vec![Err((group.clone(), RDKafkaErrorCode::NonEmptyGroup))]
    );

    drop(members);
    wait_until("group Empty after both members left", GROUP_TIMEOUT, || {
        Ok(group_view(&describer, &group)?
            .is_some_and(|v| v.state == "Empty" && v.members.is_empty()))
    })
    .unwrap();

    // Altering offsets of an empty group: the admin form of OffsetCommit
    // (no generation, no member id), as a standalone consumer sends it.
    let mut tpl = TopicPartitionList::new();
    for p in 0..4 {
        tpl.add_partition_offset(&topic, p, Offset::Offset(1))
            .unwrap();
    }
    observer.commit(&tpl, CommitMode::Sync).unwrap();
    let altered: BTreeMap<i32, Option<i64>> = (0..4).map(|p| (p, Some(1))).collect();
    assert_eq!(committed(&observer, &topic, 4).unwrap(), altered);

    let unknown = unique_name("no-such-group");
    let res = admin
        .delete_groups(&[group.as_str(), unknown.as_str()], &opts)
        .await
        .unwrap();
    assert_eq!(
        res,
        vec![
            Ok(group.clone()),
            Err((unknown.clone(), RDKafkaErrorCode::GroupIdNotFound))
        ]
    );
    let none: BTreeMap<i32, Option<i64>> = (0..4).map(|p| (p, None)).collect();
    assert_eq!(
        committed(&observer, &topic, 4).unwrap(),
        none,
        "offsets after DeleteGroups"
    );
    let listed = listed_groups(&describer);
    assert!(!listed.contains(&group), "{group} still listed: {listed:?}");
    let view = group_view(&describer, &group).unwrap();
    assert!(
        view.as_ref()
            .is_none_or(|v| v.state == "Dead" && v.members.is_empty()),
        "deleted group described as {view:?}"
    );
}
