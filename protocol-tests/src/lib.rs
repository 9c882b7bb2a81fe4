//! Black-box test harness for Metrobus.
//!
//! [`BrokerProcess`] runs the real `metrobus` binary as a child process with
//! a temporary data directory and port 0 for every listener, waits for its
//! announce file, and hands out rdkafka clients that talk to it. Every wait is
//! bounded, no port is fixed, and each test starts its own broker, so tests
//! run in parallel safely.
//!
//! [`proxy::CuttingProxy`] sits between clients and a broker (which
//! advertises the proxy) to cut every connection at chosen moments.
//!
//! [`cluster::ClusterProcess`] runs several brokers as one cluster on
//! loopback and kills, pauses, stops and restarts them ([`cluster::load`]
//! has the load and the no-loss check for failure tests).
//!
//! The binary is taken from `METROBUS_BIN`, or else from next to the test
//! executable (`target/release/deps/NAME` -> `target/release/metrobus`). Build
//! it first: `cargo build --release -p metrobus`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tempfile::TempDir;

pub use rdkafka;

/// How long a broker may take from spawn to a complete announce file.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERM'd broker may take to exit before it is killed.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// Default timeout for a single client operation in the tests.
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);

/// How many bytes of the broker's log to print when a test fails.
const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// Options for starting a broker.
#[derive(Debug, Clone, Default)]
pub struct BrokerOptions {
    /// Extra environment variables (e.g. `METROBUS_NUM_PARTITIONS=3`).
    pub env: Vec<(String, String)>,
    /// Extra command-line arguments, appended after the harness's own.
    pub args: Vec<String>,
    /// Startup timeout; [`STARTUP_TIMEOUT`] when `None`.
    pub startup_timeout: Option<Duration>,
    /// `--listeners`; one PLAINTEXT listener on a free port when `None`.
    pub listeners: Option<String>,
}

impl BrokerOptions {
    /// Default options: no extra env, no extra args.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an environment variable for the broker process.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the broker's `listeners` (use port 0: [`BrokerProcess::listener`]
    /// tells the bound address by listener name).
    pub fn listeners(mut self, listeners: impl Into<String>) -> Self {
        self.listeners = Some(listeners.into());
        self
    }

    /// Adds a command-line argument for the broker process.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }
}

/// A `metrobus` child process with its own temporary directory.
///
/// Layout of the temporary directory: `data/` (the broker's data dir),
/// `announce` (the announce file), `broker.log` (stdout and stderr of every
/// run, appended, with a marker line per start).
#[derive(Debug)]
pub struct BrokerProcess {
    dir: TempDir,
    opts: BrokerOptions,
    child: Option<Child>,
    /// Set when the harness itself stopped the process (kill9/terminate), so
    /// that an exit is not reported as a crash.
    stopped_by_harness: bool,
    kafka: SocketAddr,
    http: SocketAddr,
    /// Every listener's bound address, by name.
    listeners: Vec<(String, SocketAddr)>,
    starts: u32,
}

impl BrokerProcess {
    /// Starts a broker with the given options and waits until it announced
    /// its listeners.
    pub fn start(opts: BrokerOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("metrobus-test-")
            .tempdir()
            .context("creating the broker's temp dir")?;
        fs::create_dir_all(dir.path().join("data")).context("creating data dir")?;
        let mut broker = BrokerProcess {
            dir,
            opts,
            child: None,
            stopped_by_harness: false,
            kafka: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            listeners: Vec::new(),
            starts: 0,
        };
        broker.spawn()?;
        Ok(broker)
    }

    /// Starts a broker with default options, panicking (with the broker's
    /// log) when it cannot start.
    pub fn start_default() -> Self {
        Self::start(BrokerOptions::new()).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Starts a broker with the given environment variables, panicking when
    /// it cannot start.
    pub fn start_with_env(env: &[(&str, &str)]) -> Self {
        let mut opts = BrokerOptions::new();
        for (k, v) in env {
            opts = opts.env(*k, *v);
        }
        Self::start(opts).unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn announce_path(&self) -> PathBuf {
        self.dir.path().join("announce")
    }

    /// The broker's data directory (kept across restarts).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file that receives the broker's stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    /// The temporary directory owned by this broker (for extra test files).
    pub fn temp_dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) -> Result<()> {
        let bin = metrobus_bin()?;
        let announce = self.announce_path();
        match fs::remove_file(&announce) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("removing old announce file"),
        }
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening broker log")?;
        writeln!(
            log,
            "===== metrobus test harness: start #{} of {} =====",
            self.starts,
            bin.display()
        )?;
        let log_err = log.try_clone()?;

        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .arg("--listeners")
            .arg(self.opts.listeners.as_deref().unwrap_or("127.0.0.1:0"))
            .arg("--http-listener")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--announce-file")
            .arg(&announce)
            .args(&self.opts.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        // The broker must see only the settings this test chose.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("METROBUS_") {
                cmd.env_remove(&key);
            }
        }
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        self.child = Some(child);
        self.stopped_by_harness = false;

