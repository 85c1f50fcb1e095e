//! The query cache: eventually consistent Query and Scan answers, kept fresh after writes
//! through the proxy (where DAX leaves them stale until their TTL).
//!
//! An entry is keyed by every parameter that changes the answer (the request without
//! `ReturnConsumedCapacity`, with its keys sorted) and watches generation counters: a base-table
//! Query that pins one partition watches that partition; Scans, index Queries and anything
//! unclear watch their whole table. Writes bump the counters of what they touched before they
//! are acknowledged. Counters live in a fixed array indexed by hash, so memory does not grow
//! with the partitions written; a collision only costs a miss.

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::sync::Cache;

use crate::config::{CacheConfig, QueryInvalidation};
use crate::metrics::{CacheName, Metrics, Reason};
use crate::wire::keys::{KeyValue, canonical_value};

/// What one entry costs in resident memory beyond its key and answer bytes: moka's bookkeeping
/// (entry info, deque and timer nodes, hash-table bucket, its own key Arc), our struct, the
/// Arcs, allocator rounding. Measured when the item cache was a moka cache too: a million
/// 400-byte items grew resident memory by about 960 bytes an entry for 480 bytes of key and
/// answer. Weighing entries with it keeps the byte budget what it says: the memory the cache
/// takes, not the payload it holds.
const ENTRY_OVERHEAD: usize = 480;

const SLOTS: usize = 1 << 16;

/// What a cached answer depends on.
#[derive(Debug, Clone)]
pub enum Scope {
    /// One partition of the base table (canonical partition key value).
    Partition(Vec<u8>),
    /// The whole table (scans, local index queries, unparseable key conditions).
    Table,
    /// A global secondary index (or an index the proxy cannot tell is local): the whole
    /// table, and never readable strongly consistently.
    GlobalIndex,
}

/// The counters an entry watches, with their values when its read began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Watch {
    global: u64,
    slots: [(usize, u64); 2],
}

/// A cached answer.
#[derive(Debug, Clone)]
pub struct QueryEntry {
    /// The answer body, without `ConsumedCapacity`.
    pub body: Bytes,
    /// CRC32 of `body`.
    pub crc: u32,
    watch: Watch,
    /// Lifetime in memory: the TTL, plus the stale grace when stale-on-error is on.
    ttl: Duration,
    /// With stale-on-error on, when the answer stops being fresh.
    fresh_until: Option<Instant>,
}

/// The query cache.
pub(super) struct QueryCache {
    /// Answers by canonical request.
    entries: Cache<Arc<[u8]>, QueryEntry>,
    /// TTLs per table.
    config: CacheConfig,
    /// Generation counters, indexed by hash of what they stand for.
    slots: Box<[AtomicU64]>,
    /// Bumped to drop everything.
    global: AtomicU64,
    hasher: RandomState,
    /// With stale-on-error on: how long past its TTL an answer is kept for upstream failures.
    stale_grace: Option<Duration>,
    /// Evictions and invalidations are counted here.
    metrics: Arc<Metrics>,
}

struct EntryTtl;

impl moka::Expiry<Arc<[u8]>, QueryEntry> for EntryTtl {
    fn expire_after_create(&self, _: &Arc<[u8]>, v: &QueryEntry, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
}

impl QueryCache {
    pub(super) fn new(config: &CacheConfig, metrics: Arc<Metrics>) -> QueryCache {
        QueryCache {
            entries: Cache::builder()
                .max_capacity(config.query_max_bytes)
                .weigher(|k: &Arc<[u8]>, v: &QueryEntry| {
                    (k.len() + v.body.len() + ENTRY_OVERHEAD).min(u32::MAX as usize) as u32
                })
                .expire_after(EntryTtl)
                .eviction_listener(metrics.eviction_counter(CacheName::Query))
                .build(),
            config: config.clone(),
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            global: AtomicU64::new(0),
            hasher: RandomState::new(),
            stale_grace: config
                .serve_stale_on_error
                .then(|| Duration::from_millis(config.stale_grace_ms)),
            metrics,
        }
    }

    /// How long answers of `table` live; `None` = not cached.
    pub(super) fn ttl(&self, table: &str) -> Option<Duration> {
        self.config.query_ttl(table)
    }

