//! Prometheus metrics, in a registry this proxy owns (so each test gets a fresh one).
//!
//! Labels come from the classified operation and fixed result names, never from raw input.
//! Latency buckets start at 10 µs because a cache hit takes tens of microseconds.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// From 10 µs to 10 s: resolves a hit, a DynamoDB round trip and a stuck upstream.
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use http::StatusCode;

use crate::wire::answer::CacheStatus;
use crate::wire::operation::Operation;

const LATENCY_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every metric the proxy exports.
pub struct Metrics {
    /// The registry `/metrics` renders.
    registry: Registry,
    /// Requests answered, by operation and result (hit, miss, bypass, error).
    pub requests: IntCounterVec,
    /// Time from request headers read to response ready, by operation and result.
    pub request_duration: HistogramVec,
    /// Upstream exchanges that got an HTTP answer, by operation and status code.
    pub upstream_requests: IntCounterVec,
    /// Upstream exchanges that got no HTTP answer, by operation and kind.
    pub upstream_errors: IntCounterVec,
    /// Upstream round-trip time, by operation.
    pub upstream_duration: HistogramVec,
    /// Requests being handled now.
    pub inflight: IntGauge,
    /// Client connections open now.
    pub connections: IntGauge,
    /// Connections refused at the connection limit.
    pub rejected_connections: IntCounter,
    /// Connections closed because the client took longer than the header read timeout to send
    /// its request headers or finish a TLS handshake (slowloris).
    pub slow_clients: IntCounter,
    /// Keep-alive connections closed for waiting longer than the idle timeout for a request.
    pub idle_disconnects: IntCounter,
    /// Requests refused by inbound authentication, by reason (see `AuthError::reason`).
    pub auth_failures: IntCounterVec,
    /// Misses that shared another request's upstream read instead of making their own.
    pub coalesced_misses: IntCounter,
    /// Cache lookups by cache (`item`, `query`) and result (`hit`, `miss`).
    pub cache_requests: IntCounterVec,
    /// Entries per cache, read at scrape time.
    pub cache_entries: IntGaugeVec,
    /// Weighted bytes per cache, read at scrape time.
    pub cache_bytes: IntGaugeVec,
    /// Each cache's byte budget, so a fill ratio can be drawn.
    pub cache_max_bytes: IntGaugeVec,
    /// Reloads (SIGHUP) of a file that failed: the old value stays in force.
    pub reload_failures: IntCounter,
    /// When the served certificate expires (Unix seconds); 0 without TLS.
    pub tls_certificate_expiry: IntGauge,
    /// Entries removed by the cache itself, by cause (`size`, `expired`, `explicit`).
    pub evictions: IntCounterVec,
    /// Invalidations, by cache and reason (`write`, `failed_write`, `table_change`, `flush`).
    pub invalidations: IntCounterVec,
    /// Upstream reads that fill a cache, by cache (`item`, `query`) and how they read
    /// (`eventual`; `strong` or `uncached` within the consistency window of a write).
    pub fill_reads: IntCounterVec,
    /// Stream records applied (DynamoDB Streams invalidation).
    pub stream_records: IntCounter,
    /// Age of the newest stream record when it was applied: how far behind the writers the
    /// caches are.
    pub stream_lag: Gauge,
    /// Shards being read, over every followed stream.
    pub stream_shards: IntGauge,
    /// Failed stream reads (the stream not readable, throttling).
    pub stream_errors: IntCounter,
    /// The fleet tier's.
    pub fleet: FleetMetrics,
    /// `requests` and `request_duration` resolved once per (operation, result), on first use,
    /// so the hot path indexes an array instead of hashing label strings under a lock (and
    /// series that never happened are not exported).
    per_request: Vec<OnceLock<(IntCounter, Histogram, Option<IntCounter>)>>,
    /// `upstream_duration` and the `200` series of `upstream_requests`, per operation, resolved
    /// on first use as `per_request` is: every forwarded request records both.
    per_upstream: Vec<OnceLock<(Histogram, IntCounter)>>,
    /// `invalidations` per (cache, reason), resolved on first use: every write counts one.
    per_invalidation: Vec<OnceLock<IntCounter>>,
    /// Every metric family name, for checking dashboards and alerts against.
    names: Vec<String>,
    /// Hits and misses per table, cache and result; only for tables the proxy has described.
    pub table_requests: IntCounterVec,
    /// The counters of each known table (lock-free to read on the hot path).
    tables: ArcSwap<HashMap<String, Arc<TableCounters>>>,
}

