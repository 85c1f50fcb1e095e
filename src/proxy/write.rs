//! Writes: PutItem, DeleteItem, UpdateItem, BatchWriteItem and TransactWriteItems, each
//! bracketed by the cache layer's write tracking, so no read that began before a write can
//! fill its key afterwards.
//!
//! What a write leaves in the cache: the item it wrote when the proxy knows it exactly (a put
//! of canonical numbers, an update's `ALL_NEW` answer, a delete's "not found"); otherwise the
//! key is dropped. When the proxy cannot tell which keys a write touches (no key schema, a
//! key it cannot read), it drops every table the request names before it answers.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::exchange::{Context, Handled, Outbound, changed_nothing, forward, relay};
use crate::cache::{Touched, WriteOutcome};
use crate::metrics::Reason;
use crate::state::State;
use crate::upstream::UpstreamResponse;
use crate::upstream::schema::SchemaError;
use crate::wire::answer::{Answer, CacheStatus};
use crate::wire::keys::{ItemKey, KeyValue, WireKey};
use crate::wire::request::{KeyedWrite, PutItem, WriteAction};

/// PutItem: on success the cache holds the new item (when it is byte-equivalent to what
/// DynamoDB will return); on any failure the key is dropped.
pub(super) async fn put_item(state: &State, ctx: &Context, out: Outbound, put: PutItem) -> Handled {
    let touched = match item_key_of(state, &put.table, &put.item.attributes).await {
        Placed::Key(touched) => touched,
        Placed::NoTable => return super::passthrough::bypass(state, ctx, out).await,
        Placed::Unknown => return to_tables(state, ctx, out, vec![put.table]).await,
    };
    let (item, storable) = (put.item.raw, put.item.storable);
    write_through(state, ctx, out, vec![touched], move |answer| {
        vec![match (answer.status == StatusCode::OK, storable) {
            (true, true) => WriteOutcome::Item(Some(item)),
            (true, false) => WriteOutcome::Unknown,
            (false, _) => WriteOutcome::Failed,
        }]
    })
    .await
}

/// DeleteItem: on success the cache remembers the item does not exist.
pub(super) async fn delete_item(
    state: &State,
    ctx: &Context,
    out: Outbound,
    delete: KeyedWrite,
) -> Handled {
    let Some(touched) = keyed(state, &delete.table, &delete.key).await else {
        return to_tables(state, ctx, out, vec![delete.table]).await;
    };
    write_through(state, ctx, out, vec![touched], |answer| {
        vec![if answer.status == StatusCode::OK {
            WriteOutcome::Item(None)
        } else {
            WriteOutcome::Failed
        }]
    })
    .await
}

#[derive(Deserialize)]
struct AttributesOutput<'a> {
    #[serde(rename = "Attributes", borrow)]
    attributes: Option<&'a RawValue>,
}

/// UpdateItem: the new item is only known if DynamoDB returns it, so a caller that wants no
/// return values gets `ALL_NEW` asked on its behalf, cached, and trimmed from its answer.
pub(super) async fn update_item(
    state: &State,
    ctx: &Context,
    out: Outbound,
    update: KeyedWrite,
) -> Handled {
    let Some(touched) = keyed(state, &update.table, &update.key).await else {
        return to_tables(state, ctx, out, vec![update.table]).await;
    };
    let asked = update.return_values.as_deref().unwrap_or("NONE");
    let cached = state.caches.caches_items(&update.table);
    // Asking for ALL_NEW on the caller's behalf only pays when the item is cached.
    let request = match (asked, cached) {
        ("NONE", true) => Some(update.asking_all_new(&out.body)),
        _ => None,
    };
    let trim = request.is_some();
    let learns_item = cached && (trim || asked == "ALL_NEW");
    let body = request.unwrap_or_else(|| out.body.clone());
    let writes = state.caches.begin_write(vec![touched]);
    let result = forward(state, ctx, &out, body).await;
    let mut outcome = WriteOutcome::Failed;
    let mut response = None;
    if let Ok(upstream) = &result
        && upstream.status == StatusCode::OK
    {
        outcome = WriteOutcome::Unknown;
        let attributes = serde_json::from_slice::<AttributesOutput>(&upstream.body)
            .ok()
            .and_then(|o| o.attributes);
        if learns_item && let Some(attributes) = attributes {
            let item = upstream.body.slice_ref(attributes.get().as_bytes());
            outcome = WriteOutcome::Item(Some(item));
        }
        if trim {
            // The answer without `Attributes`, as DynamoDB answers `ReturnValues: NONE`. If
            // it cannot be trimmed, DynamoDB's answer goes as it came (the write happened: a
            // 5xx would make the caller's SDK apply it again), and the key is dropped.
            match without_attributes(&upstream.body) {
                Some(body) => {
                    response = Some(Answer::upstream_with_body(
                        upstream.status,
                        upstream.headers.clone(),
                        body,
                        CacheStatus::Bypass,
                    ))
                }
                None => outcome = WriteOutcome::Unknown,
            }
        }
    }
    state.caches.end_write(writes, vec![outcome]).await;
    let upstream = result?;
    Ok(response.unwrap_or_else(|| relay(&upstream, CacheStatus::Bypass)))
}

