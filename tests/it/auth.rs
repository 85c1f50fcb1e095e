//! Inbound SigV4 authentication and per-principal authorisation, through real SDK clients: the
//! right key succeeds; a wrong secret, an unknown key, a stale date, a tampered body or a table
//! outside the principal's globs gets DynamoDB's error, and the upstream sees nothing.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::common::shim::Shim;
use crate::common::*;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use dynamo_cache::config::AuthMode;
use http_body_util::{BodyExt, Full};

const PRINCIPALS: &str = r#"
[[principal]]
name = "ops"
access_key_id = "AKIDOPS"
secret_access_key = "ops-secret"
tables = ["*"]
operations = ["read", "write", "admin"]

[[principal]]
name = "orders-service"
access_key_id = "AKIDORDERS"
secret_access_key_file = "orders.secret"
tables = ["orders", "orders-*"]
operations = ["read", "write"]

[[principal]]
name = "payments-reader"
access_key_id = "AKIDPAYMENTS"
secret_access_key = "payments-secret"
tables = ["payments"]
operations = ["read"]
"#;

/// A scratch directory holding the credentials file and the secret file it names.
fn credentials_dir(name: &str, principals: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dynamo-cache-auth-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("orders.secret"), "orders-secret\n").unwrap();
    std::fs::write(dir.join("principals.toml"), principals).unwrap();
    dir
}

/// The emulator, a relay that records what reaches it, and a proxy verifying signatures.
async fn guarded(name: &str) -> (Upstream, Shim, Proxy, PathBuf) {
    let upstream = Upstream::start().await;
    let shim = Shim::relay(&upstream.url, 0).await;
    let dir = credentials_dir(name, PRINCIPALS);
    let file = dir.join("principals.toml");
    let proxy = Proxy::start_with(&shim.url, |c| {
        c.auth.mode = AuthMode::Sigv4;
        c.auth.credentials_file = Some(file);
    })
    .await;
    (upstream, shim, proxy, dir)
}

/// An SDK client signing with `key`/`secret`, retries off so every refusal is seen once.
fn client(url: &str, key: &str, secret: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(Credentials::new(key, secret, None, None, "test"))
        .http_client(dynamo_cache::upstream::sdk_http_client())
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

async fn put(client: &aws_sdk_dynamodb::Client, table: &str, pk: &str, v: &str) {
    client
        .put_item()
        .table_name(table)
        .item("pk", AttributeValue::S(pk.into()))
        .item("sk", AttributeValue::N("1".into()))
        .item("v", AttributeValue::S(v.into()))
        .send()
        .await
        .unwrap();
}

/// GetItem through the SDK: the item's `v`, or the error code DynamoDB's way.
async fn get(client: &aws_sdk_dynamodb::Client, table: &str, pk: &str) -> Result<String, String> {
    client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.into()))
        .key("sk", AttributeValue::N("1".into()))
        .send()
        .await
        .map(|out| {
            out.item
                .and_then(|i| i.get("v").and_then(|v| v.as_s().ok()).cloned())
                .unwrap_or_default()
        })
        .map_err(|err| {
            let err = err.into_service_error();
            format!(
                "{}: {}",
                err.code().unwrap_or("?"),
                err.message().unwrap_or("")
            )
        })
}

/// A request signed with `aws-sigv4` as the SDKs sign it, at `at`, over `signed_body`, but
/// carrying `sent_body`.
fn signed(
    url: &str,
    key: &str,
    secret: &str,
    at: SystemTime,
    op: &str,
    signed_body: &str,
    sent_body: &str,
) -> http::Request<Full<Bytes>> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let host = url.trim_start_matches("http://");
    let target = format!("DynamoDB_20120810.{op}");
    let headers = [
        ("host", host),
        ("content-type", "application/x-amz-json-1.0"),
        ("x-amz-target", target.as_str()),
    ];
    let identity = Credentials::new(key, secret, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("dynamodb")
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        "POST",
        format!("{url}/"),
        headers.into_iter(),
        SignableBody::Bytes(signed_body.as_bytes()),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut request = http::Request::post(format!("{url}/"))
        .body(Full::new(Bytes::copy_from_slice(sent_body.as_bytes())))
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    instructions.apply_to_request_http1x(&mut request);
    request
}

