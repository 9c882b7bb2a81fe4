//! Partition leaders and ISRs of a cluster, read two ways:
//!
//! - through rdkafka ([`topic_partitions`], [`partition_leader`]): what a
//!   client sees, from whichever node librdkafka asks;
//! - over the wire from one given node ([`node_partitions`], a Metadata v7
//!   request on a fresh connection): that node's own view, with leader
//!   epochs. The harness's waits ask every live node this way, because a
//!   node that was paused or restarted serves its older view until it has
//!   caught up, and a wait that asked only that node would end too early.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::wire::{self, Reader};
use crate::OP_TIMEOUT;

/// One partition as a metadata response describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// Partition index.
    pub partition: i32,
    /// Leader node id; `None` when the partition has none (-1).
    pub leader: Option<i32>,
    /// Leader epoch (Metadata v7+; `None` through rdkafka).
    pub leader_epoch: Option<i32>,
    /// Assigned replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Replicas the answering node considers offline (Metadata v5+).
    pub offline_replicas: Vec<i32>,
    /// The partition's error, if any.
    pub error: Option<String>,
}

impl PartitionState {
    /// Has a leader, no error, and every assigned replica in the ISR.
    pub fn fully_in_sync(&self) -> bool {
        let mut replicas = self.replicas.clone();
        let mut isr = self.isr.clone();
        replicas.sort_unstable();
        isr.sort_unstable();
        self.error.is_none()
            && !replicas.is_empty()
            && replicas == isr
            && self.leader.is_some_and(|leader| isr.contains(&leader))
    }

    /// Whether `node_id` leads this partition or is in its ISR.
    pub fn involves(&self, node_id: i32) -> bool {
        self.leader == Some(node_id) || self.isr.contains(&node_id)
    }
}