        let timeout = self.opts.startup_timeout.unwrap_or(STARTUP_TIMEOUT);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child_mut()?.try_wait()? {
                self.child = None;
                bail!(
                    "metrobus exited during startup with {status}\n{}",
                    self.log_tail()
                );
            }
            if let Ok(text) = fs::read_to_string(&announce) {
                let (kafka, http) = parse_announce(&text).with_context(|| {
                    format!("bad announce file {}: {text:?}", announce.display())
                })?;
                self.kafka = kafka;
                self.http = http;
                self.listeners = text
                    .lines()
                    .filter_map(|line| line.trim().strip_prefix("listener."))
                    .filter_map(|rest| rest.split_once('='))
                    .filter_map(|(name, addr)| Some((name.to_owned(), resolve(addr).ok()?)))
                    .collect();
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.kill_child();
                bail!(
                    "metrobus did not write its announce file {} within {timeout:?}\n{}",
                    announce.display(),
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn child_mut(&mut self) -> Result<&mut Child> {
        self.child
            .as_mut()
            .ok_or_else(|| anyhow!("broker process is not running"))
    }

    fn kill_child(&mut self) -> Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        self.stopped_by_harness = true;
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        child.kill().context("sending SIGKILL")?;
        Ok(Some(child.wait().context("waiting for killed broker")?))
    }

    /// The Kafka bootstrap address, `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        self.kafka.to_string()
    }

    /// The Kafka listener address.
    pub fn kafka_addr(&self) -> SocketAddr {
        self.kafka
    }

    /// The bound address of listener `name` (e.g. `SASL_PLAINTEXT`).
    pub fn listener(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, addr)| *addr)
            .unwrap_or_else(|| panic!("the broker has no listener {name}: {:?}", self.listeners))
    }

    /// The HTTP (metrics and health) listener address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// The process id of the running broker.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the broker with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        if let Err(e) = self.kill_child() {
            panic!("kill -9 of the broker failed: {e:#}");
        }
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit; returns its
    /// exit status. Kills it with SIGKILL and fails if it does not exit in
    /// time.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow!("broker process is not running"))?;
        self.stopped_by_harness = true;
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .context("running kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM {pid} failed: {status}");
        }
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            if let Some(status) = self.child_mut()?.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.kill_child();
                bail!(
                    "broker did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM\n{}",
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the broker again on the same data directory (new ports). A
    /// running broker is stopped with SIGTERM first.
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.terminate()?;
        }
        self.spawn()
    }

    /// Whether the broker process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Fails (with the broker log) if the process has exited.
    pub fn assert_alive(&mut self) {
        if let Some(child) = self.child.as_mut() {
            match child.try_wait() {
                Ok(None) => return,
                Ok(Some(status)) => {
                    self.child = None;
                    panic!(
                        "broker exited unexpectedly with {status}\n{}",
                        self.log_tail()
                    );
                }
                Err(e) => panic!("checking broker process: {e}"),
            }
        }
        panic!("broker is not running\n{}", self.log_tail());
    }

    /// Resident set size of the broker process in bytes (from /proc).
    pub fn rss_bytes(&self) -> Option<u64> {
        let pid = self.pid()?;
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    }

    /// The last part of the broker's combined stdout/stderr, framed for
    /// printing.
    pub fn log_tail(&self) -> String {
        let path = self.log_path();
        let text = match File::open(&path) {
            Ok(mut f) => {
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                let start = len.saturating_sub(LOG_TAIL_BYTES);
                let mut buf = Vec::new();
                if start > 0 {
                    use std::io::Seek;
                    let _ = f.seek(std::io::SeekFrom::Start(start));
                }
                let _ = f.read_to_end(&mut buf);
                String::from_utf8_lossy(&buf).into_owned()
            }
            Err(e) => format!("(cannot read {}: {e})", path.display()),
        };
        format!(
            "----- broker log ({}, last {} KiB) -----\n{text}\n----- end of broker log -----",
            path.display(),
            LOG_TAIL_BYTES / 1024
        )
    }

    /// A client config with `bootstrap.servers` pointing at this broker.
    pub fn client_config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", self.bootstrap())
            .set("broker.address.family", "v4")
            .set("client.id", "metrobus-protocol-tests");
        cfg
    }

    /// A `FutureProducer` with acks=all, no idempotence, a 30 s message
    /// timeout and the given overrides.
    pub fn producer(&self, overrides: &[(&str, &str)]) -> FutureProducer {
        let mut cfg = self.client_config();
        cfg.set("acks", "all")
            .set("enable.idempotence", "false")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000");
        for (k, v) in overrides {
            cfg.set(*k, *v);
        }
        cfg.create().expect("creating producer")
    }

    /// A `BaseConsumer` for assign mode: unique group id (librdkafka requires
    /// one for assign), no commits, partition EOF events on, and the given
    /// overrides.
    pub fn consumer(&self, overrides: &[(&str, &str)]) -> BaseConsumer {
        let mut cfg = self.client_config();
        cfg.set("group.id", unique_name("metrobus-test-group"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true");
        for (k, v) in overrides {
            cfg.set(*k, *v);
        }
        cfg.create().expect("creating consumer")
    }

    /// An admin client.
    pub fn admin(&self) -> AdminClient<DefaultClientContext> {
        self.client_config()
            .create()
            .expect("creating admin client")
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let crashed = match self.child.as_mut() {
            Some(child) => match child.try_wait() {
                Ok(Some(status)) if !self.stopped_by_harness => Some(status),
                _ => None,
            },
            None => None,
        };
        let _ = self.kill_child();
        if thread::panicking() {
            eprintln!(
                "broker {} (kafka {}, http {}) at test failure:\n{}",
                self.dir.path().display(),
                self.kafka,
                self.http,
                self.log_tail()
            );
        } else if let Some(status) = crashed {
            panic!(
                "broker exited on its own during the test with {status}\n{}",
                self.log_tail()
            );
        }
    }
}

fn parse_announce(text: &str) -> Result<(SocketAddr, SocketAddr)> {
    let mut kafka = None;
    let mut http = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("kafka=") {
            kafka = Some(resolve(v)?);
        } else if let Some(v) = line.strip_prefix("http=") {
            http = Some(resolve(v)?);
        }
    }
    Ok((
        kafka.ok_or_else(|| anyhow!("no kafka= line"))?,
        http.ok_or_else(|| anyhow!("no http= line"))?,
    ))
}

