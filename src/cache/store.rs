//! Where the item cache keeps its entries: segments of bytes grouped by expiry, a compact hash
//! index into them, and a byte budget that counts all of it.
//!
//! The layout follows Segcache (Yang et al., NSDI 2021), where a cached object pays a few
//! bytes of metadata instead of an allocation, a pointer and a slot of its own:
//!
//! - **Segments.** An entry is appended to its shard's newest segment for the entry's lifetime
//!   class (remaining time to a power of two): a flags byte, a few LEB128 numbers (lengths,
//!   deadline, clock value, write time; the deadline and write time only when there is one),
//!   the key, then the value. A segment is one allocation of a fixed size, 64 KiB. An entry
//!   too large for a segment gets one of its own size.
//! - **Keys** are kept by shape (`shapes.rs`): the table, key names and types once per store,
//!   and in the entry only the shape's number and the key's values.
//! - **Values** are kept in the compact form of `compact.rs` (the item's JSON without its
//!   syntax), or as they came when they are not in DynamoDB's compact shape; "not found" and
//!   "projections only" are a flag. A hit renders the GetItem answer from the segment into a
//!   buffer of its own: one copy of a few hundred bytes, against the system calls around it.
//! - **The index** is a `hashbrown` table of 4-byte locations (segment number and offset);
//!   comparing a candidate reads its key from the segment, so the full key is checked on
//!   every hit.
//! - **Eviction by segment, keeping what is read.** A read sets a bit for its entry (under the
//!   shared lock: the bits are atomic). When a shard needs room it reclaims its oldest segment:
//!   entries read since the last pass move to the newest segment of their class, the rest are
//!   evicted (or counted as expired). That is CLOCK's second chance with the hand moving a
//!   segment at a time, so it keeps what the per-entry CLOCK it replaced kept; Segcache's merge
//!   eviction is the same idea over several segments at once.
//! - **Expiry by segment.** Each segment knows its latest deadline; a few segments are looked at
//!   each time an entry is added, and one whose every entry has expired is dropped whole.
//! - **The budget counts everything**: segments at their full size from the moment they are
//!   allocated, the index at its capacity, and the rare projected answers, which live beside
//!   the segments by key.
//!
//! The store knows nothing of freshness rules beyond time: write stamps and generations are the
//! item cache's business (see `items.rs`). It has no `unsafe`: a segment is a `Vec<u8>`, and
//! its read bits are atomics beside it.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashTable;
use prometheus::IntCounter;

use crate::cache::compact;
use crate::cache::shapes::{Lookup, Shapes};
use crate::metrics::{CacheName, Metrics};
use crate::wire::leb128::{self, read_len};

/// Answers to projected reads of one item, by projection; `None` = no such item.
pub(super) type Projections = Arc<[(Arc<str>, Option<Bytes>)]>;

/// What a projected answer costs beyond its bytes (its tuple and `Arc<str>` header), and what
/// an item's list of them costs beside its key.
const PROJECTION_OVERHEAD: usize = 48;
/// At most this many shards; fewer for small budgets, so that one large item still fits a shard.
const MAX_SHARDS: usize = 64;
/// A shard's smallest budget when there are several.
const MIN_SHARD_BYTES: u64 = 1 << 20;
/// A segment's size, for shards large enough: 64 or more segments a shard. Smaller than
/// Segcache's 1 MiB because each shard keeps a segment per lifetime class half written: with
/// transparent huge pages the allocator's memory is resident 2 MiB at a time, written or not,
/// so 64 shards of 1 MiB segments held about 40 MiB more than they stored
/// (`cargo bench --bench cache_memory`).
const SEGMENT_BYTES: usize = 64 << 10;
/// The smallest segment, for tiny budgets.
const MIN_SEGMENT_BYTES: usize = 256;
/// Bits of an index entry that hold the offset; the rest number the segment. An entry larger
/// than a segment has one of its own, at offset 0.
const OFFSET_BITS: u32 = 16;
const _: () = assert!(SEGMENT_BYTES <= 1 << OFFSET_BITS);
/// Segments a shard can number: a shard holds at most 4 GiB, the store 256 GiB.
const MAX_SEGMENTS: usize = 1 << (32 - OFFSET_BITS);
/// The largest entry kept (DynamoDB's items are at most 400 KB).
const MAX_ENTRY: usize = 16 << 20;
/// Bytes of a segment that share one read bit.
const BLOCK: usize = 64;
/// Segments looked at for expiry each time an entry is added.
const REAP_STEP: usize = 1;
/// What a location in the index costs: four bytes and a control byte a bucket, at hashbrown's
/// load of up to 7/8.
const INDEX_BUCKET_BYTES: usize = 5;

