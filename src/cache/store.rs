//! Where the item cache keeps its entries: a byte-bounded hash map from canonical key bytes to
//! a ready answer, laid out so that an entry costs little more than the bytes it holds.
//!
//! - **One allocation per entry.** The key and the answer share one reference-counted buffer,
//!   held by a thin (one-word) pointer; a hit hands the answer out as a `Bytes` that borrows
//!   it, so nothing is copied.
//! - **A 40-byte slot of metadata**, in a per-shard slab, indexed by a `hashbrown` table of
//!   4-byte slot numbers. The rare projected answers live beside the slab, not in every slot.
//! - **CLOCK eviction.** A read sets its slot's referenced bit (under the shared lock: the bit is
//!   atomic); when a shard is over its budget, the hand sweeps the slab, clearing bits, and
//!   evicts the first entry that was not read since the last sweep, or that has expired.
//!   Expired entries are also reaped a few slots at a time as entries are added, so dead entries
//!   do not wait for memory pressure to go.
//!
//! The store knows nothing of freshness rules beyond time: write stamps and generations are the
//! item cache's business (see `items.rs`).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashTable;
use prometheus::IntCounter;
use triomphe::ThinArc;

use crate::metrics::{CacheName, Metrics};

/// Key bytes then answer bytes, behind one word.
type Data = ThinArc<(), u8>;

/// Answers to projected reads of one item, by projection; `None` = no such item.
pub(super) type Projections = Arc<[(Arc<str>, Option<Bytes>)]>;

/// What an entry costs in resident memory beyond its key, answer and projections: its slot,
/// its index bucket, the allocation's reference counts and size-class rounding, slab growth.
/// Measured, not guessed: `cargo bench --bench cache_memory` (a million 400-byte items) grows
/// resident memory by about 104 bytes an entry beyond them; rounded up.
pub(crate) const ENTRY_OVERHEAD: usize = 112;
/// What a projected answer costs beyond its bytes (its tuple and `Arc<str>` header).
const PROJECTION_OVERHEAD: usize = 48;
/// At most this many shards; fewer for small budgets, so that one large item still fits a shard.
const MAX_SHARDS: usize = 64;
/// A shard's smallest budget when there are several.
const MIN_SHARD_BYTES: u64 = 1 << 20;
/// Slots looked at for expired entries each time an entry is added.
const REAP_STEP: usize = 2;

/// An entry's times and provenance, as the item cache sets them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Meta {
    /// When the entry stops being fresh, in ms on the store's clock ([`Store::now_ms`]);
    /// `u64::MAX` = never. It stays in memory for the store's grace beyond this.
    pub fresh_until: u64,
    /// The item cache's clock value when the read or write behind the entry began.
    pub as_of: u64,
    /// When the write through this proxy that stored the entry started (seconds since the
    /// epoch); 0 for entries filled by reads.
    pub written_s: u32,
    /// CRC32 of the answer.
    pub crc: u32,
}

/// One entry, as read: shares the stored bytes.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    data: Data,
    key_len: usize,
    pub meta: Meta,
    pub projections: Option<Projections>,
}

impl Entry {
    /// The stored answer, if the entry holds one (it may hold only projections).
    pub(super) fn answer(&self) -> Option<Bytes> {
        (self.data.slice.len() > self.key_len).then(|| {
            Bytes::from_owner(Tail {
                data: self.data.clone(),
                start: self.key_len,
            })
        })
    }
}

/// The bytes of an entry after its key: lets a `Bytes` borrow the entry's allocation.
struct Tail {
    data: Data,
    start: usize,
}

impl AsRef<[u8]> for Tail {
    fn as_ref(&self) -> &[u8] {
        &self.data.slice[self.start..]
    }
}

#[derive(Default)]
struct Slot {
    /// `None` = a free slot.
    data: Option<Data>,
    meta: Meta,
    key_len: u32,
    /// Read since the hand last passed.
    referenced: AtomicBool,
    /// Whether the shard's side table holds projections for this slot.
    has_projections: bool,
}

