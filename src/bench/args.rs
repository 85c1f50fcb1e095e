//! `dynamo-cache bench`'s command line: its flags, checked into [`Options`](super::Options) or
//! [`staleness::Options`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{plot, staleness};
use crate::bench;

/// Key distribution of `bench`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Distribution {
    #[default]
    Uniform,
    Zipfian,
}

/// `dynamo-cache bench`'s flags.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Endpoint to measure, e.g. the proxy: http://127.0.0.1:8000 (through the AWS SDK), or
    /// its DAX listener: dax://127.0.0.1:8111 (through the bench's own DAX client).
    #[arg(long)]
    pub endpoint: String,
    /// A second endpoint measured with the same workload (e.g. DynamoDB itself, or the proxy's
    /// DAX listener); the report says how many times faster --endpoint is.
    #[arg(long)]
    pub compare: Option<String>,
    /// Table to read; with --seed, created (keys pk S, sk N) and filled first.
    #[arg(long, default_value = "dynamo-cache-bench")]
    pub table: String,
    /// Operation mix as weights: get, query, batch-get, put (e.g. get=90,query=5,put=5).
    #[arg(long, default_value = "get")]
    pub mix: String,
    /// Distinct items read and written.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Which keys requests pick.
    #[arg(long, value_enum, default_value_t)]
    pub distribution: Distribution,
    /// Skew of the zipfian distribution (0 = uniform; 0.99 is the YCSB default).
    #[arg(long, default_value_t = 0.99)]
    pub zipf_skew: f64,
    /// Item size in bytes (attribute names plus values, as DynamoDB counts).
    #[arg(long, default_value_t = 400)]
    pub item_size: usize,
    /// Keys per BatchGetItem.
    #[arg(long, default_value_t = 10)]
    pub batch_size: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Seconds to measure each endpoint (with --requests, whichever ends first).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Requests to measure per endpoint [default with neither: --duration 10].
    #[arg(long)]
    pub requests: Option<u64>,
    /// Seconds of unmeasured traffic before each measured run (fills a cache).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Open loop: this many requests per second in total, latency counted from each request's
    /// scheduled start (no coordinated omission). Without it: closed loop, as fast as answers come.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Create the table if missing and write every item before measuring (through --endpoint).
    #[arg(long)]
    pub seed: bool,
    /// Strongly consistent reads (a cache must pass them through).
    #[arg(long)]
    pub consistent_read: bool,
    /// Seed of the random key sequence, to repeat a run exactly.
    #[arg(long, default_value_t = 1)]
    pub rng_seed: u64,
    /// AWS region to sign for [default: AWS_REGION, then us-east-1].
    #[arg(long)]
    pub region: Option<String>,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw latency percentile curves of every endpoint into this .svg or .png file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Measure staleness instead of latency: write through --writer, then poll --endpoint
    /// (and --compare) until each serves the write; reports the visibility delay.
    #[arg(long, requires = "writer")]
    pub staleness: bool,
    /// With --staleness: where writes go (DynamoDB itself, or another replica of the proxy).
    #[arg(long)]
    pub writer: Option<String>,
    /// With --staleness: seconds a reader gets to serve a write before it counts as unseen.
    #[arg(long, default_value_t = 10.0)]
    pub staleness_timeout: f64,
}

impl BenchArgs {
    /// The options of a `--staleness` run (rounds = `--requests`, 50 by default), checked.
    pub fn staleness_options(&self) -> Result<staleness::Options, bench::BenchError> {
        let writer = self
            .writer
            .clone()
            .ok_or_else(|| bench::BenchError::Options("--staleness needs --writer URL".into()))?;
        let timeout = Duration::try_from_secs_f64(self.staleness_timeout)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| {
                bench::BenchError::Options(
                    "--staleness-timeout must be a positive number of seconds".into(),
                )
            })?;
        let latency = self.options()?;
        Ok(staleness::Options {
            writer,
            readers: latency.endpoints,
            table: latency.table,
            region: latency.region,
            rounds: self.requests.unwrap_or(50),
            keys: latency.workload.keys,
            item_size: latency.workload.item_size,
            timeout,
            seed_table: self.seed,
        })
    }

    /// The bench's options, checked.
    pub fn options(&self) -> Result<bench::Options, bench::BenchError> {
        let secs = |s: f64, flag: &str| {
            Duration::try_from_secs_f64(s).map_err(|_| {
                bench::BenchError::Options(format!("{flag} must be a number of seconds >= 0"))
            })
        };
        let duration = match (self.duration, self.requests) {
            (None, None) => Some(Duration::from_secs(10)),
            (Some(d), _) => Some(secs(d, "--duration")?),
            (None, Some(_)) => None,
        };
        let region = self
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| crate::config::FALLBACK_REGION.into());
        let options = bench::Options {
            endpoints: std::iter::once(self.endpoint.clone())
                .chain(self.compare.clone())
                .collect(),
            table: self.table.clone(),
            region,
            workload: bench::Workload {
                mix: bench::Mix::parse(&self.mix)?,
                keys: self.keys,
                distribution: match self.distribution {
                    Distribution::Uniform => bench::KeyDistribution::Uniform,
                    Distribution::Zipfian => bench::KeyDistribution::Zipfian {
                        skew: self.zipf_skew,
                    },
                },
                item_size: self.item_size,
                batch_size: self.batch_size,
                consistent_read: self.consistent_read,
            },
            pacing: bench::Pacing {
                concurrency: self.concurrency,
                duration,
                requests: self.requests,
                warmup: secs(self.warmup, "--warmup")?,
                rate: self.rate,
            },
            seed_table: self.seed,
            rng_seed: self.rng_seed,
            progress: !self.quiet,
        };
        options.validate()?;
        // Checked now, not after a long run.
        if let Some(plot) = &self.plot
            && !plot::supported(plot)
        {
            return Err(bench::BenchError::Options(format!(
                "--plot {}: the file must end in .svg or .png",
                plot.display()
            )));
        }
        Ok(options)
    }
}
