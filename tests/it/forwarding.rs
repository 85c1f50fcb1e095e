//! Forwarding is transparent: every operation through the proxy answers exactly what the
//! upstream answers directly. Two independent emulators run in lockstep, one behind the proxy
//! and one called directly; each SDK call goes to both and the answers are compared.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::common::shim::{self, Reply, Shim};
use crate::common::*;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeValue as AV, KeysAndAttributes, Put, PutRequest, ReturnValue, TransactGetItem,
    TransactWriteItem, WriteRequest,
};
use bytes::Bytes;

struct Lockstep {
    proxied: aws_sdk_dynamodb::Client,
    direct: aws_sdk_dynamodb::Client,
    _proxy: Proxy,
    _a: Upstream,
    _b: Upstream,
}

async fn lockstep() -> Lockstep {
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let proxy = Proxy::start(&a.url).await;
    Lockstep {
        proxied: sdk(&proxy.url),
        direct: sdk(&b.url),
        _proxy: proxy,
        _a: a,
        _b: b,
    }
}

/// Runs `$call` with `$c` bound to the proxied and then the direct client; both must succeed
/// with equal `$field`s. Yields the proxied output.
macro_rules! same {
    ($env:expr, |$c:ident| $call:expr $(, $field:ident)* $(,)?) => {{
        let via = { let $c = &$env.proxied; $call.await };
        let direct = { let $c = &$env.direct; $call.await };
        match (via, direct) {
            (Ok(a), Ok(_b)) => {
                $( assert_eq!(a.$field, _b.$field, "{} differs", stringify!($field)); )*
                a
            }
            (via, direct) => panic!("proxied {via:?}\n  direct {direct:?}"),
        }
    }};
}

/// As `same!`, but both must fail with the same DynamoDB error code and message. Yields the
/// proxied error.
macro_rules! same_err {
    ($env:expr, |$c:ident| $call:expr) => {{
        let via = {
            let $c = &$env.proxied;
            $call.await
        };
        let direct = {
            let $c = &$env.direct;
            $call.await
        };
        match (via, direct) {
            (Err(a), Err(b)) => {
                let (ma, mb) = (a.as_service_error(), b.as_service_error());
                assert!(
                    ma.is_some(),
                    "proxied call failed outside the service: {a:?}"
                );
                let meta = |e: Option<_>| {
                    e.map(|e: &_| {
                        (
                            ProvideErrorMetadata::code(e).map(str::to_string),
                            ProvideErrorMetadata::message(e).map(str::to_string),
                        )
                    })
                };
                assert_eq!(meta(ma), meta(mb), "errors differ");
                a
            }
            (via, direct) => panic!("expected both to fail: proxied {via:?}\n  direct {direct:?}"),
        }
    }};
}

fn s(v: &str) -> AV {
    AV::S(v.into())
}
fn n(v: &str) -> AV {
    AV::N(v.into())
}
fn key(pk: &str, sk: &str) -> HashMap<String, AV> {
    HashMap::from([("pk".into(), s(pk)), ("sk".into(), n(sk))])
}
fn item(pk: &str, sk: &str, g: &str, v: &str) -> HashMap<String, AV> {
    let mut item = key(pk, sk);
    item.insert("g".into(), s(g));
    item.insert("v".into(), s(v));
    item
}

