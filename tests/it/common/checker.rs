//! A randomised read-your-writes checker: writers and readers share a few keys of one table
//! through the proxy, with every write operation and every cached read mixed in, and every
//! read is checked against the writes acknowledged before it started.
//!
//! The rule: a read that starts after the proxy acknowledged version V of a key sees V or a
//! later version. Each key's writes are serialised and numbered, and each write is recorded
//! before it is sent, so a read may always see a write still in flight (that is newer). A key
//! seen absent is fine only if a delete numbered at least V exists.
//!
//! Global secondary indexes are eventually consistent in DynamoDB itself: an index Query is
//! checked against the writes acknowledged by the instant [`IndexSees`] gives when it starts
//! (its start against a strongly consistent upstream; against a lagging one, what its replica
//! has applied).
//!
//! Tables named by ARN are not mixed in here: the emulator does not accept table ARNs for
//! item operations. The interop suite checks them against moto.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::dynamo;

/// Says, as an index Query starts, the instant by which acknowledged writes must show in it.
pub type IndexSees = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Index Queries see every write as soon as it is acknowledged (a strongly consistent
/// upstream).
pub fn index_at_once() -> IndexSees {
    Arc::new(Instant::now)
}

/// The table the checker uses (created by the caller with [`super::create_table`]).
pub const TABLE: &str = "mix";
const PARTITIONS: usize = 3;
const SORTS: usize = 3;
const KEYS: usize = PARTITIONS * SORTS;

/// What one run did.
#[derive(Debug, Default)]
pub struct Report {
    /// Acknowledged writes, by operation.
    pub writes: BTreeMap<&'static str, u64>,
    /// Writes DynamoDB refused (a PartiQL update of a deleted item, say): not acknowledged.
    pub refused: u64,
    /// Checked reads, by kind, and how many were answered from memory.
    pub reads: BTreeMap<&'static str, (u64, u64)>,
    /// Reads that saw something older than an acknowledged write.
    pub violations: Vec<String>,
}

/// One key's history.
#[derive(Default)]
struct Key {
    /// The last version acknowledged.
    acked: AtomicU64,
    /// Every version sent (acknowledged or not) and whether it left the item present.
    sent: Mutex<BTreeMap<u64, bool>>,
    /// Serialises the key's writes, so versions reach DynamoDB in order.
    writing: tokio::sync::Mutex<u64>,
    /// When each version was acknowledged, and by which node, in order.
    acks: Mutex<Vec<(Instant, u64, usize)>>,
}

impl Key {
    /// The last version acknowledged at or before `at`.
    fn acked_by(&self, at: Instant) -> u64 {
        let acks = self.acks.lock().unwrap();
        let n = acks.partition_point(|&(when, _, _)| when <= at);
        if n == 0 { 0 } else { acks[n - 1].1 }
    }

    /// The last version a read through `node` that began at `at` must see: acknowledged by
    /// `node` before `at`, or by another node of the fleet more than `cross_node` before.
    fn floor_for(&self, node: usize, at: Instant, cross_node: Duration) -> u64 {
        let others = at.checked_sub(cross_node).unwrap_or(at);
        let acks = self.acks.lock().unwrap();
        acks.iter()
            .rev()
            .find(|&&(when, _, by)| (by == node && when <= at) || when <= others)
            .map_or(0, |&(_, ver, _)| ver)
    }

    /// The acknowledgements around `at`, for a violation's message: version, node and when
    /// (ms relative to `at`).
    fn story(&self, at: Instant) -> String {
        let acks = self.acks.lock().unwrap();
        let n = acks.partition_point(|&(when, _, _)| when <= at);
        acks[n.saturating_sub(8)..(n + 2).min(acks.len())]
            .iter()
            .map(|&(when, ver, by)| {
                let ms = if when <= at {
                    -((at - when).as_secs_f64() * 1000.0)
                } else {
                    (when - at).as_secs_f64() * 1000.0
                };
                format!("v{ver} by node {by} at {ms:+.1} ms")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether seeing the item absent is explained by a delete numbered `floor` or later.
    fn absence_explained(&self, floor: u64) -> bool {
        floor == 0
            || self
                .sent
                .lock()
                .unwrap()
                .range(floor..)
                .any(|(_, present)| !present)
    }
}

fn pk(k: usize) -> String {
    format!("p{}", k / SORTS)
}

fn sk(k: usize) -> String {
    (k % SORTS).to_string()
}

fn wire_key(k: usize) -> Value {
    json!({"pk": {"S": pk(k)}, "sk": {"N": sk(k)}})
}

fn item(k: usize, ver: u64) -> Value {
    json!({"pk": {"S": pk(k)}, "sk": {"N": sk(k)}, "ver": {"N": ver.to_string()}, "g": {"S": "x"}})
}

/// The key index and version of an item as read.
fn read_item(item: &Value) -> Option<(usize, u64)> {
    let p: usize = item["pk"]["S"].as_str()?.strip_prefix('p')?.parse().ok()?;
    let s: usize = item["sk"]["N"].as_str()?.parse().ok()?;
    let ver = item["ver"]["N"].as_str()?.parse().ok()?;
    Some((p * SORTS + s, ver))
}

/// Runs writers and readers against the proxy at `url` for `duration`; index Queries are held
/// to `index_sees`.
pub async fn run(
    url: &str,
    duration: Duration,
    writers: usize,
    readers: usize,
    index_sees: IndexSees,
) -> Report {
    run_fleet(
        &[url.to_string()],
        duration,
        writers,
        readers,
        index_sees,
        Duration::ZERO,
    )
    .await
}

/// As [`run`], with each write and read sent through one of the nodes at `urls` in turn: a
/// read must see what its own node acknowledged before it began, and what another node
/// acknowledged more than `cross_node` before (the fleet's propagation bound).
pub async fn run_fleet(
    urls: &[String],
    duration: Duration,
    writers: usize,
    readers: usize,
    index_sees: IndexSees,
    cross_node: Duration,
) -> Report {
    let urls: Arc<Vec<String>> = Arc::new(urls.to_vec());
    let keys: Arc<Vec<Key>> = Arc::new((0..KEYS).map(|_| Key::default()).collect());
    let done = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (urls, keys, done) = (urls.clone(), keys.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut report = Report::default();
            let mut turn = w;
            while !done.load(Ordering::SeqCst) {
                let node = (turn / 6 + w) % urls.len();
                write_once(&urls[node], node, &keys, turn, &mut report).await;
                turn += 1;
            }
            report
        }));
    }
    for r in 0..readers {
        let (urls, keys, done) = (urls.clone(), keys.clone(), done.clone());
        let index_sees = index_sees.clone();
        tasks.push(tokio::spawn(async move {
            let mut report = Report::default();
            let mut turn = r;
            while !done.load(Ordering::SeqCst) {
                let node = (turn / 6 + r) % urls.len();
                let lags = (&index_sees, cross_node);
                read_once(&urls[node], node, &keys, turn, lags, &mut report).await;
                turn += 1;
            }
            report
        }));
    }
    tokio::time::sleep_until(deadline.into()).await;
    done.store(true, Ordering::SeqCst);
    let mut total = Report::default();
    for task in tasks {
        let part = task.await.unwrap();
        for (op, n) in part.writes {
            *total.writes.entry(op).or_default() += n;
        }
        total.refused += part.refused;
        for (kind, (n, hits)) in part.reads {
            let entry = total.reads.entry(kind).or_default();
            entry.0 += n;
            entry.1 += hits;
        }
        total.violations.extend(part.violations);
    }
    total
}

/// One write, of an operation chosen by `turn`, to one or two random keys.
async fn write_once(url: &str, node: usize, keys: &[Key], turn: usize, report: &mut Report) {
    let first = fastrand::usize(..KEYS);
    let second = (first + 1 + fastrand::usize(..KEYS - 1)) % KEYS;
    let op = [
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
        "TransactWriteItems",
        "ExecuteStatement",
    ][turn % 6];
    let touched: Vec<usize> = match op {
        "BatchWriteItem" | "TransactWriteItems" => {
            let mut two = vec![first, second];
            two.sort_unstable();
            two
        }
        _ => vec![first],
    };
    // Locks in key order: no two writers wait on each other in a circle.
    let mut guards = Vec::new();
    for &k in &touched {
        guards.push(keys[k].writing.lock().await);
    }
    let mut versions = Vec::new();
    for (guard, &k) in guards.iter_mut().zip(&touched) {
        **guard += 1;
        versions.push((k, **guard));
    }
    // What each write leaves: present, or deleted.
    let deletes: Vec<bool> = versions
        .iter()
        .map(|_| op == "DeleteItem" || (op != "ExecuteStatement" && fastrand::u8(..5) == 0))
        .collect();
    let return_values = ["NONE", "ALL_NEW", "UPDATED_OLD", "ALL_OLD"][fastrand::usize(..4)];
    let body = match op {
        "PutItem" => json!({"TableName": TABLE, "Item": item(first, versions[0].1)}),
        "UpdateItem" => json!({"TableName": TABLE, "Key": wire_key(first),
            "UpdateExpression": "SET ver = :v, g = :g",
            "ExpressionAttributeValues": {":v": {"N": versions[0].1.to_string()}, ":g": {"S": "x"}},
            "ReturnValues": return_values}),
        "DeleteItem" => json!({"TableName": TABLE, "Key": wire_key(first)}),
        "BatchWriteItem" => {
            let requests: Vec<Value> = versions
                .iter()
                .zip(&deletes)
                .map(|(&(k, ver), &delete)| {
                    if delete {
                        json!({"DeleteRequest": {"Key": wire_key(k)}})
                    } else {
                        json!({"PutRequest": {"Item": item(k, ver)}})
                    }
                })
                .collect();
            json!({"RequestItems": {TABLE: requests}})
        }
        "TransactWriteItems" => {
            let actions: Vec<Value> = versions
                .iter()
                .zip(&deletes)
                .map(|(&(k, ver), &delete)| match (delete, fastrand::bool()) {
                    (true, _) => json!({"Delete": {"TableName": TABLE, "Key": wire_key(k)}}),
                    (false, true) => json!({"Put": {"TableName": TABLE, "Item": item(k, ver)}}),
                    (false, false) => json!({"Update": {"TableName": TABLE, "Key": wire_key(k),
                        "UpdateExpression": "SET ver = :v, g = :g",
                        "ExpressionAttributeValues": {":v": {"N": ver.to_string()}, ":g": {"S": "x"}}}}),
                })
                .collect();
            json!({"TransactItems": actions})
        }
        _ => {
            // PartiQL: an update of an item that exists, or an insert of one that does not.
            let (k, ver) = versions[0];
            let statement = format!(
                "UPDATE \"{TABLE}\" SET ver = {ver} SET g = 'x' WHERE pk = '{}' AND sk = {}",
                pk(k),
                sk(k)
            );
            json!({"Statement": statement})
        }
    };
    for (&(k, ver), &delete) in versions.iter().zip(&deletes) {
        keys[k].sent.lock().unwrap().insert(ver, !delete);
    }
    let answer = dynamo(url, op, &body.to_string()).await;
    let applied = answer.status == 200
        && (op != "BatchWriteItem"
            || answer.json()["UnprocessedItems"]
                .as_object()
                .is_none_or(|m| m.is_empty()));
    if applied {
        let now = Instant::now();
        for &(k, ver) in &versions {
            keys[k].acks.lock().unwrap().push((now, ver, node));
            keys[k].acked.store(ver, Ordering::SeqCst);
        }
        *report.writes.entry(op).or_default() += 1;
    } else {
        report.refused += 1;
    }
}

/// One read, of a kind chosen by `turn`, checked against the floors taken before it.
async fn read_once(
    url: &str,
    node: usize,
    keys: &[Key],
    turn: usize,
    (index_sees, cross_node): (&IndexSees, Duration),
    report: &mut Report,
) {
    let kind = [
        "GetItem",
        "GetItem projected",
        "BatchGetItem",
        "Query",
        "Scan",
        "index Query",
    ][turn % 6];
    let k = fastrand::usize(..KEYS);
    let scope: Vec<usize> = match kind {
        "GetItem" | "GetItem projected" => vec![k],
        "BatchGetItem" => vec![k, (k + 4) % KEYS],
        "Query" => (0..SORTS).map(|s| (k / SORTS) * SORTS + s).collect(),
        _ => (0..KEYS).collect(),
    };
    let start = Instant::now();
    let floors: Vec<u64> = match kind {
        "index Query" => {
            let before = index_sees();
            scope.iter().map(|&k| keys[k].acked_by(before)).collect()
        }
        _ if cross_node.is_zero() => scope
            .iter()
            .map(|&k| keys[k].acked.load(Ordering::SeqCst))
            .collect(),
        _ => scope
            .iter()
            .map(|&k| keys[k].floor_for(node, start, cross_node))
            .collect(),
    };
    let (op, body) = match kind {
        "GetItem" => ("GetItem", json!({"TableName": TABLE, "Key": wire_key(k)})),
        "GetItem projected" => (
            "GetItem",
            json!({"TableName": TABLE, "Key": wire_key(k), "ProjectionExpression": "pk, sk, ver"}),
        ),
        "BatchGetItem" => {
            let keys: Vec<Value> = scope.iter().map(|&k| wire_key(k)).collect();
            (
                "BatchGetItem",
                json!({"RequestItems": {TABLE: {"Keys": keys}}}),
            )
        }
        "Query" => (
            "Query",
            json!({"TableName": TABLE, "KeyConditionExpression": "pk = :p",
                "ExpressionAttributeValues": {":p": {"S": pk(k)}}}),
        ),
        "Scan" => ("Scan", json!({"TableName": TABLE})),
        // Every item written here has `g = "x"`: the index holds them all.
        _ => (
            "Query",
            json!({"TableName": TABLE, "IndexName": "by_g", "KeyConditionExpression": "g = :g",
                "ExpressionAttributeValues": {":g": {"S": "x"}}}),
        ),
    };
    let answer = dynamo(url, op, &body.to_string()).await;
    if answer.status != 200 {
        report.violations.push(format!(
            "{kind}: status {} {:?}",
            answer.status, answer.body
        ));
        return;
    }
    let json = answer.json();
    let items: Vec<Value> = match op {
        "GetItem" => json.get("Item").cloned().into_iter().collect(),
        "BatchGetItem" => json["Responses"][TABLE]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        _ => json["Items"].as_array().cloned().unwrap_or_default(),
    };
    let mut seen: BTreeMap<usize, u64> = BTreeMap::new();
    for item in &items {
        match read_item(item) {
            Some((k, ver)) => {
                seen.insert(k, ver);
            }
            None => report
                .violations
                .push(format!("{kind}: unreadable item {item}")),
        }
    }
    let how = answer.cache_status().to_string();
    for (&k, &floor) in scope.iter().zip(&floors) {
        let fine = match seen.get(&k) {
            Some(&ver) => ver >= floor,
            None => keys[k].absence_explained(floor),
        };
        if !fine {
            report.violations.push(format!(
                "{kind} ({how}) of key {k} through node {node}: saw {:?}, version {floor} was \
                 acknowledged before the read began ({}; the read took {:.1} ms)",
                seen.get(&k),
                keys[k].story(start),
                start.elapsed().as_secs_f64() * 1000.0,
            ));
        }
    }
    let entry = report.reads.entry(kind).or_default();
    entry.0 += 1;
    entry.1 += (how == "hit") as u64;
}
