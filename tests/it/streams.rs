//! DynamoDB Streams invalidation against the emulator's real Streams API: a write that bypasses
//! the proxy is served fresh within a bounded delay (item and Query), replicas see each other's
//! writes, the proxy's own writes cost no needless miss, and a table without a stream is
//! served TTL-fresh and reported.

use std::time::{Duration, Instant};

use crate::common::*;

/// How long a bypassing write may take to show through a following proxy (the poll interval
/// is 50 ms here; the bound is generous for a loaded machine).
const VISIBLE_WITHIN: Duration = Duration::from_secs(10);

async fn create_streamed_table(url: &str, table: &str, view: Option<&str>) {
    let stream = match view {
        Some(view) => {
            format!(r#","StreamSpecification":{{"StreamEnabled":true,"StreamViewType":"{view}"}}"#)
        }
        None => String::new(),
    };
    let body = format!(
        r#"{{"TableName":"{table}","AttributeDefinitions":[{{"AttributeName":"pk","AttributeType":"S"}},{{"AttributeName":"sk","AttributeType":"N"}}],"KeySchema":[{{"AttributeName":"pk","KeyType":"HASH"}},{{"AttributeName":"sk","KeyType":"RANGE"}}],"BillingMode":"PAY_PER_REQUEST"{stream}}}"#
    );
    let answer = dynamo(url, "CreateTable", &body).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
}

async fn put(url: &str, table: &str, pk: &str, v: u32) {
    let body = format!(
        r#"{{"TableName":"{table}","Item":{{"pk":{{"S":"{pk}"}},"sk":{{"N":"1"}},"v":{{"N":"{v}"}}}}}}"#
    );
    assert_eq!(dynamo(url, "PutItem", &body).await.status, 200);
}

/// GetItem through `url`: the value of `v` and how the proxy answered.
async fn get(url: &str, table: &str, pk: &str) -> (Option<String>, String) {
    let body =
        format!(r#"{{"TableName":"{table}","Key":{{"pk":{{"S":"{pk}"}},"sk":{{"N":"1"}}}}}}"#);
    let answer = dynamo(url, "GetItem", &body).await;
    assert_eq!(answer.status, 200);
    let v = answer.json()["Item"]["v"]["N"].as_str().map(str::to_string);
    (v, answer.cache_status().to_string())
}

/// Query of partition `pk` through `url`: the values of `v` it returned.
async fn query(url: &str, table: &str, pk: &str) -> Vec<String> {
    let body = format!(
        r#"{{"TableName":"{table}","KeyConditionExpression":"pk = :p","ExpressionAttributeValues":{{":p":{{"S":"{pk}"}}}}}}"#
    );
    let answer = dynamo(url, "Query", &body).await;
    assert_eq!(answer.status, 200);
    answer.json()["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["v"]["N"].as_str().unwrap().to_string())
        .collect()
}

async fn streaming_proxy(upstream: &str) -> Proxy {
    Proxy::start_with(upstream, |c| {
        c.streams.enabled = true;
        c.streams.poll_interval_ms = 50;
    })
    .await
}

/// The proxy's view of `table`'s stream (`/cache`), once it has one other than `starting`.
async fn stream_state(proxy: &Proxy, table: &str) -> String {
    let deadline = Instant::now() + VISIBLE_WITHIN;
    loop {
        let stats = http_get(&format!("{}/cache", proxy.admin_url))
            .await
            .unwrap()
            .json();
        let state = stats["streams"]["tables"][table]["state"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if !state.is_empty() && state != "starting" {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "no stream state for {table}: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until `read` returns `want`; how long that took.
async fn visible_after<F, Fut, T>(want: T, mut read: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
    T: PartialEq + std::fmt::Debug,
{
    let started = Instant::now();
    loop {
        let seen = read().await;
        if seen == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < VISIBLE_WITHIN,
            "still {seen:?} after {VISIBLE_WITHIN:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_write_that_bypasses_the_proxy_is_served_fresh_within_the_stream_lag() {
    let upstream = Upstream::start().await;
    create_streamed_table(&upstream.url, "fresh", Some("KEYS_ONLY")).await;
    put(&upstream.url, "fresh", "a", 1).await;
    let proxy = streaming_proxy(&upstream.url).await;
    // Without streams, the same bypassing write stays invisible until the TTL: the control.
    let ttl_only = Proxy::start(&upstream.url).await;

    for url in [&proxy.url, &ttl_only.url] {
        assert_eq!(get(url, "fresh", "a").await.0.as_deref(), Some("1"));
        assert_eq!(query(url, "fresh", "a").await, ["1"]);
    }
    assert_eq!(stream_state(&proxy, "fresh").await, "following");
    // Cached on both (following drops what was cached before it started: read again).
    for url in [&proxy.url, &ttl_only.url] {
        let _ = get(url, "fresh", "a").await;
        let _ = query(url, "fresh", "a").await;
        assert_eq!(get(url, "fresh", "a").await.1, "hit");
    }

    put(&upstream.url, "fresh", "a", 2).await;
    let item = visible_after(Some("2".to_string()), || async {
        get(&proxy.url, "fresh", "a").await.0
    })
    .await;
    let partition = visible_after(vec!["2".to_string()], || async {
        query(&proxy.url, "fresh", "a").await
    })
    .await;
    eprintln!("bypassing write visible after {item:?} (GetItem), {partition:?} (Query)");

    assert_eq!(
        get(&ttl_only.url, "fresh", "a").await,
        (Some("1".into()), "hit".into())
    );
    assert_eq!(query(&ttl_only.url, "fresh", "a").await, ["1"]);

    let metrics = proxy.metrics().await;
    assert!(metric_value(&metrics, "dynamo_cache_stream_records_total") >= 1.0);
    assert!(
        metric_value(
            &metrics,
            r#"dynamo_cache_invalidations_total{cache="item",reason="stream"}"#
        ) >= 1.0
    );
    assert_eq!(metric_value(&metrics, "dynamo_cache_stream_shards"), 1.0);
}

#[tokio::test]
async fn three_replicas_see_each_others_writes() {
    let upstream = Upstream::start().await;
    create_streamed_table(&upstream.url, "shared", Some("KEYS_ONLY")).await;
    put(&upstream.url, "shared", "k", 1).await;
    let replicas = [
        streaming_proxy(&upstream.url).await,
        streaming_proxy(&upstream.url).await,
        streaming_proxy(&upstream.url).await,
    ];
    for replica in &replicas {
        let _ = get(&replica.url, "shared", "k").await;
        assert_eq!(stream_state(replica, "shared").await, "following");
        let _ = get(&replica.url, "shared", "k").await;
        assert_eq!(
            get(&replica.url, "shared", "k").await,
            (Some("1".into()), "hit".into())
        );
    }

    // A write through replica A; B and C had the old value cached.
    put(&replicas[0].url, "shared", "k", 2).await;
    assert_eq!(
        get(&replicas[0].url, "shared", "k").await.0.as_deref(),
        Some("2")
    );
    for replica in &replicas[1..] {
        visible_after(Some("2".to_string()), || async {
            get(&replica.url, "shared", "k").await.0
        })
        .await;
    }
}

#[tokio::test]
async fn the_proxys_own_writes_cost_no_needless_miss() {
    let upstream = Upstream::start().await;
    create_streamed_table(&upstream.url, "own", Some("NEW_AND_OLD_IMAGES")).await;
    let proxy = streaming_proxy(&upstream.url).await;
    let _ = get(&proxy.url, "own", "x").await;
    assert_eq!(stream_state(&proxy, "own").await, "following");

    let stream_drops = r#"dynamo_cache_invalidations_total{cache="item",reason="stream"}"#;
    let drops_before = proxy.metric(stream_drops).await;
    let before = proxy.metric("dynamo_cache_stream_records_total").await;
    put(&proxy.url, "own", "x", 7).await;
    // Wait until the record of that write has been applied, then read: still a hit.
    let deadline = Instant::now() + VISIBLE_WITHIN;
    while proxy.metric("dynamo_cache_stream_records_total").await < before + 1.0 {
        assert!(
            Instant::now() < deadline,
            "the write's record never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        get(&proxy.url, "own", "x").await,
        (Some("7".into()), "hit".into())
    );
    assert_eq!(proxy.metric(stream_drops).await, drops_before);

    // A Query cached after a write through the proxy survives that write's record too (the
    // write itself already dropped the partition's older answers). Cached before the record
    // was applied, which is a race with the poll: tried on fresh partitions until it is.
    let mut observed = false;
    for attempt in 0..10 {
        let pk = format!("q{attempt}");
        let records = proxy.metric("dynamo_cache_stream_records_total").await;
        put(&proxy.url, "own", &pk, 1).await;
        let _ = query(&proxy.url, "own", &pk).await;
        let hit = dynamo(
            &proxy.url,
            "Query",
            &format!(
                r#"{{"TableName":"own","KeyConditionExpression":"pk = :p","ExpressionAttributeValues":{{":p":{{"S":"{pk}"}}}}}}"#
            ),
        )
        .await
        .cache_status()
        == "hit";
        if !hit || proxy.metric("dynamo_cache_stream_records_total").await > records {
            continue; // the record got there first: not the case under test
        }
        let deadline = Instant::now() + VISIBLE_WITHIN;
        while proxy.metric("dynamo_cache_stream_records_total").await <= records {
            assert!(
                Instant::now() < deadline,
                "the write's record never arrived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let after = dynamo(
            &proxy.url,
            "Query",
            &format!(
                r#"{{"TableName":"own","KeyConditionExpression":"pk = :p","ExpressionAttributeValues":{{":p":{{"S":"{pk}"}}}}}}"#
            ),
        )
        .await;
        assert_eq!(
            after.cache_status(),
            "hit",
            "the own write's record dropped the query"
        );
        observed = true;
        break;
    }
    assert!(
        observed,
        "never cached a query before its write's record arrived"
    );
}

#[tokio::test]
async fn a_table_without_a_stream_is_reported_and_served_by_ttl() {
    let upstream = Upstream::start().await;
    create_streamed_table(&upstream.url, "plain", None).await;
    put(&upstream.url, "plain", "p", 1).await;
    let proxy = streaming_proxy(&upstream.url).await;
    let _ = get(&proxy.url, "plain", "p").await;
    assert_eq!(stream_state(&proxy, "plain").await, "no_stream");
    assert_eq!(
        get(&proxy.url, "plain", "p").await,
        (Some("1".into()), "hit".into())
    );
    let ready = http_get(&format!("{}/readyz", proxy.admin_url))
        .await
        .unwrap();
    assert_eq!(ready.status, 200);
    assert_eq!(proxy.metric("dynamo_cache_stream_shards").await, 0.0);
}

#[tokio::test]
async fn the_staleness_bench_measures_both_kinds_of_proxy() {
    let upstream = Upstream::start().await;
    let table = "dynamo-cache-bench";
    let create = format!(
        r#"{{"TableName":"{table}","AttributeDefinitions":[{{"AttributeName":"pk","AttributeType":"S"}},{{"AttributeName":"sk","AttributeType":"N"}}],"KeySchema":[{{"AttributeName":"pk","KeyType":"HASH"}},{{"AttributeName":"sk","KeyType":"RANGE"}}],"BillingMode":"PAY_PER_REQUEST","StreamSpecification":{{"StreamEnabled":true,"StreamViewType":"KEYS_ONLY"}}}}"#
    );
    assert_eq!(
        dynamo(&upstream.url, "CreateTable", &create).await.status,
        200
    );
    let following = streaming_proxy(&upstream.url).await;
    // Following before the bench starts: otherwise the first round's write can land while the
    // follower is starting, and show because following starts by dropping the table's entries,
    // with no record for it.
    let _ = dynamo(
        &following.url,
        "GetItem",
        &format!(r#"{{"TableName":"{table}","Key":{{"pk":{{"S":"none"}},"sk":{{"N":"0"}}}}}}"#),
    )
    .await;
    assert_eq!(stream_state(&following, table).await, "following");
    // Without streams, a write around it shows after the (short, here) TTL.
    let ttl_only = Proxy::start_with(&upstream.url, |c| c.cache.item_ttl_ms = 300).await;
    let json = std::env::temp_dir().join(format!("staleness-{}.json", std::process::id()));
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dynamo-cache"));
    command
        .args([
            "bench",
            "--staleness",
            "--seed",
            "--keys",
            "20",
            "--requests",
            "6",
        ])
        .args(["--writer", &upstream.url, "--endpoint", &following.url])
        .args([
            "--compare",
            &ttl_only.url,
            "--staleness-timeout",
            "10",
            "--quiet",
        ])
        .args(["--region", REGION, "--json"])
        .arg(&json)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_PROFILE");
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    let readers = report["readers"].as_array().unwrap();
    assert_eq!(readers[0]["endpoint"], following.url.as_str());
    assert_eq!(readers[1]["endpoint"], ttl_only.url.as_str());
    for reader in readers {
        assert_eq!(reader["rounds"], 6, "{reader}");
        assert_eq!(reader["seen"], 6, "{reader}");
        assert!(reader["delay_ms"]["max"].as_f64().unwrap() > 0.0);
    }
    // The proxies really had the old value cached: each round's write was invalidated by the
    // stream on one (its record came after the 20 seeding writes'), and expired on the other.
    assert!(following.metric("dynamo_cache_stream_records_total").await >= 26.0);
    assert!(
        ttl_only
            .metric(r#"dynamo_cache_requests_total{op="GetItem",protocol="http",result="hit"}"#)
            .await
            >= 6.0
    );
    assert!(stdout.contains("p99"), "{stdout}");
}

/// A stream record puts its key in the consistency window: the fill after it reads strongly
/// consistently, so a DynamoDB replica that has not applied the write yet cannot put the old
/// version back for the TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_after_a_stream_record_reads_strongly_consistently() {
    let lagging = lagging::Lagging::start(Duration::from_secs(3)).await;
    create_streamed_table(&lagging.url, "lagged", Some("KEYS_ONLY")).await;
    put(&lagging.url, "lagged", "a", 1).await;
    lagging.settle().await;
    let proxy = streaming_proxy(&lagging.url).await;
    let _ = get(&proxy.url, "lagged", "a").await;
    assert_eq!(stream_state(&proxy, "lagged").await, "following");
    assert_eq!(get(&proxy.url, "lagged", "a").await.0.as_deref(), Some("1"));
    assert_eq!(get(&proxy.url, "lagged", "a").await.1, "hit");

    // Around the proxy; the replica applies it 3 s later.
    let records = proxy.metric("dynamo_cache_stream_records_total").await;
    let strong = lagging.strong_reads("GetItem");
    put(&lagging.url, "lagged", "a", 2).await;
    let written = Instant::now();
    let now = proxy
        .metric_reaching("dynamo_cache_stream_records_total", records + 1.0)
        .await;
    assert!(now > records, "the stream record never came");
    let (seen, how) = get(&proxy.url, "lagged", "a").await;
    assert!(
        written.elapsed() < lagging.lag(),
        "the stream took longer than the replica: the test cannot tell"
    );
    assert_eq!(how, "miss");
    assert_eq!(
        seen.as_deref(),
        Some("2"),
        "the fill after the stream record read the lagging replica"
    );
    assert_eq!(lagging.strong_reads("GetItem"), strong + 1);
}
