//! Building the responses clients see: forwarded ones (upstream bytes untouched) and generated
//! ones (cache hits, the proxy's own errors), which carry a fresh request id and a CRC32 of the
//! exact bytes sent, because botocore and the Java, Go, JS and Ruby SDKs check it.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

/// Every response the request path produces; the server wraps the body for hyper.
pub type ProxyResponse = Response<Bytes>;

/// The content type of every DynamoDB JSON 1.0 response.
pub const AMZ_JSON: HeaderValue = HeaderValue::from_static("application/x-amz-json-1.0");
/// Header naming how the proxy answered, for operators and tests.
pub const CACHE_HEADER: HeaderName = HeaderName::from_static("x-dynamo-cache");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");
const CRC32: HeaderName = HeaderName::from_static("x-amz-crc32");

/// How a request was answered. Also the `result` label of the request metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Answered from memory; the upstream was not asked.
    Hit,
    /// Cacheable, not in memory: asked upstream, and the answer may now be cached.
    Miss,
    /// Not cacheable (writes, strongly consistent reads, everything else): forwarded.
    Bypass,
    /// The proxy could not produce an upstream answer (its own error response).
    Error,
    /// The upstream failed and the answer came from an entry past its TTL, within the stale
    /// grace (`serve_stale_on_error`).
    Stale,
}

impl CacheStatus {
    /// Label and header value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
            CacheStatus::Error => "error",
            CacheStatus::Stale => "stale",
        }
    }

    fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }
}

/// Changes the `x-dynamo-cache` value of a response already built.
pub fn mark(response: &mut ProxyResponse, cache: CacheStatus) {
    response
        .headers_mut()
        .insert(CACHE_HEADER, cache.header_value());
}

/// A response the proxy writes itself: DynamoDB's headers, a new request id, a CRC of `body`.
pub fn generated(status: StatusCode, body: Bytes, cache: CacheStatus) -> ProxyResponse {
    let crc = crc32fast::hash(&body);
    generated_with_crc(status, body, crc, cache)
}

/// As [`generated`], with the CRC32 of `body` already known (cached answers keep theirs).
pub fn generated_with_crc(
    status: StatusCode,
    body: Bytes,
    crc: u32,
    cache: CacheStatus,
) -> ProxyResponse {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.reserve(6);
    headers.insert(CONTENT_TYPE, AMZ_JSON);
    headers.insert(REQUEST_ID, new_request_id());
    headers.insert(CRC32, HeaderValue::from(crc));
    headers.insert(CACHE_HEADER, cache.header_value());
    resp
}

/// A response relayed from the upstream: its status, headers and body exactly as received,
/// less the hop-by-hop headers that belong to the upstream connection.
pub fn relayed(
    status: StatusCode,
    upstream_headers: &HeaderMap,
    body: Bytes,
    cache: CacheStatus,
) -> ProxyResponse {
    relayed_owned(status, upstream_headers.clone(), body, cache)
}

/// As [`relayed`], taking the upstream's headers instead of copying them.
pub fn relayed_owned(
    status: StatusCode,
    mut headers: HeaderMap,
    body: Bytes,
    cache: CacheStatus,
) -> ProxyResponse {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.insert(CACHE_HEADER, cache.header_value());
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// A relayed response whose body the proxy had to change (an answer trimmed to what the
/// caller asked for): the upstream's headers, the new body, and a CRC of the new body.
pub fn relayed_with_body(
    status: StatusCode,
    upstream_headers: &HeaderMap,
    body: Bytes,
    cache: CacheStatus,
) -> ProxyResponse {
    let crc = HeaderValue::from(crc32fast::hash(&body));
    let mut resp = relayed(status, upstream_headers, body, cache);
    resp.headers_mut().insert(CRC32, crc);
    resp
}

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1), plus the
/// length, which hyper sets from the body it actually sends.
const HOP_BY_HOP: [HeaderName; 8] = [
    http::header::CONNECTION,
    http::header::TRANSFER_ENCODING,
    http::header::CONTENT_LENGTH,
    http::header::TE,
    http::header::TRAILER,
    http::header::UPGRADE,
    http::header::PROXY_AUTHENTICATE,
    HeaderName::from_static("keep-alive"),
];

/// A request id in DynamoDB's shape: 52 characters of upper-case letters and digits.
/// Five random words give 320 bits; each character takes five of them (from a 32-symbol subset
/// of DynamoDB's alphabet), which is cheaper than drawing 52 bounded random numbers.
/// Gives a response a request id of its own (a caller that shared another's upstream read).
pub fn renew_request_id(response: &mut ProxyResponse) {
    response.headers_mut().insert(REQUEST_ID, new_request_id());
}

fn new_request_id() -> HeaderValue {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let words: [u64; 5] = std::array::from_fn(|_| fastrand::u64(..));
    let mut id = [0u8; 52];
    for (i, byte) in id.iter_mut().enumerate() {
        let bits = words[i / 12] >> ((i % 12) * 5);
        *byte = ALPHABET[(bits & 31) as usize];
    }
    HeaderValue::from_bytes(&id).expect("ASCII alphanumerics are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_responses_carry_crc_of_the_exact_body() {
        let body = Bytes::from_static(br#"{"Item":{"pk":{"S":"a"}}}"#);
        let resp = generated(StatusCode::OK, body.clone(), CacheStatus::Hit);
        assert_eq!(
            resp.headers()["x-amz-crc32"],
            crc32fast::hash(&body).to_string()
        );
        assert_eq!(resp.headers()["x-dynamo-cache"], "hit");
        assert_eq!(resp.headers()["content-type"], "application/x-amz-json-1.0");
        let id = resp.headers()["x-amzn-requestid"].to_str().unwrap();
        assert_eq!(id.len(), 52);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        );
    }

    #[test]
    fn relayed_responses_keep_upstream_headers_but_not_hop_by_hop() {
        let mut upstream = HeaderMap::new();
        upstream.insert("x-amzn-requestid", HeaderValue::from_static("ABC"));
        upstream.insert("x-amz-crc32", HeaderValue::from_static("123"));
        upstream.insert("connection", HeaderValue::from_static("close"));
        upstream.insert("content-length", HeaderValue::from_static("999"));
        let resp = relayed(
            StatusCode::BAD_REQUEST,
            &upstream,
            Bytes::from_static(b"{}"),
            CacheStatus::Bypass,
        );
        let owned = relayed_owned(
            StatusCode::BAD_REQUEST,
            upstream,
            Bytes::from_static(b"{}"),
            CacheStatus::Bypass,
        );
        for resp in [resp, owned] {
            assert_eq!(resp.status(), 400);
            assert_eq!(resp.headers()["x-amzn-requestid"], "ABC");
            assert_eq!(resp.headers()["x-amz-crc32"], "123");
            assert!(resp.headers().get("connection").is_none());
            assert!(resp.headers().get("content-length").is_none());
            assert_eq!(resp.headers()["x-dynamo-cache"], "bypass");
            assert_eq!(resp.headers().len(), 3);
        }
    }
}
