//! https on the data listener: an SDK client trusting a private CA talks to the proxy, one
//! that does not is refused, and a new certificate is served after a reload.

use std::path::{Path, PathBuf};

use crate::common::*;
use aws_sdk_dynamodb::config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_http_client::tls;
use dynamo_cache::Config;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A CA, and a certificate it signed for `localhost` and 127.0.0.1, written to `dir`.
/// Returns the CA certificate in PEM.
fn issue(dir: &Path, name: &str) -> String {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("dynamo-cache test CA {name}"),
    );
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    // A reissued certificate ("two") lives a year longer, so a reload shows in the metric.
    params.not_after = rcgen::date_time_ymd(if name == "two" { 2032 } else { 2031 }, 1, 1);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    ca_cert.pem()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dynamo-cache-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An emulator, and a proxy serving https in front of it with a certificate from a new CA
/// (`adjust` sets anything else); returns both and the CA in PEM. The certificate files stay in
/// the returned directory, for a reload.
async fn https_proxy(
    name: &str,
    adjust: impl FnOnce(&mut Config),
) -> (Upstream, Proxy, String, PathBuf) {
    let upstream = Upstream::start().await;
    let dir = scratch(name);
    let ca = issue(&dir, name);
    let proxy = Proxy::start_with(&upstream.url, |c| {
        c.tls.cert_file = Some(dir.join("cert.pem"));
        c.tls.key_file = Some(dir.join("key.pem"));
        adjust(c);
    })
    .await;
    (upstream, proxy, ca, dir)
}

