//! The HTTP endpoint: Prometheus metrics, health checks, and a scrape by a
//! real Prometheus server.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol_tests::rdkafka::producer::FutureRecord;
use protocol_tests::{
    create_topic, find_on_path, http_get, unique_name, wait_until, BrokerProcess, OP_TIMEOUT,
};

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
    fn has_label_value_ci(&self, v: &str) -> bool {
        self.labels.iter().any(|(_, x)| x.eq_ignore_ascii_case(v))
    }
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses the Prometheus text exposition format strictly enough to catch
/// what a Prometheus server would reject.
fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let ln = n + 1;
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut parts = rest.trim_start().splitn(3, ' ');
            match parts.next() {
                Some("HELP") | Some("TYPE") => {
                    let name = parts.next().unwrap_or_default();
                    if !valid_name(name) {
                        return Err(format!("line {ln}: bad metric name in {line:?}"));
                    }
                }
                _ => {}
            }
            continue;
        }
        let (name_end, labels, rest) = match line.find('{') {
            Some(open) if line[..open].find(' ').is_none() => {
                let close = line
                    .rfind('}')
                    .ok_or_else(|| format!("line {ln}: unclosed labels in {line:?}"))?;
                let labels = parse_labels(&line[open + 1..close])
                    .map_err(|e| format!("line {ln}: {e} in {line:?}"))?;
                (open, labels, &line[close + 1..])
            }
            _ => {
                let sp = line
                    .find(' ')
                    .ok_or_else(|| format!("line {ln}: no value in {line:?}"))?;
                (sp, Vec::new(), &line[sp..])
            }
        };
        let name = &line[..name_end];
        if !valid_name(name) {
            return Err(format!("line {ln}: bad metric name {name:?}"));
        }
        let mut fields = rest.split_whitespace();
        let v = fields
            .next()
            .ok_or_else(|| format!("line {ln}: no value in {line:?}"))?;
        let value = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            _ => v
                .parse::<f64>()
                .map_err(|_| format!("line {ln}: bad value {v:?}"))?,
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| format!("line {ln}: bad timestamp {ts:?}"))?;
        }
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(out)
}

fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') || chars.peek() == Some(&',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next() != Some('=') || chars.next() != Some('"') || !valid_name(&key) {
            return Err(format!("bad label {key:?}"));
        }
        let mut val = String::new();
        loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => val.push('\n'),
                    Some('\\') => val.push('\\'),
                    Some('"') => val.push('"'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some(c) => val.push(c),
            }
        }
        out.push((key, val));
    }
}

