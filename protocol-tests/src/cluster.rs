//! Multi-process cluster harness: [`ClusterProcess`] runs N (3 by default)
//! real `metrobus` processes on 127.0.0.1 that form one cluster, and lets a
//! test kill (`SIGKILL`), pause (`SIGSTOP`/`SIGCONT`), stop (`SIGTERM`) and
//! restart any of them.
//!
//! - [`metadata`]: partition leaders and ISRs, as rdkafka sees them
//!   ([`metadata::partition_leader`]) and as each node reports its own view
//!   over the wire ([`metadata::node_partitions`]).
//! - [`load`]: an idempotent `acks=all` producer on its own thread that
//!   records every acknowledged record ([`load::AckLedger`]).
//! - [`verify`]: a consumer group that reads along, and the final check that
//!   no acknowledged record was lost, duplicated or reordered.
//! - `node` (private): one node's addresses, directory and process, port
//!   picking and signals.
//!
//! Every node gets its own ports (Kafka, controller, HTTP), picked by binding
//! port 0 and releasing them just before the start, and kept across restarts
//! so that clients and peers find a restarted node where it was. The
//! controller port must be free for TCP (Raft and replication RPC) and UDP
//! (gossip) alike. If a node still fails to bind (another process took the
//! port in between), the whole cluster is started again on new ports.
//!
//! Layout of the cluster's temporary directory, per node `node-N/`:
//! `node.toml` (the node's settings), `data/` (its `log.dirs`) and `node.log`
//! (stdout and stderr of every run, appended, with a marker line per start).
//!
//! Settings go to the nodes as in [`crate::BrokerProcess`]: the harness's own
//! (node id, listeners, data dir, voters) in `node.toml` passed with
//! `--config`, the test's in environment variables ([`ClusterOptions::env`]),
//! which take precedence over the file. Inherited `METROBUS_*` variables are
//! removed, except `METROBUS_LOG` (the log filter) so that
//! `METROBUS_LOG=metrobus=debug cargo test ...` reaches every node.
//!
//! Every wait is bounded; when a test panics, the harness prints the tail of
//! every node's log, and a node that exits on its own fails the test.

pub mod load;
pub mod metadata;
mod node;
pub mod verify;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use tempfile::TempDir;

use crate::{metrobus_bin, unique_name, SHUTDOWN_TIMEOUT};
pub use metadata::{
    create_topic_with_replication, node_partitions, node_view, partition_leader, topic_partitions,
    NodeView, PartitionState,
};
use node::{join_addrs, pick_ports, probe_ready, signal, Node};

/// Nodes in a default cluster.
pub const CLUSTER_SIZE: usize = 3;
/// How long every node may take from spawn to `/health/ready` answering 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of one metadata request in the harness's waits.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts (of the cluster, or of one node on restart) tried when a port
/// turned out to be taken.
const PORT_ATTEMPTS: u32 = 3;
/// The longest pause between two polls of external state.
const MAX_POLL_DELAY: Duration = Duration::from_millis(250);

/// Options for starting a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of nodes; ids are `1..=nodes`, and every node is a controller
    /// voter.
    pub nodes: usize,
    /// Extra environment variables for every node (e.g.
    /// `METROBUS_BROKER_SESSION_TIMEOUT_MS=3000`).
    pub env: Vec<(String, String)>,
    /// Extra command-line arguments for every node, after the harness's own.
    pub args: Vec<String>,
    /// How long to wait for `/health/ready` after a (re)start.
    pub ready_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: CLUSTER_SIZE,
            env: Vec::new(),
            args: Vec::new(),
            ready_timeout: READY_TIMEOUT,
        }
    }
}

impl ClusterOptions {
    /// Three nodes, no extra env or args.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the number of nodes.
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    /// Adds an environment variable for every node.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Adds a command-line argument for every node.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Sets the readiness timeout.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }
}

/// What the harness did to a node last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Started (and not stopped since); it may have exited on its own.
    Running,
    /// Stopped with `SIGSTOP` ([`ClusterProcess::pause`]).
    Paused,
    /// Not running: killed, stopped, or never started.
    Stopped,
}

/// A snapshot of one node's identity and addresses.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// `node.id`, also the broker id in metadata.
    pub node_id: i32,
    /// Kafka listener (PLAINTEXT).
    pub kafka: SocketAddr,
    /// SASL_PLAINTEXT listener.
    pub sasl: SocketAddr,
    /// Controller listener (TCP RPC, UDP gossip).
    pub controller: SocketAddr,
    /// HTTP listener (metrics, health).
    pub http: SocketAddr,
    /// Process id while the process exists (running or paused).
    pub pid: Option<u32>,
    /// What the harness did to it last.
    pub state: NodeState,
    /// The node's `log.dirs`.
    pub data_dir: PathBuf,
    /// The node's combined stdout and stderr.
    pub log_path: PathBuf,
}

