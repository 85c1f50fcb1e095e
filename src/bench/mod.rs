//! `dynamo-cache bench`: read latency as an application sees it, through the real AWS SDK, at one
//! endpoint or two (the proxy and DynamoDB itself, say), with the same workload against each.
//!
//! The steps: check every endpoint answers and has the table (creating and filling it with
//! `--seed`) -> per endpoint, a warm-up whose figures are thrown away (it also fills a cache),
//! then the measured run -> a report per endpoint (throughput, percentiles, errors by kind) and
//! the ratios between the two.
//!
//! Latencies go into HDR histograms (microseconds, 3 significant digits), one per worker and
//! operation, merged at the end so recording never takes a lock. With a target rate (open loop)
//! every request has an intended start time and its latency counts from then, so a stalled
//! endpoint is charged for the requests it kept waiting (no coordinated omission).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub mod args;
pub mod dax;
mod dax_codec;
mod measure;
pub mod plot;
mod report;
mod setup;
pub mod staleness;
mod workload;

pub use report::{EndpointReport, OpReport, Percentiles, Report, Speedup};
pub use setup::{Target, client, error_kind, prepare, prepare_targets, put};
pub use workload::{KeyDistribution, Mix, Op, Pacing, Workload, key_of};

use report::speedup;
use setup::is_dax;
use workload::KeyPicker;

/// Items per partition: key `k` is item (`pk = "k{k / 10}"`, `sk = k % 10`), so a Query reads
/// one partition of ten items.
pub const ITEMS_PER_PARTITION: u64 = 10;
/// The bench table's key attributes (what `--seed` creates).
const PK: &str = "pk";
const SK: &str = "sk";
/// Largest latency the histograms hold (60 s, in µs); longer ones are clamped to it.
const MAX_LATENCY_US: u64 = 60_000_000;
/// How long one request may take before it counts as a timeout error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Endpoint checks and table creation use a shorter leash: a wrong URL should fail fast.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(5);

/// What went wrong before any figure could be measured.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Options(String),
    #[error("cannot reach {endpoint}: {cause}")]
    Unreachable { endpoint: String, cause: String },
    #[error("table {table:?} does not exist at {endpoint}; pass --seed to create and fill it")]
    NoTable { table: String, endpoint: String },
    #[error(
        "table {table:?} at {endpoint} has key schema {found}; the bench needs {PK} (S, HASH) \
         and {SK} (N, RANGE): use another --table, or --seed to create one"
    )]
    WrongSchema {
        table: String,
        endpoint: String,
        found: String,
    },
    #[error("{endpoint}: {what}: {cause}")]
    Request {
        endpoint: String,
        what: &'static str,
        cause: String,
    },
    #[error("writing {path}: {cause}")]
    Output { path: PathBuf, cause: String },
}
/// Everything `bench` needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Endpoints to measure, in order; the first is the one compared against the others.
    pub endpoints: Vec<String>,
    pub table: String,
    pub region: String,
    pub workload: Workload,
    pub pacing: Pacing,
    /// Create the table if missing and write every item before measuring.
    pub seed_table: bool,
    /// Seed of the key sequence, so runs can be repeated.
    pub rng_seed: u64,
    /// Draw progress bars (on a terminal).
    pub progress: bool,
}

impl Options {
    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |m: &str| Err(BenchError::Options(m.to_string()));
        if self.endpoints.is_empty() {
            return bad("--endpoint is required");
        }
        for endpoint in &self.endpoints {
            if is_dax(endpoint) {
                if endpoint
                    .trim_start_matches("dax://")
                    .parse::<std::net::SocketAddr>()
                    .is_err()
                {
                    return Err(BenchError::Options(format!(
                        "{endpoint:?} is not a dax://IP:PORT endpoint"
                    )));
                }
                continue;
            }
            let uri: http::Uri = endpoint.parse().map_err(|_| {
                BenchError::Options(format!("{endpoint:?} is not a URL (http://host:port)"))
            })?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(BenchError::Options(format!(
                    "{endpoint:?} is not an http://, https:// or dax:// URL"
                )));
            }
        }
        let w = &self.workload;
        let p = &self.pacing;
        if w.keys == 0 {
            return bad("--keys must be at least 1");
        }
        if self.seed_table && self.endpoints.iter().all(|e| is_dax(e)) {
            return bad("--seed needs an http:// endpoint to create and fill the table through");
        }
        if !(1..=100).contains(&w.batch_size) {
            return bad("--batch-size must be between 1 and 100 (DynamoDB's limit)");
        }
        if w.item_size > 400 * 1024 {
            return bad("--item-size must be at most 409600 bytes (DynamoDB's item limit)");
        }
        if p.concurrency == 0 {
            return bad("--concurrency must be at least 1");
        }
        if p.duration.is_none() && p.requests.is_none() {
            return bad("give --duration or --requests (or both)");
        }
        if p.duration.is_some_and(|d| d.is_zero()) || p.requests == Some(0) {
            return bad("--duration and --requests must be above 0");
        }
        if p.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return bad("--rate must be a positive number of requests per second");
        }
        if let KeyDistribution::Zipfian { skew } = w.distribution
            && !(skew.is_finite() && skew >= 0.0)
        {
            return bad("--zipf-skew must be 0 or more");
        }
        Ok(())
    }
}

