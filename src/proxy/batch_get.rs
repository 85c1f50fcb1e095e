//! BatchGetItem: hits from memory, only the misses upstream in one smaller BatchGetItem, and
//! the two merged into one answer. `UnprocessedKeys` come back as DynamoDB returned them.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Map, Value};

use super::exchange::{Context, Handled, Outbound, forward, relay, zero_capacity};
use crate::cache::{Caches, ItemFill, Read};
use crate::error::ProxyError;
use crate::metrics::{CacheName, Lookup};
use crate::state::State;
use crate::wire::answer::{Answer, CacheStatus};
use crate::wire::keys::{ItemKey, WireKey};
use crate::wire::request::{BatchGet, BatchTable, Capacity};

/// One table's keys, split into what memory answered and what must be read.
struct Split<'a> {
    table: &'a BatchTable,
    /// Whether memory may answer and fill this table's keys.
    cacheable: bool,
    hits: Vec<Bytes>,
    /// Indexes into `table.keys`.
    misses: Vec<usize>,
}

pub(super) async fn batch_get(
    state: &State,
    ctx: &Context,
    out: Outbound,
    read: BatchGet,
) -> Handled {
    let caches = &state.caches;
    let mut splits = Vec::with_capacity(read.tables.len());
    for table in &read.tables {
        let cacheable = table.cacheable && caches.caches_items(&table.table);
        let mut split = Split {
            table,
            cacheable,
            hits: Vec::new(),
            misses: Vec::new(),
        };
        for (i, (_, key)) in table.keys.iter().enumerate() {
            let cached = cacheable.then(|| caches.item(key)).flatten();
            match cached
                .as_ref()
                .and_then(|c| c.answer(table.variant.as_deref()))
            {
                Some(Some(item)) => split.hits.push(item.clone()),
                Some(None) => {} // known not to exist: contributes nothing
                None => split.misses.push(i),
            }
        }
        for _ in &split.hits {
            state
                .metrics
                .record_table(&table.table, CacheName::Item, Lookup::Hit);
        }
        for _ in &split.misses {
            state
                .metrics
                .record_table(&table.table, CacheName::Item, Lookup::Miss);
        }
        splits.push(split);
    }

    if splits.iter().all(|s| s.misses.is_empty()) {
        let body = merge(&splits, None, read.capacity);
        return Ok(Answer::generated(StatusCode::OK, body, CacheStatus::Hit));
    }

    // Each miss that may fill learns how it must read; a table with any key inside the
    // consistency window of a write reads strongly consistently.
    let fills: Vec<Vec<ItemFill>> = splits
        .iter()
        .map(|s| {
            s.misses
                .iter()
                .filter(|_| s.cacheable)
                .map(|&i| caches.begin_item_fill(&s.table.keys[i].1))
                .collect()
        })
        .collect();
    // The smaller request: only the misses, every other parameter as the caller sent it.
    let mut request_items = Map::new();
    for (split, fills) in splits.iter().zip(&fills) {
        if split.misses.is_empty() {
            continue;
        }
        let mut params = split.table.params.clone();
        let keys = split
            .misses
            .iter()
            .map(|&i| split.table.keys[i].0.clone())
            .collect();
        params.insert("Keys".into(), Value::Array(keys));
        if fills.iter().any(|f| f.read == Read::Strong) {
            params.insert("ConsistentRead".into(), Value::Bool(true));
        }
        request_items.insert(split.table.sent.clone(), Value::Object(params));
    }
    let mut request = Map::new();
    request.insert("RequestItems".into(), Value::Object(request_items));
    if let Some(rcc) = &read.return_consumed_capacity {
        request.insert("ReturnConsumedCapacity".into(), Value::String(rcc.clone()));
    }
    let request = Bytes::from(Value::Object(request).to_string());
    let upstream = forward(state, ctx, &out, request).await?;
    if upstream.status != StatusCode::OK {
        return Ok(relay(&upstream, CacheStatus::Miss));
    }
    let output = serde_json::from_slice::<Value>(&upstream.body)
        .map_err(|e| ProxyError::UpstreamGarbled(format!("BatchGetItem answer: {e}")))?;
    for (split, fills) in splits.iter().zip(fills) {
        if split.cacheable {
            fill(caches, split, fills, &output);
            state.streams.follow(&split.table.table);
        }
    }
    let merged = merge(&splits, Some(&output), read.capacity);
    Ok(Answer::upstream_with_body(
        StatusCode::OK,
        upstream.headers,
        merged,
        CacheStatus::Miss,
    ))
}

