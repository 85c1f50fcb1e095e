//! Configuration: one TOML file, overridden by `DYNAMO_CACHE_*` environment variables and flags
//! (see [`crate::cli`]). [`Config::load`] reads, parses and validates; unknown keys are errors so
//! a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where clients connect by default: loopback, so only the local host acts with our IAM identity.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
/// Metrics, health and cache administration, also loopback by default.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9464";
/// DynamoDB accepts request bodies up to 16 MiB; a little slack keeps us from refusing one it
/// would accept.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024 + 64 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Longer than the SDKs keep an idle pooled connection (90 s in the Rust and Go SDKs, 60 s in
/// Java's), so that the client, not the proxy, closes it: a close that crosses a reused
/// connection's next request costs that request a retry.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 120_000;
pub const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_DRAIN_TIMEOUT_MS: u64 = 20_000;
pub const DEFAULT_MAX_UPSTREAM_REQUESTS: usize = 1024;
pub const DEFAULT_UPSTREAM_QUEUE_TIMEOUT_MS: u64 = 1_000;
pub const DEFAULT_STALE_GRACE_MS: u64 = 60_000;
/// AWS documents that a write reaches every copy of an item, and every global secondary
/// index, usually within a second, with no bound. Twice that keeps the tail of that
/// distribution inside the window; the cost (a strongly consistent read costs twice the
/// capacity) falls only on fills that race a write.
pub const DEFAULT_CONSISTENCY_WINDOW_MS: u64 = 2_000;
/// Used when neither config nor the AWS region chain names a region.
pub const FALLBACK_REGION: &str = "us-east-1";

/// The whole configuration of one proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Data listener: where SDK clients send DynamoDB requests.
    pub listen: SocketAddr,
    /// Admin listener: `/metrics`, `/healthz`, `/readyz`.
    pub admin_listen: SocketAddr,
    /// DAX protocol listener (`dax://`, or `daxs://` with TLS), for applications that use a DAX
    /// client; `None` (the default) serves no DAX. By convention `127.0.0.1:8111`.
    pub dax_listen: Option<SocketAddr>,
    /// The address DAX clients are told to reach this node at (the `endpoints` answer);
    /// `None` means the address each client reached it on. Set it behind NAT, port mapping or
    /// a load balancer.
    pub dax_advertise: Option<SocketAddr>,
    /// Where the DAX attribute lists are kept across restarts (DAX clients keep the ids they
    /// were given for as long as they run); `None` keeps them in memory only.
    pub dax_attribute_lists_file: Option<PathBuf>,
    /// Upstream DynamoDB URL; `None` means `https://dynamodb.<region>.amazonaws.com`.
    pub upstream: Option<String>,
    /// Signing region; `None` means the AWS region chain, then [`FALLBACK_REGION`].
    pub region: Option<String>,
    /// Threads serving client connections; 0 = one per available core (cgroup-aware).
    pub workers: usize,
    /// Bounds that protect the proxy from its callers and from a slow upstream.
    pub limits: Limits,
    /// What is cached and for how long.
    pub cache: CacheConfig,
    /// Following the tables' DynamoDB streams, for freshness across writers.
    pub streams: StreamsConfig,
    /// Reading another replica's most used keys before reporting ready.
    pub warm: WarmConfig,
    /// Who may call the proxy, and what they may do.
    pub auth: AuthConfig,
    /// Certificates for serving https.
    pub tls: TlsConfig,
    /// A cache shared by a fleet of proxies, on Valkey or Redis (off unless `fleet.redis` is set).
    pub fleet: FleetConfig,
    /// What is logged: a level (`info`) or `tracing` directives (`info,dynamo_cache=debug`);
    /// `RUST_LOG`, when set, wins.
    pub log_level: String,
}

/// How callers of the data listener prove who they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Anyone who reaches the listener may call it (a sidecar on loopback).
    #[default]
    None,
    /// Every request must be SigV4-signed with a key of `auth.credentials_file`.
    Sigv4,
}

