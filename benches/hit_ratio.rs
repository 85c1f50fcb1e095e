//! The item cache's hit ratio at a fixed memory budget, on a skewed trace with expiry: what
//! the store's bytes per item buy.
//!
//! A read-through loop drives the item cache itself (no network): each request looks its key
//! up and, on a miss, fills it with the item as a read would. Keys follow a Zipf law over
//! `HIT_RATIO_KEYS` keys; item sizes vary from 100 to 1,000 bytes by key; keys are spread over
//! three tables with item TTLs of 2 s, 60 s and none. Requests are paced at `HIT_RATIO_RATE` a
//! second, so TTLs expire as they would under that load. The trace is seeded: every run, and
//! every version of the store, sees the same requests.
//!
//!     cargo bench --bench hit_ratio
//!     HIT_RATIO_BUDGET_MIB=32 HIT_RATIO_ZIPF=0.8 cargo bench --bench hit_ratio

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dynamo_cache::cache::ItemCache;
use dynamo_cache::config::{CacheConfig, TableCacheConfig};
use dynamo_cache::metrics::Metrics;
use dynamo_cache::wire::keys::{ItemKey, KeyValue};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const TABLES: [(&str, u64); 3] = [("short", 2_000), ("long", 60_000), ("forever", 0)];

/// Key `k`'s table, cache key and item.
fn request(k: u64) -> (ItemKey, Bytes) {
    let (table, _) = TABLES[(k % 3) as usize];
    let pk = format!("user#{k:08}");
    let key: BTreeMap<String, KeyValue> = [("pk".to_string(), KeyValue::S(pk.clone()))].into();
    let size = 100 + (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54) as usize % 900;
    let item = format!(
        r#"{{"pk":{{"S":"{pk}"}},"n":{{"N":"{k}"}},"v":{{"S":"{}"}}}}"#,
        "x".repeat(size.saturating_sub(pk.len() + 20))
    );
    (ItemKey::new(table, &key).unwrap(), Bytes::from(item))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let keys: u64 = env("HIT_RATIO_KEYS", 1_000_000);
    let requests: u64 = env("HIT_RATIO_REQUESTS", 4_000_000);
    let rate: f64 = env("HIT_RATIO_RATE", 250_000.0);
    let budget: u64 = env::<u64>("HIT_RATIO_BUDGET_MIB", 64) << 20;
    let exponent: f64 = env("HIT_RATIO_ZIPF", 0.9);

    let mut config = CacheConfig {
        item_max_bytes: budget,
        ..CacheConfig::default()
    };
    for (table, ttl) in TABLES {
        config.tables.insert(
            table.to_string(),
            TableCacheConfig {
                item_ttl_ms: Some(ttl),
                ..TableCacheConfig::default()
            },
        );
    }
    let cache = ItemCache::new(&config, Duration::from_secs(1), Arc::new(Metrics::new()));

    // The Zipf law's cumulative weights: key i (0 = most popular) has weight 1 / (i + 1)^s.
    let mut cdf = Vec::with_capacity(keys as usize);
    let mut total = 0.0;
    for i in 0..keys {
        total += 1.0 / ((i + 1) as f64).powf(exponent);
        cdf.push(total);
    }
    let mut rng = fastrand::Rng::with_seed(29);
    // Popularity is not key order: rank i is a scrambled key.
    let scramble = |rank: u64| rank.wrapping_mul(0x2545_f491_4f6c_dd1d) % keys;

    let started = Instant::now();
    let (mut hits, mut measured) = (0u64, 0u64);
    for n in 0..requests {
        if n % 1024 == 0 {
            let due = Duration::from_secs_f64(n as f64 / rate);
            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
        let target = rng.f64() * total;
        let rank = cdf.partition_point(|&c| c < target) as u64;
        let (key, item) = request(scramble(rank));
        let hit = cache.get(&key).is_some_and(|c| c.whole.is_some());
        if !hit {
            let ticket = cache.begin_fill();
            cache.fill_answer(&key, ticket, None, Some(item));
        }
        // The first quarter warms the cache.
        if n >= requests / 4 {
            measured += 1;
            hits += u64::from(hit);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (entries, bytes) = cache.usage();
    println!(
        "{requests} requests over {keys} keys (Zipf {exponent}) in {elapsed:.1} s, budget {} MiB",
        budget >> 20
    );
    println!(
        "hit ratio {:.4} over the last {measured}; {entries} items held in {:.1} MiB",
        hits as f64 / measured as f64,
        bytes as f64 / (1 << 20) as f64
    );
}