async fn produce_some(broker: &BrokerProcess, topic: &str, n: usize) {
    let admin = broker.admin();
    create_topic(&admin, topic, 1, &[]).await.unwrap();
    let producer = broker.producer(&[]);
    for i in 0..n {
        let v = format!("metric record {i}");
        producer
            .send(
                FutureRecord::<[u8], [u8]>::to(topic)
                    .partition(0)
                    .payload(v.as_bytes()),
                OP_TIMEOUT,
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_endpoints() {
    let mut broker = BrokerProcess::start_default();
    let http = broker.http_addr();

    for path in ["/health/live", "/health/ready"] {
        let r = http_get(http, path, HTTP_TIMEOUT).unwrap();
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    }
    let r = http_get(http, "/no-such-page", HTTP_TIMEOUT).unwrap();
    assert_eq!(r.status, 404, "GET /no-such-page");

    let topic = unique_name("metered");
    let n = 5;
    produce_some(&broker, &topic, n).await;

    // Metrics may be updated just after the response is sent; wait for the
    // produce counter to show up (bounded).
    let mut samples = Vec::new();
    let mut last_body = String::new();
    let counter_ok = |s: &Sample| {
        s.name.starts_with("metrobus_")
            && s.name.ends_with("_total")
            && s.name.contains("request")
            && s.has_label_value_ci("produce")
            && s.value >= n as f64
    };
    let res = wait_until(
        "a produce request counter >= 5",
        Duration::from_secs(10),
        || {
            let r = http_get(http, "/metrics", HTTP_TIMEOUT)?;
            anyhow::ensure!(r.status == 200, "GET /metrics: status {}", r.status);
            let ct = r.header("content-type").unwrap_or_default().to_string();
            anyhow::ensure!(ct.starts_with("text/plain"), "content-type {ct:?}");
            last_body = r.text();
            samples = parse_exposition(&last_body).map_err(|e| anyhow::anyhow!(e))?;
            Ok(samples.iter().any(counter_ok))
        },
    );
    if let Err(e) = res {
        panic!("{e:#}\n----- /metrics -----\n{last_body}");
    }
    let show = || format!("----- /metrics -----\n{last_body}");

    assert!(
        samples.iter().any(|s| s.name.starts_with("metrobus_")
            && s.name.ends_with("_bucket")
            && s.has_label_value_ci("produce")),
        "no per-API request latency histogram for Produce\n{}",
        show()
    );
    assert!(
        samples.iter().any(|s| s.name.starts_with("metrobus_")
            && s.name.contains("bytes")
            && s.label("topic") == Some(topic.as_str())
            && s.value > 0.0),
        "no bytes-in metric labelled topic={topic}\n{}",
        show()
    );
    assert!(
        samples.iter().any(|s| s.name.starts_with("metrobus_")
            && s.name.contains("offset")
            && s.label("topic") == Some(topic.as_str())
            && s.label("partition") == Some("0")
            && s.value == n as f64),
        "no log end offset gauge for {topic}/0 equal to {n}\n{}",
        show()
    );
    assert!(
        samples
            .iter()
            .any(|s| s.name.starts_with("metrobus_") && s.name.contains("connection")),
        "no connections metric\n{}",
        show()
    );
    assert!(
        samples.iter().any(|s| s.name.contains("process_")),
        "no process metrics\n{}",
        show()
    );
    broker.assert_alive();
}

struct PromProcess {
    child: Child,
    log: PathBuf,
}

impl Drop for PromProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            let tail: String = log
                .lines()
                .rev()
                .take(60)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!("----- prometheus log (tail) -----\n{tail}");
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn prom_query(prom: SocketAddr, q: &str) -> anyhow::Result<serde_json::Value> {
    let r = http_get(
        prom,
        &format!("/api/v1/query?query={}", urlencode(q)),
        HTTP_TIMEOUT,
    )?;
    anyhow::ensure!(
        r.status == 200,
        "query {q}: status {} {}",
        r.status,
        r.text()
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body)?;
    anyhow::ensure!(v["status"] == "success", "query {q}: {v}");
    Ok(v["data"]["result"].clone())
}

/// The first sample value of an instant-vector result, as a number.
fn first_value(result: &serde_json::Value) -> Option<f64> {
    result.get(0)?["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_broker() {
    let prom_bin = std::env::var_os("PROMETHEUS_BIN")
        .map(PathBuf::from)
        .or_else(|| find_on_path("prometheus"))
        .unwrap_or_else(|| {
            panic!(
                "the `prometheus` binary is not installed (Debian package `prometheus`); \
                 run scripts/install-test-tools.sh or set PROMETHEUS_BIN. This test never skips."
            )
        });
    let mut broker = BrokerProcess::start_default();
    produce_some(&broker, &unique_name("scraped"), 3).await;

    let dir = broker.temp_dir().join("prometheus");
    fs::create_dir_all(dir.join("data")).unwrap();
    let config = dir.join("prometheus.yml");
    fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: metrobus\n    scrape_interval: 1s\n    scrape_timeout: 1s\n\
             \x20   static_configs:\n      - targets: ['{}']\n",
            broker.http_addr()
        ),
    )
    .unwrap();

    // The port is picked free and then handed over; retry if another
    // process took it in between.
    let mut attempt = 0;
    let (_prom, prom_addr) = loop {
        attempt += 1;
        let port = free_port();
        let log = dir.join(format!("prometheus-{attempt}.log"));
        let log_file = fs::File::create(&log).unwrap();
        let child = Command::new(&prom_bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", prom_bin.display()));
        let mut prom = PromProcess { child, log };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut exited = false;
        loop {
            if let Ok(Some(_)) = prom.child.try_wait() {
                exited = true;
                break;
            }
            if let Ok(r) = http_get(addr, "/-/ready", Duration::from_secs(2)) {
                if r.status == 200 {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        if !exited {
            break (prom, addr);
        }
        let log = fs::read_to_string(&prom.log).unwrap_or_default();
        assert!(
            attempt < 3,
            "prometheus exited at startup 3 times; last log:\n{log}"
        );
    };

    let res = wait_until(
        "the metrobus target to be up",
        Duration::from_secs(60),
        || {
            let r = prom_query(prom_addr, "up{job=\"metrobus\"}")?;
            Ok(first_value(&r) == Some(1.0))
        },
    );
    if let Err(e) = res {
        let targets = http_get(prom_addr, "/api/v1/targets", HTTP_TIMEOUT)
            .map(|r| r.text())
            .unwrap_or_else(|e| format!("({e})"));
        panic!("{e:#}\nprometheus targets: {targets}");
    }
    wait_until(
        "metrobus_ series in prometheus",
        Duration::from_secs(30),
        || {
            let r = prom_query(prom_addr, "count({__name__=~\"metrobus_.+\"})")?;
            Ok(first_value(&r).unwrap_or(0.0) > 0.0)
        },
    )
    .unwrap();
    // Scrapes keep succeeding (not a one-off).
    let r = prom_query(prom_addr, "sum(scrape_samples_scraped{job=\"metrobus\"})").unwrap();
    assert!(
        first_value(&r).unwrap_or(0.0) > 0.0,
        "no samples scraped: {r}"
    );
    broker.assert_alive();
}

#[test]
fn exposition_parser_rejects_garbage() {
    assert!(parse_exposition("# TYPE a counter\na_total{x=\"1\"} 3\nb 1.5e3\n").is_ok());
    assert!(parse_exposition("9bad 1\n").is_err());
    assert!(parse_exposition("a{x=1} 1\n").is_err());
    assert!(parse_exposition("a notanumber\n").is_err());
}
