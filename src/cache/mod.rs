//! The cache layer: one API over the item cache, the query cache, single flight and write
//! tracking. Every rule that keeps the two caches in step lives here, so no caller can update
//! one and forget the other.
//!
//! - A **fill** stores what an upstream read returned, unless a write overlapped the read.
//! - A **write** brackets the upstream call: [`Caches::begin_write`] stamps every key it
//!   touches; [`Caches::end_write`] stores or drops each item and drops the query answers of
//!   each touched partition, whatever the outcome.
//! - **Invalidation** by key (a stream record), by table and of everything drops item entries
//!   and query answers together.
//! - Every write and every invalidation puts what it touched in the **consistency window**:
//!   a fill that begins inside it is told to read strongly consistently (or, for a global
//!   secondary index, not to cache), so a DynamoDB replica's lag never becomes a TTL's worth of
//!   stale answers. Fills learn how to read from [`Caches::begin_item_fill`] and
//!   [`Caches::begin_query_fill`]; no caller decides it.
//!
//! The pieces: [`items`] (the item cache and its freshness rules) over [`store`] (the compact,
//! byte-bounded map), [`queries`] (Query and Scan answers), [`flight`] (concurrent misses
//! share one upstream read), [`window`] (what recent writes touched) and [`hot_keys`] (the
//! most read keys, sampled, for other replicas' warm starts).

pub(crate) mod compact;
mod flight;
mod hot_keys;
mod items;
mod queries;
mod shapes;
mod store;
mod window;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::CacheConfig;
use crate::error::ProxyError;
use crate::fleet::{Fleet, Shared};
use crate::metrics::{CacheName, Metrics, Reason};
use crate::upstream::UpstreamResponse;
use crate::wire::keys::{ItemKey, KeyValue};

pub use hot_keys::{HotKey, HotKeys};

/// See `fuzzing::cached_item`.
#[doc(hidden)]
pub fn fuzz_compact(data: &[u8]) {
    let mut encoded = Vec::new();
    if compact::encode(data, &mut encoded) {
        let mut text = Vec::new();
        compact::render(&encoded, &mut text).expect("renders what it encoded");
        assert_eq!(text, data, "the compact form changed the item");
    }
    let _ = compact::render(data, &mut Vec::new());
}
use items::FillTicket;
pub use items::{Cached, ItemCache, StreamVerdict, WriteOutcome};
use queries::{QueryCache, Watch};
pub use queries::{QueryEntry, Scope};
pub use window::Read;

/// The shared result of one upstream read for a single-flight group.
pub type Fetched = Arc<Result<UpstreamResponse, ProxyError>>;

/// What [`Caches::read_item`] found: the fleet's shared tier held the item, or DynamoDB
/// answered.
#[derive(Clone)]
pub enum ItemRead {
    /// The shared tier's entry: the whole item (`None`: it does not exist).
    Shared(Option<Bytes>),
    /// DynamoDB's answer.
    Fetched(Fetched),
}

/// What a caller asked of an item, beyond its key: requests that differ in what the answer
/// contains never share one upstream read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Asked {
    /// The projection (canonical), `None` for the whole item.
    pub projection: Option<Arc<str>>,
    /// Whether, and how, consumed capacity is reported.
    pub capacity: crate::wire::request::Capacity,
}

/// Key of a single-flight group: the item, what was asked of it, and the key's write stamp
/// (requests that have seen different writes never share one).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FlightKey {
    key: ItemKey,
    asked: Asked,
    stamp: u64,
}

/// What a write touches: the item's cache key, and its table and partition for the query
/// cache (`None` partition: unknown, the whole table's queries are dropped).
#[derive(Debug, Clone)]
pub struct Touched {
    pub key: ItemKey,
    pub table: String,
    pub partition: Option<KeyValue>,
}

/// Writes begun by [`Caches::begin_write`]; must be handed back to [`Caches::end_write`].
#[must_use = "a write left open keeps its keys from ever being filled"]
pub struct Writes {
    open: Vec<(Touched, items::WriteTicket)>,
}

/// An upstream item read that may fill the cache: when it began, and how it must read.
#[derive(Debug, Clone, Copy)]
pub struct ItemFill {
    ticket: FillTicket,
    /// [`Read::Eventual`] or [`Read::Strong`].
    pub read: Read,
}

/// An upstream Query or Scan that may fill the cache: what it watches, and how it must read.
#[derive(Debug, Clone, Copy)]
pub struct QueryFill {
    watch: Watch,
    pub read: Read,
}

