//! The controller's decisions, as pure functions from an image (and an
//! event) to the records that carry them out. Nothing here does I/O, so
//! every rule is unit-tested below.

use std::time::Duration;

use kafka_protocol::error::ResponseError;

use crate::cluster::metadata::MetadataImage;
use crate::cluster::records::{PartitionChange, PartitionRegistration};
use crate::error::{Error, Result};

/// Replica lists for `partitions` new partitions with `replication_factor`
/// copies each over `brokers` (sorted ids), Kafka's rack-unaware way: the
/// first replica of partition p is broker `(start + p) % n` and the others
/// follow it, so both replicas and preferred leaders spread evenly.
pub fn assign_replicas(
    brokers: &[i32],
    partitions: i32,
    replication_factor: i16,
    start: usize,
) -> Result<Vec<Vec<i32>>> {
    let n = brokers.len();
    let rf = usize::try_from(replication_factor).unwrap_or(0);
    if rf == 0 {
        return Err(Error::api_msg(
            ResponseError::InvalidReplicationFactor,
            "Replication factor must be larger than 0.",
        ));
    }
    if rf > n {
        return Err(Error::api_msg(
            ResponseError::InvalidReplicationFactor,
            format!(
                "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {n} broker(s) are registered."
            ),
        ));
    }
    Ok((0..partitions as usize)
        .map(|p| (0..rf).map(|j| brokers[(start + p + j) % n]).collect())
        .collect())
}

/// The leader to elect: the first replica, in preference order, that is in
/// the ISR and alive. Never an out-of-sync replica (no unclean election).
pub fn elect_leader(partition: &PartitionRegistration, live: &[i32]) -> Option<i32> {
    partition
        .replicas
        .iter()
        .copied()
        .find(|r| partition.isr.contains(r) && live.contains(r))
}

/// Every partition change that follows from `broker` going away (fenced or
/// shutting down): partitions it leads get a new leader from the rest of
/// the ISR (or go offline, leader -1, keeping the ISR as it was when the
/// broker was its last member), and it leaves every ISR it was in.
pub fn on_broker_gone(image: &MetadataImage, broker: i32) -> Vec<PartitionChange> {
    let live: Vec<i32> = image
        .live_brokers()
        .into_iter()
        .filter(|b| *b != broker)
        .collect();
    let mut changes = Vec::new();
    for topic in image.topics() {
        for (index, p) in image.partitions(&topic.id).iter().enumerate() {
            if !p.isr.contains(&broker) && p.leader != broker {
                continue;
            }
            let shrunk: Vec<i32> = p.isr.iter().copied().filter(|r| *r != broker).collect();
            let (leader, isr) = if shrunk.is_empty() {
                // The last in-sync replica: keep it in the ISR so it can
                // lead again when it returns, and nobody else can.
                (-1, p.isr.clone())
            } else {
                let candidate = PartitionRegistration {
                    isr: shrunk.clone(),
                    ..p.clone()
                };
                let leader = if p.leader == broker || p.leader == -1 {
                    elect_leader(&candidate, &live).unwrap_or(-1)
                } else {
                    p.leader
                };
                (leader, shrunk)
            };
            if leader == p.leader && isr == p.isr {
                continue;
            }
            changes.push(PartitionChange {
                topic_id: topic.id,
                partition: index as i32,
                expected_partition_epoch: Some(p.partition_epoch),
                leader: Some(leader),
                isr: Some(isr),
                replicas: None,
            });
        }
    }
    changes
}

/// Offline partitions that `broker`, now back, can lead again (it is in
/// their ISR).
pub fn on_broker_back(image: &MetadataImage, broker: i32) -> Vec<PartitionChange> {
    let mut changes = Vec::new();
    for topic in image.topics() {
        for (index, p) in image.partitions(&topic.id).iter().enumerate() {
            if p.leader == -1 && p.isr.contains(&broker) {
                changes.push(PartitionChange {
                    topic_id: topic.id,
                    partition: index as i32,
                    expected_partition_epoch: Some(p.partition_epoch),
                    leader: Some(broker),
                    isr: None,
                    replicas: None,
                });
            }
        }
    }
    changes
}

/// Preferred-replica election (`auto.leader.rebalance.enable`): partitions
/// whose first replica is alive and in sync but does not lead get it back
/// as leader, so leadership stays spread as the assignment intended.
pub fn preferred_leader_changes(image: &MetadataImage) -> Vec<PartitionChange> {
    let live = image.live_brokers();
    let mut changes = Vec::new();
    for topic in image.topics() {
        for (index, p) in image.partitions(&topic.id).iter().enumerate() {
            let Some(&preferred) = p.replicas.first() else {
                continue;
            };
            if p.leader != preferred && p.isr.contains(&preferred) && live.contains(&preferred) {
                changes.push(PartitionChange {
                    topic_id: topic.id,
                    partition: index as i32,
                    expected_partition_epoch: Some(p.partition_epoch),
                    leader: Some(preferred),
                    isr: None,
                    replicas: None,
                });
            }
        }
    }
    changes
}

