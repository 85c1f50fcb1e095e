//! The fleet tier's figures, each beside its baseline from the same run: proxies in this
//! process sharing one real `redis-server` (standalone), in front of the emulator.
//!
//! 1. **Cross-node staleness**: a write acknowledged by one node, then reads through another
//!    until one returns it, with DynamoDB's eventually consistent reads 200 ms behind.
//! 2. The same while the engine is paused, resumed, killed and restarted: the longest any read
//!    stayed stale.
//! 3. **The engine lost under load** (killed, then paused): errors, latency before and during,
//!    and how long after its return every node answers from memory again.
//! 4. **DynamoDB reads** on a skewed workload spread round-robin: one node alone, three nodes
//!    without the shared tier, three with it.
//! 5. **A shared-tier hit** against a hit in memory and one engine round trip.
//! 6. **A node joining a warm fleet**: its hit ratio against the fleet's, second by second.
//!
//!     cargo bench --bench fleet     # needs redis-server on PATH; about three minutes
//!
//! Bounded: each section runs for a fixed time or count and stops by itself.

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::lagging::Lagging;
use common::redis::{self as engine, RedisServer};
use common::shim::Shim;
use common::*;
use serde_json::json;

const TABLE: &str = "fleet";
/// Keys of the skewed workloads, and their Zipf exponent.
const KEYS: usize = 20_000;
const ZIPF: f64 = 0.99;
/// A 400-byte item, as in the memory figures.
const PAD: usize = 340;

fn key(k: usize) -> serde_json::Value {
    json!({"pk": {"S": format!("k{k}")}, "sk": {"N": "1"}})
}

fn item(k: usize, ver: u64) -> serde_json::Value {
    json!({"pk": {"S": format!("k{k}")}, "sk": {"N": "1"}, "ver": {"N": ver.to_string()},
           "pad": {"S": "x".repeat(PAD)}})
}

async fn put(client: &Pooled, url: &str, k: usize, ver: u64) -> bool {
    let body = json!({"TableName": TABLE, "Item": item(k, ver)}).to_string();
    matches!(dynamo_on(client, url, "PutItem", &body).await, Ok(r) if r.status == 200)
}

/// The version read (0: not found) and whether the proxy answered from a cache; `None` on
/// an error.
async fn get(client: &Pooled, url: &str, k: usize) -> Option<(u64, bool)> {
    let body = json!({"TableName": TABLE, "Key": key(k)}).to_string();
    let answer = dynamo_on(client, url, "GetItem", &body).await.ok()?;
    if answer.status != 200 {
        return None;
    }
    let ver = answer.json()["Item"]["ver"]["N"]
        .as_str()
        .map_or(0, |v| v.parse().unwrap());
    Some((ver, answer.cache_status() == "hit"))
}

/// Writes version 1 of every key straight to DynamoDB, 25 to a request.
async fn load(url: &str, keys: usize) {
    let client = pooled();
    for chunk in (0..keys).collect::<Vec<_>>().chunks(25) {
        let puts: Vec<_> = chunk
            .iter()
            .map(|&k| json!({"PutRequest": {"Item": item(k, 1)}}))
            .collect();
        let body = json!({"RequestItems": {TABLE: puts}}).to_string();
        let answer = dynamo_on(&client, url, "BatchWriteItem", &body)
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.json());
        assert_eq!(answer.json()["UnprocessedItems"], json!({}));
    }
}

/// Key ranks drawn from a Zipf law (rank 0 the most popular), seeded, scrambled over the keys.
struct Zipf {
    cdf: Vec<f64>,
    rng: fastrand::Rng,
}

