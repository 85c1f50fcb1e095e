//! The item cache: what is stored, for how long, and the rules that keep it from ever serving a
//! value older than a write the proxy acknowledged.
//!
//! Storage is a segmented store bounded by bytes with a per-entry TTL (`store.rs`). Freshness
//! rests on three mechanisms:
//!
//! - **Write tracking.** Every write to a key stamps it (from one logical clock) when it starts
//!   and when it ends, and counts itself in flight meanwhile. A miss fill takes a stamp before
//!   asking upstream and may store its answer only if no write to the key started, finished or
//!   is still running since then: a slow fill loses to any overlapping write. A write stores its
//!   own result only if no other write to the key overlapped it; otherwise it invalidates.
//!   Decisions and the store happen under the key's shard lock, so they cannot interleave.
//! - **Invalidation marks.** Whole-table events (DeleteTable, PartiQL writes, flush) record the
//!   clock value at which they happened, for the table or for all; an entry whose read or write
//!   began before the mark is ignored, and so is a fill or write that began before it.
//! - **TTL**, for writes that bypass the proxy.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::sync::Cache;

use crate::cache::store::{Entry, Meta, Projections, Store};
use crate::config::CacheConfig;
use crate::metrics::{CacheName, Metrics, Reason};
use crate::wire::keys::{self, ItemKey};

/// A stream record's time is rounded down to the second, and DynamoDB's clock is not ours: an
/// entry written through the proxy counts as newer than a change only this much later.
const STREAM_CLOCK_MARGIN_MS: u64 = 2_000;

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

const SHARDS: usize = 64;
/// A shard first prunes finished write stamps once it holds this many; after a prune, the next
/// waits until the shard has doubled, so pruning costs O(1) per write amortised.
const PRUNE_AT: usize = 256;

/// The whole item, as the exact GetItem answer a hit sends (`{"Item":{...}}`, or `{}` when the
/// item does not exist) with that answer's CRC32. The store renders it afresh for each read
/// (see `store.rs`); the item itself is a zero-copy slice of the answer.
#[derive(Debug, Clone)]
pub struct Whole {
    answer: Bytes,
    crc: u32,
}

const ITEM_PREFIX: &[u8] = b"{\"Item\":";

impl Whole {
    /// `item` is the attribute map as DynamoDB returned it (or as written, when that is
    /// byte-equivalent); `None` = the item does not exist.
    pub fn new(item: Option<&[u8]>) -> Whole {
        let answer = match item {
            Some(item) => {
                let mut answer = Vec::with_capacity(ITEM_PREFIX.len() + item.len() + 1);
                answer.extend_from_slice(ITEM_PREFIX);
                answer.extend_from_slice(item);
                answer.push(b'}');
                Bytes::from(answer)
            }
            None => Bytes::from_static(b"{}"),
        };
        Whole {
            crc: crc32fast::hash(&answer),
            answer,
        }
    }

    /// The GetItem answer body and its CRC32.
    pub fn answer(&self) -> (&Bytes, u32) {
        (&self.answer, self.crc)
    }

    /// The item's attribute map, or `None` if it does not exist.
    pub fn item(&self) -> Option<Bytes> {
        (self.answer.len() > 2).then(|| self.answer.slice(ITEM_PREFIX.len()..self.answer.len() - 1))
    }
}

/// What the cache knows about one item.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The whole item, if known (`None` = only projections of it are known).
    pub whole: Option<Whole>,
    /// Answers to projected reads of this item, by projection; `None` = no such item.
    pub projections: Projections,
    /// When the entry stops being fresh, on the store's clock: after this (within the stale
    /// grace, when stale-on-error is on) it is answered only when the upstream fails.
    fresh_until: u64,
    /// Clock value at which the read or write that produced this entry began: it is stale if
    /// its table was invalidated since.
    as_of: u64,
    /// When the write through this proxy that stored this entry started (ms since the
    /// epoch, rounded down to the second); 0 for entries filled by reads. A stream record of an
    /// older change spares it.
    written_ms: u64,
}

impl Cached {
    /// The answer for `projection` (`None` = the whole item), if known.
    /// The outer `Option` is "known?", the inner is "exists?".
    pub fn answer(&self, projection: Option<&str>) -> Option<Option<Bytes>> {
        match projection {
            None => self.whole.as_ref().map(Whole::item),
            Some(p) => {
                if self.whole.as_ref().is_some_and(|w| w.item().is_none()) {
                    return Some(None); // no item: every projection of it is empty
                }
                self.projections
                    .iter()
                    .find(|(q, _)| &**q == p)
                    .map(|(_, body)| body.clone())
            }
        }
    }