/// Self-healing: every partition with a replica on `gone` (fenced for
/// longer than `replica.reassignment.delay.ms`) gets that replica moved to
/// the live broker with the fewest replicas that does not hold one of the
/// partition already, so it has its full count of copies again. The new
/// replica starts outside the ISR and joins once caught up. Partitions with
/// no such broker left keep their assignment.
pub fn reassign_away(image: &MetadataImage, gone: i32) -> Vec<PartitionChange> {
    let live: Vec<i32> = image
        .live_brokers()
        .into_iter()
        .filter(|b| *b != gone)
        .collect();
    // Replicas per live broker, kept up to date as moves are decided.
    let mut load: std::collections::BTreeMap<i32, usize> = live.iter().map(|b| (*b, 0)).collect();
    for topic in image.topics() {
        for p in image.partitions(&topic.id) {
            for r in &p.replicas {
                if let Some(n) = load.get_mut(r) {
                    *n += 1;
                }
            }
        }
    }
    let mut changes = Vec::new();
    for topic in image.topics() {
        for (index, p) in image.partitions(&topic.id).iter().enumerate() {
            let Some(slot) = p.replicas.iter().position(|r| *r == gone) else {
                continue;
            };
            let target = load
                .iter()
                .filter(|(b, _)| !p.replicas.contains(b))
                .min_by_key(|(b, n)| (**n, **b))
                .map(|(b, _)| *b);
            let Some(target) = target else {
                continue;
            };
            if let Some(n) = load.get_mut(&target) {
                *n += 1;
            }
            let mut replicas = p.replicas.clone();
            replicas[slot] = target;
            let isr: Vec<i32> = p.isr.iter().copied().filter(|r| *r != gone).collect();
            changes.push(PartitionChange {
                topic_id: topic.id,
                partition: index as i32,
                expected_partition_epoch: Some(p.partition_epoch),
                leader: None,
                isr: (!isr.is_empty() && isr != p.isr).then_some(isr),
                replicas: Some(replicas),
            });
        }
    }
    changes
}

/// Checks an ISR change proposed by a partition's leader (AlterPartition)
/// against the current registration: the proposer must be the leader of
/// the current epochs, and the new ISR must be replicas, include the
/// leader, and only add live brokers.
/// What the active controller knows of one unfenced broker's liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Silence {
    /// Since its last heartbeat to this controller (none yet: `None`).
    pub since_heartbeat: Option<Duration>,
    /// Since this node last heard from it as the Raft leader, when it was
    /// the controller before this one (`None` otherwise).
    pub since_led: Option<Duration>,
    /// Since this node became the active controller.
    pub since_active: Duration,
}

/// Whether to fence a broker (`broker.session.timeout.ms`, `session`).
/// One heard from since this controller took over is silent once its last
/// heartbeat is older than the session. One not heard from yet gets
/// `grace` to find the new controller, except the previous controller:
/// its silence began when it stopped leading Raft, so it is fenced a
/// session after that, like any broker, once live brokers have had
/// `min_grace` to show up (it may be alive, cut off from us earlier).
pub fn is_silent(
    silence: Silence,
    session: Duration,
    grace: Duration,
    min_grace: Duration,
) -> bool {
    match silence.since_heartbeat {
        Some(since) => since > session,
        None => {
            silence.since_active > grace
                || silence
                    .since_led
                    .is_some_and(|led| led > session && silence.since_active > min_grace)
        }
    }
}

