//! The admin listener: `/healthz`, `/readyz` and `/metrics`, kept off the data port so that
//! operators can scrape and probe without acting as a DynamoDB client.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::response::ProxyResponse;
use crate::state::State;

/// How long `/readyz` waits for the upstream to answer.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers one admin request.
pub async fn handle(state: &State, request: Request<Incoming>) -> ProxyResponse {
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => readiness(state).await,
        "/metrics" => {
            let mut resp = text(StatusCode::OK, "");
            *resp.body_mut() = Bytes::from(state.metrics.render());
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Ready when not draining, credentials are loaded, and the upstream answers.
async fn readiness(state: &State) -> ProxyResponse {
    if state.is_draining() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n");
    }
    if !state.upstream.has_credentials() {
        // Loading them here means the first probe, not the first request, pays for it.
        if let Err(err) = state.upstream.load_credentials().await {
            tracing::warn!(error = %err, "not ready: no AWS credentials");
            return text(StatusCode::SERVICE_UNAVAILABLE, "no AWS credentials\n");
        }
    }
    if !state.upstream.is_reachable(READY_PROBE_TIMEOUT).await {
        return text(StatusCode::SERVICE_UNAVAILABLE, "upstream unreachable\n");
    }
    text(StatusCode::OK, "ready\n")
}

fn text(status: StatusCode, body: &'static str) -> ProxyResponse {
    let mut resp = Response::new(Bytes::from_static(body.as_bytes()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    resp
}