/// An entry's flags byte.
const DEAD: u8 = 0x80;
const HAS_PROJECTIONS: u8 = 0x40;
/// `fresh_until` is `u64::MAX` (no TTL), and not written.
const NO_DEADLINE: u8 = 0x20;
/// `written_s` is 0 (a fill, not a write), and not written.
const NOT_WRITTEN: u8 = 0x10;
const FORM: u8 = 0x03;
/// The entry holds projections only.
const FORM_NONE: u8 = 0;
/// The item does not exist: the answer is `{}`.
const FORM_MISSING: u8 = 1;
/// The item in compact form: the answer is `{"Item":` + its JSON + `}`.
const FORM_ITEM: u8 = 2;
/// The answer as it came.
const FORM_RAW: u8 = 3;

const ITEM_PREFIX: &[u8] = b"{\"Item\":";

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
}

/// One entry, as read: its answer is a copy, rendered from the segment.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    answer: Option<Bytes>,
    pub meta: Meta,
    pub projections: Option<Projections>,
}

impl Entry {
    /// The stored answer, if the entry holds one (it may hold only projections).
    pub(super) fn answer(&self) -> Option<Bytes> {
        self.answer.clone()
    }
}

/// An entry's header, as read from its segment.
struct Header {
    flags: u8,
    meta: Meta,
    /// Where the key starts.
    key: usize,
    key_len: usize,
    value_len: usize,
    /// Where the next entry starts.
    end: usize,
}

impl Header {
    /// The header at `at`; `None` if the bytes there are not one (never, for an offset the
    /// store wrote).
    fn read(data: &[u8], at: usize) -> Option<Header> {
        let flags = *data.get(at)?;
        let mut i = at + 1;
        let key_len = read_len(data, &mut i)?;
        let value_len = read_len(data, &mut i)?;
        let fresh_until = match flags & NO_DEADLINE {
            0 => leb128::read(data, &mut i)?,
            _ => u64::MAX,
        };
        let as_of = leb128::read(data, &mut i)?;
        let written_s = match flags & NOT_WRITTEN {
            0 => u32::try_from(leb128::read(data, &mut i)?).ok()?,
            _ => 0,
        };
        let meta = Meta {
            fresh_until,
            as_of,
            written_s,
        };
        let end = i.checked_add(key_len)?.checked_add(value_len)?;
        (end <= data.len()).then_some(Header {
            flags,
            meta,
            key: i,
            key_len,
            value_len,
            end,
        })
    }

    fn key<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        &data[self.key..self.key + self.key_len]
    }

    fn value<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        let start = self.key + self.key_len;
        &data[start..start + self.value_len]
    }
}

/// An entry as it will be written to a segment.
fn entry_bytes(key: &Lookup, answer: Option<&[u8]>, meta: Meta, has_projections: bool) -> Vec<u8> {
    let mut value = Vec::new();
    let form = match answer {
        None => FORM_NONE,
        Some(b"{}") => FORM_MISSING,
        Some(answer) => {
            let item = answer
                .strip_prefix(ITEM_PREFIX)
                .and_then(|rest| rest.strip_suffix(b"}"));
            if item.is_some_and(|item| compact::encode(item, &mut value)) {
                FORM_ITEM
            } else {
                value.extend_from_slice(answer);
                FORM_RAW
            }
        }
    };
    let mut flags = form;
    if has_projections {
        flags |= HAS_PROJECTIONS;
    }
    if meta.fresh_until == u64::MAX {
        flags |= NO_DEADLINE;
    }
    if meta.written_s == 0 {
        flags |= NOT_WRITTEN;
    }
    let mut out = Vec::with_capacity(32 + key.len() + value.len());
    out.push(flags);
    leb128::push(&mut out, key.len() as u64);
    leb128::push(&mut out, value.len() as u64);
    if meta.fresh_until != u64::MAX {
        leb128::push(&mut out, meta.fresh_until);
    }
    leb128::push(&mut out, meta.as_of);
    if meta.written_s != 0 {
        leb128::push(&mut out, u64::from(meta.written_s));
    }
    key.write(&mut out);
    out.extend_from_slice(&value);
    out
}

/// The answer an entry's value stands for.
fn answer_of(flags: u8, value: &[u8]) -> Option<Bytes> {
    match flags & FORM {
        FORM_NONE => None,
        FORM_MISSING => Some(Bytes::from_static(b"{}")),
        FORM_ITEM => {
            let mut out = Vec::with_capacity(ITEM_PREFIX.len() + compact::rendered_capacity(value));
            out.extend_from_slice(ITEM_PREFIX);
            compact::render(value, &mut out)?;
            out.push(b'}');
            Some(Bytes::from(out))
        }
        _ => Some(Bytes::copy_from_slice(value)),
    }
}

