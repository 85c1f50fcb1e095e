//! The item cache on the request path: GetItem and BatchGetItem answered from memory, and every
//! write kept in step with it (write-through, or invalidation where the result is unknowable).
//!
//! Each handler reads only the fields it needs; a body it cannot interpret (a shape DynamoDB
//! will refuse) is forwarded uncached, so DynamoDB words the error and nothing is stored.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::cache::{Cached, FillTicket, ItemCache, WriteOutcome, WriteTicket};
use crate::error::ProxyError;
use crate::keys::{ItemKey, KeyValue, WireKey, WireKeyRef, is_wire_canonical_number, wire_json};
use crate::operation::Operation;
use crate::projection::Projection;
use crate::proxy::forward;
use crate::response::{self, CacheStatus, ProxyResponse};
use crate::schema::SchemaError;
use crate::state::State;
use crate::upstream::UpstreamResponse;

/// How a handler answered.
pub type Handled = Result<(ProxyResponse, CacheStatus), ProxyError>;

/// The shared result of one upstream read for a single-flight group.
pub type Fetched = Arc<Result<UpstreamResponse, ProxyError>>;

/// Key of a single-flight group: the item, the projection, whether capacity is reported
/// (requests that differ in what the answer contains never share one), and the key's write
/// stamp (requests that have seen different writes never share one).
pub type FlightKey = (ItemKey, Option<Arc<str>>, bool, u64);

// ---------------------------------------------------------------------------------------------
// Reads

/// The fields of a GetItem the proxy reads, borrowed from the body where possible: this is
/// parsed on every hit. (No `#[serde(flatten)]`: it would buffer the whole request first.)
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetItemInput<'a> {
    #[serde(borrow)]
    table_name: Cow<'a, str>,
    #[serde(borrow)]
    key: WireKeyRef<'a>,
    #[serde(default)]
    consistent_read: bool,
    projection_expression: Option<String>,
    expression_attribute_names: Option<BTreeMap<String, String>>,
    attributes_to_get: Option<Vec<String>>,
    #[serde(borrow)]
    return_consumed_capacity: Option<Cow<'a, str>>,
}

impl GetItemInput<'_> {
    fn projection(&mut self) -> ProjectionInput {
        ProjectionInput {
            projection_expression: self.projection_expression.take(),
            expression_attribute_names: self.expression_attribute_names.take(),
            attributes_to_get: self.attributes_to_get.take(),
        }
    }
}

/// The parameters that select which attributes a read returns.
#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "PascalCase")]
struct ProjectionInput {
    projection_expression: Option<String>,
    expression_attribute_names: Option<BTreeMap<String, String>>,
    attributes_to_get: Option<Vec<String>>,
}

impl ProjectionInput {
    /// A canonical name for the projection; `None` when the whole item is read.
    /// Names are substituted so `#a` and `a` spellings of one projection are one entry.
    fn variant(&self) -> Option<Arc<str>> {
        if let Some(expr) = &self.projection_expression {
            let mut canonical = String::with_capacity(expr.len() + 2);
            canonical.push('P');
            let mut token = String::new();
            let flush = |token: &mut String, out: &mut String| {
                match self
                    .expression_attribute_names
                    .as_ref()
                    .and_then(|n| n.get(token.as_str()))
                {
                    // Escaped so a substituted name can never read as expression syntax.
                    Some(name) => {
                        out.push('`');
                        out.push_str(&name.replace('`', "``"));
                        out.push('`');
                    }
                    None => out.push_str(token),
                }
                token.clear();
            };
            for c in expr.chars() {
                if c.is_alphanumeric() || c == '#' || c == '_' {
                    token.push(c);
                } else {
                    flush(&mut token, &mut canonical);
                    if !c.is_whitespace() {
                        canonical.push(c);
                    }
                }
            }
            flush(&mut token, &mut canonical);
            return Some(canonical.into());
        }
        self.attributes_to_get
            .as_ref()
            .map(|names| format!("A{}", names.join("\u{0}")).into())
    }
}

impl ProjectionInput {
    /// The projection evaluated on a cached whole item (its JSON attribute map); `None` when
    /// it cannot be evaluated here with certainty.
    fn apply(&self, item: &[u8]) -> Option<Bytes> {
        let projection = match (&self.projection_expression, &self.attributes_to_get) {
            (Some(expr), _) => Projection::parse(expr, self.expression_attribute_names.as_ref())?,
            (None, Some(names)) => Projection::attributes(names)?,
            (None, None) => return None,
        };
        let item: Map<String, Value> = serde_json::from_slice(item).ok()?;
        let projected = projection.apply(&item)?;
        Some(Bytes::from(Value::Object(projected).to_string()))
    }
}

fn wants_capacity(rcc: Option<&str>) -> bool {
    rcc.is_some_and(|v| v != "NONE")
}

