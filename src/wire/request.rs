//! The typed request: a DynamoDB request parsed once, from its operation and body, into what
//! every later step reads (authorisation, cache keys, metrics, logs, warm starts).
//!
//! The body itself is kept only to be forwarded byte for byte. A body that does not have the
//! shape DynamoDB accepts, or that DynamoDB might refuse, is typed as [`Form::Forward`]: it
//! goes upstream as it came, DynamoDB words the answer, and nothing is cached from it.
//!
//! Two ways in, each reading the body once: the operations on the hot path (GetItem and the
//! item writes) deserialise straight into their typed form; the rest are read as one JSON
//! object that refuses repeated keys, and typed from that.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::json;
use super::keys::{ItemKey, WireKey, WireKeyRef, is_wire_canonical_number, query_key};
use super::operation::Operation;
use super::partiql;
use super::projection::ProjectionInput;
use super::tables::{self, Named, Naming, TableRef};

/// Most keys one BatchGetItem may ask for.
pub(crate) const BATCH_GET_MAX_KEYS: usize = 100;
/// Most writes one BatchWriteItem may make.
pub(crate) const BATCH_WRITE_MAX_ITEMS: usize = 25;
/// Most items one transaction may hold.
pub(crate) const TRANSACT_MAX_ITEMS: usize = 100;

/// A request as the engine sees it.
#[derive(Debug)]
pub struct DynamoRequest {
    pub op: Operation,
    /// The `X-Amz-Target` it is forwarded with.
    pub target: HeaderValue,
    /// The body as the caller sent it: forwarded byte for byte, never re-read.
    pub body: Bytes,
    /// The tables it names (see [`DynamoRequest::tables`]); for a typed GetItem, its form
    /// names its one table and this is not built, so a hit allocates nothing for it.
    named: Option<Named>,
    /// What the engine does with it.
    pub form: Form,
}

/// The typed forms of the requests the engine reads.
#[derive(Debug)]
pub enum Form {
    GetItem(GetItem),
    BatchGetItem(BatchGet),
    QueryOrScan(QueryOrScan),
    PutItem(PutItem),
    DeleteItem(KeyedWrite),
    UpdateItem(KeyedWrite),
    BatchWriteItem(Vec<WriteAction>),
    TransactWriteItems(Vec<WriteAction>),
    /// CreateTable, UpdateTable, DeleteTable (`None`: the table cannot be read).
    TableChange(Option<String>),
    /// PartiQL: the tables its writing statements change (`None`: a table the proxy cannot
    /// tell, so everything is dropped).
    PartiQl {
        writes: Vec<Option<String>>,
    },
    /// A write the proxy cannot attribute to keys (a table named by an ARN it cannot place):
    /// forwarded, then these tables are dropped.
    WriteToTables(Vec<String>),
    /// Forwarded as it came, uncached.
    Forward,
    /// Not one JSON object, for an operation whose body the proxy reads.
    NotJson,
}

/// An eventually consistent GetItem the cache may answer (a consistent one is [`Form::Forward`]).
#[derive(Debug)]
pub struct GetItem {
    pub table: String,
    pub key: ItemKey,
    /// The key as the caller wrote it (for the hot-key list).
    pub wire_key: Bytes,
    pub projection: ProjectionInput,
    /// The projection's canonical name; `None` for the whole item.
    pub variant: Option<Arc<str>>,
    /// The `ConsumedCapacity` the caller asked for.
    pub capacity: Capacity,
}

/// A BatchGetItem that DynamoDB would accept.
#[derive(Debug)]
pub struct BatchGet {
    pub tables: Vec<BatchTable>,
    pub return_consumed_capacity: Option<String>,
    pub capacity: Capacity,
}

/// One table's part of a BatchGetItem.
#[derive(Debug)]
pub struct BatchTable {
    /// The table as the request names it (the key of `RequestItems` and of the answer).
    pub sent: String,
    /// The plain name, for the cache.
    pub table: String,
    /// Whether the cache may answer and fill it (eventually consistent, own region).
    pub cacheable: bool,
    /// Every parameter but `Keys`, for the smaller upstream request.
    pub params: Map<String, Value>,
    pub variant: Option<Arc<str>>,
    /// The keys in request order: as sent, and canonical.
    pub keys: Vec<(Value, ItemKey)>,
    /// The key's attribute names, from the requested keys.
    pub key_names: Vec<String>,
}

