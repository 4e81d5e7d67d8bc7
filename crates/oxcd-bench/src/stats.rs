//! Latency recording (HdrHistogram, microseconds) and the end-of-run summary.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// How many distinct error messages are kept (with their counts).
pub(crate) const MAX_ERROR_SAMPLES: usize = 5;

/// Percentiles shown in the text "Latency distribution" section.
const TEXT_PERCENTILES: [f64; 9] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99];

/// Per-client latency and error recorder; recorders are merged at the end.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    hist: Histogram<u64>,
    errors: u64,
    error_samples: Vec<ErrorSample>,
}

/// A distinct error message and how many times it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ErrorSample {
    /// The error message.
    pub message: String,
    /// Number of failed requests with this message.
    pub count: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// Creates an empty recorder: 3 significant digits, 1 µs to 60 s
    /// pre-sized (so merging never has to resize), growing beyond if needed.
    #[allow(clippy::expect_used)] // constant bounds: this cannot fail at run time
    pub(crate) fn new() -> Self {
        let mut hist = Histogram::new_with_bounds(1, 60_000_000, 3)
            .expect("1 µs..60 s with 3 significant figures is a valid histogram config");
        hist.auto(true);
        Recorder {
            hist,
            errors: 0,
            error_samples: Vec::new(),
        }
    }

    /// Records the latency of a successful request.
    pub(crate) fn record_ok(&mut self, latency: Duration) {
        self.record_micros(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records a successful request's latency given in microseconds.
    pub(crate) fn record_micros(&mut self, micros: u64) {
        if self.hist.record(micros).is_err() {
            self.hist.saturating_record(micros);
        }
    }

    /// Records a failed request.
    pub(crate) fn record_err(&mut self, message: &str) {
        self.add_errors(message, 1);
    }

    fn add_errors(&mut self, message: &str, count: u64) {
        self.errors += count;
        if let Some(s) = self.error_samples.iter_mut().find(|s| s.message == message) {
            s.count += count;
        } else if self.error_samples.len() < MAX_ERROR_SAMPLES {
            self.error_samples.push(ErrorSample {
                message: message.to_string(),
                count,
            });
        }
    }

    /// Number of successful requests recorded.
    pub(crate) fn ok(&self) -> u64 {
        self.hist.len()
    }

    /// Number of failed requests recorded.
    pub(crate) fn errors(&self) -> u64 {
        self.errors
    }

    /// Adds everything recorded by `other` into `self`.
    pub(crate) fn merge(&mut self, other: &Recorder) {
        // Both histograms auto-resize, so adding cannot fail on range.
        let _ = self.hist.add(&other.hist);
        for s in &other.error_samples {
            self.add_errors(&s.message, s.count);
        }
        // Errors beyond the sampled messages still count.
        let sampled: u64 = other.error_samples.iter().map(|s| s.count).sum();
        self.errors += other.errors - sampled;
    }

    /// Computes the summary of a run that took `elapsed`.
    pub(crate) fn summary(&self, workload: &str, elapsed: Duration) -> Summary {
        let h = &self.hist;
        let ok = h.len();
        let secs = elapsed.as_secs_f64();
        let ms = |us: u64| us as f64 / 1000.0;
        let (fastest, slowest, avg, stddev) = if ok == 0 {
            (0.0, 0.0, 0.0, 0.0)
        } else {
            (
                ms(h.min()),
                ms(h.max()),
                h.mean() / 1000.0,
                h.stdev() / 1000.0,
            )
        };
        let q = |q: f64| {
            if ok == 0 {
                0.0
            } else {
                ms(h.value_at_quantile(q))
            }
        };
        Summary {
            workload: workload.to_string(),
            requests: ok + self.errors,
            ok,
            errors: self.errors,
            error_samples: self.error_samples.clone(),
            total_secs: secs,
            requests_per_sec: if secs > 0.0 { ok as f64 / secs } else { 0.0 },
            fastest_ms: fastest,
            slowest_ms: slowest,
            average_ms: avg,
            stddev_ms: stddev,
            p10_ms: q(0.10),
            p25_ms: q(0.25),
            p50_ms: q(0.50),
            p75_ms: q(0.75),
            p90_ms: q(0.90),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            p9999_ms: q(0.9999),
            max_ms: slowest,
            histogram: self.buckets(10),
        }
    }

    /// Splits `[min, max]` into `n` equal buckets and counts requests in each.
    fn buckets(&self, n: u64) -> Vec<Bucket> {
        let h = &self.hist;
        if h.is_empty() {
            return Vec::new();
        }
        let (lo, hi) = (h.min(), h.max());
        let width = ((hi - lo) / n).max(1);
        let mut out = Vec::new();
        let mut start = lo;
        for i in 0..n {
            let end = if i + 1 == n { hi } else { start + width - 1 };
            out.push(Bucket {
                upper_ms: end as f64 / 1000.0,
                count: h.count_between(start, end),
            });
            if end >= hi {
                break;
            }
            start = end + 1;
        }
        out
    }
}

/// One bucket of the response time histogram.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Bucket {
    /// Upper bound of the bucket, milliseconds.
    pub upper_ms: f64,
    /// Requests whose latency falls into the bucket.
    pub count: u64,
}

