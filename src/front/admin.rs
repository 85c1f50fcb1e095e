//! The admin listener: `/healthz`, `/readyz`, `/upstream`, `/metrics`, `GET /cache` (what each cache holds
//! and how well it hits), `POST /cache/flush[?table=NAME]` and `/debug/config` (the effective
//! configuration, secrets masked), kept off the data port so that
//! operators can scrape and probe without acting as a DynamoDB client.
//!
//! `/cache/*` and `/debug/*` change the cache or reveal keys and configuration: they need the
//! bearer token of `auth.admin_token_file` when one is set. Without one they are answered only
//! on a loopback admin listener, or to a caller on the proxy's own host (a loopback peer:
//! `dynamo-cache admin` run in the container or pod). Probes, `/metrics` and `GET /cache` stay
//! open.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::auth::AdminRefusal;
use crate::metrics::{CacheName, Reason};
/// What the admin listener answers.
type ProxyResponse = http::Response<bytes::Bytes>;
use crate::state::State;

/// How long `/upstream` waits for DynamoDB to answer.
const UPSTREAM_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers one admin request.
pub(crate) async fn handle(
    state: &State,
    request: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> ProxyResponse {
    let path = request.uri().path();
    // What changes the cache or reveals keys and configuration needs the admin token.
    if (path.starts_with("/cache/") || path.starts_with("/debug/"))
        && let Err(refusal) = state
            .gate
            .admit_admin(request.headers(), peer.ip().is_loopback())
    {
        return refused(refusal);
    }
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => readiness(state).await,
        (&Method::GET, "/upstream") => upstream_health(state).await,
        (&Method::GET, "/metrics") => {
            record_cache_usage(state);
            let mut resp = text(StatusCode::OK, "");
            *resp.body_mut() = Bytes::from(state.metrics.render());
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            resp
        }
        (&Method::GET, "/cache") => json(StatusCode::OK, cache_stats(state)),
        (&Method::GET, "/cache/hot-keys") => hot_keys(state, request.uri().query()),
        (&Method::POST, "/cache/flush") => flush(state, request.uri().query()).await,
        (&Method::GET, "/debug/config") => json(StatusCode::OK, effective_config(state)),
        (
            _,
            "/healthz" | "/readyz" | "/upstream" | "/metrics" | "/cache" | "/cache/flush"
            | "/cache/hot-keys" | "/debug/config",
        ) => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn refused(refusal: AdminRefusal) -> ProxyResponse {
    match refusal {
        AdminRefusal::Unauthenticated => {
            let mut resp = text(
                StatusCode::UNAUTHORIZED,
                "this endpoint needs the admin token: Authorization: Bearer <token>\n",
            );
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            resp
        }
        AdminRefusal::NoTokenConfigured => text(
            StatusCode::FORBIDDEN,
            "the admin listener is reachable from other hosts: set auth.admin_token_file to use \
             this endpoint from them, or run `dynamo-cache admin` on the proxy's host\n",
        ),
    }
}

/// Entries and bytes per cache, read when scraped.
fn record_cache_usage(state: &State) {
    let metrics = &state.metrics;
    for cache in CacheName::ALL {
        let (entries, bytes) = state.caches.usage(cache);
        metrics
            .cache_entries
            .with_label_values(&[cache.as_str()])
            .set(entries as i64);
        metrics
            .cache_bytes
            .with_label_values(&[cache.as_str()])
            .set(bytes as i64);
    }
}

/// What each cache holds and how well it hits.
fn cache_stats(state: &State) -> serde_json::Value {
    let config = &state.config.cache;
    let one = |cache: CacheName, max_bytes: u64| {
        let (entries, bytes) = state.caches.usage(cache);
        let (hits, misses) = state.metrics.cache_lookups(cache);
        let lookups = hits + misses;
        serde_json::json!({
            "entries": entries,
            "bytes": bytes,
            "max_bytes": max_bytes,
            "hits": hits,
            "misses": misses,
            "hit_ratio": if lookups == 0 { 0.0 } else { hits as f64 / lookups as f64 },
        })
    };
    serde_json::json!({
        "item": one(CacheName::Item, config.item_max_bytes),
        "query": one(CacheName::Query, config.query_max_bytes),
        "tables": table_stats(state),
        // Per followed table: following, no_stream or failing (reads are served either way,
        // fresh by TTL when the stream is not followed).
        "streams": {
            "enabled": state.streams.enabled(),
            "tables": state.streams.statuses(),
        },
        // The shared tier and this node's place in the fleet (`null`: not in a fleet).
        "fleet": state.caches.fleet().map(|f| f.stats()),
    })
}

/// Entries, bytes and hit ratio per table. Walks both caches: O(entries), for operators.
fn table_stats(state: &State) -> serde_json::Value {
    let mut tables: std::collections::BTreeMap<String, serde_json::Value> = Default::default();
    let mut add = |table: &str, cache: CacheName, bytes: u64| {
        let cache = cache.as_str();
        let stats = tables
            .entry(table.to_string())
            .or_insert_with(|| serde_json::json!({}));
        let entry = &mut stats[cache];
        if entry.is_null() {
            *entry = serde_json::json!({"entries": 0, "bytes": 0});
        }
        entry["entries"] = (entry["entries"].as_u64().unwrap_or(0) + 1).into();
        entry["bytes"] = (entry["bytes"].as_u64().unwrap_or(0) + bytes).into();
    };
    for cache in CacheName::ALL {
        state
            .caches
            .for_each(cache, |table, bytes| add(table, cache, bytes));
    }
    for (table, stats) in tables.iter_mut() {
        for cache in CacheName::ALL {
            let name = cache.as_str();
            if let Some((hits, misses)) = state.metrics.table_lookups(table, cache)
                && hits + misses > 0
                && !stats[name].is_null()
            {
                stats[name]["hit_ratio"] = (hits as f64 / (hits + misses) as f64).into();
            }
        }
    }
    serde_json::to_value(tables).unwrap_or_default()
}

/// The most read item keys (`?limit=N`, 100 by default, 10,000 at most), for warm starts.
fn hot_keys(state: &State, query: Option<&str>) -> ProxyResponse {
    const MAX: usize = 10_000;
    let limit = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("limit="));
    let limit = match limit.map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) => n.min(MAX),
        Some(Err(_)) => return text(StatusCode::BAD_REQUEST, "limit= needs a number\n"),
    };
    json(
        StatusCode::OK,
        serde_json::json!({ "keys": state.hot_keys.top(limit) }),
    )
}