/// How many tables get their own series; more would let table names grow the label set.
pub const TABLE_LABEL_CAP: usize = 64;

/// One table's hit and miss counters, per cache.
pub struct TableCounters {
    item: (IntCounter, IntCounter),
    query: (IntCounter, IntCounter),
}

impl TableCounters {
    /// Hits and misses in `cache`.
    fn of(&self, cache: CacheName) -> &(IntCounter, IntCounter) {
        match cache {
            CacheName::Item => &self.item,
            CacheName::Query => &self.query,
        }
    }
}

/// One of the two caches: the `cache` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheName {
    Item,
    Query,
}

impl CacheName {
    pub const ALL: [CacheName; 2] = [CacheName::Item, CacheName::Query];

    pub fn as_str(self) -> &'static str {
        match self {
            CacheName::Item => "item",
            CacheName::Query => "query",
        }
    }
}

/// Why entries were dropped: the `reason` label of invalidations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A write through the proxy (its keys, or the tables it names).
    Write,
    /// A write that failed or whose fate is unknown.
    FailedWrite,
    /// CreateTable, UpdateTable, DeleteTable.
    TableChange,
    /// `POST /cache/flush`.
    Flush,
    /// A DynamoDB stream record, or a stream the proxy could not follow.
    Stream,
    /// Another node of the fleet wrote, or this node could not be sure it heard every such
    /// write (its memory is flushed).
    Fleet,
}

impl Reason {
    /// How many reasons there are (`Fleet` is the last).
    const COUNT: usize = Reason::Fleet as usize + 1;

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Write => "write",
            Reason::FailedWrite => "failed_write",
            Reason::TableChange => "table_change",
            Reason::Flush => "flush",
            Reason::Stream => "stream",
            Reason::Fleet => "fleet",
        }
    }
}

/// Whether a lookup was answered from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
}

/// Which cache an operation's hits and misses belong to.
fn cache_of(op: Operation) -> Option<&'static str> {
    match op {
        Operation::GetItem | Operation::BatchGetItem => Some(CacheName::Item.as_str()),
        Operation::Query | Operation::Scan => Some(CacheName::Query.as_str()),
        _ => None,
    }
}

/// The front-end a request came in through: the `protocol` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The DynamoDB HTTP JSON API.
    Http,
    /// The DAX protocol.
    Dax,
}

