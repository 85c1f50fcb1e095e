//! Warm starts: a running proxy lists its most read keys on `GET /cache/hot-keys`, and a new
//! replica started with `warm.from` reads them before `/readyz` turns 200, so its first reads
//! of them are hits.

use std::time::{Duration, Instant};

use crate::common::*;

const HOT: usize = 8;

fn get_body(i: usize) -> String {
    format!(r#"{{"TableName":"orders","Key":{{"pk":{{"S":"k{i}"}},"sk":{{"N":"1"}}}}}}"#)
}

#[tokio::test]
async fn a_new_replica_reads_the_hot_keys_of_a_running_one_before_it_is_ready() {
    let upstream = Upstream::start().await;
    create_table(&sdk(&upstream.url), "orders").await;
    for i in 0..40 {
        let put = format!(
            r#"{{"TableName":"orders","Item":{{"pk":{{"S":"k{i}"}},"sk":{{"N":"1"}},"v":{{"N":"{i}"}}}}}}"#
        );
        assert_eq!(dynamo(&upstream.url, "PutItem", &put).await.status, 200);
    }

    // Replica A: eight keys read often, the rest once.
    let a = Proxy::start(&upstream.url).await;
    for _ in 0..320 {
        for i in 0..HOT {
            assert_eq!(dynamo(&a.url, "GetItem", &get_body(i)).await.status, 200);
        }
    }
    for i in HOT..40 {
        assert_eq!(dynamo(&a.url, "GetItem", &get_body(i)).await.status, 200);
    }
    let listing = http_get(&format!("{}/cache/hot-keys?limit={HOT}", a.admin_url))
        .await
        .unwrap()
        .json();
    let keys = listing["keys"].as_array().unwrap();
    assert_eq!(keys.len(), HOT, "{listing}");
    let mut listed: Vec<String> = keys
        .iter()
        .map(|k| {
            assert_eq!(k["table"], "orders");
            assert_eq!(k["key"]["sk"], serde_json::json!({"N": "1"}));
            k["key"]["pk"]["S"].as_str().unwrap().to_string()
        })
        .collect();
    listed.sort();
    let mut hot: Vec<String> = (0..HOT).map(|i| format!("k{i}")).collect();
    hot.sort();
    assert_eq!(listed, hot);
    let bad = http_get(&format!("{}/cache/hot-keys?limit=many", a.admin_url))
        .await
        .unwrap();
    assert_eq!(bad.status, 400);

    // Replica B warms from A, slowly enough to see readiness wait for it.
    let b = Proxy::start_with(&upstream.url, |c| {
        c.warm.from = Some(a.admin_url.clone());
        c.warm.max_keys = HOT;
        c.warm.rate_per_sec = 10;
    })
    .await;
    let first = http_get(&format!("{}/readyz", b.admin_url)).await.unwrap();
    assert_eq!((first.status, &first.body[..]), (503, &b"warming\n"[..]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(&format!("{}/readyz", b.admin_url))
        .await
        .unwrap()
        .status
        != 200
    {
        assert!(Instant::now() < deadline, "B never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        b.metric(r#"dynamo_cache_upstream_requests_total{op="GetItem",status="200"}"#)
            .await,
        HOT as f64
    );
    for i in 0..HOT {
        let answer = dynamo(&b.url, "GetItem", &get_body(i)).await;
        assert_eq!(answer.cache_status(), "hit", "k{i}");
        assert_eq!(answer.json()["Item"]["v"]["N"], i.to_string());
    }
    // A key A read once was not worth warming.
    assert_eq!(
        dynamo(&b.url, "GetItem", &get_body(30))
            .await
            .cache_status(),
        "miss"
    );
}

#[tokio::test]
async fn an_unreachable_warm_source_starts_cold_but_ready() {
    let upstream = Upstream::start().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let proxy = Proxy::start_with(&upstream.url, |c| c.warm.from = Some(closed)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(&format!("{}/readyz", proxy.admin_url))
        .await
        .unwrap()
        .status
        != 200
    {
        assert!(Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