fn resolve(addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .ok_or_else(|| anyhow!("{addr} resolves to nothing"))
}

/// Path of the `metrobus` binary: `METROBUS_BIN`, else next to the test
/// executable's target directory. Fails with instructions when missing.
pub fn metrobus_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("METROBUS_BIN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("METROBUS_BIN={} does not exist", p.display());
    }
    let exe = std::env::current_exe().context("current_exe")?;
    let mut candidates = Vec::new();
    if let Some(dir) = exe.parent() {
        // target/release/deps/NAME -> target/release/metrobus
        if dir.file_name().is_some_and(|n| n == "deps") {
            if let Some(profile_dir) = dir.parent() {
                candidates.push(profile_dir.join("metrobus"));
            }
        }
        // target/release/NAME (a binary such as the bench client)
        candidates.push(dir.join("metrobus"));
    }
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    bail!(
        "the metrobus binary was not found (looked at: {}); build it with \
         `cargo build --release -p metrobus` using the same CARGO_TARGET_DIR, \
         or set METROBUS_BIN",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A name unique within this machine's test runs: `PREFIX-PID-N-NANOS`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Looks a program up on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Polls `cond` until it returns `Ok(true)`, at most `timeout`; returns the
/// last error or a timeout error naming `what`. For conditions that have no
/// event to wait on (metadata propagation in another process).
pub fn wait_until<F>(what: &str, timeout: Duration, mut cond: F) -> Result<()>
where
    F: FnMut() -> Result<bool>,
{
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(10);
    let mut last_err = None;
    loop {
        match cond() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() >= deadline {
            return Err(match last_err {
                Some(e) => e.context(format!("timed out after {timeout:?} waiting for {what}")),
                None => anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

/// Creates a topic with replication factor 1 and the given configs; fails
/// on any error.
pub async fn create_topic(
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<()> {
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(OP_TIMEOUT));
    let results = tokio::time::timeout(OP_TIMEOUT, admin.create_topics([&topic], &opts))
        .await
        .context("create_topics timed out")?
        .context("create_topics")?;
    for r in results {
        if let Err((t, code)) = r {
            bail!("creating topic {t} failed: {code:?}");
        }
    }
    Ok(())
}

/// Names of the topics a full (all-topics) metadata request returns. An
/// all-topics request never auto-creates anything.
pub fn list_topics(consumer: &BaseConsumer) -> Result<Vec<String>> {
    let md = consumer
        .fetch_metadata(None, OP_TIMEOUT)
        .context("fetching metadata")?;
    Ok(md.topics().iter().map(|t| t.name().to_string()).collect())
}

/// Number of partitions a topic has according to metadata (consumers never
/// auto-create), or an error when the topic is unknown.
pub fn partition_count(consumer: &BaseConsumer, topic: &str) -> Result<usize> {
    let md = consumer
        .fetch_metadata(Some(topic), OP_TIMEOUT)
        .context("fetching metadata")?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| anyhow!("topic {topic} not in metadata response"))?;
    if let Some(err) = t.error() {
        bail!("topic {topic} has metadata error {err:?}");
    }
    Ok(t.partitions().len())
}

/// Assigns partitions `0..partitions` of `topic`, all at `offset`.
pub fn assign(consumer: &BaseConsumer, topic: &str, partitions: i32, offset: Offset) {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, offset)
            .expect("adding partition to assignment");
    }
    consumer.assign(&tpl).expect("assign");
}

/// Polls until `n` messages arrived (partition EOF events are skipped) or
/// `timeout` passed. Any other consumer error fails.
pub fn consume_n(
    consumer: &BaseConsumer,
    n: usize,
    timeout: Duration,
) -> Result<Vec<OwnedMessage>> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "timed out after {timeout:?}: got {} of {n} messages",
                out.len()
            );
        }
        match consumer.poll(left.min(Duration::from_millis(500))) {
            None => {}
            Some(Ok(m)) => out.push(m.detach()),
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => bail!("consumer error after {} messages: {e}", out.len()),
        }
    }
    Ok(out)
}