/// Drops everything cached, or one table's entries with `?table=NAME`.
async fn flush(state: &State, query: Option<&str>) -> ProxyResponse {
    let table = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("table="));
    match table {
        Some("") => text(StatusCode::BAD_REQUEST, "table= needs a table name\n"),
        Some(table) => {
            // `?table=` may be percent-encoded (an ARN's `:` and `/`); a table named by its
            // ARN is the same table as its plain name.
            let table = percent_encoding::percent_decode_str(table).decode_utf8_lossy();
            let table = state.naming.resolve(&table).name().to_string();
            state.caches.invalidate_table(&table, Reason::Flush).await;
            json(
                StatusCode::OK,
                in_fleet(state, serde_json::json!({ "flushed": { "table": table } })),
            )
        }
        None => {
            state.caches.invalidate_all(Reason::Flush).await;
            json(
                StatusCode::OK,
                in_fleet(state, serde_json::json!({ "flushed": "all" })),
            )
        }
    }
}

/// A flush's answer, saying so when the whole fleet was flushed (shared tier and every node).
fn in_fleet(state: &State, mut answer: serde_json::Value) -> serde_json::Value {
    if state.caches.fleet().is_some() {
        answer["fleet"] = true.into();
    }
    answer
}

/// The configuration in force, with anything secret-looking masked.
fn effective_config(state: &State) -> serde_json::Value {
    let mut config = serde_json::to_value(&*state.config).unwrap_or_default();
    mask_secrets(&mut config);
    config
}

/// Replaces the value of every key that names a secret with `"MASKED"`, at any depth.
fn mask_secrets(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(fields) => {
            for (key, inner) in fields.iter_mut() {
                let key = key.to_ascii_lowercase();
                if ["secret", "password", "token", "private_key"]
                    .iter()
                    .any(|s| key.contains(s))
                {
                    *inner = serde_json::Value::String("MASKED".into());
                } else {
                    mask_secrets(inner);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        _ => {}
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> ProxyResponse {
    let mut resp = Response::new(Bytes::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Ready when not draining, credentials are loaded, and the upstream answers.
/// Whether this process can serve: listening (it answers), not draining, warm start over,
/// credentials loaded. DynamoDB's health is not part of it: a blip upstream must not take
/// every replica out of service at once, when cached reads are what they are there for.
async fn readiness(state: &State) -> ProxyResponse {
    if state.is_draining() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n");
    }
    if state.is_warming() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "warming\n");
    }
    if !state.upstream.has_credentials() {
        // Loading them here means the first probe, not the first request, pays for it.
        if let Err(err) = state.upstream.load_credentials().await {
            tracing::warn!(error = %err, "not ready: no AWS credentials");
            return text(StatusCode::SERVICE_UNAVAILABLE, "no AWS credentials\n");
        }
    }
    text(StatusCode::OK, "ready\n")
}

/// Whether DynamoDB answers at all (for dashboards and alerts, never for readiness).
async fn upstream_health(state: &State) -> ProxyResponse {
    if state.upstream.is_reachable(UPSTREAM_PROBE_TIMEOUT).await {
        text(StatusCode::OK, "upstream reachable\n")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "upstream unreachable\n")
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_at_any_depth() {
        let mut value = serde_json::json!({
            "listen": "127.0.0.1:8000",
            "auth": {"principals": [{"access_key_id": "AKID", "secret_access_key": "s3cr3t"}],
                     "admin_token": "t"},
        });
        mask_secrets(&mut value);
        assert_eq!(
            value["auth"]["principals"][0]["secret_access_key"],
            "MASKED"
        );
        assert_eq!(value["auth"]["admin_token"], "MASKED");
        assert_eq!(value["auth"]["principals"][0]["access_key_id"], "AKID");
        assert_eq!(value["listen"], "127.0.0.1:8000");
    }
}