/// Answers a request from memory if it can, without any upstream call or await: the hit path.
/// `None` sends the request down the full path ([`get_item`] and the rest).
pub fn answer_from_memory(state: &State, op: Operation, body: &[u8]) -> Option<ProxyResponse> {
    match op {
        Operation::GetItem => {
            let mut input = parse::<GetItemInput>(body)?;
            let cache = &state.items;
            if input.consistent_read || !cache.caches(&input.table_name) {
                return None;
            }
            let key = ItemKey::from_ref(&input.table_name, &input.key)?;
            let wanted = input.projection();
            let variant = wanted.variant();
            let capacity = wants_capacity(input.return_consumed_capacity.as_deref());
            let cached = cache.get(&key)?;
            // Counted here for hits; misses are counted on their way upstream.
            state
                .hot_keys
                .touch(&key, &input.table_name, || Some(wire_json(&input.key)));
            let hit = |response| {
                state.metrics.record_table(&input.table_name, false, true);
                Some(response)
            };
            // The common hit: the whole item, kept as its ready answer.
            if variant.is_none()
                && !capacity
                && let Some(whole) = &cached.whole
            {
                let (answer, crc) = whole.answer();
                return hit(response::generated_with_crc(
                    StatusCode::OK,
                    answer.clone(),
                    crc,
                    CacheStatus::Hit,
                ));
            }
            if let Some(item) = cached.answer(variant.as_deref()) {
                return hit(get_item_answer(item.as_ref(), &input.table_name, capacity));
            }
            // Going further than DAX: a projection DynamoDB has accepted before, of an item
            // whose whole is cached, is evaluated here.
            if let Some(projection) = &variant
                && let Some(whole) = cached.whole.as_ref().and_then(|w| w.item())
                && cache.knows_projection(&input.table_name, projection)
                && let Some(projected) = wanted.apply(&whole)
            {
                return Some(get_item_answer(
                    Some(&projected),
                    &input.table_name,
                    capacity,
                ));
            }
            None
        }
        Operation::Query | Operation::Scan => crate::queries::answer_from_memory(state, op, body),
        _ => None,
    }
}

/// GetItem that memory could not answer: one upstream read, shared by concurrent misses,
/// whose answer fills the cache.
pub async fn get_item(state: &State, target: &HeaderValue, body: Bytes) -> Handled {
    let Some(mut input) = parse::<GetItemInput>(&body) else {
        return bypass(state, Operation::GetItem, target, body.clone()).await;
    };
    let cache = &state.items;
    if input.consistent_read || !cache.caches(&input.table_name) {
        return bypass(state, Operation::GetItem, target, body.clone()).await;
    }
    let Some(key) = ItemKey::from_ref(&input.table_name, &input.key) else {
        return bypass(state, Operation::GetItem, target, body.clone()).await;
    };
    let variant = input.projection().variant();
    let capacity = wants_capacity(input.return_consumed_capacity.as_deref());
    let table = input.table_name.to_string();
    state.streams.follow(&table);
    state
        .hot_keys
        .touch(&key, &table, || Some(wire_json(&input.key)));
    let flight: FlightKey = (
        key.clone(),
        variant.clone(),
        capacity,
        cache.write_stamp(&key),
    );
    let (fetched, coalesced) = state
        .flights
        .run(&flight, || async {
            let ticket = cache.begin_fill();
            let result = forward(state, Operation::GetItem, target, body)
                .await
                .and_then(|answer| {
                    if answer.status != StatusCode::OK {
                        return Ok(answer);
                    }
                    // A success we cannot read is not DynamoDB's answer: never cached, never
                    // relayed; the caller's SDK retries the 500.
                    let item = read_get_item(&answer.body)?;
                    if let Some(projection) = &variant {
                        cache.learn_projection(&table, projection);
                    }
                    cache.fill_answer(&key, ticket, variant.clone(), item);
                    Ok(answer)
                });
            Arc::new(result)
        })
        .await;
    if coalesced {
        state.metrics.coalesced_misses.inc();
    }
    state.metrics.record_table(&table, false, false);
    if state.config.cache.serve_stale_on_error
        && upstream_failed(&fetched)
        && let Some(cached) = cache.get_stale(&key)
        && let Some(response) = stale_get_item(&cached, variant.as_deref(), &table, capacity)
    {
        state.metrics.record_table(&table, false, true);
        return Ok((response, CacheStatus::Stale));
    }
    match &*fetched {
        Ok(answer) => Ok((relay(answer, CacheStatus::Miss), CacheStatus::Miss)),
        Err(err) => Err(err.clone()),
    }
}

