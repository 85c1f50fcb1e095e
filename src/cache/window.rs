//! The consistency window: what recent writes touched, so that a fill racing one reads
//! strongly consistently.
//!
//! DynamoDB's eventually consistent reads may come from a replica that has not yet applied a
//! write DynamoDB already acknowledged; AWS says copies usually converge within a second, and
//! gives no bound. A fill is such a read, and what it stores is served for a whole TTL. So for
//! `consistency_window_ms` after every write the proxy saw (its own, a stream record, a table
//! dropped for any reason), a fill of anything the write may have changed asks DynamoDB for a
//! strongly consistent read instead, which reflects every acknowledged write. Global secondary
//! indexes cannot be read that way: inside the window their answers are relayed, not cached.
//!
//! What is remembered, each as a hash with a deadline (a collision only costs a strong read):
//! - the item key, for GetItem and BatchGetItem;
//! - the partition, for base-table Queries that pin it (every partition of the table when the
//!   write's partition is not known);
//! - the table, for Scans and index Queries, which any write to it may change;
//! - the whole table, for drops that cannot be told apart by key (flushes, table changes,
//!   writes the proxy cannot attribute), which every read of the table honours;
//! - everything, for a drop of everything.
//!
//! Memory is bounded by [`MAX_MARKS`]: past it, the window stops telling keys apart and marks
//! everything for one window. Safe, and a bounded cost: only fills read strongly meanwhile.
//!
//! Ordering: a writer marks the window *before* it ends its write in the caches, and a filler
//! takes its fill ticket *before* it asks the window. So a fill either began before the write
//! ended (and the caches refuse to store it) or sees the write's mark.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::wire::keys::{ItemKey, KeyValue, canonical_value};

use super::queries::Scope;

/// How many marks are remembered at once (about 60 bytes each, so 16 MB at most).
pub(super) const MAX_MARKS: usize = 1 << 18;

/// How a fill must read upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// As the caller asked: nothing it may depend on was written within the window.
    Eventual,
    /// With `ConsistentRead`: a write within the window may not have reached every replica.
    Strong,
    /// As the caller asked, and not cached: an index DynamoDB cannot read strongly, within
    /// the window of a write to its table.
    Uncached,
}

impl Read {
    /// The label this read is counted under.
    pub fn label(self) -> &'static str {
        match self {
            Read::Eventual => "eventual",
            Read::Strong => "strong",
            Read::Uncached => "uncached",
        }
    }
}

