//! Read-your-writes against an upstream whose eventually consistent reads lag, as DynamoDB's
//! do ([`Lagging`]: two emulators, the replica applying writes `LAG` late).
//!
//! For every write kind and every cached read: the item is read through the proxy (cached),
//! written through the proxy, and read again right after the write is acknowledged. The
//! second read must show the write. It is a miss (the write dropped the entry), so it fills
//! while the replica still holds the old version: without the consistency window it would
//! read the replica and cache the old version for the TTL.
//!
//! Item reads only miss after a write the proxy cannot keep the result of, so there the write
//! races another client's conditional write of the same item (which fails): with two writes
//! in flight the proxy cannot tell what the item became, and drops it.
//!
//! A global secondary index cannot be read strongly consistently: an index Query may lag, but
//! at most by the replica's lag, never for a TTL.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::lagging::Lagging;
use crate::common::*;

/// How late the replica applies writes.
const LAG: Duration = Duration::from_millis(400);
const TABLE: &str = "lagged";

/// The written item's key.
fn key() -> Value {
    json!({"pk": {"S": "p"}, "sk": {"N": "1"}})
}

fn item(ver: u64) -> Value {
    json!({"pk": {"S": "p"}, "sk": {"N": "1"}, "ver": {"N": ver.to_string()}, "g": {"S": "x"}})
}

/// The write kinds, each writing version 2 of the item (or deleting it).
#[derive(Debug, Clone, Copy)]
enum Write {
    Put,
    Update,
    Delete,
    Batch,
    Transact,
    PartiQl,
}

impl Write {
    fn request(self) -> (&'static str, Value) {
        match self {
            Write::Put => ("PutItem", json!({"TableName": TABLE, "Item": item(2)})),
            Write::Update => (
                "UpdateItem",
                json!({"TableName": TABLE, "Key": key(), "UpdateExpression": "SET ver = :v",
                    "ExpressionAttributeValues": {":v": {"N": "2"}}}),
            ),
            Write::Delete => ("DeleteItem", json!({"TableName": TABLE, "Key": key()})),
            Write::Batch => (
                "BatchWriteItem",
                json!({"RequestItems": {TABLE: [{"PutRequest": {"Item": item(2)}}]}}),
            ),
            Write::Transact => (
                "TransactWriteItems",
                json!({"TransactItems": [{"Update": {"TableName": TABLE, "Key": key(),
                    "UpdateExpression": "SET ver = :v",
                    "ExpressionAttributeValues": {":v": {"N": "2"}}}}]}),
            ),
            Write::PartiQl => (
                "ExecuteStatement",
                json!({"Statement":
                    format!("UPDATE \"{TABLE}\" SET ver = 2 WHERE pk = 'p' AND sk = 1")}),
            ),
        }
    }

    /// The version a read must see once the write is acknowledged (`None`: absent).
    fn leaves(self) -> Option<u64> {
        match self {
            Write::Delete => None,
            _ => Some(2),
        }
    }
}

/// The cached reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Read {
    Get,
    GetProjected,
    BatchGet,
    Query,
    Scan,
    IndexQuery,
}

impl Read {
    fn request(self) -> (&'static str, Value) {
        match self {
            Read::Get => ("GetItem", json!({"TableName": TABLE, "Key": key()})),
            Read::GetProjected => (
                "GetItem",
                json!({"TableName": TABLE, "Key": key(), "ProjectionExpression": "pk, sk, ver"}),
            ),
            Read::BatchGet => (
                "BatchGetItem",
                json!({"RequestItems": {TABLE: {"Keys": [key(), {"pk": {"S": "p"}, "sk": {"N": "2"}}]}}}),
            ),
            Read::Query => (
                "Query",
                json!({"TableName": TABLE, "KeyConditionExpression": "pk = :p",
                    "ExpressionAttributeValues": {":p": {"S": "p"}}}),
            ),
            Read::Scan => ("Scan", json!({"TableName": TABLE})),
            Read::IndexQuery => (
                "Query",
                json!({"TableName": TABLE, "IndexName": "by_g",
                    "KeyConditionExpression": "g = :g",
                    "ExpressionAttributeValues": {":g": {"S": "x"}}}),
            ),
        }
    }

    fn of_items(self) -> bool {
        matches!(self, Read::Get | Read::GetProjected | Read::BatchGet)
    }

    /// The written item's version in an answer (`None`: absent).
    fn version(self, answer: &Raw) -> Option<u64> {
        assert_eq!(answer.status, 200, "{self:?}: {:?}", answer.body);
        let json = answer.json();
        let items: Vec<Value> = match self {
            Read::Get | Read::GetProjected => json.get("Item").cloned().into_iter().collect(),
            Read::BatchGet => json["Responses"][TABLE]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            _ => json["Items"].as_array().cloned().unwrap_or_default(),
        };
        items
            .iter()
            .find(|i| i["pk"]["S"] == "p" && i["sk"]["N"] == "1")
            .map(|i| i["ver"]["N"].as_str().unwrap().parse().unwrap())
    }
}