async fn set_up_tables(proxy: &Proxy) {
    let ops = client(&proxy.url, "AKIDOPS", "ops-secret");
    create_table(&ops, "orders").await;
    create_table(&ops, "payments").await;
    put(&ops, "orders", "o1", "order one").await;
    put(&ops, "payments", "p1", "payment one").await;
}

#[tokio::test]
async fn the_right_key_succeeds_and_every_bad_signature_gets_dynamodbs_error() {
    let (_upstream, shim, proxy, _dir) = guarded("errors").await;
    set_up_tables(&proxy).await;
    let orders = client(&proxy.url, "AKIDORDERS", "orders-secret");
    assert_eq!(get(&orders, "orders", "o1").await.unwrap(), "order one");
    // A table matched by the glob `orders-*`.
    create_table(&client(&proxy.url, "AKIDOPS", "ops-secret"), "orders-2026").await;
    put(&orders, "orders-2026", "x", "y").await;
    assert_eq!(get(&orders, "orders-2026", "x").await.unwrap(), "y");
    let before = shim.requests().len();

    let wrong_secret = client(&proxy.url, "AKIDORDERS", "guessed");
    let err = get(&wrong_secret, "orders", "o1").await.unwrap_err();
    assert!(
        err.starts_with("InvalidSignatureException: The request signature we calculated"),
        "{err}"
    );

    let unknown = client(&proxy.url, "AKIDNOBODY", "orders-secret");
    let err = get(&unknown, "orders", "o1").await.unwrap_err();
    assert_eq!(
        err,
        "UnrecognizedClientException: The security token included in the request is invalid."
    );

    let err = get(&orders, "payments", "p1").await.unwrap_err();
    assert!(
        err.starts_with("AccessDeniedException: User: orders-service"),
        "{err}"
    );
    assert!(
        err.contains("dynamodb:GetItem on resource: table/payments"),
        "{err}"
    );

    // Operations outside the principal's classes: orders-service has no admin.
    let err = orders
        .delete_table()
        .table_name("orders")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("AccessDeniedException"));

    let body = r#"{"TableName":"orders","Key":{"pk":{"S":"o1"},"sk":{"N":"1"}}}"#;
    let now = SystemTime::now();
    let stale = signed(
        &proxy.url,
        "AKIDORDERS",
        "orders-secret",
        now - Duration::from_secs(20 * 60),
        "GetItem",
        body,
        body,
    );
    let got = send(stale).await.unwrap();
    assert_eq!(got.status, 400);
    assert_eq!(got.error_type(), "InvalidSignatureException");
    assert!(
        got.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("Signature expired: "),
        "{}",
        got.json()
    );
    got.assert_crc();

    let tampered_body = body.replace("o1", "o2");
    let tampered = signed(
        &proxy.url,
        "AKIDORDERS",
        "orders-secret",
        now,
        "GetItem",
        body,
        &tampered_body,
    );
    let got = send(tampered).await.unwrap();
    assert_eq!(got.status, 400);
    assert_eq!(got.error_type(), "InvalidSignatureException");

    // The placeholder signature other tests send (dated 2026-01-01): expired.
    let got = dynamo(&proxy.url, "GetItem", body).await;
    assert_eq!(got.error_type(), "InvalidSignatureException");
    let mut unsigned = signed(
        &proxy.url,
        "AKIDORDERS",
        "orders-secret",
        now,
        "GetItem",
        body,
        body,
    );
    unsigned.headers_mut().remove("authorization");
    let got = send(unsigned).await.unwrap();
    assert_eq!(got.status, 400);
    assert_eq!(got.error_type(), "MissingAuthenticationTokenException");

    // None of it reached DynamoDB.
    assert_eq!(shim.requests().len(), before);
    let metrics = proxy.metrics().await;
    for (reason, count) in [
        ("signature", 2.0),
        ("unknown_key", 1.0),
        ("denied", 2.0),
        ("scope", 2.0),
        ("missing", 1.0),
    ] {
        let sample = format!("dynamo_cache_auth_failures_total{{reason=\"{reason}\"}}");
        assert_eq!(metric_value(&metrics, &sample), count, "{sample}");
    }
}

