//! `metrobus-bench`: a benchmark client built on librdkafka (DESIGN.md section 10).
//!
//! Every scenario prints exactly one JSON line to stdout; diagnostics go to
//! stderr. Throughput units: `mb_per_sec` is MiB/s (2^20 bytes per second),
//! the same unit for the broker scenarios, `loopback` and `disk`, so ratios
//! between them are meaningful. Latencies are in milliseconds.
//!
//! Exit codes: 0 ok; 1 when a scenario lost or failed records (delivery
//! errors, undelivered records, a consumer that did not get every record),
//! so scripts can tell a bad run from a slow one; 2 when it could not run.
//!
//! Modules (under `bench/`):
//! - `report`: the one-line JSON output and percentiles;
//! - `payload`: incompressible payloads and the latency timestamp header;
//! - `kafka`: librdkafka configuration, contexts and shared client helpers;
//! - `throughput`: the `produce` and `consume` scenarios;
//! - `group`: consume through a consumer group, and the rebalance time;
//! - `latency`: the end-to-end `latency` scenario;
//! - `failover`: kill -9 a partition leader under load, time to the next ack;
//! - `machine`: the `loopback` and `disk` baselines.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[path = "bench/failover.rs"]
mod failover;
#[path = "bench/group.rs"]
mod group;
#[path = "bench/kafka.rs"]
mod kafka;
#[path = "bench/latency.rs"]
mod latency;
#[path = "bench/machine.rs"]
mod machine;
#[path = "bench/payload.rs"]
mod payload;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/throughput.rs"]
mod throughput;

#[derive(Parser, Debug)]
#[command(
    name = "metrobus-bench",
    about = "Benchmark client for Metrobus (or any Kafka broker), built on librdkafka",
    version
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Produce throughput: N records of SIZE bytes, round-robin over partitions
    Produce(throughput::ProduceArgs),
    /// Consume throughput: read N records from the beginning of every partition
    Consume(throughput::ConsumeArgs),
    /// Consume through a group of consumers, then the rebalance time when one leaves
    Group(group::GroupArgs),
    /// End-to-end latency at a fixed produce rate, measured by an in-process consumer
    Latency(latency::LatencyArgs),
    /// Failover time: kill -9 the leader of partition 0 under acks=all load
    Failover(failover::FailoverArgs),
    /// This machine's loopback TCP throughput (1 MiB writes)
    Loopback(machine::LoopbackArgs),
    /// Sequential write throughput of a directory's disk with an fdatasync per block
    Disk(machine::DiskArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Cmd::Produce(args) => throughput::produce(args),
        Cmd::Consume(args) => throughput::consume(args),
        Cmd::Group(args) => group::group(args),
        Cmd::Latency(args) => latency::latency(args),
        Cmd::Failover(args) => failover::failover(args),
        Cmd::Loopback(args) => machine::loopback(args),
        Cmd::Disk(args) => machine::disk(args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("metrobus-bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