/// Fields every workload's JSON summary has (the watch workloads count events in them).
#[cfg(test)]
pub(crate) const COMMON_FIELDS: [&str; 13] = [
    "workload",
    "requests",
    "ok",
    "errors",
    "error_samples",
    "total_secs",
    "requests_per_sec",
    "average_ms",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
];

/// Result of a benchmark run; latencies are in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Summary {
    /// Workload name (`put`, `range`, `txn-put`, ...).
    pub workload: String,
    /// Requests issued (successful + failed).
    pub requests: u64,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// The first few distinct error messages with their counts.
    pub error_samples: Vec<ErrorSample>,
    /// Wall-clock time of the run, seconds.
    pub total_secs: f64,
    /// Successful requests per second.
    pub requests_per_sec: f64,
    /// Fastest successful request.
    pub fastest_ms: f64,
    /// Slowest successful request.
    pub slowest_ms: f64,
    /// Mean latency.
    pub average_ms: f64,
    /// Standard deviation of the latency.
    pub stddev_ms: f64,
    /// 10th percentile latency.
    pub p10_ms: f64,
    /// 25th percentile latency.
    pub p25_ms: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 75th percentile latency.
    pub p75_ms: f64,
    /// 90th percentile latency.
    pub p90_ms: f64,
    /// 95th percentile latency.
    pub p95_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// 99.9th percentile latency.
    pub p999_ms: f64,
    /// 99.99th percentile latency.
    pub p9999_ms: f64,
    /// Maximum latency (same as `slowest_ms`).
    pub max_ms: f64,
    /// Response time histogram (10 linear buckets between fastest and slowest).
    pub histogram: Vec<Bucket>,
}

