//! What the item cache costs in memory: the release binary in front of an emulator (in this
//! process, so its memory is not counted), filled with 1,000,000 items of 400 bytes by reading
//! them through it (BatchGetItem, 100 keys a request), then its resident memory against the
//! items' payload. The items are written straight to the emulator first, so the proxy holds
//! nothing but its caches (writes through it also keep short-lived per-key write stamps).
//!
//!     cargo bench --bench cache_memory               # 1,000,000 items
//!     MEM_ITEMS=100000 cargo bench --bench cache_memory
//!     MEM_PAUSE=1 cargo bench --bench cache_memory   # 40 s to look at the proxy (its PID printed)
//!
//! Payload is counted two ways: DynamoDB's item size (attribute names plus values, 400 bytes)
//! and the GetItem answer the cache holds and serves (the same item as JSON). Prints the
//! process's RSS before and after, and both ratios.

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use common::process::{Served, rss_bytes};
use common::{dynamo, http_get};

const ITEM_SIZE: usize = 400;
/// Requests in flight while writing and while reading.
const IN_FLIGHT: u64 = 8;

/// Item `i` as DynamoDB JSON, padded so that names plus values come to `ITEM_SIZE` bytes.
fn item(i: u64) -> String {
    let pk = format!("k{i:07}");
    // Names: pk, sk, v (5 bytes); values: pk, sk = "0", v = padding.
    let pad = ITEM_SIZE - 5 - pk.len() - 1;
    format!(
        r#"{{"pk":{{"S":"{pk}"}},"sk":{{"N":"0"}},"v":{{"S":"{}"}}}}"#,
        "x".repeat(pad)
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let items: u64 = std::env::var("MEM_ITEMS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let upstream = dynamo_cache::embedded::Embedded::start(None).await.unwrap();
    let config =
        std::env::temp_dir().join(format!("dynamo-cache-memory-{}.toml", std::process::id()));
    // Room for every item, no time expiry: the cache holds all of them at the end.
    std::fs::write(
        &config,
        "[cache]\nitem_max_bytes = 4294967296\nitem_ttl_ms = 0\n",
    )
    .unwrap();
    let proxy = Served::start(
        env!("CARGO_BIN_EXE_dynamo-cache"),
        &upstream.url,
        Some(&config),
    );
    let create = r#"{"TableName":"mem","AttributeDefinitions":[{"AttributeName":"pk","AttributeType":"S"},{"AttributeName":"sk","AttributeType":"N"}],"KeySchema":[{"AttributeName":"pk","KeyType":"HASH"},{"AttributeName":"sk","KeyType":"RANGE"}],"BillingMode":"PAY_PER_REQUEST"}"#;
    assert_eq!(dynamo(&proxy.url, "CreateTable", create).await.status, 200);
    // One write first, so the table's key schema is known and the process has warmed up.
    let first = format!(r#"{{"TableName":"mem","Item":{}}}"#, item(0));
    assert_eq!(dynamo(&proxy.url, "PutItem", &first).await.status, 200);
    let before = rss_bytes(proxy.pid());

    // Straight to the emulator: 25 items a request, a few requests in flight.
    let next = Arc::new(AtomicU64::new(1));
    let mut writers = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (url, next) = (upstream.url.clone(), next.clone());
        writers.push(tokio::spawn(async move {
            loop {
                let start = next.fetch_add(25, Ordering::Relaxed);
                if start >= items {
                    return;
                }
                let puts: Vec<String> = (start..(start + 25).min(items))
                    .map(|i| format!(r#"{{"PutRequest":{{"Item":{}}}}}"#, item(i)))
                    .collect();
                let body = format!(r#"{{"RequestItems":{{"mem":[{}]}}}}"#, puts.join(","));
                let answer = dynamo(&url, "BatchWriteItem", &body).await;
                assert_eq!(
                    answer.status,
                    200,
                    "{}",
                    String::from_utf8_lossy(&answer.body)
                );
                assert!(
                    !answer.body.windows(8).any(|w| w == b"PutReque"),
                    "unprocessed items; the emulator should take every write"
                );
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }

    // Through the proxy: every read is a miss that fills the item cache.
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(1));
    let mut readers = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (url, next) = (proxy.url.clone(), next.clone());
        readers.push(tokio::spawn(async move {
            loop {
                let start = next.fetch_add(100, Ordering::Relaxed);
                if start >= items {
                    return;
                }
                let keys: Vec<String> = (start..(start + 100).min(items))
                    .map(|i| format!(r#"{{"pk":{{"S":"k{i:07}"}},"sk":{{"N":"0"}}}}"#))
                    .collect();
                let body = format!(
                    r#"{{"RequestItems":{{"mem":{{"Keys":[{}]}}}}}}"#,
                    keys.join(",")
                );
                let answer = dynamo(&url, "BatchGetItem", &body).await;
                assert_eq!(
                    answer.status,
                    200,
                    "{}",
                    String::from_utf8_lossy(&answer.body)
                );
            }
        }));
    }
    for reader in readers {
        reader.await.unwrap();
    }
    let fill_secs = started.elapsed().as_secs_f64();
    let after = rss_bytes(proxy.pid());

    let stats = http_get(&format!("{}/cache", proxy.admin_url))
        .await
        .unwrap()
        .json();
    let entries = stats["item"]["entries"].as_u64().unwrap();
    let weighed = stats["item"]["bytes"].as_u64().unwrap();
    let answer_bytes = (r#"{"Item":}"#.len() + item(1).len()) as u64;
    if std::env::var("MEM_PAUSE").is_ok() {
        eprintln!("PID {}", proxy.pid());
        std::thread::sleep(std::time::Duration::from_secs(40));
    }
    assert!(proxy.terminate());
    let _ = std::fs::remove_file(&config);
    upstream.stop().await;

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let payload = items * ITEM_SIZE as u64;
    let wire = items * answer_bytes;
    println!(
        "{items} items read through the proxy in {fill_secs:.0} s; item cache entries {entries}"
    );
    println!(
        "RSS before {:.1} MiB, after {:.1} MiB",
        mib(before),
        mib(after)
    );
    println!(
        "payload: {:.1} MiB as DynamoDB counts items ({ITEM_SIZE} B each), {:.1} MiB as GetItem answers ({answer_bytes} B each)",
        mib(payload),
        mib(wire)
    );
    println!(
        "RSS / item payload       = {:.2}x   (growth only: {:.2}x)",
        after as f64 / payload as f64,
        (after - before) as f64 / payload as f64
    );
    println!(
        "RSS / GetItem answer bytes = {:.2}x   (growth only: {:.2}x)",
        after as f64 / wire as f64,
        (after - before) as f64 / wire as f64
    );
    println!(
        "the item cache weighs its entries at {:.1} MiB: RSS growth / weighed bytes = {:.2}x",
        mib(weighed),
        (after - before) as f64 / weighed as f64
    );
    assert_eq!(entries, items, "every item should be cached");
}