/// Whether DynamoDB failed to answer: the proxy could not reach it or read its answer, it
/// answered 5xx, or it throttled. (Other 4xx are the caller's to handle.)
pub(crate) fn upstream_failed(result: &Result<UpstreamResponse, ProxyError>) -> bool {
    match result {
        Err(err) => err.is_upstream(),
        Ok(answer) if answer.status.is_server_error() => true,
        Ok(answer) if answer.status == StatusCode::BAD_REQUEST => {
            #[derive(Deserialize)]
            struct ErrorType<'a> {
                #[serde(rename = "__type", borrow)]
                kind: Option<&'a str>,
            }
            serde_json::from_slice::<ErrorType>(&answer.body)
                .ok()
                .and_then(|e| e.kind)
                .is_some_and(|kind| {
                    let name = kind.rsplit('#').next().unwrap_or(kind);
                    matches!(
                        name,
                        "ThrottlingException"
                            | "ProvisionedThroughputExceededException"
                            | "RequestLimitExceeded"
                    )
                })
        }
        Ok(_) => false,
    }
}

/// A GetItem answer from an entry past its TTL, marked stale.
fn stale_get_item(
    cached: &Cached,
    variant: Option<&str>,
    table: &str,
    capacity: bool,
) -> Option<ProxyResponse> {
    if variant.is_none()
        && !capacity
        && let Some(whole) = &cached.whole
    {
        let (answer, crc) = whole.answer();
        return Some(response::generated_with_crc(
            StatusCode::OK,
            answer.clone(),
            crc,
            CacheStatus::Stale,
        ));
    }
    let item = cached.answer(variant)?;
    let mut response = get_item_answer(item.as_ref(), table, capacity);
    response::mark(&mut response, CacheStatus::Stale);
    Some(response)
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
fn get_item_answer(item: Option<&Bytes>, table: &str, capacity: bool) -> ProxyResponse {
    let mut body = Vec::with_capacity(item.map_or(2, |i| i.len() + 10) + 64);
    body.push(b'{');
    if let Some(item) = item {
        body.extend_from_slice(b"\"Item\":");
        body.extend_from_slice(item);
    }
    if capacity {
        if item.is_some() {
            body.push(b',');
        }
        push_zero_capacity(&mut body, table);
    }
    body.push(b'}');
    response::generated(StatusCode::OK, Bytes::from(body), CacheStatus::Hit)
}

/// `"ConsumedCapacity":{"TableName":T,"CapacityUnits":0.0}`: a hit costs the table nothing.
fn push_zero_capacity(body: &mut Vec<u8>, table: &str) {
    body.extend_from_slice(b"\"ConsumedCapacity\":");
    body.extend_from_slice(zero_capacity(table).to_string().as_bytes());
}

fn zero_capacity(table: &str) -> Value {
    serde_json::json!({ "TableName": table, "CapacityUnits": 0.0 })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchGetInput {
    request_items: BTreeMap<String, Map<String, Value>>,
    return_consumed_capacity: Option<String>,
}

/// One table's part of a BatchGetItem.
struct BatchTable {
    name: String,
    /// Every other parameter of the table's request, kept for the smaller upstream request.
    params: Map<String, Value>,
    variant: Option<Arc<str>>,
    /// Attribute names of the table's key, from the requested keys.
    key_names: Vec<String>,
    hits: Vec<Bytes>,
    misses: Vec<(Value, ItemKey)>,
}

/// BatchGetItem: hits from memory, only the misses upstream in one smaller BatchGetItem, and
/// the two merged into one answer. `UnprocessedKeys` come back as DynamoDB returned them.
pub async fn batch_get_item(state: &State, target: &HeaderValue, body: Bytes) -> Handled {
    let op = Operation::BatchGetItem;
    let Some(input) = parse::<BatchGetInput>(&body) else {
        return bypass(state, op, target, body).await;
    };
    let cache = &state.items;
    let mut tables = Vec::new();
    for (name, mut params) in input.request_items {
        let consistent = params.get("ConsistentRead") == Some(&Value::Bool(true));
        let Some(Value::Array(keys)) = params.remove("Keys") else {
            return bypass(state, op, target, body).await;
        };
        let projection: ProjectionInput =
            match serde_json::from_value(Value::Object(params.clone())) {
                Ok(p) => p,
                Err(_) => return bypass(state, op, target, body).await,
            };
        state.streams.follow(&name);
        let mut table = BatchTable {
            variant: projection.variant(),
            key_names: Vec::new(),
            hits: Vec::new(),
            misses: Vec::new(),
            params,
            name,
        };
        for raw in keys {
            let Ok(wire) = serde_json::from_value::<WireKey>(raw.clone()) else {
                return bypass(state, op, target, body).await;
            };
            let Some(key) = ItemKey::new(&table.name, &wire) else {
                return bypass(state, op, target, body).await;
            };
            table.key_names = wire.keys().cloned().collect();
            let cached = (!consistent && cache.caches(&table.name))
                .then(|| cache.get(&key))
                .flatten();
            match cached
                .as_ref()
                .and_then(|c| c.answer(table.variant.as_deref()))
            {
                Some(Some(item)) => table.hits.push(item.clone()),
                Some(None) => {} // known not to exist: contributes nothing
                None => table.misses.push((raw, key)),
            }
        }
        // A strongly consistent table never fills: its reads are not ours to remember.
        if consistent || !cache.caches(&table.name) {
            table.variant = Some("uncached".into());
            table.key_names.clear();
        }
        tables.push(table);
    }
    let capacity = wants_capacity(input.return_consumed_capacity.as_deref());
    for table in &tables {
        for _ in &table.hits {
            state.metrics.record_table(&table.name, false, true);
        }
        for _ in &table.misses {
            state.metrics.record_table(&table.name, false, false);
        }
    }

    if tables.iter().all(|t| t.misses.is_empty()) {
        let answer = merge_batch(&tables, None, capacity);
        return Ok((
            response::generated(StatusCode::OK, answer, CacheStatus::Hit),
            CacheStatus::Hit,
        ));
    }

    // The smaller request: only the misses, every other parameter as the caller sent it.
    let mut request_items = Map::new();
    for table in tables.iter().filter(|t| !t.misses.is_empty()) {
        let mut params = table.params.clone();
        let keys = table.misses.iter().map(|(raw, _)| raw.clone()).collect();
        params.insert("Keys".into(), Value::Array(keys));
        request_items.insert(table.name.clone(), Value::Object(params));
    }
    let mut request = Map::new();
    request.insert("RequestItems".into(), Value::Object(request_items));
    if let Some(rcc) = &input.return_consumed_capacity {
        request.insert("ReturnConsumedCapacity".into(), Value::String(rcc.clone()));
    }
    let tickets: Vec<Vec<FillTicket>> = tables
        .iter()
        .map(|t| t.misses.iter().map(|_| cache.begin_fill()).collect())
        .collect();
    let request = Bytes::from(Value::Object(request).to_string());
    let answer = forward(state, op, target, request).await?;
    if answer.status != StatusCode::OK {
        return Ok((relay(&answer, CacheStatus::Miss), CacheStatus::Miss));
    }
    let output = serde_json::from_slice::<Value>(&answer.body)
        .map_err(|e| ProxyError::UpstreamGarbled(format!("BatchGetItem answer: {e}")))?;
    for (table, tickets) in tables.iter().zip(tickets) {
        fill_batch_table(cache, table, tickets, &output);
    }
    let merged = merge_batch(&tables, Some(&output), capacity);
    Ok((
        response::relayed_with_body(StatusCode::OK, &answer.headers, merged, CacheStatus::Miss),
        CacheStatus::Miss,
    ))
}

/// Caches what the upstream returned for one table's misses: found items, and keys that are
/// neither returned nor unprocessed (they do not exist).
fn fill_batch_table(
    cache: &ItemCache,
    table: &BatchTable,
    tickets: Vec<FillTicket>,
    output: &Value,
) {
    if table.key_names.is_empty() || table.misses.is_empty() {
        return;
    }
    let returned = output["Responses"][&table.name].as_array();
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
        if let Some(key) = ItemKey::new(&table.name, &wire) {
            found.insert(key, Bytes::from(item.to_string()));
        }
    }
    let unprocessed: HashSet<ItemKey> = output["UnprocessedKeys"][&table.name]["Keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| serde_json::from_value::<WireKey>(k.clone()).ok())
        .filter_map(|wire| ItemKey::new(&table.name, &wire))
        .collect();
    for ((_, key), ticket) in table.misses.iter().zip(tickets) {
        if unprocessed.contains(key) {
            continue;
        }
        cache.fill_answer(key, ticket, table.variant.clone(), found.remove(key));
    }
}

/// One BatchGetItem answer from the hits and (if asked) the upstream's answer for the misses.
fn merge_batch(tables: &[BatchTable], upstream: Option<&Value>, capacity: bool) -> Bytes {
    let mut responses = Map::new();
    for table in tables {
        let mut items: Vec<Value> = table
            .hits
            .iter()
            .filter_map(|raw| serde_json::from_slice(raw).ok())
            .collect();
        if let Some(Value::Array(fetched)) = upstream.and_then(|u| u["Responses"].get(&table.name))
        {
            items.extend(fetched.iter().cloned());
        }
        responses.insert(table.name.clone(), Value::Array(items));
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
        _ if capacity => Some(Vec::new()),
        _ => None,
    };
    if capacity && let Some(consumed) = &mut consumed {
        for table in tables {
            if !consumed
                .iter()
                .any(|e| e["TableName"] == table.name.as_str())
            {
                consumed.push(zero_capacity(&table.name));
            }
        }
    }
    if let Some(consumed) = consumed {
        out.insert("ConsumedCapacity".into(), Value::Array(consumed));
    }
    Bytes::from(Value::Object(out).to_string())
}

// ---------------------------------------------------------------------------------------------
// Writes

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutItemInput<'a> {
    table_name: String,
    #[serde(borrow)]
    item: &'a RawValue,
}

/// PutItem: on success the cache holds the new item (when it is byte-equivalent to what
/// DynamoDB will return); on any failure the key is dropped.
pub async fn put_item(state: &State, target: &HeaderValue, body: Bytes) -> Handled {
    let op = Operation::PutItem;
    let Some(input) = parse::<PutItemInput>(&body) else {
        return bypass(state, op, target, body).await;
    };
    let touched = match item_key_of(state, &input.table_name, input.item).await {
        Ok(Some(touched)) => touched,
        Ok(None) => return bypass(state, op, target, body).await,
        Err(()) => {
            let table = input.table_name.clone();
            return write_invalidating_table(state, op, target, body.clone(), &table).await;
        }
    };
    let item = body.slice_ref(input.item.get().as_bytes());
    let storable = is_storable(&item);
    write_through(state, op, target, body, vec![touched], move |answer| {
        vec![match (answer.status == StatusCode::OK, storable) {
            (true, true) => WriteOutcome::Item(Some(item)),
            (true, false) => WriteOutcome::Unknown,
            (false, _) => WriteOutcome::Failed,
        }]
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyedInput {
    table_name: String,
    key: WireKey,
    return_values: Option<String>,
}

/// DeleteItem: on success the cache remembers the item does not exist.
pub async fn delete_item(state: &State, target: &HeaderValue, body: Bytes) -> Handled {
    let op = Operation::DeleteItem;
    let Some(input) = parse::<KeyedInput>(&body) else {
        return bypass(state, op, target, body).await;
    };
    let Some(touched) = keyed(state, &input.table_name, &input.key).await else {
        return bypass(state, op, target, body).await;
    };
    write_through(state, op, target, body, vec![touched], |answer| {
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
pub async fn update_item(state: &State, target: &HeaderValue, body: Bytes) -> Handled {
    let op = Operation::UpdateItem;
    let Some(input) = parse::<KeyedInput>(&body) else {
        return bypass(state, op, target, body).await;
    };
    let Some(touched) = keyed(state, &input.table_name, &input.key).await else {
        return bypass(state, op, target, body).await;
    };
    if !state.items.caches(&input.table_name) {
        let result = bypass(state, op, target, body).await;
        state
            .queries
            .wrote(&touched.table, touched.partition.as_ref());
        return result;
    }
    let key = touched.key;
    let asked = input.return_values.as_deref().unwrap_or("NONE");
    let (request, trim) = match asked {
        "NONE" => {
            let Ok(mut fields) = serde_json::from_slice::<Map<String, Value>>(&body) else {
                return bypass(state, op, target, body).await;
            };
            fields.insert("ReturnValues".into(), Value::String("ALL_NEW".into()));
            (Bytes::from(Value::Object(fields).to_string()), true)
        }
        _ => (body, false),
    };
    let learns_item = asked == "NONE" || asked == "ALL_NEW";
    let ticket = state.items.begin_write(&key);
    let result = forward(state, op, target, request).await;
    let mut outcome = match &result {
        Ok(answer) if answer.status == StatusCode::OK => WriteOutcome::Unknown,
        _ => WriteOutcome::Failed,
    };
    let mut trimmed = None;
    if let Ok(answer) = &result
        && answer.status == StatusCode::OK
        && learns_item
        && let Ok(output) = serde_json::from_slice::<AttributesOutput>(&answer.body)
        && let Some(attributes) = output.attributes
    {
        outcome = WriteOutcome::Item(Some(answer.body.slice_ref(attributes.get().as_bytes())));
        if trim {
            trimmed = without_attributes(&answer.body);
        }
    }
    if trim && trimmed.is_none() && matches!(&result, Ok(a) if a.status == StatusCode::OK) {
        // Could not trim the answer to what was asked: the caller must not see Attributes.
        state.items.end_write(&key, ticket, WriteOutcome::Unknown);
        state
            .queries
            .wrote(&touched.table, touched.partition.as_ref());
        return Err(ProxyError::UpstreamUnavailable(
            "unreadable UpdateItem answer".into(),
        ));
    }
    state.items.end_write(&key, ticket, outcome);
    state
        .queries
        .wrote(&touched.table, touched.partition.as_ref());
    let answer = result?;
    let response = match trimmed {
        Some(body) => {
            response::relayed_with_body(answer.status, &answer.headers, body, CacheStatus::Bypass)
        }
        None => relay(&answer, CacheStatus::Bypass),
    };
    Ok((response, CacheStatus::Bypass))
}

/// The answer without `Attributes`, as DynamoDB answers `ReturnValues: NONE`.
fn without_attributes(body: &[u8]) -> Option<Bytes> {
    let mut fields = serde_json::from_slice::<Map<String, Value>>(body).ok()?;
    fields.remove("Attributes");
    Some(Bytes::from(Value::Object(fields).to_string()))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchWriteInput<'a> {
    #[serde(borrow)]
    request_items: BTreeMap<String, Vec<WriteRequestInput<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WriteRequestInput<'a> {
    #[serde(borrow)]
    put_request: Option<PutRequestInput<'a>>,
    delete_request: Option<DeleteRequestInput>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRequestInput<'a> {
    #[serde(borrow)]
    item: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteRequestInput {
    key: WireKey,
}

/// BatchWriteItem: processed puts and deletes update the cache, `UnprocessedItems` are dropped.
pub async fn batch_write_item(state: &State, target: &HeaderValue, body: Bytes) -> Handled {
    let op = Operation::BatchWriteItem;
    let Some(input) = parse::<BatchWriteInput>(&body) else {
        return bypass(state, op, target, body).await;
    };
    // (what it touches, what it becomes if processed)
    let mut writes: Vec<(Touched, Option<Option<Bytes>>)> = Vec::new();
    for (table, requests) in &input.request_items {
        for request in requests {
            let (key, item) = match (&request.put_request, &request.delete_request) {
                (Some(put), None) => match item_key_of(state, table, put.item).await {
                    Ok(Some(touched)) => {
                        let item = body.slice_ref(put.item.get().as_bytes());
                        let storable = is_storable(&item);
                        (touched, storable.then_some(Some(item)))
                    }
                    Ok(None) => return bypass(state, op, target, body).await,
                    Err(()) => {
                        let table = table.clone();
                        return write_invalidating_table(state, op, target, body.clone(), &table)
                            .await;
                    }
                },
                (None, Some(delete)) => match keyed(state, table, &delete.key).await {
                    Some(touched) => (touched, Some(None)),
                    None => return bypass(state, op, target, body).await,
                },
                _ => return bypass(state, op, target, body).await,
            };
            writes.push((key, item));
        }
    }
    let (touched, items): (Vec<Touched>, Vec<_>) = writes.into_iter().unzip();
    let keys: Vec<ItemKey> = touched.iter().map(|t| t.key.clone()).collect();
    write_through(state, op, target, body, touched, move |answer| {
        let unprocessed = unprocessed_keys(state, &answer.body);
        keys.into_iter()
            .zip(items)
            .map(|(key, item)| match item {
                _ if answer.status != StatusCode::OK => WriteOutcome::Failed,
                Some(item) if !unprocessed.contains(&key) => WriteOutcome::Item(item),
                _ => WriteOutcome::Unknown,
            })
            .collect()
    })
    .await
}

/// Keys left in a BatchWriteItem's `UnprocessedItems` (puts resolved by schema when known).
fn unprocessed_keys(state: &State, body: &[u8]) -> HashSet<ItemKey> {
    let Ok(output) = serde_json::from_slice::<Value>(body) else {
        return HashSet::new();
    };
    let mut keys = HashSet::new();
    let Some(tables) = output["UnprocessedItems"].as_object() else {
        return keys;
    };
    for (table, requests) in tables {
        for request in requests.as_array().into_iter().flatten() {
            let wire = if let Some(key) = request.pointer("/DeleteRequest/Key") {
                serde_json::from_value::<WireKey>(key.clone()).ok()
            } else if let Some(item) = request.pointer("/PutRequest/Item") {
                state
                    .schemas
                    .cached(table)
                    .and_then(|schema| key_from_item_value(&schema.key, item))
            } else {
                None
            };
            if let Some(key) = wire.and_then(|w| ItemKey::new(table, &w)) {
                keys.insert(key);
            }
        }
    }
    keys
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TransactWriteInput<'a> {
    #[serde(borrow)]
    transact_items: Vec<TransactItemInput<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TransactItemInput<'a> {
    #[serde(borrow)]
    put: Option<TransactPut<'a>>,
    update: Option<TransactKeyed>,
    delete: Option<TransactKeyed>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TransactPut<'a> {
    table_name: String,
    #[serde(borrow)]
    item: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TransactKeyed {
    table_name: String,
    key: WireKey,
}

/// TransactWriteItems: every key it touches is dropped (no extra read cost, unlike DAX's
/// background refill).
pub async fn transact_write_items(state: &State, target: &HeaderValue, body: Bytes) -> Handled {
    let op = Operation::TransactWriteItems;
    let Some(input) = parse::<TransactWriteInput>(&body) else {
        return bypass(state, op, target, body).await;
    };
    let mut keys = Vec::new();
    for item in &input.transact_items {
        let key = if let Some(put) = &item.put {
            match item_key_of(state, &put.table_name, put.item).await {
                Ok(Some(touched)) => touched,
                Ok(None) => return bypass(state, op, target, body).await,
                Err(()) => {
                    let table = put.table_name.clone();
                    return write_invalidating_table(state, op, target, body.clone(), &table).await;
                }
            }
        } else if let Some(named) = item.update.as_ref().or(item.delete.as_ref()) {
            match keyed(state, &named.table_name, &named.key).await {
                Some(touched) => touched,
                None => return bypass(state, op, target, body).await,
            }
        } else {
            continue; // ConditionCheck: reads, writes nothing
        };
        keys.push(key);
    }
    let count = keys.len();
    write_through(state, op, target, body, keys, move |answer| {
        let outcome = || match answer.status {
            StatusCode::OK => WriteOutcome::Unknown,
            _ => WriteOutcome::Failed,
        };
        (0..count).map(|_| outcome()).collect()
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TableInput {
    table_name: String,
}

/// CreateTable, UpdateTable, DeleteTable: the table's entries and schema are dropped.
pub async fn table_change(
    state: &State,
    op: Operation,
    target: &HeaderValue,
    body: Bytes,
) -> Handled {
    let table = parse::<TableInput>(&body).map(|t| t.table_name);
    let result = bypass(state, op, target, body).await;
    match table {
        Some(table) => {
            state.items.invalidate_table(&table, "table_change");
            state.queries.invalidate_table(&table, "table_change");
            state.schemas.forget(&table);
        }
        None => {
            state.items.invalidate_all("table_change");
            state.queries.invalidate_all("table_change");
        }
    }
    result
}

/// PartiQL: reads pass through uncached; a statement that writes drops its table's entries
/// (or everything, when the table cannot be told).
pub async fn partiql(state: &State, op: Operation, target: &HeaderValue, body: Bytes) -> Handled {
    let statements = partiql_statements(&body);
    let writes: Vec<Option<String>> = statements
        .iter()
        .map(|s| crate::partiql::statement(s))
        .filter(|s| s.writes)
        .map(|s| s.table)
        .collect();
    let result = bypass(state, op, target, body).await;
    for table in writes {
        match table {
            Some(table) => {
                state.items.invalidate_table(&table, "write");
                state.queries.invalidate_table(&table, "write");
            }
            None => {
                state.items.invalidate_all("write");
                state.queries.invalidate_all("write");
            }
        }
    }
    result
}

fn partiql_statements(body: &[u8]) -> Vec<String> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return vec![String::new()]; // unreadable: treated as a write to an unknown table
    };
    let mut statements: Vec<String> = Vec::new();
    if let Some(s) = value["Statement"].as_str() {
        statements.push(s.into());
    }
    for list in ["Statements", "TransactStatements"] {
        for entry in value[list].as_array().into_iter().flatten() {
            statements.push(entry["Statement"].as_str().unwrap_or("").into());
        }
    }
    statements
}

// ---------------------------------------------------------------------------------------------
// Shared steps

/// Forwards `body` uncached.
pub async fn bypass(state: &State, op: Operation, target: &HeaderValue, body: Bytes) -> Handled {
    let answer = forward(state, op, target, body).await?;
    Ok((relay(&answer, CacheStatus::Bypass), CacheStatus::Bypass))
}

/// Brackets a write to the `touched` items with the caches' write tracking, and records what `decide` says
/// each key became (in order). A failed exchange leaves every key unknown.
async fn write_through(
    state: &State,
    op: Operation,
    target: &HeaderValue,
    body: Bytes,
    touched: Vec<Touched>,
    decide: impl FnOnce(&UpstreamResponse) -> Vec<WriteOutcome>,
) -> Handled {
    let tickets: Vec<WriteTicket> = touched
        .iter()
        .map(|t| {
            state.streams.follow(&t.table);
            state.items.begin_write(&t.key)
        })
        .collect();
    let result = forward(state, op, target, body).await;
    let outcomes = match &result {
        Ok(answer) => decide(answer),
        Err(_) => Vec::new(),
    };
    let mut outcomes = outcomes.into_iter();
    for (touched, ticket) in touched.iter().zip(tickets) {
        let outcome = outcomes.next().unwrap_or(WriteOutcome::Failed);
        state.items.end_write(&touched.key, ticket, outcome);
        // Whatever the outcome (a timed-out write may still have happened).
        state
            .queries
            .wrote(&touched.table, touched.partition.as_ref());
    }
    let answer = result?;
    Ok((relay(&answer, CacheStatus::Bypass), CacheStatus::Bypass))
}

/// A write whose keys the proxy could not derive (no schema): the whole table is dropped after.
async fn write_invalidating_table(
    state: &State,
    op: Operation,
    target: &HeaderValue,
    body: Bytes,
    table: &str,
) -> Handled {
    let result = bypass(state, op, target, body).await;
    state.items.invalidate_table(table, "write");
    state.queries.invalidate_table(table, "write");
    result
}

/// What a write touches: the item's cache key, and its table and partition for the query
/// cache (`None` partition: unknown, the whole table's queries are dropped).
struct Touched {
    key: ItemKey,
    table: String,
    partition: Option<KeyValue>,
}

/// What an item about to be written touches. `Ok(None)`: the write will be refused by
/// DynamoDB (no such table, or the item lacks its key), so nothing changes. `Err`: the schema
/// could not be had; the caller must assume anything in the table may change.
async fn item_key_of(state: &State, table: &str, item: &RawValue) -> Result<Option<Touched>, ()> {
    let schema = match state.schemas.get(table).await {
        Ok(schema) => schema,
        Err(SchemaError::NotFound(_)) => return Ok(None),
        Err(err) => {
            tracing::warn!(table, error = %err, "no key schema; writes drop the whole table");
            return Err(());
        }
    };
    let Ok(item) = serde_json::from_str::<Value>(item.get()) else {
        return Ok(None);
    };
    let Some(wire) = key_from_item_value(&schema.key, &item) else {
        return Ok(None);
    };
    Ok(ItemKey::new(table, &wire).map(|key| Touched {
        key,
        table: table.to_string(),
        partition: wire.get(&schema.key.partition).cloned(),
    }))
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

fn key_from_item_value(schema: &crate::schema::KeySchema, item: &Value) -> Option<WireKey> {
    let mut wire = Map::new();
    for name in std::iter::once(&schema.partition).chain(schema.sort.as_ref()) {
        wire.insert(name.clone(), item.get(name)?.clone());
    }
    serde_json::from_value(Value::Object(wire)).ok()
}

/// Whether an item written by a client can be cached as written: every number already in the
/// form DynamoDB answers with (otherwise a later read would see different text).
fn is_storable(item: &[u8]) -> bool {
    fn canonical(value: &Value) -> bool {
        match value {
            Value::Object(typed) => typed.iter().all(|(kind, inner)| match kind.as_str() {
                "N" => inner.as_str().is_some_and(is_wire_canonical_number),
                "NS" => inner.as_array().is_some_and(|ns| {
                    ns.iter()
                        .all(|n| n.as_str().is_some_and(is_wire_canonical_number))
                }),
                "M" => inner.as_object().is_some_and(|m| m.values().all(canonical)),
                "L" => inner.as_array().is_some_and(|l| l.iter().all(canonical)),
                _ => true,
            }),
            _ => false,
        }
    }
    serde_json::from_slice::<Map<String, Value>>(item)
        .is_ok_and(|attributes| attributes.values().all(canonical))
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
}

fn relay(answer: &UpstreamResponse, cache: CacheStatus) -> ProxyResponse {
    response::relayed(answer.status, &answer.headers, answer.body.clone(), cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_variants_substitute_names() {
        let a = ProjectionInput {
            projection_expression: Some("#a, b.c[1]".into()),
            expression_attribute_names: Some([("#a".to_string(), "x".to_string())].into()),
            attributes_to_get: None,
        };
        let b = ProjectionInput {
            projection_expression: Some("x,b.c[1]".into()),
            ..Default::default()
        };
        // `#a`->x is escaped, so it is not the same text as a bare x (which could also be a
        // reserved-word clash DynamoDB refuses); both are stable.
        assert_eq!(a.variant(), a.clone().variant());
        assert_ne!(a.variant(), None);
        assert_ne!(b.variant(), None);
        let atg = ProjectionInput {
            attributes_to_get: Some(vec!["x".into(), "y".into()]),
            ..Default::default()
        };
        assert_ne!(atg.variant(), b.variant());
        assert_eq!(ProjectionInput::default().variant(), None);
    }

    #[test]
    fn storable_items_have_wire_canonical_numbers() {
        assert!(is_storable(
            br#"{"pk":{"S":"a"},"n":{"N":"1.5"},"m":{"M":{"x":{"NS":["1","2"]}}}}"#
        ));
        assert!(!is_storable(br#"{"pk":{"S":"a"},"n":{"N":"1.50"}}"#));
        assert!(!is_storable(br#"{"pk":{"S":"a"},"l":{"L":[{"N":"1e3"}]}}"#));
        assert!(!is_storable(br#"{"pk":{"S":"a"},"s":{"NS":["01"]}}"#));
        assert!(!is_storable(b"not json"));
    }
}