/// A lagging upstream with the table and version 1 of the item everywhere, and the proxy.
async fn bench() -> (Lagging, Proxy) {
    let lagging = Lagging::start(LAG).await;
    table_like_orders(&sdk(&lagging.url), TABLE)
        .send()
        .await
        .unwrap();
    let put = json!({"TableName": TABLE, "Item": item(1)});
    assert_eq!(
        dynamo(&lagging.url, "PutItem", &put.to_string())
            .await
            .status,
        200
    );
    lagging.settle().await;
    let proxy = Proxy::start(&lagging.url).await;
    (lagging, proxy)
}

async fn check(write: Write, read: Read) {
    let (lagging, proxy) = bench().await;
    let (read_op, read_body) = read.request();
    let read_body = read_body.to_string();

    // Cached as version 1.
    let first = dynamo(&proxy.url, read_op, &read_body).await;
    assert_eq!(read.version(&first), Some(1), "{read:?} before the write");
    let again = dynamo(&proxy.url, read_op, &read_body).await;
    assert_eq!(again.cache_status(), "hit", "{read:?} was not cached");

    // The write, acknowledged.
    let (write_op, write_body) = write.request();
    let ack = if read.of_items() {
        // Another client's conditional write of the item is in flight at the same time.
        lagging.hold_writes(Duration::from_millis(150));
        let before = lagging.count(write_op);
        let url = proxy.url.clone();
        let body = write_body.to_string();
        let ours = tokio::spawn(async move { dynamo(&url, write_op, &body).await });
        lagging.wait_for(write_op, before + 1).await;
        let theirs = json!({"TableName": TABLE, "Item": item(9),
            "ConditionExpression": "ver = :never",
            "ExpressionAttributeValues": {":never": {"N": "-1"}}});
        let theirs = dynamo(&proxy.url, "PutItem", &theirs.to_string()).await;
        assert_eq!(theirs.status, 400, "{:?}", theirs.body);
        let ack = ours.await.unwrap();
        lagging.hold_writes(Duration::ZERO);
        ack
    } else {
        dynamo(&proxy.url, write_op, &write_body.to_string()).await
    };
    assert_eq!(ack.status, 200, "{write:?}: {:?}", ack.body);
    let acknowledged = std::time::Instant::now();

    // Right after the acknowledgement the replica still has version 1.
    let strong_before = lagging.strong_reads(read_op);
    let after = dynamo(&proxy.url, read_op, &read_body).await;
    assert_ne!(
        after.cache_status(),
        "hit",
        "{read:?}: the write left its entry"
    );
    if read == Read::IndexQuery {
        // DynamoDB's own index lags; the proxy must not make it lag longer. Read again once
        // the replica has caught up: the answer must be the new one, not version 1 cached.
        assert!(
            acknowledged.elapsed() < LAG,
            "the machine stalled past the lag: the test cannot tell"
        );
        tokio::time::sleep_until((acknowledged + LAG + Duration::from_millis(150)).into()).await;
        let later = dynamo(&proxy.url, read_op, &read_body).await;
        assert_eq!(
            read.version(&later),
            write.leaves(),
            "{write:?} then index Query: {} a lag after the write, version 1 still served ({})",
            LAG.as_millis(),
            later.cache_status()
        );
        assert!(
            lagging.count(read_op) > 0 && lagging.strong_reads(read_op) == strong_before,
            "an index was read strongly consistently: DynamoDB refuses that"
        );
    } else {
        assert_eq!(
            read.version(&after),
            write.leaves(),
            "{write:?} then {read:?}: the read after the acknowledgement saw the replica's \
             old version ({})",
            after.cache_status()
        );
        assert!(
            lagging.strong_reads(read_op) > strong_before,
            "{write:?} then {read:?}: the fill did not read strongly consistently"
        );
    }
}

macro_rules! matrix {
    ($($name:ident: $write:ident, $read:ident;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                check(Write::$write, Read::$read).await;
            }
        )*
    };
}

