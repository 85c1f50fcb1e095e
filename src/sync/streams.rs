//! Freshness across writers: each table the proxy caches has its DynamoDB stream followed, and
//! every change record drops the changed item's entry and its partition's query answers, so a
//! write that bypassed this proxy (another service, the console, another replica) is served
//! fresh within the stream's lag instead of the TTL.
//!
//! Per table, one task: find the stream (DescribeTable `LatestStreamArn`) -> list its shards
//! (DescribeStream, paged) -> read every open shard from `LATEST`, and shards that appear later
//! (splits, rotation) from `TRIM_HORIZON` once their parent is read to its end -> apply the
//! records -> poll again. Entries cached before the iterators existed may have missed records,
//! so the table's entries are dropped once, when following starts.
//!
//! A record does not drop an entry that already holds what the record says the item became
//! (stream views with new images), nor an entry written through this proxy clearly after the
//! record's write: records of the proxy's own writes cost no needless misses, and staleness is
//! never traded for it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_dynamodbstreams::config::{BehaviorVersion, Region, timeout::TimeoutConfig};
use aws_sdk_dynamodbstreams::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use base64::Engine;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::cache::Caches;
use crate::config::StreamsConfig;
use crate::metrics::Metrics;
use crate::metrics::Reason;
use crate::upstream::schema::{SchemaError, Schemas};
use crate::wire::keys::{ItemKey, KeyValue, WireKey};

/// Shards are listed again this often even when none closed (new shards of a split).
const RELIST_EVERY: Duration = Duration::from_secs(10);
/// How long to wait before looking again at a table without a stream.
const NO_STREAM_RECHECK: Duration = Duration::from_secs(30);
/// Longest pause after repeated errors.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Most tables followed at once: each costs a task and a poll of its shards.
const MAX_FOLLOWED_TABLES: usize = 256;
/// GetRecords' own maximum: a full page means more is waiting.
const RECORDS_PER_CALL: i32 = 1000;

/// What the proxy knows of one table's stream, for `/cache` and logs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StreamStatus {
    /// Looking for the stream.
    Starting,
    /// Reading `shards` shards of `stream`.
    Following { stream: String, shards: usize },
    /// The table has no stream (or no longer exists): entries are fresh only by TTL.
    NoStream,
    /// The stream could not be read; entries are fresh only by TTL until it can.
    Failing { error: String },
    /// Another node of the fleet follows it, and tells this node what it reads.
    Standby,
}

/// How often a node on standby checks whether the fleet's follower of a table is gone.
const STANDBY_RECHECK: Duration = Duration::from_secs(1);

/// The fleet-wide lock of `table`'s follower.
fn stream_lock(table: &str) -> String {
    format!("stream:{table}")
}

/// The stream followers of every cached table.
pub struct Streams {
    config: StreamsConfig,
    /// The DynamoDB Streams API (the table API's endpoint on emulators, `streams.dynamodb` on AWS).
    client: aws_sdk_dynamodbstreams::Client,
    /// Table name -> its follower's status; a table is here once a follower was started.
    tables: Mutex<HashMap<String, StreamStatus>>,
    /// The caches records invalidate, and where key schemas and stream ARNs come from.
    caches: Arc<Caches>,
    schemas: Arc<Schemas>,
    metrics: Arc<Metrics>,
    /// The runtime followers run on (the main one, not a connection worker's); set by `start`.
    runtime: OnceLock<tokio::runtime::Handle>,
    /// Cancelled at shutdown: every follower stops.
    stop: CancellationToken,
    /// Whether the limit of followed tables was reported (once).
    said_full: std::sync::atomic::AtomicBool,
}

/// Where the proxy's own SDK clients are pointed and with what identity.
pub struct Endpoint<'a> {
    /// The configured upstream URL, when there is one (emulators serve both APIs on it).
    pub upstream: Option<&'a str>,
    pub region: &'a str,
    pub credentials: SharedCredentialsProvider,
    pub timeout: Duration,
}