/// Runs the whole bench; `stop` (Ctrl-C) ends it early with the figures so far.
pub async fn run(options: &Options, stop: CancellationToken) -> Result<Report, BenchError> {
    let clients = prepare_targets(options, &stop).await?;
    let picker = Arc::new(KeyPicker::new(
        options.workload.keys,
        options.workload.distribution,
    )?);
    let mut endpoints = Vec::new();
    for (client, endpoint) in clients.iter().zip(&options.endpoints) {
        if stop.is_cancelled() {
            break;
        }
        if !options.pacing.warmup.is_zero() {
            let warmup = Pacing {
                duration: Some(options.pacing.warmup),
                requests: None,
                ..options.pacing.clone()
            };
            let label = format!("warm-up  {endpoint}");
            measure::run_one(client, options, &warmup, &picker, &label, &stop).await;
        }
        let label = format!("measured {endpoint}");
        let run = measure::run_one(client, options, &options.pacing, &picker, &label, &stop).await;
        endpoints.push(run.report(endpoint));
    }
    let speedup = endpoints
        .iter()
        .skip(1)
        .map(|baseline| speedup(&endpoints[0], baseline))
        .collect();
    let w = &options.workload;
    Ok(Report {
        table: options.table.clone(),
        mix: w.mix.to_string(),
        keys: w.keys,
        distribution: w.distribution,
        item_size: w.item_size,
        consistent_read: w.consistent_read,
        concurrency: options.pacing.concurrency,
        rate: options.pacing.rate,
        endpoints,
        speedup,
        interrupted: stop.is_cancelled(),
    })
}

#[cfg(test)]
mod tests {
    use super::measure::{new_histogram, percentile_curve};
    use super::setup::is_loopback;
    use super::workload::item_of;
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn mix_parses_weights_names_and_aliases() {
        let mix = Mix::parse("get=80, Query=10,batch-get=5,PutItem=5").unwrap();
        assert_eq!(
            mix.weights,
            vec![
                (Op::GetItem, 80),
                (Op::Query, 10),
                (Op::BatchGetItem, 5),
                (Op::PutItem, 5)
            ]
        );
        assert_eq!(Mix::parse("get").unwrap().weights, vec![(Op::GetItem, 1)]);
        assert!(Mix::parse("scan=1").is_err());
        assert!(Mix::parse("get=x").is_err());
        assert!(Mix::parse("get=0").is_err());
        assert!(Mix::parse("get=1,get=2").is_err());
    }

    #[test]
    fn mix_picks_in_proportion() {
        let mix = Mix::parse("get=75,put=25").unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        let puts = (0..10_000)
            .filter(|_| mix.pick(&mut rng) == Op::PutItem)
            .count();
        assert!((2200..2800).contains(&puts), "{puts} puts of 10000");
    }

    #[test]
    fn zipfian_keys_favour_the_hot_end_and_stay_in_range() {
        let picker = KeyPicker::new(1000, KeyDistribution::Zipfian { skew: 1.1 }).unwrap();
        let mut rng = SmallRng::seed_from_u64(1);
        let picks: Vec<u64> = (0..20_000).map(|_| picker.pick(&mut rng)).collect();
        assert!(picks.iter().all(|&k| k < 1000));
        let hottest = picks.iter().filter(|&&k| k == 0).count();
        let coldest_half = picks.iter().filter(|&&k| k >= 500).count();
        assert!(hottest > coldest_half, "{hottest} vs {coldest_half}");

        let uniform = KeyPicker::new(1000, KeyDistribution::Uniform).unwrap();
        let zeros = (0..20_000).filter(|_| uniform.pick(&mut rng) == 0).count();
        assert!(zeros < 100, "uniform picked key 0 {zeros} times");
    }

    #[test]
    fn items_have_about_the_asked_size() {
        for size in [100usize, 400, 4000] {
            let item = item_of(12345, size, 99);
            let bytes: usize = item
                .iter()
                .map(|(name, value)| {
                    name.len()
                        + match value {
                            AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
                            _ => 0,
                        }
                })
                .sum();
            assert!(bytes.abs_diff(size) <= 8, "asked {size}, got {bytes}");
        }
        assert_eq!(key_of(123)[PK], AttributeValue::S("k12".into()));
        assert_eq!(key_of(123)[SK], AttributeValue::N("3".into()));
    }

    #[test]
    fn loopback_endpoints_are_recognised() {
        assert!(is_loopback("http://127.0.0.1:8000"));
        assert!(is_loopback("http://localhost:8000"));
        assert!(is_loopback("http://[::1]:8000"));
        assert!(!is_loopback("https://dynamodb.us-east-1.amazonaws.com"));
        assert!(!is_loopback("http://10.0.0.1:8000"));
    }

    #[test]
    fn percentile_curve_ends_at_the_maximum() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let curve = percentile_curve(&h);
        assert!(
            curve
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
        );
        assert_eq!(curve.last().copied(), Some((100.0, h.max())));
    }
}