matrix! {
    put_then_get: Put, Get;
    put_then_projected_get: Put, GetProjected;
    put_then_batch_get: Put, BatchGet;
    put_then_query: Put, Query;
    put_then_scan: Put, Scan;
    put_then_index_query: Put, IndexQuery;
    update_then_get: Update, Get;
    update_then_projected_get: Update, GetProjected;
    update_then_batch_get: Update, BatchGet;
    update_then_query: Update, Query;
    update_then_scan: Update, Scan;
    update_then_index_query: Update, IndexQuery;
    delete_then_get: Delete, Get;
    delete_then_projected_get: Delete, GetProjected;
    delete_then_batch_get: Delete, BatchGet;
    delete_then_query: Delete, Query;
    delete_then_scan: Delete, Scan;
    delete_then_index_query: Delete, IndexQuery;
    batch_write_then_get: Batch, Get;
    batch_write_then_projected_get: Batch, GetProjected;
    batch_write_then_batch_get: Batch, BatchGet;
    batch_write_then_query: Batch, Query;
    batch_write_then_scan: Batch, Scan;
    batch_write_then_index_query: Batch, IndexQuery;
    transact_write_then_get: Transact, Get;
    transact_write_then_projected_get: Transact, GetProjected;
    transact_write_then_batch_get: Transact, BatchGet;
    transact_write_then_query: Transact, Query;
    transact_write_then_scan: Transact, Scan;
    transact_write_then_index_query: Transact, IndexQuery;
    partiql_write_then_get: PartiQl, Get;
    partiql_write_then_projected_get: PartiQl, GetProjected;
    partiql_write_then_batch_get: PartiQl, BatchGet;
    partiql_write_then_query: PartiQl, Query;
    partiql_write_then_scan: PartiQl, Scan;
    partiql_write_then_index_query: PartiQl, IndexQuery;
}

/// How many fills of `cache` read as `read`, in a metrics exposition.
fn fills(metrics: &str, cache: &str, read: &str) -> f64 {
    let sample = format!(r#"dynamo_cache_fill_reads_total{{cache="{cache}",read="{read}"}}"#);
    metric_value(metrics, &sample)
}

/// Once the window has closed, fills read as the caller asked: the extra read cost falls only
/// on reads that race a recent write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_window_fills_read_as_asked() {
    let lagging = Lagging::start(Duration::from_millis(50)).await;
    table_like_orders(&sdk(&lagging.url), TABLE)
        .send()
        .await
        .unwrap();
    let proxy = Proxy::start_with(&lagging.url, |c| c.cache.consistency_window_ms = 300).await;
    let (op, get) = Read::Get.request();
    let ack = dynamo(
        &proxy.url,
        "TransactWriteItems",
        &Write::Transact.request().1.to_string(),
    )
    .await;
    assert_eq!(ack.status, 200, "{:?}", ack.body);
    tokio::time::sleep(Duration::from_millis(400)).await;
    lagging.settle().await;
    let (strong, eventual) = (lagging.strong_reads(op), lagging.replica_reads(op));
    let read = dynamo(&proxy.url, op, &get.to_string()).await;
    assert_eq!(read.cache_status(), "miss");
    assert_eq!(
        lagging.strong_reads(op),
        strong,
        "read strongly after the window"
    );
    assert_eq!(lagging.replica_reads(op), eventual + 1);
    let metrics = proxy.metrics().await;
    assert_eq!(fills(&metrics, "item", "eventual"), 1.0);
    assert_eq!(fills(&metrics, "item", "strong"), 0.0);
}

/// Inside the window, strong fills and uncached index answers are counted, and an index
/// Query is relayed each time rather than cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_inside_the_window_are_counted_and_index_answers_are_not_cached() {
    let (lagging, proxy) = bench().await;
    let (write_op, write) = Write::Transact.request();
    assert_eq!(
        dynamo(&proxy.url, write_op, &write.to_string())
            .await
            .status,
        200
    );
    let (op, get) = Read::Get.request();
    assert_eq!(
        Read::Get.version(&dynamo(&proxy.url, op, &get.to_string()).await),
        Some(2)
    );
    let (op, index) = Read::IndexQuery.request();
    let before = lagging.count(op);
    for _ in 0..3 {
        let answer = dynamo(&proxy.url, op, &index.to_string()).await;
        assert_eq!(answer.status, 200);
        assert_ne!(answer.cache_status(), "hit");
    }
    assert_eq!(
        lagging.count(op),
        before + 3,
        "an index answer was cached in the window"
    );
    let metrics = proxy.metrics().await;
    assert_eq!(fills(&metrics, "item", "strong"), 1.0);
    assert_eq!(fills(&metrics, "query", "uncached"), 3.0);
}

/// A write around the proxy, then a flush of its table (what an operator does after fixing
/// data by hand): the next read shows the write, though the replica has not seen it yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_after_a_write_around_the_proxy_fills_strongly() {
    let (lagging, proxy) = bench().await;
    let (op, get) = Read::Get.request();
    let get = get.to_string();
    assert_eq!(
        Read::Get.version(&dynamo(&proxy.url, op, &get).await),
        Some(1)
    );
    let put = json!({"TableName": TABLE, "Item": item(2)});
    assert_eq!(
        dynamo(&lagging.url, "PutItem", &put.to_string())
            .await
            .status,
        200
    );
    let flushed = send(
        http::Request::post(format!("{}/cache/flush?table={TABLE}", proxy.admin_url))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(flushed.status, 200, "{:?}", flushed.body);
    let read = dynamo(&proxy.url, op, &get).await;
    assert_eq!(
        Read::Get.version(&read),
        Some(2),
        "the fill after the flush read the lagging replica"
    );
}
