//! The most used item keys, for warm starts: a new replica asks a running one for them
//! (`GET /cache/hot-keys`) and reads them before it reports ready, so it does not start cold.
//!
//! Counting every read would put a shared lock on the hit path, so one read in [`SAMPLE`] is
//! counted, chosen at random by a thread-local generator (no atomics; a fixed every-Nth tick
//! would alias with periodic access patterns and always pick the same keys), into a bounded
//! map. When the map is full
//! every count is halved and keys that fall to zero leave: old popularity fades, the map never
//! grows past [`CAPACITY`], and a key read often keeps its place.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::wire::keys::ItemKey;

/// One read in this many is counted.
pub(super) const SAMPLE: u32 = 16;
/// Keys tracked at most.
pub(super) const CAPACITY: usize = 16_384;

/// One tracked key: enough to read the item again.
#[derive(Debug, Clone, Serialize)]
pub struct HotKey {
    pub table: String,
    /// The key as DynamoDB JSON (`{"pk":{"S":"a"}}`), as a client sent it.
    pub key: serde_json::Value,
    /// Estimated reads (sampled count times [`SAMPLE`], decayed).
    pub uses: u64,
}

struct Tracked {
    table: String,
    key: serde_json::Value,
    count: u64,
}

/// Sampled read counts per item key.
#[derive(Default)]
pub struct HotKeys {
    counts: Mutex<HashMap<ItemKey, Tracked>>,
}

impl HotKeys {
    /// Counts a read of `key` (one in [`SAMPLE`] actually counted); `wire` gives its DynamoDB
    /// JSON, built only when the read is sampled and the key is new.
    pub fn touch(
        &self,
        key: &ItemKey,
        table: &str,
        wire: impl FnOnce() -> Option<serde_json::Value>,
    ) {
        if fastrand::u32(..SAMPLE) == 0 {
            self.count(key, table, wire);
        }
    }

    fn count(&self, key: &ItemKey, table: &str, wire: impl FnOnce() -> Option<serde_json::Value>) {
        let mut counts = self.counts.lock().expect("lock poisoned");
        if let Some(tracked) = counts.get_mut(key) {
            tracked.count += 1;
            return;
        }
        let Some(wire) = wire() else { return };
        if counts.len() >= CAPACITY {
            counts.retain(|_, t| {
                t.count /= 2;
                t.count > 0
            });
        }
        counts.insert(
            key.clone(),
            Tracked {
                table: table.to_string(),
                key: wire,
                count: 1,
            },
        );
    }

    /// The `limit` most used keys, most used first.
    pub fn top(&self, limit: usize) -> Vec<HotKey> {
        let counts = self.counts.lock().expect("lock poisoned");
        let mut all: Vec<&Tracked> = counts.values().collect();
        all.sort_unstable_by_key(|t| std::cmp::Reverse(t.count));
        all.into_iter()
            .take(limit)
            .map(|t| HotKey {
                table: t.table.clone(),
                key: t.key.clone(),
                uses: t.count * SAMPLE as u64,
            })
            .collect()
    }

    /// Forgets every key of `table` (deleted) or, with `None`, every key.
    pub fn forget(&self, table: Option<&str>) {
        let mut counts = self.counts.lock().expect("lock poisoned");
        match table {
            Some(table) => counts.retain(|k, _| k.table() != table),
            None => counts.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::keys::{KeyValue, WireKey};

    fn key(pk: &str) -> ItemKey {
        let wire: WireKey = [("pk".to_string(), KeyValue::S(pk.into()))].into();
        ItemKey::new("t", &wire).unwrap()
    }

    /// `times` counted reads of `pk` (past the sampling).
    fn read(hot: &HotKeys, pk: &str, times: u32) {
        for _ in 0..times {
            hot.count(&key(pk), "t", || Some(serde_json::json!({"pk": {"S": pk}})));
        }
    }

    #[test]
    fn the_most_read_keys_come_first_with_their_wire_form() {
        let hot = HotKeys::default();
        read(&hot, "cold", 2);
        read(&hot, "hot", 50);
        read(&hot, "warm", 10);
        let top = hot.top(2);
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].key, serde_json::json!({"pk": {"S": "hot"}}));
        assert_eq!(top[1].key, serde_json::json!({"pk": {"S": "warm"}}));
        assert_eq!(top[0].table, "t");
        assert_eq!(top[0].uses, 50 * SAMPLE as u64);
        hot.forget(Some("t"));
        assert!(hot.top(10).is_empty());
    }

    #[test]
    fn about_one_read_in_sample_is_counted() {
        let hot = HotKeys::default();
        let reads = 160_000u32;
        for _ in 0..reads {
            hot.touch(&key("k"), "t", || Some(serde_json::json!({})));
        }
        // 10,000 expected; the standard deviation is about 97.
        let counted = hot.top(1)[0].uses / SAMPLE as u64;
        assert!(
            (9_000..11_000).contains(&counted),
            "{counted} of {reads} counted"
        );
    }

    #[test]
    fn the_map_stays_bounded_and_keeps_keys_read_often() {
        let hot = HotKeys::default();
        read(&hot, "steady", 100);
        for i in 0..CAPACITY * 3 {
            // Every one sampled: call the counter directly.
            hot.count(&key(&format!("once-{i}")), "t", || {
                Some(serde_json::json!({}))
            });
        }
        assert!(hot.counts.lock().unwrap().len() <= CAPACITY);
        assert_eq!(
            hot.top(1)[0].key,
            serde_json::json!({"pk": {"S": "steady"}})
        );
    }
}