/// A cluster of `metrobus` processes on loopback. Nodes are addressed by
/// node id (`1..=N`), the ids brokers have in metadata.
#[derive(Debug)]
pub struct ClusterProcess {
    dir: TempDir,
    opts: ClusterOptions,
    nodes: Vec<Node>,
    voters: String,
}

impl ClusterProcess {
    /// Starts every node and waits until all answer `/health/ready`. When a
    /// node could not bind a port picked for it, starts the cluster again on
    /// new ports (up to 3 times).
    pub fn start(opts: ClusterOptions) -> Result<Self> {
        if opts.nodes == 0 {
            bail!("a cluster needs at least one node");
        }
        let bin = metrobus_bin()?;
        let mut attempt = 1;
        loop {
            let mut cluster = Self::create(opts.clone())?;
            let error = match cluster.boot(&bin) {
                Ok(()) => return Ok(cluster),
                Err(e) => e,
            };
            let port_conflict = cluster.nodes.iter().any(Node::lost_a_port);
            let logs = cluster.log_tails();
            cluster.kill_all();
            // Reported here (with the logs), not again by Drop.
            for node in &mut cluster.nodes {
                node.crashed = None;
            }
            if port_conflict && attempt < PORT_ATTEMPTS {
                eprintln!("cluster harness: a node lost its port ({error:#}); starting again on new ports");
                attempt += 1;
                continue;
            }
            return Err(error.context(format!("starting a {}-node cluster\n{logs}", opts.nodes)));
        }
    }