#[tokio::test]
async fn every_operation_answers_as_the_upstream_does() {
    let env = lockstep().await;
    const T: &str = "orders";

    // Table management.
    create_table(&env.proxied, T).await;
    create_table(&env.direct, T).await;
    let described = same!(env, |c| c.describe_table().table_name(T).send());
    let direct_described = env
        .direct
        .describe_table()
        .table_name(T)
        .send()
        .await
        .unwrap();
    let (a, b) = (described.table.unwrap(), direct_described.table.unwrap());
    assert_eq!(a.key_schema, b.key_schema);
    assert_eq!(a.attribute_definitions, b.attribute_definitions);
    assert_eq!(a.table_status, b.table_status);
    assert_eq!(
        a.global_secondary_indexes.unwrap()[0].index_name,
        b.global_secondary_indexes.unwrap()[0].index_name
    );
    same!(
        env,
        |c| c.list_tables().send(),
        table_names,
        last_evaluated_table_name
    );

    // Items.
    for (pk, sk, g) in [("a", "1", "red"), ("a", "2", "blue"), ("b", "1", "red")] {
        same!(
            env,
            |c| c
                .put_item()
                .table_name(T)
                .set_item(Some(item(pk, sk, g, "v1")))
                .send(),
            attributes
        );
    }
    same!(
        env,
        |c| c
            .put_item()
            .table_name(T)
            .set_item(Some(item("a", "1", "red", "v2")))
            .return_values(ReturnValue::AllOld)
            .send(),
        attributes
    );
    same!(
        env,
        |c| c
            .get_item()
            .table_name(T)
            .set_key(Some(key("a", "1")))
            .send(),
        item
    );
    same!(
        env,
        |c| c
            .get_item()
            .table_name(T)
            .set_key(Some(key("zz", "9")))
            .send(),
        item
    );
    same!(
        env,
        |c| c
            .get_item()
            .table_name(T)
            .set_key(Some(key("a", "1")))
            .consistent_read(true)
            .projection_expression("v")
            .send(),
        item
    );
    for rv in [
        ReturnValue::AllNew,
        ReturnValue::UpdatedOld,
        ReturnValue::None,
    ] {
        same!(
            env,
            |c| c
                .update_item()
                .table_name(T)
                .set_key(Some(key("a", "2")))
                .update_expression("SET v = :v ADD n :one")
                .expression_attribute_values(":v", s("v3"))
                .expression_attribute_values(":one", n("1"))
                .return_values(rv.clone())
                .send(),
            attributes
        );
    }
    same!(
        env,
        |c| c
            .query()
            .table_name(T)
            .key_condition_expression("pk = :p")
            .expression_attribute_values(":p", s("a"))
            .send(),
        items,
        count,
        scanned_count,
        last_evaluated_key
    );
    same!(
        env,
        |c| c
            .query()
            .table_name(T)
            .index_name("by_g")
            .key_condition_expression("g = :g")
            .expression_attribute_values(":g", s("red"))
            .send(),
        count,
        scanned_count
    );
    same!(
        env,
        |c| c.scan().table_name(T).limit(2).send(),
        items,
        count,
        last_evaluated_key
    );
    same!(
        env,
        |c| c
            .batch_get_item()
            .request_items(
                T,
                KeysAndAttributes::builder()
                    .keys(key("a", "1"))
                    .keys(key("b", "1"))
                    .keys(key("nope", "1"))
                    .build()
                    .unwrap(),
            )
            .send(),
        responses,
        unprocessed_keys
    );
    same!(
        env,
        |c| c
            .batch_write_item()
            .request_items(
                T,
                vec![
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(item("c", "1", "green", "v1")))
                                .build()
                                .unwrap()
                        )
                        .build(),
                ],
            )
            .send(),
        unprocessed_items
    );
    same!(env, |c| c
        .transact_write_items()
        .transact_items(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(T)
                        .set_item(Some(item("d", "1", "red", "v1")))
                        .build()
                        .unwrap()
                )
                .build(),
        )
        .send());
    same!(
        env,
        |c| c
            .transact_get_items()
            .transact_items(
                TransactGetItem::builder()
                    .get(
                        aws_sdk_dynamodb::types::Get::builder()
                            .table_name(T)
                            .set_key(Some(key("d", "1")))
                            .build()
                            .unwrap()
                    )
                    .build(),
            )
            .send(),
        responses
    );
    same!(
        env,
        |c| c
            .execute_statement()
            .statement(format!("SELECT * FROM \"{T}\" WHERE pk = 'a'"))
            .send(),
        items
    );
    same!(
        env,
        |c| c
            .delete_item()
            .table_name(T)
            .set_key(Some(key("b", "1")))
            .return_values(ReturnValue::AllOld)
            .send(),
        attributes
    );

    // Errors pass through unchanged.
    same_err!(env, |c| c
        .get_item()
        .table_name("missing")
        .set_key(Some(key("a", "1")))
        .send());
    let failed = same_err!(env, |c| c
        .put_item()
        .table_name(T)
        .set_item(Some(item("a", "1", "red", "v9")))
        .condition_expression("attribute_not_exists(pk)")
        .send());
    assert!(
        failed
            .into_service_error()
            .is_conditional_check_failed_exception()
    );
    let invalid = same_err!(env, |c| c
        .query()
        .table_name(T)
        .key_condition_expression("pk = ")
        .send());
    assert_eq!(invalid.code(), Some("ValidationException"));

    same!(env, |c| c.delete_table().table_name(T).send());
    same!(env, |c| c.list_tables().send(), table_names);
}