/// Where an entry is: segment number and offset, in one index word.
fn location(segment: usize, offset: usize) -> u32 {
    debug_assert!(segment < MAX_SEGMENTS && offset < 1 << OFFSET_BITS);
    ((segment as u32) << OFFSET_BITS) | offset as u32
}

fn split(location: u32) -> (usize, usize) {
    (
        (location >> OFFSET_BITS) as usize,
        (location & ((1 << OFFSET_BITS) - 1)) as usize,
    )
}

struct Segment {
    /// Entries, back to back; its capacity is the segment's size and never changes.
    data: Vec<u8>,
    /// One bit per `BLOCK` bytes: set when the entry that starts there is read.
    read: Box<[AtomicU64]>,
    /// Live entries in it.
    live: u32,
    /// The latest deadline of any entry written to it.
    latest: u64,
    /// Its lifetime class.
    class: u8,
}

impl Segment {
    fn new(size: usize, class: u8) -> Segment {
        Segment {
            data: Vec::with_capacity(size),
            read: (0..size.div_ceil(BLOCK * 64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            live: 0,
            latest: 0,
            class,
        }
    }

    fn size(&self) -> usize {
        self.data.capacity()
    }

    fn room(&self) -> usize {
        self.data.capacity() - self.data.len()
    }

    fn bit(offset: usize) -> (usize, u64) {
        let block = offset / BLOCK;
        (block / 64, 1 << (block % 64))
    }

    fn touch(&self, offset: usize) {
        let (word, bit) = Segment::bit(offset);
        if self.read[word].load(Ordering::Relaxed) & bit == 0 {
            self.read[word].fetch_or(bit, Ordering::Relaxed);
        }
    }

    fn was_read(&self, offset: usize) -> bool {
        let (word, bit) = Segment::bit(offset);
        self.read[word].load(Ordering::Relaxed) & bit != 0
    }

    /// Each live entry's offset and header, in order.
    fn entries(&self) -> impl Iterator<Item = (usize, Header)> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            while at < self.data.len() {
                let header = Header::read(&self.data, at)?;
                let offset = std::mem::replace(&mut at, header.end);
                if header.flags & DEAD == 0 {
                    return Some((offset, header));
                }
            }
            None
        })
    }
}

#[derive(Default)]
struct Shard {
    /// Entry locations, by the hash of the entry's key.
    index: HashTable<u32>,
    /// Segments by number; `None` = a free number.
    segments: Vec<Option<Segment>>,
    free: Vec<u32>,
    /// Segment numbers, oldest first.
    order: VecDeque<u32>,
    /// The segment each lifetime class appends to.
    heads: Vec<(u8, u32)>,
    /// Projections of items, by key.
    projections: HashMap<Box<[u8]>, Projections>,
    /// What the segments cost: the sum of their sizes.
    segment_bytes: u64,
    projection_bytes: u64,
    live: u64,
    /// Where expiry looks next, in `order`.
    reap_at: usize,
}

/// The key of the entry at `location` (empty if there is none: never for an indexed entry).
fn key_at(segments: &[Option<Segment>], location: u32) -> &[u8] {
    let (segment, offset) = split(location);
    segments[segment]
        .as_ref()
        .and_then(|s| Some(Header::read(&s.data, offset)?.key(&s.data)))
        .unwrap_or_default()
}

impl Shard {
    /// Bytes held, counting everything the budget counts.
    fn bytes(&self) -> u64 {
        let buckets = self.index.capacity() + self.index.capacity() / 7;
        self.segment_bytes + self.projection_bytes + (buckets * INDEX_BUCKET_BYTES) as u64
    }

    fn segment(&self, number: u32) -> &Segment {
        self.segments[number as usize]
            .as_ref()
            .expect("a numbered segment")
    }

    fn segment_mut(&mut self, number: u32) -> &mut Segment {
        self.segments[number as usize]
            .as_mut()
            .expect("a numbered segment")
    }

    fn find(&self, hash: u64, key: &Lookup) -> Option<u32> {
        self.index
            .find(hash, |&l| key.matches(key_at(&self.segments, l)))
            .copied()
    }
}

/// The store; see the module documentation.
pub(super) struct Store {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
    shard_budget: u64,
    segment_size: usize,
    /// The key shapes entries' keys are stored by.
    shapes: Shapes,
    /// How long past `fresh_until` an entry stays readable (by `get`) before it expires.
    grace_ms: u64,
    started: Instant,
    evicted_size: IntCounter,
    evicted_expired: IntCounter,
    removed: IntCounter,
}