impl Streams {
    pub fn new(
        config: StreamsConfig,
        endpoint: Endpoint<'_>,
        caches: Arc<Caches>,
        schemas: Arc<Schemas>,
        metrics: Arc<Metrics>,
    ) -> Streams {
        let mut builder = aws_sdk_dynamodbstreams::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(endpoint.region.to_string()))
            .credentials_provider(endpoint.credentials)
            .http_client(crate::upstream::sdk_http_client())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(endpoint.timeout)
                    .build(),
            );
        // Without an explicit URL the SDK resolves streams.dynamodb.<region>.amazonaws.com.
        if let Some(url) = config.endpoint.as_deref().or(endpoint.upstream) {
            builder = builder.endpoint_url(url);
        }
        Streams {
            client: aws_sdk_dynamodbstreams::Client::from_conf(builder.build()),
            config,
            tables: Mutex::new(HashMap::new()),
            caches,
            schemas,
            metrics,
            runtime: OnceLock::new(),
            stop: CancellationToken::new(),
            said_full: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Lets followers run on the current runtime (called by `run` before serving).
    pub fn start(&self) {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let _ = self.runtime.set(handle);
        }
    }

    /// Stops every follower (shutdown).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// The proxy is caching `table`, which DynamoDB has just answered for: follow its stream,
    /// if that is not already happening. Cheap when it is (one map lookup); called after
    /// successful misses and writes, never on hits, never for a name DynamoDB refused.
    pub fn follow(self: &Arc<Self>, table: &str) {
        if !self.config.enabled || self.stop.is_cancelled() {
            return;
        }
        let Some(runtime) = self.runtime.get() else {
            return;
        };
        {
            let mut tables = self.tables.lock().expect("lock poisoned");
            if tables.contains_key(table) {
                return;
            }
            if tables.len() >= MAX_FOLLOWED_TABLES {
                if !self
                    .said_full
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::warn!(
                        limit = MAX_FOLLOWED_TABLES,
                        "following as many streams as allowed; further tables get TTL freshness only"
                    );
                }
                return;
            }
            tables.insert(table.to_string(), StreamStatus::Starting);
        }
        let streams = self.clone();
        let table = table.to_string();
        runtime.spawn(async move { streams.follow_table(table).await });
    }

    /// Every followed table's status, for `/cache`.
    pub fn statuses(&self) -> BTreeMap<String, StreamStatus> {
        let tables = self.tables.lock().expect("lock poisoned");
        tables.iter().map(|(t, s)| (t.clone(), s.clone())).collect()
    }

    fn set_status(&self, table: &str, status: StreamStatus) {
        let mut tables = self.tables.lock().expect("lock poisoned");
        tables.insert(table.to_string(), status);
        let shards = tables
            .values()
            .map(|s| match s {
                StreamStatus::Following { shards, .. } => *shards as i64,
                _ => 0,
            })
            .sum();
        self.metrics.stream_shards.set(shards);
    }

    /// Sleeps `pause`, or less if the proxy stops; returns whether it stopped.
    async fn pause(&self, pause: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(pause) => false,
            _ = self.stop.cancelled() => true,
        }
    }

    async fn follow_table(self: Arc<Self>, table: String) {
        let mut said_no_stream = false;
        let mut failures = 0u32;
        while !self.stop.is_cancelled() {
            // In a fleet, one node follows each table (DynamoDB Streams allow about two
            // readers per shard) and tells the others what it reads.
            if let Some(fleet) = self.caches.fleet()
                && fleet.lead(&stream_lock(&table)).await != Some(true)
            {
                self.set_status(&table, StreamStatus::Standby);
                if self.pause(STANDBY_RECHECK).await {
                    return;
                }
                continue;
            }
            let outcome = match self.schemas.latest_stream_arn(&table).await {
                Ok(Some(arn)) => {
                    said_no_stream = false;
                    self.follow_stream(&table, &arn).await
                }
                Err(SchemaError::NotFound(_)) => {
                    // Gone (or never there): nothing to follow, and nothing kept for it.
                    self.tables.lock().expect("lock poisoned").remove(&table);
                    return;
                }
                Ok(None) => {
                    if !said_no_stream {
                        tracing::warn!(
                            table = %table,
                            "table has no DynamoDB stream: writes that bypass the proxy are seen \
                             only when entries expire (enable a stream, KEYS_ONLY is enough)"
                        );
                        said_no_stream = true;
                    }
                    self.set_status(&table, StreamStatus::NoStream);
                    if self.pause(NO_STREAM_RECHECK).await {
                        return;
                    }
                    continue;
                }
                Err(err) => Err(err.to_string()),
            };
            match outcome {
                // The stream ended (disabled, replaced, table deleted): look again, after a
                // pause so that a stream that keeps ending at once cannot spin.
                Ok(()) => {
                    failures = 0;
                    if self.pause(self.config.poll_interval()).await {
                        return;
                    }
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(table = %table, error = %error, "stream not readable; TTL freshness only until it is");
                    self.metrics.stream_errors.inc();
                    self.set_status(&table, StreamStatus::Failing { error });
                    if self.pause(backoff(failures)).await {
                        return;
                    }
                }
            }
        }
    }

    /// Reads `arn` until the stream goes away (`Ok`) or fails (`Err`), or the proxy stops.
    async fn follow_stream(&self, table: &str, arn: &str) -> Result<(), String> {
        let mut shards = Shards::default();
        let listed = self.list_shards(arn).await?;
        let mut reading: HashMap<String, Reading> = HashMap::new();
        for (id, position) in shards.discover(&listed) {
            let iterator = self.iterator(arn, &id, &position).await?;
            reading.insert(id, Reading::new(iterator));
        }
        // Anything cached so far may have missed records from before the iterators: start clean.
        self.caches.invalidate_table(table, Reason::Stream).await;
        let partition_key = self
            .schemas
            .get(table)
            .await
            .ok()
            .map(|s| s.key.partition.clone());
        self.set_status(
            table,
            StreamStatus::Following {
                stream: arn.to_string(),
                shards: reading.len(),
            },
        );
        tracing::info!(
            table,
            stream = arn,
            shards = reading.len(),
            "following the table's stream"
        );

        let mut listed_at = Instant::now();
        let mut throttled = 0u32;
        loop {
            let mut more_waiting = false;
            let mut records_seen = false;
            let mut relist = listed_at.elapsed() >= RELIST_EVERY;
            let ids: Vec<String> = reading.keys().cloned().collect();
            for id in ids {
                let shard = reading.get_mut(&id).expect("listed above");
                let call = self
                    .client
                    .get_records()
                    .shard_iterator(&shard.iterator)
                    .limit(RECORDS_PER_CALL)
                    .send()
                    .await;
                match call {
                    Ok(out) => {
                        throttled = 0;
                        let records = out.records();
                        more_waiting |= records.len() as i32 >= RECORDS_PER_CALL;
                        records_seen |= !records.is_empty();
                        for record in records {
                            self.apply(table, partition_key.as_deref(), record).await;
                            if let Some(seq) = record.dynamodb().and_then(|d| d.sequence_number()) {
                                shard.last_sequence = Some(seq.to_string());
                            }
                        }
                        match out.next_shard_iterator {
                            Some(next) => shard.iterator = next,
                            None => {
                                // The shard is closed and read to its end: its children may start.
                                reading.remove(&id);
                                shards.finished(&id);
                                relist = true;
                            }
                        }
                    }
                    Err(err) => match err.code() {
                        Some("ExpiredIteratorException") => {
                            let position = match &shard.last_sequence {
                                Some(seq) => Position::After(seq.clone()),
                                None => Position::Latest,
                            };
                            shard.iterator = self.iterator(arn, &id, &position).await?;
                            if position == Position::Latest {
                                // Records between the old iterator and now are unknown.
                                self.caches.invalidate_table(table, Reason::Stream).await;
                            }
                        }
                        Some("TrimmedDataAccessException") => {
                            shard.iterator =
                                self.iterator(arn, &id, &Position::TrimHorizon).await?;
                            self.caches.invalidate_table(table, Reason::Stream).await;
                        }
                        Some("LimitExceededException" | "ThrottlingException") => {
                            throttled += 1;
                            self.metrics.stream_errors.inc();
                            break;
                        }
                        Some("ResourceNotFoundException") => return Ok(()),
                        _ => return Err(error_text(&err)),
                    },
                }
            }
            // Every shard read to its end with nothing new: caught up. The lag of the last
            // record read must not stand for ever (an alert on it would never clear).
            if !records_seen && !more_waiting {
                self.metrics.stream_lag.set(0.0);
            }
            if relist {
                let listed = self.list_shards(arn).await?;
                listed_at = Instant::now();
                for (id, position) in shards.discover(&listed) {
                    let iterator = self.iterator(arn, &id, &position).await?;
                    reading.insert(id, Reading::new(iterator));
                }
                self.set_status(
                    table,
                    StreamStatus::Following {
                        stream: arn.to_string(),
                        shards: reading.len(),
                    },
                );
            }
            if reading.is_empty() && shards.all_finished() {
                // Every shard closed and nothing replaced them: the stream is over.
                return Ok(());
            }
            let pause = if throttled > 0 {
                backoff(throttled)
            } else if more_waiting {
                Duration::ZERO
            } else {
                self.config.poll_interval()
            };
            if self.pause(pause).await {
                return Ok(());
            }
            // Another node took over (this one could not renew in time): it follows now.
            if let Some(fleet) = self.caches.fleet()
                && fleet.lead(&stream_lock(table)).await == Some(false)
            {
                tracing::info!(table, "another node of the fleet follows the stream now");
                return Ok(());
            }
        }
    }

    /// One record: drop the item's entry (unless it provably holds the record's result or
    /// something newer) and the query answers of its partition.
    async fn apply(&self, table: &str, partition_key: Option<&str>, record: &Record) {
        self.metrics.stream_records.inc();
        let Some(change) = record.dynamodb() else {
            return;
        };
        if let Some(created) = change.approximate_creation_date_time() {
            let lag = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |now| now.as_secs_f64() - created.as_secs_f64());
            self.metrics.stream_lag.set(lag.max(0.0));
        }
        let Some(wire) = change.keys().and_then(wire_key) else {
            // No usable key: the safe answer is the whole table.
            self.caches.invalidate_table(table, Reason::Stream).await;
            return;
        };
        let Some(key) = ItemKey::new(table, &wire) else {
            self.caches.invalidate_table(table, Reason::Stream).await;
            return;
        };
        let now_is = match record.event_name().map(|e| e.as_str()) {
            Some("REMOVE") => Some(None),
            _ => change.new_image().map(|image| Some(json_item(image))),
        };
        let written_ms = change
            .approximate_creation_date_time()
            .map(|t| (t.as_secs_f64() * 1000.0) as u64);
        let partition = partition_key.and_then(|name| wire.get(name));
        self.caches
            .changed_elsewhere(&key, partition, now_is, written_ms)
            .await;
    }

    async fn list_shards(&self, arn: &str) -> Result<Vec<Listed>, String> {
        let mut listed = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_stream()
                .stream_arn(arn)
                .set_exclusive_start_shard_id(start.take())
                .send()
                .await
                .map_err(|e| error_text(&e))?;
            let Some(description) = out.stream_description else {
                return Ok(listed);
            };
            for shard in description.shards() {
                let Some(id) = shard.shard_id() else { continue };
                listed.push(Listed {
                    id: id.to_string(),
                    parent: shard.parent_shard_id().map(str::to_string),
                });
            }
            match description.last_evaluated_shard_id {
                Some(last) => start = Some(last),
                None => return Ok(listed),
            }
        }
    }

    async fn iterator(
        &self,
        arn: &str,
        shard: &str,
        position: &Position,
    ) -> Result<String, String> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_arn(arn)
            .shard_id(shard);
        let request = match position {
            Position::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            Position::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            Position::After(seq) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(seq),
        };
        request
            .send()
            .await
            .map_err(|e| error_text(&e))?
            .shard_iterator
            .ok_or_else(|| format!("GetShardIterator gave no iterator for {shard}"))
    }
}

