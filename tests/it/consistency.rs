//! Read-your-writes under concurrency: once the proxy acknowledged a write of version V of a
//! key, no read of that key that starts afterwards returns a version older than V.
//!
//! Writers and readers share a few hot keys through a relay that delays every upstream answer
//! at random, so slow miss fills routinely land after newer writes: without versioned fills
//! the cache would keep the older value and this test fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::time::Duration;

use crate::common::lagging::Lagging;
use crate::common::shim::Shim;
use crate::common::*;
use serde_json::{Value, json};

const KEYS: usize = 3;
const WRITES_PER_KEY: u64 = 120;
const READERS: usize = 6;

fn version_of(item: &Value) -> u64 {
    item["ver"]["N"]
        .as_str()
        .map(|n| n.parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_read_after_an_acknowledged_write_sees_an_older_version() {
    let upstream = Upstream::start().await;
    let relay = Shim::relay(&upstream.url, 4).await;
    let proxy = Proxy::start(&relay.url).await;
    create_table(&sdk(&upstream.url), "hot").await;

    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let done = Arc::new(AtomicBool::new(false));

    let mut writers = Vec::new();
    for k in 0..KEYS {
        let (url, acked) = (proxy.url.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for ver in 1..=WRITES_PER_KEY {
                let (op, body) = if ver.is_multiple_of(2) {
                    let item = json!({"pk": {"S": format!("k{k}")}, "sk": {"N": "0"},
                        "ver": {"N": ver.to_string()}});
                    ("PutItem", json!({"TableName": "hot", "Item": item}))
                } else {
                    (
                        "UpdateItem",
                        json!({"TableName": "hot",
                        "Key": {"pk": {"S": format!("k{k}")}, "sk": {"N": "0"}},
                        "UpdateExpression": "SET ver = :v",
                        "ExpressionAttributeValues": {":v": {"N": ver.to_string()}}}),
                    )
                };
                let answer = dynamo(&url, op, &body.to_string()).await;
                assert_eq!(answer.status, 200, "{op}: {:?}", answer.body);
                acked[k].store(ver, Ordering::SeqCst);
            }
        }));
    }

    let mut readers = Vec::new();
    for r in 0..READERS {
        let (url, acked, done) = (proxy.url.clone(), acked.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            let mut reads = 0u64;
            let mut violations = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let k = fastrand::usize(..KEYS);
                let floor = acked[k].load(Ordering::SeqCst);
                let key = json!({"pk": {"S": format!("k{k}")}, "sk": {"N": "0"}});
                // Mostly GetItem; every third read of reader 0 goes through BatchGetItem.
                let (op, answer) = if r == 0 && reads.is_multiple_of(3) {
                    let body = json!({"RequestItems": {"hot": {"Keys": [key]}}});
                    (
                        "BatchGetItem",
                        dynamo(&url, "BatchGetItem", &body.to_string()).await,
                    )
                } else {
                    let body = json!({"TableName": "hot", "Key": key});
                    ("GetItem", dynamo(&url, "GetItem", &body.to_string()).await)
                };
                let seen = match op {
                    "GetItem" => version_of(&answer.json()["Item"]),
                    _ => answer.json()["Responses"]["hot"]
                        .as_array()
                        .and_then(|items| items.first())
                        .map(version_of)
                        .unwrap_or(0),
                };
                if seen < floor {
                    let how = answer.header("x-dynamo-cache").unwrap_or("").to_string();
                    violations.push((k, floor, seen, op, how));
                }
                reads += 1;
            }
            (reads, violations)
        }));
    }

    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let mut total_reads = 0;
    let mut violations = Vec::new();
    for reader in readers {
        let (reads, found) = reader.await.unwrap();
        total_reads += reads;
        violations.extend(found);
    }
    assert!(total_reads > 100, "readers barely ran: {total_reads}");
    assert!(
        violations.is_empty(),
        "{} of {total_reads} reads saw a version older than one already acknowledged \
         (key, acknowledged, seen, operation, x-dynamo-cache): {:?}",
        violations.len(),
        &violations[..violations.len().min(10)]
    );
    let hits = proxy
        .metric(r#"dynamo_cache_requests_total{op="GetItem",protocol="http",result="hit"}"#)
        .await;
    assert!(
        hits > 0.0,
        "the cache served nothing: the test proved nothing"
    );
}