impl Store {
    /// A store holding at most `max_bytes` bytes, whose entries stay `grace` past their
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
        let shard_budget = max_bytes / shards as u64;
        // 64 segments a shard or more: each lifetime class keeps one half written, and the
        // budget counts it whole.
        let segment_size = usize::try_from(shard_budget / 64)
            .unwrap_or(usize::MAX)
            .clamp(MIN_SEGMENT_BYTES, SEGMENT_BYTES);
        let counter = |cause| {
            metrics
                .evictions
                .with_label_values(&[cache.as_str(), cause])
        };
        Store {
            shards: (0..shards).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
            shard_budget,
            segment_size,
            shapes: Shapes::default(),
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
        let key = self.shapes.find(key)?;
        let shard = self.shard(hash).read().expect("lock poisoned");
        let (segment, offset) = split(shard.find(hash, &key)?);
        let segment = shard.segments[segment].as_ref()?;
        let header = Header::read(&segment.data, offset)?;
        if self.expired(header.meta.fresh_until, now) {
            return None;
        }
        segment.touch(offset);
        let answer = answer_of(header.flags, header.value(&segment.data));
        if header.flags & FORM != FORM_NONE && answer.is_none() {
            debug_assert!(false, "an entry the store wrote did not render");
            return None;
        }
        Some(Entry {
            answer,
            meta: header.meta,
            projections: (header.flags & HAS_PROJECTIONS != 0)
                .then(|| shard.projections.get(header.key(&segment.data)).cloned())
                .flatten(),
        })
    }

    /// Stores `answer` (if any) and `projections` (if any) under `key`, replacing what was
    /// there. An entry the shard cannot make room for is not kept (and the old one goes).
    pub(super) fn insert(
        &self,
        hash: u64,
        key: &[u8],
        answer: Option<&[u8]>,
        meta: Meta,
        projections: Option<Projections>,
    ) {
        let projections = projections.filter(|p| !p.is_empty());
        let Some(key) = self.shapes.intern(key) else {
            // Too many key shapes to number another: not kept, and nothing is under it.
            return;
        };
        let entry = entry_bytes(&key, answer, meta, projections.is_some());
        let projection_bytes = projections
            .as_ref()
            .map_or(0, |p| projections_weight(key.len(), p));
        let now = self.now_ms();
        let mut guard = self.shard(hash).write().expect("lock poisoned");
        let shard = &mut *guard;
        let replaced = shard.find(hash, &key);
        if let Some(location) = replaced {
            self.unindex(shard, hash, location);
            self.kill(shard, location);
        }
        let class = lifetime_class(meta.fresh_until, now);
        let fits =
            entry.len() <= MAX_ENTRY && entry.len() as u64 + projection_bytes <= self.shard_budget;
        let Some(location) = fits
            .then(|| self.append(shard, class, &entry, now, true))
            .flatten()
        else {
            // Not kept: what it replaced is gone all the same.
            if replaced.is_some() {
                self.evicted_size.inc();
            }
            return;
        };
        let Shard {
            index, segments, ..
        } = shard;
        // Growing the index rehashes every entry: by its full key, as callers hash it.
        let full = std::cell::RefCell::new(Vec::new());
        index.insert_unique(hash, location, |&l| {
            let mut full = full.borrow_mut();
            self.shapes.key_of(key_at(segments, l), &mut full);
            self.hasher.hash_one(&full[..])
        });
        if let Some(projections) = projections {
            shard.projection_bytes += projection_bytes;
            shard.projections.insert(key.stored().into(), projections);
        }
        let (segment, _) = split(location);
        let segment = shard.segment_mut(segment as u32);
        segment.latest = segment.latest.max(meta.fresh_until);
        // The index may have grown past the budget.
        while shard.bytes() > self.shard_budget && self.reclaim(shard, now) {}
        self.reap(shard, now);
    }

    /// Drops the entry for `key`, if any (counted as an explicit removal).
    pub(super) fn remove(&self, hash: u64, key: &[u8]) {
        let Some(key) = self.shapes.find(key) else {
            return;
        };
        let mut guard = self.shard(hash).write().expect("lock poisoned");
        let shard = &mut *guard;
        if let Some(location) = shard.find(hash, &key) {
            self.unindex(shard, hash, location);
            self.kill(shard, location);
            self.removed.inc();
        }
    }

    /// Calls `visit(key, bytes)` for every entry in memory, with what the entry takes in its
    /// segment and the index, and its projections (O(entries); for `/cache`).
    pub(super) fn for_each(&self, mut visit: impl FnMut(&[u8], u64)) {
        let mut full = Vec::new();
        for shard in &self.shards {
            let shard = shard.read().expect("lock poisoned");
            for segment in shard.segments.iter().flatten() {
                for (offset, header) in segment.entries() {
                    let key = header.key(&segment.data);
                    let projections = (header.flags & HAS_PROJECTIONS != 0)
                        .then(|| shard.projections.get(key))
                        .flatten()
                        .map_or(0, |p| projections_weight(key.len(), p));
                    let size = header.end - offset + INDEX_BUCKET_BYTES * 8 / 7;
                    self.shapes.key_of(key, &mut full);
                    visit(&full, size as u64 + projections);
                }
            }
        }
    }