/// An eventually consistent Query or Scan the cache may answer.
#[derive(Debug)]
pub struct QueryOrScan {
    pub table: String,
    /// Everything that changes the answer: the query cache's key.
    pub cache_key: Arc<[u8]>,
    /// The request without `ReturnConsumedCapacity`.
    pub request: Map<String, Value>,
    pub capacity: Capacity,
    /// The index it reads, if any (its capacity is reported under the index's name).
    pub index: Option<String>,
}

/// A PutItem of a table the proxy can place.
#[derive(Debug)]
pub struct PutItem {
    pub table: String,
    pub item: NewItem,
}

/// An item a write puts.
#[derive(Debug)]
pub struct NewItem {
    /// The item as sent (a slice of the body).
    pub raw: Bytes,
    /// Each top-level attribute's value as sent (a slice of the body).
    pub attributes: BTreeMap<String, Bytes>,
    /// Whether the item can be cached as written: every number already in the form DynamoDB
    /// answers with (otherwise a later read would see different text).
    pub storable: bool,
}

/// DeleteItem or UpdateItem.
#[derive(Debug)]
pub struct KeyedWrite {
    pub table: String,
    pub key: WireKey,
    pub return_values: Option<String>,
    /// Where `ReturnValues`' value sits in the body, so a copy asking for something else can
    /// be made without reading the body again.
    pub return_values_at: Option<std::ops::Range<usize>>,
}

impl KeyedWrite {
    /// The request `body` asking for `ReturnValues: ALL_NEW` instead, every other byte as
    /// the caller sent it.
    pub fn asking_all_new(&self, body: &Bytes) -> Bytes {
        const ALL_NEW: &[u8] = b"\"ALL_NEW\"";
        let mut out = Vec::with_capacity(body.len() + 32);
        match &self.return_values_at {
            Some(at) => {
                out.extend_from_slice(&body[..at.start]);
                out.extend_from_slice(ALL_NEW);
                out.extend_from_slice(&body[at.end..]);
            }
            None => {
                // A JSON object (it was parsed as one): the field goes before its last `}`.
                let close = body.iter().rposition(|b| *b == b'}').unwrap_or(body.len());
                let empty = body[..close]
                    .iter()
                    .rev()
                    .find(|b| !b.is_ascii_whitespace())
                    == Some(&b'{');
                out.extend_from_slice(&body[..close]);
                if !empty {
                    out.push(b',');
                }
                out.extend_from_slice(b"\"ReturnValues\":");
                out.extend_from_slice(ALL_NEW);
                out.extend_from_slice(&body[close..]);
            }
        }
        Bytes::from(out)
    }
}

/// One write of a batch or transaction.
#[derive(Debug)]
pub enum WriteAction {
    Put {
        table: String,
        item: NewItem,
    },
    /// A delete or an update, by key.
    Keyed {
        table: String,
        key: WireKey,
    },
    /// A transaction's condition check: reads, writes nothing.
    Check,
}

impl DynamoRequest {
    /// Types `body` as `op`. Never fails: what the proxy cannot read is forwarded.
    pub fn parse(op: Operation, target: HeaderValue, body: Bytes, naming: &Naming) -> Self {
        let (tables, form) = match op {
            Operation::GetItem => derived(op, &body, naming, get_item),
            Operation::PutItem => derived(op, &body, naming, put_item),
            Operation::DeleteItem => derived(op, &body, naming, |b, n| {
                keyed_write(b, n, Form::DeleteItem)
            }),
            Operation::UpdateItem => derived(op, &body, naming, |b, n| {
                keyed_write(b, n, Form::UpdateItem)
            }),
            Operation::BatchWriteItem => derived(op, &body, naming, batch_write),
            Operation::TransactWriteItems => derived(op, &body, naming, transact_write),
            _ => match json::strict_object(&body) {
                Some(object) => {
                    let tables = tables::named(op, &object, naming);
                    let form = typed(op, object, naming);
                    (tables, form)
                }
                None => (None, unreadable(op, &body)),
            },
        };
        DynamoRequest {
            op,
            target,
            body,
            named: tables,
            form,
        }
    }

    /// A GetItem of `key` in `table`, as a warm start reads it.
    pub fn get_item(table: &str, key: &Value, naming: &Naming) -> Self {
        let body = serde_json::json!({"TableName": table, "Key": key});
        DynamoRequest::parse(
            Operation::GetItem,
            HeaderValue::from_static("DynamoDB_20120810.GetItem"),
            Bytes::from(body.to_string()),
            naming,
        )
    }

