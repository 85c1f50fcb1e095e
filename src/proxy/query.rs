//! Query and Scan: eventually consistent ones answered from memory, misses filled; strongly
//! consistent ones are typed as forwards and never reach here.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Map, Value};

use super::exchange::{
    Context, Handled, IndexRead, Outbound, forward, strongly_consistent, upstream_failed,
    zero_capacity,
};
use crate::cache::{QueryEntry, Read, Scope};
use crate::error::ProxyError;
use crate::metrics::{CacheName, Lookup};
use crate::state::State;
use crate::wire::answer::{Answer, CacheStatus};
use crate::wire::keycond::{pinned_partition, pinned_partition_legacy};
use crate::wire::keys::canonical_value;
use crate::wire::operation::Operation;
use crate::wire::request::QueryOrScan;

/// A Query or Scan answered from memory, if it can be.
pub(super) fn from_memory(state: &State, read: &QueryOrScan) -> Option<Answer> {
    if !state.caches.caches_queries(&read.table) {
        return None;
    }
    let entry = state.caches.query(&read.cache_key)?;
    state
        .metrics
        .record_table(&read.table, CacheName::Query, Lookup::Hit);
    Some(cached_answer(state, &entry, read, CacheStatus::Hit))
}

/// The answer a cached entry gives this request.
fn cached_answer(
    state: &State,
    entry: &QueryEntry,
    read: &QueryOrScan,
    status: CacheStatus,
) -> Answer {
    if read.capacity.wanted() {
        let index = IndexRead::of(state, &read.table, read.index.as_deref());
        let consumed = zero_capacity(&read.table, read.capacity, index);
        let body = with_consumed(&entry.body, consumed);
        Answer::generated(StatusCode::OK, body, status)
    } else {
        Answer::generated_with_crc(StatusCode::OK, entry.body.clone(), entry.crc, status)
    }
}

/// A Query or Scan memory could not answer: forwarded, and its answer cached.
pub(super) async fn miss(
    state: &State,
    ctx: &Context,
    out: Outbound,
    read: QueryOrScan,
) -> Handled {
    let caches = &state.caches;
    if !caches.caches_queries(&read.table) {
        return super::passthrough::bypass(state, ctx, out).await;
    }
    let scope = scope_of(state, out.op, &read).await;
    state
        .metrics
        .record_table(&read.table, CacheName::Query, Lookup::Miss);
    let mut fill = caches.begin_query_fill(&read.table, &scope);
    let body = match fill.read {
        Read::Strong => strongly_consistent(&out.body).unwrap_or_else(|| {
            fill.read = Read::Uncached;
            out.body.clone()
        }),
        _ => out.body.clone(),
    };
    let result = forward(state, ctx, &out, body).await;
    if state.config.cache.serve_stale_on_error
        && upstream_failed(&result)
        && let Some(entry) = caches.stale_query(&read.cache_key)
    {
        return Ok(cached_answer(state, &entry, &read, CacheStatus::Stale));
    }
    let upstream = result?;
    if upstream.status == StatusCode::OK {
        // A success we cannot read is not DynamoDB's answer: never cached, never relayed.
        let stored = without_capacity(&upstream.body).ok_or_else(|| {
            ProxyError::UpstreamGarbled(format!("{} answer is not a JSON object", out.op.name()))
        })?;
        caches.fill_query(read.cache_key, &read.table, fill, stored);
        state.streams.follow(&read.table);
    }
    Ok(Answer::upstream(
        upstream.status,
        upstream.headers,
        upstream.body,
        CacheStatus::Miss,
    ))
}

/// What the answer depends on: one partition for a base-table Query whose key condition pins
/// the partition key; the whole table for anything else, marked as a global secondary index's
/// for a read of an index the table's schema does not list as local.
async fn scope_of(state: &State, op: Operation, read: &QueryOrScan) -> Scope {
    if let Some(index) = read.index.as_deref() {
        let local = match state.schemas.get(&read.table).await {
            Ok(schema) => schema.local.contains(index),
            Err(_) => false,
        };
        return if local {
            Scope::Table
        } else {
            Scope::GlobalIndex
        };
    }
    if op != Operation::Query {
        return Scope::Table;
    }
    let Ok(schema) = state.schemas.get(&read.table).await else {
        return Scope::Table;
    };
    let partition = &schema.key.partition;
    let pinned = if let Some(Value::String(expr)) = read.request.get("KeyConditionExpression") {
        let names = read
            .request
            .get("ExpressionAttributeNames")
            .and_then(|n| serde_json::from_value(n.clone()).ok());
        let values = read
            .request
            .get("ExpressionAttributeValues")
            .and_then(Value::as_object);
        pinned_partition(expr, partition, names.as_ref(), values)
    } else {
        read.request
            .get("KeyConditions")
            .and_then(|c| pinned_partition_legacy(c, partition))
    };
    match pinned.as_ref().and_then(canonical_value) {
        Some(value) => Scope::Partition(value),
        None => Scope::Table,
    }
}

/// The answer as cached: without `ConsumedCapacity` (capacity is not part of the key). `None`
/// if it is not a JSON object (never cache what cannot be read).
fn without_capacity(body: &Bytes) -> Option<Bytes> {
    let mut fields: Map<String, Value> = serde_json::from_slice(body).ok()?;
    if fields.remove("ConsumedCapacity").is_none() {
        return Some(body.clone()); // as DynamoDB sent it, byte for byte
    }
    Some(Bytes::from(Value::Object(fields).to_string()))
}

/// A cached answer with the zero capacity a hit costs.
fn with_consumed(body: &Bytes, consumed: Value) -> Bytes {
    let mut fields: Map<String, Value> = serde_json::from_slice(body).unwrap_or_default();
    fields.insert("ConsumedCapacity".into(), consumed);
    Bytes::from(Value::Object(fields).to_string())
}
