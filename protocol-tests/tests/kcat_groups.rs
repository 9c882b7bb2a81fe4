//! kcat's balanced consumer (`kcat -G`, librdkafka 2.0.2 in Debian): one
//! member consumes a whole topic and commits; after it exits, two members
//! share the topic, resume at those commits and get every new record once.

mod group_support;

use std::collections::BTreeSet;

use group_support::{
    assert_exactly_once, committed, end_offsets, kcat_bin, offsets_observer, produce_keyed,
    start_group_broker, Delivery, KcatMember, Produced, GROUP_TIMEOUT,
};
use protocol_tests::rdkafka::consumer::Consumer;
use protocol_tests::{create_topic, unique_name, wait_until, OP_TIMEOUT};

/// The state and member count DescribeGroups reports for `group`.
fn group_state(
    broker: &protocol_tests::BrokerProcess,
    group: &str,
) -> anyhow::Result<(String, usize)> {
    let list = broker
        .consumer(&[])
        .fetch_group_list(Some(group), OP_TIMEOUT)?;
    let g = list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .ok_or_else(|| anyhow::anyhow!("group {group} not described"))?;
    Ok((g.state().to_owned(), g.members().len()))
}

fn covers(deliveries: &[Delivery], expected: &Produced) -> bool {
    let got: BTreeSet<(i32, i64)> = deliveries.iter().map(|d| (d.partition, d.offset)).collect();
    expected.keys().all(|k| got.contains(k))
}

fn all_committed(
    observer: &protocol_tests::rdkafka::consumer::BaseConsumer,
    topic: &str,
    produced: &Produced,
) -> anyhow::Result<bool> {
    let ends = end_offsets(produced);
    let c = committed(observer, topic, 3)?;
    Ok(ends.iter().all(|(p, e)| c[p] == Some(*e)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_balanced_consumer_consumes_and_commits() {
    let _ = kcat_bin();
    let mut broker = start_group_broker(&[]);
    let topic = unique_name("kcat-group");
    create_topic(&broker.admin(), &topic, 3, &[]).await.unwrap();
    let group = unique_name("kcat-group");
    let producer = broker.producer(&[]);
    let observer = offsets_observer(&broker, &group);
    let first = produce_keyed(&producer, &topic, "first", 0..300).await;
    assert_eq!(end_offsets(&first).len(), 3, "records in every partition");

    // One member: the whole topic, then its auto-commits reach the end.
    let mut solo = KcatMember::start(&broker, &group, &topic, &[]);
    wait_until("kcat -G prints every record", GROUP_TIMEOUT, || {
        solo.assert_running();
        Ok(covers(&solo.deliveries(), &first))
    })
    .unwrap();
    wait_until("kcat's commits reach the end", GROUP_TIMEOUT, || {
        all_committed(&observer, &topic, &first)
    })
    .unwrap();
    assert_eq!(
        group_state(&broker, &group).unwrap(),
        ("Stable".to_owned(), 1)
    );
    assert_exactly_once("kcat -G alone", &solo.deliveries(), &first);
    solo.terminate().unwrap();
    wait_until("group Empty after kcat left", GROUP_TIMEOUT, || {
        Ok(group_state(&broker, &group)? == ("Empty".to_owned(), 0))
    })
    .unwrap();

    // Two members share the topic and start at the commits.
    let mut pair = [
        KcatMember::start(&broker, &group, &topic, &[]),
        KcatMember::start(&broker, &group, &topic, &[]),
    ];
    wait_until("group Stable with two kcat members", GROUP_TIMEOUT, || {
        for m in pair.iter_mut() {
            m.assert_running();
        }
        Ok(group_state(&broker, &group)? == ("Stable".to_owned(), 2))
    })
    .unwrap();
    let second = produce_keyed(&producer, &topic, "second", 300..600).await;
    let both = |pair: &[KcatMember]| -> Vec<Delivery> {
        pair.iter().flat_map(|m| m.deliveries()).collect()
    };
    wait_until(
        "the two kcat members print every new record",
        GROUP_TIMEOUT,
        || Ok(covers(&both(&pair), &second)),
    )
    .unwrap();
    wait_until("their commits reach the end", GROUP_TIMEOUT, || {
        all_committed(&observer, &topic, &second)
    })
    .unwrap();
    assert_exactly_once("two kcat -G members", &both(&pair), &second);
    let partitions: Vec<BTreeSet<i32>> = pair
        .iter()
        .map(|m| m.deliveries().iter().map(|d| d.partition).collect())
        .collect();
    assert!(
        partitions.iter().all(|p| !p.is_empty()) && partitions[0].is_disjoint(&partitions[1]),
        "each member gets its own partitions: {partitions:?}"
    );
    for m in pair.iter_mut() {
        m.terminate().unwrap();
    }
    broker.assert_alive();
}
