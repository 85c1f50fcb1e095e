//! The command line: `serve` (the default), `check-config`, `healthcheck`, `admin`, `bench`.
//! Every `serve` flag has a `DYNAMO_CACHE_*` environment variable; flags win over the
//! environment, which wins over the config file, which wins over the defaults. [`admin`] is the
//! binary's own client for the admin listener (`healthcheck` and `admin`).

pub mod admin;
pub mod commands;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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

// Parsed once at start-up: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the default).
    Serve(ServeArgs),
    /// Validate a config file and print the effective configuration: the file, then the
    /// environment and any `serve` flags given here, as `serve` would apply them.
    CheckConfig {
        /// The TOML file to check (else `--config` or `DYNAMO_CACHE_CONFIG`, else the defaults).
        file: Option<PathBuf>,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Ask a running proxy's admin listener whether it is healthy; exit 0 if so, 1 if not.
    /// For container health checks in images without a shell or curl.
    Healthcheck {
        #[command(flatten)]
        target: AdminTargetArgs,
        /// Ask /readyz (able to serve: credentials loaded, warm start over) instead of /healthz.
        #[arg(long)]
        ready: bool,
    },
    /// Talk to a running proxy's admin listener: flush its cache, read its statistics.
    Admin {
        #[command(flatten)]
        target: AdminTargetArgs,
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Measure read latency at an endpoint (the proxy, DynamoDB, an emulator) through the AWS
    /// SDK, optionally against a second one, and print throughput, percentiles and speed-up.
    #[cfg(feature = "bench")]
    Bench(crate::bench::args::BenchArgs),
}

/// How to reach a running proxy's admin listener: from `--config` (the proxy's own file),
/// overridden by the environment and flags, as `serve` reads them.
#[derive(Debug, Clone, Args)]
pub struct AdminTargetArgs {
    /// The proxy's config file: its admin listener, `tls.admin` and admin token.
    #[arg(long, env = "DYNAMO_CACHE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Admin listener address [default: 127.0.0.1:9464].
    #[arg(long, env = "DYNAMO_CACHE_ADMIN_LISTEN")]
    pub admin: Option<SocketAddr>,
    /// The admin listener serves https (`tls.admin = true`). Its certificate is not checked:
    /// this talks to the proxy on its own host.
    #[arg(long)]
    pub https: bool,
    /// The admin token file (`auth.admin_token_file`).
    #[arg(long, env = "DYNAMO_CACHE_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
}

/// What `dynamo-cache admin` does.
#[derive(Debug, Clone, Subcommand)]
pub enum AdminAction {
    /// Drop cached items and query answers: of one table, or everything.
    Flush {
        /// The table (name or ARN); every table when left out.
        #[arg(long)]
        table: Option<String>,
    },
    /// What each cache holds and how well it hits (`GET /cache`), as JSON.
    Stats,
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
    /// DAX protocol listener for DAX client applications (`dax://`; `daxs://` with TLS), by
    /// convention 127.0.0.1:8111 [default: none].
    #[arg(long, env = "DYNAMO_CACHE_DAX_LISTEN")]
    pub dax_listen: Option<SocketAddr>,
    /// The address DAX clients are told to reach this node at (behind NAT or a load
    /// balancer) [default: the address each client reached].
    #[arg(long, env = "DYNAMO_CACHE_DAX_ADVERTISE", requires = "dax_listen")]
    pub dax_advertise: Option<SocketAddr>,
    /// File that keeps DAX attribute lists across restarts (DAX clients keep the ids they were
    /// given) [default: memory only].
    #[arg(
        long,
        env = "DYNAMO_CACHE_DAX_ATTRIBUTE_LISTS_FILE",
        requires = "dax_listen"
    )]
    pub dax_attribute_lists_file: Option<PathBuf>,
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
    /// Hold each request to the embedded emulator and its answer this many milliseconds in all,
    /// half each way: a simulation of DynamoDB in the application's region (try 4), so that
    /// benchmarks show what the cache saves.
    #[arg(
        long,
        env = "DYNAMO_CACHE_EMBEDDED_LATENCY_MS",
        requires = "embedded",
        value_parser = clap::value_parser!(u64).range(0..=60_000)
    )]
    pub embedded_latency_ms: Option<u64>,
    /// The fleet tier's Valkey or Redis: a `redis://` or `rediss://` URL; repeat it for the
    /// seed nodes of a cluster [default: none].
    #[arg(
        long = "fleet-redis",
        env = "DYNAMO_CACHE_FLEET_REDIS",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub fleet_redis: Vec<String>,
    /// The fleet's name, the namespace of its keys [default: dynamo-cache].
    #[arg(long, env = "DYNAMO_CACHE_FLEET_NAME")]
    pub fleet_name: Option<String>,
    /// What DAX clients are told the cluster is: this node (`self`) or every live member of
    /// the fleet (`fleet`) [default: self].
    #[arg(long, env = "DYNAMO_CACHE_FLEET_DISCOVERY", value_enum)]
    pub fleet_discovery: Option<crate::config::Discovery>,
    /// The longest one call to the fleet's engine may add to a request, in milliseconds
    /// [default: 5].
    #[arg(long, env = "DYNAMO_CACHE_FLEET_TIMEOUT_MS")]
    pub fleet_timeout_ms: Option<u64>,
    /// Log format.
    #[arg(long, env = "DYNAMO_CACHE_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
    /// What is logged (`info`, `debug`, or directives like `info,dynamo_cache=debug`);
    /// `RUST_LOG` wins [default: info].
    #[arg(long, env = "DYNAMO_CACHE_LOG_LEVEL")]
    pub log_level: Option<String>,
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
        if let Some(dax) = self.dax_listen {
            config.dax_listen = Some(dax);
        }
        if let Some(advertise) = self.dax_advertise {
            config.dax_advertise = Some(advertise);
        }
        if let Some(file) = &self.dax_attribute_lists_file {
            config.dax_attribute_lists_file = Some(file.clone());
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
        if !self.fleet_redis.is_empty() {
            config.fleet.redis = self.fleet_redis.clone();
        }
        if let Some(name) = &self.fleet_name {
            config.fleet.name = name.clone();
        }
        if let Some(discovery) = self.fleet_discovery {
            config.fleet.discovery = discovery;
        }
        if let Some(ms) = self.fleet_timeout_ms {
            config.fleet.timeout_ms = ms;
        }
        if let Some(level) = &self.log_level {
            config.log_level = level.clone();
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
    fn fleet_flags_repeat_and_the_variable_takes_a_list() {
        let cli = Cli::try_parse_from([
            "dynamo-cache",
            "--fleet-redis",
            "redis://127.0.0.1:7001",
            "--fleet-redis",
            "redis://127.0.0.1:7002",
            "--fleet-discovery",
            "fleet",
            "--dax-listen",
            "127.0.0.1:8111",
        ])
        .unwrap();
        let config = cli.serve.config().unwrap();
        assert_eq!(
            config.fleet.redis,
            ["redis://127.0.0.1:7001", "redis://127.0.0.1:7002"]
        );
        assert_eq!(config.fleet.discovery, crate::config::Discovery::Fleet);
        let parsed = <ServeArgs as clap::FromArgMatches>::from_arg_matches(
            &<ServeArgs as clap::Args>::augment_args(clap::Command::new("t"))
                .try_get_matches_from(["t", "--fleet-redis", "redis://a:1,rediss://b:2"])
                .unwrap(),
        )
        .unwrap();
        assert_eq!(parsed.fleet_redis, ["redis://a:1", "rediss://b:2"]);
        let bad = Cli::try_parse_from(["dynamo-cache", "--fleet-redis", "http://x:1"]).unwrap();
        assert!(bad.serve.config().is_err(), "only redis:// and rediss://");
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
