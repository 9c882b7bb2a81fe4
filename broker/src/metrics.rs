//! Prometheus metrics, named `metrobus_<subsystem>_<name>` with counters
//! ending in `_total` and units in the name, and the HTTP endpoint that
//! serves them with the health checks.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{
    CounterVec, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The registry every metric here is registered in.
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    {
        let process = prometheus::process_collector::ProcessCollector::for_self();
        let _ = registry.register(Box::new(process));
    }
    registry
});

fn register<T: prometheus::core::Collector + Clone + 'static>(metric: T) -> T {
    // Registration only fails on a duplicate name, which is a programming
    // error caught by the tests; the metric still works unregistered.
    if let Err(e) = REGISTRY.register(Box::new(metric.clone())) {
        warn!(error = %e, "metric registration failed");
    }
    metric
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

/// Requests handled, by API name.
pub static REQUESTS_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "metrobus_requests_total",
        "Kafka requests handled, by API",
        &["api"],
    )
});

/// Request latency from decode to response, by API.
pub static REQUEST_DURATION_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    let opts = HistogramOpts::new(
        "metrobus_request_duration_seconds",
        "Time from a request's decode to its response, by API",
    )
    .buckets(prometheus::exponential_buckets(0.0001, 2.0, 18).expect("valid buckets"));
    register(HistogramVec::new(opts, &["api"]).expect("valid metric"))
});

/// Partition-level errors returned, by API and Kafka error code.
pub static REQUEST_ERRORS_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "metrobus_request_errors_total",
        "Errors returned to clients, by API and Kafka error code",
        &["api", "error_code"],
    )
});

/// Record-batch bytes appended, by topic.
pub static BYTES_IN_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "metrobus_topic_bytes_in_total",
        "Record bytes appended, by topic",
        &["topic"],
    )
});

/// Record-batch bytes served to fetchers, by topic.
pub static BYTES_OUT_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "metrobus_topic_bytes_out_total",
        "Record bytes fetched, by topic",
        &["topic"],
    )
});

/// Record bytes produced by a tenant's clients (`-`: super users and
/// anonymous principals). Labelled by tenant only, never by client id or
/// user, so the number of series stays bounded by the tenants.
pub static TENANT_BYTES_IN_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "metrobus_tenant_bytes_in_total",
        "Record bytes produced, by tenant",
        &["tenant"],
    )
});

/// Record bytes fetched by a tenant's clients.
pub static TENANT_BYTES_OUT_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "metrobus_tenant_bytes_out_total",
        "Record bytes fetched, by tenant",
        &["tenant"],
    )
});

/// Requests from a tenant's clients.
pub static TENANT_REQUESTS_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "metrobus_tenant_requests_total",
        "Kafka requests handled, by tenant",
        &["tenant"],
    )
});

/// Time a tenant's connections were throttled for, by quota
/// (`produce`, `fetch`, `request`).
pub static TENANT_THROTTLE_TIME_SECONDS_TOTAL: LazyLock<CounterVec> = LazyLock::new(|| {
    register(
        CounterVec::new(
            Opts::new(
                "metrobus_tenant_throttle_time_seconds_total",
                "Throttle time imposed by client quotas, by tenant and quota",
            ),
            &["tenant", "quota"],
        )
        .expect("valid metric"),
    )
});

/// Records appended, by topic.
pub static MESSAGES_IN_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "metrobus_topic_messages_in_total",
        "Records appended, by topic",
        &["topic"],
    )
});

/// Log end offset per partition.
pub static LOG_END_OFFSET: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "metrobus_partition_log_end_offset",
        "The next offset to be written, per partition",
        &["topic", "partition"],
    )
});

/// Log start offset per partition.
pub static LOG_START_OFFSET: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "metrobus_partition_log_start_offset",
        "The first offset still stored, per partition",
        &["topic", "partition"],
    )
});

/// Idempotent producer ids with state per partition.
pub static PRODUCER_IDS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "metrobus_partition_producer_ids",
        "Idempotent producer ids whose sequence state the partition keeps",
        &["topic", "partition"],
    )
});

