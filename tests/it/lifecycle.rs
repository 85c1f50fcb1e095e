//! The real binary's lifecycle on SIGTERM, as an orchestrator sees it: readiness turns 503,
//! new connections are refused, the request in flight still gets its answer, and the process
//! exits 0; a second signal exits at once.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common::process::Served;
use crate::common::shim::{Reply, Shim};
use crate::common::*;

/// The binary in front of `upstream`: the process, its data URL and its admin URL.
fn serve(upstream: &str) -> (Child, String, String) {
    let served = Served::start(env!("CARGO_BIN_EXE_dynamo-cache"), upstream, None);
    (served.child, served.url, served.admin_url)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn exit_within(mut child: Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < deadline, "still running after {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An emulator with the table `life` holding the one item [`CONSISTENT_GET`] reads.
async fn life_table() -> Upstream {
    let upstream = Upstream::start().await;
    create_table(&sdk(&upstream.url), "life").await;
    dynamo(
        &upstream.url,
        "PutItem",
        r#"{"TableName":"life","Item":{"pk":{"S":"a"},"sk":{"N":"1"},"v":{"S":"kept"}}}"#,
    )
    .await;
    upstream
}

const CONSISTENT_GET: &str =
    r#"{"TableName":"life","Key":{"pk":{"S":"a"},"sk":{"N":"1"}},"ConsistentRead":true}"#;

#[tokio::test]
async fn sigterm_turns_readiness_503_refuses_new_connections_and_finishes_the_request_in_flight() {
    let mut upstream = life_table().await;
    // Consistent reads take 1.5 s upstream: long enough to signal in the middle of one.
    let shim = Shim::slow_relay(&upstream.url, "GetItem", 1500).await;
    let (child, url, admin) = serve(&shim.url);
    for _ in 0..100 {
        if http_get(&format!("{admin}/readyz")).await.unwrap().status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let in_flight = tokio::spawn({
        let url = url.clone();
        async move { dynamo(&url, "GetItem", CONSISTENT_GET).await }
    });
    shim.wait_for("GetItem").await;
    signal(&child, "TERM");

    // Readiness says "draining" while the request is still in flight.
    let mut ready = 0;
    for _ in 0..50 {
        ready = http_get(&format!("{admin}/readyz")).await.unwrap().status;
        if ready == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ready, 503);
    assert!(
        !in_flight.is_finished(),
        "the slow read should still be in flight"
    );
    // No new connections while draining.
    let addr = url.trim_start_matches("http://");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["Item"]["v"]["S"], "kept");
    assert_eq!(exit_within(child, Duration::from_secs(10)).await, Some(0));
    upstream.stop().await;
}

#[tokio::test]
async fn a_second_signal_exits_at_once_without_waiting_for_the_drain() {
    let shim = Shim::start(Reply::Hang).await;
    let (child, url, _) = serve(&shim.url);
    let _in_flight = tokio::spawn(async move { dynamo(&url, "GetItem", CONSISTENT_GET).await });
    shim.wait_for("GetItem").await;

    signal(&child, "TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut child = child;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first signal should wait for the request in flight"
    );
    signal(&child, "INT");
    assert_eq!(exit_within(child, Duration::from_secs(3)).await, Some(130));
}

#[tokio::test]
async fn sigterm_under_steady_load_fails_no_request_that_reached_the_proxy() {
    let mut upstream = life_table().await;
    // Every read goes upstream (strongly consistent) and takes 30 ms there, so the shim
    // counts what the proxy accepted, and some are always in flight.
    let shim = Shim::slow_relay(&upstream.url, "GetItem", 30).await;
    let (child, url, _) = serve(&shim.url);

    #[derive(Default, Debug)]
    struct Tally {
        ok: usize,
        closed_politely: usize,
        failed: Vec<String>,
        refused: usize,
    }
    let tally = std::sync::Arc::new(std::sync::Mutex::new(Tally::default()));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (url, tally) = (url.clone(), tally.clone());
            tokio::spawn(async move {
                use http_body_util::{BodyExt, Full};
                // One keep-alive client per task, as an SDK keeps a pool.
                let client = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build_http::<Full<bytes::Bytes>>();
                loop {
                    let request = http::Request::post(format!("{url}/"))
                        .header("content-type", "application/x-amz-json-1.0")
                        .header("x-amz-target", "DynamoDB_20120810.GetItem")
                        .body(Full::new(bytes::Bytes::from_static(
                            CONSISTENT_GET.as_bytes(),
                        )))
                        .unwrap();
                    match client.request(request).await {
                        Ok(response) => {
                            let status = response.status();
                            let close = response
                                .headers()
                                .get("connection")
                                .is_some_and(|v| v == "close");
                            let body = response.into_body().collect().await;
                            let mut t = tally.lock().unwrap();
                            if status == 200 && body.is_ok() {
                                t.ok += 1;
                                t.closed_politely += close as usize;
                            } else {
                                t.failed.push(format!("{status} {body:?}"));
                            }
                        }
                        Err(err) if err.is_connect() => {
                            // The listener is closed: the request never reached the proxy.
                            tally.lock().unwrap().refused += 1;
                            return;
                        }
                        Err(err) => {
                            tally.lock().unwrap().failed.push(format!("{err:?}"));
                            return;
                        }
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(700)).await;
    signal(&child, "TERM");
    assert_eq!(exit_within(child, Duration::from_secs(15)).await, Some(0));
    for client in clients {
        client.await.unwrap();
    }
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    let reached = shim.count("GetItem");
    assert!(tally.ok > 20, "{tally:?}");
    assert!(
        tally.failed.is_empty(),
        "requests failed during the drain: {:?}",
        tally.failed
    );
    assert_eq!(
        tally.ok, reached,
        "every request that reached the upstream was answered: {tally:?}"
    );
    assert!(
        tally.closed_politely > 0,
        "in-flight answers during the drain should say `connection: close`: {tally:?}"
    );
    upstream.stop().await;
}
