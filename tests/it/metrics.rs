//! Metrics count exactly what happened, the exposition parses as Prometheus text, and the
//! cache administration endpoints do what they say.

use crate::common::*;
use serde_json::json;

fn get(pk: &str) -> String {
    json!({"TableName": "orders", "Key": {"pk": {"S": pk}, "sk": {"N": "1"}}}).to_string()
}

fn put(pk: &str) -> String {
    json!({"TableName": "orders", "Item": {"pk": {"S": pk}, "sk": {"N": "1"}, "v": {"S": "x"}}})
        .to_string()
}

async fn post(url: &str) -> Raw {
    let request = http::Request::post(url)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    send(request).await.unwrap()
}

/// A Prometheus sample by name and labels (any order), 0 when absent.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(k).is_some_and(|l| l == *v))
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref buckets) => {
                buckets.last().map_or(0.0, |b| b.count)
            }
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
        .unwrap_or(0.0)
}

async fn scrape(proxy: &Proxy) -> prometheus_parse::Scrape {
    let text = proxy.metrics().await;
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("the exposition parses as Prometheus text")
}

#[tokio::test]
async fn counters_equal_exactly_what_happened() {
    let mut env = Relayed::start(|_| {}).await;
    // 2 misses, 3 hits, 2 bypasses (writes), then 1 error once the upstream is gone.
    env.call("GetItem", &get("a")).await; // miss
    env.call("GetItem", &get("b")).await; // miss
    for _ in 0..3 {
        env.call("GetItem", &get("a")).await; // hit
    }
    env.call("PutItem", &put("c")).await; // bypass (write-through)
    env.call("PutItem", &put("d")).await; // bypass
    env.upstream.stop().await;
    let failed = env.call("GetItem", &get("zz")).await; // error: upstream unreachable
    assert_eq!(failed.status, 503);

    let s = scrape(&env.proxy).await;
    let req = |op: &str, result: &str| {
        sample(
            &s,
            "dynamo_cache_requests_total",
            &[("op", op), ("result", result)],
        )
    };
    assert_eq!(req("GetItem", "miss"), 2.0);
    assert_eq!(req("GetItem", "hit"), 3.0);
    assert_eq!(req("PutItem", "bypass"), 2.0);
    assert_eq!(req("GetItem", "error"), 1.0);
    // Histograms count the same requests.
    let timed = |op: &str, result: &str| {
        sample(
            &s,
            "dynamo_cache_request_duration_seconds",
            &[("op", op), ("result", result)],
        )
    };
    assert_eq!(timed("GetItem", "miss"), 2.0);
    assert_eq!(timed("GetItem", "hit"), 3.0);
    assert_eq!(timed("PutItem", "bypass"), 2.0);
    assert_eq!(timed("GetItem", "error"), 1.0);

    let cache = |result: &str| {
        sample(
            &s,
            "dynamo_cache_cache_requests_total",
            &[("cache", "item"), ("result", result)],
        )
    };
    assert_eq!((cache("hit"), cache("miss")), (3.0, 2.0));
    let upstream = |op: &str| {
        sample(
            &s,
            "dynamo_cache_upstream_requests_total",
            &[("op", op), ("status", "200")],
        )
    };
    assert_eq!(upstream("GetItem"), 2.0);
    assert_eq!(upstream("PutItem"), 2.0);
    assert_eq!(
        sample(
            &s,
            "dynamo_cache_upstream_errors_total",
            &[("op", "GetItem"), ("kind", "unavailable")]
        ),
        1.0
    );
    // a, b ("not found"), c and d (written through).
    assert_eq!(
        sample(&s, "dynamo_cache_cache_entries", &[("cache", "item")]),
        4.0
    );
    assert!(sample(&s, "dynamo_cache_cache_bytes", &[("cache", "item")]) > 0.0);
    assert_eq!(sample(&s, "dynamo_cache_inflight_requests", &[]), 0.0);
    assert_eq!(sample(&s, "dynamo_cache_build_info", &[]), 1.0);
}