/// Retried idempotent batches answered with their original offsets.
pub static LOG_DUPLICATE_BATCHES_TOTAL: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "metrobus_log_duplicate_batches_total",
            "Retried idempotent batches answered with their original offsets instead of appended",
        )
        .expect("valid"),
    )
});

/// Partitions hosted by this node.
pub static TXN_COMPLETED_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "metrobus_txn_completed_total",
        "Transactions this node's coordinator completed (markers written), by outcome",
        &["outcome"],
    )
});

pub static PARTITIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    register(IntGauge::new("metrobus_partitions", "Partitions hosted by this node").expect("valid"))
});

/// Topics known to this node.
pub static TOPICS: LazyLock<IntGauge> = LazyLock::new(|| {
    register(IntGauge::new("metrobus_topics", "Topics in the cluster").expect("valid"))
});

/// Open client connections.
pub static CONNECTIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    register(IntGauge::new("metrobus_connections", "Open Kafka connections").expect("valid"))
});

/// Connections accepted and rejected (over `max.connections`).
pub static CONNECTIONS_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "metrobus_connections_total",
        "Kafka connections by outcome (accepted, rejected)",
        &["outcome"],
    )
});

/// Connections closed for a protocol violation, by reason.
pub static CONNECTIONS_CLOSED_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "metrobus_connections_closed_total",
        "Kafka connections closed by the broker, by reason",
        &["reason"],
    )
});

/// Topics per tenant (tenants that have users).
pub static TENANT_TOPICS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "metrobus_tenant_topics",
        "Topics of each tenant",
        &["tenant"],
    )
});

/// Consumer lag per tenant: the lag of every group this node coordinates
/// under the tenant's prefix, summed (sum over nodes in Prometheus).
pub static TENANT_CONSUMER_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "metrobus_tenant_consumer_lag_records",
        "Records the tenant's consumer groups coordinated here are behind, summed",
        &["tenant"],
    )
});

/// SASL authentications, by mechanism and result (`ok`, `failed`).
pub static SASL_AUTHENTICATIONS_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "metrobus_sasl_authentications_total",
        "SASL authentications, by mechanism and result",
        &["mechanism", "result"],
    )
});

/// Time of one log write batch (the RocksDB write; fsyncs are timed apart).
pub static LOG_WRITE_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    let opts = HistogramOpts::new(
        "metrobus_log_write_duration_seconds",
        "Time of one group-committed log write (the fsync is timed separately)",
    )
    .buckets(prometheus::exponential_buckets(0.00005, 2.0, 18).expect("valid buckets"));
    register(Histogram::with_opts(opts).expect("valid metric"))
});

/// Time of one write-ahead-log fsync under the durable policy.
pub static LOG_SYNC_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    let opts = HistogramOpts::new(
        "metrobus_log_sync_duration_seconds",
        "Time of one write-ahead log fsync (durable flush policy)",
    )
    .buckets(prometheus::exponential_buckets(0.00005, 2.0, 18).expect("valid buckets"));
    register(Histogram::with_opts(opts).expect("valid metric"))
});

/// Appends per group commit.
pub static LOG_WRITE_APPENDS: LazyLock<Histogram> = LazyLock::new(|| {
    let opts = HistogramOpts::new(
        "metrobus_log_write_appends",
        "Batches appended per group-committed log write",
    )
    .buckets(prometheus::exponential_buckets(1.0, 2.0, 12).expect("valid buckets"));
    register(Histogram::with_opts(opts).expect("valid metric"))
});

/// Bytes removed by retention and DeleteRecords.
pub static LOG_BLOB_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "metrobus_log_blob_bytes",
            "Bytes in the log's blob files (batches of 4 KiB or more), garbage included",
        )
        .expect("valid"),
    )
});

pub static LOG_BLOB_GARBAGE_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "metrobus_log_blob_garbage_bytes",
            "Bytes in blob files that belong to deleted batches and are not yet freed",
        )
        .expect("valid"),
    )
});

pub static LOG_BLOB_GC_TOTAL: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "metrobus_log_blob_gc_total",
            "Garbage-collecting compactions run to free blob files holding deleted batches",
        )
        .expect("valid"),
    )
});