/// A read that arrives after a write was acknowledged must not share an upstream read that
/// began before the write (single flight must respect read-your-writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_never_joins_a_read_older_than_a_write_it_saw_acknowledged() {
    let upstream = Upstream::start().await;
    let relay = Shim::slow_relay(&upstream.url, ".GetItem", 300).await;
    let proxy = Proxy::start(&relay.url).await;
    create_table(&sdk(&upstream.url), "hot").await;
    let get = json!({"TableName": "hot", "Key": {"pk": {"S": "k"}, "sk": {"N": "0"}}}).to_string();
    let put = |ver: u64| {
        json!({"TableName": "hot", "Item": {"pk": {"S": "k"}, "sk": {"N": "0"},
            "ver": {"N": ver.to_string()}}})
        .to_string()
    };
    dynamo(&upstream.url, "PutItem", &put(1)).await; // v1, around the proxy: nothing cached

    // Reader A: a miss whose upstream read sees v1 and is delivered 300 ms later.
    let early = {
        let (url, get) = (proxy.url.clone(), get.clone());
        tokio::spawn(async move { dynamo(&url, "GetItem", &get).await })
    };
    // Let A's read reach the upstream, then write v2 through the proxy and wait for the ack.
    // A transaction drops the key rather than storing v2, so reader B must go upstream.
    relay.wait_for("GetItem").await;
    let transact =
        json!({"TransactItems": [{"Put": serde_json::from_str::<Value>(&put(2)).unwrap()}]});
    let ack = dynamo(&proxy.url, "TransactWriteItems", &transact.to_string()).await;
    assert_eq!(ack.status, 200, "{:?}", ack.body);

    // Reader B starts after v2's ack, while A's read is still in flight.
    let late = dynamo(&proxy.url, "GetItem", &get).await;
    assert_eq!(
        version_of(&late.json()["Item"]),
        2,
        "a read after the acknowledged write saw an older version"
    );
    let early = early.await.unwrap();
    assert!(version_of(&early.json()["Item"]) >= 1);
}

/// The same when the write is one the proxy can only attribute to its table (PartiQL): a
/// reader arriving after its acknowledgement does not share a read that began before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_never_joins_a_read_older_than_a_table_wide_write() {
    let upstream = Upstream::start().await;
    let relay = Shim::slow_relay(&upstream.url, ".GetItem", 300).await;
    let proxy = Proxy::start(&relay.url).await;
    create_table(&sdk(&upstream.url), "hot").await;
    let get = json!({"TableName": "hot", "Key": {"pk": {"S": "k"}, "sk": {"N": "0"}}}).to_string();
    let put = json!({"TableName": "hot", "Item": {"pk": {"S": "k"}, "sk": {"N": "0"},
        "ver": {"N": "1"}}});
    dynamo(&upstream.url, "PutItem", &put.to_string()).await;

    let early = {
        let (url, get) = (proxy.url.clone(), get.clone());
        tokio::spawn(async move { dynamo(&url, "GetItem", &get).await })
    };
    relay.wait_for("GetItem").await;
    let statement = json!({"Statement": "UPDATE \"hot\" SET ver = 2 WHERE pk = 'k' AND sk = 0"});
    let ack = dynamo(&proxy.url, "ExecuteStatement", &statement.to_string()).await;
    assert_eq!(ack.status, 200, "{:?}", ack.body);

    let late = dynamo(&proxy.url, "GetItem", &get).await;
    assert_eq!(
        version_of(&late.json()["Item"]),
        2,
        "a read after the acknowledged PartiQL write shared an older read"
    );
    early.await.unwrap();
}

/// Every write operation and every cached read, mixed at random for a few seconds through a
/// relay that delays answers at random: no read that began after a write was acknowledged
/// sees an older version. (`cargo bench --bench consistency` runs the same for minutes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn randomised_mix_of_every_write_and_cached_read_keeps_read_your_writes() {
    let upstream = Upstream::start().await;
    let relay = Shim::relay(&upstream.url, 3).await;
    let proxy = Proxy::start(&relay.url).await;
    create_table(&sdk(&upstream.url), checker::TABLE).await;
    let report = checker::run(
        &proxy.url,
        Duration::from_secs(5),
        3,
        4,
        checker::index_at_once(),
    )
    .await;
    assert_clean(&report);
}

/// The same against an upstream whose eventually consistent reads lag as DynamoDB's do: two
/// emulators, the replica applying each write 200 ms late. Index Queries may lag as far as
/// the replica does, never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn randomised_mix_keeps_read_your_writes_when_the_upstream_lags() {
    let lag = Duration::from_millis(200);
    let lagging = Lagging::start(lag).await;
    create_table(&sdk(&lagging.url), checker::TABLE).await;
    let proxy = Proxy::start(&lagging.url).await;
    let report = checker::run(
        &proxy.url,
        Duration::from_secs(5),
        3,
        4,
        lagging.index_sees(),
    )
    .await;
    assert_clean(&report);
    assert!(
        lagging.replica_reads("Query") + lagging.replica_reads("GetItem") > 0,
        "nothing read the lagging replica: the check proved nothing"
    );
}

fn assert_clean(report: &checker::Report) {
    eprintln!("{report:#?}");
    assert!(
        report.violations.is_empty(),
        "{} violations, the first: {:#?}",
        report.violations.len(),
        &report.violations[..report.violations.len().min(10)]
    );
    for op in [
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
        "TransactWriteItems",
        "ExecuteStatement",
    ] {
        assert!(
            report.writes.get(op).copied().unwrap_or(0) > 0,
            "no {op} was acknowledged"
        );
    }
    for kind in [
        "GetItem",
        "GetItem projected",
        "BatchGetItem",
        "Query",
        "Scan",
        "index Query",
    ] {
        let (reads, hits) = report.reads.get(kind).copied().unwrap_or_default();
        assert!(reads > 0, "no {kind} was checked");
        // Within the consistency window of a write to its table an index Query is relayed,
        // not cached, and the writers here never pause.
        assert!(
            hits > 0 || kind == "index Query",
            "no {kind} was answered from memory: the check proved nothing"
        );
    }
}
