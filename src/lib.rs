//! dynamo-cache: a read-through, write-through caching proxy for Amazon DynamoDB, in the style
//! of DynamoDB Accelerator (DAX). Applications keep their AWS SDK and point its endpoint URL at
//! the proxy.
//!
//! # Layout
//!
//! - [`cli`]: command line and environment variables.
//! - [`config`]: the TOML configuration, its defaults and validation.
//! - [`server`]: accepting connections, limits, graceful drain (both listeners); [`tls`]: the
//!   certificate served over https, reloadable.
//! - [`proxy`]: **the request path**, read top to bottom: check the request -> classify the
//!   operation ([`operation`]) -> read the body -> authenticate and authorise the caller
//!   ([`auth`]) -> answer from memory or go upstream and keep the cache in step ([`items`]) ->
//!   respond ([`response`]).
//! - [`keys`]: canonical item keys; [`cache`]: the item cache and its freshness rules;
//!   [`store`]: the compact, byte-bounded map it keeps its entries in;
//!   [`flight`]: concurrent misses share one upstream read; [`projection`]: projections
//!   evaluated from cached items.
//! - [`queries`]: Query and Scan on the request path; [`query_cache`]: their cache, kept fresh
//!   after writes; [`keycond`]: which partition a Query reads; [`partiql`]: which table a
//!   PartiQL statement uses, and whether it writes.
//! - [`upstream`]: the pooled, SigV4-signing client to DynamoDB; [`credentials`] keeps its
//!   identity fresh.
//! - [`schema`]: table key schemas from DescribeTable.
//! - [`hot_keys`] and [`warm`]: the most used keys, and a new replica reading another's
//!   before it reports ready.
//! - [`streams`]: following the cached tables' DynamoDB streams, so writes that bypass the
//!   proxy drop entries within the stream's lag.
//! - [`error`]: what the proxy itself gets wrong, rendered as DynamoDB error JSON.
//! - [`metrics`] and [`admin`]: Prometheus metrics, health and readiness on the admin listener.
//! - [`state`]: the shared state every request sees.
//! - `embedded` (feature `embedded`): a local DynamoDB emulator inside the binary.
//! - [`bench`]: `dynamo-cache bench`, read latency through the AWS SDK at one endpoint or two;
//!   [`plot`] draws its percentile curves; [`staleness`] measures how long others' writes take
//!   to be served.
//!
//! [`run`] serves already-bound listeners until a shutdown future resolves; `main` binds them
//! and passes Ctrl-C/SIGTERM, tests pass port 0 and a channel.

#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod bench;
pub mod cache;
pub mod cli;
pub mod config;
pub mod credentials;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod error;
pub mod flight;
pub mod hot_keys;
pub mod items;
pub mod keycond;
pub mod keys;
pub mod metrics;
pub mod operation;
pub mod partiql;
pub mod plot;
pub mod projection;
pub mod proxy;
pub mod queries;
pub mod query_cache;
pub mod response;
pub mod schema;
pub mod server;
pub mod staleness;
pub mod state;
pub mod store;
pub mod streams;
pub mod tls;
pub mod upstream;
pub mod warm;

use std::future::Future;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use state::State;

/// Admin connections are few (probes, scrapers); this bounds them separately.
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Serves the data and admin listeners until `shutdown` resolves, then drains: readiness turns
/// 503, the data listener stops accepting and finishes in-flight requests (up to the drain
/// deadline), and only then does the admin listener stop.
pub async fn run(
    state: State,
    data: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let config = &state.config;
    let data_limits = server::ListenerLimits {
        max_connections: config.limits.max_connections,
        header_read_timeout: config.header_read_timeout(),
        idle_timeout: config.idle_timeout(),
        drain_timeout: config.drain_timeout(),
    };
    let admin_limits = server::ListenerLimits {
        max_connections: ADMIN_MAX_CONNECTIONS,
        ..data_limits
    };
    let stop_data = CancellationToken::new();
    let stop_admin = CancellationToken::new();

    // Load credentials before the first request needs them (a failure is retried per request).
    let warm = state.clone();
    tokio::spawn(async move {
        if let Err(err) = warm.upstream.load_credentials().await {
            tracing::warn!(error = %err, "no AWS credentials yet");
        }
    });

    // Stream followers run on this runtime, not on a connection worker's.
    state.streams.start();

    // A warm start runs while the proxy serves; readiness waits for it.
    if state.config.warm.from.is_some() {
        state.set_warming(true);
        let warming = state.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            match warm::warm(&warming, &warming.config.warm).await {
                Ok(w) => tracing::info!(
                    listed = w.listed,
                    read = w.read,
                    failed = w.failed,
                    ms = started.elapsed().as_millis() as u64,
                    "warm start done"
                ),
                Err(err) => tracing::warn!(error = %err, "warm start failed; starting cold"),
            }
            warming.set_warming(false);
        });
    }

    // One Arc per request instead of a clone of every field of State.
    let shared = std::sync::Arc::new(state.clone());
    let admin_state = shared.clone();
    let acceptor = state.tls.as_ref().map(|certs| certs.acceptor());
    let admin_tls = acceptor.clone().filter(|_| config.tls.admin);
    let admin_task = tokio::spawn(server::serve(
        admin,
        0,
        admin_limits,
        admin_tls,
        state.metrics.clone(),
        stop_admin.clone(),
        move |request| {
            let state = admin_state.clone();
            async move { admin::handle(&state, request).await }
        },
    ));
    let data_state = shared;
    let workers = config.worker_threads();
    let data_task = tokio::spawn(server::serve(
        data,
        workers,
        data_limits,
        acceptor,
        state.metrics.clone(),
        stop_data.clone(),
        move |request| {
            let state = data_state.clone();
            async move { proxy::handle(&state, request).await }
        },
    ));

    shutdown.await;
    tracing::info!("shutting down: draining in-flight requests");
    state.start_draining();
    state.streams.stop();
    stop_data.cancel();
    let _ = data_task.await;
    stop_admin.cancel();
    let _ = admin_task.await;
    tracing::info!("stopped");
}