/// Inbound authentication and the admin listener's token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `none`, or `sigv4`: verify every request's signature against `credentials_file`.
    pub mode: AuthMode,
    /// TOML file of `[[principal]]`s: access key, secret, table globs, operations. Re-read on
    /// SIGHUP.
    pub credentials_file: Option<PathBuf>,
    /// Serve a non-loopback data listener with `mode = "none"`: anyone who reaches it acts
    /// with the proxy's AWS identity. Refused unless set.
    pub allow_unauthenticated: bool,
    /// File holding the bearer token that `/cache/flush`, `/cache/hot-keys` and `/debug/*`
    /// require; without it those are refused on a non-loopback admin listener. Re-read on
    /// SIGHUP.
    pub admin_token_file: Option<PathBuf>,
}

/// TLS (rustls) on the listeners. Both files are PEM and re-read on SIGHUP.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Certificate chain, leaf first. With `key_file`, the data listener serves https only.
    pub cert_file: Option<PathBuf>,
    /// The certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Serve the admin listener over https too (probes and scrapers then need `scheme: HTTPS`).
    pub admin: bool,
}

impl TlsConfig {
    /// Whether the data listener serves https.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }
}

pub const DEFAULT_WARM_MAX_KEYS: usize = 10_000;
pub const DEFAULT_WARM_RATE_PER_SEC: u32 = 1_000;
pub const DEFAULT_WARM_TIMEOUT_MS: u64 = 30_000;

/// Warm starts: before it reports ready, a new replica reads the keys another one uses most.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarmConfig {
    /// Admin URL of a running replica (`http://10.0.0.5:9464`); `None` = start cold.
    pub from: Option<String>,
    /// Keys to read at most.
    pub max_keys: usize,
    /// Reads per second at most, so a warm-up never floods DynamoDB.
    pub rate_per_sec: u32,
    /// The whole warm-up's time limit; readiness waits no longer than this.
    pub timeout_ms: u64,
}

impl Default for WarmConfig {
    fn default() -> Self {
        WarmConfig {
            from: None,
            max_keys: DEFAULT_WARM_MAX_KEYS,
            rate_per_sec: DEFAULT_WARM_RATE_PER_SEC,
            timeout_ms: DEFAULT_WARM_TIMEOUT_MS,
        }
    }
}

/// How often a followed stream is read when it had nothing new.
pub const DEFAULT_STREAM_POLL_INTERVAL_MS: u64 = 250;

/// DynamoDB Streams invalidation: writes that bypass this proxy (other services, other
/// replicas) drop cached entries within the stream's lag instead of the TTL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamsConfig {
    /// Follow the stream of every table the proxy caches (tables need a stream; KEYS_ONLY is
    /// enough, a view with new images also spares entries that are already up to date).
    pub enabled: bool,
    /// Pause between reads of a shard that had no new records.
    pub poll_interval_ms: u64,
    /// The DynamoDB Streams API URL; `None` = the upstream URL when one is set (emulators serve
    /// both APIs there), else `https://streams.dynamodb.<region>.amazonaws.com`.
    pub endpoint: Option<String>,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            enabled: false,
            poll_interval_ms: DEFAULT_STREAM_POLL_INTERVAL_MS,
            endpoint: None,
        }
    }
}

impl StreamsConfig {
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
}

/// What DAX clients are told the cluster is, in answer to `endpoints`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Discovery {
    /// This node alone.
    #[default]
    #[serde(rename = "self")]
    #[value(name = "self")]
    Myself,
    /// Every live member of the fleet, so clients spread their load over it.
    Fleet,
}

/// The fleet tier: nodes that share one item cache on Valkey or Redis, and tell each other
/// about writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// The engine: one `redis://` or `rediss://` URL (standalone, or one node of a cluster),
    /// or a list of cluster seed URLs. Empty (the default): no fleet.
    #[serde(
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub redis: Vec<String>,
    /// The fleet's name: the namespace of its keys and channels. Proxies with the same name
    /// and engine are one fleet.
    pub name: String,
    /// What DAX clients are told the cluster is: `self` (this node) or `fleet` (every live
    /// member).
    pub discovery: Discovery,
    /// The longest one engine call may add to a request; past it the request goes on without
    /// the engine (to DynamoDB) and the node counts the engine as failing.
    pub timeout_ms: u64,
    /// How long a miss's lease keeps other nodes from reading the same key upstream.
    pub lease_ms: u64,
    /// How long a miss waits for another node's lease to be filled before reading DynamoDB
    /// itself.
    pub lease_wait_ms: u64,
    /// How often a node checks that its invalidation channels deliver (and that it is still
    /// a member).
    pub probe_interval_ms: u64,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(url) if url.is_empty() => Vec::new(),
        OneOrMany::One(url) => vec![url],
        OneOrMany::Many(urls) => urls,
    })
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            redis: Vec::new(),
            name: "dynamo-cache".into(),
            discovery: Discovery::Myself,
            timeout_ms: 5,
            lease_ms: 1_000,
            lease_wait_ms: 20,
            probe_interval_ms: 100,
        }
    }
}

