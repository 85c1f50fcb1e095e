//! The upstream DynamoDB: kept-alive HTTP/1.1 connections (rustls for https), every request
//! signed with SigV4 for service `dynamodb` ([`sign`]: the signing key is derived once a day),
//! bounded by a timeout.
//!
//! Each thread keeps its own idle connections ([`conn`]), and a request drives the connection
//! it uses from its own task. A connection is registered with the runtime of the thread that
//! opened it, so connections shared by the per-core workers would have one worker's request
//! answered through another worker's thread: two cross-thread wake-ups on every forwarded
//! request. With connections kept per thread, a worker's requests stay on its thread.
//!
//! A client signs the proxy's `Host`, so its signature can never be forwarded: the proxy signs
//! with its own credentials and the upstream's host. Bodies go out byte for byte.

mod conn;
pub(crate) mod credentials;
pub mod schema;
mod sdk_client;
mod sign;

pub use sdk_client::sdk_http_client;

/// The upstream signer, for `benches/hot_path.rs`.
#[doc(hidden)]
pub use sign::{Signed, Signer};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::ProxyError;
use crate::upstream::credentials::CredentialCache;
use crate::wire::answer::AMZ_JSON;

/// The largest response the proxy will buffer. DynamoDB's own are far smaller (16 MiB for a
/// BatchGetItem at most); this only stops a misbehaving upstream from exhausting memory.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
const TARGET: http::HeaderName = http::HeaderName::from_static("x-amz-target");
const X_AMZ_DATE: http::HeaderName = http::HeaderName::from_static("x-amz-date");
const X_AMZ_SECURITY_TOKEN: http::HeaderName =
    http::HeaderName::from_static("x-amz-security-token");

/// An upstream answer, fully read.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Idle pooled connections, to DynamoDB or the SDK's endpoints, are closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// `tcp` with TLS for `https://` URLs: rustls with ring and the web PKI roots, HTTP/1.1. The
/// data path and the SDK clients connect alike.
fn https_connector(tcp: HttpConnector) -> HttpsConnector<HttpConnector> {
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .expect("ring's provider supports the default TLS versions")
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp)
}

/// A client pooling its connections through `connector`.
fn pooled<B>(connector: HttpsConnector<HttpConnector>) -> Client<HttpsConnector<HttpConnector>, B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .build(connector)
}

/// Tells apart the [`Upstream`]s of one process in the per-thread lists of idle connections.
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// The signed, kept-alive connections to DynamoDB.
pub struct Upstream {
    /// Identifies this upstream's idle connections in each thread's list.
    id: usize,
    /// Lives as long as this upstream: idle connections of upstreams that are gone are dropped.
    alive: Arc<()>,
    /// Connects (and does TLS) for every thread; cloning shares its TLS configuration.
    connector: HttpsConnector<HttpConnector>,
    /// Where connections go (`scheme://authority/`).
    uri: Uri,
    /// What the request line names: the upstream's path (origin form, as a client that is not
    /// talking to a forward proxy sends it).
    path: Uri,
    /// The same, as the string the signer canonicalises.
    url: String,
    /// `Host` as signed and sent.
    host: HeaderValue,
    /// Signs for the upstream's host, path and region.
    signer: Signer,
    /// The proxy's own identity.
    credentials: Arc<CredentialCache>,
    /// Bound on one exchange, send to last byte.
    timeout: Duration,
    /// Upstream requests in flight at once, and how long one may wait for a slot.
    slots: tokio::sync::Semaphore,
    max_in_flight: usize,
    queue_timeout: Duration,
}

/// How much the proxy asks of the upstream at once.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamLimits {
    /// Bound on one exchange, send to last byte.
    pub timeout: Duration,
    /// Requests in flight at once.
    pub max_in_flight: usize,
    /// How long a request may wait for a slot.
    pub queue_timeout: Duration,
}

