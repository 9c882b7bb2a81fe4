//! Baselines of the machine itself, so broker results can be read as ratios:
//! loopback TCP throughput and the disk's fdatasync'd write throughput.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Args;

use crate::payload::PayloadPool;
use crate::report::{per_sec, JsonLine, FSYNC_KEYS};

const CHUNK: usize = 1024 * 1024;

#[derive(Args, Debug)]
pub(crate) struct LoopbackArgs {
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Parallel connections
    #[arg(long, default_value_t = 1)]
    connections: usize,
}

#[derive(Args, Debug)]
pub(crate) struct DiskArgs {
    /// Directory on the filesystem to measure (a temporary file is created and removed)
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Total MiB to write
    #[arg(long, default_value_t = 256)]
    mib: u64,
    /// Block size in KiB; one write + fdatasync per block
    #[arg(long, default_value_t = 1024)]
    block_kib: u64,
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
}

/// Senders push 1 MiB writes over 127.0.0.1 for `seconds`; throughput is
/// what the receivers got, from the first accept to the last byte.
pub(crate) fn loopback(args: &LoopbackArgs) -> Result<bool> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let connections = args.connections.max(1);
    let duration = Duration::from_secs(args.seconds.max(1));

    let receiver = thread::spawn(move || receive_all(&listener, connections));
    let mut senders = Vec::new();
    for _ in 0..connections {
        let mut stream = TcpStream::connect(address).context("connect")?;
        stream.set_nodelay(true)?;
        senders.push(thread::spawn(move || -> Result<()> {
            let chunk = PayloadPool::new(CHUNK).get(0).to_vec();
            let end = Instant::now() + duration;
            while Instant::now() < end {
                stream.write_all(&chunk).context("write")?;
            }
            stream.shutdown(Shutdown::Write)?;
            Ok(())
        }));
    }
    for sender in senders {
        sender.join().map_err(|_| anyhow!("sender panicked"))??;
    }
    let (bytes, span) = receiver
        .join()
        .map_err(|_| anyhow!("receiver panicked"))??;
    JsonLine::new("loopback")
        .int("connections", connections as u64)
        .int("write_bytes", CHUNK as u64)
        .throughput(bytes / CHUNK as u64, bytes, span.as_secs_f64())
        .print();
    Ok(bytes > 0)
}

/// Accepts `connections` connections and reads each to EOF (a 10 s read
/// timeout bounds a stuck sender); returns total bytes and the time span.
fn receive_all(listener: &TcpListener, connections: usize) -> Result<(u64, Duration)> {
    let mut readers: Vec<JoinHandle<Result<(u64, Instant, Instant)>>> = Vec::new();
    for _ in 0..connections {
        let (mut stream, _) = listener.accept().context("accept")?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        readers.push(thread::spawn(move || {
            let mut buf = vec![0u8; CHUNK];
            let mut total = 0u64;
            let first = Instant::now();
            loop {
                let n = stream.read(&mut buf).context("read")?;
                if n == 0 {
                    return Ok((total, first, Instant::now()));
                }
                total += n as u64;
            }
        }));
    }
    let mut total = 0u64;
    let mut span: Option<(Instant, Instant)> = None;
    for reader in readers {
        let (bytes, first, last) = reader.join().map_err(|_| anyhow!("reader panicked"))??;
        total += bytes;
        span = Some(match span {
            None => (first, last),
            Some((f, l)) => (f.min(first), l.max(last)),
        });
    }
    Ok((
        total,
        span.map_or(Duration::ZERO, |(first, last)| last - first),
    ))
}

/// Writes `mib` MiB in `block_kib` blocks to a new file in `dir`, with an
/// fdatasync after each block, then removes the file.
pub(crate) fn disk(args: &DiskArgs) -> Result<bool> {
    if args.block_kib == 0 || args.mib == 0 {
        bail!("--mib and --block-kib must be positive");
    }
    let block = (args.block_kib * 1024) as usize;
    let blocks = (args.mib * 1024 * 1024).div_ceil(block as u64);
    let path = args
        .dir
        .join(format!(".metrobus-bench-disk-{}", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let pool = PayloadPool::new(block);
    let limit = Duration::from_secs(args.max_seconds);
    let result = write_and_sync(&mut file, &pool, blocks, limit);
    drop(file);
    let _ = fs::remove_file(&path);
    let (bytes, elapsed, mut sync_latencies) = result?;
    let syncs = sync_latencies.len() as u64;
    let seconds = elapsed.as_secs_f64();
    JsonLine::new("disk")
        .str("dir", &args.dir.display().to_string())
        .int("block_bytes", block as u64)
        .throughput(syncs, bytes, seconds)
        .num("fsyncs_per_sec", per_sec(syncs as f64, seconds), 1)
        .latencies(&FSYNC_KEYS, &mut sync_latencies)
        .print();
    Ok(true)
}

/// Writes up to `blocks` blocks with an fdatasync after each, stopping at
/// `limit`; returns bytes written, elapsed time and each fdatasync's
/// latency in ns.
fn write_and_sync(
    file: &mut File,
    pool: &PayloadPool,
    blocks: u64,
    limit: Duration,
) -> Result<(u64, Duration, Vec<u64>)> {
    let mut sync_latencies = Vec::with_capacity(blocks as usize);
    let start = Instant::now();
    let mut written = 0u64;
    for i in 0..blocks {
        let data = pool.get(i);
        file.write_all(data).context("write")?;
        let sync_start = Instant::now();
        file.sync_data().context("fdatasync")?;
        sync_latencies.push(sync_start.elapsed().as_nanos() as u64);
        written += data.len() as u64;
        if start.elapsed() >= limit {
            break;
        }
    }
    Ok((written, start.elapsed(), sync_latencies))
}
