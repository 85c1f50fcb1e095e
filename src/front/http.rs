//! The DynamoDB HTTP JSON front-end: checks that a request is DynamoDB's, classifies it by
//! `X-Amz-Target`, reads its body within bounds, verifies its SigV4 signature, and hands it to
//! the request path ([`crate::proxy`]). The [`Answer`] goes back as DynamoDB's HTTP response:
//! an upstream answer with DynamoDB's own headers, a generated one with a fresh request id and
//! a CRC32 of the exact bytes sent, because botocore and the Java, Go, JS and Ruby SDKs check
//! it.

use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::error::ProxyError;
use crate::proxy::{self, Context, Inbound};
use crate::state::State;
use crate::wire::answer::{AMZ_JSON, Answer, CacheStatus, Origin};
use crate::wire::operation::{Operation, Target};

const TARGET: &str = "x-amz-target";
/// Header naming how the proxy answered, for operators and tests.
pub(crate) const CACHE_HEADER: HeaderName = HeaderName::from_static("x-dynamo-cache");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");
const CRC32: HeaderName = HeaderName::from_static("x-amz-crc32");

/// Answers one HTTP request.
pub(crate) async fn handle(state: &State, request: Request<Incoming>) -> Response<Bytes> {
    let started = Instant::now();
    match inbound(state, request).await {
        Ok(Some(inbound)) => {
            let ctx = Context::new(inbound.op, started);
            render(proxy::handle(state, &ctx, inbound).await)
        }
        // The SDKs' health check: counted as a request, answered in plain text.
        Ok(None) => {
            let ctx = Context::new(Operation::Other, started);
            let body = Bytes::from_static(b"healthy: dynamo-cache");
            let answer = Answer::generated(StatusCode::OK, body, CacheStatus::Bypass);
            let mut response = render(proxy::respond(state, &ctx, None, Ok(answer)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            response
        }
        Err((op, err)) => {
            let ctx = Context::new(op, started);
            render(proxy::respond(state, &ctx, None, Err(err)))
        }
    }
}

/// The answer as DynamoDB's HTTP response.
pub(crate) fn render(answer: Answer) -> Response<Bytes> {
    let Answer {
        status,
        body,
        cache,
        origin,
        crc,
        shared,
    } = answer;
    let headers = match origin {
        Origin::Generated => {
            let mut headers = HeaderMap::with_capacity(6);
            headers.insert(CONTENT_TYPE, AMZ_JSON);
            headers.insert(REQUEST_ID, new_request_id());
            let crc = crc.unwrap_or_else(|| crc32fast::hash(&body));
            headers.insert(CRC32, HeaderValue::from(crc));
            headers
        }
        Origin::Upstream(mut headers) => {
            for name in HOP_BY_HOP {
                headers.remove(name);
            }
            if let Some(crc) = crc {
                headers.insert(CRC32, HeaderValue::from(crc));
            }
            if shared {
                headers.insert(REQUEST_ID, new_request_id());
            }
            headers
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
        .headers_mut()
        .insert(CACHE_HEADER, HeaderValue::from_static(cache.as_str()));
    response
}

/// What a client past the connection limit is told.
pub(crate) fn refusal(limit: usize) -> Response<Bytes> {
    render(ProxyError::TooManyConnections(limit).to_answer())
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

/// The request as the request path takes it; `None` for the health check.
async fn inbound(
    state: &State,
    request: Request<Incoming>,
) -> Result<Option<Inbound>, (Operation, ProxyError)> {
    let unclassified = |err| (Operation::Other, err);
    let (parts, body) = request.into_parts();
    if parts.uri.path() != "/" {
        return Err(unclassified(ProxyError::NotDynamoDb(
            parts.method,
            parts.uri.path().to_string(),
        )));
    }
    match parts.method {
        Method::POST => {}
        Method::GET => return Ok(None),
        method => return Err(unclassified(ProxyError::NotDynamoDb(method, "/".into()))),
    }

    // Classify.
    let target = parts
        .headers
        .get(TARGET)
        .ok_or(ProxyError::UnknownOperation)
        .map_err(unclassified)?
        .clone();
    let Target { api, op } = target
        .to_str()
        .ok()
        .and_then(Target::parse)
        .ok_or(ProxyError::UnknownOperation)
        .map_err(unclassified)?;
    let fail = |err| (op, err);

    // Read the body, bounded.
    let limit = state.config.limits.max_body_bytes;
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(fail(ProxyError::BodyTooLarge { limit }));
    }
    let body: Bytes = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|_| fail(ProxyError::BodyTooLarge { limit }))?
        .to_bytes();

    // Who is calling: the signature, over the bytes as received.
    let caller = match &state.gate.verifier {
        Some(verifier) => {
            let verified = verifier.verify(
                &parts.method,
                &parts.uri,
                &parts.headers,
                &body,
                std::time::SystemTime::now(),
            );
            match verified {
                Ok(principal) => {
                    tracing::trace!(principal = %principal.name, "authenticated");
                    Some(principal)
                }
                Err(err) => {
                    state
                        .metrics
                        .auth_failures
                        .with_label_values(&[err.reason()])
                        .inc();
                    return Err(fail(ProxyError::Auth(err)));
                }
            }
        }
        None => None,
    };
    Ok(Some(Inbound {
        op,
        api,
        target,
        body,
        caller,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_answers_carry_a_request_id_and_the_crc_of_the_exact_body() {
        let body = Bytes::from_static(br#"{"Item":{"pk":{"S":"a"}}}"#);
        let resp = render(Answer::generated(
            StatusCode::OK,
            body.clone(),
            CacheStatus::Hit,
        ));
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
        // A known CRC is used as given (cached answers keep theirs).
        let resp = render(Answer::generated_with_crc(
            StatusCode::OK,
            body,
            7,
            CacheStatus::Stale,
        ));
        assert_eq!(resp.headers()["x-amz-crc32"], "7");
        assert_eq!(resp.headers()["x-dynamo-cache"], "stale");
    }

    #[test]
    fn upstream_answers_keep_dynamodbs_headers_but_not_hop_by_hop() {
        let mut upstream = HeaderMap::new();
        upstream.insert("x-amzn-requestid", HeaderValue::from_static("ABC"));
        upstream.insert("x-amz-crc32", HeaderValue::from_static("123"));
        upstream.insert("connection", HeaderValue::from_static("close"));
        upstream.insert("content-length", HeaderValue::from_static("999"));
        let body = Bytes::from_static(b"{}");
        let resp = render(Answer::upstream(
            StatusCode::BAD_REQUEST,
            upstream.clone(),
            body.clone(),
            CacheStatus::Bypass,
        ));
        assert_eq!(resp.status(), 400);
        assert_eq!(resp.headers()["x-amzn-requestid"], "ABC");
        assert_eq!(resp.headers()["x-amz-crc32"], "123");
        assert!(resp.headers().get("connection").is_none());
        assert!(resp.headers().get("content-length").is_none());
        assert_eq!(resp.headers()["x-dynamo-cache"], "bypass");
        assert_eq!(resp.headers().len(), 3);

        // A changed body gets its own CRC; a shared answer its own request id.
        let mut answer =
            Answer::upstream_with_body(StatusCode::OK, upstream, body.clone(), CacheStatus::Miss);
        answer.shared = true;
        let resp = render(answer);
        assert_eq!(
            resp.headers()["x-amz-crc32"],
            crc32fast::hash(&body).to_string()
        );
        assert_ne!(resp.headers()["x-amzn-requestid"], "ABC");
    }

    #[test]
    fn the_proxys_own_errors_are_rendered_with_a_correct_crc() {
        let resp = render(ProxyError::Serialization.to_answer());
        assert_eq!(resp.status(), 400);
        assert_eq!(
            resp.headers()["x-amz-crc32"],
            crc32fast::hash(resp.body()).to_string()
        );
        assert_eq!(resp.headers()["x-dynamo-cache"], "error");
    }
}