impl Zipf {
    fn new(keys: usize, exponent: f64, seed: u64) -> Zipf {
        let mut total = 0.0;
        let cdf = (0..keys)
            .map(|i| {
                total += 1.0 / ((i + 1) as f64).powf(exponent);
                total
            })
            .collect();
        Zipf {
            cdf,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    fn next(&mut self) -> usize {
        let target = self.rng.f64() * self.cdf.last().unwrap();
        let rank = self.cdf.partition_point(|&c| c < target);
        rank.wrapping_mul(0x9e37_79b9) % self.cdf.len()
    }
}

/// `n` proxies before `upstream`; in the fleet `fleet` on `redis` when one is given.
async fn nodes(upstream: &str, n: usize, fleet: Option<(&str, &str)>) -> Vec<Proxy> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(node(upstream, fleet).await);
    }
    nodes
}

async fn node(upstream: &str, fleet: Option<(&str, &str)>) -> Proxy {
    let node = Proxy::start_with(upstream, |c| {
        if let Some((redis, name)) = fleet {
            c.fleet.redis = vec![redis.to_string()];
            c.fleet.name = name.to_string();
        }
    })
    .await;
    if fleet.is_some() {
        wait_serving(&node).await;
    }
    node
}

/// Waits (up to 10 s) until `node` answers from memory; how long that took.
async fn wait_serving(node: &Proxy) -> Duration {
    let start = Instant::now();
    while node.metric("dynamo_cache_fleet_memory_serving").await != 1.0 {
        assert!(start.elapsed() < Duration::from_secs(10), "never serving");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

async fn stop(nodes: Vec<Proxy>) {
    for mut node in nodes {
        node.stop().await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    format!(
        "n {}, p50 {}, p99 {}, max {}",
        samples.len(),
        us(percentile(&samples, 0.5)),
        us(percentile(&samples, 0.99)),
        us(samples.last().copied().unwrap_or_default())
    )
}

/// Writes through node `i % 3`, each followed by reads through node `i + 1` until one returns
/// it, until `done` is set (or `rounds` writes): how long each write stayed invisible there
/// (zero when the first read saw it), and how many requests failed.
async fn staleness(
    urls: &[String],
    keys: usize,
    rounds: usize,
    done: &AtomicBool,
) -> (Vec<Duration>, usize) {
    let client = pooled();
    let mut versions = vec![1u64; keys];
    let (mut stale_for, mut errors) = (Vec::new(), 0);
    for i in 0..rounds {
        if done.load(Ordering::Relaxed) {
            break;
        }
        let k = i % keys;
        let (writer, reader) = (&urls[i % urls.len()], &urls[(i + 1) % urls.len()]);
        if !put(&client, writer, k, versions[k] + 1).await {
            errors += 1;
            continue;
        }
        versions[k] += 1;
        let acked = Instant::now();
        for attempt in 0.. {
            let began = Instant::now();
            match get(&client, reader, k).await {
                Some((ver, _)) if ver >= versions[k] => {
                    stale_for.push(if attempt == 0 {
                        Duration::ZERO
                    } else {
                        began - acked
                    });
                    break;
                }
                Some(_) if acked.elapsed() > Duration::from_secs(5) => {
                    stale_for.push(acked.elapsed());
                    break;
                }
                Some(_) => {}
                None => errors += 1,
            }
        }
    }
    (stale_for, errors)
}

async fn cross_node_staleness() {
    const KEYS_HERE: usize = 200;
    let lagging = Lagging::start(Duration::from_millis(200)).await;
    create_table(&sdk(&lagging.primary.url), TABLE).await;
    create_table(&sdk(&lagging.replica.url), TABLE).await;
    let server = Arc::new(Mutex::new(RedisServer::start()));
    let redis = server.lock().unwrap().url();
    let nodes = nodes(&lagging.url, 3, Some((&redis, "staleness"))).await;
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let client = pooled();
    for k in 0..KEYS_HERE {
        assert!(put(&client, &urls[0], k, 1).await);
    }
    lagging.settle().await;
    for url in &urls {
        for k in 0..KEYS_HERE {
            get(&client, url, k).await.unwrap();
        }
    }

    let quiet = AtomicBool::new(false);
    let (stale_for, errors) = staleness(&urls, KEYS_HERE, 3000, &quiet).await;
    let first = stale_for.iter().filter(|d| d.is_zero()).count();
    println!(
        "1. cross-node staleness, 3 nodes, replica 200 ms behind: {} writes, first read through \
         another node fresh for {first}; time until a read there returned the write (0 when the first \
         did): {}; errors {errors}",
        stale_for.len(),
        summary(stale_for)
    );

    // The engine paused for 1 s, resumed, killed, restarted 2 s later.
    let done = Arc::new(AtomicBool::new(false));
    let faults = tokio::spawn({
        let (server, done) = (server.clone(), done.clone());
        async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            server.lock().unwrap().pause();
            tokio::time::sleep(Duration::from_secs(1)).await;
            server.lock().unwrap().resume();
            tokio::time::sleep(Duration::from_secs(2)).await;
            server.lock().unwrap().kill();
            tokio::time::sleep(Duration::from_secs(2)).await;
            tokio::task::spawn_blocking(move || server.lock().unwrap().restart())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(3)).await;
            done.store(true, Ordering::Relaxed);
        }
    });
    let (mut stale_for, errors) = staleness(&urls, KEYS_HERE, usize::MAX, &done).await;
    faults.await.unwrap();
    stale_for.sort();
    let over = |bound: Duration| stale_for.iter().filter(|&&d| d > bound).count();
    println!(
        "2. the same through an engine pause (1 s), kill and restart (2 s later): {}, \
         stale > 5 ms: {}, > 1 s: {}; errors {errors}",
        summary(stale_for.clone()),
        over(Duration::from_millis(5)),
        over(Duration::from_secs(1)),
    );
    stop(nodes).await;
}

/// One request of the outage load: when it began (since the start), how long it took, and
/// whether it succeeded.
type Sample = (Duration, Duration, bool);

async fn engine_lost_under_load() {
    let upstream = Upstream::start().await;
    create_table(&sdk(&upstream.url), TABLE).await;
    load(&upstream.url, 5_000).await;
    let mut server = RedisServer::start();
    let nodes = nodes(&upstream.url, 3, Some((&server.url(), "outage"))).await;
    let urls: Arc<Vec<String>> = Arc::new(nodes.iter().map(|n| n.url.clone()).collect());
    let start = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..6 {
        let (urls, done) = (urls.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let client = pooled();
            let mut zipf = Zipf::new(5_000, ZIPF, t);
            let mut samples: Vec<Sample> = Vec::new();
            let mut i = t as usize;
            while !done.load(Ordering::Relaxed) {
                let (url, k) = (&urls[i % urls.len()], zipf.next());
                let began = Instant::now();
                let ok = if i.is_multiple_of(20) {
                    put(&client, url, k, i as u64).await
                } else {
                    get(&client, url, k).await.is_some()
                };
                samples.push((began - start, began.elapsed(), ok));
                i += 1;
            }
            samples
        }));
    }
    let at = |secs: f64| tokio::time::sleep_until((start + Duration::from_secs_f64(secs)).into());
    at(4.0).await;
    server.kill();
    at(8.0).await;
    server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    let back = start.elapsed();
    for node in &nodes {
        wait_serving(node).await;
    }
    let killed_recovery = start.elapsed() - back;
    at(13.0).await;
    server.pause();
    at(16.0).await;
    server.resume();
    let resumed = start.elapsed();
    for node in &nodes {
        wait_serving(node).await;
    }
    let paused_recovery = start.elapsed() - resumed;
    at(21.0).await;
    done.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.unwrap());
    }
    let phase = |from: f64, to: f64| {
        samples
            .iter()
            .filter(|(at, _, _)| at.as_secs_f64() >= from && at.as_secs_f64() < to)
            .map(|&(_, took, _)| took)
            .collect::<Vec<_>>()
    };
    let errors = samples.iter().filter(|(_, _, ok)| !ok).count();
    println!(
        "3. the engine lost under load (6 clients, 1 in 20 a write, Zipf {ZIPF} over 5,000 keys, \
         3 nodes): {} requests, errors {errors}",
        samples.len()
    );
    println!("   engine up (2-4 s):        {}", summary(phase(2.0, 4.0)));
    println!("   engine killed (4-8 s):    {}", summary(phase(4.0, 8.0)));
    println!(
        "   restarted at {:.1} s: every node's memory answering {} ms later",
        back.as_secs_f64(),
        killed_recovery.as_millis()
    );
    println!(
        "   engine up (10-13 s):      {}",
        summary(phase(10.0, 13.0))
    );
    println!(
        "   engine paused (13-16 s):  {}",
        summary(phase(13.0, 16.0))
    );
    println!(
        "   resumed at {:.1} s: every node's memory answering {} ms later",
        resumed.as_secs_f64(),
        paused_recovery.as_millis()
    );
    println!(
        "   engine up (18-21 s):      {}",
        summary(phase(18.0, 21.0))
    );
    stop(nodes).await;
    drop(server);
}

