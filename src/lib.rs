//! dynamo-cache: a read-through, write-through caching proxy for Amazon DynamoDB, in the style
//! of DynamoDB Accelerator (DAX). Applications keep their AWS SDK and point its endpoint URL at
//! the proxy, or keep their DAX client and point its cluster endpoint at it.
//!
//! # Layout
//!
//! One request path behind thin front-ends, by layer:
//!
//! - **Front-ends** (`front`): bytes in, typed requests to the request path, answers back
//!   as bytes. `front::http` speaks the DynamoDB HTTP JSON API and renders the request path's
//!   [`wire::answer::Answer`] as DynamoDB's HTTP response; `front::dax` the DAX protocol
//!   (CBOR over TCP), turning each data method into the DynamoDB request it stands for;
//!   `front::admin` the admin listener (health, readiness, upstream health, stats, flush,
//!   hot keys). The **warm start** (`warm`) is a client of the request path too: `run`
//!   starts it, and it reads another replica's hot keys through the ordinary miss path.
//! - **The request path** (`proxy`), one file of phases read top to bottom: parse the
//!   operation and body into a typed request ([`wire::request`]) -> authorise ([`auth`]) ->
//!   answer from memory -> go upstream -> store or invalidate -> respond. Operation families
//!   have a file each: get, batch_get, query (Query and Scan), write, passthrough.
//! - **The cache layer** ([`cache`]): one API over the item cache, the query cache, single
//!   flight, write tracking and the consistency window; every rule that keeps the two caches
//!   in step, and that says how a fill must read upstream, is there. Hot-key counting lives
//!   there too.
//! - **Sync** (`sync`): following DynamoDB streams; stream records reach the caches through
//!   the cache layer's invalidation calls.
//! - **Wire knowledge, no I/O** ([`wire`]): operations, the typed request, the answer,
//!   attribute values read from an answer, table names and ARNs, canonical keys,
//!   projections, key conditions, PartiQL.
//! - **Auth** ([`auth`]): the principals file, the SigV4 verifier, table and operation grants.
//! - **Upstream** ([`upstream`]): the SigV4-signing client to DynamoDB, with a connection
//!   pool per thread, its credentials, table key schemas from DescribeTable, and the one HTTPS
//!   client (rustls with ring) every AWS SDK client of the proxy uses.
//! - **Listening** (`net`): one accept loop for the data, DAX and admin listeners
//!   (connection limits, TLS handshakes, worker threads, drain), HTTP/1.1 connections and
//!   their timeouts, the reloadable certificate.
//! - **Metrics** ([`metrics`]): Prometheus, a leaf every layer may count into.
//! - [`cli`] and [`config`]: command line (with the binary's own client for the admin
//!   listener, `cli::admin`), environment and the TOML file.
//!
//! - Tools beside the server: [`embedded`] (feature `embedded`), a local DynamoDB emulator
//!   inside the binary, optionally behind a delay line; `bench` (feature `bench`),
//!   `dynamo-cache bench`. Neither is part of the request path; a `--no-default-features`
//!   build carries neither.
//!
//! Every import points down this list or into `wire`, `metrics`, `error` and `config`, which
//! import nothing above them; there are no import cycles.
//!
//! The library exposes what the binary, the benches, the fuzz targets and the integration
//! tests use: `run`, `State` and `Config`, the command line, the cache and wire types the
//! benches and fuzz targets drive, and the auth and upstream pieces tests set up. The front-
//! ends, the request path, listening and sync are private.
//!
//! [`run`] serves already-bound listeners until a shutdown future resolves; `main` binds them
//! and passes Ctrl-C/SIGTERM, tests pass port 0 and a channel.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod auth;
#[cfg(feature = "bench")]
pub mod bench;
pub mod cache;
pub mod cli;
pub mod config;
#[cfg(feature = "embedded")]
pub mod embedded;
mod error;
pub mod fleet;
mod front;
pub mod metrics;
mod net;
mod proxy;
mod state;
mod sync;
pub mod upstream;
mod warm;
pub mod wire;

use std::future::Future;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use net::tls::Certs;
pub use state::{StartError, State};