/// The answer without `Attributes`.
fn without_attributes(body: &[u8]) -> Option<Bytes> {
    let mut fields = serde_json::from_slice::<Map<String, Value>>(body).ok()?;
    fields.remove("Attributes");
    Some(Bytes::from(Value::Object(fields).to_string()))
}

/// BatchWriteItem and TransactWriteItems. A batch's processed puts and deletes update the
/// cache and its `UnprocessedItems` are dropped; a transaction drops every key it touches
/// (no extra read cost, unlike DAX's background refill).
pub(super) async fn many(
    state: &State,
    ctx: &Context,
    out: Outbound,
    actions: Vec<WriteAction>,
) -> Handled {
    let batch = out.op == crate::wire::operation::Operation::BatchWriteItem;
    // (what it touches, what it becomes if processed)
    let mut writes: Vec<(Touched, Option<Option<Bytes>>)> = Vec::new();
    let mut tables: Vec<String> = Vec::new();
    let mut unplaced = false;
    for action in actions {
        let (touched, item) = match action {
            WriteAction::Put { table, item } => {
                let touched = match item_key_of(state, &table, &item.attributes).await {
                    Placed::Key(touched) => Some(touched),
                    // DynamoDB refuses the whole request: nothing changes.
                    Placed::NoTable => return super::passthrough::bypass(state, ctx, out).await,
                    Placed::Unknown => None,
                };
                tables.push(table);
                (touched, item.storable.then_some(Some(item.raw)))
            }
            WriteAction::Keyed { table, key } => {
                let touched = keyed(state, &table, &key).await;
                tables.push(table);
                (touched, Some(None))
            }
            WriteAction::Check => continue,
        };
        match touched {
            Some(touched) => writes.push((touched, item)),
            None => unplaced = true,
        }
    }
    if unplaced {
        return to_tables(state, ctx, out, tables).await;
    }
    let (touched, items): (Vec<Touched>, Vec<_>) = writes.into_iter().unzip();
    let keys: Vec<ItemKey> = touched.iter().map(|t| t.key.clone()).collect();
    write_through(state, ctx, out, touched, move |answer| {
        let unprocessed = if batch {
            unprocessed_keys(state, &answer.body)
        } else {
            Vec::new()
        };
        keys.into_iter()
            .zip(items)
            .map(|(key, item)| match item {
                _ if answer.status != StatusCode::OK => WriteOutcome::Failed,
                Some(item) if batch && !unprocessed.contains(&key) => WriteOutcome::Item(item),
                _ => WriteOutcome::Unknown,
            })
            .collect()
    })
    .await
}

