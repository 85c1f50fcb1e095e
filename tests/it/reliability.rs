//! The proxy on DynamoDB's bad days, through a fault-injecting shim between it and a real
//! emulator: what is never cached, what passes through unchanged, what fails fast, what is
//! served stale when allowed, and that rotating credentials never fail a request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::common::shim::{Reply, Shim};
use crate::common::*;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use bytes::Bytes;

const TABLE: &str = "faults";
const GET: &str = r#"{"TableName":"faults","Key":{"pk":{"S":"a"},"sk":{"N":"1"}}}"#;
const QUERY: &str = r#"{"TableName":"faults","KeyConditionExpression":"pk = :p","ExpressionAttributeValues":{":p":{"S":"a"}}}"#;

fn relay_to(url: &str) -> Reply {
    Reply::Relay {
        to: url.to_string(),
        jitter_ms: 0,
        slow_op: "",
        slow_ms: 0,
    }
}

fn fixed(status: u16, body: &str) -> Reply {
    Reply::Fixed {
        status,
        headers: vec![
            ("content-type", "application/x-amz-json-1.0".into()),
            ("x-amzn-requestid", "UPSTREAM-REQUEST-ID".into()),
            ("x-amz-crc32", crc32fast::hash(body.as_bytes()).to_string()),
        ],
        body: Bytes::copy_from_slice(body.as_bytes()),
    }
}

fn dynamodb_error(status: u16, kind: &str) -> Reply {
    fixed(
        status,
        &format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{kind}","message":"injected"}}"#),
    )
}

/// An emulator with one item, a shim relaying to it, and a proxy behind the shim.
async fn faulty(adjust: impl FnOnce(&mut dynamo_cache::Config)) -> (Upstream, Shim, Proxy) {
    let upstream = Upstream::start().await;
    create_table(&sdk(&upstream.url), TABLE).await;
    put(&upstream.url, "original").await;
    let shim = Shim::relay(&upstream.url, 0).await;
    let proxy = Proxy::start_with(&shim.url, |c| {
        c.limits.upstream_timeout_ms = 300;
        adjust(c);
    })
    .await;
    (upstream, shim, proxy)
}

async fn put(url: &str, value: &str) {
    let body = format!(
        r#"{{"TableName":"faults","Item":{{"pk":{{"S":"a"}},"sk":{{"N":"1"}},"v":{{"S":"{value}"}}}}}}"#
    );
    assert_eq!(dynamo(url, "PutItem", &body).await.status, 200);
}

