//! The real binary's lifecycle on SIGTERM, as an orchestrator sees it: readiness turns 503,
//! new connections are refused, the request in flight still gets its answer, and the process
//! exits 0; a second signal exits at once.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::shim::{Reply, Shim};
use common::*;

/// The binary in front of `upstream`: the process, its data URL and its admin URL.
fn serve(upstream: &str) -> (Child, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dynamo-cache"))
        .args([
            "serve",
            "--upstream",
            upstream,
            "--region",
            REGION,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let urls: Vec<String> = line
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .filter(|w| w.starts_with("http://"))
        .map(str::to_string)
        .collect();
    (child, urls[0].clone(), urls[1].clone())
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

const CONSISTENT_GET: &str =
    r#"{"TableName":"life","Key":{"pk":{"S":"a"},"sk":{"N":"1"}},"ConsistentRead":true}"#;

#[tokio::test]
async fn sigterm_turns_readiness_503_refuses_new_connections_and_finishes_the_request_in_flight() {
    let mut upstream = Upstream::start().await;
    create_table(&sdk(&upstream.url), "life").await;
    dynamo(
        &upstream.url,
        "PutItem",
        r#"{"TableName":"life","Item":{"pk":{"S":"a"},"sk":{"N":"1"},"v":{"S":"kept"}}}"#,
    )
    .await;
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
