//! Soak: the real binary under mixed traffic for a long time (10 minutes by default) with
//! faults injected at random between it and a real emulator, checking read-your-writes the
//! whole way.
//!
//!     cargo bench --bench soak                  # 600 s
//!     SOAK_SECS=60 cargo bench --bench soak     # a shorter run
//!
//! Every 30 s it prints requests, errors, p50/p99 latency and the proxy's resident memory; at
//! the end, totals and errors by kind. Exits non-zero if a read ever returned a value older
//! than a write the proxy had acknowledged to the same client.

#[path = "../tests/it/common/process.rs"]
mod process;
#[path = "../tests/it/common/shim.rs"]
#[allow(dead_code)]
mod shim;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use process::{Served, rss_bytes};
use shim::{Reply, Shim};

const TABLE: &str = "soak";
const SHARED_KEYS: u64 = 5_000;
const WINDOW: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Window {
    requests: u64,
    errors: u64,
    latency: Option<Histogram<u64>>,
}

#[derive(Default)]
struct Totals {
    requests: u64,
    errors: BTreeMap<String, u64>,
    stale: u64,
    ryw_checks: u64,
    ryw_violations: u64,
    window: Window,
}

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn call(
    client: &Http,
    url: &str,
    op: &str,
    body: String,
) -> Result<(u16, String, Bytes), String> {
    let request = http::Request::post(format!("{url}/"))
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", format!("DynamoDB_20120810.{op}"))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = client.request(request).await.map_err(|e| {
        if e.is_connect() {
            "connect".to_string()
        } else {
            "transport".to_string()
        }
    })?;
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("x-dynamo-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|_| "body".to_string())?
        .to_bytes();
    Ok((status, cache, body))
}

fn error_kind(status: u16, body: &Bytes) -> String {
    let kind = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["__type"].as_str().map(str::to_string))
        .unwrap_or_default();
    format!("{status} {}", kind.rsplit('#').next().unwrap_or(""))
}

