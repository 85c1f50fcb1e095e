//! Shared test set-up: a real DynamoDB emulator (dynoxide) on a free loopback port, the proxy
//! (the library's `run`) on port 0 in front of it, SDK clients and a raw HTTP client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_dynamodb::config::{BehaviorVersion, Region};
use bytes::Bytes;
use dynamo_cache::{Config, State};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod checker;
pub mod lagging;
pub mod process;
pub mod redis;
pub mod shim;

pub const REGION: &str = "us-east-1";

/// A dynoxide server on loopback.
pub struct Upstream {
    pub url: String,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let db = dynoxide::Database::memory().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            dynoxide::server::serve_with_shutdown(listener, db, shutdown)
                .await
                .unwrap();
        });
        Upstream {
            url: format!("http://{addr}"),
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the emulator; later requests to its port are refused.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// The proxy, served by the library's `run` on port 0.
pub struct Proxy {
    pub url: String,
    pub admin_url: String,
    /// Where its DAX listener is (every test proxy has one).
    pub dax_addr: std::net::SocketAddr,
    pub state: State,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy in front of `upstream_url` with the default configuration.
    pub async fn start(upstream_url: &str) -> Proxy {
        Proxy::start_with(upstream_url, |_| {}).await
    }

    /// A proxy with `adjust` applied to its configuration.
    pub async fn start_with(upstream_url: &str, adjust: impl FnOnce(&mut Config)) -> Proxy {
        Proxy::start_signing_with(upstream_url, test_credentials(), adjust).await
    }

    /// A proxy that signs upstream requests with credentials from `credentials`.
    pub async fn start_signing_with(
        upstream_url: &str,
        credentials: SharedCredentialsProvider,
        adjust: impl FnOnce(&mut Config),
    ) -> Proxy {
        let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dax = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dax_addr = dax.local_addr().unwrap();
        let mut config = Config {
            listen: data.local_addr().unwrap(),
            admin_listen: admin.local_addr().unwrap(),
            dax_listen: Some(dax_addr),
            upstream: Some(upstream_url.to_string()),
            region: Some(REGION.into()),
            ..Config::default()
        };
        adjust(&mut config);
        let state = State::new(config, REGION, credentials).unwrap();
        let scheme = |tls: bool| if tls { "https" } else { "http" };
        let url = format!(
            "{}://{}",
            scheme(state.config.tls.enabled()),
            data.local_addr().unwrap()
        );
        let admin_url = format!(
            "{}://{}",
            scheme(state.config.tls.admin),
            admin.local_addr().unwrap()
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let run_state = state.clone();
        let task = tokio::spawn(async move {
            dynamo_cache::run(run_state, data, admin, Some(dax), async move {
                let _ = stopped.await;
            })
            .await;
        });
        let proxy = Proxy {
            url,
            dax_addr,
            admin_url,
            state,
            stop: Some(stop),
            task: Some(task),
        };
        proxy.wait_healthy().await;
        proxy
    }

    async fn wait_healthy(&self) {
        for _ in 0..500 {
            if let Ok(resp) = http_get(&format!("{}/healthz", self.admin_url)).await
                && resp.status == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("proxy never became healthy");
    }

    /// Signals shutdown and waits for the drain to finish.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// The Prometheus exposition.
    pub async fn metrics(&self) -> String {
        let resp = http_get(&format!("{}/metrics", self.admin_url))
            .await
            .unwrap();
        String::from_utf8(resp.body.to_vec()).unwrap()
    }

    /// The value of one sample (`name{labels}` exactly as exposed), 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        metric_value(&self.metrics().await, sample)
    }

    /// The value of one sample once it reaches `expected`, or its last value after 5 s: for
    /// counters bumped just after the event a client sees (a connection counted after it closed).
    pub async fn metric_reaching(&self, sample: &str, expected: f64) -> f64 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let value = self.metric(sample).await;
            if value >= expected || std::time::Instant::now() >= deadline {
                return value;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// The value of `sample` in a Prometheus text exposition, 0 when absent.
pub fn metric_value(exposition: &str, sample: &str) -> f64 {
    exposition
        .lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().unwrap())
        })
        .unwrap_or(0.0)
}

pub fn test_credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new(
        "AKIDTEST",
        "test-secret",
        None,
        None,
        "tests",
    ))
}

