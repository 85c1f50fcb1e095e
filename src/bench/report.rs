//! What the bench reports: throughput, percentiles and errors per endpoint and operation, the
//! ratios between two endpoints, and the tables printed from them.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::KeyDistribution;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub(super) fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// One operation's figures at one endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    pub requests: u64,
    pub errors: u64,
    pub latency_us: Percentiles,
}

/// One endpoint's figures.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointReport {
    pub endpoint: String,
    /// Completed requests, successful or not.
    pub requests: u64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Length of the measured run.
    pub seconds: f64,
    /// Requests per second (successful or not).
    pub throughput: f64,
    /// Latency of successful requests.
    pub latency_us: Percentiles,
    pub by_op: BTreeMap<&'static str, OpReport>,
    /// (percentile, µs) points of the latency distribution, for charts.
    pub percentile_curve: Vec<(f64, u64)>,
    /// The whole distribution of successful requests, for plots.
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

/// How many times faster the first endpoint is than another (above 1 = faster).
#[derive(Debug, Clone, Serialize)]
pub struct Speedup {
    pub baseline: String,
    pub p50: f64,
    pub p99: f64,
    pub throughput: f64,
}

/// The whole result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub table: String,
    pub mix: String,
    pub keys: u64,
    pub distribution: KeyDistribution,
    pub item_size: usize,
    pub consistent_read: bool,
    pub concurrency: usize,
    /// Target rate of an open-loop run (`None` = closed loop).
    pub rate: Option<f64>,
    pub endpoints: Vec<EndpointReport>,
    pub speedup: Vec<Speedup>,
    /// Ctrl-C stopped the run early; the figures cover what ran.
    pub interrupted: bool,
}

pub(super) fn speedup(first: &EndpointReport, baseline: &EndpointReport) -> Speedup {
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    Speedup {
        baseline: baseline.endpoint.clone(),
        p50: ratio(baseline.latency_us.p50 as f64, first.latency_us.p50 as f64),
        p99: ratio(baseline.latency_us.p99 as f64, first.latency_us.p99 as f64),
        throughput: ratio(first.throughput, baseline.throughput),
    }
}

impl Report {
    /// The human-readable tables: one row per endpoint, one per operation when the mix has
    /// several, then the speed-up ratios.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let pacing = match self.rate {
            Some(rate) => format!("open loop at {rate:.0} req/s"),
            None => "closed loop".into(),
        };
        let distribution = match self.distribution {
            KeyDistribution::Uniform => "uniform".to_string(),
            KeyDistribution::Zipfian { skew } => format!("zipfian (skew {skew})"),
        };
        let _ = writeln!(
            out,
            "table {}: {}; {} keys, {distribution}; items ~{} B; {}concurrency {}, {pacing}",
            self.table,
            self.mix,
            self.keys,
            self.item_size,
            if self.consistent_read {
                "strongly consistent reads; "
            } else {
                ""
            },
            self.concurrency,
        );
        let _ = writeln!(
            out,
            "\n{:<36} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "endpoint", "requests", "req/s", "p50", "p90", "p99", "p99.9", "max", "errors"
        );
        for e in &self.endpoints {
            let row = |out: &mut String,
                       name: &str,
                       requests: u64,
                       rate: Option<f64>,
                       l: &Percentiles,
                       errors: u64| {
                let _ = writeln!(
                    out,
                    "{:<36} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
                    name,
                    requests,
                    rate.map_or(String::new(), |r| format!("{r:.0}")),
                    micros(l.p50),
                    micros(l.p90),
                    micros(l.p99),
                    micros(l.p999),
                    micros(l.max),
                    errors
                );
            };
            row(
                &mut out,
                &e.endpoint,
                e.requests,
                Some(e.throughput),
                &e.latency_us,
                e.errors,
            );
            if e.by_op.len() > 1 {
                for (op, r) in &e.by_op {
                    row(
                        &mut out,
                        &format!("  {op}"),
                        r.requests,
                        None,
                        &r.latency_us,
                        r.errors,
                    );
                }
            }
        }
        for e in self.endpoints.iter().filter(|e| e.errors > 0) {
            let _ = writeln!(out, "\nerrors at {}:", e.endpoint);
            for (kind, n) in &e.errors_by_kind {
                let _ = writeln!(out, "  {kind:<50} {n}");
            }
        }
        if let Some(first) = self.endpoints.first() {
            for s in &self.speedup {
                let _ = writeln!(
                    out,
                    "\n{} vs {}: p50 {:.2}x, p99 {:.2}x faster; throughput {:.2}x",
                    first.endpoint, s.baseline, s.p50, s.p99, s.throughput
                );
            }
        }
        if self.interrupted {
            let _ = writeln!(out, "\n(interrupted: the figures cover the part that ran)");
        }
        out
    }
}

/// A latency in µs, as µs or ms, whichever reads better.
fn micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{us}µs")
    }
}