fn error_text<
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
>(
    err: &SdkError<E, R>,
) -> String {
    match err.code() {
        Some(code) => format!("{code}: {}", err.message().unwrap_or("")),
        None => crate::upstream::credentials::DisplayChain(err).to_string(),
    }
}

fn backoff(failures: u32) -> Duration {
    (Duration::from_millis(250) * 2u32.saturating_pow(failures.min(8))).min(MAX_BACKOFF)
}

/// A shard being read.
struct Reading {
    iterator: String,
    /// The last record's sequence number, to resume after an expired iterator.
    last_sequence: Option<String>,
}

impl Reading {
    fn new(iterator: String) -> Reading {
        Reading {
            iterator,
            last_sequence: None,
        }
    }
}

/// Where to start reading a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Position {
    Latest,
    TrimHorizon,
    After(String),
}

/// One shard as DescribeStream lists it. Whether it is closed is learnt by reading it (no
/// next iterator), not from its listed ending sequence number: some emulators list one on
/// shards that are still open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub id: String,
    pub parent: Option<String>,
}

/// Shard lineage: which shards to read and from where, so that a child's records (newer) are
/// never applied before its parent's (older) are all read.
#[derive(Debug, Default)]
pub(crate) struct Shards {
    /// Shard id -> whether it has been read to its end (or was skipped as history).
    known: HashMap<String, bool>,
    /// Shards waiting for their parent to finish.
    waiting: HashMap<String, String>,
    /// Whether the first listing was seen.
    started: bool,
}