/// The item cache, the query cache and the reads in flight, kept in step.
pub struct Caches {
    items: ItemCache,
    queries: QueryCache,
    /// Item reads in flight, so concurrent misses share one.
    flights: flight::Flights<FlightKey, ItemRead>,
    /// What recent writes touched.
    window: window::Window,
    /// The fleet's shared tier and invalidations, when this node is one of a fleet.
    fleet: Option<Arc<Fleet>>,
    /// Per-table item TTLs, for shared entries.
    config: CacheConfig,
    metrics: Arc<Metrics>,
}

impl Caches {
    pub fn new(config: &CacheConfig, upstream_timeout: Duration, metrics: Arc<Metrics>) -> Caches {
        Caches::with_fleet(config, upstream_timeout, metrics, None)
    }

    /// Caches whose items are shared with `fleet` (see [`crate::fleet`]).
    pub fn with_fleet(
        config: &CacheConfig,
        upstream_timeout: Duration,
        metrics: Arc<Metrics>,
        fleet: Option<Arc<Fleet>>,
    ) -> Caches {
        Caches {
            items: ItemCache::new(config, upstream_timeout, metrics.clone()),
            queries: QueryCache::new(config, metrics.clone()),
            flights: flight::Flights::new(),
            window: window::Window::new(Duration::from_millis(config.consistency_window_ms)),
            fleet,
            config: config.clone(),
            metrics,
        }
    }

    /// The fleet this node belongs to, if any.
    pub fn fleet(&self) -> Option<&Arc<Fleet>> {
        self.fleet.as_ref()
    }

    /// Whether this node's memory may answer: always alone; in a fleet, only while it is sure
    /// to hear the other nodes' writes.
    fn memory_serves(&self) -> bool {
        self.fleet.as_ref().is_none_or(|f| f.memory_serves())
    }

    // -- reads --------------------------------------------------------------------------------

    /// Whether `table`'s items are cached at all (an item TTL configured).
    pub fn caches_items(&self, table: &str) -> bool {
        self.items.caches(table)
    }

    /// Whether `table`'s Query and Scan answers are cached at all.
    pub fn caches_queries(&self, table: &str) -> bool {
        self.queries.ttl(table).is_some()
    }

    /// The entry for `key`, if fresh.
    pub fn item(&self, key: &ItemKey) -> Option<Cached> {
        if !self.memory_serves() {
            return None;
        }
        self.items.get(key)
    }

    /// The entry for `key` within its stale grace (stale-on-error).
    pub fn stale_item(&self, key: &ItemKey) -> Option<Cached> {
        self.items.get_stale(key)
    }

    /// The cached answer for a canonical Query or Scan, if fresh.
    pub fn query(&self, key: &Arc<[u8]>) -> Option<QueryEntry> {
        if !self.memory_serves() {
            return None;
        }
        self.queries.get(key)
    }

    /// The cached answer within its stale grace (stale-on-error).
    pub fn stale_query(&self, key: &Arc<[u8]>) -> Option<QueryEntry> {
        self.queries.get_stale(key)
    }

    /// Whether DynamoDB has accepted `projection` on `table` before.
    pub fn knows_projection(&self, table: &str, projection: &str) -> bool {
        self.items.knows_projection(table, projection)
    }

    /// Reads `key` once for every concurrent caller that asked the same of it and has seen
    /// the same writes (the key's write stamp): from the fleet's shared tier when it holds the
    /// whole item, else upstream, and fills memory (and the shared tier) with what the read
    /// learned. `fetch` is told how to read (after a recent write: strongly), and returns the
    /// upstream's answer with what the item turned out to be (`Some(None)`: not found; `None`:
    /// nothing to store). `true` when this caller shared another's read.
    pub async fn read_item<F, Fut>(&self, key: &ItemKey, asked: Asked, fetch: F) -> (ItemRead, bool)
    where
        F: FnOnce(Read) -> Fut,
        Fut: Future<Output = (Fetched, Option<Option<Bytes>>)>,
    {
        let flight = FlightKey {
            key: key.clone(),
            stamp: self.items.write_stamp(key),
            asked,
        };
        let projection = flight.asked.projection.clone();
        self.flights
            .run(&flight, || async {
                let mut fill = self.begin_item_fill(key);
                // The shared tier holds whole items only.
                let shared = match &self.fleet {
                    Some(fleet) if projection.is_none() => Some(fleet.lookup(key).await),
                    _ => None,
                };
                let lease = match shared {
                    Some(Shared::Hit(item)) => {
                        self.fill_item(key, fill, None, item.clone());
                        return ItemRead::Shared(item);
                    }
                    Some(Shared::Lease(lease)) => {
                        // What fills the shared tier serves the whole fleet for the TTL, and
                        // the tombstone that would mark a recent write may have been lost
                        // with the engine's data (a restart, a failover): always strongly.
                        fill.read = Read::Strong;
                        Some(lease)
                    }
                    Some(Shared::Read { strong }) => {
                        if strong && fill.read == Read::Eventual {
                            fill.read = Read::Strong;
                        }
                        None
                    }
                    None => None,
                };
                let (fetched, learned) = fetch(fill.read).await;
                if let Some(item) = learned {
                    if let (Some(lease), Some(fleet), Some(ttl)) =
                        (lease, &self.fleet, self.config.item_ttl(key.table()))
                    {
                        fleet.fill(key, lease, item.as_deref(), ttl).await;
                    }
                    self.fill_item(key, fill, projection, item);
                }
                ItemRead::Fetched(fetched)
            })
            .await
    }