pub static LOG_DELETED_BYTES_TOTAL: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "metrobus_log_deleted_bytes_total",
            "Stored bytes removed by retention, DeleteRecords and topic deletion",
        )
        .expect("valid"),
    )
});

/// Rebalances started by the group coordinator.
pub static GROUP_REBALANCES_TOTAL: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "metrobus_group_rebalances_total",
            "Consumer group rebalances started",
        )
        .expect("valid"),
    )
});

/// Groups by state, set at each scrape.
pub static GROUPS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "metrobus_group_count",
        "Consumer groups coordinated here, by state",
        &["state"],
    )
});

/// Consumer lag: high watermark minus committed offset, set at each scrape.
pub static GROUP_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "metrobus_group_lag_records",
        "Records between a group's committed offset and the partition's high watermark",
        &["group", "topic", "partition"],
    )
});

/// Committed offsets, set at each scrape.
pub static GROUP_COMMITTED_OFFSET: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "metrobus_group_committed_offset",
        "A group's committed offset per partition",
        &["group", "topic", "partition"],
    )
});

/// A function run before each scrape to set gauges computed from state;
/// returns false once its owner is gone, and is then dropped.
pub type ScrapeHook = Box<dyn Fn() -> bool + Send + Sync>;

static SCRAPE_HOOKS: std::sync::Mutex<Vec<ScrapeHook>> = std::sync::Mutex::new(Vec::new());

/// Registers a function to run before each scrape.
pub fn add_scrape_hook(hook: ScrapeHook) {
    SCRAPE_HOOKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(hook);
}

/// Renders every metric in the Prometheus text format.
pub fn render() -> String {
    // Computed gauges start from scratch so deleted groups disappear.
    GROUP_LAG.reset();
    GROUP_COMMITTED_OFFSET.reset();
    SCRAPE_HOOKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|hook| hook());
    let mut buffer = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&REGISTRY.gather(), &mut buffer) {
        warn!(error = %e, "metrics encoding failed");
    }
    String::from_utf8(buffer).unwrap_or_default()
}

/// Touches every static so all metrics show from the first scrape.
fn gauge(name: &str, help: &str) -> IntGauge {
    register(IntGauge::new(name, help).expect("valid metric"))
}

fn counter(name: &str, help: &str) -> IntCounter {
    register(IntCounter::new(name, help).expect("valid metric"))
}

/// 1 while this node is the active controller.
pub static CONTROLLER_ACTIVE: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "metrobus_controller_active",
        "1 while this node is the active controller (Raft leader)",
    )
});

/// The metadata log's Raft term.
pub static RAFT_TERM: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "metrobus_controller_raft_term",
        "Current Raft term of the metadata log",
    )
});

/// The last metadata-log index applied here.
pub static RAFT_COMMIT_INDEX: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "metrobus_controller_raft_applied_index",
        "Last metadata log index applied on this node",
    )
});

/// ISR expansions committed by this node as active controller.
pub static ISR_EXPANDS_TOTAL: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "metrobus_replication_isr_expands_total",
        "ISR expansions committed by the active controller",
    )
});

/// ISR shrinks committed by this node as active controller.
pub static ISR_SHRINKS_TOTAL: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "metrobus_replication_isr_shrinks_total",
        "ISR shrinks committed by the active controller",
    )
});

/// Partitions this node leads.
pub static LEADER_PARTITIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "metrobus_replication_leader_partitions",
        "Partitions led by this node",
    )
});

/// Partitions led here whose ISR is smaller than their replica set.
pub static UNDER_REPLICATED_PARTITIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "metrobus_replication_under_replicated_partitions",
        "Partitions led by this node with fewer in-sync replicas than replicas",
    )
});

/// Partitions with no leader, as the metadata image says.
pub static OFFLINE_PARTITIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "metrobus_replication_offline_partitions",
        "Partitions of the cluster without a leader",
    )
});

/// Records each follower is behind, as its leader (this node) last saw.
pub static FOLLOWER_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "metrobus_replication_follower_lag_records",
        "Leader log end offset minus the follower's fetch offset, per follower",
        &["topic", "partition", "follower"],
    )
});