/// Polls for `dur` and fails if any message (or error other than partition
/// EOF) arrives.
pub fn expect_no_message(consumer: &BaseConsumer, dur: Duration) -> Result<()> {
    let deadline = Instant::now() + dur;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        match consumer.poll(left) {
            None => {}
            Some(Ok(m)) => bail!(
                "unexpected message at {}/{} offset {}",
                m.topic(),
                m.partition(),
                m.offset()
            ),
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => bail!("unexpected consumer error: {e}"),
        }
    }
}

/// Polls until every one of `partitions` partitions reported EOF (after
/// which nothing is outstanding), collecting messages; bounded by `timeout`.
pub fn consume_to_end(
    consumer: &BaseConsumer,
    partitions: usize,
    timeout: Duration,
) -> Result<Vec<OwnedMessage>> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut eof = std::collections::HashSet::new();
    while eof.len() < partitions {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "timed out after {timeout:?}: {} messages, EOF on {} of {partitions} partitions",
                out.len(),
                eof.len()
            );
        }
        match consumer.poll(left.min(Duration::from_millis(500))) {
            None => {}
            Some(Ok(m)) => {
                eof.remove(&m.partition());
                out.push(m.detach());
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => bail!("consumer error after {} messages: {e}", out.len()),
        }
    }
    Ok(out)
}

/// Short description of a message for assertion messages.
pub fn describe(m: &BorrowedMessage<'_>) -> String {
    format!("{}/{}@{}", m.topic(), m.partition(), m.offset())
}

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// Body, de-chunked.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A plain HTTP/1.1 GET over a `TcpStream` with `Connection: close`.
pub fn http_get(addr: SocketAddr, path_and_query: &str, timeout: Duration) -> Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: metrobus-protocol-tests\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading response to GET {path_and_query}"))?;
    parse_http_response(&raw).with_context(|| format!("parsing response to GET {path_and_query}"))
}