/// One line per partition, for failure messages.
pub fn describe(view: &[PartitionState]) -> String {
    view.iter()
        .map(|p| {
            let leader = p
                .leader
                .map_or_else(|| "none".to_owned(), |l| l.to_string());
            let epoch = p
                .leader_epoch
                .map_or_else(String::new, |e| format!(" epoch={e}"));
            let error = p
                .error
                .as_deref()
                .map_or_else(String::new, |e| format!(" error={e}"));
            format!(
                "p{} leader={leader}{epoch} replicas={:?} isr={:?}{error}",
                p.partition, p.replicas, p.isr
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The partitions of `topic` from rdkafka metadata (`fetch_metadata`),
/// sorted by partition. Fails when the topic is unknown or has an error.
pub fn topic_partitions(
    client: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<PartitionState>> {
    let metadata = client
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| format!("fetching metadata for {topic}"))?;
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| anyhow!("topic {topic} not in the metadata response"))?;
    if let Some(error) = found.error() {
        bail!("topic {topic} has metadata error {error:?}");
    }
    let mut partitions: Vec<PartitionState> = found
        .partitions()
        .iter()
        .map(|p| PartitionState {
            partition: p.id(),
            leader: (p.leader() >= 0).then_some(p.leader()),
            leader_epoch: None,
            replicas: p.replicas().to_vec(),
            isr: p.isr().to_vec(),
            offline_replicas: Vec::new(),
            error: p.error().map(|e| format!("{e:?}")),
        })
        .collect();
    partitions.sort_by_key(|p| p.partition);
    Ok(partitions)
}

/// The leader of one partition according to rdkafka metadata; `None` when
/// it has none right now.
pub fn partition_leader(
    client: &BaseConsumer,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Option<i32>> {
    let partitions = topic_partitions(client, topic, timeout)?;
    let found = partitions
        .iter()
        .find(|p| p.partition == partition)
        .ok_or_else(|| anyhow!("{topic} has no partition {partition}"))?;
    Ok(found.leader)
}

/// The partitions of `topic` as the node at `kafka_addr` itself reports
/// them (Metadata v7 on a fresh connection, no auto-creation), sorted by
/// partition. Fails on a topic-level error, a timeout, or a bad response.
pub fn node_partitions(
    kafka_addr: SocketAddr,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<PartitionState>> {
    node_view(kafka_addr, topic, timeout).map(|view| view.partitions)
}

/// One node's answer to Metadata v7 for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The active controller as that node knows it (`controller_id`).
    pub controller: Option<i32>,
    /// The topic's partitions, sorted by partition.
    pub partitions: Vec<PartitionState>,
}

/// Like [`node_partitions`], with the node's `controller_id` too.
pub fn node_view(kafka_addr: SocketAddr, topic: &str, timeout: Duration) -> Result<NodeView> {
    const CORRELATION_ID: i32 = 7;
    let mut request = wire::header_v1(wire::api::METADATA, 7, CORRELATION_ID);
    request
        .i32(1) // one topic
        .string(Some(topic))
        .i8(0); // allow_auto_topic_creation = false
    let mut conn = wire::Conn::connect(kafka_addr)?;
    conn.send(&wire::frame(&request.0))
        .context("sending a Metadata request")?;
    let response = conn.response(timeout)?;
    parse_metadata_v7(&response, CORRELATION_ID, topic)
        .with_context(|| format!("parsing the Metadata v7 response of {kafka_addr}"))
}

/// Parses a Metadata v7 response (header v0, starting at the correlation
/// id) and returns the controller and the partitions of `topic`.
fn parse_metadata_v7(response: &[u8], correlation_id: i32, topic: &str) -> Result<NodeView> {
    let mut r = Reader::new(response);
    let got = r.i32()?;
    if got != correlation_id {
        bail!("correlation id {got}, expected {correlation_id}");
    }
    let _throttle_time_ms = r.i32()?;
    for _ in 0..array_len(&mut r)? {
        let _node_id = r.i32()?;
        let _host = r.string()?;
        let _port = r.i32()?;
        let _rack = r.string()?;
    }
    let _cluster_id = r.string()?;
    let controller_id = r.i32()?;
    let mut result = None;
    for _ in 0..array_len(&mut r)? {
        let topic_error = r.i16()?;
        let name = r.string()?.unwrap_or_default();
        let _is_internal = r.i8()?;
        let mut partitions = Vec::new();
        for _ in 0..array_len(&mut r)? {
            let error = r.i16()?;
            let partition = r.i32()?;
            let leader = r.i32()?;
            let leader_epoch = r.i32()?;
            partitions.push(PartitionState {
                partition,
                leader: (leader >= 0).then_some(leader),
                leader_epoch: Some(leader_epoch),
                replicas: i32_array(&mut r)?,
                isr: i32_array(&mut r)?,
                offline_replicas: i32_array(&mut r)?,
                error: (error != 0).then(|| format!("error code {error}")),
            });
        }
        if name == topic {
            if topic_error != 0 {
                bail!("topic {topic} has error code {topic_error}");
            }
            partitions.sort_by_key(|p| p.partition);
            result = Some(partitions);
        }
    }
    if r.remaining() != 0 {
        bail!("{} trailing bytes", r.remaining());
    }
    let partitions = result.ok_or_else(|| anyhow!("topic {topic} not in the response"))?;
    Ok(NodeView {
        controller: (controller_id >= 0).then_some(controller_id),
        partitions,
    })
}

/// An array length; null (-1) counts as empty.
fn array_len(r: &mut Reader<'_>) -> Result<usize> {
    let n = r.i32()?;
    if n < 0 {
        return Ok(0);
    }
    if n > 1_000_000 {
        bail!("array of {n} entries");
    }
    Ok(n as usize)
}

fn i32_array(r: &mut Reader<'_>) -> Result<Vec<i32>> {
    (0..array_len(r)?).map(|_| r.i32()).collect()
}

/// Creates a topic with the given replication factor and configs; fails on
/// any error (including a timeout).
pub async fn create_topic_with_replication(
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
    partitions: i32,
    replication_factor: i32,
    configs: &[(&str, &str)],
) -> Result<()> {
    let mut topic = NewTopic::new(
        name,
        partitions,
        TopicReplication::Fixed(replication_factor),
    );
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let opts = AdminOptions::new().operation_timeout(Some(OP_TIMEOUT));
    let results = tokio::time::timeout(OP_TIMEOUT, admin.create_topics([&topic], &opts))
        .await
        .context("create_topics timed out")?
        .context("create_topics")?;
    for result in results {
        if let Err((topic, code)) = result {
            bail!("creating topic {topic} failed: {code:?}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Buf;

    fn state(leader: i32, replicas: &[i32], isr: &[i32]) -> PartitionState {
        PartitionState {
            partition: 0,
            leader: (leader >= 0).then_some(leader),
            leader_epoch: Some(1),
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            offline_replicas: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn fully_in_sync_needs_every_replica_and_a_leader() {
        assert!(state(2, &[1, 2, 3], &[3, 2, 1]).fully_in_sync());
        assert!(!state(2, &[1, 2, 3], &[2, 3]).fully_in_sync());
        assert!(!state(-1, &[1, 2, 3], &[1, 2, 3]).fully_in_sync());
        assert!(!state(2, &[], &[]).fully_in_sync());
    }

    #[test]
    fn parses_a_metadata_v7_response() {
        let mut b = Buf::new();
        b.i32(7).i32(0); // correlation id, throttle
        b.i32(2); // brokers
        for id in [1, 2] {
            b.i32(id)
                .string(Some("127.0.0.1"))
                .i32(9000 + id)
                .string(None);
        }
        b.string(Some("cluster")).i32(1); // cluster id, controller id
        b.i32(2); // topics
        b.i16(0).string(Some("other")).i8(0).i32(0);
        b.i16(0).string(Some("t")).i8(0).i32(2);
        for (p, leader) in [(1, 2), (0, -1)] {
            b.i16(if leader < 0 { 5 } else { 0 })
                .i32(p)
                .i32(leader)
                .i32(4)
                .i32(2)
                .i32(1)
                .i32(2)
                .i32(1)
                .i32(2)
                .i32(0);
        }
        let view = parse_metadata_v7(&b.0, 7, "t").unwrap();
        assert_eq!(view.controller, Some(1));
        let parts = view.partitions;
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].partition, 0);
        assert_eq!(parts[0].leader, None);
        assert_eq!(parts[0].error.as_deref(), Some("error code 5"));
        assert_eq!(parts[1].leader, Some(2));
        assert_eq!(parts[1].leader_epoch, Some(4));
        assert_eq!(parts[1].replicas, vec![1, 2]);
        assert_eq!(parts[1].isr, vec![2]);
        assert!(parse_metadata_v7(&b.0, 8, "t").is_err());
        assert!(parse_metadata_v7(&b.0, 7, "missing").is_err());
    }
}