    /// The tables it names, plain names for the proxy's own region; `None` when they cannot
    /// be read with certainty (then only a principal allowed every table may send it).
    pub fn tables(&self) -> Option<Cow<'_, Named>> {
        match &self.form {
            Form::GetItem(get) => Some(Cow::Owned(Named::Tables(vec![get.table.clone()]))),
            _ => self.named.as_ref().map(Cow::Borrowed),
        }
    }

    /// The first table the request names, for logs.
    pub fn table(&self) -> Option<&str> {
        match (&self.form, &self.named) {
            (Form::GetItem(get), _) => Some(&get.table),
            (_, Some(Named::Tables(tables))) => tables.first().map(String::as_str),
            _ => None,
        }
    }
}

/// Runs a typed parse; a body it refuses (a shape DynamoDB will refuse, a repeated field) is
/// read the strict way for its tables, and forwarded. Nothing is cached from it.
fn derived(
    op: Operation,
    body: &Bytes,
    naming: &Naming,
    typed: impl FnOnce(&Bytes, &Naming) -> Option<(Named, Form)>,
) -> (Option<Named>, Form) {
    if let Some((named, form)) = typed(body, naming) {
        return (Some(named), form);
    }
    match json::strict_object(body) {
        Some(object) => (tables::named(op, &object, naming), Form::Forward),
        None if json::is_object(body) => (None, Form::Forward),
        None => (None, Form::NotJson),
    }
}

/// A body that is not one JSON object with unique keys.
fn unreadable(op: Operation, body: &[u8]) -> Form {
    if op.proxy_reads_body() && !json::is_object(body) {
        Form::NotJson
    } else {
        Form::Forward
    }
}

fn typed(op: Operation, object: Map<String, Value>, naming: &Naming) -> Form {
    match op {
        Operation::BatchGetItem => {
            batch_get(object, naming).map_or(Form::Forward, Form::BatchGetItem)
        }
        Operation::Query | Operation::Scan => {
            query_or_scan(op, object, naming).map_or(Form::Forward, Form::QueryOrScan)
        }
        Operation::CreateTable | Operation::UpdateTable | Operation::DeleteTable => {
            let table = object
                .get("TableName")
                .and_then(Value::as_str)
                .map(|name| naming.resolve(name).name().to_string());
            Form::TableChange(table)
        }
        Operation::ExecuteStatement
        | Operation::BatchExecuteStatement
        | Operation::ExecuteTransaction => {
            let writes = partiql::statements(&object)
                .iter()
                .map(|text| text.map(partiql::statement))
                .filter(|s| s.as_ref().is_none_or(|s| s.writes))
                .map(|s| {
                    s.and_then(|s| s.table)
                        .map(|t| naming.resolve(&t).name().to_string())
                })
                .collect();
            Form::PartiQl { writes }
        }
        _ => Form::Forward,
    }
}

// ---------------------------------------------------------------------------------------------
// GetItem

/// The fields of a GetItem the proxy reads, borrowed from the body where possible: this is
/// parsed on every hit. (No `#[serde(flatten)]`: it would buffer the whole request first.)
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetItemInput<'a> {
    #[serde(borrow)]
    table_name: Cow<'a, str>,
    #[serde(borrow)]
    key: &'a RawValue,
    #[serde(default)]
    consistent_read: bool,
    projection_expression: Option<String>,
    expression_attribute_names: Option<BTreeMap<String, String>>,
    attributes_to_get: Option<Vec<String>>,
    #[serde(borrow)]
    return_consumed_capacity: Option<Cow<'a, str>>,
}

fn get_item(body: &Bytes, naming: &Naming) -> Option<(Named, Form)> {
    let input: GetItemInput = serde_json::from_slice(body).ok()?;
    let resolved = naming.resolve(&input.table_name);
    let named = || tables::of_refs([&resolved]);
    let projection = ProjectionInput {
        projection_expression: input.projection_expression,
        expression_attribute_names: input.expression_attribute_names,
        attributes_to_get: input.attributes_to_get,
    };
    let TableRef::Own(table) = &resolved else {
        return Some((named(), Form::Forward));
    };
    if input.consistent_read
        || !projection.acceptable()
        || !capacity_acceptable(input.return_consumed_capacity.as_deref())
    {
        return Some((named(), Form::Forward));
    }
    let wire: WireKeyRef = serde_json::from_str(input.key.get()).ok()?;
    let Some(key) = ItemKey::from_ref(table, &wire) else {
        return Some((named(), Form::Forward));
    };
    let variant = projection.variant();
    Some((
        // The form names its table (`DynamoRequest::tables`); an empty list allocates nothing.
        Named::Tables(Vec::new()),
        Form::GetItem(GetItem {
            key,
            wire_key: body.slice_ref(input.key.get().as_bytes()),
            variant,
            projection,
            capacity: wants_capacity(input.return_consumed_capacity.as_deref()),
            table: table.to_string(),
        }),
    ))
}

