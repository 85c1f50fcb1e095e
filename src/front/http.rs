//! The DynamoDB HTTP JSON front-end: checks that a request is DynamoDB's, classifies it by
//! `X-Amz-Target`, reads its body within bounds, verifies its SigV4 signature, and hands it to
//! the request path ([`crate::proxy`]). The answer goes back as the HTTP response it is.

use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::error::ProxyError;
use crate::proxy::{self, CacheStatus, Context, Inbound, ProxyResponse};
use crate::state::State;
use crate::wire::operation::{Operation, Target};

const TARGET: &str = "x-amz-target";

/// Answers one HTTP request.
pub async fn handle(state: &State, request: Request<Incoming>) -> ProxyResponse {
    let started = Instant::now();
    match inbound(state, request).await {
        Ok(Some(inbound)) => {
            let ctx = Context::new(inbound.op, started);
            proxy::handle(state, &ctx, inbound).await
        }
        // The SDKs' health check.
        Ok(None) => {
            let ctx = Context::new(Operation::Other, started);
            proxy::respond(
                state,
                &ctx,
                None,
                Ok((health_response(), CacheStatus::Bypass)),
            )
        }
        Err((op, err)) => {
            let ctx = Context::new(op, started);
            proxy::respond(state, &ctx, None, Err(err))
        }
    }
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
    let op = target
        .to_str()
        .ok()
        .and_then(Target::parse)
        .ok_or(ProxyError::UnknownOperation)
        .map_err(unclassified)?
        .op;
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
        target,
        body,
        caller,
    }))
}

fn health_response() -> ProxyResponse {
    let mut resp = http::Response::new(Bytes::from_static(b"healthy: dynamo-cache"));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    resp
}
