//! One node of a [`super::ClusterProcess`]: its fixed addresses and
//! directory, the `metrobus` process currently running for it, and the
//! small process and port helpers the harness needs.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};

use super::{ClusterOptions, NodeInfo, NodeState};
use crate::http_get;

/// Timeout of one `/health/ready` probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How many bytes of each node's log to print when a test fails.
const LOG_TAIL_BYTES: u64 = 48 * 1024;

/// One node: fixed addresses and directory, and its current process.
#[derive(Debug)]
pub(super) struct Node {
    /// `node.id`, `1..=N`.
    pub(super) node_id: i32,
    /// Kafka listener (`listeners`), fixed for the cluster's lifetime.
    pub(super) kafka: SocketAddr,
    /// The SASL_PLAINTEXT listener, fixed likewise.
    pub(super) sasl: SocketAddr,
    /// `controller.listener` (TCP and UDP), fixed likewise.
    pub(super) controller: SocketAddr,
    /// `http.listener`, fixed likewise.
    pub(super) http: SocketAddr,
    /// `node-N/` in the cluster's temp dir.
    pub(super) dir: PathBuf,
    /// The current process; `None` once it exited and was reaped.
    pub(super) child: Option<Child>,
    /// Stopped with SIGSTOP and not continued since.
    pub(super) paused: bool,
    /// The harness ended the last process itself (kill9/stop), so its exit
    /// is not a crash.
    pub(super) stopped_by_harness: bool,
    /// An exit on its own that a check already reported; Drop reports it
    /// again if the test went on anyway.
    pub(super) crashed: Option<ExitStatus>,
    /// Processes started so far (for the log's marker lines).
    pub(super) starts: u32,
    /// Length of the log file when the current run started.
    pub(super) run_log_start: u64,
}

impl Node {
    pub(super) fn config_path(&self) -> PathBuf {
        self.dir.join("node.toml")
    }

    pub(super) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub(super) fn log_path(&self) -> PathBuf {
        self.dir.join("node.log")
    }

    pub(super) fn state(&self) -> NodeState {
        match (&self.child, self.paused) {
            (None, _) => NodeState::Stopped,
            (Some(_), true) => NodeState::Paused,
            (Some(_), false) => NodeState::Running,
        }
    }

    pub(super) fn info(&self) -> NodeInfo {
        NodeInfo {
            node_id: self.node_id,
            kafka: self.kafka,
            sasl: self.sasl,
            controller: self.controller,
            http: self.http,
            pid: self.child.as_ref().map(Child::id),
            state: self.state(),
            data_dir: self.data_dir(),
            log_path: self.log_path(),
        }
    }

    pub(super) fn write_config(&self, voters: &str) -> Result<()> {
        let text = format!(
            "# written by the metrobus cluster test harness\n\
             node.id = {}\n\
             listeners = {}\n\
             http.listener = {}\n\
             log.dirs = {}\n\
             controller.listener = {}\n\
             controller.quorum.voters = {}\n",
            self.node_id,
            toml_string(&format!(
                "PLAINTEXT://{},SASL_PLAINTEXT://{}",
                self.kafka, self.sasl
            )),
            toml_string(&self.http.to_string()),
            toml_string(&self.data_dir().display().to_string()),
            toml_string(&self.controller.to_string()),
            toml_string(voters),
        );
        fs::create_dir_all(self.data_dir()).context("creating the node's data dir")?;
        fs::write(self.config_path(), text).context("writing the node's config")
    }