/// Slots come in chunks of this many, so a growing shard never moves (or leaves behind) the
/// slots it has: a doubling vector would copy them and free the old array, which the allocator
/// may hold on to for a while.
const SLAB_CHUNK: usize = 256;

/// A shard's slots, in chunks.
#[derive(Default)]
struct Slab {
    chunks: Vec<Box<[Slot]>>,
    len: usize,
}

impl Slab {
    fn len(&self) -> usize {
        self.len
    }

    /// A new empty slot at the end; its number.
    fn push(&mut self) -> u32 {
        if self.len == self.chunks.len() * SLAB_CHUNK {
            self.chunks
                .push((0..SLAB_CHUNK).map(|_| Slot::default()).collect());
        }
        self.len += 1;
        (self.len - 1) as u32
    }
}

impl std::ops::Index<usize> for Slab {
    type Output = Slot;

    fn index(&self, i: usize) -> &Slot {
        debug_assert!(i < self.len);
        &self.chunks[i / SLAB_CHUNK][i % SLAB_CHUNK]
    }
}

impl std::ops::IndexMut<usize> for Slab {
    fn index_mut(&mut self, i: usize) -> &mut Slot {
        debug_assert!(i < self.len);
        &mut self.chunks[i / SLAB_CHUNK][i % SLAB_CHUNK]
    }
}

// Every cached item pays for a slot: keep it small.
const _: () = assert!(std::mem::size_of::<Slot>() == 40);

impl Slot {
    fn key(&self) -> &[u8] {
        self.data
            .as_ref()
            .map_or(&[], |d| &d.slice[..self.key_len as usize])
    }
}

#[derive(Default)]
struct Shard {
    /// Slot numbers, by the hash of the slot's key.
    index: HashTable<u32>,
    slots: Slab,
    /// Free slot numbers.
    free: Vec<u32>,
    projections: HashMap<u32, Projections>,
    /// The CLOCK hand: the next slot it looks at.
    hand: usize,
    /// Weighed bytes of the live entries.
    bytes: u64,
    live: u64,
}

/// Why the store dropped an entry on its own.
#[derive(Clone, Copy)]
enum Cause {
    Size,
    Expired,
}

/// The store; see the module documentation.
pub(super) struct Store {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
    shard_budget: u64,
    /// How long past `fresh_until` an entry stays readable (by `get`) before it expires.
    grace_ms: u64,
    started: Instant,
    evicted_size: IntCounter,
    evicted_expired: IntCounter,
    removed: IntCounter,
}

impl Store {
    /// A store holding at most `max_bytes` weighed bytes, whose entries stay `grace` past their
    /// freshness. Evictions are counted in `metrics` under `cache`.
    pub(super) fn new(
        max_bytes: u64,
        grace: Duration,
        metrics: &Metrics,
        cache: CacheName,
    ) -> Store {
        let shards = (max_bytes / MIN_SHARD_BYTES)
            .clamp(1, MAX_SHARDS as u64)
            .next_power_of_two()
            .min(MAX_SHARDS as u64) as usize;
        let counter = |cause| {
            metrics
                .evictions
                .with_label_values(&[cache.as_str(), cause])
        };
        Store {
            shards: (0..shards).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
            shard_budget: max_bytes / shards as u64,
            grace_ms: grace.as_millis().min(u64::MAX as u128) as u64,
            started: Instant::now(),
            evicted_size: counter("size"),
            evicted_expired: counter("expired"),
            removed: counter("explicit"),
        }
    }

    /// The hash of `key`, for the other calls.
    pub(super) fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Now, on the store's clock (ms since it was made).
    pub(super) fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// `duration` from now on the store's clock (`None` = never).
    pub(super) fn deadline(&self, duration: Option<Duration>) -> u64 {
        duration.map_or(u64::MAX, |d| {
            self.now_ms()
                .saturating_add(d.as_millis().min(u64::MAX as u128) as u64)
        })
    }