impl Shards {
    /// Takes a listing; returns the shards to start reading now, and where.
    ///
    /// First listing: every shard from `LATEST` (the proxy cares about changes from now on; a
    /// closed shard ends at once). Later listings: a new shard is read from `TRIM_HORIZON` (all
    /// its records are new to us) once its parent, if the proxy reads it, has been finished.
    pub(crate) fn discover(&mut self, listed: &[Listed]) -> Vec<(String, Position)> {
        let first = !self.started;
        self.started = true;
        let mut start = Vec::new();
        for shard in listed {
            if self.known.contains_key(&shard.id) || self.waiting.contains_key(&shard.id) {
                continue;
            }
            if first {
                self.known.insert(shard.id.clone(), false);
                start.push((shard.id.clone(), Position::Latest));
                continue;
            }
            match &shard.parent {
                Some(parent) if self.known.get(parent) == Some(&false) => {
                    self.waiting.insert(shard.id.clone(), parent.clone());
                }
                _ => {
                    self.known.insert(shard.id.clone(), false);
                    start.push((shard.id.clone(), Position::TrimHorizon));
                }
            }
        }
        // Children whose parent has finished.
        let ready: Vec<String> = self
            .waiting
            .iter()
            .filter(|(_, parent)| self.known.get(*parent) != Some(&false))
            .map(|(child, _)| child.clone())
            .collect();
        for child in ready {
            self.waiting.remove(&child);
            self.known.insert(child.clone(), false);
            start.push((child, Position::TrimHorizon));
        }
        // Forget finished shards the stream no longer lists (trimmed after 24 hours).
        self.known
            .retain(|id, done| !*done || listed.iter().any(|l| &l.id == id));
        start
    }