    /// Starts a default 3-node cluster, panicking (with the logs) when it
    /// cannot.
    pub fn start_default() -> Self {
        Self::start(ClusterOptions::new()).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Picks ports, creates the directories and writes every node's config.
    fn create(opts: ClusterOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("metrobus-cluster-")
            .tempdir()
            .context("creating the cluster's temp dir")?;
        let ports = pick_ports(opts.nodes)?;
        let mut nodes = Vec::with_capacity(opts.nodes);
        for (index, [kafka, controller, http, sasl]) in ports.into_iter().enumerate() {
            let node_id = i32::try_from(index + 1).context("too many nodes")?;
            nodes.push(Node {
                node_id,
                kafka,
                sasl,
                controller,
                http,
                dir: dir.path().join(format!("node-{node_id}")),
                child: None,
                paused: false,
                stopped_by_harness: false,
                crashed: None,
                starts: 0,
                run_log_start: 0,
            });
        }
        let voters = nodes
            .iter()
            .map(|n| format!("{}@{}", n.node_id, n.controller))
            .collect::<Vec<_>>()
            .join(",");
        for node in &nodes {
            node.write_config(&voters)?;
        }
        Ok(ClusterProcess {
            dir,
            opts,
            nodes,
            voters,
        })
    }

    /// Spawns every node (they need each other for a quorum), then waits
    /// for all of them with one deadline.
    fn boot(&mut self, bin: &Path) -> Result<()> {
        for node in &mut self.nodes {
            node.spawn(bin, &self.opts)?;
        }
        let deadline = Instant::now() + self.opts.ready_timeout;
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.wait_ready_until(&all, deadline)
    }

    fn index(&self, node_id: i32) -> usize {
        self.nodes
            .iter()
            .position(|n| n.node_id == node_id)
            .unwrap_or_else(|| {
                panic!(
                    "no node {node_id} in this cluster (ids 1..={})",
                    self.nodes.len()
                )
            })
    }

    /// The ids of all nodes, `1..=N`.
    pub fn node_ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|n| n.node_id).collect()
    }

    /// One node's identity, addresses and process state. Panics on an
    /// unknown id.
    pub fn node(&self, node_id: i32) -> NodeInfo {
        self.nodes[self.index(node_id)].info()
    }

    /// Every node's [`NodeInfo`].
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.nodes.iter().map(Node::info).collect()
    }

    /// `controller.quorum.voters` as given to every node.
    pub fn voters(&self) -> &str {
        &self.voters
    }

    /// The cluster's temporary directory.
    pub fn temp_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every node's Kafka address, comma-separated (stopped ones too: a
    /// client skips what does not answer).
    pub fn bootstrap_servers(&self) -> String {
        join_addrs(self.nodes.iter())
    }

    /// The Kafka addresses of the nodes that are running and not paused. A
    /// paused node accepts connections but never answers, which would stall
    /// a fresh client that picks it first.
    pub fn live_bootstrap_servers(&self) -> String {
        join_addrs(
            self.nodes
                .iter()
                .filter(|n| n.state() == NodeState::Running),
        )
    }

    /// Sends SIGKILL to a node and reaps it. Panics if the node is not
    /// running.
    pub fn kill9(&mut self, node_id: i32) {
        let index = self.index(node_id);
        let node = &mut self.nodes[index];
        if let Err(e) = node.check_alive() {
            panic!("kill -9 of node {node_id}: {e:#}");
        }
        match node.kill() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("kill -9 of node {node_id}: it is not running"),
            Err(e) => panic!("kill -9 of node {node_id} failed: {e:#}"),
        }
    }

    /// Freezes a node with SIGSTOP: its sockets stay open but it answers
    /// nothing and sends no heartbeats.
    pub fn pause(&mut self, node_id: i32) {
        let index = self.index(node_id);
        let node = &mut self.nodes[index];
        let pid = node
            .check_alive()
            .and_then(|()| node.pid())
            .unwrap_or_else(|e| panic!("pausing node {node_id}: {e:#}"));
        signal(pid, "STOP").unwrap_or_else(|e| panic!("pausing node {node_id}: {e:#}"));
        node.paused = true;
    }

    /// Lets a paused node run again (SIGCONT).
    pub fn resume(&mut self, node_id: i32) {
        let index = self.index(node_id);
        let node = &mut self.nodes[index];
        let pid = node
            .pid()
            .unwrap_or_else(|e| panic!("resuming node {node_id}: {e:#}"));
        signal(pid, "CONT").unwrap_or_else(|e| panic!("resuming node {node_id}: {e:#}"));
        node.paused = false;
    }

    /// Sends SIGTERM (and SIGCONT, should the node be paused) and waits up
    /// to [`SHUTDOWN_TIMEOUT`] for the exit; returns the exit status. A node
    /// that does not exit in time is killed and the call fails.
    pub fn stop(&mut self, node_id: i32) -> Result<ExitStatus> {
        let index = self.index(node_id);
        let node = &mut self.nodes[index];
        node.check_alive()?;
        let pid = node.pid()?;
        node.stopped_by_harness = true;
        signal(pid, "TERM")?;
        if node.paused {
            signal(pid, "CONT")?;
            node.paused = false;
        }
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        let mut delay = Duration::from_millis(5);
        loop {
            let child = node
                .child
                .as_mut()
                .ok_or_else(|| anyhow!("node {node_id} is not running"))?;
            if let Some(status) = child.try_wait()? {
                node.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = node.kill();
                bail!(
                    "node {node_id} did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM\n{}",
                    node.log_tail()
                );
            }
            thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }

    /// Starts a node again with the same ports, data dir and settings
    /// (stopping it with SIGTERM first if it runs) and waits until it is
    /// ready. Retries a few times if its port was taken meanwhile.
    pub fn restart(&mut self, node_id: i32) -> Result<()> {
        let index = self.index(node_id);
        self.nodes[index].check_alive()?;
        if self.nodes[index].child.is_some() {
            let _ = self.stop(node_id)?;
        }
        let bin = metrobus_bin()?;
        let mut attempt = 1;
        loop {
            self.nodes[index].spawn(&bin, &self.opts)?;
            let deadline = Instant::now() + self.opts.ready_timeout;
            let error = match self.wait_ready_until(&[index], deadline) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let node = &mut self.nodes[index];
            if !node.lost_a_port() || attempt >= PORT_ATTEMPTS {
                return Err(error.context(format!("restarting node {node_id}")));
            }
            let _ = node.kill();
            eprintln!("cluster harness: node {node_id} lost a port on restart; trying again");
            // Someone else holds the port for a moment (a client socket
            // about to close); give it time rather than spin.
            thread::sleep(Duration::from_millis(500) * attempt);
            attempt += 1;
        }
    }

    /// Waits (bounded by the ready timeout) until the node answers
    /// `/health/ready` with 200.
    pub fn wait_ready(&mut self, node_id: i32) -> Result<()> {
        let index = self.index(node_id);
        let deadline = Instant::now() + self.opts.ready_timeout;
        self.wait_ready_until(&[index], deadline)
    }

    /// Waits until every node that is running answers `/health/ready`.
    pub fn wait_all_ready(&mut self) -> Result<()> {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].state() == NodeState::Running)
            .collect();
        let deadline = Instant::now() + self.opts.ready_timeout;
        self.wait_ready_until(&running, deadline)
    }

    /// Whether the node answers `/health/ready` with 200 right now.
    pub fn is_ready(&self, node_id: i32) -> bool {
        let node = &self.nodes[self.index(node_id)];
        node.state() == NodeState::Running && probe_ready(node.http).is_ok()
    }

    fn wait_ready_until(&mut self, indexes: &[usize], deadline: Instant) -> Result<()> {
        let mut pending: Vec<usize> = indexes.to_vec();
        let mut last_answer = vec![String::from("no answer yet"); self.nodes.len()];
        let mut delay = Duration::from_millis(10);
        loop {
            let mut still = Vec::new();
            for &index in &pending {
                let node = &mut self.nodes[index];
                if let Some(status) = node.poll_exit()? {
                    bail!(
                        "node {} exited with {status} before it was ready\n{}",
                        node.node_id,
                        node.log_tail()
                    );
                }
                match node.state() {
                    NodeState::Running => {}
                    NodeState::Paused => bail!("node {} is paused; resume it first", node.node_id),
                    NodeState::Stopped => bail!("node {} is not running", node.node_id),
                }
                match probe_ready(node.http) {
                    Ok(()) => {}
                    Err(e) => {
                        last_answer[index] = format!("{e:#}");
                        still.push(index);
                    }
                }
            }
            pending = still;
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let mut report = String::new();
                for &index in &pending {
                    let node = &self.nodes[index];
                    let _ = writeln!(
                        report,
                        "node {} not ready (http://{}/health/ready: {})",
                        node.node_id, node.http, last_answer[index]
                    );
                }
                for &index in &pending {
                    let _ = writeln!(report, "{}", self.nodes[index].log_tail());
                }
                bail!(
                    "timed out after {:?} waiting for readiness\n{report}",
                    self.opts.ready_timeout
                );
            }
            thread::sleep(delay);
            delay = (delay * 2).min(MAX_POLL_DELAY);
        }
    }

    /// Fails (with the log) if a node that should be running exited on its
    /// own. Paused and stopped nodes are fine.
    pub fn check_alive(&mut self) -> Result<()> {
        for node in &mut self.nodes {
            node.check_alive()?;
        }
        Ok(())
    }

    /// Panics (with the log) if a node that should be running exited.
    pub fn assert_alive(&mut self) {
        if let Err(e) = self.check_alive() {
            panic!("{e:#}");
        }
    }

    /// The last part of one node's log, framed for printing.
    pub fn log_tail(&self, node_id: i32) -> String {
        self.nodes[self.index(node_id)].log_tail()
    }

    /// The last part of every node's log.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let _ = writeln!(out, "{}", node.log_tail());
        }
        out
    }

    fn kill_all(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
        }
    }

    /// A client config for the given bootstrap servers.
    pub fn client_config_for(&self, bootstrap_servers: &str) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", bootstrap_servers)
            .set("broker.address.family", "v4")
            .set("client.id", "metrobus-cluster-tests");
        cfg
    }

    /// A client config bootstrapping from every node.
    pub fn client_config(&self) -> ClientConfig {
        self.client_config_for(&self.bootstrap_servers())
    }

    /// A `BaseConsumer` on the live nodes for assign mode: unique group id,
    /// no commits, partition EOF events on, and the given overrides.
    pub fn consumer(&self, overrides: &[(&str, &str)]) -> Result<BaseConsumer> {
        let mut cfg = self.client_config_for(&self.live_bootstrap_servers());
        cfg.set("group.id", unique_name("metrobus-cluster-reader"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true");
        for (key, value) in overrides {
            cfg.set(*key, *value);
        }
        cfg.create().context("creating a consumer")
    }

    /// An admin client on the live nodes.
    pub fn admin(&self) -> Result<AdminClient<DefaultClientContext>> {
        self.client_config_for(&self.live_bootstrap_servers())
            .create()
            .context("creating an admin client")
    }

    /// The leader of a partition as rdkafka's metadata (from a live node)
    /// shows it; fails when the partition has none.
    pub fn leader_of(&self, topic: &str, partition: i32) -> Result<i32> {
        let client: BaseConsumer = self
            .client_config_for(&self.live_bootstrap_servers())
            .create()
            .context("creating a metadata client")?;
        partition_leader(&client, topic, partition, METADATA_TIMEOUT)?
            .ok_or_else(|| anyhow!("{topic}/{partition} has no leader"))
    }

    /// The active controller, once every live node names the same one in
    /// its own Metadata answer for `topic` (at most `timeout`).
    pub fn controller(&mut self, topic: &str, timeout: Duration) -> Result<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            let mut named = Vec::new();
            for node in self
                .nodes
                .iter()
                .filter(|n| n.state() == NodeState::Running)
            {
                let view = node_view(node.kafka, topic, METADATA_TIMEOUT)
                    .with_context(|| format!("node {}", node.node_id));
                named.push(view.ok().and_then(|v| v.controller));
            }
            if let Some(Some(first)) = named.first() {
                if named.iter().all(|c| *c == Some(*first)) {
                    return Ok(*first);
                }
            }
            if Instant::now() >= deadline {
                bail!("the live nodes do not agree on a controller within {timeout:?}: {named:?}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls every live node's own metadata for `topic` until `cond` holds
    /// on each of them (so that no node still serves an older view), at most
    /// `timeout`; returns the view of the first live node. Fails at once if
    /// a node exited on its own.
    pub fn wait_for_topic<F>(
        &mut self,
        what: &str,
        topic: &str,
        timeout: Duration,
        mut cond: F,
    ) -> Result<Vec<PartitionState>>
    where
        F: FnMut(&[PartitionState]) -> bool,
    {
        let deadline = Instant::now() + timeout;
        let mut delay = Duration::from_millis(20);
        loop {
            self.check_alive()?;
            let last = match self.views_agree(topic, &mut cond) {
                Ok(view) => return Ok(view),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {what} (topic {topic}); last: {last}"
                );
            }
            thread::sleep(delay);
            delay = (delay * 2).min(MAX_POLL_DELAY);
        }
    }

    /// Every live node's view satisfies `cond`; the first view, or an error
    /// naming the first node that disagrees.
    fn views_agree<F>(&self, topic: &str, cond: &mut F) -> Result<Vec<PartitionState>>
    where
        F: FnMut(&[PartitionState]) -> bool,
    {
        let mut first = None;
        for node in self
            .nodes
            .iter()
            .filter(|n| n.state() == NodeState::Running)
        {
            let view = node_partitions(node.kafka, topic, METADATA_TIMEOUT)
                .with_context(|| format!("node {}", node.node_id))?;
            if !cond(&view) {
                bail!(
                    "node {} reports {}",
                    node.node_id,
                    metadata::describe(&view)
                );
            }
            first.get_or_insert(view);
        }
        first.ok_or_else(|| anyhow!("no node is running"))
    }

    /// Waits until every live node reports a leader for every partition of
    /// `topic` and every replica in the ISR.
    pub fn wait_for_full_isr(
        &mut self,
        topic: &str,
        timeout: Duration,
    ) -> Result<Vec<PartitionState>> {
        self.wait_for_topic("every replica in the ISR", topic, timeout, |view| {
            !view.is_empty() && view.iter().all(PartitionState::fully_in_sync)
        })
    }

    /// Waits until every live node reports a leader for `partition` that
    /// `accept` takes; returns it.
    pub fn wait_for_leader<F>(
        &mut self,
        topic: &str,
        partition: i32,
        timeout: Duration,
        accept: F,
    ) -> Result<i32>
    where
        F: Fn(i32) -> bool,
    {
        let view = self.wait_for_topic(
            &format!("an acceptable leader of partition {partition}"),
            topic,
            timeout,
            |view| {
                view.iter()
                    .find(|p| p.partition == partition)
                    .and_then(|p| p.leader)
                    .is_some_and(&accept)
            },
        )?;
        view.iter()
            .find(|p| p.partition == partition)
            .and_then(|p| p.leader)
            .ok_or_else(|| anyhow!("{topic}/{partition} lost its leader again"))
    }
}

impl Drop for ClusterProcess {
    fn drop(&mut self) {
        let mut crashed = Vec::new();
        for node in &mut self.nodes {
            if let Ok(Some(status)) = node.poll_exit() {
                crashed.push((node.node_id, status));
            } else if let Some(status) = node.crashed {
                crashed.push((node.node_id, status));
            }
        }
        self.kill_all();
        if thread::panicking() {
            eprintln!(
                "cluster {} (voters {}) at test failure:\n{}",
                self.dir.path().display(),
                self.voters,
                self.log_tails()
            );
        } else if !crashed.is_empty() {
            panic!(
                "nodes exited on their own during the test: {crashed:?}\n{}",
                self.log_tails()
            );
        }
    }
}