#[tokio::test]
async fn a_principal_never_reads_another_tables_cached_items() {
    let (_upstream, shim, proxy, _dir) = guarded("isolation").await;
    set_up_tables(&proxy).await;
    let payments = client(&proxy.url, "AKIDPAYMENTS", "payments-secret");
    // Cached (by the write through the proxy), and served to the principal that may read it.
    assert_eq!(
        get(&payments, "payments", "p1").await.unwrap(),
        "payment one"
    );
    let hits = proxy
        .metric("dynamo_cache_cache_requests_total{cache=\"item\",result=\"hit\"}")
        .await;
    assert_eq!(hits, 1.0);
    let upstream_before = shim.requests().len();

    let orders = client(&proxy.url, "AKIDORDERS", "orders-secret");
    let err = get(&orders, "payments", "p1").await.unwrap_err();
    assert!(err.starts_with("AccessDeniedException"), "{err}");
    // A batch that names the table among allowed ones is refused whole.
    let key = |pk: &str| {
        [
            ("pk".to_string(), AttributeValue::S(pk.into())),
            ("sk".to_string(), AttributeValue::N("1".into())),
        ]
        .into()
    };
    let keys = |pk: &str| {
        aws_sdk_dynamodb::types::KeysAndAttributes::builder()
            .keys(key(pk))
            .build()
            .unwrap()
    };
    let err = orders
        .batch_get_item()
        .request_items("orders", keys("o1"))
        .request_items("payments", keys("p1"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("AccessDeniedException"));
    // Nor through PartiQL, which is admin, nor a transaction.
    let err = orders
        .execute_statement()
        .statement("SELECT * FROM \"payments\"")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("AccessDeniedException"));

    // No cached answer was handed out, and nothing went upstream.
    assert_eq!(
        proxy
            .metric("dynamo_cache_cache_requests_total{cache=\"item\",result=\"hit\"}")
            .await,
        hits
    );
    assert_eq!(shim.requests().len(), upstream_before);
    // The reader may read but not write its own table.
    let err = payments
        .put_item()
        .table_name("payments")
        .item("pk", AttributeValue::S("p2".into()))
        .item("sk", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("AccessDeniedException"));
    assert!(err.message().unwrap().contains("write"), "{err:?}");
}

