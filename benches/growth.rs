//! Memory under the inputs that used to make it grow without bound, for minutes: made-up
//! table names (reads, writes, DDL), clients that disconnect in the middle of a read of a
//! unique key, and stream records for keys the proxy never cached. Resident memory of the
//! release binary is printed every 15 s, and at the start and end of the measured run.
//!
//!     cargo bench --bench growth                 # 180 s
//!     GROWTH_SECS=600 cargo bench --bench growth # longer

#[path = "../tests/it/common/process.rs"]
mod process;
#[path = "../tests/it/common/shim.rs"]
#[allow(dead_code)]
mod shim;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use process::{Served, rss_bytes};
use shim::Shim;

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

const TABLE: &str = "growth";

async fn call(http: &Http, url: &str, op: &str, body: String) -> Option<u16> {
    let request = http::Request::post(format!("{url}/"))
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", format!("DynamoDB_20120810.{op}"))
        .header("x-amz-date", "20260101T000000Z")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/dynamodb/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=00",
        )
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = http.request(request).await.ok()?;
    let status = response.status().as_u16();
    response.into_body().collect().await.ok()?;
    Some(status)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs: u64 = std::env::var("GROWTH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);

    // The emulator in this process; GetItem answers come 200 ms late, so a client that gives
    // up after 20 ms leaves in the middle of the proxy's read.
    let upstream = dynamo_cache::embedded::Embedded::start(None).await.unwrap();
    let relay = Shim::slow_relay(&upstream.url, ".GetItem", 200).await;
    let config =
        std::env::temp_dir().join(format!("dynamo-cache-growth-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "[streams]\nenabled = true\npoll_interval_ms = 100\n",
    )
    .unwrap();
    let proxy = Served::start(
        env!("CARGO_BIN_EXE_dynamo-cache"),
        &relay.url,
        Some(&config),
    );
    let (url, pid) = (proxy.url.clone(), proxy.pid());
    let http: Http = Client::builder(TokioExecutor::new()).build_http();

    let create = format!(
        r#"{{"TableName":"{TABLE}","AttributeDefinitions":[{{"AttributeName":"pk","AttributeType":"S"}}],"KeySchema":[{{"AttributeName":"pk","KeyType":"HASH"}}],"BillingMode":"PAY_PER_REQUEST","StreamSpecification":{{"StreamEnabled":true,"StreamViewType":"NEW_AND_OLD_IMAGES"}}}}"#
    );
    assert_eq!(call(&http, &url, "CreateTable", create).await, Some(200));
    // A write through the proxy makes it follow the table's stream.
    let put = |pk: String| format!(r#"{{"TableName":"{TABLE}","Item":{{"pk":{{"S":"{pk}"}}}}}}"#);
    assert_eq!(
        call(&http, &url, "PutItem", put("seed".into())).await,
        Some(200)
    );

    let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    // Made-up table names: reads, writes, and DDL DynamoDB refuses.
    for worker in 0..2u64 {
        let (http, url, counts) = (http.clone(), url.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = worker;
            while Instant::now() < deadline {
                let table = format!("made-up-{n}");
                let key = format!(r#"{{"TableName":"{table}","Key":{{"pk":{{"S":"a"}}}}}}"#);
                call(&http, &url, "GetItem", key).await;
                let item = format!(r#"{{"TableName":"{table}","Item":{{"pk":{{"S":"a"}}}}}}"#);
                call(&http, &url, "PutItem", item).await;
                call(
                    &http,
                    &url,
                    "DeleteTable",
                    format!(r#"{{"TableName":"{table}"}}"#),
                )
                .await;
                counts[0].fetch_add(3, Ordering::Relaxed);
                n += 2;
            }
        }));
    }
    // Reads of unique keys whose clients leave before the answer.
    for worker in 0..4u64 {
        let (http, url, counts) = (http.clone(), url.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = worker;
            while Instant::now() < deadline {
                let key = format!(r#"{{"TableName":"{TABLE}","Key":{{"pk":{{"S":"gone-{n}"}}}},"ProjectionExpression":"p{n}"}}"#);
                let _ = tokio::time::timeout(
                    Duration::from_millis(20),
                    call(&http, &url, "GetItem", key),
                )
                .await;
                counts[1].fetch_add(1, Ordering::Relaxed);
                n += 4;
            }
        }));
    }
    // Writes that bypass the proxy: stream records for keys it never cached.
    {
        let (http, direct, counts) = (http.clone(), upstream.url.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                call(&http, &direct, "PutItem", put(format!("elsewhere-{n}"))).await;
                counts[2].fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }

    // Memory: the first sample after a warm-up, then every 15 s.
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(15.min(secs / 4))).await;
    let first = rss_bytes(pid);
    eprintln!(
        "growth: {secs} s, proxy pid {pid}; rss after warm-up {:.1} MiB",
        mib(first)
    );
    let mut peak = first;
    while Instant::now() + Duration::from_secs(15) < deadline {
        tokio::time::sleep(Duration::from_secs(15)).await;
        let rss = rss_bytes(pid);
        peak = peak.max(rss);
        eprintln!(
            "{:>4} s  rss {:>7.1} MiB  made-up-name requests {}  abandoned reads {}  stream records for uncached keys {}",
            started.elapsed().as_secs(),
            mib(rss),
            counts[0].load(Ordering::Relaxed),
            counts[1].load(Ordering::Relaxed),
            counts[2].load(Ordering::Relaxed),
        );
    }
    for task in tasks {
        let _ = task.await;
    }
    // Let the stream follower catch up with the last records.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let last = rss_bytes(pid);
    println!(
        "resident memory: {:.1} MiB after warm-up, {:.1} MiB at the end ({:+.1} MiB, peak {:.1} MiB) \
         after {} made-up-name requests, {} abandoned reads, {} stream records for uncached keys",
        mib(first),
        mib(last),
        mib(last) - mib(first),
        mib(peak.max(last)),
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
        counts[2].load(Ordering::Relaxed),
    );
    let streams = http
        .request(
            http::Request::get(format!("{}/cache", proxy.admin_url))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let stats: serde_json::Value = serde_json::from_slice(&streams).unwrap();
    println!("streams followed: {}", stats["streams"]["tables"]);
    assert!(proxy.terminate(), "the proxy did not exit cleanly");
}