/// Entry points for fuzzing the decoders of untrusted input.
#[doc(hidden)]
pub mod fuzzing {
    /// Stores `data` as an item's JSON in the cache's compact form if it takes it, and
    /// checks that it renders back byte for byte; also renders `data` as if it were the
    /// compact form. Panics on a mismatch; never otherwise.
    pub use crate::cache::fuzz_compact as cached_item;
    /// Reads arbitrary bytes as a DAX connection's requests; never panics.
    pub use crate::front::dax::decode_session as dax;
    /// The same, handing each data request's upstream body to a callback and building
    /// nothing else: for measuring what decoding costs.
    pub use crate::front::dax::translate_session as dax_bodies;
    /// Finds the DAX requests in `buf` as a connection does, `step` bytes arriving at a time:
    /// resuming where the last read ran out (`resume`), or starting over on every read, as
    /// the proxy once did. How many requests were found.
    pub fn dax_frames(buf: &[u8], step: usize, resume: bool) -> usize {
        use crate::front::dax::frame::{Reader, split};
        let (mut found, mut start, mut end) = (0, 0, 0);
        let mut reader = Reader::default();
        while end < buf.len() {
            end = (end + step).min(buf.len());
            loop {
                let next = if resume {
                    reader.next(&buf[start..end])
                } else {
                    split(&buf[start..end])
                };
                match next {
                    Ok(Some(frame)) => {
                        found += 1;
                        start += frame.len;
                    }
                    _ => break,
                }
            }
        }
        found
    }
    /// The id a fresh DAX session gives an attribute list of these names.
    pub fn dax_list_id(names: &[String]) -> i64 {
        crate::front::dax::list_id_for(names)
    }
}

/// Admin connections are few (probes, scrapers); this bounds them separately.
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Serves the data, admin and (when bound) DAX listeners until `shutdown` resolves, then
/// drains: readiness turns 503, the data listener stops accepting and finishes in-flight
/// requests (up to the drain deadline), and only then does the admin listener stop.
pub async fn run(
    state: State,
    data: TcpListener,
    admin: TcpListener,
    dax: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) {
    let config = &state.config;
    let data_limits = net::listener::ListenerLimits {
        max_connections: config.limits.max_connections,
        header_read_timeout: config.header_read_timeout(),
        idle_timeout: config.idle_timeout(),
        drain_timeout: config.drain_timeout(),
    };
    let admin_limits = net::listener::ListenerLimits {
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
    // The fleet's engine is reached in the background: readiness never waits for it.
    if let Some(fleet) = state.caches.fleet() {
        fleet.start(state.caches.clone());
    }

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
    let admin_http = net::http::Http::new(
        move |request, peer: std::net::SocketAddr| {
            let state = admin_state.clone();
            async move { front::admin::handle(&state, request, peer).await }
        },
        admin_limits,
        state.metrics.clone(),
        front::http::refusal,
    );
    let admin_task = tokio::spawn(net::listener::serve(
        admin,
        0,
        admin_limits,
        admin_tls,
        state.metrics.clone(),
        stop_admin.clone(),
        admin_http,
    ));
    let stop_dax = CancellationToken::new();
    let dax_task = dax.map(|dax| {
        let limits = net::listener::ListenerLimits {
            // A DAX connection times its own requests and idling (see `front::dax`).
            idle_timeout: None,
            ..data_limits
        };
        tokio::spawn(net::listener::serve(
            dax,
            0,
            limits,
            state.tls.as_ref().map(|certs| certs.acceptor()),
            state.metrics.clone(),
            stop_dax.clone(),
            front::dax::Listener::new(shared.clone()),
        ))
    });
    let data_state = shared;
    let workers = config.worker_threads();
    let data_http = net::http::Http::new(
        move |request, _peer| {
            let state = data_state.clone();
            async move { front::http::handle(&state, request).await }
        },
        data_limits,
        state.metrics.clone(),
        front::http::refusal,
    );
    let data_task = tokio::spawn(net::listener::serve(
        data,
        workers,
        data_limits,
        acceptor,
        state.metrics.clone(),
        stop_data.clone(),
        data_http,
    ));

    shutdown.await;
    tracing::info!("shutting down: draining in-flight requests");
    state.start_draining();
    state.streams.stop();
    stop_data.cancel();
    stop_dax.cancel();
    let _ = data_task.await;
    if let Some(dax_task) = dax_task {
        let _ = dax_task.await;
    }
    if let Some(fleet) = state.caches.fleet() {
        fleet.stop().await;
    }
    stop_admin.cancel();
    let _ = admin_task.await;
    tracing::info!("stopped");
}
