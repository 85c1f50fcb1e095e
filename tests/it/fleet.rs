//! A fleet: several proxies sharing one engine (a real `redis-server`, standalone or a local
//! 3-master cluster) in front of one DynamoDB whose eventually consistent reads lag
//! ([`Lagging`]). What a user would notice: what each node answers, what DynamoDB was asked,
//! and the fleet's metrics.
//!
//! Skipped, with a message saying how to run them, where `redis-server` is not installed.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::checker;
use crate::common::lagging::Lagging;
use crate::common::redis::{self, RedisCluster, RedisServer};
use crate::common::*;

const TABLE: &str = "fleet";
/// How late the replica applies writes: long enough that a fill reading it after a write
/// would see the old version.
const LAG: Duration = Duration::from_millis(300);

fn key(pk: &str) -> Value {
    json!({"pk": {"S": pk}, "sk": {"N": "1"}})
}

fn item(pk: &str, ver: u64) -> Value {
    json!({"pk": {"S": pk}, "sk": {"N": "1"}, "ver": {"N": ver.to_string()}, "g": {"S": "x"}})
}

/// A fleet of `n` proxies on `engine` in front of a lagging DynamoDB with the table.
async fn fleet(engine: Vec<String>, n: usize) -> (Lagging, Vec<Proxy>) {
    fleet_with(engine, n, |c| {
        // A loaded test machine: generous, so no test fails on a slow engine call.
        c.fleet.timeout_ms = 200;
    })
    .await
}

async fn fleet_with(
    engine: Vec<String>,
    n: usize,
    adjust: impl Fn(&mut dynamo_cache::Config) + Clone + Send + 'static,
) -> (Lagging, Vec<Proxy>) {
    let lagging = Lagging::start(LAG).await;
    for table in [TABLE, checker::TABLE] {
        create_table(&sdk(&lagging.primary.url), table).await;
        create_table(&sdk(&lagging.replica.url), table).await;
    }
    let mut nodes = Vec::new();
    for _ in 0..n {
        let engine = engine.clone();
        nodes.push(
            Proxy::start_with(&lagging.url, {
                let adjust = adjust.clone();
                move |c| {
                    c.fleet.redis = engine;
                    c.fleet.name = "test".into();
                    adjust(c);
                }
            })
            .await,
        );
    }
    for node in &nodes {
        node.wait_memory_serving().await;
    }
    (lagging, nodes)
}