/// Gossip members by state (alive, dead) as this node sees them.
pub static GOSSIP_MEMBERS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "metrobus_gossip_members",
        "Cluster members by gossip state",
        &["state"],
    )
});

pub fn init() {
    LazyLock::force(&CONTROLLER_ACTIVE);
    LazyLock::force(&RAFT_TERM);
    LazyLock::force(&RAFT_COMMIT_INDEX);
    LazyLock::force(&ISR_EXPANDS_TOTAL);
    LazyLock::force(&ISR_SHRINKS_TOTAL);
    LazyLock::force(&LEADER_PARTITIONS);
    LazyLock::force(&GOSSIP_MEMBERS);
    LazyLock::force(&UNDER_REPLICATED_PARTITIONS);
    LazyLock::force(&OFFLINE_PARTITIONS);
    LazyLock::force(&FOLLOWER_LAG);
    LazyLock::force(&REQUESTS_TOTAL);
    LazyLock::force(&REQUEST_DURATION_SECONDS);
    LazyLock::force(&REQUEST_ERRORS_TOTAL);
    LazyLock::force(&BYTES_IN_TOTAL);
    LazyLock::force(&BYTES_OUT_TOTAL);
    LazyLock::force(&MESSAGES_IN_TOTAL);
    LazyLock::force(&TENANT_BYTES_IN_TOTAL);
    LazyLock::force(&TENANT_BYTES_OUT_TOTAL);
    LazyLock::force(&TENANT_REQUESTS_TOTAL);
    LazyLock::force(&TENANT_THROTTLE_TIME_SECONDS_TOTAL);
    LazyLock::force(&LOG_END_OFFSET);
    LazyLock::force(&LOG_START_OFFSET);
    LazyLock::force(&PRODUCER_IDS);
    LazyLock::force(&LOG_DUPLICATE_BATCHES_TOTAL);
    LazyLock::force(&TXN_COMPLETED_TOTAL);
    LazyLock::force(&PARTITIONS);
    LazyLock::force(&TOPICS);
    LazyLock::force(&CONNECTIONS);
    LazyLock::force(&CONNECTIONS_TOTAL);
    LazyLock::force(&CONNECTIONS_CLOSED_TOTAL);
    LazyLock::force(&SASL_AUTHENTICATIONS_TOTAL);
    LazyLock::force(&TENANT_TOPICS);
    LazyLock::force(&TENANT_CONSUMER_LAG);
    LazyLock::force(&LOG_WRITE_SECONDS);
    LazyLock::force(&LOG_WRITE_APPENDS);
    LazyLock::force(&LOG_SYNC_SECONDS);
    LazyLock::force(&LOG_DELETED_BYTES_TOTAL);
    LazyLock::force(&LOG_BLOB_BYTES);
    LazyLock::force(&LOG_BLOB_GARBAGE_BYTES);
    LazyLock::force(&LOG_BLOB_GC_TOTAL);
    LazyLock::force(&GROUP_REBALANCES_TOTAL);
    LazyLock::force(&GROUPS);
    LazyLock::force(&GROUP_LAG);
    LazyLock::force(&GROUP_COMMITTED_OFFSET);
}

fn respond(request: &Request<Incoming>, ready: bool) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match request.uri().path() {
        "/metrics" => (StatusCode::OK, "text/plain; version=0.0.4", render()),
        "/health/live" => (StatusCode::OK, "text/plain", "live\n".to_owned()),
        "/health/ready" if ready => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
        "/health/ready" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready\n".to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        let _ = response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// Serves `/metrics`, `/health/live` and `/health/ready` until cancelled.
pub async fn serve_http(
    listener: TcpListener,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    warn!(error = %e, "http accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let ready = ready.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let is_ready = ready.load(Ordering::Acquire);
            async move { Ok::<_, Infallible>(respond(&request, is_ready)) }
        });
        let _task = tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                debug!(%peer, error = %e, "http connection ended with an error");
            }
        });
    }
}