/// On the wire: the upstream receives the client's body byte for byte, signed by the proxy for
/// the upstream's host; the client receives the upstream's status, headers and bytes.
#[tokio::test]
async fn bytes_pass_through_unchanged_and_are_re_signed() {
    // Deliberately odd but valid: key order, spacing and a unicode escape must all survive.
    let answer =
        Bytes::from_static(b"{\"Item\": {\"v\":{\"S\":\"\\u00e9\"} ,\"pk\":{\"S\":\"a\"}}}");
    let shim = Shim::start(Reply::Fixed {
        status: 200,
        headers: vec![
            ("content-type", "application/x-amz-json-1.0".into()),
            ("x-amzn-requestid", "UPSTREAMREQUESTID".into()),
            ("x-amz-crc32", crc32fast::hash(&answer).to_string()),
        ],
        body: answer.clone(),
    })
    .await;
    let proxy = Proxy::start(&shim.url).await;
    let sent = r#"{ "TableName":"tbl", "Key": {"pk":{"S":"a"}}, "ConsistentRead": true }"#;
    let got = dynamo(&proxy.url, "GetItem", sent).await;

    assert_eq!(got.status, 200);
    assert_eq!(got.body, answer);
    assert_eq!(got.header("x-amzn-requestid"), Some("UPSTREAMREQUESTID"));
    got.assert_crc();

    let seen = shim.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, sent.as_bytes());
    assert_eq!(seen[0].headers["x-amz-target"], "DynamoDB_20120810.GetItem");
    let host = shim.url.trim_start_matches("http://");
    assert_eq!(seen[0].headers["host"], host);
    let auth = seen[0].headers["authorization"].to_str().unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/"),
        "{auth}"
    );
    assert!(auth.contains("/us-east-1/dynamodb/aws4_request"), "{auth}");
    // The client sent the placeholder "Signature=00"; the proxy's own is 64 hex digits.
    let signature = auth.rsplit_once("Signature=").unwrap().1;
    assert!(
        signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit()),
        "the client's signature was forwarded: {auth}"
    );
}