    fn from_entry(entry: Entry) -> Cached {
        let whole = entry.answer().map(|answer| Whole {
            crc: crc32fast::hash(&answer),
            answer,
        });
        Cached {
            whole,
            projections: entry.projections.unwrap_or_else(|| NO_PROJECTIONS.clone()),
            fresh_until: entry.meta.fresh_until,
            as_of: entry.meta.as_of,
            written_ms: u64::from(entry.meta.written_s) * 1000,
        }
    }
}

/// Shared by every entry that has none, so reading one allocates nothing for them.
static NO_PROJECTIONS: LazyLock<Projections> = LazyLock::new(|| Arc::new([]));

/// What a write found out about its item.
#[derive(Debug)]
pub enum WriteOutcome {
    /// The item is now exactly this (`None` = deleted).
    Item(Option<Bytes>),
    /// The write succeeded but its result is unknown (a transaction, `UPDATED_OLD`, an item
    /// not byte-equivalent to DynamoDB's form): drop it.
    Unknown,
    /// The write failed or its fate is unknown (error, timeout): drop it.
    Failed,
}

/// What a stream record did to an item's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamVerdict {
    /// The entry (if any) was dropped.
    Dropped,
    /// The entry already reflected the change. `by_own_write`: it was stored by a write through
    /// this proxy, which already dropped the partition's query answers that predate it, so the
    /// record need not drop them again.
    Kept { by_own_write: bool },
}

/// Proof that a fill began at a point in time; see [`ItemCache::begin_fill`].
#[derive(Debug, Clone, Copy)]
pub struct FillTicket {
    started: u64,
}

/// A write in progress; see [`ItemCache::begin_write`].
#[derive(Debug)]
#[must_use = "a write must be ended, or the key stays unfillable"]
pub struct WriteTicket {
    started: u64,
    /// Wall-clock start (ms since the epoch), compared with stream records' times.
    started_ms: u64,
}

/// The write history of one key hash.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    /// Clock value of the last write start or end.
    last: u64,
    /// Writes running now.
    in_flight: u32,
    /// When `last` was taken, for pruning.
    at: Instant,
}

/// One shard of write stamps.
#[derive(Default)]
struct StampShard {
    stamps: HashMap<u64, Stamp>,
    /// Size at which the next prune runs.
    prune_at: usize,
}

/// The item cache.
pub struct ItemCache {
    /// The entries, weighed in bytes; its hash of a key also picks the key's stamp shard.
    entries: Store,
    /// Budget and TTLs, per table.
    config: CacheConfig,
    /// The logical clock that orders fills and writes.
    clock: AtomicU64,
    /// Write stamps by key hash, sharded; a hash collision only costs a skipped fill.
    stamps: Box<[Mutex<StampShard>]>,
    /// Clock values of the last invalidations. Held for reading while a fill or write takes
    /// its start on the clock, so an invalidation's mark and its publication are one step
    /// to them.
    invalidated: RwLock<Invalidated>,
    /// Stamps older than this, with no write running, can no longer stop a fill (fills are
    /// bounded by the upstream timeout).
    stamp_lifetime: Duration,
    /// `table NUL projection` for projections DynamoDB has accepted, so only those are
    /// evaluated from cached items (DynamoDB alone decides what is a valid expression).
    known_projections: Cache<Arc<str>, ()>,
    /// Evictions and invalidations are counted here.
    metrics: Arc<Metrics>,
}

/// The clock values of the last whole-table invalidations.
#[derive(Default)]
struct Invalidated {
    all: u64,
    tables: HashMap<String, u64>,
}

/// How many tables' invalidation marks are kept before they fold into one for everything.
const MAX_TABLE_MARKS: usize = 4096;

/// How many accepted projections are remembered (least used forgotten first).
const KNOWN_PROJECTIONS: u64 = 10_000;