    /// Entries and bytes held now (everything the budget counts).
    pub(super) fn usage(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(entries, bytes), shard| {
            let shard = shard.read().expect("lock poisoned");
            (entries + shard.live, bytes + shard.bytes())
        })
    }

    /// Writes `entry` at the end of `class`'s newest segment, opening a new one if it does not
    /// fit; its location, or `None` if there is no room. A new segment makes room for itself by
    /// reclaiming old ones when `make_room`; otherwise (while a reclaim moves entries) it may
    /// take the budget one segment over, which the reclaim that called it gives back.
    fn append(
        &self,
        shard: &mut Shard,
        class: u8,
        entry: &[u8],
        now: u64,
        make_room: bool,
    ) -> Option<u32> {
        let head = shard
            .heads
            .iter()
            .find(|(c, n)| *c == class && shard.segment(*n).room() >= entry.len())
            .map(|&(_, n)| n);
        let number = match head {
            Some(number) => number,
            None => self.open(shard, class, entry.len(), now, make_room)?,
        };
        let segment = shard.segment_mut(number);
        let offset = segment.data.len();
        segment.data.extend_from_slice(entry);
        segment.live += 1;
        shard.live += 1;
        Some(location(number as usize, offset))
    }

    /// A new segment for `class` that holds at least `len` bytes (see [`Store::append`]); its
    /// number, or `None` if the budget cannot hold it. An entry larger than a segment gets one
    /// of its own size, and the class keeps appending to the segment it had.
    fn open(
        &self,
        shard: &mut Shard,
        class: u8,
        len: usize,
        now: u64,
        make_room: bool,
    ) -> Option<u32> {
        let size = self.segment_size.max(len);
        let head = size == self.segment_size;
        if head {
            // The class's head is full: it is no longer where the class appends, and may be
            // reclaimed like any other segment.
            shard.heads.retain(|&(c, _)| c != class);
        }
        loop {
            let numbered = !shard.free.is_empty() || shard.segments.len() < MAX_SEGMENTS;
            let fits = shard.bytes() + size as u64 <= self.shard_budget;
            if numbered && (fits || !make_room) {
                break;
            }
            if !make_room || !self.reclaim(shard, now) {
                return None;
            }
        }
        let segment = Segment::new(size, class);
        let number = match shard.free.pop() {
            Some(number) => {
                shard.segments[number as usize] = Some(segment);
                number
            }
            None => {
                shard.segments.push(Some(segment));
                (shard.segments.len() - 1) as u32
            }
        };
        shard.segment_bytes += size as u64;
        shard.order.push_back(number);
        if head {
            shard.heads.push((class, number));
        }
        Some(number)
    }

    /// Reclaims the oldest segment: entries read since the last pass move to their class's
    /// newest segment (their read bits start clear there), expired ones and the rest go.
    /// `false` if the shard has no segment.
    fn reclaim(&self, shard: &mut Shard, now: u64) -> bool {
        let Some(number) = shard.order.pop_front() else {
            return false;
        };
        shard.reap_at = shard.reap_at.saturating_sub(1);
        self.drop_segment(shard, number, now, true);
        true
    }

    /// Takes segment `number` (already out of `order`) away; its entries go, or, with
    /// `keep_read`, those read since the last pass move.
    fn drop_segment(&self, shard: &mut Shard, number: u32, now: u64, keep_read: bool) {
        shard.heads.retain(|&(_, n)| n != number);
        let segment = shard.segments[number as usize]
            .take()
            .expect("a numbered segment");
        shard.segment_bytes -= segment.size() as u64;
        let mut full = Vec::new();
        for (offset, header) in segment.entries() {
            let key = header.key(&segment.data);
            self.shapes.key_of(key, &mut full);
            let hash = self.hasher.hash_one(&full[..]);
            let old = location(number as usize, offset);
            shard.live -= 1;
            let expired = self.expired(header.meta.fresh_until, now);
            let moved = (keep_read && !expired && segment.was_read(offset))
                .then(|| {
                    self.append(
                        shard,
                        segment.class,
                        &segment.data[offset..header.end],
                        now,
                        false,
                    )
                })
                .flatten();
            match moved {
                Some(new) => {
                    if let Ok(mut found) = shard.index.find_entry(hash, |&l| l == old) {
                        *found.get_mut() = new;
                    }
                    let head = shard.segment_mut(split(new).0 as u32);
                    head.latest = head.latest.max(header.meta.fresh_until);
                }
                None => {
                    self.unindex(shard, hash, old);
                    self.forget_projections(shard, header.flags, key);
                    if expired {
                        self.evicted_expired.inc();
                    } else {
                        self.evicted_size.inc();
                    }
                }
            }
        }
        // Its number is free only now that no index entry points into it.
        shard.free.push(number);
    }

    /// Looks at the next segment in age order and drops it whole if every entry in it has
    /// expired.
    fn reap(&self, shard: &mut Shard, now: u64) {
        for _ in 0..REAP_STEP.min(shard.order.len()) {
            if shard.reap_at >= shard.order.len() {
                shard.reap_at = 0;
            }
            let number = shard.order[shard.reap_at];
            let segment = shard.segment(number);
            if segment.live == 0 || !self.expired(segment.latest, now) {
                shard.reap_at += 1;
                continue;
            }
            shard.order.remove(shard.reap_at);
            self.drop_segment(shard, number, now, false);
        }
    }

    /// Takes `location` out of the index.
    fn unindex(&self, shard: &mut Shard, hash: u64, location: u32) {
        if let Ok(found) = shard.index.find_entry(hash, |&l| l == location) {
            found.remove();
        }
    }

    /// Marks the entry at `location` dead, and frees its segment if nothing in it lives and
    /// nothing appends to it.
    fn kill(&self, shard: &mut Shard, location: u32) {
        let (number, offset) = split(location);
        let segment = shard.segment_mut(number as u32);
        let header = Header::read(&segment.data, offset).expect("an entry the store wrote");
        let flags = header.flags;
        let key = (flags & HAS_PROJECTIONS != 0).then(|| header.key(&segment.data).to_vec());
        segment.data[offset] |= DEAD;
        segment.live -= 1;
        let empty = segment.live == 0;
        shard.live -= 1;
        if let Some(key) = key {
            self.forget_projections(shard, flags, &key);
        }
        if empty && !shard.heads.iter().any(|&(_, n)| n as usize == number) {
            if let Some(at) = shard.order.iter().position(|&n| n as usize == number) {
                shard.order.remove(at);
                if at < shard.reap_at {
                    shard.reap_at -= 1;
                }
            }
            let segment = shard.segments[number].take().expect("a numbered segment");
            shard.segment_bytes -= segment.size() as u64;
            shard.free.push(number as u32);
        }
    }

    fn forget_projections(&self, shard: &mut Shard, flags: u8, key: &[u8]) {
        if flags & HAS_PROJECTIONS != 0
            && let Some(projections) = shard.projections.remove(key)
        {
            shard.projection_bytes -= projections_weight(key.len(), &projections);
        }
    }

    fn expired(&self, fresh_until: u64, now: u64) -> bool {
        now >= fresh_until.saturating_add(self.grace_ms)
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        // Bits the hash table uses for neither its bucket (low bits) nor its tag (top 7).
        &self.shards[(hash >> 48) as usize & (self.shards.len() - 1)]
    }
}

