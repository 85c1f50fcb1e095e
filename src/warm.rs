//! Warm starts: a new replica asks a running one for its most used item keys
//! (`GET /cache/hot-keys`) and reads them from DynamoDB before it reports ready, so a deploy or
//! a scale-out does not send a cold cache's misses to DynamoDB all at once.
//!
//! Bounded in every direction: at most `warm.max_keys` keys, at most `warm.rate_per_sec` reads
//! a second, and `warm.timeout_ms` in all; whatever is not read by then is simply read on first
//! use. The reads take the ordinary miss path (versioned fills, single flight), so a warm-up
//! can never store a value older than a write the proxy acknowledged meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::cache::HotKey;
use crate::config::WarmConfig;
use crate::state::State;
use crate::wire::request::DynamoRequest;

/// Reads in flight at once while warming.
const CONCURRENCY: usize = 8;

/// What a warm-up did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Warmed {
    /// Keys the other replica listed.
    pub listed: usize,
    /// Keys read and cached (found or not).
    pub read: u64,
    /// Reads DynamoDB refused or that failed.
    pub failed: u64,
}

/// Lists the hot keys at `config.from` and reads them through `state`'s miss path.
pub(crate) async fn warm(state: &State, config: &WarmConfig) -> Result<Warmed, String> {
    let Some(from) = &config.from else {
        return Ok(Warmed::default());
    };
    let deadline = Instant::now() + Duration::from_millis(config.timeout_ms);
    let token = state.gate.admin_token();
    let keys = hot_keys(from, token.as_deref(), config.max_keys, deadline).await?;
    let listed = keys.len();
    let keys = Arc::new(keys);
    let next = Arc::new(AtomicU64::new(0));
    let interval = Duration::from_secs_f64(1.0 / config.rate_per_sec.max(1) as f64);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (state, keys, next) = (state.clone(), keys.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let (mut read, mut failed) = (0u64, 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(hot) = keys.get(i as usize) else {
                    break;
                };
                // Paced: read i is not sent before its turn at the configured rate.
                let due = started + interval.mul_f64(i as f64);
                if due >= deadline {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let request = DynamoRequest::get_item(&hot.table, &hot.key, &state.naming);
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, crate::proxy::read_through(&state, request)).await
                {
                    Ok(Ok(status)) if status.is_success() => read += 1,
                    Ok(_) => failed += 1,
                    Err(_) => break,
                }
            }
            (read, failed)
        }));
    }
    let mut warmed = Warmed {
        listed,
        ..Warmed::default()
    };
    for worker in workers {
        let (read, failed) = worker.await.map_err(|e| e.to_string())?;
        warmed.read += read;
        warmed.failed += failed;
    }
    Ok(warmed)
}

/// `GET {from}/cache/hot-keys?limit=N` on another replica's admin listener, with this
/// replica's admin token when it has one (a fleet shares one).
async fn hot_keys(
    from: &str,
    token: Option<&str>,
    limit: usize,
    deadline: Instant,
) -> Result<Vec<HotKey>, String> {
    #[derive(serde::Deserialize)]
    struct Listing {
        keys: Vec<Listed>,
    }
    #[derive(serde::Deserialize)]
    struct Listed {
        table: String,
        key: serde_json::Value,
        #[serde(default)]
        uses: u64,
    }
    let url = format!(
        "{}/cache/hot-keys?limit={limit}",
        from.trim_end_matches('/')
    );
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let left = deadline.saturating_duration_since(Instant::now());
    let mut request = http::Request::get(uri);
    if let Some(token) = token {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::new())
        .map_err(|e| format!("{url}: {e}"))?;
    let response = tokio::time::timeout(left, client.request(request))
        .await
        .map_err(|_| format!("{url}: no answer in time"))?
        .map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: {}", response.status()));
    }
    let body = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        response.into_body().collect(),
    )
    .await
    .map_err(|_| format!("{url}: no answer in time"))?
    .map_err(|e| format!("{url}: {e}"))?
    .to_bytes();
    let listing: Listing =
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not a hot-key listing: {e}"))?;
    Ok(listing
        .keys
        .into_iter()
        .take(limit)
        .map(|k| HotKey {
            table: k.table,
            key: k.key,
            uses: k.uses,
        })
        .collect())
}