/// Caches what the upstream returned for one table's misses: found items, and keys that are
/// neither returned nor unprocessed (they do not exist).
fn fill(caches: &Caches, split: &Split, fills: Vec<ItemFill>, output: &Value) {
    let table = split.table;
    if table.key_names.is_empty() || split.misses.is_empty() {
        return;
    }
    let returned = output["Responses"][&table.sent].as_array();
    let mut found: HashMap<ItemKey, Bytes> = HashMap::new();
    for item in returned.into_iter().flatten() {
        // The item's own key attributes say which request it answers; a projection that
        // leaves them out makes the answer unattributable, so nothing is cached.
        let mut wire = Map::new();
        for name in &table.key_names {
            match item.get(name) {
                Some(v) => wire.insert(name.clone(), v.clone()),
                None => return,
            };
        }
        let Ok(wire) = serde_json::from_value::<WireKey>(Value::Object(wire)) else {
            return;
        };
        if let Some(key) = ItemKey::new(&table.table, &wire) {
            found.insert(key, Bytes::from(item.to_string()));
        }
    }
    let unprocessed: HashSet<ItemKey> = output["UnprocessedKeys"][&table.sent]["Keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| serde_json::from_value::<WireKey>(k.clone()).ok())
        .filter_map(|wire| ItemKey::new(&table.table, &wire))
        .collect();
    for (&i, fill) in split.misses.iter().zip(fills) {
        let key = &table.keys[i].1;
        if unprocessed.contains(key) {
            continue;
        }
        caches.fill_item(key, fill, table.variant.clone(), found.remove(key));
    }
}

/// One BatchGetItem answer from the hits and (if asked) the upstream's answer for the misses.
fn merge(splits: &[Split], upstream: Option<&Value>, capacity: Capacity) -> Bytes {
    let mut responses = Map::new();
    for split in splits {
        let sent = &split.table.sent;
        let mut items: Vec<Value> = split
            .hits
            .iter()
            .filter_map(|raw| serde_json::from_slice(raw).ok())
            .collect();
        if let Some(Value::Array(fetched)) = upstream.and_then(|u| u["Responses"].get(sent)) {
            items.extend(fetched.iter().cloned());
        }
        responses.insert(sent.clone(), Value::Array(items));
    }
    let mut out = Map::new();
    out.insert("Responses".into(), Value::Object(responses));
    let unprocessed = upstream
        .and_then(|u| u.get("UnprocessedKeys").cloned())
        .unwrap_or_else(|| Value::Object(Map::new()));
    out.insert("UnprocessedKeys".into(), unprocessed);
    // The upstream's capacity report is relayed as it came (some upstreams send one unasked);
    // tables answered only from memory add a zero entry when the caller asked for capacity.
    let mut consumed = match upstream.and_then(|u| u.get("ConsumedCapacity")) {
        Some(Value::Array(reported)) => Some(reported.clone()),
        _ if capacity.wanted() => Some(Vec::new()),
        _ => None,
    };
    if capacity.wanted()
        && let Some(consumed) = &mut consumed
    {
        for split in splits {
            let sent = split.table.sent.as_str();
            if !consumed.iter().any(|e| e["TableName"] == sent) {
                consumed.push(zero_capacity(sent, capacity, None));
            }
        }
    }
    if let Some(consumed) = consumed {
        out.insert("ConsumedCapacity".into(), Value::Array(consumed));
    }
    Bytes::from(Value::Object(out).to_string())
}