/// An SDK client that trusts only `ca_pem`.
fn trusting(url: &str, ca_pem: &str) -> aws_sdk_dynamodb::Client {
    let trust = tls::TrustStore::empty().with_pem_certificate(ca_pem.as_bytes().to_vec());
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(
            tls::TlsContext::builder()
                .with_trust_store(trust)
                .build()
                .unwrap(),
        )
        .build_https();
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(test_credentials())
        .http_client(http)
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

async fn read(client: &aws_sdk_dynamodb::Client) -> Result<String, String> {
    client
        .get_item()
        .table_name("secure")
        .key("pk", AttributeValue::S("a".into()))
        .key("sk", AttributeValue::N("1".into()))
        .send()
        .await
        .map(|out| out.item.unwrap()["v"].as_s().unwrap().clone())
        .map_err(|e| format!("{:?}", aws_sdk_dynamodb::error::DisplayErrorContext(e)))
}

#[tokio::test]
async fn an_sdk_trusting_a_private_ca_talks_https_and_a_reload_serves_the_new_certificate() {
    let (_upstream, proxy, first_ca, dir) = https_proxy("sdk", |_| {}).await;
    assert!(proxy.url.starts_with("https://127.0.0.1:"), "{}", proxy.url);

    let client = trusting(&proxy.url, &first_ca);
    create_table(&client, "secure").await;
    client
        .put_item()
        .table_name("secure")
        .item("pk", AttributeValue::S("a".into()))
        .item("sk", AttributeValue::N("1".into()))
        .item("v", AttributeValue::S("over tls".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(read(&client).await.unwrap(), "over tls");
    assert_eq!(
        proxy
            .metric("dynamo_cache_cache_requests_total{cache=\"item\",result=\"hit\"}")
            .await,
        1.0
    );
    // 2031-01-01T00:00:00Z: when the served certificate expires.
    let expiry = "dynamo_cache_tls_certificate_expiry_timestamp_seconds";
    assert_eq!(proxy.metric(expiry).await, 1_924_992_000.0);

    // A client that does not trust the CA, and one speaking plain http, get nowhere.
    let stranger = trusting(&proxy.url, &issue(&scratch("stranger"), "stranger"));
    let err = read(&stranger).await.unwrap_err();
    assert!(
        err.contains("certificate") || err.contains("Certificate"),
        "{err}"
    );
    let plain = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        send_plain(&proxy.url.replace("https://", "http://")).await
    })
    .await
    .expect("a plain http request is answered or closed, never left hanging");
    assert!(plain.is_err(), "plain http must not be served: {plain:?}");

    // A new certificate from another CA: new clients of the new CA connect; the old CA no
    // longer vouches for what is served.
    let second_ca = issue(&dir, "two");
    proxy.state.reload().unwrap();
    assert_eq!(proxy.metric(expiry).await, 1_956_528_000.0);
    assert_eq!(
        read(&trusting(&proxy.url, &second_ca)).await.unwrap(),
        "over tls"
    );
    let err = read(&trusting(&proxy.url, &first_ca)).await.unwrap_err();
    assert!(
        err.contains("certificate") || err.contains("Certificate"),
        "{err}"
    );

    // A broken pair is refused and the served one stays.
    std::fs::write(dir.join("key.pem"), "not a key").unwrap();
    assert!(proxy.state.reload().is_err());
    assert_eq!(
        proxy.metric("dynamo_cache_reload_failures_total").await,
        1.0
    );
    assert_eq!(
        read(&trusting(&proxy.url, &second_ca)).await.unwrap(),
        "over tls"
    );
}

async fn send_plain(url: &str) -> Result<Raw, String> {
    let request = http::Request::post(format!("{url}/"))
        .header("x-amz-target", "DynamoDB_20120810.ListTables")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    send(request).await
}

#[tokio::test]
async fn a_stalled_handshake_is_cut_off_at_the_header_timeout() {
    let (_upstream, proxy, ca, _) = https_proxy("stall", |c| {
        c.limits.header_read_timeout_ms = 200;
    })
    .await;
    let addr = proxy.url.trim_start_matches("https://").to_string();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Meanwhile a real client is served.
    let client = trusting(&proxy.url, &ca);
    client.list_tables().send().await.unwrap();
    let closed = closed_by_proxy(&mut stalled, 10, "closed well within 10 s").await;
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    // Counted once the connection's task ends, which may be just after the client saw it close.
    assert_eq!(
        proxy
            .metric_reaching("dynamo_cache_slow_client_disconnects_total", 1.0)
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_tls_client_over_the_connection_limit_is_told_why_over_tls() {
    let (_upstream, proxy, ca, _) = https_proxy("limit", |c| {
        c.limits.max_connections = 1;
    })
    .await;
    // The first client's pooled keep-alive connection holds the only slot.
    let holder = trusting(&proxy.url, &ca);
    holder.list_tables().send().await.unwrap();

    // A second client (its own pool) gets DynamoDB's throttling-style error, readable over TLS,
    // not bytes its TLS layer cannot parse.
    let err = trusting(&proxy.url, &ca)
        .list_tables()
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("{:?}", aws_sdk_dynamodb::error::DisplayErrorContext(e)))
        .unwrap_err();
    assert!(err.contains("ServiceUnavailableException"), "{err}");
    assert!(err.contains("connection limit"), "{err}");
    assert_eq!(
        proxy
            .metric("dynamo_cache_rejected_connections_total")
            .await,
        1.0
    );
    // The holder is still served on its connection.
    holder.list_tables().send().await.unwrap();
}

#[tokio::test]
async fn a_flood_over_the_limit_cannot_hold_unbounded_handshakes() {
    let (_upstream, proxy, ca, _) = https_proxy("flood", |c| {
        c.limits.max_connections = 1;
        c.limits.header_read_timeout_ms = 120_000;
    })
    .await;
    let holder = trusting(&proxy.url, &ca);
    holder.list_tables().send().await.unwrap();

    // Connections over the limit that never start their handshake: each refusal waits for one,
    // up to the (long) header timeout, until 64 are waiting.
    let addr = proxy.url.trim_start_matches("https://").to_string();
    let mut stalled = Vec::new();
    for _ in 0..64 {
        stalled.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // The next is closed at once instead of getting a 65th wait.
    let mut next = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let closed = closed_by_proxy(&mut next, 30, "closed, not left waiting for a handshake").await;
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    assert_eq!(
        proxy
            .metric("dynamo_cache_rejected_connections_total")
            .await,
        65.0
    );
    holder.list_tables().send().await.unwrap();
}

#[tokio::test]
async fn the_dax_listener_serves_daxs_with_the_same_certificate() {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (_upstream, proxy, ca, _dir) = https_proxy("daxs", |_| {}).await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(proxy.dax_addr)
        .await
        .unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the certificate the data listener serves");
    // The preamble, then `endpoints`.
    tls.write_all(b"\x67J7yne5G\x00\xf6\xa0\x00\x01\x1a\x1b\x2b\xcf\x02")
        .await
        .unwrap();
    let mut first = [0u8; 1];
    tls.read_exact(&mut first).await.unwrap();
    assert_eq!(first, [0x80]);

    // Plain TCP gets nothing: the listener speaks TLS only.
    let mut plain = tokio::net::TcpStream::connect(proxy.dax_addr)
        .await
        .unwrap();
    plain
        .write_all(b"\x67J7yne5G\x00\xf6\xa0\x00\x01\x1a\x1b\x2b\xcf\x02")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        plain.read_to_end(&mut answer),
    )
    .await;
    assert!(!answer.starts_with(&[0x80]));
}