    // -- fills --------------------------------------------------------------------------------

    /// Marks the start of an upstream read of `key` whose answer may fill the cache, and says
    /// how it must read: strongly consistently if a write within the window touched the key.
    pub fn begin_item_fill(&self, key: &ItemKey) -> ItemFill {
        // The ticket first: a write that ends after it makes the fill lose; one that ended
        // before it has marked the window (see `window`).
        let ticket = self.items.begin_fill();
        let read = self.window.item(key);
        self.count_fill(CacheName::Item, read);
        ItemFill { ticket, read }
    }

    /// Stores what an item read returned: the whole item (`projection` `None`) or one
    /// projection of it (`item` `None` = not found). Skipped if a write overlapped the read.
    pub fn fill_item(
        &self,
        key: &ItemKey,
        fill: ItemFill,
        projection: Option<Arc<str>>,
        item: Option<Bytes>,
    ) -> bool {
        if let Some(projection) = &projection {
            self.items.learn_projection(key.table(), projection);
        }
        self.items.fill_answer(key, fill.ticket, projection, item)
    }

    /// Marks the start of an upstream Query or Scan of `table` whose answer depends on
    /// `scope`, and says how it must read: strongly consistently if a write within the window
    /// may have changed it; for a global secondary index, which cannot be read so, not cached.
    pub fn begin_query_fill(&self, table: &str, scope: &Scope) -> QueryFill {
        let watch = self.queries.begin(table, scope);
        let read = self.window.query(table, scope);
        self.count_fill(CacheName::Query, read);
        QueryFill { watch, read }
    }

    /// Stores a Query or Scan answer, unless what it depends on changed since the fill began
    /// or the fill was not to be cached.
    pub fn fill_query(&self, key: Arc<[u8]>, table: &str, fill: QueryFill, body: Bytes) -> bool {
        fill.read != Read::Uncached && self.queries.fill(key, table, fill.watch, body)
    }

    fn count_fill(&self, cache: CacheName, read: Read) {
        self.metrics
            .fill_reads
            .with_label_values(&[cache.as_str(), read.label()])
            .inc();
    }

    // -- writes -------------------------------------------------------------------------------

    /// Marks the start of a write to every item in `touched`: from now until
    /// [`Caches::end_write`], no read that started earlier can fill them.
    pub fn begin_write(&self, touched: Vec<Touched>) -> Writes {
        let open = touched
            .into_iter()
            .map(|t| {
                let ticket = self.items.begin_write(&t.key);
                (t, ticket)
            })
            .collect();
        Writes { open }
    }

    /// Ends the writes: each item becomes what its outcome says (in the order they were
    /// begun; missing outcomes count as failed), and the query answers of every touched
    /// partition are dropped whatever the outcome (a timed-out write may still have happened).
    ///
    /// In a fleet, the shared entries are then tombstoned and the other nodes told, before
    /// this returns (and so before the caller is answered): see [`crate::fleet`].
    pub async fn end_write(&self, writes: Writes, outcomes: Vec<WriteOutcome>) {
        // The window first: a fill that begins after the write ends must find it there.
        for (touched, _) in &writes.open {
            self.window.wrote(&touched.key, touched.partition.as_ref());
        }
        // Before memory learns of the writes: until the tombstones land, no read here may
        // take the shared entries, which still hold what came before.
        let _writing = self
            .fleet
            .as_ref()
            .map(|fleet| fleet.writing(writes.open.iter().map(|(t, _)| t.key.clone()).collect()));
        let mut outcomes = outcomes.into_iter();
        let mut changed = Vec::new();
        for (touched, ticket) in writes.open {
            let outcome = outcomes.next().unwrap_or(WriteOutcome::Failed);
            self.items.end_write(&touched.key, ticket, outcome);
            self.queries
                .wrote(&touched.table, touched.partition.as_ref());
            if self.fleet.is_some() {
                changed.push((touched.key, touched.partition));
            }
        }
        if let Some(fleet) = &self.fleet {
            fleet.wrote(changed).await;
        }
    }

