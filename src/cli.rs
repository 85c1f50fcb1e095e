//! The command line: `serve` (the default), `check-config`, `healthcheck`, `bench`. Every `serve` flag has a
//! `DYNAMO_CACHE_*` environment variable; flags win over the environment, which wins over the
//! config file, which wins over the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::bench;
use crate::config::{Config, ConfigError};

/// A read-through, write-through caching proxy for Amazon DynamoDB.
#[derive(Debug, Parser)]
#[command(name = "dynamo-cache", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `serve`'s flags, accepted without the word `serve`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the default).
    Serve(ServeArgs),
    /// Validate a config file and print the effective configuration.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Ask a running proxy's admin listener whether it is healthy; exit 0 if so, 1 if not.
    /// For container health checks in images without a shell or curl.
    Healthcheck {
        /// Admin listener address.
        #[arg(
            long,
            env = "DYNAMO_CACHE_ADMIN_LISTEN",
            default_value = "127.0.0.1:9464"
        )]
        admin: SocketAddr,
        /// Ask /readyz (serving and able to reach DynamoDB) instead of /healthz.
        #[arg(long)]
        ready: bool,
        /// The admin listener serves https (`tls.admin = true`). Its certificate is not checked:
        /// the probe only asks whether the proxy answers, and sends nothing secret.
        #[arg(long)]
        https: bool,
    },
    /// Measure read latency at an endpoint (the proxy, DynamoDB, an emulator) through the AWS
    /// SDK, optionally against a second one, and print throughput, percentiles and speed-up.
    Bench(BenchArgs),
}

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
    /// Endpoint to measure, e.g. the proxy: http://127.0.0.1:8000.
    #[arg(long)]
    pub endpoint: String,
    /// A second endpoint measured with the same workload (e.g. DynamoDB itself); the report
    /// says how many times faster --endpoint is.
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
    pub fn staleness_options(&self) -> Result<crate::staleness::Options, bench::BenchError> {
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
        Ok(crate::staleness::Options {
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
            && !crate::plot::supported(plot)
        {
            return Err(bench::BenchError::Options(format!(
                "--plot {}: the file must end in .svg or .png",
                plot.display()
            )));
        }
        Ok(options)
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Default, Clone, Args)]
pub struct ServeArgs {
    /// TOML config file (see config/dynamo-cache.toml).
    #[arg(long, env = "DYNAMO_CACHE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data listener address [default: 127.0.0.1:8000].
    #[arg(long, env = "DYNAMO_CACHE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Admin listener address (/metrics, /healthz, /readyz) [default: 127.0.0.1:9464].
    #[arg(long, env = "DYNAMO_CACHE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Upstream DynamoDB URL [default: https://dynamodb.<region>.amazonaws.com].
    #[arg(long, env = "DYNAMO_CACHE_UPSTREAM", conflicts_with = "embedded")]
    pub upstream: Option<String>,
    /// AWS region to sign for [default: the AWS region chain, then us-east-1].
    #[arg(long, env = "DYNAMO_CACHE_REGION")]
    pub region: Option<String>,
    /// Threads serving client connections; 0 = one per core [default: 0].
    #[arg(long, env = "DYNAMO_CACHE_WORKERS")]
    pub workers: Option<usize>,
    /// Maximum open client connections [default: 4096].
    #[arg(long, env = "DYNAMO_CACHE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Upstream request timeout in milliseconds [default: 10000].
    #[arg(long, env = "DYNAMO_CACHE_UPSTREAM_TIMEOUT_MS")]
    pub upstream_timeout_ms: Option<u64>,
    /// Follow the DynamoDB streams of cached tables, so writes that bypass the proxy are seen
    /// within the stream's lag.
    #[arg(long, env = "DYNAMO_CACHE_STREAMS")]
    pub streams: bool,
    /// Admin URL of a running replica: read its most used keys before reporting ready.
    #[arg(long, env = "DYNAMO_CACHE_WARM_FROM")]
    pub warm_from: Option<String>,
    /// Inbound authentication: none, or sigv4 (every request signed with a key of
    /// --credentials-file) [default: none].
    #[arg(long, env = "DYNAMO_CACHE_AUTH", value_enum)]
    pub auth: Option<crate::config::AuthMode>,
    /// TOML file of the principals that may call the proxy (with --auth sigv4).
    #[arg(long, env = "DYNAMO_CACHE_CREDENTIALS_FILE")]
    pub credentials_file: Option<PathBuf>,
    /// Serve a non-loopback --listen address without authentication: anyone who reaches it
    /// acts with the proxy's AWS identity.
    #[arg(long, env = "DYNAMO_CACHE_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,
    /// File holding the bearer token for /cache/flush, /cache/hot-keys and /debug/*.
    #[arg(long, env = "DYNAMO_CACHE_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// PEM certificate chain: serve https on the data listener (with --tls-key-file).
    #[arg(long, env = "DYNAMO_CACHE_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, env = "DYNAMO_CACHE_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// Put the proxy in front of a local DynamoDB emulator started on loopback.
    #[arg(long, env = "DYNAMO_CACHE_EMBEDDED")]
    pub embedded: bool,
    /// Keep the embedded emulator's data in this SQLite file instead of memory.
    #[arg(long, env = "DYNAMO_CACHE_EMBEDDED_DB", requires = "embedded")]
    pub embedded_db: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "DYNAMO_CACHE_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
}

impl ServeArgs {
    /// The config file (or the defaults) with this invocation's flags and environment applied,
    /// validated.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(admin) = self.admin_listen {
            config.admin_listen = admin;
        }
        if let Some(upstream) = &self.upstream {
            config.upstream = Some(upstream.clone());
        }
        if let Some(region) = &self.region {
            config.region = Some(region.clone());
        }
        if let Some(n) = self.workers {
            config.workers = n;
        }
        if let Some(n) = self.max_connections {
            config.limits.max_connections = n;
        }
        if let Some(ms) = self.upstream_timeout_ms {
            config.limits.upstream_timeout_ms = ms;
        }
        if self.streams {
            config.streams.enabled = true;
        }
        if let Some(from) = &self.warm_from {
            config.warm.from = Some(from.clone());
        }
        if let Some(mode) = self.auth {
            config.auth.mode = mode;
        }
        if let Some(file) = &self.credentials_file {
            config.auth.credentials_file = Some(file.clone());
        }
        if self.allow_unauthenticated {
            config.auth.allow_unauthenticated = true;
        }
        if let Some(file) = &self.admin_token_file {
            config.auth.admin_token_file = Some(file.clone());
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) {
            config.tls.cert_file = Some(cert.clone());
            config.tls.key_file = Some(key.clone());
        }
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_override_defaults() {
        let cli = Cli::try_parse_from([
            "dynamo-cache",
            "serve",
            "--listen",
            "127.0.0.1:7000",
            "--upstream",
            "http://127.0.0.1:7001",
        ])
        .unwrap();
        let Some(Command::Serve(args)) = cli.command else {
            panic!("serve expected")
        };
        let config = args.config().unwrap();
        assert_eq!(config.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(config.upstream.as_deref(), Some("http://127.0.0.1:7001"));
        assert_eq!(config.admin_listen, Config::default().admin_listen);
    }

    #[test]
    fn serve_is_the_default_and_embedded_excludes_upstream() {
        let cli = Cli::try_parse_from(["dynamo-cache", "--embedded"]).unwrap();
        assert!(cli.command.is_none() && cli.serve.embedded);
        assert!(
            Cli::try_parse_from(["dynamo-cache", "--embedded", "--upstream", "http://x:1"])
                .is_err()
        );
    }
}