    /// The entry for `key`, unless there is none or it has expired.
    pub(super) fn get(&self, hash: u64, key: &[u8]) -> Option<Entry> {
        let now = self.now_ms();
        let shard = self.shard(hash).read().expect("lock poisoned");
        let i = *shard
            .index
            .find(hash, |&i| shard.slots[i as usize].key() == key)?;
        let slot = &shard.slots[i as usize];
        if self.expired(&slot.meta, now) {
            return None;
        }
        if !slot.referenced.load(Ordering::Relaxed) {
            slot.referenced.store(true, Ordering::Relaxed);
        }
        Some(Entry {
            data: slot.data.clone()?,
            key_len: slot.key_len as usize,
            meta: slot.meta,
            projections: slot
                .has_projections
                .then(|| shard.projections.get(&i).cloned())
                .flatten(),
        })
    }

    /// Stores `answer` (if any) and `projections` (if any) under `key`, replacing what was
    /// there. An entry larger than a shard's whole budget is not kept (and evicts the old one).
    pub(super) fn insert(
        &self,
        hash: u64,
        key: &[u8],
        answer: Option<&[u8]>,
        meta: Meta,
        projections: Option<Projections>,
    ) {
        let answer = answer.unwrap_or_default();
        let projections = projections.filter(|p| !p.is_empty());
        let weight =
            weight(key.len() + answer.len(), projections.as_ref()).min(u64::MAX as usize) as u64;
        if weight > self.shard_budget {
            if self.remove_quietly(hash, key) {
                self.evicted_size.inc();
            }
            return;
        }
        let mut bytes = Vec::with_capacity(key.len() + answer.len());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(answer);
        let data = Data::from_header_and_slice((), &bytes);
        let now = self.now_ms();
        let mut guard = self.shard(hash).write().expect("lock poisoned");
        let shard = &mut *guard;
        // A replaced entry keeps its slot and index bucket; it is emptied first, so the hand
        // passes over it while making room.
        let existing = shard
            .index
            .find(hash, |&i| shard.slots[i as usize].key() == key)
            .copied();
        if let Some(i) = existing {
            shard.release(i);
        }
        while shard.bytes + weight > self.shard_budget {
            match self.evict_one(shard, now) {
                Some(Cause::Size) => self.evicted_size.inc(),
                Some(Cause::Expired) => self.evicted_expired.inc(),
                None => break,
            }
        }
        let i = existing.unwrap_or_else(|| shard.free.pop().unwrap_or_else(|| shard.slots.push()));
        shard.fill(i, data, key.len(), meta, projections, weight);
        if existing.is_none() {
            let (index, slots, hasher) = (&mut shard.index, &shard.slots, &self.hasher);
            index.insert_unique(hash, i, |&j| hasher.hash_one(slots[j as usize].key()));
        }
        self.reap(shard, now);
    }

    /// Drops the entry for `key`, if any (counted as an explicit removal).
    pub(super) fn remove(&self, hash: u64, key: &[u8]) {
        if self.remove_quietly(hash, key) {
            self.removed.inc();
        }
    }

    /// Calls `visit(key, weighed bytes)` for every entry in memory (O(entries); for `/cache`).
    pub(super) fn for_each(&self, mut visit: impl FnMut(&[u8], u64)) {
        for shard in &self.shards {
            let shard = shard.read().expect("lock poisoned");
            for i in 0..shard.slots.len() {
                if let Some(data) = &shard.slots[i].data {
                    visit(
                        shard.slots[i].key(),
                        shard.weight(i as u32, data.slice.len()),
                    );
                }
            }
        }
    }

