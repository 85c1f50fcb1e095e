//! The item cache against a real upstream: what is answered from memory, what reaches the
//! upstream, and that nothing older than an acknowledged write is ever served.

use crate::common::shim::Shim;
use crate::common::*;
use serde_json::{Value, json};

async fn env() -> Relayed {
    Relayed::start(|_| {}).await
}

fn get(pk: &str, sk: &str) -> String {
    json!({"TableName": "orders", "Key": {"pk": {"S": pk}, "sk": {"N": sk}}}).to_string()
}

fn put(pk: &str, sk: &str, v: &str) -> String {
    json!({"TableName": "orders", "Item": {"pk": {"S": pk}, "sk": {"N": sk}, "v": {"S": v}}})
        .to_string()
}

#[tokio::test]
async fn hits_are_served_while_the_upstream_is_down_and_consistent_reads_are_not() {
    let mut env = env().await;
    env.call("PutItem", &put("a", "1", "one")).await;
    let first = env.call("GetItem", &get("a", "1")).await;
    assert_eq!(first.json()["Item"]["v"]["S"], "one");

    env.upstream.stop().await;
    let hit = env.call("GetItem", &get("a", "1")).await;
    assert_eq!(hit.status, 200);
    assert_eq!(hit.cache_status(), "hit");
    assert_eq!(hit.json()["Item"]["v"]["S"], "one");
    assert_eq!(
        hit.header("content-type"),
        Some("application/x-amz-json-1.0")
    );
    assert_eq!(hit.header("x-amzn-requestid").map(str::len), Some(52));

    // The proxy stays ready while DynamoDB is away: its hits are what it is there for.
    // DynamoDB's health is reported on /upstream instead.
    let admin = &env.proxy.admin_url;
    assert_eq!(
        http_get(&format!("{admin}/readyz")).await.unwrap().status,
        200
    );
    assert_eq!(
        http_get(&format!("{admin}/upstream")).await.unwrap().status,
        503
    );
    assert_eq!(
        env.call("GetItem", &get("a", "1")).await.cache_status(),
        "hit"
    );

    let consistent = json!({"TableName": "orders", "ConsistentRead": true,
        "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}}});
    let strong = env.call("GetItem", &consistent.to_string()).await;
    assert_eq!(
        strong.status, 503,
        "a strongly consistent read must reach DynamoDB"
    );
}

#[tokio::test]
async fn reads_miss_once_then_hit_and_the_upstream_sees_one_read() {
    let env = env().await;
    sdk(&env.upstream.url)
        .put_item()
        .table_name("orders")
        .item("pk", aws_sdk_dynamodb::types::AttributeValue::S("a".into()))
        .item("sk", aws_sdk_dynamodb::types::AttributeValue::N("1".into()))
        .item("v", aws_sdk_dynamodb::types::AttributeValue::S("x".into()))
        .send()
        .await
        .unwrap();
    let miss = env.call("GetItem", &get("a", "1")).await;
    let hit = env.call("GetItem", &get("a", "1")).await;
    assert_eq!(miss.cache_status(), "miss");
    assert_eq!(hit.cache_status(), "hit");
    assert_eq!(
        miss.json(),
        hit.json(),
        "a hit answers what DynamoDB answered"
    );
    assert_eq!(env.relay.count("GetItem"), 1);
    assert_eq!(
        env.proxy
            .metric(r#"dynamo_cache_requests_total{op="GetItem",protocol="http",result="hit"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn missing_items_are_cached_too() {
    let mut env = env().await;
    let miss = env.call("GetItem", &get("nobody", "1")).await;
    assert_eq!(miss.json(), json!({}));
    env.upstream.stop().await;
    let hit = env.call("GetItem", &get("nobody", "1")).await;
    assert_eq!(hit.cache_status(), "hit");
    assert_eq!(hit.body, "{}");
}

#[tokio::test]
async fn writes_through_the_proxy_are_visible_at_once() {
    let mut env = env().await;
    env.call("GetItem", &get("a", "1")).await; // caches "not found"
    env.call("PutItem", &put("a", "1", "one")).await;
    env.call("GetItem", &get("b", "1")).await;
    env.call("PutItem", &put("b", "1", "two")).await;
    env.call("DeleteItem", &get("b", "1")).await;
    let update = json!({"TableName": "orders", "Key": {"pk": {"S": "c"}, "sk": {"N": "1"}},
        "UpdateExpression": "SET v = :v", "ExpressionAttributeValues": {":v": {"S": "three"}}});
    let updated = env.call("UpdateItem", &update.to_string()).await;
    assert_eq!(
        updated.json(),
        json!({}),
        "ReturnValues NONE answers nothing"
    );
    let gets_before = env.relay.count("GetItem");

    env.upstream.stop().await;
    let a = env.call("GetItem", &get("a", "1")).await;
    assert_eq!(
        (a.cache_status(), &a.json()["Item"]["v"]["S"]),
        ("hit", &json!("one"))
    );
    let b = env.call("GetItem", &get("b", "1")).await;
    assert_eq!((b.cache_status(), b.json()), ("hit", json!({})));
    let c = env.call("GetItem", &get("c", "1")).await;
    assert_eq!(c.cache_status(), "hit");
    assert_eq!(
        c.json()["Item"],
        json!({"pk": {"S": "c"}, "sk": {"N": "1"}, "v": {"S": "three"}})
    );
    assert_eq!(env.relay.count("GetItem"), gets_before);
}

#[tokio::test]
async fn update_item_answers_exactly_what_was_asked() {
    let env = env().await;
    env.call("PutItem", &put("a", "1", "one")).await;
    let update = |rv: Option<&str>| {
        let mut body = json!({"TableName": "orders", "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}},
            "UpdateExpression": "SET v = :v", "ExpressionAttributeValues": {":v": {"S": "two"}}});
        if let Some(rv) = rv {
            body["ReturnValues"] = json!(rv);
        }
        body.to_string()
    };
    assert_eq!(
        env.call("UpdateItem", &update(None)).await.json(),
        json!({})
    );
    assert_eq!(
        env.call("UpdateItem", &update(Some("NONE"))).await.json(),
        json!({})
    );
    let all_new = env
        .call("UpdateItem", &update(Some("ALL_NEW")))
        .await
        .json();
    assert_eq!(all_new["Attributes"]["v"]["S"], "two");
    let old = env
        .call("UpdateItem", &update(Some("UPDATED_OLD")))
        .await
        .json();
    assert_eq!(old, json!({"Attributes": {"v": {"S": "two"}}}));
    // The upstream was asked for ALL_NEW on the caller's behalf.
    let asked: Vec<Value> = env
        .relay
        .requests()
        .iter()
        .filter(|r| r.headers["x-amz-target"] == "DynamoDB_20120810.UpdateItem")
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["ReturnValues"].clone())
        .collect();
    assert_eq!(asked, ["ALL_NEW", "ALL_NEW", "ALL_NEW", "UPDATED_OLD"]);
    // UPDATED_OLD does not reveal the new item: the key was dropped, the next read misses.
    let next = env.call("GetItem", &get("a", "1")).await;
    assert_eq!(next.cache_status(), "miss");
    assert_eq!(next.json()["Item"]["v"]["S"], "two");
}

#[tokio::test]
async fn numbers_that_compare_equal_are_one_key() {
    let env = env().await;
    env.call("PutItem", &put("a", "10", "ten")).await;
    for sk in ["10", "10.0", "1E1", "010", "100e-1"] {
        let answer = env.call("GetItem", &get("a", sk)).await;
        assert_eq!(answer.cache_status(), "hit", "{sk}");
        assert_eq!(answer.json()["Item"]["v"]["S"], "ten", "{sk}");
    }
}

#[tokio::test]
async fn items_written_with_non_canonical_numbers_are_read_back_from_dynamodb() {
    let env = env().await;
    let item = json!({"TableName": "orders",
        "Item": {"pk": {"S": "a"}, "sk": {"N": "1"}, "price": {"N": "1.50"}}});
    env.call("PutItem", &item.to_string()).await;
    let read = env.call("GetItem", &get("a", "1")).await;
    assert_eq!(
        read.cache_status(),
        "miss",
        "1.50 is not how DynamoDB writes it back"
    );
    let direct = dynamo(&env.upstream.url, "GetItem", &get("a", "1")).await;
    assert_eq!(read.json(), direct.json());
}

#[tokio::test]
async fn projected_reads_return_only_what_they_ask_and_die_with_their_item() {
    let env = env().await;
    let item = json!({"TableName": "orders", "Item": {"pk": {"S": "a"}, "sk": {"N": "1"},
        "v": {"S": "one"}, "secret": {"S": "s"}}});
    env.call("PutItem", &item.to_string()).await;
    let projected = json!({"TableName": "orders", "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}},
        "ProjectionExpression": "#v", "ExpressionAttributeNames": {"#v": "v"}})
    .to_string();
    let first = env.call("GetItem", &projected).await;
    assert_eq!(first.json(), json!({"Item": {"v": {"S": "one"}}}));
    let again = env.call("GetItem", &projected).await;
    assert_eq!(again.cache_status(), "hit");
    assert_eq!(again.json(), json!({"Item": {"v": {"S": "one"}}}));
    let legacy = json!({"TableName": "orders", "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}},
        "AttributesToGet": ["secret"]})
    .to_string();
    assert_eq!(
        env.call("GetItem", &legacy).await.json(),
        json!({"Item": {"secret": {"S": "s"}}})
    );

    // A write that stores the new item: the projection is evaluated from it, fresh.
    env.call("PutItem", &put("a", "1", "two")).await;
    let after = env.call("GetItem", &projected).await;
    assert_eq!(after.cache_status(), "hit");
    assert_eq!(after.json(), json!({"Item": {"v": {"S": "two"}}}));

    // A write that only drops the item: the projection died with it.
    let transact = json!({"TransactItems": [{"Put": {"TableName": "orders",
        "Item": {"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"S": "three"}}}}]});
    env.call("TransactWriteItems", &transact.to_string()).await;
    let dropped = env.call("GetItem", &projected).await;
    assert_eq!(
        dropped.cache_status(),
        "miss",
        "the write dropped the projection"
    );
    assert_eq!(dropped.json(), json!({"Item": {"v": {"S": "three"}}}));
}

#[tokio::test]
async fn batch_get_sends_only_the_misses_upstream() {
    let env = env().await;
    for pk in ["a", "b", "c"] {
        env.call("PutItem", &put(pk, "1", pk)).await;
    }
    // a and b are cached by their writes; d does not exist and is not cached yet.
    let keys = |pks: &[&str]| {
        let keys: Vec<Value> = pks
            .iter()
            .map(|pk| json!({"pk": {"S": pk}, "sk": {"N": "1"}}))
            .collect();
        json!({"RequestItems": {"orders": {"Keys": keys}}}).to_string()
    };
    env.proxy
        .state
        .caches
        .invalidate_all(dynamo_cache::metrics::Reason::Flush)
        .await;
    env.call("GetItem", &get("a", "1")).await;
    env.call("GetItem", &get("b", "1")).await;
    let before = env.relay.requests().len();
    let answer = env.call("BatchGetItem", &keys(&["a", "b", "c", "d"])).await;
    assert_eq!(answer.cache_status(), "miss");
    let mut got: Vec<String> = answer.json()["Responses"]["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["v"]["S"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(got, ["a", "b", "c"]);
    assert_eq!(answer.json()["UnprocessedKeys"], json!({}));

    let sent = &env.relay.requests()[before..];
    assert_eq!(sent.len(), 1);
    let upstream_keys =
        &serde_json::from_slice::<Value>(&sent[0].body).unwrap()["RequestItems"]["orders"]["Keys"];
    assert_eq!(
        upstream_keys,
        &json!([{"pk": {"S": "c"}, "sk": {"N": "1"}}, {"pk": {"S": "d"}, "sk": {"N": "1"}}])
    );
    // Now everything is known, including that d does not exist.
    let all_hits = env.call("BatchGetItem", &keys(&["a", "b", "c", "d"])).await;
    assert_eq!(all_hits.cache_status(), "hit");
    assert_eq!(
        all_hits.json()["Responses"]["orders"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(env.relay.requests().len(), before + 1);
}

#[tokio::test]
async fn hits_report_zero_consumed_capacity() {
    let env = env().await;
    env.call("PutItem", &put("a", "1", "one")).await;
    let body = json!({"TableName": "orders", "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}},
        "ReturnConsumedCapacity": "TOTAL"});
    let hit = env.call("GetItem", &body.to_string()).await;
    assert_eq!(hit.cache_status(), "hit");
    assert_eq!(
        hit.json()["ConsumedCapacity"],
        json!({"TableName": "orders", "CapacityUnits": 0.0})
    );
    assert_eq!(hit.json()["Item"]["v"]["S"], "one");
}

#[tokio::test]
async fn failed_writes_drop_the_key() {
    let env = env().await;
    env.call("PutItem", &put("a", "1", "one")).await;
    let conditional = json!({"TableName": "orders",
        "Item": {"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"S": "two"}},
        "ConditionExpression": "attribute_not_exists(pk)"});
    let failed = env.call("PutItem", &conditional.to_string()).await;
    assert_eq!(failed.error_type(), "ConditionalCheckFailedException");
    let next = env.call("GetItem", &get("a", "1")).await;
    assert_eq!(next.cache_status(), "miss");
    assert_eq!(next.json()["Item"]["v"]["S"], "one");
}

#[tokio::test]
async fn batch_and_transactional_writes_keep_the_cache_in_step() {
    let env = env().await;
    for pk in ["a", "b", "c"] {
        env.call("GetItem", &get(pk, "1")).await; // cache "not found"
    }
    let batch = json!({"RequestItems": {"orders": [
        {"PutRequest": {"Item": {"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"S": "batch"}}}},
        {"DeleteRequest": {"Key": {"pk": {"S": "b"}, "sk": {"N": "1"}}}}
    ]}});
    env.call("BatchWriteItem", &batch.to_string()).await;
    let a = env.call("GetItem", &get("a", "1")).await;
    assert_eq!(
        (a.cache_status(), &a.json()["Item"]["v"]["S"]),
        ("hit", &json!("batch"))
    );

    let transact = json!({"TransactItems": [
        {"Put": {"TableName": "orders", "Item": {"pk": {"S": "c"}, "sk": {"N": "1"}, "v": {"S": "tx"}}}}
    ]});
    env.call("TransactWriteItems", &transact.to_string()).await;
    let c = env.call("GetItem", &get("c", "1")).await;
    assert_eq!(
        c.cache_status(),
        "miss",
        "a transaction drops what it touched"
    );
    assert_eq!(c.json()["Item"]["v"]["S"], "tx");

    let partiql = json!({"Statement": "UPDATE \"orders\" SET v = 'ql' WHERE pk = 'a' AND sk = 1"});
    env.call("ExecuteStatement", &partiql.to_string()).await;
    let a = env.call("GetItem", &get("a", "1")).await;
    assert_eq!(
        (a.cache_status(), &a.json()["Item"]["v"]["S"]),
        ("miss", &json!("ql"))
    );
}

#[tokio::test]
async fn deleting_a_table_drops_its_entries() {
    let env = env().await;
    env.call("PutItem", &put("a", "1", "one")).await;
    env.call("DeleteTable", r#"{"TableName":"orders"}"#).await;
    create_table(&sdk(&env.upstream.url), "orders").await;
    let after = env.call("GetItem", &get("a", "1")).await;
    assert_eq!(after.cache_status(), "miss");
    assert_eq!(after.json(), json!({}));
}

#[tokio::test]
async fn tables_can_opt_out() {
    let env = Relayed::start(|c| {
        c.cache.tables.insert(
            "orders".into(),
            dynamo_cache::config::TableCacheConfig {
                enabled: false,
                ..Default::default()
            },
        );
    })
    .await;
    env.call("PutItem", &put("a", "1", "one")).await;
    for _ in 0..2 {
        let read = env.call("GetItem", &get("a", "1")).await;
        assert_eq!(read.cache_status(), "bypass");
    }
    assert_eq!(env.relay.count("GetItem"), 2);
    // Nor does a write through the proxy keep what it wrote: the memory is for cached tables.
    let held = env
        .proxy
        .metric(r#"dynamo_cache_cache_entries{cache="item"}"#)
        .await;
    assert_eq!(
        held, 0.0,
        "a table that opted out has entries in the item cache"
    );
}

#[tokio::test]
async fn writes_around_the_proxy_show_after_the_ttl() {
    let env = Relayed::start(|c| c.cache.item_ttl_ms = 200).await;
    env.call("PutItem", &put("a", "1", "one")).await;
    // Written straight to DynamoDB: the proxy cannot know until its entry expires.
    dynamo(&env.upstream.url, "PutItem", &put("a", "1", "two")).await;
    let stale = env.call("GetItem", &get("a", "1")).await;
    assert_eq!(stale.json()["Item"]["v"]["S"], "one");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let read = env.call("GetItem", &get("a", "1")).await;
        if read.json()["Item"]["v"]["S"] == "two" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never refreshed after the TTL"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn concurrent_misses_share_one_upstream_read() {
    let upstream = Upstream::start().await;
    let relay = Shim::relay(&upstream.url, 100).await;
    let proxy = Proxy::start(&relay.url).await;
    create_table(&sdk(&upstream.url), "orders").await;
    let reads: Vec<_> = (0..8)
        .map(|_| {
            let url = proxy.url.clone();
            tokio::spawn(async move { dynamo(&url, "GetItem", &get("a", "1")).await })
        })
        .collect();
    for read in reads {
        assert_eq!(read.await.unwrap().status, 200);
    }
    let upstream_reads = relay.count("GetItem");
    let coalesced = proxy.metric("dynamo_cache_coalesced_misses_total").await;
    assert_eq!(upstream_reads as f64 + coalesced, 8.0);
    assert!(upstream_reads < 8, "no miss was coalesced");
}

#[tokio::test]
async fn known_projections_are_answered_from_the_cached_item() {
    let env = env().await;
    let item = |v: &str| {
        json!({"TableName": "orders", "Item": {"pk": {"S": "a"}, "sk": {"N": "1"},
            "v": {"S": v}, "tags": {"L": [{"S": "t0"}, {"M": {"deep": {"S": v}, "x": {"N": "2"}}}]},
            "addr": {"M": {"city": {"S": "Oslo"}, "zip": {"S": "0150"}}}}})
        .to_string()
    };
    let projections = [
        json!({"ProjectionExpression": "v, addr.city"}),
        json!({"ProjectionExpression": "tags[1].deep, #a.zip", "ExpressionAttributeNames": {"#a": "addr"}}),
        json!({"AttributesToGet": ["v", "pk"]}),
    ];
    let request = |p: &Value| {
        let mut body = json!({"TableName": "orders", "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}}});
        body.as_object_mut()
            .unwrap()
            .extend(p.as_object().unwrap().clone());
        body.to_string()
    };
    env.call("PutItem", &item("one")).await;
    for p in &projections {
        // First sight of each projection: DynamoDB answers (and so vouches for it).
        assert_eq!(
            env.call("GetItem", &request(p)).await.cache_status(),
            "miss"
        );
    }
    env.call("PutItem", &item("two")).await; // replaces the item, dropping cached variants
    let reads_before = env.relay.count("GetItem");
    for p in &projections {
        let local = env.call("GetItem", &request(p)).await;
        assert_eq!(local.cache_status(), "hit", "{p}");
        let direct = dynamo(&env.upstream.url, "GetItem", &request(p)).await;
        assert_eq!(local.json(), direct.json(), "{p}");
    }
    assert_eq!(env.relay.count("GetItem"), reads_before);
}
