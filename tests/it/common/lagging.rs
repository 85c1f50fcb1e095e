//! An upstream whose eventually consistent reads lag, as DynamoDB's do: two real emulators
//! behind one relay. A fault shim, not a mock: both sides are dynoxide.
//!
//! - Writes (item writes, transactions, PartiQL that is not a `SELECT`), strongly consistent
//!   reads, and everything else go to the **primary**.
//! - Each write the primary acknowledged is replayed to the **replica** `lag` after the relay
//!   answered it, in the order the relay answered them (so one item's writes land in order).
//! - Eventually consistent reads (GetItem, BatchGetItem, Query, Scan, PartiQL `SELECT`, without
//!   `ConsistentRead: true`) go to the replica: they miss writes younger than `lag`.
//! - Table changes go to both at once, so both always have the same tables.
//!
//! Every request is logged with where it went, so tests can assert what DynamoDB was asked.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::Upstream;
use super::shim::{full, serve};

/// Which emulator answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Primary,
    Replica,
}

/// One request as the relay routed it.
#[derive(Debug, Clone)]
pub struct Routed {
    /// The operation (`GetItem`, ...).
    pub op: String,
    pub to: Side,
    /// Whether it asked for a strongly consistent read.
    pub consistent: bool,
}

/// What kind of request, for routing.
enum Route {
    Write,
    Read { consistent: bool },
    TableChange,
    Other,
}

fn route(op: &str, body: &Value) -> Route {
    let consistent = |v: &Value| v["ConsistentRead"] == Value::Bool(true);
    match op {
        "PutItem"
        | "UpdateItem"
        | "DeleteItem"
        | "BatchWriteItem"
        | "TransactWriteItems"
        | "BatchExecuteStatement"
        | "ExecuteTransaction" => Route::Write,
        "ExecuteStatement" => {
            let statement = body["Statement"].as_str().unwrap_or("").trim_start();
            if statement
                .get(..6)
                .is_some_and(|w| w.eq_ignore_ascii_case("select"))
            {
                Route::Read {
                    consistent: consistent(body),
                }
            } else {
                Route::Write
            }
        }
        "GetItem" | "Query" | "Scan" => Route::Read {
            consistent: consistent(body),
        },
        // One table read eventually makes the whole batch the replica's.
        "BatchGetItem" => Route::Read {
            consistent: body["RequestItems"]
                .as_object()
                .is_some_and(|tables| tables.values().all(consistent)),
        },
        "CreateTable" | "DeleteTable" | "UpdateTable" | "UpdateTimeToLive" => Route::TableChange,
        _ => Route::Other,
    }
}

/// A write to replay: when, and what.
struct Replay {
    due: tokio::time::Instant,
    headers: http::HeaderMap,
    body: Bytes,
}

/// The relay and its two emulators.
pub struct Lagging {
    pub url: String,
    pub primary: Upstream,
    pub replica: Upstream,
    log: Arc<Mutex<Vec<Routed>>>,
    /// Writes acknowledged but not yet replayed.
    pending: Arc<AtomicUsize>,
    /// Extra milliseconds before a write's answer is returned (after it was applied).
    hold_ms: Arc<AtomicU64>,
    /// Every write the relay answered by this instant is on the replica.
    applied: Arc<Mutex<std::time::Instant>>,
    lag: Duration,
}

#[derive(Clone)]
struct Shared {
    primary: String,
    replica: String,
    client: Client<HttpConnector, Full<Bytes>>,
    log: Arc<Mutex<Vec<Routed>>>,
    pending: Arc<AtomicUsize>,
    hold_ms: Arc<AtomicU64>,
    applied: Arc<Mutex<std::time::Instant>>,
    lag: Duration,
    replays: mpsc::UnboundedSender<Replay>,
}

impl Shared {
    async fn send(
        &self,
        to: &str,
        headers: &http::HeaderMap,
        body: Bytes,
    ) -> (http::response::Parts, Bytes) {
        let mut out = http::Request::builder()
            .method(http::Method::POST)
            .uri(format!("{to}/"));
        for (name, value) in headers {
            if name != "host" {
                out = out.header(name, value);
            }
        }
        let answer = self
            .client
            .request(out.body(Full::new(body)).unwrap())
            .await
            .expect("an emulator answers");
        let (parts, body) = answer.into_parts();
        (parts, body.collect().await.unwrap().to_bytes())
    }