    /// Entries and weighed bytes in memory now.
    pub(super) fn usage(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(entries, bytes), shard| {
            let shard = shard.read().expect("lock poisoned");
            (entries + shard.live, bytes + shard.bytes)
        })
    }

    fn remove_quietly(&self, hash: u64, key: &[u8]) -> bool {
        let mut guard = self.shard(hash).write().expect("lock poisoned");
        let shard = &mut *guard;
        match shard
            .index
            .find_entry(hash, |&i| shard.slots[i as usize].key() == key)
        {
            Ok(found) => {
                let (i, _) = found.remove();
                shard.release(i);
                shard.free.push(i);
                true
            }
            Err(_) => false,
        }
    }

    /// Moves the hand until it evicts one entry; `None` if the shard is empty.
    fn evict_one(&self, shard: &mut Shard, now: u64) -> Option<Cause> {
        // Two turns at most: the first may only clear referenced bits.
        for _ in 0..2 * shard.slots.len() {
            let i = shard.advance();
            let slot = &shard.slots[i];
            if slot.data.is_none() {
                continue;
            }
            let cause = if self.expired(&slot.meta, now) {
                Cause::Expired
            } else if slot.referenced.swap(false, Ordering::Relaxed) {
                continue;
            } else {
                Cause::Size
            };
            self.drop_slot(shard, i as u32);
            return Some(cause);
        }
        None
    }

    /// Looks at the next few slots and drops those that have expired.
    fn reap(&self, shard: &mut Shard, now: u64) {
        for _ in 0..REAP_STEP.min(shard.slots.len()) {
            let i = shard.advance();
            if shard.slots[i].data.is_some() && self.expired(&shard.slots[i].meta, now) {
                self.drop_slot(shard, i as u32);
                self.evicted_expired.inc();
            }
        }
    }

    /// Drops the entry in slot `i`, index and all.
    fn drop_slot(&self, shard: &mut Shard, i: u32) {
        let hash = self.hasher.hash_one(shard.slots[i as usize].key());
        if let Ok(found) = shard.index.find_entry(hash, |&j| j == i) {
            found.remove();
        }
        shard.release(i);
        shard.free.push(i);
    }

    fn expired(&self, meta: &Meta, now: u64) -> bool {
        now >= meta.fresh_until.saturating_add(self.grace_ms)
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        // Bits the hash table uses for neither its bucket (low bits) nor its tag (top 7).
        &self.shards[(hash >> 48) as usize & (self.shards.len() - 1)]
    }
}

impl Shard {
    /// The slot under the hand, moving the hand on.
    fn advance(&mut self) -> usize {
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
        self.hand += 1;
        self.hand - 1
    }

    /// Puts an entry into the (empty) slot `i`.
    fn fill(
        &mut self,
        i: u32,
        data: Data,
        key_len: usize,
        meta: Meta,
        projections: Option<Projections>,
        weight: u64,
    ) {
        let slot = &mut self.slots[i as usize];
        debug_assert!(slot.data.is_none());
        slot.key_len = key_len as u32;
        slot.data = Some(data);
        slot.meta = meta;
        slot.referenced.store(false, Ordering::Relaxed);
        slot.has_projections = projections.is_some();
        if let Some(projections) = projections {
            self.projections.insert(i, projections);
        }
        self.bytes += weight;
        self.live += 1;
    }

    /// Empties slot `i` (leaving it in the index and off the free list: the caller's choice).
    fn release(&mut self, i: u32) {
        let Some(data) = &self.slots[i as usize].data else {
            return;
        };
        let weight = self.weight(i, data.slice.len());
        let slot = &mut self.slots[i as usize];
        slot.data = None;
        if std::mem::take(&mut slot.has_projections) {
            self.projections.remove(&i);
        }
        self.bytes -= weight;
        self.live -= 1;
    }

    fn weight(&self, i: u32, data_len: usize) -> u64 {
        let projections = self.slots[i as usize]
            .has_projections
            .then(|| self.projections.get(&i))
            .flatten();
        weight(data_len, projections) as u64
    }
}

