//! The query cache against a real upstream: answers from memory, and fresh after writes
//! through the proxy (where DAX stays stale until the TTL).

use crate::common::shim::Shim;
use crate::common::*;
use serde_json::{Value, json};

async fn env() -> Relayed {
    Relayed::start(|_| {}).await
}

fn put(pk: &str, sk: &str, g: &str) -> String {
    json!({"TableName": "orders", "Item": {"pk": {"S": pk}, "sk": {"N": sk}, "g": {"S": g}}})
        .to_string()
}

fn query(pk: &str) -> String {
    json!({"TableName": "orders", "KeyConditionExpression": "#p = :p",
        "ExpressionAttributeNames": {"#p": "pk"}, "ExpressionAttributeValues": {":p": {"S": pk}}})
    .to_string()
}

fn by_g(g: &str) -> String {
    json!({"TableName": "orders", "IndexName": "by_g", "KeyConditionExpression": "g = :g",
        "ExpressionAttributeValues": {":g": {"S": g}}})
    .to_string()
}

fn sks(answer: &Raw) -> Vec<String> {
    let mut sks: Vec<String> = answer.json()["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sk"]["N"].as_str().unwrap().to_string())
        .collect();
    sks.sort();
    sks
}

#[tokio::test]
async fn queries_are_answered_while_the_upstream_is_down() {
    let mut env = env().await;
    env.call("PutItem", &put("a", "1", "red")).await;
    let miss = env.call("Query", &query("a")).await;
    assert_eq!(miss.cache_status(), "miss");
    let scan = env.call("Scan", r#"{"TableName":"orders"}"#).await;
    env.upstream.stop().await;
    let hit = env.call("Query", &query("a")).await;
    assert_eq!(hit.cache_status(), "hit");
    assert_eq!(hit.json(), miss.json());
    assert_eq!(
        env.call("Scan", r#"{"TableName":"orders"}"#).await.json(),
        scan.json()
    );
    // The same query with its parameters in another order, or asking for capacity, is the
    // same entry.
    let reordered = json!({"ExpressionAttributeValues": {":p": {"S": "a"}},
        "ExpressionAttributeNames": {"#p": "pk"}, "KeyConditionExpression": "#p = :p",
        "TableName": "orders", "ReturnConsumedCapacity": "TOTAL"});
    let with_capacity = env.call("Query", &reordered.to_string()).await;
    assert_eq!(with_capacity.cache_status(), "hit");
    assert_eq!(with_capacity.json()["Items"], miss.json()["Items"]);
    assert_eq!(
        with_capacity.json()["ConsumedCapacity"],
        json!({"TableName": "orders", "CapacityUnits": 0.0})
    );
}

#[tokio::test]
async fn a_write_to_the_partition_is_in_the_next_query() {
    let env = env().await;
    env.call("PutItem", &put("a", "1", "red")).await;
    env.call("PutItem", &put("b", "1", "red")).await;
    assert_eq!(sks(&env.call("Query", &query("a")).await), ["1"]);
    assert_eq!(sks(&env.call("Query", &query("b")).await), ["1"]);

    env.call("PutItem", &put("a", "2", "blue")).await;
    let fresh = env.call("Query", &query("a")).await;
    assert_eq!(fresh.cache_status(), "miss");
    assert_eq!(sks(&fresh), ["1", "2"]);

    // Another partition's answer did not depend on that write: still cached.
    let queries_before = env.relay.count("Query");
    let other = env.call("Query", &query("b")).await;
    assert_eq!(other.cache_status(), "hit");
    assert_eq!(env.relay.count("Query"), queries_before);

    // Deletes and updates count as writes too.
    env.call(
        "DeleteItem",
        &json!({"TableName": "orders",
        "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}}})
        .to_string(),
    )
    .await;
    assert_eq!(sks(&env.call("Query", &query("a")).await), ["2"]);
    env.call(
        "UpdateItem",
        &json!({"TableName": "orders",
        "Key": {"pk": {"S": "a"}, "sk": {"N": "3"}}, "UpdateExpression": "SET g = :g",
        "ExpressionAttributeValues": {":g": {"S": "red"}}})
        .to_string(),
    )
    .await;
    assert_eq!(sks(&env.call("Query", &query("a")).await), ["2", "3"]);
}

#[tokio::test]
async fn index_queries_and_scans_see_every_write_to_their_table() {
    let env = env().await;
    env.call("PutItem", &put("a", "1", "red")).await;
    assert_eq!(sks(&env.call("Query", &by_g("red")).await), ["1"]);
    assert_eq!(
        sks(&env.call("Scan", r#"{"TableName":"orders"}"#).await),
        ["1"]
    );

    // Moves the item between index partitions, in another base partition.
    env.call("PutItem", &put("a", "1", "blue")).await;
    env.call("PutItem", &put("z", "5", "red")).await;
    let red = env.call("Query", &by_g("red")).await;
    assert_eq!(red.cache_status(), "miss");
    assert_eq!(sks(&red), ["5"]);
    assert_eq!(sks(&env.call("Query", &by_g("blue")).await), ["1"]);
    assert_eq!(
        sks(&env.call("Scan", r#"{"TableName":"orders"}"#).await),
        ["1", "5"]
    );

    let batch = json!({"RequestItems": {"orders": [
        {"PutRequest": {"Item": {"pk": {"S": "q"}, "sk": {"N": "7"}, "g": {"S": "red"}}}}]}});
    env.call("BatchWriteItem", &batch.to_string()).await;
    assert_eq!(sks(&env.call("Query", &by_g("red")).await), ["5", "7"]);
    let transact = json!({"TransactItems": [{"Delete": {"TableName": "orders",
        "Key": {"pk": {"S": "z"}, "sk": {"N": "5"}}}}]});
    env.call("TransactWriteItems", &transact.to_string()).await;
    assert_eq!(sks(&env.call("Query", &by_g("red")).await), ["7"]);
}

#[tokio::test]
async fn pages_are_cached_one_by_one_with_their_last_evaluated_key() {
    let env = env().await;
    for sk in ["1", "2", "3"] {
        env.call("PutItem", &put("a", sk, "red")).await;
    }
    let page = |start: Option<&Value>| {
        let mut body = json!({"TableName": "orders", "Limit": 2, "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {"S": "a"}}});
        if let Some(start) = start {
            body["ExclusiveStartKey"] = start.clone();
        }
        body.to_string()
    };
    let first = env.call("Query", &page(None)).await;
    let direct_first = dynamo(&env.upstream.url, "Query", &page(None)).await;
    assert_eq!(first.json(), direct_first.json());
    let last = first.json()["LastEvaluatedKey"].clone();
    assert_eq!(last, json!({"pk": {"S": "a"}, "sk": {"N": "2"}}));
    let second = env.call("Query", &page(Some(&last))).await;
    assert_eq!(sks(&second), ["3"]);
    // Both pages are now cached separately.
    assert_eq!(env.call("Query", &page(None)).await.cache_status(), "hit");
    let again = env.call("Query", &page(Some(&last))).await;
    assert_eq!(again.cache_status(), "hit");
    assert_eq!(again.json(), second.json());
}

#[tokio::test]
async fn consistent_queries_always_reach_dynamodb() {
    let env = env().await;
    let consistent = json!({"TableName": "orders", "ConsistentRead": true,
        "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "a"}}})
    .to_string();
    for _ in 0..3 {
        assert_eq!(
            env.call("Query", &consistent).await.cache_status(),
            "bypass"
        );
    }
    assert_eq!(env.relay.count("Query"), 3);
}

#[tokio::test]
async fn ttl_invalidation_reproduces_daxs_stale_queries() {
    let env = Relayed::start(|c| {
        c.cache.query_invalidation = dynamo_cache::config::QueryInvalidation::Ttl;
    })
    .await;
    env.call("PutItem", &put("a", "1", "red")).await;
    assert_eq!(sks(&env.call("Query", &query("a")).await), ["1"]);
    env.call("PutItem", &put("a", "2", "red")).await;
    let stale = env.call("Query", &query("a")).await;
    assert_eq!(stale.cache_status(), "hit");
    assert_eq!(
        sks(&stale),
        ["1"],
        "DAX semantics: the write is not seen until the TTL"
    );
}

#[tokio::test]
async fn query_ttl_zero_turns_the_query_cache_off() {
    let env = Relayed::start(|c| c.cache.query_ttl_ms = 0).await;
    for _ in 0..2 {
        assert_eq!(
            env.call("Query", &query("a")).await.cache_status(),
            "bypass"
        );
    }
}

/// A Query read that began before a write acknowledged through the proxy is never stored:
/// the next Query sees the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_query_that_started_before_a_write_is_not_cached() {
    let upstream = Upstream::start().await;
    let relay = Shim::slow_relay(&upstream.url, ".Query", 300).await;
    let proxy = Proxy::start(&relay.url).await;
    create_table(&sdk(&upstream.url), "orders").await;
    dynamo(&upstream.url, "PutItem", &put("a", "1", "red")).await;

    let slow = {
        let url = proxy.url.clone();
        tokio::spawn(async move { dynamo(&url, "Query", &query("a")).await })
    };
    relay.wait_for("Query").await;
    let ack = dynamo(&proxy.url, "PutItem", &put("a", "2", "red")).await;
    assert_eq!(ack.status, 200);
    assert_eq!(sks(&slow.await.unwrap()), ["1"], "read before the write");

    let after = dynamo(&proxy.url, "Query", &query("a")).await;
    assert_eq!(
        sks(&after),
        ["1", "2"],
        "the slow answer was cached after the write"
    );
}
