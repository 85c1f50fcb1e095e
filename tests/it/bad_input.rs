//! Bad input gets a DynamoDB-shaped error and never reaches the upstream; a failing upstream
//! gets a retryable 5xx; limits refuse with a reason.

use crate::common::shim::{Reply, Shim};
use crate::common::*;
use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn ok_reply() -> Reply {
    Reply::Fixed {
        status: 200,
        headers: vec![("content-type", "application/x-amz-json-1.0".into())],
        body: Bytes::from_static(b"{}"),
    }
}

async fn request(url: &str, method: &str, target: Option<&str>, body: &'static [u8]) -> Raw {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("{url}/"))
        .header("content-type", "application/x-amz-json-1.0");
    if let Some(target) = target {
        builder = builder.header("x-amz-target", target);
    }
    send(builder.body(Full::new(Bytes::from_static(body))).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn malformed_requests_are_refused_before_the_upstream() {
    let shim = Shim::start(ok_reply()).await;
    let proxy = Proxy::start(&shim.url).await;
    let get = Some("DynamoDB_20120810.GetItem");
    // (method, target, body, expected status, expected error type)
    type Case = (
        &'static str,
        Option<&'static str>,
        &'static [u8],
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        ("PUT", get, b"{}", 400, "UnknownOperationException"),
        ("DELETE", get, b"{}", 400, "UnknownOperationException"),
        ("POST", None, b"{}", 400, "UnknownOperationException"),
        (
            "POST",
            Some("Kinesis_20131202.PutRecord"),
            b"{}",
            400,
            "UnknownOperationException",
        ),
        (
            "POST",
            Some("DynamoDB_20120810."),
            b"{}",
            400,
            "UnknownOperationException",
        ),
        ("POST", get, b"not json", 400, "SerializationException"),
        ("POST", get, b"[1,2]", 400, "SerializationException"),
        (
            "POST",
            Some("DynamoDB_20120810.PutItem"),
            b"{\"TableName\":",
            400,
            "SerializationException",
        ),
    ];
    for (method, target, body, status, kind) in cases {
        let got = request(&proxy.url, method, target, body).await;
        let what = format!("{method} {target:?} {:?}", String::from_utf8_lossy(body));
        assert_eq!(got.status, status, "{what}");
        assert_eq!(got.error_type(), kind, "{what}");
        assert!(
            got.json()["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}"
        );
        assert_eq!(got.header("x-dynamo-cache"), Some("error"));
        got.assert_crc();
    }
    assert!(shim.requests().is_empty(), "bad input reached the upstream");
    // Two GetItem bodies were not JSON; the rest could not be classified at all.
    assert_eq!(
        proxy
            .metric(r#"dynamo_cache_requests_total{op="GetItem",protocol="http",result="error"}"#)
            .await,
        2.0
    );
    assert_eq!(
        proxy
            .metric(r#"dynamo_cache_requests_total{op="Other",protocol="http",result="error"}"#)
            .await,
        5.0
    );
}

#[tokio::test]
async fn sdk_health_check_is_answered_locally() {
    let shim = Shim::start(ok_reply()).await;
    let proxy = Proxy::start(&shim.url).await;
    let got = http_get(&format!("{}/", proxy.url)).await.unwrap();
    assert_eq!(got.status, 200);
    assert!(shim.requests().is_empty());
}

#[tokio::test]
async fn operations_the_proxy_does_not_read_are_judged_by_the_upstream() {
    let shim = Shim::start(ok_reply()).await;
    let proxy = Proxy::start(&shim.url).await;
    let got = request(
        &proxy.url,
        "POST",
        Some("DynamoDB_20120810.TagResource"),
        b"not json",
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(shim.requests()[0].body, &b"not json"[..]);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let shim = Shim::start(ok_reply()).await;
    let proxy = Proxy::start_with(&shim.url, |c| c.limits.max_body_bytes = 1024).await;
    static BIG: [u8; 4096] = [b' '; 4096];
    let got = request(&proxy.url, "POST", Some("DynamoDB_20120810.PutItem"), &BIG).await;
    assert_eq!(got.status, 413);
    assert_eq!(got.error_type(), "ValidationException");
    assert!(got.json()["message"].as_str().unwrap().contains("1024"));
    assert!(shim.requests().is_empty());
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_retryable_503() {
    // A port that was just free: nothing listens there.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let proxy = Proxy::start(&url).await;
    let got = dynamo(&proxy.url, "ListTables", "{}").await;
    assert_eq!(got.status, 503);
    assert_eq!(got.error_type(), "ServiceUnavailableException");
    got.assert_crc();
    assert_eq!(
        proxy
            .metric(r#"dynamo_cache_upstream_errors_total{kind="unavailable",op="ListTables"}"#)
            .await,
        1.0
    );
    // /upstream says so; readiness does not depend on it.
    let upstream = http_get(&format!("{}/upstream", proxy.admin_url))
        .await
        .unwrap();
    assert_eq!(upstream.status, 503);
    let ready = http_get(&format!("{}/readyz", proxy.admin_url))
        .await
        .unwrap();
    assert_eq!(ready.status, 200);
}

#[tokio::test]
async fn a_hung_upstream_times_out_with_a_5xx() {
    let shim = Shim::start(Reply::Hang).await;
    let proxy = Proxy::start_with(&shim.url, |c| c.limits.upstream_timeout_ms = 200).await;
    let got = dynamo(&proxy.url, "ListTables", "{}").await;
    assert_eq!(got.status, 500);
    assert_eq!(got.error_type(), "InternalServerError");
    assert!(got.json()["message"].as_str().unwrap().contains("200 ms"));
    assert_eq!(
        proxy
            .metric(r#"dynamo_cache_upstream_errors_total{kind="timeout",op="ListTables"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn connections_past_the_limit_are_told_why() {
    let shim = Shim::start(ok_reply()).await;
    let proxy = Proxy::start_with(&shim.url, |c| c.limits.max_connections = 1).await;
    // Hold the only slot with a keep-alive connection that has completed one request.
    let addr = proxy.url.trim_start_matches("http://");
    let mut held = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(list_tables_on(&mut held).await, "HTTP/1.1 200 OK");

    let got = dynamo(&proxy.url, "ListTables", "{}").await;
    assert_eq!(got.status, 503);
    assert_eq!(got.error_type(), "ServiceUnavailableException");
    assert!(
        got.json()["message"]
            .as_str()
            .unwrap()
            .contains("connection limit")
    );
    got.assert_crc();
    assert_eq!(
        proxy
            .metric("dynamo_cache_rejected_connections_total")
            .await,
        1.0
    );
    drop(held);
}

#[tokio::test]
async fn a_client_dribbling_its_headers_is_cut_off_and_others_are_served_meanwhile() {
    let shim = Shim::start(ok_reply()).await;
    let proxy = Proxy::start_with(&shim.url, |c| c.limits.header_read_timeout_ms = 300).await;
    let addr = proxy.url.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // One header byte every 50 ms, for as long as the proxy keeps listening (at most 10 s).
    let dribble = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut sent = 0usize;
        while started.elapsed() < std::time::Duration::from_secs(10) {
            if slow.write_all(b"x").await.is_err() {
                return (sent, None);
            }
            sent += 1;
            let mut buf = [0u8; 512];
            match tokio::time::timeout(std::time::Duration::from_millis(50), slow.read(&mut buf))
                .await
            {
                Ok(Ok(0)) | Ok(Err(_)) => return (sent, None),
                Ok(Ok(n)) => return (sent, Some(String::from_utf8_lossy(&buf[..n]).to_string())),
                Err(_) => {}
            }
        }
        panic!("the proxy waited 10 s for headers with a 300 ms header timeout");
    });
    // Meanwhile an ordinary client is served.
    for _ in 0..3 {
        assert_eq!(dynamo(&proxy.url, "ListTables", "{}").await.status, 200);
    }
    let (sent, answer) = dribble.await.unwrap();
    assert!(sent < 200, "cut off after {sent} bytes");
    assert_eq!(answer, None, "closed without an answer");
    // Counted once the connection's task ends, which may be just after the client saw it close.
    assert_eq!(
        proxy
            .metric_reaching("dynamo_cache_slow_client_disconnects_total", 1.0)
            .await,
        1.0
    );
    assert_eq!(dynamo(&proxy.url, "ListTables", "{}").await.status, 200);
}

/// A keep-alive request on `stream` (ListTables), and the status line of its answer.
async fn list_tables_on(stream: &mut tokio::net::TcpStream) -> String {
    stream
        .write_all(
            b"POST / HTTP/1.1\r\nhost: x\r\nx-amz-target: DynamoDB_20120810.ListTables\r\n\
              content-type: application/x-amz-json-1.0\r\ncontent-length: 2\r\n\r\n{}",
        )
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_not_a_slow_client() {
    let shim = Shim::start(ok_reply()).await;
    let proxy = Proxy::start_with(&shim.url, |c| c.limits.header_read_timeout_ms = 200).await;
    let addr = proxy.url.trim_start_matches("http://").to_string();
    let mut pooled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert_eq!(list_tables_on(&mut pooled).await, "HTTP/1.1 200 OK");
    // Idle between requests for longer than the header timeout, as an SDK's pooled connection
    // is: that is not a client dribbling its headers.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(list_tables_on(&mut pooled).await, "HTTP/1.1 200 OK");
    assert_eq!(
        proxy
            .metric("dynamo_cache_slow_client_disconnects_total")
            .await,
        0.0
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let shim = Shim::start(ok_reply()).await;
    let proxy = Proxy::start_with(&shim.url, |c| {
        c.limits.header_read_timeout_ms = 60_000;
        c.limits.idle_timeout_ms = 300;
    })
    .await;
    let addr = proxy.url.trim_start_matches("http://").to_string();
    let mut pooled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert_eq!(list_tables_on(&mut pooled).await, "HTTP/1.1 200 OK");
    let closed = closed_by_proxy(
        &mut pooled,
        20,
        "closed well before the 60 s header timeout",
    )
    .await;
    assert!(matches!(closed, Ok(0)), "a clean close: {closed:?}");
    // Both are counted when the connection's task ends.
    assert_eq!(
        proxy
            .metric_reaching("dynamo_cache_idle_disconnects_total", 1.0)
            .await,
        1.0
    );
    assert_eq!(
        proxy
            .metric("dynamo_cache_slow_client_disconnects_total")
            .await,
        0.0
    );
}