fn weight(data_len: usize, projections: Option<&Projections>) -> usize {
    let projections: usize = projections.map_or(0, |p| {
        p.iter()
            .map(|(name, answer)| name.len() + answer.as_ref().map_or(0, Bytes::len))
            .sum::<usize>()
            + p.len() * PROJECTION_OVERHEAD
    });
    data_len + projections + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(fresh_until: u64) -> Meta {
        Meta {
            fresh_until,
            as_of: 2,
            written_s: 3,
            crc: 4,
        }
    }

    fn put(store: &Store, key: &str, answer: &str) {
        let key = key.as_bytes();
        store.insert(
            store.hash(key),
            key,
            Some(answer.as_bytes()),
            meta(u64::MAX),
            None,
        );
    }

    fn answer(store: &Store, key: &str) -> Option<Bytes> {
        let key = key.as_bytes();
        store.get(store.hash(key), key).and_then(|e| e.answer())
    }

    fn evictions(metrics: &Metrics, cause: &str) -> u64 {
        metrics.evictions.with_label_values(&["item", cause]).get()
    }

    #[test]
    fn entries_are_stored_replaced_and_removed_by_exact_key() {
        let metrics = Metrics::new();
        let store = Store::new(1 << 20, Duration::ZERO, &metrics, CacheName::Item);
        put(&store, "a", "one");
        put(&store, "ab", "two");
        assert_eq!(answer(&store, "a").as_deref(), Some(&b"one"[..]));
        assert_eq!(answer(&store, "ab").as_deref(), Some(&b"two"[..]));
        let entry = store.get(store.hash(b"a"), b"a").unwrap();
        assert_eq!(entry.meta, meta(u64::MAX));
        put(&store, "a", "three");
        assert_eq!(answer(&store, "a").as_deref(), Some(&b"three"[..]));
        // The answer handed out earlier still holds what it was.
        assert_eq!(entry.answer().as_deref(), Some(&b"one"[..]));
        let weight = |k: &str, a: &str| (k.len() + a.len() + ENTRY_OVERHEAD) as u64;
        assert_eq!(
            store.usage(),
            (2, weight("a", "three") + weight("ab", "two"))
        );
        store.remove(store.hash(b"a"), b"a");
        assert_eq!(answer(&store, "a"), None);
        assert_eq!(store.usage(), (1, weight("ab", "two")));
        assert_eq!(evictions(&metrics, "explicit"), 1);
        // No answer at all (only projections) is not an empty answer.
        let projections: Projections = Arc::new([("p".into(), None)]);
        store.insert(
            store.hash(b"c"),
            b"c",
            None,
            meta(u64::MAX),
            Some(projections),
        );
        let entry = store.get(store.hash(b"c"), b"c").unwrap();
        assert_eq!(entry.answer(), None);
        assert_eq!(entry.projections.unwrap()[0].0.as_ref(), "p");
        put(&store, "c", "whole");
        assert!(
            store
                .get(store.hash(b"c"), b"c")
                .unwrap()
                .projections
                .is_none()
        );
    }

    #[test]
    fn a_full_store_evicts_what_was_not_read_since_the_hand_last_passed() {
        let metrics = Metrics::new();
        let per_entry = (4 + 100 + ENTRY_OVERHEAD) as u64;
        let store = Store::new(per_entry * 10, Duration::ZERO, &metrics, CacheName::Item);
        let body = "x".repeat(100);
        for i in 0..10 {
            put(&store, &format!("k{i:03}"), &body);
        }
        assert_eq!(store.usage(), (10, per_entry * 10));
        // k000 is read; the next insert evicts one entry that was not.
        assert!(answer(&store, "k000").is_some());
        put(&store, "k010", &body);
        assert_eq!(store.usage(), (10, per_entry * 10));
        assert!(answer(&store, "k000").is_some());
        assert!(answer(&store, "k010").is_some());
        let gone = (1..10)
            .filter(|i| answer(&store, &format!("k{i:03}")).is_none())
            .count();
        assert_eq!(gone, 1);
        assert_eq!(evictions(&metrics, "size"), 1);
        // Many more: the budget holds throughout.
        for i in 11..1000 {
            put(&store, &format!("k{i:03}"), &body);
            assert!(store.usage().1 <= per_entry * 10);
        }
        assert_eq!(evictions(&metrics, "size"), 990);
    }

    #[test]
    fn replacing_entries_with_larger_ones_keeps_the_budget() {
        let metrics = Metrics::new();
        let budget = 10 * (4 + 100 + ENTRY_OVERHEAD) as u64;
        let store = Store::new(budget, Duration::ZERO, &metrics, CacheName::Item);
        for i in 0..10 {
            put(&store, &format!("k{i:03}"), &"x".repeat(100));
        }
        for i in 0..10 {
            put(&store, &format!("k{i:03}"), &"y".repeat(300));
            assert!(store.usage().1 <= budget);
        }
        assert!(answer(&store, "k009").is_some_and(|a| a.starts_with(b"y")));
        assert!(evictions(&metrics, "size") > 0);
    }

    #[test]
    fn an_entry_larger_than_the_budget_is_not_kept_and_drops_its_old_value() {
        let metrics = Metrics::new();
        let store = Store::new(1000, Duration::ZERO, &metrics, CacheName::Item);
        put(&store, "k", "small");
        put(&store, "k", &"x".repeat(1000));
        assert_eq!(answer(&store, "k"), None);
        assert_eq!(store.usage(), (0, 0));
        assert_eq!(evictions(&metrics, "size"), 1);
    }

    #[test]
    fn expired_entries_are_not_read_and_are_reaped() {
        let metrics = Metrics::new();
        let store = Store::new(1 << 20, Duration::ZERO, &metrics, CacheName::Item);
        let expired = meta(store.deadline(Some(Duration::ZERO)));
        store.insert(store.hash(b"old"), b"old", Some(b"v"), expired, None);
        assert!(store.get(store.hash(b"old"), b"old").is_none());
        // Adding entries moves the hand over it.
        put(&store, "new", "v");
        put(&store, "newer", "v");
        assert_eq!(store.usage().0, 2);
        assert_eq!(evictions(&metrics, "expired"), 1);

        // With a grace, an entry past its freshness stays readable until the grace ends.
        let store = Store::new(1 << 20, Duration::from_secs(60), &metrics, CacheName::Item);
        let stale = meta(store.deadline(Some(Duration::ZERO)));
        store.insert(store.hash(b"s"), b"s", Some(b"v"), stale, None);
        let entry = store.get(store.hash(b"s"), b"s").unwrap();
        assert!(entry.meta.fresh_until <= store.now_ms());
    }

    #[test]
    fn every_shard_keeps_its_share_of_the_budget() {
        let metrics = Metrics::new();
        let budget = 64 << 20;
        let store = Store::new(budget, Duration::ZERO, &metrics, CacheName::Item);
        assert_eq!(store.shards.len(), MAX_SHARDS);
        let body = "x".repeat(4000);
        for i in 0..40_000 {
            put(&store, &format!("k{i}"), &body);
        }
        let (entries, bytes) = store.usage();
        assert!(bytes <= budget);
        // Hashing spreads keys evenly enough that the store is nearly full when it evicts.
        assert!(bytes > budget / 10 * 9, "{bytes} of {budget}");
        let mut seen = 0;
        store.for_each(|key, weight| {
            assert!(key.starts_with(b"k"));
            assert_eq!(weight, (key.len() + 4000 + ENTRY_OVERHEAD) as u64);
            seen += 1;
        });
        assert_eq!(seen, entries);
    }

    #[test]
    fn concurrent_readers_and_writers_only_ever_see_an_answer_stored_under_their_key() {
        let metrics = Metrics::new();
        // Small enough that eviction runs all the time.
        let store = Store::new(
            64 * (8 + 64 + ENTRY_OVERHEAD) as u64,
            Duration::ZERO,
            &metrics,
            CacheName::Item,
        );
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                let store = &store;
                scope.spawn(move || {
                    for n in 0..20_000u64 {
                        let key = format!("k{:05}", (n * 7 + t) % 500);
                        match n % 5 {
                            0 => store.remove(store.hash(key.as_bytes()), key.as_bytes()),
                            1 | 2 => put(store, &key, &format!("{key}:{}", "v".repeat(57))),
                            _ => {
                                if let Some(answer) = answer(store, &key) {
                                    assert!(answer.starts_with(key.as_bytes()), "{key}");
                                }
                            }
                        }
                    }
                });
            }
        });
        let (entries, bytes) = store.usage();
        assert!(bytes <= 64 * (8 + 64 + ENTRY_OVERHEAD) as u64);
        let mut seen = 0;
        store.for_each(|key, _| {
            assert_eq!(
                answer(&store, std::str::from_utf8(key).unwrap()).unwrap()[..key.len()],
                *key
            );
            seen += 1;
        });
        assert_eq!(seen, entries);
    }
}
