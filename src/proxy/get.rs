//! GetItem: answered from memory when it can be; otherwise one upstream read, shared by
//! concurrent misses, whose answer fills the cache.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::exchange::{
    Context, Handled, Outbound, forward, relay, strongly_consistent, upstream_failed, zero_capacity,
};
use crate::cache::{Asked, Cached, ItemRead, Read};
use crate::error::ProxyError;
use crate::metrics::{CacheName, Lookup};
use crate::state::State;
use crate::wire::answer::{Answer, CacheStatus};
use crate::wire::request::{Capacity, GetItem};

/// The hit path: no await, no upstream. `None` sends the request to [`miss`].
pub(super) fn from_memory(state: &State, read: &GetItem) -> Option<Answer> {
    let caches = &state.caches;
    if !caches.caches_items(&read.table) {
        return None;
    }
    let cached = caches.item(&read.key)?;
    // Counted here for hits; misses are counted on their way upstream.
    state.hot_keys.touch(&read.key, &read.table, || {
        serde_json::from_slice(&read.wire_key).ok()
    });
    let hit = |response| {
        state
            .metrics
            .record_table(&read.table, CacheName::Item, Lookup::Hit);
        Some(response)
    };
    // The common hit: the whole item, kept as its ready answer.
    if read.variant.is_none()
        && !read.capacity.wanted()
        && let Some(whole) = &cached.whole
    {
        let (body, crc) = whole.answer();
        return hit(Answer::generated_with_crc(
            StatusCode::OK,
            body.clone(),
            crc,
            CacheStatus::Hit,
        ));
    }
    if let Some(item) = cached.answer(read.variant.as_deref()) {
        return hit(get_item_answer(item.as_ref(), &read.table, read.capacity));
    }
    // Going further than DAX: a projection DynamoDB has accepted before, of an item whose
    // whole is cached, is evaluated here.
    if let Some(projection) = &read.variant
        && let Some(whole) = cached.whole.as_ref().and_then(|w| w.item())
        && caches.knows_projection(&read.table, projection)
        && let Some(projected) = read.projection.apply(&whole)
    {
        return hit(get_item_answer(
            Some(&projected),
            &read.table,
            read.capacity,
        ));
    }
    None
}

/// A GetItem memory could not answer.
pub(super) async fn miss(state: &State, ctx: &Context, out: Outbound, read: GetItem) -> Handled {
    let caches = &state.caches;
    if !caches.caches_items(&read.table) {
        return super::passthrough::bypass(state, ctx, out).await;
    }
    state.hot_keys.touch(&read.key, &read.table, || {
        serde_json::from_slice(&read.wire_key).ok()
    });
    let asked = Asked {
        projection: read.variant.clone(),
        capacity: read.capacity,
    };
    let (read_item, coalesced) = caches
        .read_item(&read.key, asked, |how| async move {
            let (body, fills) = match how {
                Read::Strong => match strongly_consistent(&out.body) {
                    Some(body) => (body, true),
                    None => (out.body.clone(), false),
                },
                _ => (out.body.clone(), true),
            };
            let mut learned = None;
            let result = forward(state, ctx, &out, body).await.and_then(|answer| {
                if answer.status != StatusCode::OK {
                    return Ok(answer);
                }
                // A success we cannot read is not DynamoDB's answer: never cached, never
                // relayed; the caller's SDK retries the 500.
                let item = read_get_item(&answer.body)?;
                learned = fills.then_some(item);
                Ok(answer)
            });
            (Arc::new(result), learned)
        })
        .await;
    if coalesced {
        state.metrics.coalesced_misses.inc();
    }
    let fetched = match read_item {
        // The fleet's shared tier held the whole item (only reads of the whole item consult
        // it): a hit, answered as memory answers.
        ItemRead::Shared(item) => {
            debug_assert!(read.variant.is_none());
            state
                .metrics
                .record_table(&read.table, CacheName::Item, Lookup::Hit);
            return Ok(get_item_answer(item.as_ref(), &read.table, read.capacity));
        }
        ItemRead::Fetched(fetched) => fetched,
    };
    state
        .metrics
        .record_table(&read.table, CacheName::Item, Lookup::Miss);
    if state.config.cache.serve_stale_on_error
        && upstream_failed(&fetched)
        && let Some(cached) = caches.stale_item(&read.key)
        && let Some(response) = stale(&cached, &read)
    {
        state
            .metrics
            .record_table(&read.table, CacheName::Item, Lookup::Hit);
        return Ok(response);
    }
    match &*fetched {
        Ok(upstream) => {
            if upstream.status == StatusCode::OK {
                state.streams.follow(&read.table);
            }
            let mut answer = relay(upstream, CacheStatus::Miss);
            // Each caller gets its own request id, as it would from DynamoDB.
            answer.shared = coalesced;
            Ok(answer)
        }
        Err(err) => Err(err.clone()),
    }
}

/// A GetItem answer from an entry past its TTL, marked stale.
fn stale(cached: &Cached, read: &GetItem) -> Option<Answer> {
    if read.variant.is_none()
        && !read.capacity.wanted()
        && let Some(whole) = &cached.whole
    {
        let (body, crc) = whole.answer();
        return Some(Answer::generated_with_crc(
            StatusCode::OK,
            body.clone(),
            crc,
            CacheStatus::Stale,
        ));
    }
    let item = cached.answer(read.variant.as_deref())?;
    let mut answer = get_item_answer(item.as_ref(), &read.table, read.capacity);
    answer.cache = CacheStatus::Stale;
    Some(answer)
}

#[derive(Deserialize)]
struct ItemOutput<'a> {
    #[serde(rename = "Item", borrow)]
    item: Option<&'a RawValue>,
}

/// The item of a GetItem answer (`None` = not found), as a slice of the body.
fn read_get_item(body: &Bytes) -> Result<Option<Bytes>, ProxyError> {
    let output = serde_json::from_slice::<ItemOutput>(body)
        .map_err(|e| ProxyError::UpstreamGarbled(format!("GetItem answer: {e}")))?;
    Ok(output.item.map(|raw| body.slice_ref(raw.get().as_bytes())))
}

/// A GetItem answer built from a cached item, as DynamoDB shapes it.
fn get_item_answer(item: Option<&Bytes>, table: &str, capacity: Capacity) -> Answer {
    let mut body = Vec::with_capacity(item.map_or(2, |i| i.len() + 10) + 64);
    body.push(b'{');
    if let Some(item) = item {
        body.extend_from_slice(b"\"Item\":");
        body.extend_from_slice(item);
    }
    if capacity.wanted() {
        if item.is_some() {
            body.push(b',');
        }
        body.extend_from_slice(b"\"ConsumedCapacity\":");
        body.extend_from_slice(zero_capacity(table, capacity, None).to_string().as_bytes());
    }
    body.push(b'}');
    Answer::generated(StatusCode::OK, Bytes::from(body), CacheStatus::Hit)
}
