//! Everything the proxy forwards without caching: unknown and management operations,
//! strongly consistent reads, Streams calls, PartiQL. Table changes and PartiQL writes drop
//! what they may have changed.

use super::answer::CacheStatus;
use super::exchange::{Context, Handled, Outbound, forward, relay};
use crate::state::State;

/// Forwards the request uncached.
pub async fn bypass(state: &State, ctx: &Context, out: Outbound) -> Handled {
    let upstream = forward(state, ctx, &out, out.body.clone()).await?;
    Ok((relay(&upstream, CacheStatus::Bypass), CacheStatus::Bypass))
}

/// CreateTable, UpdateTable, DeleteTable: the table's entries and schema are dropped, unless
/// DynamoDB refused the change.
pub async fn table_change(
    state: &State,
    ctx: &Context,
    out: Outbound,
    table: Option<String>,
) -> Handled {
    let result = bypass(state, ctx, out).await;
    if refused(&result) {
        return result;
    }
    match table {
        Some(table) => {
            state.caches.invalidate_table(&table, "table_change");
            state.schemas.forget(&table);
        }
        None => state.caches.invalidate_all("table_change"),
    }
    result
}

/// PartiQL: reads pass through uncached; a statement that writes drops its table's entries
/// (or everything, when the table cannot be told), unless DynamoDB refused the request.
pub async fn partiql(
    state: &State,
    ctx: &Context,
    out: Outbound,
    writes: Vec<Option<String>>,
) -> Handled {
    let result = bypass(state, ctx, out).await;
    if refused(&result) {
        return result;
    }
    for table in writes {
        match table {
            Some(table) => state.caches.invalidate_table(&table, "write"),
            None => state.caches.invalidate_all("write"),
        }
    }
    result
}

/// Whether DynamoDB answered 4xx: it changed nothing.
fn refused(result: &Handled) -> bool {
    matches!(result, Ok((response, _)) if response.status().is_client_error())
}
