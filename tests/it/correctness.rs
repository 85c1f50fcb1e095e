//! Answers DynamoDB would not give, and memory that would grow without bound: each test here
//! shows one case end to end, against the emulator or a fault-injecting relay in front of it.

use std::time::Duration;

use crate::common::shim::{Reply, Shim};
use crate::common::*;
use bytes::Bytes;
use serde_json::{Value, json};

fn key(pk: &str) -> Value {
    json!({"pk": {"S": pk}, "sk": {"N": "1"}})
}

fn get(table: &str, pk: &str) -> String {
    json!({"TableName": table, "Key": key(pk)}).to_string()
}

fn put(table: &str, pk: &str, v: &str) -> String {
    json!({"TableName": table, "Item": {"pk": {"S": pk}, "sk": {"N": "1"}, "v": {"S": v}}})
        .to_string()
}

fn projected(table: &str, pk: &str) -> String {
    json!({"TableName": table, "Key": key(pk), "ProjectionExpression": "v"}).to_string()
}

/// Every part of an entry expires within the TTL of the read that filled it: a projection
/// read first does not live on because a whole-item read filled the entry later.
#[tokio::test]
async fn a_projection_expires_with_its_own_ttl_whatever_fills_the_entry_later() {
    let env = Relayed::start(|c| c.cache.item_ttl_ms = 1500).await;
    let direct = |op: &'static str, body: String| {
        let url = env.upstream.url.clone();
        async move { dynamo(&url, op, &body).await }
    };
    direct("PutItem", put("orders", "a", "one")).await;
    let first = env.call("GetItem", &projected("orders", "a")).await;
    assert_eq!(first.json()["Item"]["v"]["S"], "one");
    // Another writer changes the item; the proxy cannot know.
    direct("PutItem", put("orders", "a", "two")).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    // A whole-item read fills the entry afresh.
    let whole = env.call("GetItem", &get("orders", "a")).await;
    assert_eq!(whole.json()["Item"]["v"]["S"], "two");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // The projection was read 1.9 s ago: past its TTL, it must not be served.
    let again = env.call("GetItem", &projected("orders", "a")).await;
    assert_eq!(again.json()["Item"]["v"]["S"], "two", "{:?}", again.json());
}

/// When the proxy cannot tell which keys a multi-table write touches (here DescribeTable
/// fails), it drops every table the write names, not only the first it could not place.
#[tokio::test]
async fn an_unattributable_multi_table_write_drops_every_table_it_names() {
    let env = Relayed::start(|_| {}).await;
    create_table(&sdk(&env.upstream.url), "zebras").await;
    env.call("PutItem", &put("zebras", "z", "old")).await;
    let cached = env.call("GetItem", &get("zebras", "z")).await;
    assert_eq!(cached.cache_status(), "hit");

    env.relay.set_reply_for(
        "DescribeTable",
        Reply::Fixed {
            status: 500,
            headers: vec![],
            body: Bytes::from_static(b"{\"__type\":\"InternalServerError\"}"),
        },
    );
    // A fresh proxy in front of the same relay knows no key schema yet.
    let proxy = Proxy::start_with(&env.relay.url, |_| {}).await;
    dynamo(&proxy.url, "PutItem", &put("zebras", "z", "old")).await;
    let cached = dynamo(&proxy.url, "GetItem", &get("zebras", "z")).await;
    assert_eq!(cached.json()["Item"]["v"]["S"], "old");
    assert_eq!(
        dynamo(&proxy.url, "GetItem", &get("zebras", "z"))
            .await
            .cache_status(),
        "hit"
    );
    for (op, body) in [
        (
            "BatchWriteItem",
            json!({"RequestItems": {
                "orders": [{"PutRequest": {"Item": {"pk": {"S": "o"}, "sk": {"N": "1"}}}}],
                "zebras": [{"PutRequest": {"Item": {"pk": {"S": "z"}, "sk": {"N": "1"}, "v": {"S": "batch"}}}}],
            }}),
        ),
        (
            "TransactWriteItems",
            json!({"TransactItems": [
                {"Put": {"TableName": "orders", "Item": {"pk": {"S": "o"}, "sk": {"N": "1"}}}},
                {"Put": {"TableName": "zebras", "Item": {"pk": {"S": "z"}, "sk": {"N": "1"}, "v": {"S": "transact"}}}},
            ]}),
        ),
    ] {
        let written = dynamo(&proxy.url, op, &body.to_string()).await;
        assert_eq!(written.status, 200, "{op}: {:?}", written.json());
        let read = dynamo(&proxy.url, "GetItem", &get("zebras", "z")).await;
        let expected = if op == "BatchWriteItem" {
            "batch"
        } else {
            "transact"
        };
        assert_eq!(read.json()["Item"]["v"]["S"], expected, "{op}");
        // And the new value is cached again.
        dynamo(&proxy.url, "GetItem", &get("zebras", "z")).await;
    }
}