/// What a client should see for an injected fault.
enum Expect {
    /// DynamoDB's own error, relayed byte for byte.
    PassedThrough,
    /// The proxy's retryable error of this status and type.
    Proxy(u16, &'static str),
}

fn faults() -> Vec<(&'static str, Reply, Expect)> {
    use Expect::*;
    vec![
        (
            "500 InternalServerError",
            dynamodb_error(500, "InternalServerError"),
            PassedThrough,
        ),
        (
            "503 ServiceUnavailable",
            dynamodb_error(503, "ServiceUnavailableException"),
            PassedThrough,
        ),
        (
            "throttling",
            dynamodb_error(400, "ThrottlingException"),
            PassedThrough,
        ),
        (
            "provisioned throughput",
            dynamodb_error(400, "ProvisionedThroughputExceededException"),
            PassedThrough,
        ),
        (
            "connection reset",
            Reply::Reset,
            Proxy(503, "ServiceUnavailableException"),
        ),
        (
            "truncated body",
            Reply::Truncated {
                body: Bytes::from_static(br#"{"Item":{"pk":{"S":"a"},"#),
            },
            Proxy(503, "ServiceUnavailableException"),
        ),
        (
            "unparsable 200",
            fixed(200, "this is not JSON"),
            Proxy(500, "InternalServerError"),
        ),
        (
            "checksum mismatch",
            Reply::Fixed {
                status: 200,
                headers: vec![("x-amz-crc32", "12345".into())],
                body: Bytes::from_static(
                    br#"{"Item":{"pk":{"S":"a"},"sk":{"N":"1"},"v":{"S":"corrupt"}}}"#,
                ),
            },
            Proxy(500, "InternalServerError"),
        ),
        ("hang", Reply::Hang, Proxy(500, "InternalServerError")),
    ]
}

fn check_fault(what: &str, op: &str, answer: &Raw, injected: &Reply, expect: &Expect) {
    answer.assert_crc();
    match expect {
        Expect::PassedThrough => {
            let Reply::Fixed { status, body, .. } = injected else {
                unreachable!()
            };
            assert_eq!(answer.status, *status, "{what} {op}");
            assert_eq!(
                &answer.body, body,
                "{what} {op}: DynamoDB's error body, untouched"
            );
            assert_eq!(
                answer.header("x-amzn-requestid"),
                Some("UPSTREAM-REQUEST-ID"),
                "{what} {op}"
            );
        }
        Expect::Proxy(status, kind) => {
            assert_eq!(answer.status, *status, "{what} {op}: {:?}", answer.body);
            assert!(
                answer.error_type().ends_with(kind),
                "{what} {op}: {}",
                answer.error_type()
            );
            assert_eq!(answer.cache_status(), "error", "{what} {op}");
        }
    }
}

#[tokio::test]
async fn no_failure_is_ever_cached_and_the_next_read_asks_upstream_again() {
    for (what, fault, expect) in faults() {
        for (op, body) in [("GetItem", GET), ("Query", QUERY)] {
            let (mut upstream, shim, mut proxy) = faulty(|_| {}).await;
            shim.set_reply(fault.clone());
            let answer = dynamo(&proxy.url, op, body).await;
            check_fault(what, op, &answer, &fault, &expect);
            assert_eq!(shim.count(op), 1, "{what} {op}");

            // The upstream recovers: the next read goes upstream and gets the real item...
            shim.set_reply(relay_to(&upstream.url));
            let answer = dynamo(&proxy.url, op, body).await;
            assert_eq!(answer.status, 200, "{what} {op}");
            assert_eq!(
                answer.cache_status(),
                "miss",
                "{what} {op}: nothing was cached"
            );
            assert!(
                String::from_utf8_lossy(&answer.body).contains("original"),
                "{what} {op}"
            );
            assert_eq!(shim.count(op), 2, "{what} {op}");
            // ...which is now cached.
            let answer = dynamo(&proxy.url, op, body).await;
            assert_eq!(answer.cache_status(), "hit", "{what} {op}");
            assert_eq!(shim.count(op), 2, "{what} {op}");

            proxy.stop().await;
            upstream.stop().await;
        }
    }
}

#[tokio::test]
async fn waiters_of_a_failed_shared_read_all_get_its_error_and_the_next_read_retries() {
    let (mut upstream, shim, mut proxy) = faulty(|_| {}).await;
    shim.set_reply(Reply::Hang);
    let readers: Vec<_> = (0..5)
        .map(|_| {
            let url = proxy.url.clone();
            tokio::spawn(async move { dynamo(&url, "GetItem", GET).await })
        })
        .collect();
    let mut answers = Vec::new();
    for reader in readers {
        answers.push(reader.await.unwrap());
    }
    assert_eq!(shim.count("GetItem"), 1, "one shared upstream read");
    for answer in &answers {
        assert_eq!(answer.status, 500);
        assert_eq!(answer.json()["message"], answers[0].json()["message"]);
        assert!(answer.error_type().ends_with("InternalServerError"));
    }
    assert_eq!(
        proxy.metric("dynamo_cache_coalesced_misses_total").await,
        4.0
    );

    shim.set_reply(relay_to(&upstream.url));
    let answer = dynamo(&proxy.url, "GetItem", GET).await;
    assert_eq!((answer.status, answer.cache_status()), (200, "miss"));
    assert_eq!(shim.count("GetItem"), 2);
    proxy.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn a_saturated_upstream_fails_new_misses_fast_while_hits_keep_flowing() {
    let (mut upstream, shim, mut proxy) = faulty(|c| {
        c.limits.upstream_timeout_ms = 10_000;
        c.limits.max_upstream_requests = 2;
        c.limits.upstream_queue_timeout_ms = 100;
    })
    .await;
    // One item cached while the upstream is healthy.
    assert_eq!(dynamo(&proxy.url, "GetItem", GET).await.status, 200);

    // The upstream stops answering; two misses take both slots and wait.
    shim.set_reply(Reply::Hang);
    let stuck: Vec<_> = ["b", "c"]
        .into_iter()
        .map(|pk| {
            let url = proxy.url.clone();
            let body = GET.replace(r#""S":"a""#, &format!(r#""S":"{pk}""#));
            tokio::spawn(async move { dynamo(&url, "GetItem", &body).await })
        })
        .collect();
    while shim.count("GetItem") < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // A third miss does not queue behind them for the upstream timeout: it fails at once with
    // a retryable 503.
    let third = GET.replace(r#""S":"a""#, r#""S":"d""#);
    let answer = dynamo(&proxy.url, "GetItem", &third).await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert!(answer.error_type().ends_with("ServiceUnavailableException"));
    assert!(
        answer.json()["message"]
            .as_str()
            .unwrap()
            .contains("saturated")
    );
    assert!(
        !stuck.iter().any(|t| t.is_finished()),
        "the stuck reads still hold their slots"
    );
    assert_eq!(
        shim.count("GetItem"),
        3,
        "the third miss never reached the upstream"
    );
    assert_eq!(
        proxy
            .metric(r#"dynamo_cache_upstream_errors_total{kind="saturated",op="GetItem"}"#)
            .await,
        1.0
    );

    // Hits are answered from memory regardless.
    let hit = dynamo(&proxy.url, "GetItem", GET).await;
    assert_eq!((hit.status, hit.cache_status()), (200, "hit"));

    for task in stuck {
        task.abort();
    }
    proxy.stop().await;
    upstream.stop().await;
}

/// Fills the item and query caches, lets their 200 ms TTL pass, then breaks the upstream.
async fn expired_then_broken(stale: bool) -> (Upstream, Shim, Proxy) {
    let (upstream, shim, proxy) = faulty(|c| {
        c.cache.item_ttl_ms = 200;
        c.cache.query_ttl_ms = 200;
        c.cache.serve_stale_on_error = stale;
        c.cache.stale_grace_ms = 60_000;
    })
    .await;
    for (op, body) in [("GetItem", GET), ("Query", QUERY)] {
        assert_eq!(dynamo(&proxy.url, op, body).await.cache_status(), "miss");
        assert_eq!(dynamo(&proxy.url, op, body).await.cache_status(), "hit");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    shim.set_reply(dynamodb_error(500, "InternalServerError"));
    (upstream, shim, proxy)
}

#[tokio::test]
async fn with_stale_on_error_an_expired_entry_answers_when_the_upstream_fails() {
    let (mut upstream, shim, mut proxy) = expired_then_broken(true).await;
    for (op, body, cache) in [("GetItem", GET, "item"), ("Query", QUERY, "query")] {
        let answer = dynamo(&proxy.url, op, body).await;
        assert_eq!(answer.status, 200, "{op}");
        assert_eq!(answer.cache_status(), "stale", "{op}");
        answer.assert_crc();
        assert!(String::from_utf8_lossy(&answer.body).contains("original"));
        assert_eq!(shim.count(op), 2, "{op}: the upstream was asked first");
        assert_eq!(
            proxy
                .metric(&format!(
                    r#"dynamo_cache_requests_total{{op="{op}",protocol="http",result="stale"}}"#
                ))
                .await,
            1.0
        );
        assert_eq!(
            proxy
                .metric(&format!(
                    r#"dynamo_cache_cache_requests_total{{cache="{cache}",result="stale"}}"#
                ))
                .await,
            1.0
        );
    }

    // Throttling counts as failing too.
    shim.set_reply(dynamodb_error(400, "ThrottlingException"));
    assert_eq!(
        dynamo(&proxy.url, "GetItem", GET).await.cache_status(),
        "stale"
    );

    // Once the upstream is back, reads are fresh again.
    shim.set_reply(relay_to(&upstream.url));
    put(&upstream.url, "newer").await;
    let answer = dynamo(&proxy.url, "GetItem", GET).await;
    assert_eq!(answer.cache_status(), "miss");
    assert!(String::from_utf8_lossy(&answer.body).contains("newer"));
    proxy.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn without_stale_on_error_the_failure_reaches_the_caller() {
    let (mut upstream, _shim, mut proxy) = expired_then_broken(false).await;
    for (op, body) in [("GetItem", GET), ("Query", QUERY)] {
        let answer = dynamo(&proxy.url, op, body).await;
        assert_eq!(answer.status, 500, "{op}");
        assert_ne!(answer.cache_status(), "stale");
    }
    proxy.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn a_stale_answer_is_never_older_than_a_write_the_proxy_acknowledged() {
    let (mut upstream, shim, mut proxy) = expired_then_broken(true).await;
    // A write through the proxy that it can only invalidate for (a transaction), acknowledged.
    shim.set_reply(relay_to(&upstream.url));
    let transact = r#"{"TransactItems":[{"Put":{"TableName":"faults","Item":{"pk":{"S":"a"},"sk":{"N":"1"},"v":{"S":"transacted"}}}}]}"#;
    assert_eq!(
        dynamo(&proxy.url, "TransactWriteItems", transact)
            .await
            .status,
        200
    );
    // Now the upstream fails: the old value must not come back.
    shim.set_reply(dynamodb_error(500, "InternalServerError"));
    for (op, body) in [("GetItem", GET), ("Query", QUERY)] {
        let answer = dynamo(&proxy.url, op, body).await;
        assert_eq!(answer.status, 500, "{op}: {:?}", answer.body);
        assert!(!String::from_utf8_lossy(&answer.body).contains("original"));
    }
    proxy.stop().await;
    upstream.stop().await;
}

/// Credentials that expire a second after they are issued, each with its own key id; records
/// when each expires.
#[derive(Debug, Clone, Default)]
struct ShortLived {
    issued: Arc<Mutex<HashMap<String, SystemTime>>>,
}

impl ProvideCredentials for ShortLived {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let mut issued = self.issued.lock().unwrap();
        let key = format!("AKIDROTATE{}", issued.len());
        let expiry = SystemTime::now() + Duration::from_secs(1);
        issued.insert(key.clone(), expiry);
        future::ProvideCredentials::ready(Ok(Credentials::new(
            key,
            "secret",
            Some("session-token".into()),
            Some(expiry),
            "rotating",
        )))
    }
}

#[tokio::test]
async fn rotating_credentials_never_fail_a_request_nor_reach_the_upstream_expired() {
    let mut upstream = Upstream::start().await;
    create_table(&sdk(&upstream.url), TABLE).await;
    put(&upstream.url, "original").await;
    let shim = Shim::relay(&upstream.url, 0).await;
    let provider = ShortLived::default();
    let mut proxy = Proxy::start_signing_with(
        &shim.url,
        SharedCredentialsProvider::new(provider.clone()),
        |_| {},
    )
    .await;

    // Three seconds of strongly consistent reads: every one goes upstream, signed.
    let consistent =
        r#"{"TableName":"faults","Key":{"pk":{"S":"a"},"sk":{"N":"1"}},"ConsistentRead":true}"#;
    let started = std::time::Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let answer = dynamo(&proxy.url, "GetItem", consistent).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        sent += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let issued = provider.issued.lock().unwrap().clone();
    assert!(
        issued.len() >= 3,
        "credentials rotated {} times",
        issued.len()
    );
    assert!(
        issued.len() * 5 <= sent,
        "{} refreshes for {sent} requests: refreshed far more often than needed",
        issued.len()
    );
    let requests = shim.requests();
    assert!(requests.len() >= sent);
    for request in requests {
        let auth = request.headers["authorization"].to_str().unwrap();
        let key = auth
            .split("Credential=")
            .nth(1)
            .and_then(|c| c.split('/').next())
            .unwrap();
        let expiry = issued[key];
        // Refreshed ahead of expiry: no request carries credentials in their last quarter.
        let left = expiry.duration_since(request.at).unwrap_or_default();
        assert!(
            left >= Duration::from_millis(250),
            "a request reached the upstream signed with {key} {left:?} before it expired"
        );
        assert_eq!(request.headers["x-amz-security-token"], "session-token");
    }
    proxy.stop().await;
    upstream.stop().await;
}