fn parse_http_response(raw: &[u8]) -> Result<HttpResponse> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in {} bytes", raw.len()))?;
    let head = std::str::from_utf8(&raw[..head_end]).context("headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        bail!("bad status line {status_line:?}");
    }
    let status: u16 = parts
        .next()
        .ok_or_else(|| anyhow!("no status code in {status_line:?}"))?
        .parse()
        .with_context(|| format!("bad status code in {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[head_end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some((_, len)) = headers.iter().find(|(k, _)| k == "content-length") {
        let len: usize = len.parse().context("bad content-length")?;
        if rest.len() < len {
            bail!("body has {} bytes, content-length {len}", rest.len());
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("truncated chunk size line"))?;
        let size_str = std::str::from_utf8(&data[..line_end])?;
        let size_str = size_str.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_str, 16)
            .with_context(|| format!("bad chunk size {size_str:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// A small deterministic xorshift generator for test data (no `rand` dep).
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

pub mod cluster;
pub mod proxy;
pub mod tenancy;

/// Hand-written Kafka wire encoding for tests that must send exact bytes
/// (bad input, acks=0, corrupt batches) that no client library would send.
pub mod wire {
    use std::io::{ErrorKind, Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::{Duration, Instant};

    use anyhow::{anyhow, bail, Context as _, Result};

    /// Api keys used by the tests.
    pub mod api {
        /// Produce.
        pub const PRODUCE: i16 = 0;
        /// Fetch.
        pub const FETCH: i16 = 1;
        /// ListOffsets.
        pub const LIST_OFFSETS: i16 = 2;
        /// Metadata.
        pub const METADATA: i16 = 3;
        /// ApiVersions.
        pub const API_VERSIONS: i16 = 18;
    }

    /// CRC-32C (Castagnoli), as used by record batches v2.
    pub fn crc32c(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                let mask = (crc & 1).wrapping_neg();
                crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
            }
        }
        !crc
    }

    /// A byte buffer with Kafka primitive writers.
    #[derive(Debug, Default, Clone)]
    pub struct Buf(pub Vec<u8>);

    impl Buf {
        /// An empty buffer.
        pub fn new() -> Self {
            Self::default()
        }
        /// i8.
        pub fn i8(&mut self, v: i8) -> &mut Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        /// i16.
        pub fn i16(&mut self, v: i16) -> &mut Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        /// i32.
        pub fn i32(&mut self, v: i32) -> &mut Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        /// i64.
        pub fn i64(&mut self, v: i64) -> &mut Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        /// Raw bytes.
        pub fn raw(&mut self, v: &[u8]) -> &mut Self {
            self.0.extend_from_slice(v);
            self
        }
        /// Unsigned varint.
        pub fn uvarint(&mut self, mut v: u64) -> &mut Self {
            while v >= 0x80 {
                self.0.push((v as u8) | 0x80);
                v >>= 7;
            }
            self.0.push(v as u8);
            self
        }
        /// Zigzag varint / varlong.
        pub fn varint(&mut self, v: i64) -> &mut Self {
            self.uvarint(((v << 1) ^ (v >> 63)) as u64)
        }
        /// STRING / NULLABLE_STRING (i16 length, -1 for null).
        pub fn string(&mut self, v: Option<&str>) -> &mut Self {
            match v {
                None => self.i16(-1),
                Some(s) => self.i16(s.len() as i16).raw(s.as_bytes()),
            }
        }
        /// COMPACT_STRING / COMPACT_NULLABLE_STRING.
        pub fn compact_string(&mut self, v: Option<&str>) -> &mut Self {
            match v {
                None => self.uvarint(0),
                Some(s) => self.uvarint(s.len() as u64 + 1).raw(s.as_bytes()),
            }
        }
        /// BYTES (i32 length).
        pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
            self.i32(v.len() as i32).raw(v)
        }
        /// An empty tagged-field section.
        pub fn no_tags(&mut self) -> &mut Self {
            self.uvarint(0)
        }
    }

    /// A reader over a response body.
    #[derive(Debug, Clone)]
    pub struct Reader<'a> {
        data: &'a [u8],
        pos: usize,
    }

    impl<'a> Reader<'a> {
        /// A reader at the start of `data`.
        pub fn new(data: &'a [u8]) -> Self {
            Reader { data, pos: 0 }
        }
        fn take(&mut self, n: usize) -> Result<&'a [u8]> {
            if self.data.len() - self.pos < n {
                bail!(
                    "truncated response: need {n} bytes at {} of {}",
                    self.pos,
                    self.data.len()
                );
            }
            let s = &self.data[self.pos..self.pos + n];
            self.pos += n;
            Ok(s)
        }
        /// Bytes not read yet.
        pub fn remaining(&self) -> usize {
            self.data.len() - self.pos
        }
        /// i8.
        pub fn i8(&mut self) -> Result<i8> {
            Ok(self.take(1)?[0] as i8)
        }
        /// i16.
        pub fn i16(&mut self) -> Result<i16> {
            Ok(i16::from_be_bytes(self.take(2)?.try_into()?))
        }
        /// i32.
        pub fn i32(&mut self) -> Result<i32> {
            Ok(i32::from_be_bytes(self.take(4)?.try_into()?))
        }
        /// i64.
        pub fn i64(&mut self) -> Result<i64> {
            Ok(i64::from_be_bytes(self.take(8)?.try_into()?))
        }
        /// Unsigned varint.
        pub fn uvarint(&mut self) -> Result<u64> {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let b = self.take(1)?[0];
                v |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    return Ok(v);
                }
            }
            bail!("varint too long")
        }
        /// STRING / NULLABLE_STRING.
        pub fn string(&mut self) -> Result<Option<String>> {
            let n = self.i16()?;
            if n < 0 {
                return Ok(None);
            }
            Ok(Some(String::from_utf8(self.take(n as usize)?.to_vec())?))
        }
        /// COMPACT_STRING / COMPACT_NULLABLE_STRING.
        pub fn compact_string(&mut self) -> Result<Option<String>> {
            let n = self.uvarint()?;
            if n == 0 {
                return Ok(None);
            }
            Ok(Some(String::from_utf8(
                self.take((n - 1) as usize)?.to_vec(),
            )?))
        }
        /// Skips a tagged-field section, returning the tags seen.
        pub fn tags(&mut self) -> Result<Vec<u64>> {
            let n = self.uvarint()?;
            let mut tags = Vec::new();
            for _ in 0..n {
                let tag = self.uvarint()?;
                let len = self.uvarint()? as usize;
                self.take(len)?;
                tags.push(tag);
            }
            Ok(tags)
        }
    }

    /// Request header v1 (api key, version, correlation id, client id).
    pub fn header_v1(api_key: i16, version: i16, correlation_id: i32) -> Buf {
        let mut b = Buf::new();
        b.i16(api_key)
            .i16(version)
            .i32(correlation_id)
            .string(Some("metrobus-raw"));
        b
    }

    /// Request header v2 (v1 plus an empty tagged-field section).
    pub fn header_v2(api_key: i16, version: i16, correlation_id: i32) -> Buf {
        let mut b = header_v1(api_key, version, correlation_id);
        b.no_tags();
        b
    }

    /// Length-prefixes a request.
    pub fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + 4);
        out.extend_from_slice(&(body.len() as i32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// One record for [`record_batch`].
    #[derive(Debug, Clone)]
    pub struct RawRecord<'a> {
        /// Key (None = null).
        pub key: Option<&'a [u8]>,
        /// Value (None = null).
        pub value: Option<&'a [u8]>,
        /// Absolute timestamp in ms.
        pub timestamp: i64,
    }

    /// An uncompressed magic-2 record batch with a correct CRC, base offset 0,
    /// no producer id.
    pub fn record_batch(records: &[RawRecord<'_>]) -> Vec<u8> {
        assert!(!records.is_empty());
        let base_ts = records[0].timestamp;
        let max_ts = records.iter().map(|r| r.timestamp).max().unwrap_or(base_ts);
        // Everything the CRC covers: attributes .. end.
        let mut tail = Buf::new();
        tail.i16(0) // attributes: no compression, CreateTime
            .i32(records.len() as i32 - 1) // lastOffsetDelta
            .i64(base_ts)
            .i64(max_ts)
            .i64(-1) // producerId
            .i16(-1) // producerEpoch
            .i32(-1) // baseSequence
            .i32(records.len() as i32);
        for (i, r) in records.iter().enumerate() {
            let mut rec = Buf::new();
            rec.i8(0).varint(r.timestamp - base_ts).varint(i as i64);
            match r.key {
                None => rec.varint(-1),
                Some(k) => rec.varint(k.len() as i64).raw(k),
            };
            match r.value {
                None => rec.varint(-1),
                Some(v) => rec.varint(v.len() as i64).raw(v),
            };
            rec.varint(0); // headers
            tail.varint(rec.0.len() as i64).raw(&rec.0);
        }
        let crc = crc32c(&tail.0);
        let mut b = Buf::new();
        b.i64(0) // baseOffset
            .i32((4 + 1 + 4 + tail.0.len()) as i32) // batchLength
            .i32(-1) // partitionLeaderEpoch
            .i8(2) // magic
            .raw(&crc.to_be_bytes())
            .raw(&tail.0);
        b.0
    }

    /// A Produce v3 request (header v1) for one partition.
    pub fn produce_v3(
        correlation_id: i32,
        acks: i16,
        topic: &str,
        partition: i32,
        records: &[u8],
    ) -> Vec<u8> {
        let mut b = header_v1(api::PRODUCE, 3, correlation_id);
        b.string(None) // transactional id
            .i16(acks)
            .i32(10_000)
            .i32(1)
            .string(Some(topic))
            .i32(1)
            .i32(partition)
            .bytes(records);
        frame(&b.0)
    }

    /// What a connection did after a request.
    #[derive(Debug)]
    pub enum Outcome {
        /// The broker closed (or reset) the connection.
        Closed,
        /// A complete response frame (without its length prefix).
        Response(Vec<u8>),
        /// Nothing within the timeout.
        Silent,
    }

    /// A raw connection to the broker.
    #[derive(Debug)]
    pub struct Conn {
        /// The socket.
        pub stream: TcpStream,
    }

    impl Conn {
        /// Connects with a 10 s connect timeout.
        pub fn connect(addr: SocketAddr) -> Result<Self> {
            let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                .with_context(|| format!("connecting to {addr}"))?;
            stream.set_nodelay(true)?;
            stream.set_write_timeout(Some(Duration::from_secs(10)))?;
            Ok(Conn { stream })
        }

        /// Writes bytes. A broker that already closed the connection may
        /// make this fail; the caller decides whether that matters.
        pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
            self.stream.write_all(bytes)?;
            self.stream.flush()
        }

        /// Reads one response frame, or reports a close or silence.
        pub fn outcome(&mut self, timeout: Duration) -> Result<Outcome> {
            let deadline = Instant::now() + timeout;
            let mut len = [0u8; 4];
            match self.read_full(&mut len, deadline)? {
                ReadEnd::Done => {}
                ReadEnd::Closed => return Ok(Outcome::Closed),
                ReadEnd::Timeout => return Ok(Outcome::Silent),
            }
            let n = i32::from_be_bytes(len);
            if !(0..=256 * 1024 * 1024).contains(&n) {
                bail!("broker sent a response frame of length {n}");
            }
            let mut body = vec![0u8; n as usize];
            match self.read_full(&mut body, deadline + Duration::from_secs(10))? {
                ReadEnd::Done => Ok(Outcome::Response(body)),
                ReadEnd::Closed => bail!("connection closed inside a {n}-byte response"),
                ReadEnd::Timeout => bail!("timed out inside a {n}-byte response"),
            }
        }

        /// Reads one response frame; fails on close or timeout.
        pub fn response(&mut self, timeout: Duration) -> Result<Vec<u8>> {
            match self.outcome(timeout)? {
                Outcome::Response(r) => Ok(r),
                Outcome::Closed => Err(anyhow!("connection closed instead of a response")),
                Outcome::Silent => Err(anyhow!("no response within {timeout:?}")),
            }
        }

        /// Sends a framed request and reads the response, checking the
        /// correlation id; returns the bytes after the correlation id.
        pub fn round_trip(&mut self, framed: &[u8], correlation_id: i32) -> Result<Vec<u8>> {
            self.send(framed).context("sending request")?;
            let resp = self.response(Duration::from_secs(10))?;
            let mut r = Reader::new(&resp);
            let corr = r.i32()?;
            if corr != correlation_id {
                bail!("response correlation id {corr}, expected {correlation_id}");
            }
            Ok(resp[4..].to_vec())
        }

        fn read_full(&mut self, buf: &mut [u8], deadline: Instant) -> Result<ReadEnd> {
            let mut got = 0;
            while got < buf.len() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(ReadEnd::Timeout);
                }
                self.stream.set_read_timeout(Some(left))?;
                match self.stream.read(&mut buf[got..]) {
                    Ok(0) => return Ok(ReadEnd::Closed),
                    Ok(n) => got += n,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        return Ok(ReadEnd::Timeout)
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::ConnectionReset
                                | ErrorKind::ConnectionAborted
                                | ErrorKind::BrokenPipe
                        ) =>
                    {
                        return Ok(ReadEnd::Closed)
                    }
                    Err(e) => return Err(e).context("reading from broker"),
                }
            }
            Ok(ReadEnd::Done)
        }
    }

    enum ReadEnd {
        Done,
        Closed,
        Timeout,
    }

    /// One entry of an ApiVersions response.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ApiRange {
        /// Api key.
        pub key: i16,
        /// Lowest supported version.
        pub min: i16,
        /// Highest supported version.
        pub max: i16,
    }

    /// ApiVersions v0 request.
    pub fn api_versions_v0(correlation_id: i32) -> Vec<u8> {
        frame(&header_v1(api::API_VERSIONS, 0, correlation_id).0)
    }

    /// ApiVersions request in the v3+ (flexible) format at `version`.
    pub fn api_versions_flexible(correlation_id: i32, version: i16) -> Vec<u8> {
        let mut b = header_v2(api::API_VERSIONS, version, correlation_id);
        b.compact_string(Some("metrobus-raw"))
            .compact_string(Some("0.1"))
            .no_tags();
        frame(&b.0)
    }

    /// Parses an ApiVersions v0 body (error code, i32-counted array, nothing
    /// else); fails on trailing bytes.
    pub fn parse_api_versions_v0(body: &[u8]) -> Result<(i16, Vec<ApiRange>)> {
        let mut r = Reader::new(body);
        let err = r.i16()?;
        let n = r.i32()?;
        if !(0..=10_000).contains(&n) {
            bail!("api count {n}");
        }
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(ApiRange {
                key: r.i16()?,
                min: r.i16()?,
                max: r.i16()?,
            });
        }
        if r.remaining() != 0 {
            bail!(
                "{} trailing bytes after an ApiVersions v0 body",
                r.remaining()
            );
        }
        Ok((err, out))
    }

    /// Parses an ApiVersions v3 body; returns error code, apis, throttle
    /// time and the top-level tags present. Fails on trailing bytes.
    pub fn parse_api_versions_v3(body: &[u8]) -> Result<(i16, Vec<ApiRange>, i32, Vec<u64>)> {
        let mut r = Reader::new(body);
        // Response header v0 for ApiVersions: the caller stripped the
        // correlation id; there is no header tag section.
        let err = r.i16()?;
        let n = r.uvarint()?;
        if n == 0 {
            bail!("null api_keys array");
        }
        let mut out = Vec::new();
        for _ in 0..n - 1 {
            let a = ApiRange {
                key: r.i16()?,
                min: r.i16()?,
                max: r.i16()?,
            };
            r.tags()?;
            out.push(a);
        }
        let throttle = r.i32()?;
        let tags = r.tags()?;
        if r.remaining() != 0 {
            bail!(
                "{} trailing bytes after an ApiVersions v3 body",
                r.remaining()
            );
        }
        Ok((err, out, throttle, tags))
    }

    /// Fetches the broker's ApiVersions (v0) on a fresh connection.
    pub fn api_versions(addr: SocketAddr) -> Result<Vec<ApiRange>> {
        let mut c = Conn::connect(addr)?;
        let body = c.round_trip(&api_versions_v0(1), 1)?;
        let (err, apis) = parse_api_versions_v0(&body)?;
        if err != 0 {
            bail!("ApiVersions v0 error {err}");
        }
        Ok(apis)
    }

    /// Parses a Produce v3 response body: per partition (topic, partition,
    /// error code, base offset).
    pub fn parse_produce_v3(body: &[u8]) -> Result<Vec<(String, i32, i16, i64)>> {
        let mut r = Reader::new(body);
        let mut out = Vec::new();
        let nt = r.i32()?;
        for _ in 0..nt {
            let topic = r.string()?.unwrap_or_default();
            let np = r.i32()?;
            for _ in 0..np {
                let p = r.i32()?;
                let err = r.i16()?;
                let base = r.i64()?;
                let _log_append_time = r.i64()?;
                out.push((topic.clone(), p, err, base));
            }
        }
        let _throttle = r.i32()?;
        if r.remaining() != 0 {
            bail!("{} trailing bytes after a Produce v3 body", r.remaining());
        }
        Ok(out)
    }

    /// A ListOffsets v7 request (flexible) for one partition.
    pub fn list_offsets_v7(
        correlation_id: i32,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Vec<u8> {
        let mut b = header_v2(api::LIST_OFFSETS, 7, correlation_id);
        b.i32(-1) // replica id
            .i8(0) // read_uncommitted
            .uvarint(2)
            .compact_string(Some(topic))
            .uvarint(2)
            .i32(partition)
            .i32(-1) // current leader epoch
            .i64(timestamp)
            .no_tags()
            .no_tags()
            .no_tags();
        frame(&b.0)
    }

    /// Parses a ListOffsets v7 response (after the correlation id, with the
    /// v1 response header's tag section): (error, timestamp, offset) of the
    /// first partition.
    pub fn parse_list_offsets_v7(body: &[u8]) -> Result<(i16, i64, i64)> {
        let mut r = Reader::new(body);
        r.tags()?; // response header v1
        let _throttle = r.i32()?;
        let nt = r.uvarint()?;
        if nt != 2 {
            bail!("expected one topic, got compact count {nt}");
        }
        let _topic = r.compact_string()?;
        let np = r.uvarint()?;
        if np != 2 {
            bail!("expected one partition, got compact count {np}");
        }
        let _p = r.i32()?;
        let err = r.i16()?;
        let ts = r.i64()?;
        let off = r.i64()?;
        let _epoch = r.i32()?;
        r.tags()?;
        r.tags()?;
        r.tags()?;
        if r.remaining() != 0 {
            bail!(
                "{} trailing bytes after a ListOffsets v7 body",
                r.remaining()
            );
        }
        Ok((err, ts, off))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_vector() {
        assert_eq!(wire::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn varints() {
        let mut b = wire::Buf::new();
        b.varint(-1).varint(0).varint(1).varint(300).uvarint(300);
        assert_eq!(b.0, vec![1, 0, 2, 0xd8, 0x04, 0xac, 0x02]);
        let mut r = wire::Reader::new(&b.0[5..]);
        assert_eq!(r.uvarint().unwrap(), 300);
    }

    #[test]
    fn announce_parses() {
        let (k, h) = parse_announce("kafka=127.0.0.1:1234\nhttp=127.0.0.1:5678\n").unwrap();
        assert_eq!(k.port(), 1234);
        assert_eq!(h.port(), 5678);
        assert!(parse_announce("kafka=127.0.0.1:1\n").is_err());
    }

    #[test]
    fn http_parses_plain_and_chunked() {
        let r = parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
        let r = parse_http_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.text(), "abcde");
    }
}