    pub(super) fn spawn(&mut self, bin: &Path, opts: &ClusterOptions) -> Result<()> {
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening the node's log")?;
        self.run_log_start = log.metadata()?.len();
        writeln!(
            log,
            "===== metrobus cluster harness: node {} start #{} of {} =====",
            self.node_id,
            self.starts,
            bin.display()
        )?;
        let log_err = log.try_clone()?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .args(&opts.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        // The node sees only the settings this test chose (and the log
        // filter, for debugging).
        for (key, _) in std::env::vars_os() {
            let name = key.to_string_lossy();
            if name.starts_with("METROBUS_") && name != "METROBUS_LOG" {
                cmd.env_remove(&key);
            }
        }
        for (key, value) in &opts.env {
            cmd.env(key, value);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {} for node {}", bin.display(), self.node_id))?;
        self.child = Some(child);
        self.paused = false;
        self.stopped_by_harness = false;
        self.crashed = None;
        Ok(())
    }

    /// `Ok(Some(status))` if the process exited on its own since the last
    /// check; the child is reaped and remembered as crashed.
    pub(super) fn poll_exit(&mut self) -> Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let Some(status) = child.try_wait().context("checking a node process")? else {
            return Ok(None);
        };
        self.child = None;
        self.paused = false;
        if self.stopped_by_harness {
            return Ok(None);
        }
        self.crashed = Some(status);
        Ok(Some(status))
    }

    /// Fails (with the log tail) if the node's process exited on its own.
    pub(super) fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.poll_exit()? {
            bail!(
                "node {} exited on its own with {status}\n{}",
                self.node_id,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// SIGKILL (works on a paused process too) and reap.
    pub(super) fn kill(&mut self) -> Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        self.stopped_by_harness = true;
        self.paused = false;
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        child.kill().context("sending SIGKILL")?;
        Ok(Some(child.wait().context("reaping a killed node")?))
    }

    pub(super) fn pid(&self) -> Result<u32> {
        self.child
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| anyhow!("node {} is not running", self.node_id))
    }

    /// This run's part of the log mentions a failed bind.
    pub(super) fn lost_a_port(&self) -> bool {
        let text = read_from(&self.log_path(), self.run_log_start).to_ascii_lowercase();
        text.contains("address already in use") || text.contains("addrinuse")
    }

    pub(super) fn log_tail(&self) -> String {
        let path = self.log_path();
        let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let text = read_from(&path, len.saturating_sub(LOG_TAIL_BYTES));
        format!(
            "----- node {} log ({}, last {} KiB) -----\n{text}\n----- end of node {} log -----",
            self.node_id,
            path.display(),
            LOG_TAIL_BYTES / 1024,
            self.node_id
        )
    }
}

/// Picks `[kafka, controller, http]` for each node: ports the kernel hands
/// out for port 0, all held until every one is chosen (so none repeats),
/// then released. The controller port is also bound for UDP (gossip).
pub(super) fn pick_ports(nodes: usize) -> Result<Vec<[SocketAddr; 4]>> {
    let mut held_tcp = Vec::new();
    let mut held_udp = Vec::new();
    let mut out = Vec::with_capacity(nodes);
    for _ in 0..nodes {
        let kafka = hold_tcp(&mut held_tcp)?;
        let controller = hold_tcp_and_udp(&mut held_tcp, &mut held_udp)?;
        let http = hold_tcp(&mut held_tcp)?;
        let sasl = hold_tcp(&mut held_tcp)?;
        out.push([kafka, controller, http, sasl]);
    }
    Ok(out)
}

fn hold_tcp(held: &mut Vec<TcpListener>) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    held.push(listener);
    Ok(addr)
}

fn hold_tcp_and_udp(
    held_tcp: &mut Vec<TcpListener>,
    held_udp: &mut Vec<UdpSocket>,
) -> Result<SocketAddr> {
    for _ in 0..20 {
        let addr = hold_tcp(held_tcp)?;
        // A port whose UDP side is taken stays held (for TCP) so that it is
        // not offered again.
        if let Ok(socket) = UdpSocket::bind(addr) {
            held_udp.push(socket);
            return Ok(addr);
        }
    }
    bail!("found no port free for both TCP and UDP in 20 tries")
}

/// `Ok` if `/health/ready` answers 200, else what it answered.
pub(super) fn probe_ready(http: SocketAddr) -> Result<()> {
    let response = http_get(http, "/health/ready", PROBE_TIMEOUT)?;
    if response.status == 200 {
        return Ok(());
    }
    let body = response.text();
    bail!("status {}: {}", response.status, body.trim())
}

/// Sends a signal (`TERM`, `STOP`, `CONT`, ...) with kill(1), as the
/// single-broker harness does (no libc binding, no unsafe).
pub(super) fn signal(pid: u32, name: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .with_context(|| format!("running kill -{name} {pid}"))?;
    if !status.success() {
        bail!("kill -{name} {pid} failed: {status}");
    }
    Ok(())
}

pub(super) fn join_addrs<'a>(nodes: impl Iterator<Item = &'a Node>) -> String {
    nodes
        .map(|n| n.kafka.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The file from byte `start` on, lossily decoded; an explanation instead
/// when it cannot be read.
fn read_from(path: &Path, start: u64) -> String {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return format!("(cannot read {}: {e})", path.display()),
    };
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut buf).is_err() {
        return format!("(cannot read {})", path.display());
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// A TOML basic string.
fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_the_controller_port_is_free_for_udp() {
        let ports = pick_ports(3).unwrap();
        let mut all: Vec<u16> = ports.iter().flatten().map(SocketAddr::port).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 12);
        for [_, controller, _, _] in &ports {
            UdpSocket::bind(controller).unwrap();
        }
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_string("/tmp/x y"), "\"/tmp/x y\"");
        assert_eq!(toml_string("a\nb"), "\"a\\u000Ab\"");
    }
}