pub fn check_alter_isr(
    current: &PartitionRegistration,
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    new_isr: &[i32],
    live: &[i32],
) -> std::result::Result<(), ResponseError> {
    if current.leader != leader {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    if leader_epoch != current.leader_epoch {
        return Err(ResponseError::FencedLeaderEpoch);
    }
    if partition_epoch != current.partition_epoch {
        return Err(ResponseError::InvalidUpdateVersion);
    }
    if !new_isr.contains(&leader) || new_isr.iter().any(|r| !current.replicas.contains(r)) {
        return Err(ResponseError::InvalidRequest);
    }
    if new_isr
        .iter()
        .any(|r| !current.isr.contains(r) && !live.contains(r))
    {
        return Err(ResponseError::IneligibleReplica);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use uuid::Uuid;

    use super::*;

    #[test]
    fn silence_counts_from_the_last_heartbeat_or_the_takeover() {
        let ms = Duration::from_millis;
        let (session, grace, min_grace) = (ms(3000), ms(2000), ms(1000));
        let check = |heartbeat: Option<u64>, led: Option<u64>, active: u64| {
            is_silent(
                Silence {
                    since_heartbeat: heartbeat.map(ms),
                    since_led: led.map(ms),
                    since_active: ms(active),
                },
                session,
                grace,
                min_grace,
            )
        };
        // Heard from: the session decides, however long ago the takeover.
        assert!(!check(Some(2999), None, 60_000));
        assert!(check(Some(3001), None, 10));
        // Not heard from yet: the grace after the takeover.
        assert!(!check(None, None, 1999));
        assert!(check(None, None, 2001));
        // The old controller: a session after it stopped leading...
        assert!(!check(None, Some(2900), 1500));
        assert!(check(None, Some(3100), 1500));
        // ...but never before live brokers had their minimum grace.
        assert!(!check(None, Some(10_000), 900));
        assert!(check(None, Some(10_000), 1100));
        // A heartbeat since the takeover overrides the old silence.
        assert!(!check(Some(100), Some(10_000), 5000));
    }
    use crate::cluster::records::{BrokerRegistration, MetadataRecord};
    use crate::cluster::topic_record::TopicRecord;
    use crate::config::BrokerConfig;

    fn image_with(brokers: &[i32], assignments: Vec<Vec<i32>>) -> (MetadataImage, Uuid) {
        let config = BrokerConfig::default();
        let mut image = MetadataImage::empty(Arc::new(config.clone()));
        for &id in brokers {
            let _ = image.apply(
                &MetadataRecord::RegisterBroker(BrokerRegistration {
                    id,
                    host: "h".into(),
                    port: 1,
                    rpc_address: "h:2".into(),
                    endpoints: Vec::new(),
                    incarnation: 1,
                    fenced: false,
                    shutting_down: false,
                }),
                1,
                &config,
            );
        }
        let id = Uuid::from_u128(9);
        let _ = image.apply(
            &MetadataRecord::CreateTopic {
                topic: TopicRecord {
                    id,
                    name: "t".into(),
                    partitions: 0,
                    configs: BTreeMap::new(),
                },
                assignments,
            },
            2,
            &config,
        );
        (image, id)
    }

    fn apply(image: &mut MetadataImage, record: MetadataRecord) {
        let _ = image.apply(&record, 3, &BrokerConfig::default());
    }

    #[test]
    fn assignment_spreads_replicas_and_leaders() {
        let a = assign_replicas(&[1, 2, 3], 3, 3, 0).unwrap();
        assert_eq!(a, vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]]);
        let leaders: Vec<i32> = a.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, vec![1, 2, 3]);
        let b = assign_replicas(&[1, 2, 3], 2, 1, 2).unwrap();
        assert_eq!(b, vec![vec![3], vec![1]]);
        assert_eq!(
            assign_replicas(&[1, 2], 1, 3, 0).unwrap_err().code(),
            ResponseError::InvalidReplicationFactor.code()
        );
        assert!(assign_replicas(&[1], 1, 0, 0).is_err());
    }

    #[test]
    fn leader_comes_from_live_isr_in_preference_order() {
        let p = PartitionRegistration {
            replicas: vec![1, 2, 3],
            isr: vec![2, 3],
            leader: 2,
            leader_epoch: 0,
            partition_epoch: 0,
        };
        assert_eq!(elect_leader(&p, &[1, 2, 3]), Some(2));
        assert_eq!(elect_leader(&p, &[1, 3]), Some(3));
        assert_eq!(elect_leader(&p, &[1]), None, "never an out-of-sync replica");
    }

    #[test]
    fn losing_a_broker_moves_leadership_and_shrinks_isrs() {
        let (mut image, id) = image_with(&[1, 2, 3], vec![vec![1, 2, 3], vec![2, 3, 1]]);
        apply(&mut image, MetadataRecord::FenceBroker { id: 1 });
        let changes = on_broker_gone(&image, 1);
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].leader, Some(2));
        assert_eq!(changes[0].isr, Some(vec![2, 3]));
        assert_eq!(changes[1].leader, Some(2), "leader 2 keeps leading");
        assert_eq!(changes[1].isr, Some(vec![2, 3]));
        apply(&mut image, MetadataRecord::PartitionChanges(changes));
        assert_eq!(image.partition(&id, 0).unwrap().leader_epoch, 1);
        assert_eq!(image.partition(&id, 1).unwrap().leader_epoch, 0);
        // The same event again changes nothing.
        assert!(on_broker_gone(&image, 1).is_empty());
    }

    #[test]
    fn last_isr_member_gone_leaves_partition_offline_until_it_returns() {
        let (mut image, id) = image_with(&[1, 2], vec![vec![1]]);
        apply(&mut image, MetadataRecord::FenceBroker { id: 1 });
        let changes = on_broker_gone(&image, 1);
        assert_eq!(changes[0].leader, Some(-1));
        assert_eq!(changes[0].isr, Some(vec![1]));
        apply(&mut image, MetadataRecord::PartitionChanges(changes));
        apply(&mut image, MetadataRecord::UnfenceBroker { id: 1 });
        let back = on_broker_back(&image, 1);
        assert_eq!(back.len(), 1);
        apply(&mut image, MetadataRecord::PartitionChanges(back));
        assert_eq!(image.partition(&id, 0).unwrap().leader, 1);
    }

    #[test]
    fn preferred_leader_returns_once_in_sync() {
        let (mut image, id) = image_with(&[1, 2, 3], vec![vec![1, 2, 3]]);
        apply(&mut image, MetadataRecord::FenceBroker { id: 1 });
        let gone = on_broker_gone(&image, 1);
        apply(&mut image, MetadataRecord::PartitionChanges(gone));
        apply(&mut image, MetadataRecord::UnfenceBroker { id: 1 });
        assert!(
            preferred_leader_changes(&image).is_empty(),
            "not back in the ISR yet"
        );
        let p = image.partition(&id, 0).unwrap().clone();
        apply(
            &mut image,
            MetadataRecord::PartitionChanges(vec![PartitionChange {
                topic_id: id,
                partition: 0,
                expected_partition_epoch: Some(p.partition_epoch),
                leader: None,
                isr: Some(vec![2, 3, 1]),
                replicas: None,
            }]),
        );
        let changes = preferred_leader_changes(&image);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].leader, Some(1));
    }

    #[test]
    fn a_long_gone_broker_is_replaced_where_a_broker_is_free() {
        let (mut image, id) = image_with(
            &[1, 2, 3, 4],
            vec![vec![1, 2, 3], vec![2, 3, 4], vec![3, 4, 1]],
        );
        apply(&mut image, MetadataRecord::FenceBroker { id: 3 });
        let gone = on_broker_gone(&image, 3);
        apply(&mut image, MetadataRecord::PartitionChanges(gone));
        let changes = reassign_away(&image, 3);
        assert_eq!(changes.len(), 3);
        // Partition 0 lacks broker 4 only; 1 lacks 1; 2 lacks 2.
        assert_eq!(changes[0].replicas, Some(vec![1, 2, 4]));
        assert_eq!(changes[1].replicas, Some(vec![2, 1, 4]));
        assert_eq!(changes[2].replicas, Some(vec![2, 4, 1]));
        apply(&mut image, MetadataRecord::PartitionChanges(changes));
        let p0 = image.partition(&id, 0).unwrap();
        assert!(!p0.isr.contains(&3) && p0.replicas == vec![1, 2, 4]);
        assert!(reassign_away(&image, 3).is_empty(), "done once");
        // With no free broker the assignment stays as it is.
        let (mut small, _) = image_with(&[1, 2, 3], vec![vec![1, 2, 3]]);
        apply(&mut small, MetadataRecord::FenceBroker { id: 3 });
        assert!(reassign_away(&small, 3).is_empty());
    }

    #[test]
    fn alter_isr_is_checked_against_epochs_and_liveness() {
        let p = PartitionRegistration {
            replicas: vec![1, 2, 3],
            isr: vec![1, 2],
            leader: 1,
            leader_epoch: 4,
            partition_epoch: 7,
        };
        assert_eq!(check_alter_isr(&p, 1, 4, 7, &[1, 2, 3], &[1, 2, 3]), Ok(()));
        assert_eq!(check_alter_isr(&p, 1, 4, 7, &[1], &[1]), Ok(()));
        assert_eq!(
            check_alter_isr(&p, 2, 4, 7, &[1, 2], &[1, 2, 3]),
            Err(ResponseError::NotLeaderOrFollower)
        );
        assert_eq!(
            check_alter_isr(&p, 1, 3, 7, &[1, 2], &[1, 2, 3]),
            Err(ResponseError::FencedLeaderEpoch)
        );
        assert_eq!(
            check_alter_isr(&p, 1, 4, 6, &[1, 2], &[1, 2, 3]),
            Err(ResponseError::InvalidUpdateVersion)
        );
        assert_eq!(
            check_alter_isr(&p, 1, 4, 7, &[1, 2, 3], &[1, 2]),
            Err(ResponseError::IneligibleReplica)
        );
        assert_eq!(
            check_alter_isr(&p, 1, 4, 7, &[2, 3], &[1, 2, 3]),
            Err(ResponseError::InvalidRequest)
        );
    }
}