    // -- invalidation -------------------------------------------------------------------------

    /// A write that did not go through this proxy changed `key` (a stream record). The item
    /// entry stays only if it already holds what the item became (`now_is`), or was written
    /// here clearly later; the partition's query answers are dropped unless the proxy's own
    /// write explains the record. In a fleet (where one node follows each stream) the shared
    /// entry is tombstoned and every node told, as for a write.
    pub async fn changed_elsewhere(
        &self,
        key: &ItemKey,
        partition: Option<&KeyValue>,
        now_is: Option<Option<serde_json::Value>>,
        changed_ms: Option<u64>,
    ) -> StreamVerdict {
        self.window.wrote(key, partition);
        let _writing = self
            .fleet
            .as_ref()
            .map(|fleet| fleet.writing(vec![key.clone()]));
        let verdict = self
            .items
            .changed_elsewhere(key, now_is, changed_ms, Reason::Stream);
        if !matches!(verdict, StreamVerdict::Kept { by_own_write: true }) {
            self.queries.changed(key.table(), partition, Reason::Stream);
        }
        if let Some(fleet) = &self.fleet {
            fleet.wrote(vec![(key.clone(), partition.cloned())]).await;
        }
        verdict
    }

    /// Another node of the fleet wrote `key` (in `partition`, when known): its entry and the
    /// partition's query answers go, and fills that began before now lose.
    pub fn changed_in_fleet(&self, key: &ItemKey, partition: Option<&KeyValue>) {
        self.window.wrote(key, partition);
        self.items.changed_elsewhere(key, None, None, Reason::Fleet);
        self.queries.changed(key.table(), partition, Reason::Fleet);
    }

    /// Drops every item and query answer of `table`, counted under `reason`, here and (in a
    /// fleet) in the shared tier and on every node.
    ///
    /// The shared tier goes first. A read here that takes a shared entry from before the flush
    /// read the generation before it moved, so it began before memory is dropped below, and
    /// its fill of memory loses; a read that begins later reads the new generation. (Memory
    /// first would let a read begin between the two, take the old shared entry and fill memory
    /// with it after the drop.)
    pub async fn invalidate_table(&self, table: &str, reason: Reason) {
        if let Some(fleet) = &self.fleet {
            fleet.flush(Some(table)).await;
        }
        self.invalidate_table_here(table, reason);
    }

    /// Drops everything, counted under `reason`, here and (in a fleet) everywhere; the shared
    /// tier first, as in [`Caches::invalidate_table`].
    pub async fn invalidate_all(&self, reason: Reason) {
        if let Some(fleet) = &self.fleet {
            fleet.flush(None).await;
        }
        self.invalidate_all_here(reason);
    }

    /// Drops every item and query answer of `table` from this node's memory.
    pub fn invalidate_table_here(&self, table: &str, reason: Reason) {
        self.window.dropped_table(table);
        self.items.invalidate_table(table, reason);
        self.queries.invalidate_table(table, reason);
    }

    /// Drops everything from this node's memory.
    pub fn invalidate_all_here(&self, reason: Reason) {
        self.window.dropped_all();
        self.items.invalidate_all(reason);
        self.queries.invalidate_all(reason);
    }

    // -- what is held -------------------------------------------------------------------------

    /// Entries and weighted bytes of `cache`.
    pub fn usage(&self, cache: CacheName) -> (u64, u64) {
        match cache {
            CacheName::Item => self.items.usage(),
            CacheName::Query => self.queries.usage(),
        }
    }