impl Proxy {
    /// Waits (up to 10 s) until this node's memory answers: it hears the fleet.
    async fn wait_memory_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.metric("dynamo_cache_fleet_memory_serving").await != 1.0 {
            assert!(
                Instant::now() < deadline,
                "the node never heard its channels:\n{}",
                self.fleet_metrics().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The value of `sample` once it is 0, or its last value after 3 s.
    async fn metric_reaching_zero(&self, sample: &str) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let value = self.metric(sample).await;
            if value == 0.0 || Instant::now() >= deadline {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The fleet's metrics, for failure messages.
    async fn fleet_metrics(&self) -> String {
        let all = self.metrics().await;
        let lines: Vec<&str> = all
            .lines()
            .filter(|l| l.contains("fleet") && !l.starts_with('#') && !l.contains("_bucket"))
            .collect();
        lines.join("\n")
    }
}

async fn put(node: &Proxy, pk: &str, ver: u64) {
    let answer = dynamo(
        &node.url,
        "PutItem",
        &json!({"TableName": TABLE, "Item": item(pk, ver)}).to_string(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.json());
}

/// The version a GetItem through `node` returns (0: not found), and its cache status.
async fn get(node: &Proxy, pk: &str) -> (u64, String) {
    let answer = dynamo(
        &node.url,
        "GetItem",
        &json!({"TableName": TABLE, "Key": key(pk)}).to_string(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.json());
    answer.assert_crc();
    let ver = answer.json()["Item"]["ver"]["N"]
        .as_str()
        .map_or(0, |v| v.parse().unwrap());
    (ver, answer.cache_status().to_string())
}

/// The behaviour every engine kind must have: one node's miss fills the fleet, and one node's
/// write reaches every node's memory and the shared tier before it is acknowledged.
async fn shares_items_and_writes(engine: Vec<String>) {
    let (lagging, nodes) = fleet(engine, 3).await;
    put(&nodes[0], "a", 1).await;
    lagging.settle().await;

    // A miss on one node is read from DynamoDB once; the others find it in the shared tier.
    // (The writer holds what it wrote in its own memory.)
    assert_eq!(get(&nodes[0], "a").await, (1, "hit".to_string()));
    assert_eq!(get(&nodes[1], "a").await, (1, "miss".to_string()));
    let reads = lagging.count("GetItem");
    assert_eq!(reads, 1);
    assert_eq!(get(&nodes[2], "a").await, (1, "hit".to_string()));
    assert_eq!(
        lagging.count("GetItem"),
        reads,
        "no other node read DynamoDB"
    );
    let lookups = |result: &str| format!("dynamo_cache_fleet_lookups_total{{result=\"{result}\"}}");
    assert_eq!(nodes[1].metric(&lookups("miss")).await, 1.0);
    assert_eq!(nodes[2].metric(&lookups("hit")).await, 1.0);
    // Now in every node's memory.
    for node in &nodes {
        assert_eq!(get(node, "a").await, (1, "hit".to_string()));
    }

    // A write through node 0: every node answers the new version at once (its memory
    // dropped the key, the shared tier holds a tombstone), though the replica still lags:
    // the fill after the write reads strongly.
    put(&nodes[0], "a", 2).await;
    let strong = lagging.strong_reads("GetItem");
    for node in &nodes[1..] {
        let deadline = Instant::now() + Duration::from_millis(500);
        loop {
            let (ver, _) = get(node, "a").await;
            if ver == 2 {
                break;
            }
            assert_eq!(ver, 1);
            assert!(Instant::now() < deadline, "node never saw the write");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert!(
        lagging.strong_reads("GetItem") > strong,
        "the fill after the write read strongly"
    );
    // Still version 2 after the replica caught up and from every node's memory.
    lagging.settle().await;
    for node in &nodes {
        assert_eq!(get(node, "a").await.0, 2);
    }
    assert!(
        nodes[1]
            .metric("dynamo_cache_fleet_invalidations_received_total")
            .await
            >= 1.0
    );
    assert_eq!(
        nodes[0]
            .metric("dynamo_cache_fleet_invalidations_sent_total")
            .await,
        2.0
    );
    for mut node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_engine_shares_items_and_writes_across_nodes() {
    if !redis::available("fleet: standalone engine") {
        return;
    }
    let server = RedisServer::start();
    shares_items_and_writes(vec![server.url()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_engine_shares_items_and_writes_across_nodes() {
    if !redis::available("fleet: cluster engine") {
        return;
    }
    let cluster = RedisCluster::start();
    shares_items_and_writes(cluster.urls()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_engine_nothing_fails_and_memory_waits_until_it_is_back() {
    if !redis::available("fleet: engine stopped") {
        return;
    }
    let mut server = RedisServer::start();
    let (lagging, nodes) = fleet(vec![server.url()], 2).await;
    put(&nodes[0], "a", 1).await;
    lagging.settle().await;
    assert_eq!(get(&nodes[0], "a").await.0, 1);
    assert_eq!(get(&nodes[0], "a").await, (1, "hit".to_string()));

    server.kill();
    // Within a few probes, neither node answers from memory; every request still succeeds.
    let deadline = Instant::now() + Duration::from_secs(2);
    while nodes[1].metric("dynamo_cache_fleet_memory_serving").await != 0.0
        || nodes[0].metric("dynamo_cache_fleet_memory_serving").await != 0.0
    {
        assert!(
            Instant::now() < deadline,
            "memory kept answering without the engine"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for ver in 2..6 {
        put(&nodes[ver as usize % 2], "a", ver).await;
        for node in &nodes {
            let (seen, status) = get(node, "a").await;
            assert_eq!(
                seen, ver,
                "read after a write acknowledged while the engine was down"
            );
            assert_ne!(status, "hit");
        }
    }
    assert_eq!(
        nodes[0]
            .metric_reaching_zero("dynamo_cache_fleet_engine_up")
            .await,
        0.0
    );
    assert!(
        nodes[0]
            .metric("dynamo_cache_fleet_errors_total{call=\"tombstone\"}")
            .await
            >= 1.0
    );

    // Back: memory answers again within two seconds, and the shared tier is used again.
    server.restart();
    let back = Instant::now();
    for node in &nodes {
        node.wait_memory_serving().await;
    }
    assert!(
        back.elapsed() < Duration::from_secs(2),
        "{:?}",
        back.elapsed()
    );
    lagging.settle().await;
    assert_eq!(get(&nodes[0], "a").await.0, 5);
    assert_eq!(get(&nodes[1], "a").await, (5, "hit".to_string()));
    for mut node in nodes {
        node.stop().await;
    }
}

/// How stale a read through one node may be after a write through another while the engine
/// fails (the issue's bound).
const CROSS_NODE_UNDER_FAULTS: Duration = Duration::from_secs(1);

/// The randomised read-your-writes checker over three nodes, with writes and reads spread
/// over them, while the engine is paused, resumed and restarted (or a cluster node is killed
/// and restarted).
async fn checker_through_faults(engine: Vec<String>, faults: impl AsyncFnOnce()) {
    let (lagging, nodes) = fleet_with(engine, 3, |_| {}).await;
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let index_sees = lagging.index_sees();
    let run = tokio::spawn(async move {
        checker::run_fleet(
            &urls,
            Duration::from_secs(6),
            3,
            4,
            index_sees,
            CROSS_NODE_UNDER_FAULTS,
        )
        .await
    });
    faults().await;
    let report = run.await.unwrap();
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    let reads: u64 = report.reads.values().map(|(n, _)| n).sum();
    let hits: u64 = report.reads.values().map(|(_, h)| h).sum();
    assert!(reads > 100 && hits > 0, "{report:?}");
    eprintln!("fleet checker: {report:?}");
    drop(lagging);
    for mut node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_holds_across_three_nodes_while_the_engine_pauses_and_restarts() {
    if !redis::available("fleet: checker, standalone") {
        return;
    }
    let server = std::sync::Arc::new(std::sync::Mutex::new(RedisServer::start()));
    let url = server.lock().unwrap().url();
    let faults = server.clone();
    checker_through_faults(vec![url], async move || {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        faults.lock().unwrap().pause();
        tokio::time::sleep(Duration::from_millis(700)).await;
        faults.lock().unwrap().resume();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let restart = faults.clone();
        tokio::task::spawn_blocking(move || restart.lock().unwrap().restart())
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_holds_across_three_nodes_when_a_cluster_node_dies() {
    if !redis::available("fleet: checker, cluster") {
        return;
    }
    let cluster = std::sync::Arc::new(std::sync::Mutex::new(RedisCluster::start()));
    let urls = cluster.lock().unwrap().urls();
    let faults = cluster.clone();
    checker_through_faults(urls, async move || {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        faults.lock().unwrap().nodes[1].kill();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let restart = faults.clone();
        tokio::task::spawn_blocking(move || {
            let mut cluster = restart.lock().unwrap();
            cluster.nodes[1].restart();
            cluster.wait_ok();
        })
        .await
        .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_follows_a_stream_and_the_fleet_hears_what_it_reads() {
    if !redis::available("fleet: streams") {
        return;
    }
    let server = RedisServer::start();
    let upstream = Upstream::start().await;
    let table = r#"{"TableName":"streamed","AttributeDefinitions":[{"AttributeName":"pk","AttributeType":"S"},{"AttributeName":"sk","AttributeType":"N"}],"KeySchema":[{"AttributeName":"pk","KeyType":"HASH"},{"AttributeName":"sk","KeyType":"RANGE"}],"BillingMode":"PAY_PER_REQUEST","StreamSpecification":{"StreamEnabled":true,"StreamViewType":"KEYS_ONLY"}}"#;
    assert_eq!(
        dynamo(&upstream.url, "CreateTable", table).await.status,
        200
    );
    let put = |url: String, v: u32| async move {
        let body = format!(
            r#"{{"TableName":"streamed","Item":{{"pk":{{"S":"a"}},"sk":{{"N":"1"}},"v":{{"N":"{v}"}}}}}}"#
        );
        assert_eq!(dynamo(&url, "PutItem", &body).await.status, 200);
    };
    let get = |url: String| async move {
        let body = r#"{"TableName":"streamed","Key":{"pk":{"S":"a"},"sk":{"N":"1"}}}"#;
        let answer = dynamo(&url, "GetItem", body).await;
        assert_eq!(answer.status, 200);
        answer.json()["Item"]["v"]["N"]
            .as_str()
            .unwrap()
            .to_string()
    };
    put(upstream.url.clone(), 1).await;
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let url = server.url();
        nodes.push(
            Proxy::start_with(&upstream.url, move |c| {
                c.fleet.redis = vec![url];
                c.fleet.timeout_ms = 200;
                c.streams.enabled = true;
                c.streams.poll_interval_ms = 50;
            })
            .await,
        );
    }
    for node in &nodes {
        node.wait_memory_serving().await;
        assert_eq!(get(node.url.clone()).await, "1");
    }
    // Wait until one node follows; the other stands by.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let followed = [
            nodes[0].metric("dynamo_cache_stream_shards").await,
            nodes[1].metric("dynamo_cache_stream_shards").await,
        ];
        if followed.iter().filter(|&&s| s > 0.0).count() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "shards followed: {followed:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A write that bypasses the fleet: every node sees it within the stream's lag.
    put(upstream.url.clone(), 2).await;
    for node in &nodes {
        let deadline = Instant::now() + Duration::from_secs(10);
        while get(node.url.clone()).await != "2" {
            assert!(Instant::now() < deadline, "a node never heard of the write");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // A busy machine may have served the fresh value from DynamoDB (memory off, the engine
    // late): the record still arrives, and at exactly one node.
    let deadline = Instant::now() + Duration::from_secs(10);
    let records = loop {
        let records = [
            nodes[0].metric("dynamo_cache_stream_records_total").await,
            nodes[1].metric("dynamo_cache_stream_records_total").await,
        ];
        if records.iter().any(|&r| r > 0.0) || Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        records.contains(&0.0) && records.iter().any(|&r| r > 0.0),
        "one node read the stream: {records:?}"
    );
    for mut node in nodes {
        node.stop().await;
    }
}

/// The DAX `endpoints` answer of `node`: each listed node's port.
async fn dax_endpoint_ports(node: &Proxy) -> Vec<u16> {
    use crate::dax::{Conn, ENDPOINTS, request};
    let mut conn = Conn::open(node.dax_addr).await;
    conn.send(&request(ENDPOINTS, |_| {})).await;
    let answer = conn.items(2).await;
    assert_eq!(answer[0], 0x80);
    let mut d = minicbor::Decoder::new(&answer[1..]);
    let n = d.array().unwrap().unwrap();
    let mut ports = Vec::new();
    for _ in 0..n {
        assert_eq!(d.map().unwrap(), Some(7));
        for _ in 0..7 {
            match d.u8().unwrap() {
                3 => ports.push(d.u16().unwrap()),
                _ => d.skip().unwrap(),
            }
        }
    }
    ports.sort_unstable();
    ports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dax_clients_see_the_fleet_as_one_cluster() {
    use crate::dax::{Conn, DEFINE_ATTRIBUTE_LIST, DEFINE_ATTRIBUTE_LIST_ID, request};
    if !redis::available("fleet: DAX") {
        return;
    }
    let server = RedisServer::start();
    let (_lagging, nodes) = fleet_with(vec![server.url()], 3, |c| {
        c.fleet.timeout_ms = 200;
        c.fleet.discovery = dynamo_cache::config::Discovery::Fleet;
    })
    .await;
    // Every node lists every member, within a membership renewal or two.
    let mut all: Vec<u16> = nodes.iter().map(|n| n.dax_addr.port()).collect();
    all.sort_unstable();
    for node in &nodes {
        let deadline = Instant::now() + Duration::from_secs(5);
        while dax_endpoint_ports(node).await != all {
            assert!(
                Instant::now() < deadline,
                "{:?}",
                dax_endpoint_ports(node).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // An attribute list defined through one node is known to the others.
    let mut conn = Conn::open(nodes[0].dax_addr).await;
    conn.send(&request(DEFINE_ATTRIBUTE_LIST_ID, |e| {
        e.array(2)
            .unwrap()
            .str("colour")
            .unwrap()
            .str("size")
            .unwrap();
    }))
    .await;
    let answer = conn.items(2).await;
    assert_eq!(answer[0], 0x80);
    let id = minicbor::Decoder::new(&answer[1..]).i64().unwrap();
    for node in &nodes[1..] {
        let mut conn = Conn::open(node.dax_addr).await;
        conn.send(&request(DEFINE_ATTRIBUTE_LIST, |e| {
            e.i64(id).unwrap();
        }))
        .await;
        let answer = conn.items(2).await;
        assert_eq!(answer[0], 0x80, "{answer:02x?}");
        let mut d = minicbor::Decoder::new(&answer[1..]);
        assert_eq!(d.array().unwrap(), Some(2));
        assert_eq!((d.str().unwrap(), d.str().unwrap()), ("colour", "size"));
    }
    for mut node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_flush_flushes_the_fleet_and_cache_shows_it() {
    if !redis::available("fleet: admin") {
        return;
    }
    let server = RedisServer::start();
    let (lagging, nodes) = fleet(vec![server.url()], 2).await;
    put(&nodes[0], "a", 1).await;
    lagging.settle().await;
    assert_eq!(get(&nodes[1], "a").await, (1, "miss".to_string()));
    assert_eq!(get(&nodes[1], "a").await, (1, "hit".to_string()));

    let stats = http_get(&format!("{}/cache", nodes[1].admin_url))
        .await
        .unwrap()
        .json();
    let fleet = &stats["fleet"];
    assert_eq!(fleet["name"], "test");
    assert_eq!(fleet["memory_serving"], true);
    assert_eq!(fleet["engine_up"], true);
    assert_eq!(fleet["shared"]["misses"], 1);

    // Flushed through node 0: node 1's memory and the shared tier are empty of it too.
    let request = http::Request::post(format!("{}/cache/flush", nodes[0].admin_url))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let flushed = send(request).await.unwrap();
    assert_eq!(flushed.json(), json!({"flushed": "all", "fleet": true}));
    let reads = lagging.count("GetItem");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (_, status) = get(&nodes[1], "a").await;
        if status == "miss" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 1 kept answering from memory"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        lagging.count("GetItem"),
        reads + 1,
        "read from DynamoDB, not the shared tier"
    );
    for mut node in nodes {
        node.stop().await;
    }
}

/// A write's tombstone replaces the shared entry every node reads, whatever generation its
/// writer knew: nodes hear of a flush at different moments. Node `b` has not heard of the
/// flush `a` made; `a`'s fill began before `b`'s write, and must not be taken afterwards by
/// anyone. Entries of a later generation are taken, of an earlier one not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_a_node_behind_on_flushes_still_stops_older_fills() {
    use dynamo_cache::cache::Caches;
    use dynamo_cache::fleet::{Fleet, Shared};
    use dynamo_cache::metrics::Metrics;
    use dynamo_cache::wire::keys::{ItemKey, WireKey};
    use std::sync::Arc;

    if !redis::available("fleet: generations") {
        return;
    }
    let server = RedisServer::start();
    let node = || {
        let mut config = dynamo_cache::Config::default();
        config.fleet.redis = vec![server.url()];
        config.fleet.name = "generations".into();
        let metrics = Arc::new(Metrics::new());
        let fleet = Fleet::new(&config, metrics.clone()).unwrap();
        let caches = Caches::with_fleet(
            &config.cache,
            Duration::from_secs(1),
            metrics,
            Some(fleet.clone()),
        );
        fleet.start(Arc::new(caches));
        fleet
    };
    let (a, b) = (node(), node());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(a.memory_serves() && b.memory_serves()) {
        assert!(
            Instant::now() < deadline,
            "the nodes never heard their channels"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // `b` hears nothing from now on, so misses the flush; it still writes through the engine.
    b.stop().await;
    assert!(a.flush(None).await);
    let key = |pk: &str| {
        let wire: WireKey = serde_json::from_value(json!({"pk": {"S": pk}})).unwrap();
        ItemKey::new(TABLE, &wire).unwrap()
    };
    let ttl = Duration::from_secs(60);
    let (old, new) = (
        &br#"{"pk":{"S":"k"},"ver":{"N":"1"}}"#[..],
        &br#"{"pk":{"S":"k"},"ver":{"N":"2"}}"#[..],
    );

    let Shared::Lease(lease) = a.lookup(&key("k")).await else {
        panic!("a first lookup is a miss");
    };
    // `a` read the old version; `b` wrote the new one before `a`'s fill came.
    b.wrote(vec![(key("k"), None)]).await;
    a.fill(&key("k"), lease, Some(old), ttl).await;
    match a.lookup(&key("k")).await {
        Shared::Hit(item) => panic!("a fill older than the write was taken: {item:?}"),
        Shared::Lease(lease) => a.fill(&key("k"), lease, Some(new), ttl).await,
        Shared::Read { .. } => panic!("the engine is up"),
    }
    // Filled by `a` under the newer generation: `b` takes it too.
    match b.lookup(&key("k")).await {
        Shared::Hit(Some(item)) => assert_eq!(&item[..], new),
        _ => panic!("an entry of a later generation is taken"),
    }
    // Filled by `b` under the older generation: flushed, for `a`.
    let Shared::Lease(lease) = b.lookup(&key("other")).await else {
        panic!("a first lookup is a miss");
    };
    b.fill(&key("other"), lease, Some(old), ttl).await;
    assert!(matches!(a.lookup(&key("other")).await, Shared::Lease(_)));
    a.stop().await;
}
