//! The query cache on the request path: eventually consistent Query and Scan answered from
//! memory, misses filled, strongly consistent reads always forwarded.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde_json::{Map, Value};

use crate::error::ProxyError;
use crate::items::{Handled, bypass, upstream_failed};
use crate::keycond::{pinned_partition, pinned_partition_legacy};
use crate::keys::canonical_value;
use crate::operation::Operation;
use crate::proxy::forward;
use crate::query_cache::{QueryCache, QueryEntry, Scope};
use crate::response::{self, CacheStatus, ProxyResponse};
use crate::state::State;

/// A Query or Scan the cache may answer.
struct Cacheable {
    table: String,
    /// Everything that changes the answer, keys sorted: the cache key.
    key: Arc<[u8]>,
    /// The request without `ReturnConsumedCapacity`.
    request: Map<String, Value>,
    capacity: bool,
}

fn cacheable(state: &State, op: Operation, body: &[u8]) -> Option<Cacheable> {
    let mut request: Map<String, Value> = serde_json::from_slice(body).ok()?;
    if request.get("ConsistentRead") == Some(&Value::Bool(true)) {
        return None;
    }
    let table = request.get("TableName")?.as_str()?.to_string();
    state.queries.ttl(&table)?;
    let capacity = request
        .remove("ReturnConsumedCapacity")
        .is_some_and(|v| v != "NONE");
    // serde_json's map keeps keys sorted, so this text is canonical.
    let canonical = serde_json::to_string(&request).ok()?;
    let key = QueryCache::key(&table, op.name(), &canonical);
    Some(Cacheable {
        table,
        key,
        request,
        capacity,
    })
}

/// A Query or Scan answered from memory, if it can be.
pub fn answer_from_memory(state: &State, op: Operation, body: &[u8]) -> Option<ProxyResponse> {
    let read = cacheable(state, op, body)?;
    let entry = state.queries.get(&read.key)?;
    state.metrics.record_table(&read.table, true, true);
    Some(cached_answer(&entry, &read, CacheStatus::Hit))
}

/// The answer a cached entry gives this request.
fn cached_answer(entry: &QueryEntry, read: &Cacheable, status: CacheStatus) -> ProxyResponse {
    if read.capacity {
        let body = with_zero_capacity(&entry.body, &read.table);
        response::generated(StatusCode::OK, body, status)
    } else {
        response::generated_with_crc(StatusCode::OK, entry.body.clone(), entry.crc, status)
    }
}

/// A Query or Scan memory could not answer: forwarded, and its answer cached.
pub async fn query_or_scan(
    state: &State,
    op: Operation,
    target: &HeaderValue,
    body: Bytes,
) -> Handled {
    let Some(read) = cacheable(state, op, &body) else {
        return bypass(state, op, target, body).await;
    };
    state.streams.follow(&read.table);
    let scope = scope_of(state, op, &read).await;
    state.metrics.record_table(&read.table, true, false);
    let watch = state.queries.begin(&read.table, &scope);
    let result = forward(state, op, target, body).await;
    if state.config.cache.serve_stale_on_error
        && upstream_failed(&result)
        && let Some(entry) = state.queries.get_stale(&read.key)
    {
        return Ok((
            cached_answer(&entry, &read, CacheStatus::Stale),
            CacheStatus::Stale,
        ));
    }
    let answer = result?;
    if answer.status == StatusCode::OK {
        // A success we cannot read is not DynamoDB's answer: never cached, never relayed.
        let stored = without_capacity(&answer.body).ok_or_else(|| {
            ProxyError::UpstreamGarbled(format!("{} answer is not a JSON object", op.name()))
        })?;
        state.queries.fill(read.key, &read.table, watch, stored);
    }
    Ok((
        response::relayed(
            answer.status,
            &answer.headers,
            answer.body,
            CacheStatus::Miss,
        ),
        CacheStatus::Miss,
    ))
}

/// What the answer depends on: one partition for a base-table Query whose key condition pins
/// the partition key; the whole table for anything else.
async fn scope_of(state: &State, op: Operation, read: &Cacheable) -> Scope {
    if op != Operation::Query || read.request.contains_key("IndexName") {
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
fn with_zero_capacity(body: &Bytes, table: &str) -> Bytes {
    let mut fields: Map<String, Value> = serde_json::from_slice(body).unwrap_or_default();
    fields.insert(
        "ConsumedCapacity".into(),
        serde_json::json!({ "TableName": table, "CapacityUnits": 0.0 }),
    );
    Bytes::from(Value::Object(fields).to_string())
}