    /// `id` was read to its end.
    pub(crate) fn finished(&mut self, id: &str) {
        self.known.insert(id.to_string(), true);
    }

    /// No shard is being read or waiting.
    pub(crate) fn all_finished(&self) -> bool {
        self.waiting.is_empty() && self.known.values().all(|done| *done)
    }
}

/// A record's key as the proxy's wire key (`None` if some value cannot be a key).
fn wire_key(keys: &HashMap<String, AttributeValue>) -> Option<WireKey> {
    keys.iter()
        .map(|(name, value)| {
            let value = match value {
                AttributeValue::S(s) => KeyValue::S(s.clone()),
                AttributeValue::N(n) => KeyValue::N(n.clone()),
                AttributeValue::B(b) => {
                    KeyValue::B(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
                }
                _ => return None,
            };
            Some((name.clone(), value))
        })
        .collect()
}

/// A record's image in DynamoDB's JSON form, to compare with a cached item.
fn json_item(image: &HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        image
            .iter()
            .map(|(name, value)| (name.clone(), json_value(value)))
            .collect::<Map<String, Value>>(),
    )
}

fn json_value(value: &AttributeValue) -> Value {
    let b64 = |b: &aws_sdk_dynamodbstreams::primitives::Blob| {
        Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
    };
    let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
    let (tag, inner) = match value {
        AttributeValue::S(s) => ("S", Value::String(s.clone())),
        AttributeValue::N(n) => ("N", Value::String(n.clone())),
        AttributeValue::B(b) => ("B", b64(b)),
        AttributeValue::Bool(b) => ("BOOL", Value::Bool(*b)),
        AttributeValue::Null(n) => ("NULL", Value::Bool(*n)),
        AttributeValue::Ss(v) => ("SS", strings(v)),
        AttributeValue::Ns(v) => ("NS", strings(v)),
        AttributeValue::Bs(v) => ("BS", Value::Array(v.iter().map(b64).collect())),
        AttributeValue::L(v) => ("L", Value::Array(v.iter().map(json_value).collect())),
        AttributeValue::M(m) => ("M", json_item(m)),
        // A type this build does not know: a value no cached item can equal.
        _ => ("?", Value::Null),
    };
    let mut wrapped = Map::new();
    wrapped.insert(tag.to_string(), inner);
    Value::Object(wrapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parent: Option<&str>) -> Listed {
        Listed {
            id: id.into(),
            parent: parent.map(str::to_string),
        }
    }

    #[test]
    fn first_listing_reads_every_shard_from_latest() {
        let mut shards = Shards::default();
        let listing = [
            shard("old", None),
            shard("a", Some("old")),
            shard("b", None),
        ];
        let start = shards.discover(&listing);
        assert_eq!(
            start,
            vec![
                ("old".into(), Position::Latest),
                ("a".into(), Position::Latest),
                ("b".into(), Position::Latest)
            ]
        );
        // A closed shard ends at once; the others go on. Listing again starts nothing new.
        shards.finished("old");
        assert!(!shards.all_finished());
        assert!(shards.discover(&listing).is_empty());
    }

    #[test]
    fn children_of_a_split_wait_for_their_parent_then_read_everything() {
        let mut shards = Shards::default();
        shards.discover(&[shard("p", None)]);
        // The parent closes and splits; the children appear while it is still being read.
        let listing = [
            shard("p", None),
            shard("c1", Some("p")),
            shard("c2", Some("p")),
        ];
        assert!(
            shards.discover(&listing).is_empty(),
            "children must wait for p"
        );
        shards.finished("p");
        let mut start = shards.discover(&listing);
        start.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            start,
            vec![
                ("c1".into(), Position::TrimHorizon),
                ("c2".into(), Position::TrimHorizon)
            ]
        );
        // A grandchild of a shard the proxy never knew starts at once.
        let start = shards.discover(&[shard("g", Some("unknown"))]);
        assert_eq!(start, vec![("g".into(), Position::TrimHorizon)]);
    }

    #[test]
    fn finished_shards_are_forgotten_once_trimmed_and_a_closed_stream_ends() {
        let mut shards = Shards::default();
        shards.discover(&[shard("a", None)]);
        shards.finished("a");
        assert!(shards.all_finished());
        shards.discover(&[]);
        assert!(shards.known.is_empty());
    }

    #[test]
    fn record_keys_and_images_become_wire_json() {
        let keys = HashMap::from([
            ("pk".to_string(), AttributeValue::S("a".into())),
            ("sk".to_string(), AttributeValue::N("1".into())),
        ]);
        let wire = wire_key(&keys).unwrap();
        assert!(matches!(&wire["pk"], KeyValue::S(s) if s == "a"));
        assert!(wire_key(&HashMap::from([("pk".into(), AttributeValue::Bool(true))])).is_none());

        let image = HashMap::from([
            ("pk".to_string(), AttributeValue::S("a".into())),
            (
                "m".to_string(),
                AttributeValue::M(HashMap::from([(
                    "l".to_string(),
                    AttributeValue::L(vec![
                        AttributeValue::Null(true),
                        AttributeValue::Bool(false),
                    ]),
                )])),
            ),
        ]);
        assert_eq!(
            json_item(&image),
            serde_json::json!({"pk":{"S":"a"},"m":{"M":{"l":{"L":[{"NULL":true},{"BOOL":false}]}}}})
        );
    }
}