/// A request DynamoDB would refuse is never answered from memory: it goes upstream, and
/// DynamoDB's error comes back.
#[tokio::test]
async fn requests_dynamodb_refuses_are_never_answered_from_memory() {
    let env = Relayed::start(|_| {}).await;
    env.call("PutItem", &put("orders", "a", "one")).await;
    assert_eq!(
        env.call("GetItem", &get("orders", "a"))
            .await
            .cache_status(),
        "hit"
    );
    let refused = [
        ("BatchGetItem", json!({"RequestItems": {}})),
        (
            "BatchGetItem",
            json!({"RequestItems": {"orders": {"Keys": [key("a"), key("a")]}}}),
        ),
        (
            "GetItem",
            json!({"TableName": "orders", "Key": key("a"), "ProjectionExpression": "v", "AttributesToGet": ["v"]}),
        ),
        (
            "GetItem",
            json!({"TableName": "orders", "Key": key("a"), "ExpressionAttributeNames": {"#v": "v"}}),
        ),
        (
            "GetItem",
            json!({"TableName": "orders", "Key": key("a"), "ReturnConsumedCapacity": "EVERYTHING"}),
        ),
    ];
    for (op, body) in refused {
        let before = env.relay.count(op);
        let answer = env.call(op, &body.to_string()).await;
        assert_eq!(answer.status, 400, "{op} {body}: {:?}", answer.json());
        assert!(
            answer.error_type().contains("ValidationException"),
            "{op} {body}: {:?}",
            answer.json()
        );
        assert_eq!(answer.cache_status(), "bypass", "{op} {body}");
        assert_eq!(
            env.relay.count(op),
            before + 1,
            "{op} {body} reached DynamoDB"
        );
    }
}

/// Callers that share one upstream read each get a request id of their own.
#[tokio::test]
async fn callers_sharing_one_read_get_their_own_request_ids() {
    let upstream = Upstream::start().await;
    let relay = Shim::slow_relay(&upstream.url, "GetItem", 300).await;
    let proxy = Proxy::start(&relay.url).await;
    create_table(&sdk(&upstream.url), "orders").await;
    dynamo(&upstream.url, "PutItem", &put("orders", "a", "one")).await;
    let read = get("orders", "a");
    let (first, second) = tokio::join!(
        dynamo(&proxy.url, "GetItem", &read),
        dynamo(&proxy.url, "GetItem", &read),
    );
    assert_eq!(relay.count("GetItem"), 1, "the two misses share one read");
    assert_eq!(first.json(), second.json());
    let (a, b) = (
        first.header("x-amzn-requestid").unwrap(),
        second.header("x-amzn-requestid").unwrap(),
    );
    assert_ne!(a, b, "two callers, one request id");
}