/// What a mark stands for. The tag keeps a table named like a key from sharing its hash.
#[derive(Hash)]
enum Mark<'a> {
    Key(&'a [u8]),
    Partition(&'a str, &'a [u8]),
    /// Every partition of the table (a write whose partition is not known).
    Partitions(&'a str),
    /// Any write to the table.
    Written(&'a str),
    /// Everything in the table, keys included.
    Whole(&'a str),
}

/// The marks and their deadlines, each under its hash (already keyed and random, so the map
/// takes it as it is rather than hashing it again).
#[derive(Default)]
struct Marks {
    until: HashMap<u64, Instant, BuildHasherDefault<Prehashed>>,
    /// Marks in the order they were made; with one span for all, also the order they lapse.
    order: VecDeque<(Instant, u64)>,
    /// Until when everything is within the window.
    all_until: Option<Instant>,
}

/// Passes a `u64` that is already a hash through as its own hash.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _: &[u8]) {
        unreachable!("the marks' map is keyed by u64 hashes only")
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

/// Recent writes, by what they touched.
pub(super) struct Window {
    /// How long a write keeps what it touched within the window; zero turns the window off.
    span: Duration,
    hasher: RandomState,
    marks: Mutex<Marks>,
}

impl Window {
    pub(super) fn new(span: Duration) -> Window {
        Window {
            span,
            hasher: RandomState::new(),
            marks: Mutex::default(),
        }
    }

    /// A write touched `key` in `partition` (`None`: not known).
    pub(super) fn wrote(&self, key: &ItemKey, partition: Option<&KeyValue>) {
        let table = key.table();
        let partition = partition.and_then(canonical_value);
        let partition = match &partition {
            Some(value) => Mark::Partition(table, value),
            None => Mark::Partitions(table),
        };
        self.mark([Mark::Key(key.as_bytes()), partition, Mark::Written(table)]);
    }

    /// Everything in `table` may have changed.
    pub(super) fn dropped_table(&self, table: &str) {
        self.mark([Mark::Whole(table), Mark::Written(table)]);
    }

    /// Anything may have changed.
    pub(super) fn dropped_all(&self) {
        if self.span.is_zero() {
            return;
        }
        let mut marks = self.marks.lock().expect("lock poisoned");
        marks.all_until = Some(Instant::now() + self.span);
    }

    /// How a fill of `key` must read.
    pub(super) fn item(&self, key: &ItemKey) -> Read {
        let table = key.table();
        self.within(
            &[Mark::Key(key.as_bytes()), Mark::Whole(table)],
            Read::Strong,
        )
    }

    /// How a fill of a Query or Scan of `table` that depends on `scope` must read.
    pub(super) fn query(&self, table: &str, scope: &Scope) -> Read {
        match scope {
            Scope::Partition(value) => self.within(
                &[
                    Mark::Partition(table, value),
                    Mark::Partitions(table),
                    Mark::Whole(table),
                ],
                Read::Strong,
            ),
            Scope::Table => self.within(&[Mark::Written(table)], Read::Strong),
            Scope::GlobalIndex => self.within(&[Mark::Written(table)], Read::Uncached),
        }
    }

    /// How many marks are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.marks.lock().expect("lock poisoned").until.len()
    }

    /// Whether no mark is held.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn mark<const N: usize>(&self, marks_made: [Mark; N]) {
        if self.span.is_zero() {
            return;
        }
        let hashes = marks_made.map(|mark| self.hasher.hash_one(mark));
        let now = Instant::now();
        let until = now + self.span;
        let mut marks = self.marks.lock().expect("lock poisoned");
        Self::lapse(&mut marks, now);
        if marks.order.len() + N > MAX_MARKS {
            // Too many writes to tell apart: everything is within the window for one span.
            marks.until.clear();
            marks.order.clear();
            marks.all_until = Some(until);
            return;
        }
        for hash in hashes {
            marks.until.insert(hash, until);
            marks.order.push_back((until, hash));
        }
    }

    /// `within` if any of `marks` (or everything) is within the window, else eventual.
    fn within(&self, asked: &[Mark], within: Read) -> Read {
        if self.span.is_zero() {
            return Read::Eventual;
        }
        let now = Instant::now();
        let mut marks = self.marks.lock().expect("lock poisoned");
        if marks.all_until.is_some_and(|until| until > now) {
            return within;
        }
        if marks.until.is_empty() {
            return Read::Eventual;
        }
        Self::lapse(&mut marks, now);
        let hit = asked.iter().any(|mark| {
            marks
                .until
                .get(&self.hasher.hash_one(mark))
                .is_some_and(|until| *until > now)
        });
        if hit { within } else { Read::Eventual }
    }

    /// Forgets marks whose deadline has passed.
    fn lapse(marks: &mut Marks, now: Instant) {
        while let Some(&(until, hash)) = marks.order.front() {
            if until > now {
                break;
            }
            marks.order.pop_front();
            // A mark made again later keeps its later deadline.
            if marks.until.get(&hash) == Some(&until) {
                marks.until.remove(&hash);
            }
        }
        if marks.all_until.is_some_and(|until| until <= now) {
            marks.all_until = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::keys::WireKey;

    fn key(table: &str, pk: &str, sk: &str) -> ItemKey {
        let wire: WireKey = serde_json::from_value(serde_json::json!({
            "pk": {"S": pk}, "sk": {"N": sk}
        }))
        .unwrap();
        ItemKey::new(table, &wire).unwrap()
    }

    fn partition(pk: &str) -> KeyValue {
        serde_json::from_value(serde_json::json!({"S": pk})).unwrap()
    }

    fn scope(pk: &str) -> Scope {
        Scope::Partition(canonical_value(&partition(pk)).unwrap())
    }

    #[test]
    fn a_write_puts_its_key_partition_and_table_in_the_window_and_nothing_else() {
        let window = Window::new(Duration::from_secs(60));
        window.wrote(&key("t", "a", "1"), Some(&partition("a")));
        assert_eq!(window.item(&key("t", "a", "1")), Read::Strong);
        assert_eq!(window.item(&key("t", "a", "2")), Read::Eventual);
        assert_eq!(window.item(&key("u", "a", "1")), Read::Eventual);
        assert_eq!(window.query("t", &scope("a")), Read::Strong);
        assert_eq!(window.query("t", &scope("b")), Read::Eventual);
        assert_eq!(window.query("t", &Scope::Table), Read::Strong);
        assert_eq!(window.query("t", &Scope::GlobalIndex), Read::Uncached);
        assert_eq!(window.query("u", &Scope::Table), Read::Eventual);
        assert_eq!(window.query("u", &Scope::GlobalIndex), Read::Eventual);
    }

    #[test]
    fn a_write_of_unknown_partition_covers_every_partition_of_its_table() {
        let window = Window::new(Duration::from_secs(60));
        window.wrote(&key("t", "a", "1"), None);
        assert_eq!(window.query("t", &scope("z")), Read::Strong);
        assert_eq!(window.item(&key("t", "z", "1")), Read::Eventual);
    }

    #[test]
    fn a_dropped_table_covers_all_its_reads_and_a_drop_of_everything_covers_all() {
        let window = Window::new(Duration::from_secs(60));
        window.dropped_table("t");
        assert_eq!(window.item(&key("t", "z", "9")), Read::Strong);
        assert_eq!(window.query("t", &scope("z")), Read::Strong);
        assert_eq!(window.item(&key("u", "z", "9")), Read::Eventual);
        window.dropped_all();
        assert_eq!(window.item(&key("u", "z", "9")), Read::Strong);
        assert_eq!(window.query("v", &Scope::GlobalIndex), Read::Uncached);
    }

    #[test]
    fn marks_lapse_after_the_span_and_are_forgotten() {
        let window = Window::new(Duration::from_millis(30));
        window.wrote(&key("t", "a", "1"), Some(&partition("a")));
        window.dropped_all();
        assert_eq!(window.item(&key("t", "a", "1")), Read::Strong);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(window.item(&key("t", "a", "1")), Read::Eventual);
        assert_eq!(window.query("t", &Scope::GlobalIndex), Read::Eventual);
        assert!(
            window.is_empty(),
            "{} marks kept past their span",
            window.len()
        );
    }

    #[test]
    fn a_mark_made_again_keeps_its_later_deadline() {
        let window = Window::new(Duration::from_millis(60));
        let k = key("t", "a", "1");
        window.wrote(&k, None);
        std::thread::sleep(Duration::from_millis(40));
        window.wrote(&k, None);
        std::thread::sleep(Duration::from_millis(40));
        // The first mark has lapsed; the second has not.
        assert_eq!(window.item(&k), Read::Strong);
    }

    #[test]
    fn memory_is_bounded_and_overflow_errs_on_the_side_of_strong_reads() {
        let window = Window::new(Duration::from_secs(60));
        for i in 0..MAX_MARKS {
            window.wrote(&key("t", &i.to_string(), "0"), None);
        }
        assert!(window.len() <= MAX_MARKS, "{} marks", window.len());
        // Any key at all, written or not, now reads strongly for the span.
        assert_eq!(window.item(&key("never", "x", "0")), Read::Strong);
        assert_eq!(window.query("other", &Scope::GlobalIndex), Read::Uncached);
    }

    #[test]
    fn a_zero_span_turns_the_window_off() {
        let window = Window::new(Duration::ZERO);
        window.wrote(&key("t", "a", "1"), None);
        window.dropped_all();
        assert_eq!(window.item(&key("t", "a", "1")), Read::Eventual);
        assert_eq!(window.query("t", &Scope::GlobalIndex), Read::Eventual);
        assert!(window.is_empty());
    }
}
