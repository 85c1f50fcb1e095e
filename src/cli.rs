//! The command line: `serve` (the default), `check-config`, `healthcheck`. Every `serve` flag has a
//! `DYNAMO_CACHE_*` environment variable; flags win over the environment, which wins over the
//! config file, which wins over the defaults.

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
    },
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
