//! The state every request shares: one cheap-to-clone struct of `Arc`s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_credential_types::provider::SharedCredentialsProvider;

use crate::auth::Gate;
use crate::cache::Caches;
use crate::cache::HotKeys;
use crate::config::Config;
use crate::metrics::{CacheName, Metrics};
use crate::net::tls::Certs;
use crate::sync::streams::{self, Streams};
use crate::upstream::credentials::CredentialCache;
use crate::upstream::schema::Schemas;
use crate::upstream::{Upstream, UpstreamLimits};
use crate::wire::tables::Naming;

/// Everything the data and admin listeners need.
#[derive(Clone)]
pub struct State {
    /// The effective configuration (bounds, TTLs).
    pub config: Arc<Config>,
    /// The signed connection to DynamoDB.
    pub upstream: Arc<Upstream>,
    /// The same to DynamoDB Streams, for clients' `DynamoDBStreams_20120810.*` requests
    /// (on AWS a separate endpoint; on emulators usually the same URL).
    pub streams_upstream: Arc<Upstream>,
    /// Table key schemas, for deriving item keys.
    pub schemas: Arc<Schemas>,
    /// What `/metrics` exports.
    pub metrics: Arc<Metrics>,
    /// The item and query caches, kept in step by one API.
    pub caches: Arc<Caches>,
    /// The proxy's region and account, to read table ARNs as plain names.
    pub naming: Arc<Naming>,
    /// Followers of the cached tables' DynamoDB streams (idle unless enabled).
    pub streams: Arc<Streams>,
    /// The most read item keys, for other replicas' warm starts.
    pub hot_keys: Arc<HotKeys>,
    /// Who may call: signature verification and the admin token.
    pub gate: Arc<Gate>,
    /// The certificate served over https, when TLS is on.
    pub tls: Option<Arc<Certs>>,
    /// Set while a warm start runs, so readiness waits for it.
    warming: Arc<AtomicBool>,
    /// Set when shutdown begins, so readiness turns 503 before connections close.
    draining: Arc<AtomicBool>,
}

/// Why the proxy cannot start with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration contradicts itself (`check-config` says the same).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The principals file or the admin token cannot be read.
    #[error("authentication: {0}")]
    Auth(String),
    /// The certificate or its key cannot be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The upstream URL is not one the proxy can reach.
    #[error("upstream: {0}")]
    Upstream(String),
}

impl State {
    /// Builds the state for `config`, signing for `region` with `credentials`.
    ///
    /// The caller resolves region and credentials (the binary from the AWS chain, tests with
    /// static keys) so that this never reaches for the environment itself.
    pub fn new(
        config: Config,
        region: &str,
        credentials: SharedCredentialsProvider,
    ) -> Result<State, StartError> {
        config.validate()?;
        let gate = Gate::new(&config.auth, region, config.admin_listen.ip().is_loopback())
            .map_err(StartError::Auth)?;
        let tls = match (&config.tls.cert_file, &config.tls.key_file) {
            (Some(cert), Some(key)) => Some(Certs::load(cert, key).map_err(StartError::Tls)?),
            _ => None,
        };
        let cache = Arc::new(CredentialCache::new(credentials.clone()));
        let url = config.upstream_url(region);
        let limits = UpstreamLimits {
            timeout: config.upstream_timeout(),
            max_in_flight: config.limits.max_upstream_requests,
            queue_timeout: config.upstream_queue_timeout(),
        };
        let upstream =
            Upstream::new(&url, region, cache.clone(), limits).map_err(StartError::Upstream)?;
        let streams_upstream = Upstream::new(&config.streams_url(region), region, cache, limits)
            .map_err(StartError::Upstream)?;
        let metrics = Arc::new(Metrics::new());
        for (cache, budget) in [
            (CacheName::Item, config.cache.item_max_bytes),
            (CacheName::Query, config.cache.query_max_bytes),
        ] {
            metrics
                .cache_max_bytes
                .with_label_values(&[cache.as_str()])
                .set(i64::try_from(budget).unwrap_or(i64::MAX));
        }
        if let Some(expiry) = tls.as_ref().and_then(|certs| certs.not_after()) {
            metrics.tls_certificate_expiry.set(expiry);
        }
        let naming = Arc::new(Naming::new(region));
        let schemas = Arc::new(Schemas::new(
            &url,
            region,
            credentials.clone(),
            config.upstream_timeout(),
            metrics.clone(),
            naming.clone(),
        ));
        let caches = Arc::new(Caches::with_fleet(
            &config.cache,
            config.upstream_timeout(),
            metrics.clone(),
            crate::fleet::Fleet::new(&config, metrics.clone()),
        ));
        let streams = Streams::new(
            config.streams.clone(),
            streams::Endpoint {
                upstream: config.upstream.as_deref(),
                region,
                credentials,
                timeout: config.upstream_timeout(),
            },
            caches.clone(),
            schemas.clone(),
            metrics.clone(),
        );
        Ok(State {
            upstream: Arc::new(upstream),
            streams_upstream: Arc::new(streams_upstream),
            schemas,
            caches,
            naming,
            streams: Arc::new(streams),
            hot_keys: Arc::new(HotKeys::default()),
            gate: Arc::new(gate),
            tls,
            warming: Arc::new(AtomicBool::new(false)),
            metrics,
            draining: Arc::new(AtomicBool::new(false)),
            config: Arc::new(config),
        })
    }

    /// Re-reads the files named in config that may change while the proxy runs (SIGHUP): the
    /// credentials file, the admin token, the TLS certificate. Each that fails to load keeps
    /// its old value; the errors say which.
    pub fn reload(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        if let Err(err) = self.gate.reload() {
            errors.push(err);
        }
        if let Some(tls) = &self.tls {
            match tls.reload() {
                Ok(()) => {
                    if let Some(expiry) = tls.not_after() {
                        self.metrics.tls_certificate_expiry.set(expiry);
                    }
                }
                Err(err) => errors.push(err),
            }
        }
        self.metrics.reload_failures.inc_by(errors.len() as u64);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Marks the proxy as shutting down (readiness turns 503).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Marks a warm start as running (`true`) or over.
    pub fn set_warming(&self, warming: bool) {
        self.warming.store(warming, Ordering::SeqCst);
    }

    pub fn is_warming(&self) -> bool {
        self.warming.load(Ordering::SeqCst)
    }
}