impl ItemCache {
    /// A cache sized and timed by `config`; `upstream_timeout` bounds how long a fill can take.
    pub fn new(
        config: &CacheConfig,
        upstream_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> ItemCache {
        let stale_grace = config
            .serve_stale_on_error
            .then(|| Duration::from_millis(config.stale_grace_ms));
        ItemCache {
            entries: Store::new(
                config.item_max_bytes,
                stale_grace.unwrap_or_default(),
                &metrics,
                CacheName::Item,
            ),
            config: config.clone(),
            clock: AtomicU64::new(1),
            stamps: (0..SHARDS)
                .map(|_| {
                    Mutex::new(StampShard {
                        stamps: HashMap::new(),
                        prune_at: PRUNE_AT,
                    })
                })
                .collect(),
            invalidated: RwLock::default(),
            stamp_lifetime: upstream_timeout * 2 + Duration::from_secs(1),
            known_projections: Cache::new(KNOWN_PROJECTIONS),
            metrics,
        }
    }

    /// Whether `table`'s items are cached at all.
    pub fn caches(&self, table: &str) -> bool {
        self.config.caches(table)
    }

    /// The current entry for `key`, if it is fresh: not from before an invalidation of its
    /// table, not past its TTL.
    pub fn get(&self, key: &ItemKey) -> Option<Cached> {
        let cached = self.get_stale(key)?;
        (self.entries.now_ms() < cached.fresh_until).then_some(cached)
    }

    /// The entry for `key` even if its TTL has passed (within the stale grace), for answering
    /// when the upstream fails. Never an entry a write or invalidation has replaced.
    pub fn get_stale(&self, key: &ItemKey) -> Option<Cached> {
        let entry = self
            .entries
            .get(self.entries.hash(key.as_bytes()), key.as_bytes())?;
        (entry.meta.as_of > self.invalidated_at(key.table())).then(|| Cached::from_entry(entry))
    }

    /// Stores `cached` under `key` (hashed to `hash`), fresh for its table's TTL.
    fn store(&self, key: &ItemKey, hash: u64, cached: Cached) {
        let deadline = self.entries.deadline(self.config.item_ttl(key.table()));
        let meta = Meta {
            // An entry that carries parts filled earlier keeps their deadline: no part of an
            // entry outlives its own fill by more than the TTL.
            fresh_until: match cached.fresh_until {
                0 => deadline,
                earlier => earlier.min(deadline),
            },
            as_of: cached.as_of,
            // Rounding down only makes a stream record less likely to spare the entry.
            written_s: (cached.written_ms / 1000).min(u64::from(u32::MAX)) as u32,
        };
        self.entries.insert(
            hash,
            key.as_bytes(),
            cached.whole.as_ref().map(|w| &w.answer[..]),
            meta,
            Some(cached.projections),
        );
    }

    /// Marks the start of an upstream read whose answer may fill the cache.
    pub fn begin_fill(&self) -> FillTicket {
        FillTicket {
            started: self.start(),
        }
    }

    /// Stores what a read learned, unless a write to `key` overlapped the read or the table
    /// was invalidated since it began. `merge` gets the current entry (if valid) and returns the new one.
    /// Returns whether anything was stored.
    pub fn fill(
        &self,
        key: &ItemKey,
        ticket: FillTicket,
        merge: impl FnOnce(Option<Cached>) -> Cached,
    ) -> bool {
        let hash = self.hash(key);
        let shard = self.shard(hash).lock().expect("lock poisoned");
        let overlapped = shard
            .stamps
            .get(&hash)
            .is_some_and(|s| s.in_flight > 0 || s.last >= ticket.started);
        if overlapped || ticket.started < self.invalidated_at(key.table()) {
            return false;
        }
        let mut cached = merge(self.get(key));
        cached.as_of = ticket.started;
        self.store(key, hash, cached);
        drop(shard);
        true
    }

    /// Stores what a read returned (see [`ItemCache::fill`]): the whole item when
    /// `projection` is `None` (projections read earlier are dropped); otherwise one more
    /// projection of the item, which keeps the entry's deadline.
    pub fn fill_answer(
        &self,
        key: &ItemKey,
        ticket: FillTicket,
        projection: Option<Arc<str>>,
        item: Option<Bytes>,
    ) -> bool {
        self.fill(key, ticket, |existing| match projection {
            // Projections read earlier are not carried over: they would outlive their TTL.
            None => Self::whole(item.as_deref()),
            Some(projection) => Self::with_projection(existing, projection, item),
        })
    }

    /// An entry holding the whole item (`None` = not found).
    pub fn whole(item: Option<&[u8]>) -> Cached {
        Cached {
            whole: Some(Whole::new(item)),
            projections: NO_PROJECTIONS.clone(),
            fresh_until: 0,
            as_of: 0,
            written_ms: 0,
        }
    }

    /// `existing` (if any) with the answer to one more projection added.
    pub fn with_projection(
        existing: Option<Cached>,
        projection: Arc<str>,
        answer: Option<Bytes>,
    ) -> Cached {
        let (full, mut projections, fresh_until) = match existing {
            Some(c) => (c.whole, c.projections.to_vec(), c.fresh_until),
            None => (None, Vec::new(), 0),
        };
        projections.retain(|(p, _)| *p != projection);
        // A copy, not a slice of the upstream answer: see `QueryCache::fill`.
        projections.push((projection, answer.map(|a| Bytes::copy_from_slice(&a))));
        Cached {
            whole: full,
            projections: projections.into(),
            // The parts already there keep their deadline.
            fresh_until,
            as_of: 0,
            written_ms: 0,
        }
    }

    /// The last write stamp of `key` (0 if no write is remembered). It changes whenever a write
    /// starts or ends, so two readers that saw the same stamp have seen the same writes: only
    /// those may share one upstream read (a reader that arrives after a write was acknowledged
    /// must not be handed an answer read before it).
    ///
    /// A write the proxy can only attribute to a whole table (PartiQL, DDL, a write whose keys
    /// it cannot tell) leaves no stamp on the key, but it marks the table: that mark counts
    /// as the key's stamp too.
    pub fn write_stamp(&self, key: &ItemKey) -> u64 {
        let hash = self.hash(key);
        let shard = self.shard(hash).lock().expect("lock poisoned");
        let stamp = shard.stamps.get(&hash).map_or(0, |s| s.last);
        stamp.max(self.invalidated_at(key.table()))
    }

    /// Marks the start of a write to `key`: from now until [`ItemCache::end_write`], no fill
    /// that started earlier can store.
    pub fn begin_write(&self, key: &ItemKey) -> WriteTicket {
        let hash = self.hash(key);
        let mut shard = self.shard(hash).lock().expect("lock poisoned");
        let started = self.start();
        let now = Instant::now();
        self.prune(&mut shard, now);
        let stamp = shard.stamps.entry(hash).or_insert(Stamp {
            last: 0,
            in_flight: 0,
            at: now,
        });
        stamp.last = started;
        stamp.in_flight += 1;
        stamp.at = now;
        WriteTicket {
            started,
            started_ms: epoch_ms(),
        }
    }

    /// Ends a write: stores its outcome if no other write to `key` overlapped it and the
    /// table was not invalidated since it began; otherwise (or for an unknown outcome) drops the entry.
    pub fn end_write(&self, key: &ItemKey, ticket: WriteTicket, outcome: WriteOutcome) {
        let hash = self.hash(key);
        let mut shard = self.shard(hash).lock().expect("lock poisoned");
        let stamp = shard
            .stamps
            .get_mut(&hash)
            .expect("begin_write left a stamp that only pruning of idle stamps removes");
        let alone = stamp.in_flight == 1 && stamp.last == ticket.started;
        let not_invalidated = ticket.started > self.invalidated_at(key.table());
        match outcome {
            // A table that opted out of caching keeps nothing, not even what it wrote.
            WriteOutcome::Item(item) if alone && not_invalidated && self.caches(key.table()) => {
                let mut cached = Self::whole(item.as_deref());
                cached.as_of = ticket.started;
                cached.written_ms = ticket.started_ms;
                self.store(key, hash, cached);
            }
            WriteOutcome::Failed => {
                self.entries.remove(hash, key.as_bytes());
                self.metrics
                    .invalidated(CacheName::Item, Reason::FailedWrite);
            }
            _ => {
                self.entries.remove(hash, key.as_bytes());
                self.metrics.invalidated(CacheName::Item, Reason::Write);
            }
        }
        stamp.last = self.tick();
        stamp.in_flight -= 1;
        stamp.at = Instant::now();
    }

    /// A write that did not go through this proxy changed `key` (a stream record says so).
    /// `now_is` is what the item became, when the stream carries images (`Some(None)` =
    /// deleted); `changed_ms` is when (ms since the epoch, DynamoDB rounds it down to the
    /// second). The entry stays if it already holds exactly that, or if a write through this
    /// proxy stored it clearly after the change; otherwise it is dropped and no read that
    /// began before now may fill it.
    pub fn changed_elsewhere(
        &self,
        key: &ItemKey,
        now_is: Option<Option<serde_json::Value>>,
        changed_ms: Option<u64>,
        reason: Reason,
    ) -> StreamVerdict {
        let hash = self.hash(key);
        let mut shard = self.shard(hash).lock().expect("lock poisoned");
        if let Some(cached) = self.get(key) {
            let holds_it = match (&now_is, &cached.whole) {
                (Some(expected), Some(whole)) => match (expected, whole.item()) {
                    (None, None) => true,
                    (Some(image), Some(item)) => {
                        serde_json::from_slice::<serde_json::Value>(&item)
                            .ok()
                            .as_ref()
                            == Some(image)
                    }
                    _ => false,
                },
                _ => false,
            };
            // Projections were read at their own times: the whole item matching says nothing
            // about them.
            let holds_it = holds_it && cached.projections.is_empty();
            let written_after = cached.written_ms > 0
                && changed_ms.is_some_and(|c| cached.written_ms > c + STREAM_CLOCK_MARGIN_MS);
            if holds_it || written_after {
                return StreamVerdict::Kept {
                    by_own_write: cached.written_ms > 0,
                };
            }
        }
        // As if a write had just ended: fills that began earlier lose.
        let (tick, now) = (self.tick(), Instant::now());
        // Records come for keys never cached too: their stamps are pruned like writes'.
        self.prune(&mut shard, now);
        let stamp = shard.stamps.entry(hash).or_insert(Stamp {
            last: 0,
            in_flight: 0,
            at: now,
        });
        stamp.last = tick;
        stamp.at = now;
        self.entries.remove(hash, key.as_bytes());
        self.metrics.invalidated(CacheName::Item, reason);
        StreamVerdict::Dropped
    }

    /// Forgets the stamps that can no longer stop a fill, once a shard has grown enough that
    /// doing so costs O(1) per stamp added.
    fn prune(&self, shard: &mut StampShard, now: Instant) {
        if shard.stamps.len() >= shard.prune_at {
            let lifetime = self.stamp_lifetime;
            shard
                .stamps
                .retain(|_, s| s.in_flight > 0 || now.duration_since(s.at) < lifetime);
            shard.prune_at = (shard.stamps.len() * 2).max(PRUNE_AT);
        }
    }

    /// Remembers that DynamoDB answered `projection` on `table` without error.
    pub fn learn_projection(&self, table: &str, projection: &str) {
        self.known_projections
            .insert(projection_id(table, projection), ());
    }

    /// Whether DynamoDB has accepted `projection` on `table`.
    pub fn knows_projection(&self, table: &str, projection: &str) -> bool {
        self.known_projections
            .contains_key(&projection_id(table, projection))
    }

    /// Drops every entry of `table` (lazily, by its mark), counted under `reason`.
    pub fn invalidate_table(&self, table: &str, reason: Reason) {
        let mut invalidated = self.invalidated.write().expect("lock poisoned");
        let mark = self.tick();
        if invalidated.tables.len() >= MAX_TABLE_MARKS && !invalidated.tables.contains_key(table) {
            // Marks for ever more table names (DDL with made-up names) would grow without
            // bound: one mark for everything replaces them, at the cost of a cold cache.
            invalidated.tables.clear();
            invalidated.all = mark;
        } else {
            invalidated.tables.insert(table.to_string(), mark);
        }
        drop(invalidated);
        self.metrics.invalidated(CacheName::Item, reason);
    }

    /// Drops every entry (lazily, by its mark), counted under `reason`.
    pub fn invalidate_all(&self, reason: Reason) {
        let mut invalidated = self.invalidated.write().expect("lock poisoned");
        invalidated.all = self.tick();
        drop(invalidated);
        self.metrics.invalidated(CacheName::Item, reason);
    }

    /// Calls `visit(table, weighted bytes)` for every live entry (O(entries); for `/cache`).
    pub fn for_each_entry(&self, mut visit: impl FnMut(&str, u64)) {
        self.entries
            .for_each(|key, bytes| visit(keys::table_of(key), bytes));
    }

    /// Entries and weighted bytes now.
    pub fn usage(&self) -> (u64, u64) {
        self.entries.usage()
    }

    fn hash(&self, key: &ItemKey) -> u64 {
        self.entries.hash(key.as_bytes())
    }

    /// The clock value of the last invalidation of `table` (or of everything).
    fn invalidated_at(&self, table: &str) -> u64 {
        let invalidated = self.invalidated.read().expect("lock poisoned");
        invalidated
            .all
            .max(invalidated.tables.get(table).copied().unwrap_or(0))
    }

    /// A clock value for the start of a fill or write, taken where no invalidation is
    /// between marking and publishing.
    fn start(&self) -> u64 {
        let _invalidations = self.invalidated.read().expect("lock poisoned");
        self.tick()
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    fn shard(&self, hash: u64) -> &Mutex<StampShard> {
        &self.stamps[(hash as usize) % SHARDS]
    }

    /// Write stamps held, over all shards (for tests).
    #[cfg(test)]
    fn stamp_count(&self) -> usize {
        self.stamps
            .iter()
            .map(|s| s.lock().expect("lock poisoned").stamps.len())
            .sum()
    }
}

fn projection_id(table: &str, projection: &str) -> Arc<str> {
    format!("{table}\u{0}{projection}").into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::keys::{KeyValue, WireKey};

    fn key(pk: &str) -> ItemKey {
        let wire: WireKey = [("pk".to_string(), KeyValue::S(pk.into()))].into();
        ItemKey::new("t", &wire).unwrap()
    }

    fn cache() -> ItemCache {
        ItemCache::new(
            &CacheConfig::default(),
            Duration::from_secs(1),
            Arc::new(Metrics::new()),
        )
    }

    fn body(s: &'static str) -> Option<Bytes> {
        Some(Bytes::from_static(s.as_bytes()))
    }

    fn full(cache: &ItemCache, k: &ItemKey) -> Option<Option<Bytes>> {
        cache.get(k).and_then(|c| c.whole).map(|w| w.item())
    }

    #[test]
    fn stream_records_for_keys_never_cached_do_not_pile_up() {
        // Stamps outlive the longest fill: here 1 s (no upstream timeout).
        let cache = ItemCache::new(
            &CacheConfig::default(),
            Duration::ZERO,
            Arc::new(Metrics::new()),
        );
        for i in 0..20_000 {
            cache.changed_elsewhere(&key(&format!("a{i}")), None, None, Reason::Stream);
        }
        std::thread::sleep(Duration::from_millis(1100));
        for i in 0..20_000 {
            cache.changed_elsewhere(&key(&format!("b{i}")), None, None, Reason::Stream);
        }
        let held = cache.stamp_count();
        assert!(held < 30_000, "{held} stamps held for 40,000 records");
    }

    #[test]
    fn invalidation_marks_for_ever_more_tables_stay_bounded() {
        let cache = cache();
        let k = key("a");
        let fill = cache.begin_fill();
        assert!(cache.fill_answer(&k, fill, None, body(r#"{"pk":{"S":"a"}}"#)));
        for i in 0..MAX_TABLE_MARKS + 10 {
            cache.invalidate_table(&format!("made-up-{i}"), Reason::TableChange);
        }
        assert!(cache.invalidated.read().unwrap().tables.len() <= MAX_TABLE_MARKS);
        // Folding the marks into one for everything drops what was cached: never stale.
        assert!(cache.get(&k).is_none());
    }

    #[test]
    fn a_whole_item_fill_does_not_carry_older_projections() {
        let cache = cache();
        let k = key("a");
        let fill = cache.begin_fill();
        cache.fill_answer(&k, fill, Some("Pv".into()), body(r#"{"v":{"S":"old"}}"#));
        let fill = cache.begin_fill();
        cache.fill_answer(&k, fill, None, body(r#"{"pk":{"S":"a"},"v":{"S":"new"}}"#));
        let cached = cache.get(&k).unwrap();
        assert!(cached.projections.is_empty());
        assert_eq!(
            cached.answer(Some("Pv")),
            None,
            "the projection must be read again"
        );
    }

    #[test]
    fn a_fill_that_started_before_a_write_loses() {
        let cache = cache();
        let k = key("a");
        let fill = cache.begin_fill(); // read of the old value starts
        let write = cache.begin_write(&k);
        cache.end_write(&k, write, WriteOutcome::Item(body("new")));
        // The slow read arrives with the old value: refused.
        assert!(!cache.fill(&k, fill, |_| ItemCache::whole(Some(b"old"))));
        assert_eq!(full(&cache, &k), Some(body("new")));
    }

    #[test]
    fn a_change_seen_on_the_stream_drops_the_entry_and_refuses_older_fills() {
        let cache = cache();
        let k = key("s");
        assert!(
            cache.fill(&k, cache.begin_fill(), |_| ItemCache::whole(Some(
                br#"{"v":{"N":"1"}}"#
            )))
        );
        let slow_fill = cache.begin_fill(); // a read that saw the item before the change
        assert_eq!(
            cache.changed_elsewhere(&k, None, Some(epoch_ms()), Reason::Stream),
            StreamVerdict::Dropped
        );
        assert_eq!(full(&cache, &k), None);
        assert!(!cache.fill(&k, slow_fill, |_| ItemCache::whole(Some(
            br#"{"v":{"N":"1"}}"#
        ))));
        // A read that began after the record fills as usual.
        assert!(
            cache.fill(&k, cache.begin_fill(), |_| ItemCache::whole(Some(
                br#"{"v":{"N":"2"}}"#
            )))
        );
    }

    #[test]
    fn a_stream_record_spares_entries_that_already_hold_its_result_or_something_newer() {
        let cache = cache();
        let k = key("own");
        let write = cache.begin_write(&k);
        cache.end_write(
            &k,
            write,
            WriteOutcome::Item(body(r#"{"v":{"N":"7"},"pk":{"S":"own"}}"#)),
        );
        let now = epoch_ms();
        // The record of that very write, with its new image (attribute order aside): kept.
        let image = serde_json::json!({"pk":{"S":"own"},"v":{"N":"7"}});
        let own = StreamVerdict::Kept { by_own_write: true };
        assert_eq!(
            cache.changed_elsewhere(&k, Some(Some(image)), Some(now), Reason::Stream),
            own
        );
        // A keys-only record of a change made well before the write: kept.
        assert_eq!(
            cache.changed_elsewhere(&k, None, Some(now - 10_000), Reason::Stream),
            own
        );
        assert!(full(&cache, &k).is_some());
        // A change at about the same time as the write, keys only: the order is unknown, dropped.
        assert_eq!(
            cache.changed_elsewhere(&k, None, Some(now), Reason::Stream),
            StreamVerdict::Dropped
        );
        assert_eq!(full(&cache, &k), None);

        // Entries filled by reads are never spared by time, only by content, and then not on
        // behalf of the query cache.
        let k = key("read");
        assert!(cache.fill(&k, cache.begin_fill(), |_| ItemCache::whole(None)));
        assert_eq!(
            cache.changed_elsewhere(&k, Some(None), Some(now), Reason::Stream), // deleted, and known absent
            StreamVerdict::Kept {
                by_own_write: false
            }
        );
        assert_eq!(
            cache.changed_elsewhere(&k, None, Some(now - 10_000), Reason::Stream),
            StreamVerdict::Dropped
        );
    }

    #[test]
    fn a_fill_during_a_running_write_loses() {
        let cache = cache();
        let k = key("a");
        let write = cache.begin_write(&k);
        let fill = cache.begin_fill(); // started after the write began, before it ended
        assert!(!cache.fill(&k, fill, |_| ItemCache::whole(Some(b"old"))));
        cache.end_write(&k, write, WriteOutcome::Item(body("new")));
        assert!(!cache.fill(&k, fill, |_| ItemCache::whole(Some(b"old"))));
        assert_eq!(full(&cache, &k), Some(body("new")));
    }

    #[test]
    fn a_fill_after_writes_settle_stores() {
        let cache = cache();
        let k = key("a");
        let write = cache.begin_write(&k);
        cache.end_write(&k, write, WriteOutcome::Unknown);
        let fill = cache.begin_fill();
        assert!(cache.fill(&k, fill, |_| ItemCache::whole(None)));
        assert_eq!(full(&cache, &k), Some(None));
    }

    #[test]
    fn overlapping_writes_invalidate_instead_of_guessing_the_winner() {
        let cache = cache();
        let k = key("a");
        let w1 = cache.begin_write(&k);
        let w2 = cache.begin_write(&k);
        cache.end_write(&k, w2, WriteOutcome::Item(body("two")));
        cache.end_write(&k, w1, WriteOutcome::Item(body("one")));
        assert_eq!(full(&cache, &k), None);
    }

    #[test]
    fn table_and_global_invalidations_drop_entries_and_fills() {
        let cache = cache();
        let k = key("a");
        let fill = cache.begin_fill();
        assert!(cache.fill(&k, fill, |_| ItemCache::whole(Some(b"x"))));
        cache.invalidate_table("t", Reason::TableChange);
        assert!(cache.get(&k).is_none());
        let fill = cache.begin_fill();
        cache.invalidate_all(Reason::Flush);
        assert!(!cache.fill(&k, fill, |_| ItemCache::whole(Some(b"x"))));
    }

    #[test]
    fn projections_live_under_their_item_and_die_with_it() {
        let cache = cache();
        let k = key("a");
        let p: Arc<str> = "v".into();
        let fill = cache.begin_fill();
        assert!(cache.fill(&k, fill, |e| ItemCache::with_projection(
            e,
            p.clone(),
            body("{\"v\":1}")
        )));
        let cached = cache.get(&k).unwrap();
        assert_eq!(cached.answer(Some("v")), Some(body("{\"v\":1}")));
        assert_eq!(cached.answer(None), None);
        let write = cache.begin_write(&k);
        cache.end_write(&k, write, WriteOutcome::Item(body("new")));
        let cached = cache.get(&k).unwrap();
        assert_eq!(
            cached.answer(Some("v")),
            None,
            "a write dropped the variant"
        );
    }

    #[test]
    fn a_whole_item_is_kept_as_its_ready_answer() {
        let whole = Whole::new(Some(br#"{"pk":{"S":"a"}}"#));
        let (answer, crc) = whole.answer();
        assert_eq!(&answer[..], br#"{"Item":{"pk":{"S":"a"}}}"#);
        assert_eq!(crc, crc32fast::hash(answer));
        assert_eq!(whole.item().unwrap(), &br#"{"pk":{"S":"a"}}"#[..]);
        let missing = Whole::new(None);
        assert_eq!(&missing.answer().0[..], b"{}");
        assert_eq!(missing.item(), None);
    }

    #[test]
    fn stamps_are_pruned_once_idle() {
        let mut cache = ItemCache::new(
            &CacheConfig::default(),
            Duration::ZERO,
            Arc::new(Metrics::new()),
        );
        cache.stamp_lifetime = Duration::ZERO;
        for i in 0..50_000 {
            let k = key(&i.to_string());
            let w = cache.begin_write(&k);
            cache.end_write(&k, w, WriteOutcome::Unknown);
        }
        let held: usize = cache
            .stamps
            .iter()
            .map(|s| s.lock().unwrap().stamps.len())
            .sum();
        assert!(held <= SHARDS * PRUNE_AT, "{held} stamps kept");
    }
}

#[cfg(test)]
mod stress {
    use super::*;
    use crate::wire::keys::{KeyValue, WireKey};
    use std::sync::atomic::AtomicU64;

    /// Writers store increasing versions; fillers race them with values read "upstream" at
    /// their ticket; readers check no read after an acknowledged write sees an older version.
    #[test]
    fn acknowledged_writes_are_never_undone_by_racing_fills() {
        let cache = Arc::new(ItemCache::new(
            &CacheConfig::default(),
            Duration::from_secs(10),
            Arc::new(Metrics::new()),
        ));
        let wire: WireKey = [("pk".to_string(), KeyValue::S("k".into()))].into();
        let key = ItemKey::new("t", &wire).unwrap();
        // The "upstream": the latest version applied.
        let upstream = Arc::new(AtomicU64::new(0));
        let acked = Arc::new(AtomicU64::new(0));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let version = |c: &Cached| -> Option<u64> {
            let item = c.whole.as_ref()?.item()?;
            std::str::from_utf8(&item).ok()?.parse().ok()
        };
        std::thread::scope(|s| {
            s.spawn(|| {
                for v in 1..=20_000u64 {
                    let t = cache.begin_write(&key);
                    upstream.store(v, Ordering::SeqCst);
                    cache.end_write(
                        &key,
                        t,
                        WriteOutcome::Item(Some(Bytes::from(v.to_string()))),
                    );
                    acked.store(v, Ordering::SeqCst);
                }
                done.store(true, Ordering::SeqCst);
            });
            for _ in 0..2 {
                s.spawn(|| {
                    while !done.load(Ordering::SeqCst) {
                        let t = cache.begin_fill();
                        let read = upstream.load(Ordering::SeqCst);
                        std::thread::yield_now();
                        cache.fill(&key, t, |_| {
                            ItemCache::whole(Some(read.to_string().as_bytes()))
                        });
                    }
                });
            }
            for _ in 0..2 {
                s.spawn(|| {
                    while !done.load(Ordering::SeqCst) {
                        let floor = acked.load(Ordering::SeqCst);
                        if let Some(seen) = cache.get(&key).as_ref().and_then(version) {
                            assert!(seen >= floor, "saw {seen} after {floor} was acknowledged");
                        }
                    }
                });
            }
        });
    }
}