/// Keys left in a BatchWriteItem's `UnprocessedItems` (puts resolved by schema when known).
fn unprocessed_keys(state: &State, body: &[u8]) -> Vec<ItemKey> {
    let Ok(output) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    let Some(tables) = output["UnprocessedItems"].as_object() else {
        return keys;
    };
    for (sent, requests) in tables {
        let table = state.naming.resolve(sent).name().to_string();
        for request in requests.as_array().into_iter().flatten() {
            let wire = if let Some(key) = request.pointer("/DeleteRequest/Key") {
                serde_json::from_value::<WireKey>(key.clone()).ok()
            } else if let Some(item) = request
                .pointer("/PutRequest/Item")
                .and_then(Value::as_object)
            {
                state.schemas.cached(&table).and_then(|schema| {
                    key_from_item(&schema.key, |name| {
                        serde_json::from_value(item.get(name)?.clone()).ok()
                    })
                })
            } else {
                None
            };
            if let Some(key) = wire.and_then(|w| ItemKey::new(&table, &w)) {
                keys.push(key);
            }
        }
    }
    keys
}

/// A write whose keys the proxy cannot tell: forwarded, then every table it names is dropped
/// (items and query answers), before the caller hears back.
pub(super) async fn to_tables(
    state: &State,
    ctx: &Context,
    out: Outbound,
    tables: Vec<String>,
) -> Handled {
    let result = forward(state, ctx, &out, out.body.clone()).await;
    if !changed_nothing(&result) {
        for table in &tables {
            state.caches.invalidate_table(table, Reason::Write).await;
        }
    }
    let upstream = result?;
    Ok(relay(&upstream, CacheStatus::Bypass))
}

/// Brackets a write to the `touched` items with the cache layer's write tracking, and
/// records what `decide` says each key became (in order). A failed exchange leaves every
/// key dropped.
async fn write_through(
    state: &State,
    ctx: &Context,
    out: Outbound,
    touched: Vec<Touched>,
    decide: impl FnOnce(&UpstreamResponse) -> Vec<WriteOutcome>,
) -> Handled {
    let tables: Vec<String> = touched.iter().map(|t| t.table.clone()).collect();
    let writes = state.caches.begin_write(touched);
    let result = forward(state, ctx, &out, out.body.clone()).await;
    let outcomes = match &result {
        Ok(upstream) => decide(upstream),
        Err(_) => Vec::new(),
    };
    state.caches.end_write(writes, outcomes).await;
    let upstream = result?;
    if upstream.status == StatusCode::OK {
        for table in &tables {
            state.streams.follow(table);
        }
    }
    Ok(relay(&upstream, CacheStatus::Bypass))
}

/// Where an item about to be written lands.
enum Placed {
    Key(Touched),
    /// DynamoDB says the table does not exist: it will refuse the write.
    NoTable,
    /// The proxy cannot tell (no key schema, an item without the key the schema names).
    Unknown,
}

async fn item_key_of(state: &State, table: &str, item: &BTreeMap<String, Bytes>) -> Placed {
    let schema = match state.schemas.get(table).await {
        Ok(schema) => schema,
        Err(SchemaError::NotFound(_)) => return Placed::NoTable,
        Err(err) => {
            tracing::warn!(table, error = %err, "no key schema; the write drops the whole table");
            return Placed::Unknown;
        }
    };
    let Some(wire) = key_from_item(&schema.key, |name| {
        serde_json::from_slice(item.get(name)?).ok()
    }) else {
        return Placed::Unknown;
    };
    match ItemKey::new(table, &wire) {
        Some(key) => Placed::Key(Touched {
            key,
            table: table.to_string(),
            partition: wire.get(&schema.key.partition).cloned(),
        }),
        None => Placed::Unknown,
    }
}

/// What a write naming its item by key touches (the partition needs the table's schema, which
/// is usually known; without it the whole table's queries are dropped).
async fn keyed(state: &State, table: &str, wire: &WireKey) -> Option<Touched> {
    let key = ItemKey::new(table, wire)?;
    let partition = match state.schemas.get(table).await {
        Ok(schema) => wire.get(&schema.key.partition).cloned(),
        Err(_) => None,
    };
    Some(Touched {
        key,
        table: table.to_string(),
        partition,
    })
}

/// The key attributes of an item, each read by `value` from wherever the item is held.
fn key_from_item(
    schema: &crate::upstream::schema::KeySchema,
    value: impl Fn(&str) -> Option<KeyValue>,
) -> Option<WireKey> {
    let mut wire = WireKey::new();
    for name in std::iter::once(&schema.partition).chain(schema.sort.as_ref()) {
        wire.insert(name.clone(), value(name)?);
    }
    Some(wire)
}