fn faults(upstream: &str) -> Vec<(&'static str, Reply)> {
    let error = |status: u16, kind: &str| {
        let body = format!(
            r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{kind}","message":"injected"}}"#
        );
        Reply::Fixed {
            status,
            headers: vec![
                ("content-type", "application/x-amz-json-1.0".into()),
                ("x-amz-crc32", crc32fast::hash(body.as_bytes()).to_string()),
            ],
            body: Bytes::from(body),
        }
    };
    vec![
        ("500", error(500, "InternalServerError")),
        ("throttling", error(400, "ThrottlingException")),
        ("reset", Reply::Reset),
        ("hang", Reply::Hang),
        (
            "truncated",
            Reply::Truncated {
                body: Bytes::from_static(b"{\"Item\":{"),
            },
        ),
        (
            "latency",
            Reply::Relay {
                to: upstream.to_string(),
                jitter_ms: 200,
                slow_op: "",
                slow_ms: 0,
            },
        ),
    ]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let clients: u64 = std::env::var("SOAK_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);

    // The upstream: the emulator the binary embeds, here in this process, behind the shim.
    let upstream = dynamo_cache::embedded::Embedded::start(None).await.unwrap();
    let relay = Reply::Relay {
        to: upstream.url.clone(),
        jitter_ms: 0,
        slow_op: "",
        slow_ms: 0,
    };
    let shim = Shim::start(relay.clone()).await;

    // The proxy: the release binary, small caches so eviction runs all the time.
    let config =
        std::env::temp_dir().join(format!("dynamo-cache-soak-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "[limits]\nupstream_timeout_ms = 500\nmax_upstream_requests = 64\nupstream_queue_timeout_ms = 200\n\
         [cache]\nitem_max_bytes = 8388608\nquery_max_bytes = 2097152\nitem_ttl_ms = 2000\n\
         query_ttl_ms = 2000\nserve_stale_on_error = true\nstale_grace_ms = 10000\n",
    )
    .unwrap();
    let proxy = Served::start(env!("CARGO_BIN_EXE_dynamo-cache"), &shim.url, Some(&config));
    let (url, pid) = (proxy.url.clone(), proxy.pid());

    // A table with a sort key, and items of about 400 bytes (through the proxy, which signs).
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let create = r#"{"TableName":"soak","AttributeDefinitions":[{"AttributeName":"pk","AttributeType":"S"},{"AttributeName":"sk","AttributeType":"N"}],"KeySchema":[{"AttributeName":"pk","KeyType":"HASH"},{"AttributeName":"sk","KeyType":"RANGE"}],"BillingMode":"PAY_PER_REQUEST"}"#;
    assert_eq!(
        call(&http, &url, "CreateTable", create.into())
            .await
            .unwrap()
            .0,
        200
    );
    let pad = "x".repeat(360);
    for k in 0..SHARED_KEYS {
        let item = format!(
            r#"{{"TableName":"{TABLE}","Item":{{"pk":{{"S":"p{}"}},"sk":{{"N":"{k}"}},"v":{{"N":"0"}},"pad":{{"S":"{pad}"}}}}}}"#,
            k % 500
        );
        call(&http, &url, "PutItem", item).await.unwrap();
    }

    let totals = Arc::new(Mutex::new(Totals::default()));
    let deadline = Instant::now() + Duration::from_secs(secs);
    eprintln!("soak: {secs} s, {clients} clients, proxy pid {pid} at {url}");

    // Faults: every few seconds, one of them for a second or two.
    let fault_task = {
        // The shim records every request; nothing here reads them, so keep that bounded.
        let seen = shim.seen.clone();
        let (shim_reply, faults, relay) =
            (shim.reply_handle(), faults(&upstream.url), relay.clone());
        let totals = totals.clone();
        tokio::spawn(async move {
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(2000..6000))).await;
                seen.lock().unwrap().clear();
                let (name, reply) = &faults[fastrand::usize(..faults.len())];
                *shim_reply.lock().unwrap() = reply.clone();
                *totals
                    .lock()
                    .unwrap()
                    .errors
                    .entry(format!("injected {name}"))
                    .or_default() += 1;
                tokio::time::sleep(Duration::from_millis(fastrand::u64(500..2000))).await;
                *shim_reply.lock().unwrap() = relay.clone();
            }
        })
    };

    let mut tasks = Vec::new();
    for client in 0..clients {
        let (url, totals, pad) = (url.clone(), totals.clone(), pad.clone());
        tasks.push(tokio::spawn(async move {
            let http: Http = Client::builder(TokioExecutor::new()).build_http();
            let mut version = 0u64;
            while Instant::now() < deadline {
                let roll = fastrand::u32(..100);
                let started = Instant::now();
                let (op, body) = if roll < 60 {
                    let k = fastrand::u64(..SHARED_KEYS);
                    ("GetItem", format!(r#"{{"TableName":"{TABLE}","Key":{{"pk":{{"S":"p{}"}},"sk":{{"N":"{k}"}}}}}}"#, k % 500))
                } else if roll < 75 {
                    let p = fastrand::u64(..500);
                    ("Query", format!(r#"{{"TableName":"{TABLE}","KeyConditionExpression":"pk = :p","ExpressionAttributeValues":{{":p":{{"S":"p{p}"}}}},"Limit":5}}"#))
                } else if roll < 95 {
                    version += 1;
                    ("PutItem", format!(r#"{{"TableName":"{TABLE}","Item":{{"pk":{{"S":"c{client}"}},"sk":{{"N":"{}"}},"v":{{"N":"{version}"}},"pad":{{"S":"{pad}"}}}}}}"#, version % 50))
                } else {
                    let k = fastrand::u64(..SHARED_KEYS);
                    ("GetItem", format!(r#"{{"TableName":"{TABLE}","Key":{{"pk":{{"S":"p{}"}},"sk":{{"N":"{k}"}}}},"ConsistentRead":true}}"#, k % 500))
                };
                let result = call(&http, &url, op, body).await;
                let micros = started.elapsed().as_micros() as u64;
                let ok = {
                    let mut t = totals.lock().unwrap();
                    t.requests += 1;
                    t.window.requests += 1;
                    let latency = t.window.latency.get_or_insert_with(|| Histogram::new(3).unwrap());
                    let _ = latency.record(micros.max(1));
                    let ok = match &result {
                        Ok((200, cache, _)) => {
                            t.stale += (cache == "stale") as u64;
                            true
                        }
                        Ok((status, _, body)) => {
                            *t.errors.entry(error_kind(*status, body)).or_default() += 1;
                            false
                        }
                        Err(kind) => {
                            *t.errors.entry(kind.clone()).or_default() += 1;
                            false
                        }
                    };
                    if !ok {
                        t.window.errors += 1;
                    }
                    ok
                };
                // Read your writes: an acknowledged put is what the next read returns.
                if op == "PutItem" && ok {
                    let get = format!(r#"{{"TableName":"{TABLE}","Key":{{"pk":{{"S":"c{client}"}},"sk":{{"N":"{}"}}}}}}"#, version % 50);
                    if let Ok((200, _, body)) = call(&http, &url, "GetItem", get).await {
                        let seen: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                        let mut t = totals.lock().unwrap();
                        t.ryw_checks += 1;
                        if seen["Item"]["v"]["N"] != serde_json::Value::String(version.to_string()) {
                            t.ryw_violations += 1;
                            eprintln!("read-your-writes violated: wrote v{version}, read {}", seen["Item"]["v"]);
                        }
                    }
                }
            }
        }));
    }

    println!(
        "{:>6} {:>9} {:>7} {:>9} {:>9} {:>8}",
        "t(s)", "requests", "errors", "p50(µs)", "p99(µs)", "RSS(MiB)"
    );
    let started = Instant::now();
    let mut peak_rss = 0.0f64;
    while Instant::now() < deadline {
        tokio::time::sleep(WINDOW.min(deadline.saturating_duration_since(Instant::now()))).await;
        let window = std::mem::take(&mut totals.lock().unwrap().window);
        let rss = rss_bytes(pid) as f64 / (1024.0 * 1024.0);
        peak_rss = peak_rss.max(rss);
        let (p50, p99) = window.latency.map_or((0, 0), |h| {
            (h.value_at_quantile(0.5), h.value_at_quantile(0.99))
        });
        println!(
            "{:>6} {:>9} {:>7} {:>9} {:>9} {:>8.1}",
            started.elapsed().as_secs(),
            window.requests,
            window.errors,
            p50,
            p99,
            rss
        );
    }
    for task in tasks {
        let _ = task.await;
    }
    fault_task.abort();
    let clean_exit = proxy.terminate();
    let _ = std::fs::remove_file(&config);

    let t = totals.lock().unwrap();
    println!(
        "\nrequests {}  stale answers {}  read-your-writes checks {}  violations {}",
        t.requests, t.stale, t.ryw_checks, t.ryw_violations
    );
    println!(
        "peak proxy RSS {peak_rss:.1} MiB (cache budgets 8 + 2 MiB); proxy exited {}",
        if clean_exit { "0" } else { "non-zero" }
    );
    println!("errors and injected faults by kind:");
    for (kind, n) in &t.errors {
        println!("  {kind:<40} {n}");
    }
    if t.ryw_violations > 0 || !clean_exit {
        std::process::exit(1);
    }
}
