//! The `metrobus` command: `serve` (the default) runs a broker; `config`
//! prints the effective configuration; `healthcheck` asks a running broker
//! whether it is ready (for container healthchecks, with no extra tools).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use metrobus::config::{BrokerConfig, SETTING_NAMES};
use tracing::info;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "metrobus",
    version,
    about = "A Kafka-compatible message bus on RocksDB"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker (the default).
    Serve(ServeArgs),
    /// Print the effective configuration (defaults < file < env < flags).
    Config(ServeArgs),
    /// Exit 0 if the broker's /health/ready answers 200.
    Healthcheck {
        /// The broker's HTTP address.
        #[arg(long, default_value = "127.0.0.1:9644")]
        http: String,
    },
}

#[derive(Debug, Args, Clone, Default)]
struct ServeArgs {
    /// TOML config file (see config/single.toml).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Kafka listener, HOST:PORT (`listeners`).
    #[arg(long)]
    listeners: Option<String>,
    /// HTTP listener for /metrics and health (`http.listener`).
    #[arg(long)]
    http_listener: Option<String>,
    /// Data directory (`log.dirs`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// This node's id (`node.id`).
    #[arg(long)]
    node_id: Option<i32>,
    /// `durable` (fsync, group commit) or `replicated` (`log.flush.policy`).
    #[arg(long)]
    log_flush_policy: Option<String>,
    /// After binding, write `kafka=ADDR` and `http=ADDR` lines to this file.
    #[arg(long)]
    announce_file: Option<PathBuf>,
}

impl ServeArgs {
    fn load(&self) -> anyhow::Result<BrokerConfig> {
        let mut config = BrokerConfig::load(self.config.as_deref())?;
        let flags = [
            ("listeners", self.listeners.clone()),
            ("http.listener", self.http_listener.clone()),
            (
                "log.dirs",
                self.data_dir.as_ref().map(|p| p.display().to_string()),
            ),
            ("node.id", self.node_id.map(|n| n.to_string())),
            ("log.flush.policy", self.log_flush_policy.clone()),
        ];
        for (name, value) in flags {
            if let Some(value) = value {
                config
                    .set(name, &value)
                    .with_context(|| format!("from the command line flag for `{name}`"))?;
            }
        }
        config.validate()?;
        Ok(config)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Config(args)) => {
            let config = args.load()?;
            for name in SETTING_NAMES {
                if let Some(value) = config.get(name) {
                    println!("{name} = {value:?}");
                }
            }
            Ok(())
        }
        Some(Command::Healthcheck { http }) => healthcheck(&http),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("METROBUS_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = args.load()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("metrobus-worker")
        .build()?;
    runtime.block_on(async move {
        let running = metrobus::broker::start(config).await?;
        if let Some(path) = &args.announce_file {
            announce(path, running.kafka_addr(), running.http_addr())?;
        }
        wait_for_signal().await?;
        running.shutdown().await;
        anyhow::Ok(())
    })
}

/// Writes the bound addresses atomically (write, then rename), so a reader
/// that sees the file sees all of it.
fn announce(
    path: &std::path::Path,
    kafka: std::net::SocketAddr,
    http: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("kafka={kafka}\nhttp={http}\n"))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => info!("received SIGTERM"),
        _ = interrupt.recv() => info!("received SIGINT"),
    }
    Ok(())
}

fn healthcheck(http: &str) -> anyhow::Result<()> {
    let addr = http
        .parse()
        .with_context(|| format!("`{http}` is not an address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /health/ready HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response)?;
    if response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        anyhow::bail!(
            "not ready: {}",
            response.lines().next().unwrap_or("no answer")
        )
    }
}