/// Sends the seeded skewed read sequence round-robin over `urls`, 6 at a time: the share of
/// answers that were hits.
async fn skewed_reads(urls: &[String], reads: usize) -> f64 {
    let sequence: Arc<Vec<usize>> = {
        let mut zipf = Zipf::new(KEYS, ZIPF, 4);
        Arc::new((0..reads).map(|_| zipf.next()).collect())
    };
    let urls = Arc::new(urls.to_vec());
    let (next, hits) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (sequence, urls, next, hits) =
            (sequence.clone(), urls.clone(), next.clone(), hits.clone());
        tasks.push(tokio::spawn(async move {
            let client = pooled();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&k) = sequence.get(i) else { break };
                let (_, hit) = get(&client, &urls[i % urls.len()], k).await.unwrap();
                if hit {
                    hits.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    hits.load(Ordering::Relaxed) as f64 / reads as f64
}

async fn dynamodb_reads_shared_hits_and_joining() {
    const READS: usize = 30_000;
    let upstream = Upstream::start().await;
    create_table(&sdk(&upstream.url), TABLE).await;
    load(&upstream.url, KEYS).await;
    let relay = Shim::relay(&upstream.url, 0).await;
    let server = RedisServer::start();
    let redis = server.url();

    println!(
        "4. DynamoDB reads for {READS} GetItems, Zipf {ZIPF} over {KEYS} keys, 6 clients, \
         round-robin over the nodes:"
    );
    let mut one = 0;
    for (label, n, fleet) in [
        ("one node", 1, None),
        ("three nodes, no shared tier", 3, None),
        (
            "three nodes, one fleet",
            3,
            Some((redis.as_str(), "skewed")),
        ),
    ] {
        let nodes = nodes(&relay.url, n, fleet).await;
        let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
        let before = relay.count("GetItem");
        let hit_ratio = skewed_reads(&urls, READS).await;
        let reads = relay.count("GetItem") - before;
        if n == 1 {
            one = reads;
        }
        println!(
            "   {label:<28} {reads:>6} reads ({:.2}x one node), hit ratio {:.1}%",
            reads as f64 / one as f64,
            hit_ratio * 100.0
        );
        stop(nodes).await;
    }

    // 5. Fresh nodes of the same fleet: empty memories over a warm shared tier.
    const SAMPLE: usize = 2_000;
    let pair = nodes(&relay.url, 2, Some((&redis, "hits"))).await;
    let client = pooled();
    for k in 0..SAMPLE {
        get(&client, &pair[0].url, k).await.unwrap();
    }
    let timed = async |url: &str| {
        let mut took = Vec::with_capacity(SAMPLE);
        for k in 0..SAMPLE {
            let began = Instant::now();
            let (_, hit) = get(&client, url, k).await.unwrap();
            took.push(began.elapsed());
            assert!(hit);
        }
        took.sort();
        took
    };
    let shared_before = pair[1]
        .metric(r#"dynamo_cache_fleet_lookups_total{result="hit"}"#)
        .await;
    let shared = timed(&pair[1].url).await;
    let shared_hits = pair[1]
        .metric(r#"dynamo_cache_fleet_lookups_total{result="hit"}"#)
        .await
        - shared_before;
    let memory = timed(&pair[1].url).await;
    let rtt = {
        let client = ::redis::Client::open(redis.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut took = Vec::with_capacity(SAMPLE);
        for k in 0..SAMPLE {
            let began = Instant::now();
            let _: Option<Vec<u8>> = ::redis::cmd("GET")
                .arg(format!("rtt:{k}"))
                .query_async(&mut conn)
                .await
                .unwrap();
            took.push(began.elapsed());
        }
        took.sort();
        took
    };
    let p50 = |s: &[Duration]| percentile(s, 0.5);
    println!(
        "5. GetItem, one connection, {SAMPLE} keys: a shared-tier hit p50 {} ({shared_hits} of \
         them answered by the shared tier), a hit in memory p50 {}, an engine round trip \
         (GET) p50 {}; the shared tier adds {} = the round trip + {}",
        us(p50(&shared)),
        us(p50(&memory)),
        us(p50(&rtt)),
        us(p50(&shared).saturating_sub(p50(&memory))),
        us(p50(&shared)
            .saturating_sub(p50(&memory))
            .saturating_sub(p50(&rtt))),
    );
    stop(pair).await;

    // 6. Two nodes warm for 8 s, then a third joins; hit ratios per second.
    let mut members = nodes(&relay.url, 2, Some((&redis, "join"))).await;
    let urls = Arc::new(Mutex::new(
        members.iter().map(|n| n.url.clone()).collect::<Vec<_>>(),
    ));
    let start = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..6 {
        let (urls, done) = (urls.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let client = pooled();
            let mut zipf = Zipf::new(KEYS, ZIPF, 100 + t);
            let mut seen: Vec<(Duration, usize, bool)> = Vec::new();
            let mut i = t as usize;
            while !done.load(Ordering::Relaxed) {
                let (node, url) = {
                    let urls = urls.lock().unwrap();
                    let node = i % urls.len();
                    (node, urls[node].clone())
                };
                let (_, hit) = get(&client, &url, zipf.next()).await.unwrap();
                seen.push((start.elapsed(), node, hit));
                i += 1;
            }
            seen
        }));
    }
    tokio::time::sleep_until((start + Duration::from_secs(8)).into()).await;
    members.push(node(&relay.url, Some((&redis, "join"))).await);
    let joined = start.elapsed();
    urls.lock().unwrap().push(members[2].url.clone());
    tokio::time::sleep(Duration::from_secs(10)).await;
    done.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    for task in tasks {
        seen.extend(task.await.unwrap());
    }
    println!(
        "6. a third node joins a fleet of two warmed for 8 s (6 clients, Zipf {ZIPF} over {KEYS} \
         keys, round-robin); hit ratio per second after it joined:"
    );
    for second in 0..10 {
        let from = joined + Duration::from_secs(second);
        let to = from + Duration::from_secs(1);
        let ratio = |joiner: bool| {
            let window: Vec<bool> = seen
                .iter()
                .filter(|(at, node, _)| *at >= from && *at < to && (*node == 2) == joiner)
                .map(|&(_, _, hit)| hit)
                .collect();
            window.iter().filter(|&&h| h).count() as f64 * 100.0 / window.len().max(1) as f64
        };
        let (new, fleet) = (ratio(true), ratio(false));
        println!(
            "   {:>2} s: joiner {new:5.1}%, the two others {fleet:5.1}%, {:+.1} points",
            second + 1,
            new - fleet
        );
    }
    stop(members).await;
    drop(server);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !engine::available("bench fleet") {
        return;
    }
    cross_node_staleness().await;
    engine_lost_under_load().await;
    dynamodb_reads_shared_hits_and_joining().await;
}