    async fn handle(
        &self,
        headers: http::HeaderMap,
        body: Bytes,
    ) -> (http::response::Parts, Bytes) {
        let op = headers
            .get("x-amz-target")
            .and_then(|t| t.to_str().ok())
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("")
            .to_string();
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let route = route(&op, &json);
        let (to, consistent) = match route {
            Route::Read { consistent: false } => (Side::Replica, false),
            Route::Read { consistent: true } => (Side::Primary, true),
            _ => (Side::Primary, false),
        };
        self.log.lock().unwrap().push(Routed { op, to, consistent });
        match route {
            Route::Read { consistent: false } => self.send(&self.replica, &headers, body).await,
            Route::Write => {
                let answer = self.send(&self.primary, &headers, body.clone()).await;
                let hold = self.hold_ms.load(Ordering::SeqCst);
                if hold > 0 {
                    tokio::time::sleep(Duration::from_millis(hold)).await;
                }
                if answer.0.status == http::StatusCode::OK {
                    self.pending.fetch_add(1, Ordering::SeqCst);
                    let replay = Replay {
                        due: tokio::time::Instant::now() + self.lag,
                        headers,
                        body,
                    };
                    self.replays.send(replay).ok();
                }
                answer
            }
            Route::TableChange => {
                let answer = self.send(&self.primary, &headers, body.clone()).await;
                if answer.0.status == http::StatusCode::OK {
                    self.send(&self.replica, &headers, body).await;
                }
                answer
            }
            Route::Read { consistent: true } | Route::Other => {
                self.send(&self.primary, &headers, body).await
            }
        }
    }
}

impl Lagging {
    /// Two emulators behind a relay whose replica applies writes `lag` late.
    pub async fn start(lag: Duration) -> Lagging {
        let primary = Upstream::start().await;
        let replica = Upstream::start().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (replays, mut queue) = mpsc::unbounded_channel::<Replay>();
        let shared = Shared {
            primary: primary.url.clone(),
            replica: replica.url.clone(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            log: Arc::default(),
            pending: Arc::default(),
            hold_ms: Arc::default(),
            applied: Arc::new(Mutex::new(std::time::Instant::now())),
            lag,
            replays,
        };
        // One replayer, so the replica applies writes in the order they were acknowledged.
        let replayer = shared.clone();
        tokio::spawn(async move {
            while let Some(replay) = queue.recv().await {
                tokio::time::sleep_until(replay.due).await;
                let replica = replayer.replica.clone();
                replayer.send(&replica, &replay.headers, replay.body).await;
                // Replayed in the order the relay answered them: every write answered by then
                // is on the replica now.
                *replayer.applied.lock().unwrap() = (replay.due - replayer.lag).into_std();
                replayer.pending.fetch_sub(1, Ordering::SeqCst);
            }
        });
        let server = shared.clone();
        serve(
            listener,
            move |req: http::Request<hyper::body::Incoming>| {
                let shared = server.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.unwrap().to_bytes();
                    if parts.method != http::Method::POST {
                        // The SDK's health check and the like: the primary's business.
                        return Ok::<_, std::io::Error>(http::Response::new(full(Bytes::new())));
                    }
                    let (parts, body) = shared.handle(parts.headers, body).await;
                    let mut resp = http::Response::from_parts(parts, full(body));
                    resp.headers_mut().remove("transfer-encoding");
                    Ok(resp)
                }
            },
        );
        Lagging {
            url,
            primary,
            replica,
            log: shared.log,
            pending: shared.pending,
            hold_ms: shared.hold_ms,
            applied: shared.applied,
            lag,
        }
    }

    /// How late the replica applies writes.
    pub fn lag(&self) -> Duration {
        self.lag
    }

    /// For [`checker`](super::checker): an index Query, which only the replica answers, must
    /// see every write acknowledged no later than the relay's answer to the newest write the
    /// replica has applied. That is `lag` ago on an idle machine; on a busy one the replays
    /// fall further behind, and DynamoDB's indexes promise no bound either.
    pub fn index_sees(&self) -> super::checker::IndexSees {
        let applied = self.applied.clone();
        Arc::new(move || *applied.lock().unwrap())
    }

    /// Holds every write's answer this long after the primary applied it (so two writes sent
    /// one after the other are in flight together).
    pub fn hold_writes(&self, hold: Duration) {
        self.hold_ms
            .store(hold.as_millis() as u64, Ordering::SeqCst);
    }

    /// Waits until the replica has applied every acknowledged write.
    pub async fn settle(&self) {
        let deadline = std::time::Instant::now() + self.lag + Duration::from_secs(10);
        while self.pending.load(Ordering::SeqCst) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the replica never caught up"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Every request so far, as routed.
    pub fn log(&self) -> Vec<Routed> {
        self.log.lock().unwrap().clone()
    }

    /// How many requests of `op` reached the relay.
    pub fn count(&self, op: &str) -> usize {
        self.log().iter().filter(|r| r.op == op).count()
    }

    /// How many reads of `op` asked for strong consistency (and so reached the primary).
    pub fn strong_reads(&self, op: &str) -> usize {
        self.log()
            .iter()
            .filter(|r| r.op == op && r.consistent)
            .count()
    }

    /// How many reads of `op` went to the lagging replica.
    pub fn replica_reads(&self, op: &str) -> usize {
        self.log()
            .iter()
            .filter(|r| r.op == op && r.to == Side::Replica)
            .count()
    }

    /// Waits (up to 5 s) until `n` requests of `op` have reached the relay.
    pub async fn wait_for(&self, op: &str, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.count(op) < n {
            assert!(
                std::time::Instant::now() < deadline,
                "no {op} reached the upstream"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}