/// An UpdateItem whose `ALL_NEW` answer cannot be trimmed to what the caller asked for is
/// relayed as DynamoDB gave it, not turned into a 5xx that the SDK would retry (applying an
/// `ADD` twice); the key is dropped.
#[tokio::test]
async fn an_untrimmable_update_answer_is_relayed_not_retried() {
    let env = Relayed::start(|_| {}).await;
    env.call("PutItem", &put("orders", "a", "one")).await;
    env.relay.set_reply_for(
        "UpdateItem",
        Reply::Fixed {
            status: 200,
            headers: vec![("content-type", "application/x-amz-json-1.0".into())],
            body: Bytes::from_static(b"not the JSON DynamoDB sends"),
        },
    );
    let update = json!({"TableName": "orders", "Key": key("a"),
        "UpdateExpression": "ADD n :one", "ExpressionAttributeValues": {":one": {"N": "1"}}});
    let answer = dynamo(&env.proxy.url, "UpdateItem", &update.to_string()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(&answer.body[..], b"not the JSON DynamoDB sends");
    env.relay.clear_reply_for("UpdateItem");
    let read = env.call("GetItem", &get("orders", "a")).await;
    assert_eq!(read.cache_status(), "miss", "the key was dropped");
}

/// A DDL or PartiQL request DynamoDB refused changed nothing, so it leaves no invalidation.
#[tokio::test]
async fn refused_table_changes_invalidate_nothing() {
    let env = Relayed::start(|_| {}).await;
    env.call("PutItem", &put("orders", "a", "one")).await;
    for i in 0..20 {
        let answer = env
            .call(
                "DeleteTable",
                &json!({"TableName": format!("no-such-{i}")}).to_string(),
            )
            .await;
        assert_eq!(answer.status, 400);
        let answer = env
            .call(
                "ExecuteStatement",
                &json!({"Statement": format!("DELETE FROM \"no-such-{i}\" WHERE pk='a' AND sk=1")})
                    .to_string(),
            )
            .await;
        assert_eq!(answer.status, 400);
    }
    let metrics = env.proxy.metrics().await;
    for reason in ["table_change", "write"] {
        let sample =
            format!("dynamo_cache_invalidations_total{{cache=\"item\",reason=\"{reason}\"}}");
        assert_eq!(metric_value(&metrics, &sample), 0.0, "{sample}");
    }
    assert_eq!(
        env.call("GetItem", &get("orders", "a"))
            .await
            .cache_status(),
        "hit"
    );
}

/// Stream followers are started only for tables DynamoDB answered for: made-up table names
/// start no task and no DescribeTable polling.
#[tokio::test]
async fn made_up_table_names_start_no_stream_followers() {
    let env = Relayed::start(|c| c.streams.enabled = true).await;
    for i in 0..30 {
        let name = format!("made-up-{i}");
        assert_eq!(env.call("GetItem", &get(&name, "a")).await.status, 400);
    }
    // A follower would have asked DynamoDB about each name by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        env.relay.count("DescribeTable"),
        0,
        "followers for made-up names"
    );
    for i in 0..30 {
        let name = format!("made-up-{i}");
        assert_eq!(env.call("PutItem", &put(&name, "a", "x")).await.status, 400);
        let query = json!({"TableName": name, "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {"S": "a"}}});
        assert_eq!(env.call("Query", &query.to_string()).await.status, 400);
    }
    // A real table is still followed.
    env.call("PutItem", &put("orders", "a", "one")).await;
    let stats = http_get(&format!("{}/cache", env.proxy.admin_url))
        .await
        .unwrap();
    let followed: Vec<String> = stats.json()["streams"]["tables"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(followed, ["orders"]);
}

/// Clients' DynamoDB Streams requests go to the Streams endpoint, not the table API's.
#[tokio::test]
async fn streams_api_requests_go_to_the_streams_endpoint() {
    let upstream = Upstream::start().await;
    let tables = Shim::relay(&upstream.url, 0).await;
    let streams = Shim::relay(&upstream.url, 0).await;
    let streams_url = streams.url.clone();
    let proxy = Proxy::start_with(&tables.url, |c| c.streams.endpoint = Some(streams_url)).await;
    let answer = dynamo_target(&proxy.url, "DynamoDBStreams_20120810.ListStreams", "{}").await;
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    let target = "DynamoDBStreams_20120810.ListStreams";
    assert_eq!(streams.count_target(target), 1);
    assert_eq!(tables.count_target(target), 0);
    dynamo(&proxy.url, "ListTables", "{}").await;
    assert_eq!(tables.count("ListTables"), 1);
    assert_eq!(streams.count("ListTables"), 0);
}
