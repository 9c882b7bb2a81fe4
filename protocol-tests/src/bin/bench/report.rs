//! One JSON object per scenario, printed on one line, and percentiles.

use std::fmt::Write as _;
use std::io::Write as _;

pub(crate) const MIB: f64 = 1024.0 * 1024.0;

/// A flat JSON object printed on one line, fields in insertion order.
#[derive(Debug, Default)]
pub(crate) struct JsonLine {
    fields: Vec<(&'static str, String)>,
}

impl JsonLine {
    pub(crate) fn new(scenario: &str) -> Self {
        let mut line = Self::default();
        line.str("scenario", scenario);
        line
    }

    pub(crate) fn str(&mut self, key: &'static str, value: &str) -> &mut Self {
        self.fields.push((key, json_string(value)));
        self
    }

    pub(crate) fn opt_str(&mut self, key: &'static str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.str(key, v),
            None => self.null(key),
        }
    }

    pub(crate) fn int(&mut self, key: &'static str, value: impl Into<i128>) -> &mut Self {
        self.fields.push((key, value.into().to_string()));
        self
    }

    pub(crate) fn bool(&mut self, key: &'static str, value: bool) -> &mut Self {
        self.fields.push((key, value.to_string()));
        self
    }

    /// A number with `decimals` digits after the point; NaN and infinities become null.
    pub(crate) fn num(&mut self, key: &'static str, value: f64, decimals: usize) -> &mut Self {
        if !value.is_finite() {
            return self.null(key);
        }
        self.fields.push((key, format!("{value:.decimals$}")));
        self
    }

    pub(crate) fn null(&mut self, key: &'static str) -> &mut Self {
        self.fields.push((key, "null".to_string()));
        self
    }

    /// The common throughput fields: records, bytes, seconds,
    /// records_per_sec and mb_per_sec (MiB/s).
    pub(crate) fn throughput(&mut self, records: u64, bytes: u64, seconds: f64) -> &mut Self {
        self.int("records", records)
            .int("bytes", bytes)
            .num("seconds", seconds, 3)
            .num("records_per_sec", per_sec(records as f64, seconds), 1)
            .num("mb_per_sec", per_sec(bytes as f64 / MIB, seconds), 2)
    }

    /// p50, p90, p99, p99.9 and max in ms (nearest rank) of latencies in
    /// nanoseconds, under the five `keys`; null when there are none.
    pub(crate) fn latencies(&mut self, keys: &LatencyKeys, latencies_ns: &mut [u64]) -> &mut Self {
        latencies_ns.sort_unstable();
        let quantiles = [0.50, 0.90, 0.99, 0.999, 1.0];
        for (key, quantile) in keys.0.iter().zip(quantiles) {
            match percentile(latencies_ns, quantile) {
                Some(ns) => self.num(key, ns as f64 / 1e6, 3),
                None => self.null(key),
            };
        }
        self
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::from("{");
        for (i, (key, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{}:{}", json_string(key), value);
        }
        out.push('}');
        out
    }

    /// Prints the line to stdout and flushes, so a script reading a pipe
    /// sees it at once.
    pub(crate) fn print(&self) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", self.render());
        let _ = stdout.flush();
    }
}

/// Field names for the five latency statistics of one measurement.
#[derive(Debug)]
pub(crate) struct LatencyKeys([&'static str; 5]);

/// End-to-end (send to consume) latency.
pub(crate) const E2E_KEYS: LatencyKeys =
    LatencyKeys(["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"]);
/// Send to delivery report (the broker's acknowledgement).
pub(crate) const ACK_KEYS: LatencyKeys = LatencyKeys([
    "ack_p50_ms",
    "ack_p90_ms",
    "ack_p99_ms",
    "ack_p999_ms",
    "ack_max_ms",
]);
pub(crate) const FSYNC_KEYS: LatencyKeys = LatencyKeys([
    "fsync_p50_ms",
    "fsync_p90_ms",
    "fsync_p99_ms",
    "fsync_p999_ms",
    "fsync_max_ms",
]);

pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(crate) fn per_sec(amount: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        amount / seconds
    } else {
        f64::NAN
    }
}

/// Nearest-rank percentile of sorted values, `quantile` in (0, 1].
pub(crate) fn percentile(sorted: &[u64], quantile: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = ((quantile * n as f64).ceil() as usize).clamp(1, n);
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let values: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&values, 0.5), Some(500));
        assert_eq!(percentile(&values, 0.999), Some(999));
        assert_eq!(percentile(&values, 1.0), Some(1000));
        assert_eq!(percentile(&[7], 0.5), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn renders_one_json_line() {
        let mut line = JsonLine::new("produce");
        line.str("topic", "a\"b\n")
            .int("records", 3u64)
            .num("rate", 1.23456, 2)
            .num("bad", f64::NAN, 2)
            .bool("complete", true);
        assert_eq!(
            line.render(),
            r#"{"scenario":"produce","topic":"a\"b\n","records":3,"rate":1.23,"bad":null,"complete":true}"#
        );
    }
}