/// Entries whose remaining lifetimes are within a factor of two share segments, so a segment
/// expires at about one time. Class 0 never expires.
fn lifetime_class(fresh_until: u64, now: u64) -> u8 {
    if fresh_until == u64::MAX {
        0
    } else {
        1 + (64 - fresh_until.saturating_sub(now).leading_zeros()) as u8
    }
}

fn projections_weight(key_len: usize, projections: &Projections) -> u64 {
    let answers: usize = projections
        .iter()
        .map(|(name, answer)| name.len() + answer.as_ref().map_or(0, Bytes::len))
        .sum();
    (key_len + answers + (projections.len() + 1) * PROJECTION_OVERHEAD) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(fresh_until: u64) -> Meta {
        Meta {
            fresh_until,
            as_of: 2,
            written_s: 3,
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

    /// A GetItem answer for an item of about `size` bytes.
    fn item(pk: &str, size: usize) -> String {
        format!(
            r#"{{"Item":{{"pk":{{"S":"{pk}"}},"sk":{{"N":"0"}},"v":{{"S":"{}"}}}}}}"#,
            "x".repeat(size.saturating_sub(5 + pk.len() + 1))
        )
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
        assert_eq!(store.usage().0, 2);
        store.remove(store.hash(b"a"), b"a");
        assert_eq!(answer(&store, "a"), None);
        assert_eq!(store.usage().0, 1);
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
        // Keys that share a prefix, and every byte value, stay apart.
        let keys: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b'k', b, 0]).collect();
        for key in &keys {
            store.insert(store.hash(key), key, Some(key), meta(u64::MAX), None);
        }
        for key in &keys {
            let entry = store.get(store.hash(key), key).unwrap();
            assert_eq!(entry.answer().as_deref(), Some(&key[..]));
        }
    }

    #[test]
    fn answers_come_back_byte_for_byte_in_every_form() {
        let metrics = Metrics::new();
        let store = Store::new(1 << 20, Duration::ZERO, &metrics, CacheName::Item);
        let compact = item("k1", 400);
        for answer in [
            compact.as_str(),
            "{}",
            r#"{"Item":{"pk":{"S":"\u00e9\"q"},"l":{"L":[{"NULL":true},{"M":{}}]}}}"#,
            // Not DynamoDB's compact shape: kept as it came.
            r#"{"Item": {"pk": {"S": "k"}}}"#,
            r#"{"Item":{"pk":{"S":"k"}},"ConsumedCapacity":{"TableName":"t"}}"#,
            "",
            "not json at all",
        ] {
            put(&store, "k", answer);
            assert_eq!(answer_str(&store, "k").as_deref(), Some(answer), "{answer}");
        }
        // The compact form is what makes an entry small: about the item's size as DynamoDB
        // counts it, plus its key and a few bytes, not its JSON text.
        put(&store, "k", &compact);
        let mut size = 0;
        store.for_each(|_, bytes| size = bytes);
        assert!(size < 432, "a 400-byte item takes {size} bytes");
        assert!(compact.len() > 440);
    }

    fn answer_str(store: &Store, key: &str) -> Option<String> {
        answer(store, key).map(|a| String::from_utf8(a.to_vec()).unwrap())
    }

    #[test]
    fn a_million_items_cost_little_more_than_their_size() {
        // The layout the memory bench measures, counted by the store's own budget: segments
        // at their full size, the index at its capacity.
        let metrics = Metrics::new();
        let store = Store::new(4 << 30, Duration::ZERO, &metrics, CacheName::Item);
        let items = 100_000;
        for i in 0..items {
            let pk = format!("k{i:07}");
            // The canonical key of the memory bench's items (`wire::keys`).
            let key = format!("\x02\x03mem\x02pkS\x02skN\x08{pk}\x010");
            let answer = item(&pk, 400);
            store.insert(
                store.hash(key.as_bytes()),
                key.as_bytes(),
                Some(answer.as_bytes()),
                Meta {
                    fresh_until: u64::MAX,
                    as_of: 1_000_000 + i,
                    written_s: 0,
                },
                None,
            );
        }
        assert_eq!(store.usage().0, items);
        // What the entries and the index take (the budget also counts the unwritten rest of
        // each shard's newest segment, which takes no memory until it is written).
        let bytes: u64 = store
            .shards
            .iter()
            .map(|shard| {
                let shard = shard.read().unwrap();
                let entries: usize = (shard.segments.iter().flatten())
                    .flat_map(Segment::entries)
                    .map(|(offset, header)| header.end - offset)
                    .sum();
                entries as u64 + shard.bytes() - shard.segment_bytes
            })
            .sum();
        let per_item = bytes as f64 / items as f64;
        // 400 bytes of item and 11 of framing, the key's shape number and its values (12 of
        // its 22 bytes), 7 of header, and the index at its load (5 to 10 bytes).
        assert!(per_item < 1.10 * 400.0, "{per_item:.0} bytes an item");
    }

    #[test]
    fn a_full_store_evicts_what_was_not_read_since_it_was_last_reclaimed() {
        let metrics = Metrics::new();
        // One shard of sixteen 256-byte segments: about three entries a segment.
        let store = Store::new(16 * 256, Duration::ZERO, &metrics, CacheName::Item);
        let body = "x".repeat(60);
        for i in 0..40 {
            put(&store, &format!("k{i:03}"), &body);
            assert!(store.usage().1 <= 16 * 256);
            // k000 is read all along: it survives every reclaim of the segment it is in.
            assert!(answer(&store, "k000").is_some(), "after k{i:03}");
        }
        // Counted without reading, which would save them all.
        let mut held = 0;
        store.for_each(|_, _| held += 1);
        assert_eq!(store.usage().0, held);
        assert!(held > 20, "{held}");
        assert!(evictions(&metrics, "size") >= 40 - held);
        // Many more: the budget holds throughout, and what is read now and then stays.
        for i in 40..1000 {
            put(&store, &format!("k{i:03}"), &body);
            assert!(store.usage().1 <= 16 * 256);
            if i % 10 == 0 {
                assert!(answer(&store, "k000").is_some(), "after k{i:03}");
            }
        }
        assert!(answer(&store, "k999").is_some());
        // Not read since: it goes within two passes over the segments.
        for i in 1000..1100 {
            put(&store, &format!("k{i:04}"), &body);
        }
        assert!(answer(&store, "k000").is_none());
    }

    #[test]
    fn replacing_entries_with_larger_ones_keeps_the_budget() {
        let metrics = Metrics::new();
        let budget = 8 * 1024;
        let store = Store::new(budget, Duration::ZERO, &metrics, CacheName::Item);
        for i in 0..10 {
            put(&store, &format!("k{i:03}"), &"x".repeat(100));
        }
        for i in 0..10 {
            put(&store, &format!("k{i:03}"), &"y".repeat(900));
            assert!(store.usage().1 <= budget);
        }
        assert!(answer(&store, "k009").is_some_and(|a| a.starts_with(b"y")));
        assert!(evictions(&metrics, "size") > 0);
    }

    #[test]
    fn an_entry_larger_than_a_segment_gets_one_of_its_own() {
        let metrics = Metrics::new();
        let store = Store::new(1 << 20, Duration::ZERO, &metrics, CacheName::Item);
        let segment = store.segment_size as u64;
        assert_eq!(segment, 16 << 10);
        put(&store, "small", "s");
        let large = item("big", 300 << 10);
        put(&store, "big", &large);
        put(&store, "small2", "s");
        assert_eq!(answer_str(&store, "big").as_deref(), Some(large.as_str()));
        assert_eq!(answer_str(&store, "small2").as_deref(), Some("s"));
        assert!(store.usage().1 < (300 << 10) + segment + 4096);
        // Gone, it gives its segment back.
        store.remove(store.hash(b"big"), b"big");
        assert!(store.usage().1 < segment + 4096);
    }

    #[test]
    fn an_entry_larger_than_the_budget_is_not_kept_and_drops_its_old_value() {
        let metrics = Metrics::new();
        let store = Store::new(1000, Duration::ZERO, &metrics, CacheName::Item);
        put(&store, "k", "small");
        put(&store, "k", &"x".repeat(1000));
        assert_eq!(answer(&store, "k"), None);
        assert_eq!(store.usage().0, 0);
        assert!(store.usage().1 <= 1000);
        assert_eq!(evictions(&metrics, "size"), 1);
    }

    #[test]
    fn expired_entries_are_not_read_and_their_segments_are_dropped_whole() {
        let metrics = Metrics::new();
        let store = Store::new(1 << 20, Duration::ZERO, &metrics, CacheName::Item);
        let expired = meta(store.deadline(Some(Duration::ZERO)));
        for key in [&b"old"[..], b"older"] {
            store.insert(store.hash(key), key, Some(b"v"), expired, None);
        }
        assert!(store.get(store.hash(b"old"), b"old").is_none());
        // Adding entries looks at segments in turn.
        put(&store, "new", "v");
        put(&store, "newer", "v");
        assert_eq!(store.usage().0, 2);
        assert_eq!(evictions(&metrics, "expired"), 2);
        // Entries of very different lifetimes do not share a segment.
        let shard = store.shards[0].read().unwrap();
        assert_eq!(shard.order.len(), 1);
        drop(shard);

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
        let mut held = 0;
        store.for_each(|key, weight| {
            assert!(key.starts_with(b"k"));
            assert!(weight > 4000 && weight < 4040, "{weight}");
            seen += 1;
            held += weight;
        });
        assert_eq!(seen, entries);
        assert!(held > budget / 10 * 8, "{held} of {budget} in live entries");
    }

    #[test]
    fn concurrent_readers_and_writers_only_ever_see_an_answer_stored_under_their_key() {
        let metrics = Metrics::new();
        // Small enough that eviction runs all the time.
        let budget = 64 * 256;
        let store = Store::new(budget, Duration::ZERO, &metrics, CacheName::Item);
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                let store = &store;
                scope.spawn(move || {
                    for n in 0..20_000u64 {
                        let key = format!("k{:05}", (n * 7 + t) % 500);
                        match n % 5 {
                            0 => store.remove(store.hash(key.as_bytes()), key.as_bytes()),
                            1 => put(store, &key, &format!("{key}:{}", "v".repeat(57))),
                            2 => put(store, &key, &item(&key, 80 + (n % 300) as usize)),
                            _ => {
                                if let Some(answer) = answer(store, &key) {
                                    let text = std::str::from_utf8(&answer).unwrap();
                                    assert!(
                                        text.starts_with(&key)
                                            || text.starts_with(&format!(
                                                r#"{{"Item":{{"pk":{{"S":"{key}"}}"#
                                            )),
                                        "{key}: {text}"
                                    );
                                }
                            }
                        }
                    }
                });
            }
        });
        let (entries, bytes) = store.usage();
        assert!(bytes <= budget);
        let mut seen = 0;
        store.for_each(|key, _| {
            assert!(answer(&store, std::str::from_utf8(key).unwrap()).is_some());
            seen += 1;
        });
        assert_eq!(seen, entries);
    }
}