impl Upstream {
    /// A client for `url` (`http://` or `https://`), signing for `region`.
    pub fn new(
        url: &str,
        region: &str,
        credentials: Arc<CredentialCache>,
        limits: UpstreamLimits,
    ) -> Result<Upstream, String> {
        let uri: Uri = format!("{}/", url.trim_end_matches('/'))
            .parse()
            .map_err(|e| format!("upstream {url:?} is not a URL: {e}"))?;
        let authority = uri
            .authority()
            .ok_or_else(|| format!("upstream {url:?} has no host"))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| format!("upstream host {authority}: {e}"))?;
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        let tls = https_connector(tcp);
        Ok(Upstream {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            alive: Arc::new(()),
            connector: tls,
            url: uri.to_string(),
            signer: Signer::new(authority.as_str(), uri.path(), region).ok_or_else(|| {
                format!("upstream {url:?}: its path may hold only letters, digits, '-._~' and '/'")
            })?,
            path: Uri::try_from(uri.path()).expect("a URL's path is a valid origin-form URI"),
            uri,
            host,
            credentials,
            timeout: limits.timeout,
            slots: tokio::sync::Semaphore::new(limits.max_in_flight),
            max_in_flight: limits.max_in_flight,
            queue_timeout: limits.queue_timeout,
        })
    }

    /// Sends `request` on one of this thread's idle connections to the upstream, or a new one,
    /// and reads the whole answer. A connection that answered in full is kept for the next.
    async fn send(&self, request: Request<Full<Bytes>>) -> Result<UpstreamResponse, ProxyError> {
        let mut conn = match conn::take(self.id) {
            Some(conn) => conn,
            None => conn::Conn::open(&self.connector, &self.uri).await?,
        };
        let mut exchange = conn.exchange(request, MAX_RESPONSE_BYTES).await;
        if let conn::Exchange::Unsent(request) = exchange {
            // Closed under it before a byte was written: nothing reached the upstream.
            conn = conn::Conn::open(&self.connector, &self.uri).await?;
            exchange = conn.exchange(request, MAX_RESPONSE_BYTES).await;
        }
        match exchange {
            conn::Exchange::Answered(parts, body) => {
                conn::put_back(self.id, &self.alive, conn, self.max_in_flight);
                Ok(UpstreamResponse {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                })
            }
            conn::Exchange::Unsent(_) => Err(ProxyError::UpstreamUnavailable(
                "the upstream closed a new connection before it took a request".into(),
            )),
            conn::Exchange::Failed(err) => Err(err),
        }
    }

    /// The upstream URL, for logs and the startup line.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one DynamoDB request (`target` is the `X-Amz-Target` value) and reads the answer.
    pub async fn call(
        &self,
        target: &HeaderValue,
        body: Bytes,
    ) -> Result<UpstreamResponse, ProxyError> {
        // Fail fast rather than queue without bound when the upstream is slow or down.
        let _slot = match tokio::time::timeout(self.queue_timeout, self.slots.acquire()).await {
            Ok(slot) => slot.expect("the semaphore is never closed"),
            Err(_) => {
                return Err(ProxyError::UpstreamSaturated {
                    limit: self.max_in_flight,
                    waited_ms: self.queue_timeout.as_millis() as u64,
                });
            }
        };
        let request = self.signed_request(target, body).await?;
        let started = Instant::now();
        let exchange = async {
            let answer = self.send(request).await?;
            verify_crc(&answer.headers, &answer.body)?;
            Ok(answer)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(elapsed_ms = %started.elapsed().as_millis(), "upstream timed out");
                Err(ProxyError::UpstreamTimeout(self.timeout.as_millis() as u64))
            }
        }
    }

    /// Whether the upstream answers HTTP at all (`GET /`, the SDKs' health check; unsigned).
    pub async fn is_reachable(&self, within: Duration) -> bool {
        let request = Request::builder()
            .method(Method::GET)
            .uri(self.path.clone())
            .header(HOST, self.host.clone())
            .body(Full::new(Bytes::new()))
            .expect("static request parts are valid");
        matches!(
            tokio::time::timeout(within, self.send(request)).await,
            Ok(Ok(_))
        )
    }

    /// Whether the proxy's credentials are loaded and unexpired.
    pub fn has_credentials(&self) -> bool {
        self.credentials.is_loaded()
    }

    /// Loads (or refreshes) the proxy's credentials now.
    pub async fn load_credentials(&self) -> Result<(), String> {
        self.credentials.get().await.map(|_| ())
    }

    async fn signed_request(
        &self,
        target: &HeaderValue,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, ProxyError> {
        let creds = self
            .credentials
            .get()
            .await
            .map_err(ProxyError::Credentials)?;
        let target_str = target.to_str().map_err(|_| ProxyError::UnknownOperation)?;
        let signed = self
            .signer
            .sign(&creds, target_str, &body, SystemTime::now());
        let value = |text: String| {
            HeaderValue::try_from(text)
                .map_err(|e| ProxyError::Credentials(format!("signing: {e}")))
        };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.path.clone())
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, AMZ_JSON)
            .header(TARGET, target.clone())
            .header(X_AMZ_DATE, value(signed.amz_date)?)
            .header(AUTHORIZATION, value(signed.authorization)?);
        if let Some(token) = signed.security_token {
            request = request.header(X_AMZ_SECURITY_TOKEN, value(token)?);
        }
        Ok(request.body(Full::new(body)).expect("validated parts"))
    }
}

/// DynamoDB sends `x-amz-crc32` of the body it meant; a body that does not match was damaged
/// on the way, and is never cached or relayed.
fn verify_crc(headers: &HeaderMap, body: &[u8]) -> Result<(), ProxyError> {
    let Some(sent) = headers.get("x-amz-crc32") else {
        return Ok(());
    };
    let sent = sent.to_str().ok().and_then(|s| s.parse::<u32>().ok());
    match sent {
        Some(sent) if sent == crc32fast::hash(body) => Ok(()),
        _ => Err(ProxyError::UpstreamGarbled(format!(
            "x-amz-crc32 {:?} does not match the {}-byte body",
            headers["x-amz-crc32"],
            body.len()
        ))),
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    crate::upstream::credentials::DisplayChain(err).to_string()
}
