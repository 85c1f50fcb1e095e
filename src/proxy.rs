//! The request path, top to bottom: check the request is DynamoDB's -> classify the operation ->
//! read the body -> go upstream -> respond, counting what happened.

use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::error::ProxyError;
use crate::items;
use crate::operation::{Operation, Target};
use crate::queries;
use crate::response::{CacheStatus, ProxyResponse};
use crate::state::State;

const TARGET: &str = "x-amz-target";

tokio::task_local! {
    /// The upstream exchange of the request being handled (status, microseconds), for its
    /// one log line; set deep in the path by [`forward`].
    static UPSTREAM: std::cell::Cell<Option<(u16, u64)>>;
}

/// Answers one client request. Never fails: the proxy's own errors become DynamoDB-shaped
/// error responses.
pub async fn handle(state: &State, request: Request<Incoming>) -> ProxyResponse {
    let started = Instant::now();
    let metrics = &state.metrics;
    metrics.inflight.inc();
    let mut table = None;
    let served = UPSTREAM.scope(std::cell::Cell::new(None), async {
        let answer = serve(state, request, &mut table).await;
        (answer, UPSTREAM.with(|u| u.get()))
    });
    let (answer, upstream) = served.await;
    let (op, response, result) = match answer {
        Ok(answer) => {
            // A 5xx is an error whoever raised it; 4xx answers are the caller's to handle.
            let result = if answer.response.status().is_server_error() {
                CacheStatus::Error
            } else {
                answer.cache
            };
            (answer.op, answer.response, result)
        }
        Err((op, err)) => {
            if err.is_upstream() {
                tracing::warn!(op = op.name(), error = %err, "request failed");
            } else {
                tracing::debug!(op = op.name(), error = %err, "request refused");
            }
            (op, err.to_response(), CacheStatus::Error)
        }
    };
    let elapsed = started.elapsed();
    metrics.record_request(op, result, elapsed.as_secs_f64());
    metrics.inflight.dec();
    let (upstream_status, upstream_micros) = upstream.unwrap_or((0, 0));
    tracing::debug!(
        op = op.name(),
        table = table.as_deref().unwrap_or(""),
        cache = result.as_str(),
        status = response.status().as_u16(),
        micros = elapsed.as_micros() as u64,
        upstream_status,
        upstream_micros,
        "request"
    );
    response
}

/// What the path produced for a request it could classify.
struct Answer {
    op: Operation,
    response: ProxyResponse,
    cache: CacheStatus,
}