impl FleetConfig {
    pub fn enabled(&self) -> bool {
        !self.redis.is_empty()
    }

    fn validate(&self) -> Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        for url in &self.redis {
            let ok = url.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "redis" | "rediss") && !rest.is_empty()
            });
            if !ok {
                return Err(format!(
                    "fleet.redis {url:?} must be a redis:// or rediss:// URL with a host"
                ));
            }
        }
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(format!(
                "fleet.name {:?} must be 1 to 64 letters, digits, '-', '_' or '.'",
                self.name
            ));
        }
        for (name, value, max) in [
            ("fleet.timeout_ms", self.timeout_ms, 10_000),
            ("fleet.lease_ms", self.lease_ms, 60_000),
            ("fleet.lease_wait_ms", self.lease_wait_ms, 10_000),
            ("fleet.probe_interval_ms", self.probe_interval_ms, 10_000),
        ] {
            if value == 0 || value > max {
                return Err(format!("{name} must be between 1 and {max}"));
            }
        }
        Ok(())
    }
}

/// DAX's defaults: 5 minutes for items; 0 means no time-based expiry (only writes and size).
pub const DEFAULT_ITEM_TTL_MS: u64 = 5 * 60 * 1000;
pub const DEFAULT_ITEM_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// DAX's default query TTL; 0 turns the query cache off.
pub const DEFAULT_QUERY_TTL_MS: u64 = 5 * 60 * 1000;
pub const DEFAULT_QUERY_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// What a write through the proxy does to cached Query and Scan answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryInvalidation {
    /// Drop the base-table queries of the written partition, and the table's scans and index
    /// queries.
    #[default]
    Partition,
    /// Drop every query and scan of the written table.
    Table,
    /// Drop nothing: answers live until their TTL (DAX's behaviour).
    Ttl,
}

/// The caches' budgets and lifetimes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Memory for cached items: keys, bodies and bookkeeping, counted in bytes.
    pub item_max_bytes: u64,
    /// How long an item stays cached; 0 = until written, evicted or flushed (as in DAX).
    pub item_ttl_ms: u64,
    /// Memory for cached Query and Scan answers.
    pub query_max_bytes: u64,
    /// How long a Query or Scan answer stays cached; 0 = the query cache is off (as in DAX).
    pub query_ttl_ms: u64,
    /// What writes through the proxy do to cached Query and Scan answers.
    pub query_invalidation: QueryInvalidation,
    /// When the upstream fails (error, timeout, throttling), answer a read from an entry that
    /// expired less than `stale_grace_ms` ago, marked `x-dynamo-cache: stale`.
    pub serve_stale_on_error: bool,
    /// How long past its TTL an entry may still be served when the upstream fails.
    pub stale_grace_ms: u64,
    /// For this long after a write the proxy saw (its own, a stream record, a flush), a miss
    /// on anything the write may have changed fills with a strongly consistent read, and an
    /// index Query of its table is not cached: an eventually consistent read may not reflect
    /// a write DynamoDB acknowledged moments ago. 0 turns the window off.
    pub consistency_window_ms: u64,
    /// Per-table overrides, by table name.
    pub tables: BTreeMap<String, TableCacheConfig>,
}