impl Protocol {
    const ALL: [Protocol; 2] = [Protocol::Http, Protocol::Dax];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Dax => "dax",
        }
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "dynamo_cache_requests_total",
                "Requests answered, by operation and result (hit, miss, bypass, error).",
            ),
            &["op", "result", "protocol"],
        )
        .expect("valid metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "dynamo_cache_request_duration_seconds",
                "Time to answer a request, by operation and result.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["op", "result", "protocol"],
        )
        .expect("valid metric");
        let upstream_requests = IntCounterVec::new(
            Opts::new(
                "dynamo_cache_upstream_requests_total",
                "Upstream requests that got an HTTP answer, by operation and status code.",
            ),
            &["op", "status"],
        )
        .expect("valid metric");
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "dynamo_cache_upstream_errors_total",
                "Upstream requests that got no HTTP answer, by operation and kind \
                 (unavailable, timeout, credentials).",
            ),
            &["op", "kind"],
        )
        .expect("valid metric");
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "dynamo_cache_upstream_duration_seconds",
                "Upstream round-trip time, by operation.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["op"],
        )
        .expect("valid metric");
        let inflight = IntGauge::new(
            "dynamo_cache_inflight_requests",
            "Requests being handled now.",
        )
        .expect("valid metric");
        let connections = IntGauge::new(
            "dynamo_cache_open_connections",
            "Client connections open now.",
        )
        .expect("valid metric");
        let rejected_connections = IntCounter::new(
            "dynamo_cache_rejected_connections_total",
            "Client connections refused at the connection limit.",
        )
        .expect("valid metric");
        let slow_clients = IntCounter::new(
            "dynamo_cache_slow_client_disconnects_total",
            "Connections closed because request headers or the TLS handshake took longer than \
             the header read timeout.",
        )
        .expect("valid metric");
        let idle_disconnects = IntCounter::new(
            "dynamo_cache_idle_disconnects_total",
            "Keep-alive connections closed after waiting limits.idle_timeout_ms for a request.",
        )
        .expect("valid metric");
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "dynamo_cache_auth_failures_total",
                "Requests refused by inbound authentication or authorisation, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for reason in crate::auth::AuthError::REASONS {
            auth_failures.with_label_values(&[reason]);
        }
        let coalesced_misses = IntCounter::new(
            "dynamo_cache_coalesced_misses_total",
            "Misses answered by another request's upstream read (single flight).",
        )
        .expect("valid metric");
        let cache_requests = IntCounterVec::new(
            Opts::new(
                "dynamo_cache_cache_requests_total",
                "Cache lookups by cache (item, query) and result (hit, miss).",
            ),
            &["cache", "result"],
        )
        .expect("valid metric");
        let cache_entries = IntGaugeVec::new(
            Opts::new("dynamo_cache_cache_entries", "Entries per cache."),
            &["cache"],
        )
        .expect("valid metric");
        let cache_bytes = IntGaugeVec::new(
            Opts::new(
                "dynamo_cache_cache_bytes",
                "Weighted bytes per cache (keys, bodies, bookkeeping).",
            ),
            &["cache"],
        )
        .expect("valid metric");
        let cache_max_bytes = IntGaugeVec::new(
            Opts::new(
                "dynamo_cache_cache_max_bytes",
                "Byte budget per cache (cache.item_max_bytes, cache.query_max_bytes).",
            ),
            &["cache"],
        )
        .expect("valid metric");
        let reload_failures = IntCounter::new(
            "dynamo_cache_reload_failures_total",
            "Files that failed to load on a reload (credentials, admin token, certificate); \
             the old value stays in force.",
        )
        .expect("valid metric");
        let tls_certificate_expiry = IntGauge::new(
            "dynamo_cache_tls_certificate_expiry_timestamp_seconds",
            "When the certificate served over https stops being valid (Unix time); 0 without TLS.",
        )
        .expect("valid metric");
        let evictions = IntCounterVec::new(
            Opts::new(
                "dynamo_cache_evictions_total",
                "Entries removed by the cache, by cache and cause (size, expired, explicit).",
            ),
            &["cache", "cause"],
        )
        .expect("valid metric");
        let invalidations = IntCounterVec::new(
            Opts::new(
                "dynamo_cache_invalidations_total",
                "Invalidations by cache and reason (write, failed_write, table_change, flush, stream).",
            ),
            &["cache", "reason"],
        )
        .expect("valid metric");
        let table_requests = IntCounterVec::new(
            Opts::new(
                "dynamo_cache_table_requests_total",
                "Cache lookups by table (tables the proxy has described, at most 64), cache \
                 and result.",
            ),
            &["table", "cache", "result"],
        )
        .expect("valid metric");
        let fill_reads = IntCounterVec::new(
            Opts::new(
                "dynamo_cache_fill_reads_total",
                "Upstream reads for cache misses, by cache (item, query) and how they read: \
                 eventual, or within the consistency window of a write strong (ConsistentRead) \
                 or uncached (a global secondary index).",
            ),
            &["cache", "read"],
        )
        .expect("valid metric");
        for (cache, read) in [
            ("item", "eventual"),
            ("item", "strong"),
            ("query", "eventual"),
            ("query", "strong"),
            ("query", "uncached"),
        ] {
            fill_reads.with_label_values(&[cache, read]);
        }
        let stream_records = IntCounter::new(
            "dynamo_cache_stream_records_total",
            "DynamoDB stream records applied to the caches.",
        )
        .expect("valid metric");
        let stream_lag = Gauge::new(
            "dynamo_cache_stream_lag_seconds",
            "Age of the newest stream record when it was applied.",
        )
        .expect("valid metric");
        let stream_shards = IntGauge::new(
            "dynamo_cache_stream_shards",
            "Stream shards being read now, over all followed tables.",
        )
        .expect("valid metric");
        let stream_errors = IntCounter::new(
            "dynamo_cache_stream_errors_total",
            "Failed or throttled stream reads.",
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new("dynamo_cache_build_info", "Build information; always 1."),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let fleet = FleetMetrics::new();
        let mut names = Vec::new();
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(upstream_requests.clone()),
            Box::new(upstream_errors.clone()),
            Box::new(upstream_duration.clone()),
            Box::new(inflight.clone()),
            Box::new(connections.clone()),
            Box::new(rejected_connections.clone()),
            Box::new(slow_clients.clone()),
            Box::new(idle_disconnects.clone()),
            Box::new(auth_failures.clone()),
            Box::new(coalesced_misses.clone()),
            Box::new(cache_requests.clone()),
            Box::new(cache_entries.clone()),
            Box::new(cache_bytes.clone()),
            Box::new(cache_max_bytes.clone()),
            Box::new(reload_failures.clone()),
            Box::new(tls_certificate_expiry.clone()),
            Box::new(evictions.clone()),
            Box::new(invalidations.clone()),
            Box::new(table_requests.clone()),
            Box::new(fill_reads.clone()),
            Box::new(stream_records.clone()),
            Box::new(stream_lag.clone()),
            Box::new(stream_shards.clone()),
            Box::new(stream_errors.clone()),
            Box::new(build_info),
            Box::new(fleet.lookups.clone()),
            Box::new(fleet.calls.clone()),
            Box::new(fleet.errors.clone()),
            Box::new(fleet.fills.clone()),
            Box::new(fleet.lease_waits.clone()),
            Box::new(fleet.invalidations_sent.clone()),
            Box::new(fleet.invalidations_received.clone()),
            Box::new(fleet.invalidation_lag.clone()),
            Box::new(fleet.memory_serving.clone()),
            Box::new(fleet.engine_up.clone()),
            Box::new(fleet.members.clone()),
            Box::new(fleet.pending_tombstones.clone()),
            // Resident memory, CPU time, open file descriptors (the sizing advice is in RSS).
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            names.extend(collector.desc().iter().map(|d| d.fq_name.clone()));
            registry.register(collector).expect("names are unique");
        }
        let per_request = (0..Operation::ALL.len() * CacheStatus::ALL.len() * Protocol::ALL.len())
            .map(|_| OnceLock::new())
            .collect();
        let per_upstream = (0..Operation::ALL.len()).map(|_| OnceLock::new()).collect();
        let per_invalidation = (0..CacheName::ALL.len() * Reason::COUNT)
            .map(|_| OnceLock::new())
            .collect();
        Metrics {
            table_requests,
            tables: ArcSwap::from_pointee(HashMap::new()),
            names,
            per_request,
            per_upstream,
            per_invalidation,
            registry,
            requests,
            request_duration,
            upstream_requests,
            upstream_errors,
            upstream_duration,
            inflight,
            connections,
            rejected_connections,
            slow_clients,
            idle_disconnects,
            auth_failures,
            coalesced_misses,
            cache_requests,
            cache_entries,
            cache_bytes,
            cache_max_bytes,
            reload_failures,
            tls_certificate_expiry,
            evictions,
            invalidations,
            fill_reads,
            stream_records,
            stream_lag,
            stream_shards,
            stream_errors,
            fleet,
        }
    }

    /// Counts one exchange with the upstream and its latency: its HTTP status, or the kind of
    /// failure when there was no answer.
    pub fn record_upstream(&self, op: Operation, outcome: Result<StatusCode, &str>, seconds: f64) {
        let (duration, ok) = self.per_upstream[op as usize].get_or_init(|| {
            (
                self.upstream_duration.with_label_values(&[op.name()]),
                self.upstream_requests
                    .with_label_values(&[op.name(), "200"]),
            )
        });
        duration.observe(seconds);
        match outcome {
            Ok(StatusCode::OK) => ok.inc(),
            Ok(status) => self
                .upstream_requests
                .with_label_values(&[op.name(), status.as_str()])
                .inc(),
            Err(kind) => self
                .upstream_errors
                .with_label_values(&[op.name(), kind])
                .inc(),
        }
    }

    /// Counts one answered request and its latency.
    pub fn record_request(
        &self,
        op: Operation,
        result: CacheStatus,
        protocol: Protocol,
        seconds: f64,
    ) {
        let index = (op as usize * CacheStatus::ALL.len() + result as usize) * Protocol::ALL.len()
            + protocol as usize;
        let (count, duration, cache) = self.per_request[index].get_or_init(|| {
            let labels = [op.name(), result.as_str(), protocol.as_str()];
            let cache = match (cache_of(op), result) {
                (Some(cache), CacheStatus::Hit | CacheStatus::Miss | CacheStatus::Stale) => Some(
                    self.cache_requests
                        .with_label_values(&[cache, result.as_str()]),
                ),
                _ => None,
            };
            (
                self.requests.with_label_values(&labels),
                self.request_duration.with_label_values(&labels),
                cache,
            )
        });
        count.inc();
        duration.observe(seconds);
        if let Some(cache) = cache {
            cache.inc();
        }
    }

    /// Gives `table` its own series (called when the proxy describes a table), up to
    /// [`TABLE_LABEL_CAP`] tables.
    pub fn know_table(&self, table: &str) {
        self.tables.rcu(|known| {
            let mut known = HashMap::clone(known);
            if known.len() < TABLE_LABEL_CAP && !known.contains_key(table) {
                let counter = |cache: &str, result: &str| {
                    self.table_requests
                        .with_label_values(&[table, cache, result])
                };
                known.insert(
                    table.to_string(),
                    Arc::new(TableCounters {
                        item: (counter("item", "hit"), counter("item", "miss")),
                        query: (counter("query", "hit"), counter("query", "miss")),
                    }),
                );
            }
            known
        });
    }

    /// Counts a lookup of `table` in the item (`query = false`) or query cache.
    pub fn record_table(&self, table: &str, cache: CacheName, lookup: Lookup) {
        if let Some(counters) = self.tables.load().get(table) {
            let (hits, misses) = counters.of(cache);
            match lookup {
                Lookup::Hit => hits.inc(),
                Lookup::Miss => misses.inc(),
            }
        }
    }

    /// Hits and misses of `table` in `cache`, if the table has its own series.
    pub fn table_lookups(&self, table: &str, cache: CacheName) -> Option<(u64, u64)> {
        let known = self.tables.load();
        let (hits, misses) = known.get(table)?.of(cache);
        Some((hits.get(), misses.get()))
    }

    /// The name of every metric family exported (histograms add `_bucket`, `_sum`, `_count`).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Hits and misses of one cache so far.
    pub fn cache_lookups(&self, cache: CacheName) -> (u64, u64) {
        let cache = cache.as_str();
        (
            self.cache_requests.with_label_values(&[cache, "hit"]).get(),
            self.cache_requests
                .with_label_values(&[cache, "miss"])
                .get(),
        )
    }

    /// Counts an invalidation.
    pub fn invalidated(&self, cache: CacheName, reason: Reason) {
        self.per_invalidation[cache as usize * Reason::COUNT + reason as usize]
            .get_or_init(|| {
                self.invalidations
                    .with_label_values(&[cache.as_str(), reason.as_str()])
            })
            .inc();
    }

    /// A moka eviction listener counting removals of `cache` by cause.
    pub fn eviction_counter<K, V>(
        &self,
        cache: CacheName,
    ) -> impl Fn(std::sync::Arc<K>, V, moka::notification::RemovalCause) + Send + Sync + 'static
    {
        let evictions = self.evictions.clone();
        move |_, _, cause| {
            use moka::notification::RemovalCause;
            let cause = match cause {
                RemovalCause::Size => "size",
                RemovalCause::Expired => "expired",
                RemovalCause::Explicit => "explicit",
                RemovalCause::Replaced => return, // an update, not a removal
            };
            evictions.with_label_values(&[cache.as_str(), cause]).inc();
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// What the fleet tier exports (all zero when there is no fleet).
pub struct FleetMetrics {
    /// Reads of the shared tier after a memory miss, by result: `hit`, `miss` (this node
    /// reads DynamoDB and fills), `busy` (another node was reading it), `error` (the engine
    /// failed or was too slow), `skipped` (the engine is known to be failing).
    pub lookups: IntCounterVec,
    /// Engine round trips, by call (`lookup`, `fill`, `tombstone`, `publish`, `probe`, `member`).
    pub calls: HistogramVec,
    /// Engine calls that failed or ran out of time, by call.
    pub errors: IntCounterVec,
    /// Fills of the shared tier, by result: `stored`, or `lost` (a write came first).
    pub fills: IntCounterVec,
    /// Misses that waited for another node's read of the same key.
    pub lease_waits: IntCounter,
    /// Invalidations published after writes through this node.
    pub invalidations_sent: IntCounter,
    /// Invalidations from other nodes applied to this node's memory.
    pub invalidations_received: IntCounter,
    /// From an invalidation's publication to its arrival here (clocks of two hosts).
    pub invalidation_lag: Histogram,
    /// 1 while this node answers from its own memory (its invalidation channels deliver);
    /// 0 while it reads only the shared tier and DynamoDB.
    pub memory_serving: IntGauge,
    /// 1 while the engine answers.
    pub engine_up: IntGauge,
    /// Live members of the fleet, this node included.
    pub members: IntGauge,
    /// Tombstones of writes the engine did not take yet (retried until it does).
    pub pending_tombstones: IntGauge,
}

impl FleetMetrics {
    fn new() -> FleetMetrics {
        let metrics = FleetMetrics::unprimed();
        // Every series exists from the start (at 0), so a dashboard or an alert on one never
        // sees it missing.
        for result in ["hit", "miss", "busy", "error", "skipped"] {
            metrics.lookups.with_label_values(&[result]);
        }
        for call in ["lookup", "fill", "tombstone", "publish", "probe"] {
            metrics.calls.with_label_values(&[call]);
            metrics.errors.with_label_values(&[call]);
        }
        for result in ["stored", "lost"] {
            metrics.fills.with_label_values(&[result]);
        }
        metrics
    }

    fn unprimed() -> FleetMetrics {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        FleetMetrics {
            lookups: counter(
                "dynamo_cache_fleet_lookups_total",
                "Shared-tier reads after a memory miss, by result (hit, miss, busy, error, skipped).",
                &["result"],
            ),
            calls: HistogramVec::new(
                HistogramOpts::new(
                    "dynamo_cache_fleet_call_duration_seconds",
                    "Round trips to the fleet's engine, by call.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["call"],
            )
            .expect("valid metric"),
            errors: counter(
                "dynamo_cache_fleet_errors_total",
                "Calls to the fleet's engine that failed or ran out of time, by call.",
                &["call"],
            ),
            fills: counter(
                "dynamo_cache_fleet_fills_total",
                "Shared-tier fills, by result (stored; lost: a write or another lease came first).",
                &["result"],
            ),
            lease_waits: IntCounter::new(
                "dynamo_cache_fleet_lease_waits_total",
                "Misses that waited for another node's read of the same key.",
            )
            .expect("valid metric"),
            invalidations_sent: IntCounter::new(
                "dynamo_cache_fleet_invalidations_sent_total",
                "Invalidations published after writes through this node.",
            )
            .expect("valid metric"),
            invalidations_received: IntCounter::new(
                "dynamo_cache_fleet_invalidations_received_total",
                "Invalidations from other nodes applied to this node's memory.",
            )
            .expect("valid metric"),
            invalidation_lag: Histogram::with_opts(
                HistogramOpts::new(
                    "dynamo_cache_fleet_invalidation_lag_seconds",
                    "From an invalidation's publication by another node to its arrival here.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            memory_serving: gauge(
                "dynamo_cache_fleet_memory_serving",
                "1 while this node answers from its own memory; 0 while it cannot be sure it \
                 hears the fleet's invalidations.",
            ),
            engine_up: gauge(
                "dynamo_cache_fleet_engine_up",
                "1 while the fleet's engine answers.",
            ),
            members: gauge(
                "dynamo_cache_fleet_members",
                "Live members of the fleet, this node included.",
            ),
            pending_tombstones: gauge(
                "dynamo_cache_fleet_pending_tombstones",
                "Tombstones of writes the engine has not taken yet.",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_series_are_capped() {
        let metrics = Metrics::new();
        for i in 0..TABLE_LABEL_CAP + 10 {
            metrics.know_table(&format!("t{i}"));
        }
        metrics.know_table("t0"); // known twice: still one
        metrics.record_table("t0", CacheName::Item, Lookup::Hit);
        metrics.record_table(
            &format!("t{}", TABLE_LABEL_CAP + 5),
            CacheName::Item,
            Lookup::Hit,
        );
        assert_eq!(metrics.table_lookups("t0", CacheName::Item), Some((1, 0)));
        assert_eq!(
            metrics.table_lookups(&format!("t{}", TABLE_LABEL_CAP + 5), CacheName::Item),
            None
        );
        let series = metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("dynamo_cache_table_requests_total{"))
            .count();
        assert_eq!(series, TABLE_LABEL_CAP * 4);
    }

    #[test]
    fn recorded_requests_land_on_their_own_labels() {
        let metrics = Metrics::new();
        for op in Operation::ALL {
            for result in CacheStatus::ALL {
                metrics.record_request(*op, result, Protocol::Http, 0.001);
            }
        }
        metrics.record_request(
            Operation::GetItem,
            CacheStatus::Hit,
            Protocol::Http,
            0.000_02,
        );
        metrics.record_request(
            Operation::GetItem,
            CacheStatus::Hit,
            Protocol::Dax,
            0.000_02,
        );
        let text = metrics.render();
        let value = |sample: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(sample)?.trim().parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{sample} missing"))
        };
        assert_eq!(
            value(r#"dynamo_cache_requests_total{op="GetItem",protocol="http",result="hit"}"#),
            2.0
        );
        assert_eq!(
            value(r#"dynamo_cache_requests_total{op="GetItem",protocol="dax",result="hit"}"#),
            1.0
        );
        assert_eq!(
            value(r#"dynamo_cache_requests_total{op="Other",protocol="http",result="error"}"#),
            1.0
        );
        assert_eq!(
            value(
                r#"dynamo_cache_requests_total{op="ListStreams",protocol="http",result="bypass"}"#
            ),
            1.0
        );
        assert_eq!(
            value(
                r#"dynamo_cache_request_duration_seconds_bucket{op="GetItem",protocol="http",result="hit",le="0.000025"}"#
            ),
            1.0
        );
    }
}