    /// The cached answer for `key`, if it is fresh: within its TTL, and no write it depends on
    /// happened since it was read.
    pub(super) fn get(&self, key: &Arc<[u8]>) -> Option<QueryEntry> {
        let entry = self.get_stale(key)?;
        match entry.fresh_until {
            Some(until) if Instant::now() >= until => None,
            _ => Some(entry),
        }
    }

    /// The answer for `key` even if its TTL has passed (within the stale grace), for answering
    /// when the upstream fails. Never one a write it depends on has invalidated.
    pub(super) fn get_stale(&self, key: &Arc<[u8]>) -> Option<QueryEntry> {
        let entry = self.entries.get(key)?;
        (entry.watch == self.current(&entry.watch)).then_some(entry)
    }

    /// Marks the start of an upstream read of `table` in `scope`.
    pub(super) fn begin(&self, table: &str, scope: &Scope) -> Watch {
        let scope_slot = match scope {
            Scope::Partition(value) => self.slot(&("partition", table, value)),
            Scope::Table | Scope::GlobalIndex => self.slot(&("table-writes", table)),
        };
        let slots = [self.slot(&("table", table)), scope_slot];
        self.current(&Watch {
            global: 0,
            slots: slots.map(|s| (s, 0)),
        })
    }

    /// Stores an answer read since `watch`, unless something it depends on changed meanwhile.
    pub(super) fn fill(&self, key: Arc<[u8]>, table: &str, watch: Watch, body: Bytes) -> bool {
        let Some(ttl) = self.ttl(table) else {
            return false;
        };
        if watch != self.current(&watch) {
            return false;
        }
        let crc = crc32fast::hash(&body);
        self.entries.insert(
            key,
            QueryEntry {
                // An upstream body is often a slice of the connection's read buffer, which
                // grows to the largest answer it has carried: keeping the slice would pin that
                // whole buffer while the weigher counts only the slice. A copy costs what it
                // weighs.
                body: Bytes::copy_from_slice(&body),
                crc,
                watch,
                ttl: ttl + self.stale_grace.unwrap_or_default(),
                fresh_until: self.stale_grace.map(|_| Instant::now() + ttl),
            },
        );
        // A write that bumps a counter between the check and the insert leaves this entry
        // with an outdated watch, which every lookup refuses: no window to serve it.
        true
    }

    /// A write to `table` finished (whatever its outcome): drop what it may have changed.
    /// `partition` is the written item's partition key value, when known.
    pub(super) fn wrote(&self, table: &str, partition: Option<&KeyValue>) {
        self.changed(table, partition, Reason::Write);
    }

    /// As [`QueryCache::wrote`], for a change seen some other way (a stream record), counted
    /// under `reason`.
    pub(super) fn changed(&self, table: &str, partition: Option<&KeyValue>, reason: Reason) {
        if self.config.query_invalidation != QueryInvalidation::Ttl {
            self.metrics.invalidated(CacheName::Query, reason);
        }
        match self.config.query_invalidation {
            QueryInvalidation::Ttl => {}
            QueryInvalidation::Table => self.bump(self.slot(&("table", table))),
            QueryInvalidation::Partition => {
                match partition.and_then(canonical_value) {
                    Some(value) => self.bump(self.slot(&("partition", table, &value))),
                    None => self.bump(self.slot(&("table", table))),
                }
                self.bump(self.slot(&("table-writes", table)));
            }
        }
    }

    /// The table was created, changed or deleted, written in a way the proxy cannot
    /// attribute, or flushed: drop all of its answers, counted under `reason`.
    pub(super) fn invalidate_table(&self, table: &str, reason: Reason) {
        self.bump(self.slot(&("table", table)));
        self.metrics.invalidated(CacheName::Query, reason);
    }

    /// Drops every answer, counted under `reason`.
    pub(super) fn invalidate_all(&self, reason: Reason) {
        self.global.fetch_add(1, Ordering::SeqCst);
        self.metrics.invalidated(CacheName::Query, reason);
    }