/// One table's overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TableCacheConfig {
    /// `false` forwards every request for this table uncached.
    pub enabled: bool,
    /// Item TTL for this table; unset = the global `item_ttl_ms`.
    pub item_ttl_ms: Option<u64>,
    /// Query and Scan TTL for this table; unset = the global `query_ttl_ms`.
    pub query_ttl_ms: Option<u64>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            item_max_bytes: DEFAULT_ITEM_MAX_BYTES,
            item_ttl_ms: DEFAULT_ITEM_TTL_MS,
            query_max_bytes: DEFAULT_QUERY_MAX_BYTES,
            query_ttl_ms: DEFAULT_QUERY_TTL_MS,
            query_invalidation: QueryInvalidation::Partition,
            serve_stale_on_error: false,
            stale_grace_ms: DEFAULT_STALE_GRACE_MS,
            consistency_window_ms: DEFAULT_CONSISTENCY_WINDOW_MS,
            tables: BTreeMap::new(),
        }
    }
}

impl Default for TableCacheConfig {
    fn default() -> Self {
        TableCacheConfig {
            enabled: true,
            item_ttl_ms: None,
            query_ttl_ms: None,
        }
    }
}

impl CacheConfig {
    /// Whether items of `table` are cached at all.
    pub fn caches(&self, table: &str) -> bool {
        self.tables.get(table).is_none_or(|t| t.enabled)
    }

    /// How long an item of `table` lives; `None` = no time-based expiry.
    pub fn item_ttl(&self, table: &str) -> Option<Duration> {
        let ms = self
            .tables
            .get(table)
            .and_then(|t| t.item_ttl_ms)
            .unwrap_or(self.item_ttl_ms);
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// How long a Query or Scan answer of `table` lives; `None` = not cached.
    pub fn query_ttl(&self, table: &str) -> Option<Duration> {
        if !self.caches(table) {
            return None;
        }
        let ms = self
            .tables
            .get(table)
            .and_then(|t| t.query_ttl_ms)
            .unwrap_or(self.query_ttl_ms);
        (ms > 0).then(|| Duration::from_millis(ms))
    }
}

/// Every bound the proxy enforces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open client connections at once; past it a client gets a 503 and the connection closes.
    pub max_connections: usize,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// How long a client may take to send its request headers (slow clients hold a slot).
    pub header_read_timeout_ms: u64,
    /// How long a keep-alive connection may wait, idle, for its next request; 0 = as long as
    /// the client keeps it.
    pub idle_timeout_ms: u64,
    /// How long one upstream exchange may take, from sending to the last body byte.
    pub upstream_timeout_ms: u64,
    /// On SIGTERM, how long in-flight requests get to finish before the proxy exits anyway.
    pub drain_timeout_ms: u64,
    /// Upstream requests in flight at once. Past it, requests wait for a slot.
    pub max_upstream_requests: usize,
    /// How long a request may wait for an upstream slot before it fails with a retryable 503:
    /// when DynamoDB is slow or unreachable, misses fail fast instead of queueing unbounded.
    pub upstream_queue_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.parse().expect("valid default"),
            admin_listen: DEFAULT_ADMIN_LISTEN.parse().expect("valid default"),
            dax_listen: None,
            dax_advertise: None,
            dax_attribute_lists_file: None,
            upstream: None,
            region: None,
            workers: 0,
            limits: Limits::default(),
            cache: CacheConfig::default(),
            streams: StreamsConfig::default(),
            warm: WarmConfig::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            fleet: FleetConfig::default(),
            log_level: DEFAULT_LOG_LEVEL.into(),
        }
    }
}

/// What is logged unless configured otherwise.
pub const DEFAULT_LOG_LEVEL: &str = "info";

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            upstream_timeout_ms: DEFAULT_UPSTREAM_TIMEOUT_MS,
            drain_timeout_ms: DEFAULT_DRAIN_TIMEOUT_MS,
            max_upstream_requests: DEFAULT_MAX_UPSTREAM_REQUESTS,
            upstream_queue_timeout_ms: DEFAULT_UPSTREAM_QUEUE_TIMEOUT_MS,
        }
    }
}

