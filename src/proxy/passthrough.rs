//! Everything the proxy forwards without caching: unknown and management operations,
//! strongly consistent reads, Streams calls, PartiQL. Table changes and PartiQL writes drop
//! what they may have changed.

use super::exchange::{Context, Handled, Outbound, changed_nothing, forward, relay_owned};
use crate::metrics::Reason;
use crate::state::State;
use crate::wire::answer::CacheStatus;

/// Forwards the request uncached.
pub(super) async fn bypass(state: &State, ctx: &Context, out: Outbound) -> Handled {
    let upstream = forward(state, ctx, &out, out.body.clone()).await?;
    Ok(relay_owned(upstream, CacheStatus::Bypass))
}

/// CreateTable, UpdateTable, DeleteTable: the table's entries and schema are dropped, unless
/// DynamoDB refused the change.
pub(super) async fn table_change(
    state: &State,
    ctx: &Context,
    out: Outbound,
    table: Option<String>,
) -> Handled {
    let result = forward(state, ctx, &out, out.body.clone()).await;
    if !changed_nothing(&result) {
        match table {
            Some(table) => {
                state
                    .caches
                    .invalidate_table(&table, Reason::TableChange)
                    .await;
                state.schemas.forget(&table);
            }
            None => state.caches.invalidate_all(Reason::TableChange).await,
        }
    }
    Ok(relay_owned(result?, CacheStatus::Bypass))
}

/// PartiQL: reads pass through uncached; a statement that writes drops its table's entries
/// (or everything, when the table cannot be told), unless DynamoDB refused the request.
pub(super) async fn partiql(
    state: &State,
    ctx: &Context,
    out: Outbound,
    writes: Vec<Option<String>>,
) -> Handled {
    let result = forward(state, ctx, &out, out.body.clone()).await;
    if !changed_nothing(&result) {
        for table in writes {
            match table {
                Some(table) => state.caches.invalidate_table(&table, Reason::Write).await,
                None => state.caches.invalidate_all(Reason::Write).await,
            }
        }
    }
    Ok(relay_owned(result?, CacheStatus::Bypass))
}