#[tokio::test]
async fn cache_stats_and_flush() {
    let env = Relayed::start(|_| {}).await;
    env.call("PutItem", &put("a")).await;
    env.call("GetItem", &get("a")).await; // hit
    env.call("GetItem", &get("b")).await; // miss
    let query = json!({"TableName": "orders", "KeyConditionExpression": "pk = :p",
        "ExpressionAttributeValues": {":p": {"S": "a"}}})
    .to_string();
    env.call("Query", &query).await; // miss

    let stats = http_get(&format!("{}/cache", env.proxy.admin_url))
        .await
        .unwrap();
    assert_eq!(stats.status, 200);
    let stats = stats.json();
    assert_eq!(stats["item"]["entries"], 2);
    assert_eq!(stats["item"]["hits"], 1);
    assert_eq!(stats["item"]["misses"], 1);
    assert_eq!(stats["item"]["hit_ratio"], 0.5);
    assert_eq!(stats["query"]["entries"], 1);
    assert_eq!(stats["item"]["max_bytes"], 256 * 1024 * 1024);

    let flushed = post(&format!("{}/cache/flush?table=orders", env.proxy.admin_url)).await;
    assert_eq!(flushed.json(), json!({"flushed": {"table": "orders"}}));
    assert_eq!(env.call("GetItem", &get("a")).await.cache_status(), "miss");
    assert_eq!(env.call("Query", &query).await.cache_status(), "miss");
    let flushed = post(&format!("{}/cache/flush", env.proxy.admin_url)).await;
    assert_eq!(flushed.json(), json!({"flushed": "all"}));
    assert_eq!(env.call("GetItem", &get("a")).await.cache_status(), "miss");

    let s = scrape(&env.proxy).await;
    let flushes = |cache: &str| {
        sample(
            &s,
            "dynamo_cache_invalidations_total",
            &[("cache", cache), ("reason", "flush")],
        )
    };
    assert_eq!((flushes("item"), flushes("query")), (2.0, 2.0));
    // Wrong method, unknown path.
    assert_eq!(
        http_get(&format!("{}/cache/flush", env.proxy.admin_url))
            .await
            .unwrap()
            .status,
        405
    );
    assert_eq!(
        post(&format!("{}/metrics", env.proxy.admin_url))
            .await
            .status,
        405
    );
}

#[tokio::test]
async fn invalidations_and_evictions_are_counted_by_cause() {
    // Room for only a few items of 200 bytes: writing more evicts by size.
    let env = Relayed::start(|c| c.cache.item_max_bytes = 1500).await;
    for i in 0..20 {
        let item = json!({"TableName": "orders", "Item": {"pk": {"S": format!("k{i}")},
            "sk": {"N": "1"}, "v": {"S": "x".repeat(200)}}});
        env.call("PutItem", &item.to_string()).await;
    }
    let conditional = json!({"TableName": "orders",
        "Item": {"pk": {"S": "k0"}, "sk": {"N": "1"}}, "ConditionExpression": "attribute_not_exists(pk)"});
    assert_eq!(
        env.call("PutItem", &conditional.to_string())
            .await
            .error_type(),
        "ConditionalCheckFailedException"
    );
    let transact = json!({"TransactItems": [{"Put": {"TableName": "orders",
        "Item": {"pk": {"S": "t"}, "sk": {"N": "1"}}}}]});
    env.call("TransactWriteItems", &transact.to_string()).await;

    let s = scrape(&env.proxy).await;
    let item = |metric: &str, label: &str, value: &str| {
        sample(&s, metric, &[("cache", "item"), (label, value)])
    };
    assert!(item("dynamo_cache_evictions_total", "cause", "size") > 0.0);
    assert_eq!(
        item("dynamo_cache_invalidations_total", "reason", "failed_write"),
        1.0
    );
    assert_eq!(
        item("dynamo_cache_invalidations_total", "reason", "write"),
        1.0
    );
    assert!(sample(&s, "dynamo_cache_cache_bytes", &[("cache", "item")]) <= 1500.0);
}

#[tokio::test]
async fn debug_config_shows_the_effective_configuration() {
    let env = Relayed::start(|c| c.cache.item_ttl_ms = 1234).await;
    let config = http_get(&format!("{}/debug/config", env.proxy.admin_url))
        .await
        .unwrap();
    assert_eq!(config.status, 200);
    let config = config.json();
    assert_eq!(config["cache"]["item_ttl_ms"], 1234);
    assert_eq!(config["upstream"], env.relay.url.as_str());
    assert_eq!(
        format!("http://{}", config["listen"].as_str().unwrap()),
        env.proxy.url
    );
}

#[tokio::test]
async fn described_tables_get_their_own_series_and_cache_stats() {
    let env = Relayed::start(|_| {}).await;
    env.call("PutItem", &put("a")).await; // describes "orders": it gets its own series
    env.call("GetItem", &get("a")).await; // hit
    env.call("GetItem", &get("a")).await; // hit
    env.call("GetItem", &get("b")).await; // miss
    // A table the proxy never described gets no series of its own.
    env.call(
        "GetItem",
        &json!({"TableName": "unknown", "Key": {"pk": {"S": "x"}}}).to_string(),
    )
    .await;

    let s = scrape(&env.proxy).await;
    let table = |table: &str, result: &str| {
        sample(
            &s,
            "dynamo_cache_table_requests_total",
            &[("table", table), ("cache", "item"), ("result", result)],
        )
    };
    assert_eq!(
        (table("orders", "hit"), table("orders", "miss")),
        (2.0, 1.0)
    );
    assert!(
        !s.samples
            .iter()
            .any(|x| x.labels.get("table") == Some("unknown")),
        "undescribed tables must not grow the label set"
    );

    let stats = http_get(&format!("{}/cache", env.proxy.admin_url))
        .await
        .unwrap()
        .json();
    let orders = &stats["tables"]["orders"]["item"];
    assert_eq!(orders["entries"], 2); // a, and b "not found"
    assert!(orders["bytes"].as_u64().unwrap() > 0);
    assert!((orders["hit_ratio"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
}