/// A configuration that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads, parses and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source: Box::new(source),
        })?;
        config.resolve_paths(path.parent().unwrap_or(Path::new("")));
        config.validate()?;
        Ok(config)
    }

    /// Makes the file paths the config names relative to `dir` (the config file's directory)
    /// unless they are absolute, so a config and the files beside it move together.
    fn resolve_paths(&mut self, dir: &Path) {
        for path in [
            &mut self.auth.credentials_file,
            &mut self.auth.admin_token_file,
            &mut self.tls.cert_file,
            &mut self.tls.key_file,
            &mut self.dax_attribute_lists_file,
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        }
    }

    /// Parses TOML text without validating it.
    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks what serde cannot: values in range, and an upstream that is not ourselves.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return invalid(format!("log_level {:?}: {err}", self.log_level));
        }
        let l = &self.limits;
        for (name, value) in [
            ("limits.max_connections", l.max_connections as u64),
            ("limits.max_body_bytes", l.max_body_bytes as u64),
            ("limits.header_read_timeout_ms", l.header_read_timeout_ms),
            ("limits.upstream_timeout_ms", l.upstream_timeout_ms),
            ("limits.drain_timeout_ms", l.drain_timeout_ms),
            (
                "limits.max_upstream_requests",
                l.max_upstream_requests as u64,
            ),
            ("cache.item_max_bytes", self.cache.item_max_bytes),
            ("cache.query_max_bytes", self.cache.query_max_bytes),
            ("streams.poll_interval_ms", self.streams.poll_interval_ms),
            ("warm.rate_per_sec", self.warm.rate_per_sec as u64),
            ("warm.timeout_ms", self.warm.timeout_ms),
        ] {
            if value == 0 {
                return invalid(format!("{name} must be greater than 0"));
            }
        }
        if let Some(upstream) = &self.upstream {
            let uri: http::Uri = match upstream.parse() {
                Ok(uri) => uri,
                Err(e) => return invalid(format!("upstream {upstream:?} is not a URL: {e}")),
            };
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return invalid(format!(
                    "upstream {upstream:?} must be an http:// or https:// URL with a host"
                ));
            }
            if self.points_at_own_listener(&uri) {
                return invalid(format!(
                    "upstream {upstream} is this proxy's own listener {}; requests would loop \
                     (is AWS_ENDPOINT_URL_DYNAMODB meant for clients set for the proxy too?)",
                    self.listen
                ));
            }
        }
        if let Some(from) = &self.warm.from
            && !from
                .parse::<http::Uri>()
                .is_ok_and(|u| u.scheme_str() == Some("http") && u.host().is_some())
        {
            return invalid(format!(
                "warm.from {from:?} must be another replica's admin URL, http://host:port"
            ));
        }
        if let Some(endpoint) = &self.streams.endpoint
            && !endpoint.parse::<http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            })
        {
            return invalid(format!(
                "streams.endpoint {endpoint:?} must be an http:// or https:// URL with a host"
            ));
        }
        self.fleet.validate().map_err(ConfigError::Invalid)?;
        if self.fleet.enabled() && self.fleet.discovery == Discovery::Fleet {
            match self.dax_advertise.or(self.dax_listen) {
                None => {
                    return invalid(
                        "fleet.discovery = \"fleet\" lists members' DAX listeners: set dax_listen"
                            .into(),
                    );
                }
                Some(addr) if addr.ip().is_unspecified() || addr.port() == 0 => {
                    return invalid(format!(
                        "fleet.discovery = \"fleet\": other nodes' clients cannot reach {addr}; \
                         set dax_advertise to this node's reachable address"
                    ));
                }
                Some(_) => {}
            }
        }
        if self.auth.mode == AuthMode::Sigv4 && self.auth.credentials_file.is_none() {
            return invalid(
                "auth.mode = \"sigv4\" needs auth.credentials_file, the callers' keys".into(),
            );
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return invalid("tls.cert_file and tls.key_file go together".into());
        }
        if self.tls.admin && !self.tls.enabled() {
            return invalid("tls.admin needs tls.cert_file and tls.key_file".into());
        }
        if self.auth.mode == AuthMode::None
            && !self.listen.ip().is_loopback()
            && !self.auth.allow_unauthenticated
        {
            return invalid(format!(
                "listen = {} is reachable from other hosts and auth.mode is \"none\": anyone \
                 who reaches it would act with this proxy's AWS identity and read its cache. Set \
                 auth.mode = \"sigv4\" with a credentials file, listen on loopback, or set \
                 auth.allow_unauthenticated = true if the network alone decides who may call",
                self.listen
            ));
        }
        if let Some(dax) = self.dax_listen
            && self.auth.mode == AuthMode::None
            && !dax.ip().is_loopback()
            && !self.auth.allow_unauthenticated
        {
            return invalid(format!(
                "dax_listen = {dax} is reachable from other hosts and auth.mode is \"none\": \
                 anyone who reaches it would act with this proxy's AWS identity and read its \
                 cache. Set auth.mode = \"sigv4\" with a credentials file, listen on loopback, or \
                 set auth.allow_unauthenticated = true if the network alone decides who may call"
            ));
        }
        if (self.dax_advertise.is_some() || self.dax_attribute_lists_file.is_some())
            && self.dax_listen.is_none()
        {
            return invalid("dax_advertise and dax_attribute_lists_file need dax_listen".into());
        }
        if let Some(dax) = self.dax_listen
            && dax.port() != 0
            && (dax == self.listen || dax == self.admin_listen)
        {
            return invalid(format!(
                "dax_listen {dax} is also the data or admin listener; they must differ"
            ));
        }
        // Port 0 means "any free port": two of those never collide.
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return invalid(format!(
                "listen and admin_listen are both {}; they must differ",
                self.listen
            ));
        }
        Ok(())
    }

    fn points_at_own_listener(&self, uri: &http::Uri) -> bool {
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        if port != self.listen.port() {
            return false;
        }
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
        let local = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip == self.listen.ip());
        local && (self.listen.ip().is_loopback() || self.listen.ip().is_unspecified())
    }

    /// The upstream URL, given the region the proxy resolved.
    pub fn upstream_url(&self, region: &str) -> String {
        match &self.upstream {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("https://dynamodb.{region}.amazonaws.com"),
        }
    }

    /// Where DynamoDB Streams requests go: `streams.endpoint`, else the upstream URL when one
    /// is set (emulators serve both APIs there), else the region's Streams endpoint.
    pub fn streams_url(&self, region: &str) -> String {
        match (&self.streams.endpoint, &self.upstream) {
            (Some(url), _) | (None, Some(url)) => url.trim_end_matches('/').to_string(),
            (None, None) => format!("https://streams.dynamodb.{region}.amazonaws.com"),
        }
    }

    /// How many worker threads serve client connections.
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.upstream_timeout_ms)
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.header_read_timeout_ms)
    }

    /// How long an idle keep-alive connection is kept; `None` = until the client closes it.
    pub fn idle_timeout(&self) -> Option<Duration> {
        let ms = self.limits.idle_timeout_ms;
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    pub fn upstream_queue_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.upstream_queue_timeout_ms)
    }

    /// How long past its TTL an entry may be served when the upstream fails; `None` = never.
    pub fn stale_grace(&self) -> Option<Duration> {
        self.cache
            .serve_stale_on_error
            .then(|| Duration::from_millis(self.cache.stale_grace_ms))
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.drain_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fleet_redis_is_one_url_or_a_list_and_check_config_refuses_what_cannot_work() {
        let one = Config::parse("[fleet]\nredis = \"redis://10.0.0.9:6379\"").unwrap();
        assert_eq!(one.fleet.redis, ["redis://10.0.0.9:6379"]);
        assert!(one.validate().is_ok());
        let many = Config::parse(
            "[fleet]\nredis = [\"redis://a:7000\", \"rediss://b:7000\"]\ndiscovery = \"self\"",
        )
        .unwrap();
        assert_eq!(many.fleet.redis.len(), 2);
        assert!(!Config::default().fleet.enabled(), "off by default");
        let invalid = |toml: &str| {
            let config = Config::parse(toml).unwrap();
            config.validate().unwrap_err().to_string()
        };
        assert!(invalid("[fleet]\nredis = \"http://x:1\"").contains("redis://"));
        assert!(invalid("[fleet]\nredis = \"redis://x:1\"\nname = \"a b\"").contains("fleet.name"));
        assert!(invalid("[fleet]\nredis = \"redis://x:1\"\ntimeout_ms = 0").contains("timeout_ms"));
        // Fleet discovery lists members' DAX addresses: there must be one others can reach.
        assert!(
            invalid("[fleet]\nredis = \"redis://x:1\"\ndiscovery = \"fleet\"")
                .contains("dax_listen")
        );
        assert!(
            invalid("dax_listen = \"0.0.0.0:8111\"\n[fleet]\nredis = \"redis://x:1\"\ndiscovery = \"fleet\"")
                .contains("dax_advertise")
        );
        let reachable = Config::parse(
            "dax_listen = \"0.0.0.0:8111\"\ndax_advertise = \"10.0.0.3:8111\"\n[auth]\nallow_unauthenticated = true\n[fleet]\nredis = \"redis://x:1\"\ndiscovery = \"fleet\"",
        )
        .unwrap();
        assert!(reachable.validate().is_ok());
    }

    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Config::parse("listen = \"127.0.0.1:1\"\nlisten_adress = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("listen_adress"), "{err}");
        let err = Config::parse("[limits]\nmax_conections = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_conections"), "{err}");
    }

    #[test]
    fn refuses_an_upstream_that_is_the_proxy_itself() {
        for upstream in [
            "http://127.0.0.1:8000",
            "http://localhost:8000/",
            "http://[::1]:8000",
        ] {
            let config = Config {
                upstream: Some(upstream.into()),
                ..Config::default()
            };
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("loop"), "{upstream}: {err}");
        }
        let elsewhere = Config {
            upstream: Some("http://127.0.0.1:8001".into()),
            ..Config::default()
        };
        elsewhere.validate().unwrap();
    }

    #[test]
    fn refuses_bad_urls_and_zero_limits() {
        let bad_url = Config {
            upstream: Some("dynamodb.us-east-1.amazonaws.com".into()),
            ..Config::default()
        };
        assert!(bad_url.validate().is_err());
        let mut zero = Config::default();
        zero.limits.upstream_timeout_ms = 0;
        assert!(
            zero.validate()
                .unwrap_err()
                .to_string()
                .contains("upstream_timeout_ms")
        );
    }

    #[test]
    fn per_table_cache_overrides() {
        let config = Config::parse(
            "[cache]\nitem_ttl_ms = 1000\n[cache.tables.hot]\nitem_ttl_ms = 0\n\
             [cache.tables.secret]\nenabled = false\n",
        )
        .unwrap();
        assert_eq!(config.cache.item_ttl("cold"), Some(Duration::from_secs(1)));
        assert_eq!(config.cache.item_ttl("hot"), None);
        assert!(config.cache.caches("hot"));
        assert!(!config.cache.caches("secret"));
    }

    #[test]
    fn an_open_data_listener_needs_auth_or_an_explicit_opt_out() {
        let open = Config::parse("listen = \"0.0.0.0:8000\"\n").unwrap();
        let err = open.validate().unwrap_err().to_string();
        assert!(err.contains("allow_unauthenticated"), "{err}");
        let opted_out =
            Config::parse("listen = \"0.0.0.0:8000\"\n[auth]\nallow_unauthenticated = true\n")
                .unwrap();
        opted_out.validate().unwrap();
        let signed = Config::parse(
            "listen = \"0.0.0.0:8000\"\n[auth]\nmode = \"sigv4\"\ncredentials_file = \"p.toml\"\n",
        )
        .unwrap();
        signed.validate().unwrap();
        let no_file = Config::parse("[auth]\nmode = \"sigv4\"\n").unwrap();
        assert!(no_file.validate().is_err());
        let half_tls = Config::parse("[tls]\ncert_file = \"c.pem\"\n").unwrap();
        assert!(half_tls.validate().is_err());
    }

    #[test]
    fn the_dax_listener_is_off_by_default_and_guarded_like_the_data_listener() {
        assert_eq!(Config::default().dax_listen, None);
        let local = Config::parse("dax_listen = \"127.0.0.1:8111\"\n").unwrap();
        local.validate().unwrap();
        let open = Config::parse("dax_listen = \"0.0.0.0:8111\"\n").unwrap();
        let err = open.validate().unwrap_err().to_string();
        assert!(
            err.contains("dax_listen") && err.contains("allow_unauthenticated"),
            "{err}"
        );
        let clash = Config::parse("dax_listen = \"127.0.0.1:8000\"\n").unwrap();
        assert!(clash.validate().is_err());
        let alone = Config::parse("dax_advertise = \"10.0.0.1:8111\"\n").unwrap();
        assert!(alone.validate().is_err());
    }

    #[test]
    fn default_upstream_follows_the_region() {
        assert_eq!(
            Config::default().upstream_url("eu-west-1"),
            "https://dynamodb.eu-west-1.amazonaws.com"
        );
    }
}