/// What a `ReturnConsumedCapacity` value asks for (an unknown value asks for nothing; such a
/// request is never answered from memory).
fn wants_capacity(rcc: Option<&str>) -> Capacity {
    match rcc {
        Some("TOTAL") => Capacity::Total,
        Some("INDEXES") => Capacity::Indexes,
        _ => Capacity::None,
    }
}

/// The `ConsumedCapacity` a caller asked for: a hit answers it in the shape DynamoDB would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Capacity {
    /// `NONE`, or not asked.
    #[default]
    None,
    /// `TOTAL`: the table and its units.
    Total,
    /// `INDEXES`: also the table's own units, and each index read.
    Indexes,
}

impl Capacity {
    /// Whether the answer carries `ConsumedCapacity` at all.
    pub fn wanted(self) -> bool {
        self != Capacity::None
    }
}

/// Whether DynamoDB accepts a `ReturnConsumedCapacity` value.
fn capacity_acceptable(rcc: Option<&str>) -> bool {
    matches!(rcc, None | Some("NONE" | "TOTAL" | "INDEXES"))
}

// ---------------------------------------------------------------------------------------------
// BatchGetItem

fn batch_get(mut object: Map<String, Value>, naming: &Naming) -> Option<BatchGet> {
    let rcc = match object.remove("ReturnConsumedCapacity") {
        None => None,
        Some(Value::String(rcc)) => Some(rcc),
        Some(_) => return None,
    };
    if !capacity_acceptable(rcc.as_deref()) {
        return None;
    }
    let Some(Value::Object(items)) = object.remove("RequestItems") else {
        return None;
    };
    // Empty, or too many keys: DynamoDB refuses the whole request.
    if items.is_empty() {
        return None;
    }
    let mut total = 0;
    let mut tables = Vec::new();
    for (sent, params) in items {
        let Value::Object(mut params) = params else {
            return None;
        };
        let Some(Value::Array(keys)) = params.remove("Keys") else {
            return None;
        };
        total += keys.len();
        if keys.is_empty() || total > BATCH_GET_MAX_KEYS {
            return None;
        }
        let consistent = match params.get("ConsistentRead") {
            None | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) => true,
            Some(_) => return None,
        };
        let projection: ProjectionInput =
            serde_json::from_value(Value::Object(params.clone())).ok()?;
        if !projection.acceptable() {
            return None;
        }
        let resolved = naming.resolve(&sent);
        let table = resolved.name().to_string();
        let mut seen = HashSet::new();
        let mut typed_keys = Vec::with_capacity(keys.len());
        let mut key_names = Vec::new();
        for raw in keys {
            let wire = serde_json::from_value::<WireKey>(raw.clone()).ok()?;
            let key = ItemKey::new(&table, &wire)?;
            // The same key twice: DynamoDB refuses the request.
            if !seen.insert(key.clone()) {
                return None;
            }
            key_names = wire.keys().cloned().collect();
            typed_keys.push((raw, key));
        }
        tables.push(BatchTable {
            cacheable: !consistent && matches!(resolved, TableRef::Own(_)),
            variant: projection.variant(),
            sent,
            table,
            params,
            keys: typed_keys,
            key_names,
        });
    }
    // Anything else at the top level is DynamoDB's to judge.
    if !object.is_empty() {
        return None;
    }
    Some(BatchGet {
        tables,
        capacity: wants_capacity(rcc.as_deref()),
        return_consumed_capacity: rcc,
    })
}

// ---------------------------------------------------------------------------------------------
// Query and Scan