/// `table` is filled in for the debug log line, and only when debug logging is on.
async fn serve(
    state: &State,
    request: Request<Incoming>,
    table: &mut Option<String>,
) -> Result<Answer, (Operation, ProxyError)> {
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
        // The SDKs' health check.
        Method::GET => {
            return Ok(Answer {
                op: Operation::Other,
                response: health_response(),
                cache: CacheStatus::Bypass,
            });
        }
        method => return Err(unclassified(ProxyError::NotDynamoDb(method, "/".into()))),
    }

    // 1. Classify.
    let raw_target = parts
        .headers
        .get(TARGET)
        .ok_or(ProxyError::UnknownOperation)
        .map_err(unclassified)?;
    let target = raw_target
        .to_str()
        .ok()
        .and_then(Target::parse)
        .ok_or(ProxyError::UnknownOperation)
        .map_err(unclassified)?;
    let op = target.op;
    let fail = |err| (op, err);

    // 2. Read the body, bounded.
    let limit = state.config.limits.max_body_bytes;
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(fail(ProxyError::BodyTooLarge { limit }));
    }
    let body = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|_| fail(ProxyError::BodyTooLarge { limit }))?
        .to_bytes();
    if tracing::enabled!(tracing::Level::DEBUG) {
        *table = table_name(&body);
    }

    // 3. Who is calling, and may they? Before the cache is consulted, so nobody is served an
    //    entry of a table they may not read, and before anything goes upstream.
    if let Some(verifier) = &state.gate.verifier {
        let admitted = verifier
            .verify(
                &parts.method,
                &parts.uri,
                &parts.headers,
                &body,
                std::time::SystemTime::now(),
            )
            .and_then(|principal| {
                crate::auth::authorize(&principal, op, &body)?;
                Ok(principal)
            });
        match admitted {
            Ok(principal) => tracing::trace!(principal = %principal.name, "authenticated"),
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

    // 4. Answer from memory: no await, no upstream. (A body it could read is valid JSON.)
    if let Some(response) = items::answer_from_memory(state, op, &body) {
        return Ok(Answer {
            op,
            response,
            cache: CacheStatus::Hit,
        });
    }
    if op.proxy_reads_body() && !is_json_object(&body) {
        return Err(fail(ProxyError::Serialization));
    }

    // 5. Go upstream and keep the cache in step. Boxed: this future carries the upstream
    //    client's state, far larger than the hit path needs to move around.
    let (response, cache) = Box::pin(upstream_path(state, op, raw_target, body))
        .await
        .map_err(fail)?;
    Ok(Answer {
        op,
        response,
        cache,
    })
}

/// The part of the path that may go upstream, by operation.
async fn upstream_path(
    state: &State,
    op: Operation,
    raw_target: &http::HeaderValue,
    body: Bytes,
) -> items::Handled {
    match op {
        Operation::GetItem => items::get_item(state, raw_target, body).await,
        Operation::BatchGetItem => items::batch_get_item(state, raw_target, body).await,
        Operation::Query | Operation::Scan => {
            queries::query_or_scan(state, op, raw_target, body).await
        }
        Operation::PutItem => items::put_item(state, raw_target, body).await,
        Operation::DeleteItem => items::delete_item(state, raw_target, body).await,
        Operation::UpdateItem => items::update_item(state, raw_target, body).await,
        Operation::BatchWriteItem => items::batch_write_item(state, raw_target, body).await,
        Operation::TransactWriteItems => items::transact_write_items(state, raw_target, body).await,
        Operation::CreateTable | Operation::UpdateTable | Operation::DeleteTable => {
            items::table_change(state, op, raw_target, body).await
        }
        Operation::ExecuteStatement
        | Operation::BatchExecuteStatement
        | Operation::ExecuteTransaction => items::partiql(state, op, raw_target, body).await,
        _ => items::bypass(state, op, raw_target, body).await,
    }
}

/// Sends a request upstream, recording the exchange in metrics.
pub(crate) async fn forward(
    state: &State,
    op: Operation,
    target: &http::HeaderValue,
    body: Bytes,
) -> Result<crate::upstream::UpstreamResponse, ProxyError> {
    let started = Instant::now();
    let result = state.upstream.call(target, body).await;
    let metrics = &state.metrics;
    metrics
        .upstream_duration
        .with_label_values(&[op.name()])
        .observe(started.elapsed().as_secs_f64());
    let status = result.as_ref().map_or(0, |a| a.status.as_u16());
    let _ = UPSTREAM.try_with(|u| u.set(Some((status, started.elapsed().as_micros() as u64))));
    match &result {
        Ok(answer) => metrics
            .upstream_requests
            .with_label_values(&[op.name(), answer.status.as_str()])
            .inc(),
        Err(err) => {
            metrics
                .upstream_errors
                .with_label_values(&[op.name(), err.upstream_kind()])
                .inc();
        }
    }
    result
}

/// The request's `TableName`, for logs.
fn table_name(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Named {
        #[serde(rename = "TableName")]
        table_name: String,
    }
    serde_json::from_slice::<Named>(body)
        .ok()
        .map(|n| n.table_name)
}

/// Whether `body` is one JSON object: a cheap structural check that builds nothing.
fn is_json_object(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_object_check() {
        assert!(is_json_object(br#" {"TableName":"t"}"#));
        assert!(is_json_object(b"{}"));
        for bad in [
            &b""[..],
            b"[]",
            b"\"x\"",
            b"{",
            b"{\"a\":}",
            b"null",
            b"{} {}",
        ] {
            assert!(!is_json_object(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