    /// Calls `visit(table, bytes)` for every live entry (O(entries); for `/cache`).
    pub(super) fn for_each_entry(&self, mut visit: impl FnMut(&str, u64)) {
        for (key, entry) in self.entries.iter() {
            let table = key.split(|b| *b == 0).next().unwrap_or_default();
            let table = std::str::from_utf8(table).unwrap_or("");
            visit(
                table,
                (key.len() + entry.body.len() + ENTRY_OVERHEAD) as u64,
            );
        }
    }

    /// Entries and weighted bytes now.
    pub(super) fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.entry_count(), self.entries.weighted_size())
    }

    fn current(&self, watch: &Watch) -> Watch {
        Watch {
            global: self.global.load(Ordering::SeqCst),
            slots: watch
                .slots
                .map(|(s, _)| (s, self.slots[s].load(Ordering::SeqCst))),
        }
    }

    fn slot(&self, what: &impl Hash) -> usize {
        (self.hasher.hash_one(what) as usize) % SLOTS
    }

    fn bump(&self, slot: usize) {
        self.slots[slot].fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::keys::query_key;

    fn cache(mode: QueryInvalidation) -> QueryCache {
        QueryCache::new(
            &CacheConfig {
                query_invalidation: mode,
                ..CacheConfig::default()
            },
            Arc::new(Metrics::new()),
        )
    }

    fn partition(pk: &str) -> Scope {
        Scope::Partition(canonical_value(&KeyValue::S(pk.into())).unwrap())
    }

    fn stored(cache: &QueryCache, key: &Arc<[u8]>, table: &str, scope: &Scope) -> bool {
        let watch = cache.begin(table, scope);
        cache.fill(key.clone(), table, watch, Bytes::from_static(b"{}"));
        cache.get(key).is_some()
    }

    #[test]
    fn writes_drop_their_partition_and_the_tables_wide_reads() {
        let cache = cache(QueryInvalidation::Partition);
        let (qa, qb, scan) = (
            query_key("t", "Query", "a"),
            query_key("t", "Query", "b"),
            query_key("t", "Scan", "{}"),
        );
        assert!(stored(&cache, &qa, "t", &partition("a")));
        assert!(stored(&cache, &qb, "t", &partition("b")));
        assert!(stored(&cache, &scan, "t", &Scope::Table));
        cache.wrote("t", Some(&KeyValue::S("a".into())));
        assert!(cache.get(&qa).is_none());
        assert!(cache.get(&qb).is_some(), "another partition is untouched");
        assert!(cache.get(&scan).is_none());
        // A write whose partition is unknown drops the whole table.
        assert!(stored(&cache, &qa, "t", &partition("a")));
        cache.wrote("t", None);
        assert!(cache.get(&qa).is_none() && cache.get(&qb).is_none());
        // Other tables are untouched.
        let other = query_key("u", "Scan", "{}");
        assert!(stored(&cache, &other, "u", &Scope::Table));
        cache.wrote("t", None);
        assert!(cache.get(&other).is_some());
    }

    #[test]
    fn a_fill_loses_to_a_write_that_finished_during_its_read() {
        let cache = cache(QueryInvalidation::Partition);
        let key = query_key("t", "Query", "a");
        let watch = cache.begin("t", &partition("a"));
        cache.wrote("t", Some(&KeyValue::S("a".into())));
        assert!(!cache.fill(key.clone(), "t", watch, Bytes::from_static(b"{}")));
        assert!(cache.get(&key).is_none());
    }

    #[test]
    fn modes() {
        let key = query_key("t", "Query", "b");
        let table = cache(QueryInvalidation::Table);
        assert!(stored(&table, &key, "t", &partition("b")));
        table.wrote("t", Some(&KeyValue::S("a".into())));
        assert!(
            table.get(&key).is_none(),
            "table mode drops every query of the table"
        );
        let ttl = cache(QueryInvalidation::Ttl);
        assert!(stored(&ttl, &key, "t", &partition("a")));
        ttl.wrote("t", Some(&KeyValue::S("a".into())));
        assert!(
            ttl.get(&key).is_some(),
            "ttl mode keeps answers until they expire"
        );
        ttl.invalidate_table("t", Reason::TableChange);
        assert!(
            ttl.get(&key).is_none(),
            "a changed table drops its answers in any mode"
        );
    }
}