fn query_or_scan(
    op: Operation,
    mut request: Map<String, Value>,
    naming: &Naming,
) -> Option<QueryOrScan> {
    match request.get("ConsistentRead") {
        None | Some(Value::Bool(false)) => {}
        _ => return None,
    }
    let TableRef::Own(table) = naming.resolve(request.get("TableName")?.as_str()?) else {
        return None;
    };
    let table = table.into_owned();
    let rcc = request.remove("ReturnConsumedCapacity");
    let capacity = match &rcc {
        None => Capacity::None,
        Some(Value::String(v)) if capacity_acceptable(Some(v)) => wants_capacity(Some(v)),
        Some(_) => return None,
    };
    let index = request
        .get("IndexName")
        .and_then(Value::as_str)
        .map(str::to_string);
    // serde_json's map keeps keys sorted, so this text is canonical.
    let canonical = serde_json::to_string(&request).ok()?;
    let cache_key = query_key(&table, op.name(), &canonical);
    Some(QueryOrScan {
        table,
        cache_key,
        request,
        capacity,
        index,
    })
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

fn put_item(body: &Bytes, naming: &Naming) -> Option<(Named, Form)> {
    let input: PutItemInput = serde_json::from_slice(body).ok()?;
    let item = new_item(body, input.item)?;
    Some(match naming.resolve(&input.table_name) {
        TableRef::Own(table) => {
            let table = table.into_owned();
            (named(&table), Form::PutItem(PutItem { table, item }))
        }
        other => unplaced(vec![other]),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyedInput<'a> {
    table_name: String,
    key: WireKey,
    #[serde(borrow)]
    return_values: Option<&'a RawValue>,
}

fn keyed_write(
    body: &Bytes,
    naming: &Naming,
    form: fn(KeyedWrite) -> Form,
) -> Option<(Named, Form)> {
    let input: KeyedInput = serde_json::from_slice(body).ok()?;
    let return_values = match input.return_values {
        Some(raw) => Some(serde_json::from_str::<String>(raw.get()).ok()?),
        None => None,
    };
    let return_values_at = input.return_values.map(|raw| {
        let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
        start..start + raw.get().len()
    });
    Some(match naming.resolve(&input.table_name) {
        TableRef::Own(table) => {
            let table = table.into_owned();
            let write = KeyedWrite {
                table: table.clone(),
                key: input.key,
                return_values,
                return_values_at,
            };
            (named(&table), form(write))
        }
        other => unplaced(vec![other]),
    })
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

fn batch_write(body: &Bytes, naming: &Naming) -> Option<(Named, Form)> {
    let input: BatchWriteInput = serde_json::from_slice(body).ok()?;
    let mut actions = Vec::new();
    let mut refs = Vec::new();
    for (sent, requests) in input.request_items {
        let resolved = naming.resolve(&sent);
        let table = resolved.name().to_string();
        for request in requests {
            actions.push(match (request.put_request, request.delete_request) {
                (Some(put), None) => WriteAction::Put {
                    table: table.clone(),
                    item: new_item(body, put.item)?,
                },
                (None, Some(delete)) => WriteAction::Keyed {
                    table: table.clone(),
                    key: delete.key,
                },
                // DynamoDB refuses the whole batch: nothing changes.
                _ => return None,
            });
        }
        refs.push(resolved.into_owned());
    }
    Some(writes_to(refs, Form::BatchWriteItem(actions)))
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
    condition_check: Option<TransactTable>,
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

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TransactTable {
    table_name: String,
}

fn transact_write(body: &Bytes, naming: &Naming) -> Option<(Named, Form)> {
    let input: TransactWriteInput = serde_json::from_slice(body).ok()?;
    let mut actions = Vec::new();
    let mut refs = Vec::new();
    for entry in input.transact_items {
        let (sent, action) = match (
            entry.put,
            entry.update.or(entry.delete),
            entry.condition_check,
        ) {
            (Some(put), None, None) => {
                let table = naming.resolve(&put.table_name).name().to_string();
                let item = new_item(body, put.item)?;
                (put.table_name, WriteAction::Put { table, item })
            }
            (None, Some(keyed), None) => {
                let table = naming.resolve(&keyed.table_name).name().to_string();
                (
                    keyed.table_name,
                    WriteAction::Keyed {
                        table,
                        key: keyed.key,
                    },
                )
            }
            (None, None, Some(check)) => (check.table_name, WriteAction::Check),
            // No action, or several in one entry: DynamoDB refuses the transaction.
            _ => return None,
        };
        refs.push(naming.resolve(&sent).into_owned());
        actions.push(action);
    }
    Some(writes_to(refs, Form::TransactWriteItems(actions)))
}

/// The item's top-level attributes, each a slice of the body: an item is never built as a
/// tree of JSON values (hundreds of bytes for every scalar in it), only read through once.
fn new_item(body: &Bytes, raw: &RawValue) -> Option<NewItem> {
    let top: BTreeMap<String, &RawValue> = serde_json::from_str(raw.get()).ok()?;
    let mut storable = true;
    let mut attributes = BTreeMap::new();
    for (name, value) in top {
        storable &= serde_json::from_str::<Canonical>(value.get()).is_ok_and(|c| c.0);
        attributes.insert(name, body.slice_ref(value.get().as_bytes()));
    }
    Some(NewItem {
        raw: body.slice_ref(raw.get().as_bytes()),
        attributes,
        storable,
    })
}

/// Whether every number in a typed attribute value is in DynamoDB's own form, read as the
/// value streams past (strings of numbers aside, nothing of it is kept).
struct Canonical(bool);

impl<'de> Deserialize<'de> for Canonical {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Canonical, D::Error> {
        d.deserialize_any(CanonicalVisitor)
    }
}

struct CanonicalVisitor;

impl<'de> serde::de::Visitor<'de> for CanonicalVisitor {
    type Value = Canonical;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an attribute value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Canonical, A::Error> {
        use serde::de::IgnoredAny;
        let mut all = true;
        while let Some(kind) = map.next_key::<Cow<'de, str>>()? {
            all &= match &*kind {
                "N" => is_wire_canonical_number(&map.next_value::<Cow<'de, str>>()?),
                "NS" => map.next_value::<AllOf<CanonicalNumber>>()?.0,
                "M" => map.next_value::<CanonicalMap>()?.0,
                "L" => map.next_value::<AllOf<Canonical>>()?.0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    true
                }
            };
        }
        Ok(Canonical(all))
    }

    // Anything but an object is not an attribute value.
    fn visit_bool<E>(self, _: bool) -> Result<Canonical, E> {
        Ok(Canonical(false))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Canonical, E> {
        Ok(Canonical(false))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Canonical, E> {
        Ok(Canonical(false))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Canonical, E> {
        Ok(Canonical(false))
    }
    fn visit_str<E>(self, _: &str) -> Result<Canonical, E> {
        Ok(Canonical(false))
    }
    fn visit_unit<E>(self) -> Result<Canonical, E> {
        Ok(Canonical(false))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Canonical, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Canonical(false))
    }
}

/// `M`'s members, each checked.
struct CanonicalMap(bool);

impl<'de> Deserialize<'de> for CanonicalMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CanonicalMap, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CanonicalMap;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of attribute values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<CanonicalMap, A::Error> {
                let mut all = true;
                while let Some((_, value)) = map.next_entry::<serde::de::IgnoredAny, Canonical>()? {
                    all &= value.0;
                }
                Ok(CanonicalMap(all))
            }
        }
        d.deserialize_map(V)
    }
}

/// Whether every element of a list is canonical: `L`'s values, or `NS`'s numbers.
struct AllOf<T>(bool, std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de> + Into<bool>> Deserialize<'de> for AllOf<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<AllOf<T>, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Into<bool>> serde::de::Visitor<'de> for V<T> {
            type Value = AllOf<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<AllOf<T>, A::Error> {
                let mut all = true;
                while let Some(element) = seq.next_element::<T>()? {
                    all &= element.into();
                }
                Ok(AllOf(all, std::marker::PhantomData))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

impl From<Canonical> for bool {
    fn from(c: Canonical) -> bool {
        c.0
    }
}

/// One member of `NS`: canonical or not.
struct CanonicalNumber(bool);

impl<'de> Deserialize<'de> for CanonicalNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CanonicalNumber, D::Error> {
        let n = Cow::<'de, str>::deserialize(d)?;
        Ok(CanonicalNumber(is_wire_canonical_number(&n)))
    }
}

impl From<CanonicalNumber> for bool {
    fn from(c: CanonicalNumber) -> bool {
        c.0
    }
}

fn named(table: &str) -> Named {
    Named::Tables(vec![table.to_string()])
}

/// A write to tables of which one at least the proxy cannot place (another region or
/// account, or an account it does not know yet).
fn unplaced(refs: Vec<TableRef<'_>>) -> (Named, Form) {
    let own: Vec<String> = refs
        .iter()
        .filter(|r| !matches!(r, TableRef::Foreign(_)))
        .map(|r| r.name().to_string())
        .collect();
    (tables::of_refs(&refs), Form::WriteToTables(own))
}

/// A batch or transaction: typed when every table is the proxy's own, else table-wide.
fn writes_to(refs: Vec<TableRef<'static>>, form: Form) -> (Named, Form) {
    if refs.iter().all(|r| matches!(r, TableRef::Own(_))) {
        let names = refs.iter().map(|r| r.name().to_string()).collect();
        (tables::sorted(names), form)
    } else {
        unplaced(refs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming() -> Naming {
        Naming::new("us-east-1")
    }

    fn parse(op: Operation, body: &str) -> DynamoRequest {
        DynamoRequest::parse(
            op,
            HeaderValue::from_static("DynamoDB_20120810.X"),
            Bytes::from(body.to_string()),
            &naming(),
        )
    }

    #[test]
    fn get_item_is_typed_once_with_its_key_and_projection() {
        let r = parse(
            Operation::GetItem,
            r##"{"TableName":"t","Key":{"pk":{"S":"a"}},"ProjectionExpression":"#v","ExpressionAttributeNames":{"#v":"v"}}"##,
        );
        assert_eq!(
            r.tables().as_deref(),
            Some(&Named::Tables(vec!["t".into()]))
        );
        let Form::GetItem(get) = r.form else {
            panic!("{:?}", r.form)
        };
        assert_eq!(get.table, "t");
        assert_eq!(&get.wire_key[..], br#"{"pk":{"S":"a"}}"#);
        assert!(get.variant.is_some());
        assert!(!get.capacity.wanted());
    }

    #[test]
    fn requests_dynamodb_would_refuse_are_forwarded() {
        for body in [
            // both projection styles
            r#"{"TableName":"t","Key":{"pk":{"S":"a"}},"ProjectionExpression":"v","AttributesToGet":["v"]}"#,
            // a name no expression uses
            r##"{"TableName":"t","Key":{"pk":{"S":"a"}},"ExpressionAttributeNames":{"#v":"v"}}"##,
            r#"{"TableName":"t","Key":{"pk":{"S":"a"}},"ReturnConsumedCapacity":"LOTS"}"#,
            r#"{"TableName":"t","Key":{"pk":{"S":"a"}},"ConsistentRead":true}"#,
        ] {
            let r = parse(Operation::GetItem, body);
            assert!(matches!(r.form, Form::Forward), "{body}: {:?}", r.form);
        }
        for body in [
            r#"{"RequestItems":{}}"#,
            r#"{"RequestItems":{"t":{"Keys":[]}}}"#,
            r#"{"RequestItems":{"t":{"Keys":[{"pk":{"S":"a"}},{"pk":{"S":"a"}}]}}}"#,
            r#"{"RequestItems":{"t":{"Keys":[{"pk":{"S":"a"}}]}},"ReturnConsumedCapacity":"LOTS"}"#,
        ] {
            let r = parse(Operation::BatchGetItem, body);
            assert!(matches!(r.form, Form::Forward), "{body}: {:?}", r.form);
        }
        let keys: Vec<String> = (0..101)
            .map(|i| format!(r#"{{"pk":{{"S":"{i}"}}}}"#))
            .collect();
        let body = format!(
            r#"{{"RequestItems":{{"t":{{"Keys":[{}]}}}}}}"#,
            keys.join(",")
        );
        assert!(matches!(
            parse(Operation::BatchGetItem, &body).form,
            Form::Forward
        ));
    }

    #[test]
    fn repeated_fields_leave_the_tables_unknown() {
        let r = parse(
            Operation::GetItem,
            r#"{"TableName":"a","TableName":"b","Key":{"pk":{"S":"a"}}}"#,
        );
        assert_eq!(r.tables(), None);
        assert!(matches!(r.form, Form::Forward));
        let r = parse(Operation::Query, r#"{"TableName":"a","TableName":"b"}"#);
        assert_eq!(r.tables(), None);
    }

    #[test]
    fn not_json_is_refused_for_operations_the_proxy_reads() {
        assert!(matches!(
            parse(Operation::GetItem, "nope").form,
            Form::NotJson
        ));
        assert!(matches!(parse(Operation::Query, "[]").form, Form::NotJson));
        assert!(matches!(
            parse(Operation::ListTables, "nope").form,
            Form::Forward
        ));
    }

    #[test]
    fn an_update_asks_for_all_new_without_its_body_being_read_again() {
        for (body, expected) in [
            (
                r#"{"TableName":"t","Key":{"pk":{"S":"a"}},"ReturnValues":"NONE"}"#,
                r#"{"TableName":"t","Key":{"pk":{"S":"a"}},"ReturnValues":"ALL_NEW"}"#,
            ),
            (
                r#"{"TableName":"t","Key":{"pk":{"S":"a"}}} "#,
                r#"{"TableName":"t","Key":{"pk":{"S":"a"}},"ReturnValues":"ALL_NEW"} "#,
            ),
            (
                r#"{"ReturnValues" : "NONE" , "TableName":"t","Key":{"pk":{"S":"a"}}}"#,
                r#"{"ReturnValues" : "ALL_NEW" , "TableName":"t","Key":{"pk":{"S":"a"}}}"#,
            ),
        ] {
            let r = parse(Operation::UpdateItem, body);
            let Form::UpdateItem(update) = r.form else {
                panic!("{:?}", r.form)
            };
            assert_eq!(&update.asking_all_new(&r.body)[..], expected.as_bytes());
        }
    }

    #[test]
    fn a_partiql_write_the_proxy_cannot_read_drops_everything() {
        let r = parse(
            Operation::ExecuteStatement,
            r#"{"Statement":"DELETE FROM -- orders\n\"other\" WHERE pk='a'"}"#,
        );
        assert!(
            matches!(r.form, Form::PartiQl { ref writes } if writes == &[None]),
            "{:?}",
            r.form
        );
        let r = parse(
            Operation::BatchExecuteStatement,
            r#"{"Statements":[{"Statement":"SELECT * FROM t"},{"Statement":"UPDATE u SET a=1 WHERE pk='a'"}]}"#,
        );
        assert!(
            matches!(r.form, Form::PartiQl { ref writes } if writes == &[Some("u".to_string())]),
            "{:?}",
            r.form
        );
    }

    #[test]
    fn an_arn_of_the_own_region_is_the_plain_name() {
        let r = parse(
            Operation::GetItem,
            r#"{"TableName":"arn:aws:dynamodb:us-east-1:123456789012:table/orders","Key":{"pk":{"S":"a"}}}"#,
        );
        assert_eq!(
            r.tables().as_deref(),
            Some(&Named::Tables(vec!["orders".into()]))
        );
        // The account is not known yet: read through, never from memory.
        assert!(matches!(r.form, Form::Forward));
        let n = naming();
        n.learn_account("123456789012");
        let r = DynamoRequest::parse(
            Operation::GetItem,
            HeaderValue::from_static("DynamoDB_20120810.GetItem"),
            Bytes::from_static(
                br#"{"TableName":"arn:aws:dynamodb:us-east-1:123456789012:table/orders","Key":{"pk":{"S":"a"}}}"#,
            ),
            &n,
        );
        let Form::GetItem(get) = r.form else {
            panic!("{:?}", r.form)
        };
        assert_eq!(get.table, "orders");
        // A write naming another region's table is not this cache's business.
        let r = parse(
            Operation::PutItem,
            r#"{"TableName":"arn:aws:dynamodb:eu-west-1:123456789012:table/orders","Item":{"pk":{"S":"a"}}}"#,
        );
        assert!(
            matches!(r.form, Form::WriteToTables(ref t) if t.is_empty()),
            "{:?}",
            r.form
        );
    }

    #[test]
    fn a_new_item_is_read_through_once_and_kept_as_slices_of_the_body() {
        let storable = |item: &str| {
            let body = Bytes::from(format!(r#"{{"TableName":"t","Item":{item}}}"#));
            let input: PutItemInput = serde_json::from_slice(&body).unwrap();
            new_item(&body, input.item).map(|i| (i.storable, i.attributes.len()))
        };
        let nested = r#"{"pk":{"S":"a"},"l":{"L":[{"N":"1"},{"M":{"x":{"NS":["2","-3.5"]}}}]}}"#;
        assert_eq!(storable(nested), Some((true, 2)));
        assert_eq!(
            storable(r#"{"pk":{"S":"a"},"n":{"N":"1.0"}}"#),
            Some((false, 2))
        );
        let deep = r#"{"m":{"M":{"x":{"L":[{"NS":["1","02"]}]}}}}"#;
        assert_eq!(storable(deep), Some((false, 1)));
        // Not an attribute value: not cached from the body.
        assert_eq!(storable(r#"{"pk":"a"}"#), Some((false, 1)));
        assert_eq!(storable(r#"[1]"#), None);
        let body = Bytes::from_static(br#"{"TableName":"t","Item":{"pk":{"S":"a"}}}"#);
        let input: PutItemInput = serde_json::from_slice(&body).unwrap();
        let item = new_item(&body, input.item).unwrap();
        assert_eq!(&item.attributes["pk"][..], br#"{"S":"a"}"#);
    }
}