impl Summary {
    /// Renders the summary like etcd's `benchmark` tool does.
    pub(crate) fn to_text(&self) -> String {
        let s = |ms: f64| ms / 1000.0;
        let mut out = String::new();
        let _ = writeln!(out, "\nSummary:");
        let _ = writeln!(out, "  Total:\t{:.4} secs.", self.total_secs);
        let _ = writeln!(out, "  Slowest:\t{:.4} secs.", s(self.slowest_ms));
        let _ = writeln!(out, "  Fastest:\t{:.4} secs.", s(self.fastest_ms));
        let _ = writeln!(out, "  Average:\t{:.4} secs.", s(self.average_ms));
        let _ = writeln!(out, "  Stddev:\t{:.4} secs.", s(self.stddev_ms));
        let _ = writeln!(out, "  Requests/sec:\t{:.4}", self.requests_per_sec);
        let _ = writeln!(out, "  Requests:\t{} ok, {} errors", self.ok, self.errors);

        if !self.histogram.is_empty() {
            let _ = writeln!(out, "\nResponse time histogram:");
            let max = self.histogram.iter().map(|b| b.count).max().unwrap_or(0);
            for b in &self.histogram {
                let bar = if max == 0 {
                    0
                } else {
                    (b.count * 40).div_ceil(max) as usize
                };
                let _ = writeln!(
                    out,
                    "  {:.4} [{}]\t|{}",
                    s(b.upper_ms),
                    b.count,
                    "∎".repeat(bar)
                );
            }
            let _ = writeln!(out, "\nLatency distribution:");
            let values = [
                self.p10_ms,
                self.p25_ms,
                self.p50_ms,
                self.p75_ms,
                self.p90_ms,
                self.p95_ms,
                self.p99_ms,
                self.p999_ms,
                self.p9999_ms,
            ];
            for (p, v) in TEXT_PERCENTILES.iter().zip(values) {
                let _ = writeln!(out, "  {p}% in {:.4} secs.", s(v));
            }
        }

        if self.errors > 0 {
            let _ = writeln!(out, "\nError distribution:");
            for e in &self.error_samples {
                let _ = writeln!(out, "  [{}]\t{}", e.count, e.message);
            }
            let sampled: u64 = self.error_samples.iter().map(|e| e.count).sum();
            if sampled < self.errors {
                let _ = writeln!(out, "  [{}]\t(other errors)", self.errors - sampled);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn percentiles_from_known_set() {
        let mut r = Recorder::new();
        // 1..=1000 microseconds; all exactly representable with 3 sig. digits.
        for us in 1..=1000 {
            r.record_micros(us);
        }
        let s = r.summary("put", Duration::from_secs(2));
        assert_eq!(s.ok, 1000);
        assert_eq!(s.errors, 0);
        assert!(close(s.requests_per_sec, 500.0));
        assert!(close(s.fastest_ms, 0.001));
        assert!(close(s.slowest_ms, 1.0));
        assert!(close(s.max_ms, 1.0));
        assert!(close(s.average_ms, 0.5005));
        assert!(close(s.p10_ms, 0.100));
        assert!(close(s.p50_ms, 0.500));
        assert!(close(s.p90_ms, 0.900));
        assert!(close(s.p99_ms, 0.990));
        assert!(close(s.p999_ms, 0.999));
        let in_buckets: u64 = s.histogram.iter().map(|b| b.count).sum();
        assert_eq!(in_buckets, 1000);
        assert_eq!(s.histogram.len(), 10);
    }

    #[test]
    fn merge_and_errors() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        a.record_ok(Duration::from_millis(2));
        b.record_ok(Duration::from_millis(4));
        for i in 0..10 {
            b.record_err(&format!("error {}", i % 7));
        }
        a.record_err("error 0");
        a.merge(&b);
        assert_eq!(a.ok(), 2);
        assert_eq!(a.errors(), 11);
        let s = a.summary("range", Duration::from_secs(1));
        assert_eq!(s.requests, 13);
        assert_eq!(s.error_samples.len(), MAX_ERROR_SAMPLES);
        assert_eq!(s.error_samples[0].message, "error 0");
        assert_eq!(s.error_samples[0].count, 3);
        assert!(close(s.p50_ms, 2.0));
        // 3 significant digits: 4000 µs is reported as its bucket top, 4001.
        assert!((s.max_ms - 4.0).abs() <= 0.004);
        let text = s.to_text();
        assert!(text.contains("Requests/sec:\t2.0000"));
        assert!(text.contains("(other errors)"));
    }

    #[test]
    fn empty_summary_is_all_zero() {
        let s = Recorder::new().summary("put", Duration::ZERO);
        assert_eq!(s.ok, 0);
        assert!(close(s.requests_per_sec, 0.0));
        assert!(s.histogram.is_empty());
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["p99_ms"], 0.0);
        assert!(s.to_text().contains("Summary:"));
    }
}
