//! **The request path**, one phase after another, for every front-end:
//!
//! 1. **parse**: the operation and body become a [`DynamoRequest`], once;
//! 2. **authorise**: the caller the front-end identified may use every table it names;
//! 3. **answer from memory**: no await, no upstream;
//! 4. **go upstream**, by operation family ([`get`], [`batch_get`], [`query`], [`write`],
//!    [`passthrough`]), and **store or invalidate** through the cache layer on the way back;
//! 5. **respond**: count and log what happened, with one per-request [`Context`].
//!
//! A front-end turns its bytes into an [`Inbound`], and the [`Answer`] (which belongs to no
//! protocol) back into bytes.

mod batch_get;
mod exchange;
mod get;
mod passthrough;
mod query;
mod write;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use crate::wire::answer::{Answer, CacheStatus};
use crate::wire::operation::Api;

use crate::auth::{self, Principal};
use crate::error::ProxyError;
use crate::state::State;
use crate::wire::operation::Operation;
use crate::wire::request::{DynamoRequest, Form};

pub(crate) use exchange::Context;
use exchange::{Handled, Outbound};

/// A request as a front-end hands it over: classified, its body read, its caller identified.
pub(crate) struct Inbound {
    pub op: Operation,
    /// The API the target names, as the front-end classified it.
    pub api: Api,
    /// The `X-Amz-Target` to forward with.
    pub target: HeaderValue,
    pub body: Bytes,
    /// Who signed it, when inbound authentication is on (`None`: it is off).
    pub caller: Option<Arc<Principal>>,
}

/// Runs the request path for one request; never fails: the proxy's own errors become
/// DynamoDB-shaped error responses.
pub(crate) async fn handle(state: &State, ctx: &Context, inbound: Inbound) -> Answer {
    state.metrics.inflight.inc();
    // 1. Parse, once.
    let request = DynamoRequest::parse(inbound.op, inbound.target, inbound.body, &state.naming);
    let table = tracing::enabled!(tracing::Level::DEBUG)
        .then(|| request.table().map(str::to_string))
        .flatten();
    let result = serve(state, ctx, inbound.api, request, inbound.caller.as_deref()).await;
    state.metrics.inflight.dec();
    respond(state, ctx, table.as_deref(), result)
}

/// Phases 2 to 4.
async fn serve(
    state: &State,
    ctx: &Context,
    api: Api,
    request: DynamoRequest,
    caller: Option<&Principal>,
) -> Handled {
    // 2. Authorise: before the cache is consulted, so nobody is served an entry of a table
    //    they may not read, and before anything goes upstream.
    if let Some(principal) = caller
        && let Err(err) = auth::authorize(principal, request.op, request.tables().as_deref())
    {
        state
            .metrics
            .auth_failures
            .with_label_values(&[err.reason()])
            .inc();
        return Err(ProxyError::Auth(err));
    }

    // 3. Answer from memory.
    let answered = match &request.form {
        Form::Get(read) => get::from_memory(state, read),
        Form::Query(read) => query::from_memory(state, read),
        Form::NotJson => return Err(ProxyError::Serialization),
        _ => None,
    };
    if let Some(answer) = answered {
        return Ok(answer);
    }

    // 4. Go upstream, and store or invalidate. Boxed: this future carries the upstream
    //    client's state, far larger than the hit path needs to move around.
    Box::pin(upstream(state, ctx, api, request)).await
}

/// The part of the path that goes upstream, by operation family.
async fn upstream(state: &State, ctx: &Context, api: Api, request: DynamoRequest) -> Handled {
    let out = Outbound {
        op: request.op,
        api,
        target: request.target,
        body: request.body,
    };
    match request.form {
        Form::Get(read) => get::miss(state, ctx, out, read).await,
        Form::BatchGet(read) => batch_get::batch_get(state, ctx, out, read).await,
        Form::Query(read) => query::miss(state, ctx, out, read).await,
        Form::PutItem(put) => write::put_item(state, ctx, out, put).await,
        Form::DeleteItem(delete) => write::delete_item(state, ctx, out, delete).await,
        Form::UpdateItem(update) => write::update_item(state, ctx, out, update).await,
        Form::BatchWriteItem(actions) | Form::TransactWriteItems(actions) => {
            write::many(state, ctx, out, actions).await
        }
        Form::WriteToTables(tables) => write::to_tables(state, ctx, out, tables).await,
        Form::TableChange(table) => passthrough::table_change(state, ctx, out, table).await,
        Form::PartiQl { writes } => passthrough::partiql(state, ctx, out, writes).await,
        Form::Forward | Form::NotJson => passthrough::bypass(state, ctx, out).await,
    }
}

/// Reads through the cache as a request would, with no caller to authorise and nothing
/// counted as a request (a warm start's reads): the answer's status.
pub(crate) async fn read_through(
    state: &State,
    request: DynamoRequest,
) -> Result<StatusCode, ProxyError> {
    let ctx = Context::new(request.op, Instant::now());
    let answer = serve(state, &ctx, Api::DynamoDb, request, None).await?;
    Ok(answer.status)
}

/// Phase 5: counts the request and logs its line; the proxy's own errors become DynamoDB
/// error responses.
pub(crate) fn respond(
    state: &State,
    ctx: &Context,
    table: Option<&str>,
    result: Result<Answer, ProxyError>,
) -> Answer {
    let (answer, result) = match result {
        // A 5xx is an error whoever raised it; 4xx answers are the caller's to handle.
        Ok(answer) if answer.status.is_server_error() => (answer, CacheStatus::Error),
        Ok(answer) => {
            let cache = answer.cache;
            (answer, cache)
        }
        Err(err) => {
            if err.is_upstream() {
                tracing::warn!(op = ctx.op.name(), error = %err, "request failed");
            } else {
                tracing::debug!(op = ctx.op.name(), error = %err, "request refused");
            }
            (err.to_answer(), CacheStatus::Error)
        }
    };
    let elapsed = ctx.started.elapsed();
    state
        .metrics
        .record_request(ctx.op, result, ctx.protocol, elapsed.as_secs_f64());
    let (upstream_status, upstream_micros) = ctx.upstream();
    tracing::debug!(
        op = ctx.op.name(),
        table = table.unwrap_or(""),
        cache = result.as_str(),
        status = answer.status.as_u16(),
        micros = elapsed.as_micros() as u64,
        upstream_status,
        upstream_micros,
        "request"
    );
    answer
}