    /// Calls `visit(table, weighted bytes)` for every live entry of `cache`.
    pub fn for_each(&self, cache: CacheName, visit: impl FnMut(&str, u64)) {
        match cache {
            CacheName::Item => self.items.for_each_entry(visit),
            CacheName::Query => self.queries.for_each_entry(visit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::keys::WireKey;

    fn caches(window_ms: u64) -> Caches {
        let config = CacheConfig {
            consistency_window_ms: window_ms,
            ..CacheConfig::default()
        };
        Caches::new(&config, Duration::from_secs(1), Arc::new(Metrics::new()))
    }

    fn key(table: &str, pk: &str) -> (ItemKey, KeyValue) {
        let wire: WireKey = serde_json::from_value(serde_json::json!({"pk": {"S": pk}})).unwrap();
        let partition = wire["pk"].clone();
        (ItemKey::new(table, &wire).unwrap(), partition)
    }

    fn partition(pk: &str) -> Scope {
        Scope::Partition(crate::wire::keys::canonical_value(&key("t", pk).1).unwrap())
    }

    /// How fills of a key, its partition and its table's scans and global index read now.
    fn reads(caches: &Caches, pk: &str) -> [Read; 4] {
        let (k, _) = key("t", pk);
        [
            caches.begin_item_fill(&k).read,
            caches.begin_query_fill("t", &partition(pk)).read,
            caches.begin_query_fill("t", &Scope::Table).read,
            caches.begin_query_fill("t", &Scope::GlobalIndex).read,
        ]
    }

    const RACING: [Read; 4] = [Read::Strong, Read::Strong, Read::Strong, Read::Uncached];
    const QUIET: [Read; 4] = [Read::Eventual; 4];

    #[test]
    fn every_path_that_drops_entries_puts_what_it_touched_in_the_window() {
        // A write through the proxy, whatever its outcome.
        let c = caches(60_000);
        assert_eq!(reads(&c, "a"), QUIET);
        let (k, p) = key("t", "a");
        let writes = c.begin_write(vec![Touched {
            key: k,
            table: "t".into(),
            partition: Some(p),
        }]);
        futures_util::FutureExt::now_or_never(c.end_write(writes, vec![WriteOutcome::Item(None)]))
            .expect("no fleet: nothing to wait for");
        assert_eq!(reads(&c, "a"), RACING);
        // Another key's item and partition are not affected; its table's scans are.
        assert_eq!(
            reads(&c, "b"),
            [Read::Eventual, Read::Eventual, Read::Strong, Read::Uncached]
        );

        // A stream record.
        let c = caches(60_000);
        let (k, p) = key("t", "a");
        futures_util::FutureExt::now_or_never(c.changed_elsewhere(&k, Some(&p), None, None))
            .expect("no fleet: nothing to wait for");
        assert_eq!(reads(&c, "a"), RACING);

        // A table dropped (flush, table change, a write the proxy cannot attribute): every
        // read of it, whatever the key.
        let c = caches(60_000);
        c.invalidate_table_here("t", Reason::Flush);
        assert_eq!(reads(&c, "z"), RACING);
        assert_eq!(
            c.begin_item_fill(&key("u", "z").0).read,
            Read::Eventual,
            "another table"
        );

        // Everything dropped.
        let c = caches(60_000);
        c.invalidate_all_here(Reason::Flush);
        assert_eq!(c.begin_item_fill(&key("u", "z").0).read, Read::Strong);
    }

    #[test]
    fn the_window_closes_and_fills_read_as_asked_again() {
        let c = caches(30);
        c.invalidate_all_here(Reason::Flush);
        assert_eq!(reads(&c, "a"), RACING);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(reads(&c, "a"), QUIET);
    }

    #[test]
    fn an_uncached_fill_is_never_stored() {
        let c = caches(60_000);
        c.invalidate_table_here("t", Reason::Write);
        let fill = c.begin_query_fill("t", &Scope::GlobalIndex);
        assert_eq!(fill.read, Read::Uncached);
        let key: Arc<[u8]> = Arc::from(&b"index query"[..]);
        assert!(!c.fill_query(key.clone(), "t", fill, Bytes::from_static(b"{}")));
        assert!(c.query(&key).is_none());
        // Once the window has closed (here: a cache without one), it is stored.
        let c = caches(0);
        let fill = c.begin_query_fill("t", &Scope::GlobalIndex);
        assert!(c.fill_query(key.clone(), "t", fill, Bytes::from_static(b"{}")));
    }

    #[test]
    fn fills_are_counted_by_how_they_read() {
        let c = caches(60_000);
        reads(&c, "a");
        c.invalidate_table_here("t", Reason::Write);
        reads(&c, "a");
        let count =
            |cache: &str, read: &str| c.metrics.fill_reads.with_label_values(&[cache, read]).get();
        assert_eq!(count("item", "eventual"), 1);
        assert_eq!(count("item", "strong"), 1);
        assert_eq!(count("query", "eventual"), 3);
        assert_eq!(count("query", "strong"), 2);
        assert_eq!(count("query", "uncached"), 1);
    }
}