/// Upstream errors (status, body, headers) come back untouched.
#[tokio::test]
async fn upstream_errors_pass_through() {
    let error = Bytes::from_static(
        b"{\"__type\":\"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException\",\"message\":\"slow down\"}",
    );
    let shim = Shim::start(Reply::Fixed {
        status: 400,
        headers: vec![
            ("content-type", "application/x-amz-json-1.0".into()),
            ("x-amz-crc32", crc32fast::hash(&error).to_string()),
            (
                "x-amzn-errortype",
                "ProvisionedThroughputExceededException".into(),
            ),
        ],
        body: error.clone(),
    })
    .await;
    let proxy = Proxy::start(&shim.url).await;
    let got = dynamo(&proxy.url, "PutItem", r#"{"TableName":"tbl","Item":{}}"#).await;
    assert_eq!(got.status, 400);
    assert_eq!(got.body, error);
    assert_eq!(
        got.header("x-amzn-errortype"),
        Some("ProvisionedThroughputExceededException")
    );
    got.assert_crc();
}

/// The Streams API shares the endpoint and is forwarded too.
#[tokio::test]
async fn streams_api_is_forwarded() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream.url).await;
    let request = |url: &str| {
        http::Request::post(format!("{url}/"))
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", "DynamoDBStreams_20120810.ListStreams")
            .header("x-amz-date", "20260101T000000Z")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/dynamodb/aws4_request, \
                 SignedHeaders=host, Signature=00",
            )
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
            .unwrap()
    };
    let direct = send(request(&upstream.url)).await.unwrap();
    let proxied = send(request(&proxy.url)).await.unwrap();
    assert_eq!(direct.status, 200);
    assert_eq!(proxied.status, direct.status);
    assert_eq!(proxied.body, direct.body);
}

/// An upstream that answers every request `{}` and keeps the connection open, but closes a
/// connection that has been idle for `idle` (as DynamoDB's front ends do). Counts the
/// connections it accepted, and keeps the request line of each request it answered.
async fn closing_when_idle(
    idle: std::time::Duration,
) -> (String, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let (accepted, answered) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let answered = answered.clone();
            let answer = hyper::service::service_fn(move |request: http::Request<_>| {
                let line = format!(
                    "{} {} {:?}",
                    request.method(),
                    request.uri(),
                    request.version()
                );
                answered.lock().unwrap().push(line.to_ascii_lowercase());
                let mut response = http::Response::new(shim::full(Bytes::from_static(b"{}")));
                response.headers_mut().insert(
                    "content-type",
                    http::HeaderValue::from_static("application/x-amz-json-1.0"),
                );
                async { Ok::<_, std::io::Error>(response) }
            });
            // hyper's header timeout also runs while a kept-alive connection waits for its
            // next request: the connection closes once it has been idle that long.
            let serving = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(idle)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), answer);
            tokio::spawn(serving);
        }
    });
    (url, connections, requests)
}

/// Forwarded requests share upstream connections, and a connection the upstream closed while
/// it sat idle is never handed a request: the next request gets a fresh one, not an error.
#[tokio::test]
async fn upstream_connections_are_reused_and_one_closed_while_idle_is_not() {
    let idle = std::time::Duration::from_millis(100);
    let (url, connections, requests) = closing_when_idle(idle).await;
    let proxy = Proxy::start(&url).await;
    let client = pooled();
    let before = connections.load(Ordering::SeqCst);
    for _ in 0..5 {
        let got = dynamo_on(&client, &proxy.url, "ListTables", "{}")
            .await
            .unwrap();
        assert_eq!((got.status, &got.body[..]), (200, &b"{}"[..]));
    }
    // Origin form, as DynamoDB's own clients send it.
    assert_eq!(*requests.lock().unwrap(), vec!["post / http/1.1"; 5]);
    let opened = connections.load(Ordering::SeqCst) - before;
    assert!(
        opened <= 1,
        "five requests one after another opened {opened} connections"
    );

    // The upstream closes the idle connection; the proxy must not send on it.
    tokio::time::sleep(idle * 4).await;
    let before = connections.load(Ordering::SeqCst);
    for _ in 0..3 {
        let got = dynamo_on(&client, &proxy.url, "ListTables", "{}")
            .await
            .unwrap();
        assert_eq!(
            (got.status, &got.body[..]),
            (200, &b"{}"[..]),
            "{:?}",
            got.json()
        );
    }
    assert_eq!(requests.lock().unwrap().len(), 8);
    assert_eq!(connections.load(Ordering::SeqCst) - before, 1);
}