/// An SDK client whose endpoint is `url`, as an application would configure it.
pub fn sdk(url: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(test_credentials())
        .http_client(dynamo_cache::upstream::sdk_http_client())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// An HTTP answer, fully read.
#[derive(Debug, Clone)]
pub struct Raw {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// `__type` of a DynamoDB error body, without its namespace.
    pub fn error_type(&self) -> String {
        let kind = self.json()["__type"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        kind.rsplit('#').next().unwrap().to_string()
    }

    /// How the proxy answered (`x-dynamo-cache`: hit, miss, bypass, error).
    pub fn cache_status(&self) -> &str {
        self.header("x-dynamo-cache").unwrap_or("")
    }

    /// Asserts `x-amz-crc32` is the CRC32 of the exact body received.
    pub fn assert_crc(&self) {
        let crc = self.header("x-amz-crc32").expect("x-amz-crc32 present");
        assert_eq!(
            crc,
            crc32fast::hash(&self.body).to_string(),
            "x-amz-crc32 does not match the body {:?}",
            String::from_utf8_lossy(&self.body)
        );
    }
}

fn raw_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A DynamoDB request as an SDK would send it (the proxy re-signs, so the signature is a
/// well-formed placeholder that the emulator accepts).
pub async fn dynamo(url: &str, op: &str, body: &str) -> Raw {
    dynamo_target(url, &format!("DynamoDB_20120810.{op}"), body).await
}

/// As [`dynamo`], with the whole `X-Amz-Target` given (the Streams API's, say).
pub async fn dynamo_target(url: &str, target: &str, body: &str) -> Raw {
    send(dynamo_request(url, target, body)).await.unwrap()
}

/// A client that keeps its connections open between requests: for benches that time many.
pub type Pooled = Client<HttpConnector, Full<Bytes>>;

pub fn pooled() -> Pooled {
    raw_client()
}

/// As [`dynamo`], on `client`'s connections.
pub async fn dynamo_on(client: &Pooled, url: &str, op: &str, body: &str) -> Result<Raw, String> {
    send_on(
        client,
        dynamo_request(url, &format!("DynamoDB_20120810.{op}"), body),
    )
    .await
}

fn dynamo_request(url: &str, target: &str, body: &str) -> http::Request<Full<Bytes>> {
    http::Request::post(format!("{url}/"))
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", target)
        .header("x-amz-date", "20260101T000000Z")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/dynamodb/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=00",
        )
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .unwrap()
}

pub async fn send(request: http::Request<Full<Bytes>>) -> Result<Raw, String> {
    send_on(&raw_client(), request).await
}

async fn send_on(client: &Pooled, request: http::Request<Full<Bytes>>) -> Result<Raw, String> {
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Raw {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

/// What the next read of `stream` gives once the proxy closes it (`Ok(0)` for a clean close);
/// panics, saying `why`, if it is still open after `secs` seconds.
pub async fn closed_by_proxy(
    stream: &mut tokio::net::TcpStream,
    secs: u64,
    why: &str,
) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 16];
    tokio::time::timeout(Duration::from_secs(secs), stream.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{why}: still open after {secs} s"))
}

pub async fn http_get(url: &str) -> Result<Raw, String> {
    let request = http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(request).await
}

/// An attribute definition, for the tables tests create.
pub fn attr(
    name: &str,
    kind: aws_sdk_dynamodb::types::ScalarAttributeType,
) -> aws_sdk_dynamodb::types::AttributeDefinition {
    aws_sdk_dynamodb::types::AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .unwrap()
}

/// A key schema element, for the tables tests create.
pub fn key_element(
    name: &str,
    kind: aws_sdk_dynamodb::types::KeyType,
) -> aws_sdk_dynamodb::types::KeySchemaElement {
    aws_sdk_dynamodb::types::KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .unwrap()
}

/// A projection of every attribute.
pub fn project_all() -> aws_sdk_dynamodb::types::Projection {
    aws_sdk_dynamodb::types::Projection::builder()
        .projection_type(aws_sdk_dynamodb::types::ProjectionType::All)
        .build()
}

/// The usual table, not yet sent: keys `pk` (S) and `sk` (N), and a global index `by_g` on `g`.
pub fn table_like_orders(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
) -> aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder {
    use aws_sdk_dynamodb::types::*;
    client
        .create_table()
        .table_name(name)
        .attribute_definitions(attr("pk", ScalarAttributeType::S))
        .attribute_definitions(attr("sk", ScalarAttributeType::N))
        .attribute_definitions(attr("g", ScalarAttributeType::S))
        .key_schema(key_element("pk", KeyType::Hash))
        .key_schema(key_element("sk", KeyType::Range))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("by_g")
                .key_schema(key_element("g", KeyType::Hash))
                .projection(project_all())
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
}

/// Creates a table with a string partition key `pk`, a number sort key `sk`, and a GSI `by_g`
/// on `g`, through whichever client is given.
pub async fn create_table(client: &aws_sdk_dynamodb::Client, name: &str) {
    table_like_orders(client, name).send().await.unwrap();
}

/// The usual cache test bench: an emulator with the table `orders` (see [`create_table`]), a
/// recording relay in front of it, and the proxy in front of the relay.
pub struct Relayed {
    pub upstream: Upstream,
    pub relay: shim::Shim,
    pub proxy: Proxy,
}

impl Relayed {
    pub async fn start(adjust: impl FnOnce(&mut Config)) -> Relayed {
        let upstream = Upstream::start().await;
        let relay = shim::Shim::relay(&upstream.url, 0).await;
        let proxy = Proxy::start_with(&relay.url, adjust).await;
        create_table(&sdk(&upstream.url), "orders").await;
        Relayed {
            upstream,
            relay,
            proxy,
        }
    }

    /// A request through the proxy; its answer's CRC is checked.
    pub async fn call(&self, op: &str, body: &str) -> Raw {
        let answer = dynamo(&self.proxy.url, op, body).await;
        answer.assert_crc();
        answer
    }
}