#[tokio::test]
async fn a_reload_swaps_keys_without_dropping_connections() {
    let (_upstream, _shim, proxy, dir) = guarded("reload").await;
    set_up_tables(&proxy).await;
    let body = r#"{"TableName":"orders","Key":{"pk":{"S":"o1"},"sk":{"N":"1"}}}"#;
    // One connection, kept open across the reload.
    let addr = proxy.url.trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let mut call = async |key: &str, secret: &str| {
        let request = signed(
            &proxy.url,
            key,
            secret,
            SystemTime::now(),
            "GetItem",
            body,
            body,
        );
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        (status, json["__type"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(call("AKIDORDERS", "orders-secret").await.0, 200);

    // Rotate orders-service's key; a broken file first, which changes nothing.
    let file = dir.join("principals.toml");
    std::fs::write(&file, "[[principal]]\nname = \"broken\"\n").unwrap();
    assert!(proxy.state.reload().is_err());
    assert_eq!(call("AKIDORDERS", "orders-secret").await.0, 200);

    std::fs::write(dir.join("orders.secret"), "rotated-secret").unwrap();
    std::fs::write(&file, PRINCIPALS.replace("AKIDORDERS", "AKIDORDERS2")).unwrap();
    proxy.state.reload().unwrap();
    let (status, kind) = call("AKIDORDERS", "orders-secret").await;
    assert_eq!(status, 400);
    assert!(kind.ends_with("#UnrecognizedClientException"), "{kind}");
    assert_eq!(call("AKIDORDERS2", "rotated-secret").await.0, 200);
    assert!(
        !connection.is_finished(),
        "the connection survived the reload"
    );
}

#[tokio::test]
async fn without_auth_any_signature_passes_as_before() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream.url).await;
    let anyone = client(&proxy.url, "AKIDWHOEVER", "whatever");
    create_table(&anyone, "open").await;
    put(&anyone, "open", "a", "b").await;
    assert_eq!(get(&anyone, "open", "a").await.unwrap(), "b");
}

async fn admin(url: &str, method: &str, path: &str, token: Option<&str>) -> Raw {
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("{url}{path}"));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    send(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn cache_and_debug_endpoints_need_the_admin_token() {
    let upstream = Upstream::start().await;
    let dir = credentials_dir("admin", PRINCIPALS);
    std::fs::write(dir.join("admin.token"), "s3cret-token\n").unwrap();
    let token_file = dir.join("admin.token");
    let proxy = Proxy::start_with(&upstream.url, |c| {
        c.auth.admin_token_file = Some(token_file);
    })
    .await;
    let url = &proxy.admin_url;
    for (method, path) in [
        ("POST", "/cache/flush"),
        ("GET", "/cache/hot-keys"),
        ("GET", "/debug/config"),
    ] {
        let got = admin(url, method, path, None).await;
        assert_eq!(got.status, 401, "{method} {path}");
        assert_eq!(got.header("www-authenticate"), Some("Bearer"));
        assert_eq!(admin(url, method, path, Some("guess")).await.status, 401);
        assert_eq!(
            admin(url, method, path, Some("s3cret-token")).await.status,
            200
        );
    }
    // Probes, scrapes and the cache summary stay open.
    for path in ["/healthz", "/readyz", "/metrics", "/cache"] {
        assert_eq!(admin(url, "GET", path, None).await.status, 200, "{path}");
    }
    // The token is never shown, even to its holder.
    let config = admin(url, "GET", "/debug/config", Some("s3cret-token")).await;
    assert!(!String::from_utf8_lossy(&config.body).contains("s3cret-token"));

    // A new token takes over on reload.
    std::fs::write(dir.join("admin.token"), "rotated").unwrap();
    proxy.state.reload().unwrap();
    assert_eq!(
        admin(url, "POST", "/cache/flush", Some("s3cret-token"))
            .await
            .status,
        401
    );
    assert_eq!(
        admin(url, "POST", "/cache/flush", Some("rotated"))
            .await
            .status,
        200
    );
}

/// As deployed in a pod: the admin listener on every interface and no token. Callers from
/// other hosts are refused cache changes (see the gate's unit tests); a caller on the proxy's
/// own host (`dynamo-cache admin` in the container) is served.
#[tokio::test]
async fn a_non_loopback_admin_listener_without_a_token_serves_cache_changes_to_its_own_host() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start_with(&upstream.url, |c| {
        c.admin_listen = std::net::SocketAddr::new([0, 0, 0, 0].into(), c.admin_listen.port());
    })
    .await;
    let got = admin(&proxy.admin_url, "POST", "/cache/flush", None).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(
        admin(&proxy.admin_url, "GET", "/metrics", None)
            .await
            .status,
        200
    );
}

/// The binary re-reads its credentials file on SIGHUP, and keeps serving through it.
#[tokio::test]
async fn the_binary_reloads_keys_on_sighup() {
    let upstream = Upstream::start().await;
    let dir = credentials_dir("sighup", PRINCIPALS);
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[auth]\nmode = \"sigv4\"\ncredentials_file = \"principals.toml\"\n",
    )
    .unwrap();
    let served = crate::common::process::Served::start(
        env!("CARGO_BIN_EXE_dynamo-cache"),
        &upstream.url,
        Some(&config),
    );
    let list = |key: &'static str, secret: &'static str| {
        let url = served.url.clone();
        async move {
            let request = signed(
                &url,
                key,
                secret,
                SystemTime::now(),
                "ListTables",
                "{}",
                "{}",
            );
            send(request).await.unwrap()
        }
    };
    assert_eq!(list("AKIDOPS", "ops-secret").await.status, 200);
    std::fs::write(
        dir.join("principals.toml"),
        PRINCIPALS.replace("AKIDOPS", "AKIDOPS2"),
    )
    .unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &served.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    // The reload happens on the proxy's own time: poll until the new key works.
    let mut reloaded = false;
    for _ in 0..200 {
        if list("AKIDOPS2", "ops-secret").await.status == 200 {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(reloaded, "the new key never worked");
    assert_eq!(
        list("AKIDOPS", "ops-secret").await.error_type(),
        "UnrecognizedClientException"
    );
    assert!(served.terminate(), "exit 0 on SIGTERM after a reload");
}
