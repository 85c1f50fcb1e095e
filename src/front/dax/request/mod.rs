//! A DAX data request turned into the DynamoDB request it stands for (operation and JSON
//! body), plus what the answer's encoding needs to know ([`Reply`]). The body then takes the
//! same typed path as an HTTP request's.

mod batch_get;
mod get;
mod query;
mod write;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use minicbor::Decoder;
use minicbor::data::Type;
use serde_json::{Map, Value, json};

use super::DaxError;
use super::av;
use super::frame::{Dialect, Frame, Method};
use super::item::{KeyShape, Lists};
use super::sexpr::{Expressions, PathElem};
use crate::wire::operation::Operation;
use crate::wire::request::TRANSACT_MAX_ITEMS;

/// Keyword parameters of the data methods (`DaxDataRequestParam`).
mod kw {
    pub(super) const PROJECTION: u64 = 0;
    pub(super) const CONSISTENT_READ: u64 = 2;
    pub(super) const RETURN_CONSUMED_CAPACITY: u64 = 3;
    pub(super) const CONDITION: u64 = 4;
    pub(super) const RETURN_ITEM_COLLECTION_METRICS: u64 = 6;
    pub(super) const RETURN_VALUES: u64 = 7;
    pub(super) const UPDATE: u64 = 8;
    pub(super) const EXCLUSIVE_START_KEY: u64 = 9;
    pub(super) const FILTER: u64 = 10;
    pub(super) const INDEX_NAME: u64 = 11;
    pub(super) const LIMIT: u64 = 13;
    pub(super) const SCAN_INDEX_FORWARD: u64 = 14;
    pub(super) const SELECT: u64 = 15;
    pub(super) const SEGMENT: u64 = 16;
    pub(super) const TOTAL_SEGMENTS: u64 = 17;
    pub(super) const CLIENT_REQUEST_TOKEN: u64 = 19;
}

/// Keyword parameters a request may carry; more is not a DAX client.
const MAX_KWARGS: usize = 64;

/// `ReturnValues` as DAX numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReturnValues {
    None,
    AllOld,
    UpdatedOld,
    AllNew,
    UpdatedNew,
}

impl ReturnValues {
    fn name(self) -> &'static str {
        match self {
            ReturnValues::None => "NONE",
            ReturnValues::AllOld => "ALL_OLD",
            ReturnValues::UpdatedOld => "UPDATED_OLD",
            ReturnValues::AllNew => "ALL_NEW",
            ReturnValues::UpdatedNew => "UPDATED_NEW",
        }
    }

    /// Whether the client reads `Attributes` as a whole item (rather than by ordinal).
    pub(super) fn whole_item(self) -> bool {
        matches!(self, ReturnValues::AllOld | ReturnValues::AllNew)
    }
}

/// A projection's paths, whose positions are the ordinals of the answer.
pub(super) type Paths = Arc<Vec<Vec<PathElem>>>;

/// How the answer to a data request is written back.
#[derive(Debug)]
pub(super) enum Reply {
    GetItem {
        shape: KeyShape,
        projection: Option<Paths>,
    },
    Write {
        shape: KeyShape,
        return_values: ReturnValues,
    },
    QueryOrScan {
        shape: KeyShape,
        /// With an index, keys travel as compound keys.
        index: bool,
        projection: Option<Paths>,
    },
    BatchGet {
        tables: HashMap<String, (KeyShape, Option<Paths>)>,
    },
    BatchWrite {
        tables: HashMap<String, KeyShape>,
    },
    TransactGet {
        items: Vec<(KeyShape, Option<Paths>)>,
    },
    TransactWrite {
        items: Vec<KeyShape>,
    },
}

/// A data request as DynamoDB would have received it.
#[derive(Debug)]
pub(super) struct Translated {
    pub op: Operation,
    pub body: Value,
    pub reply: Reply,
    /// Whether the client asked for consumed capacity (it reads it only then).
    pub capacity: bool,
}

/// What translating needs: the attribute lists, and each table's key shape.
pub(super) trait Shapes {
    fn lists(&self) -> &Lists;
    /// Which client wrote the request.
    fn dialect(&self) -> Dialect {
        Dialect::Standard
    }
    fn shape(&self, table: &str) -> impl Future<Output = Result<KeyShape, DaxError>> + Send;
}

/// One request's items.
pub(super) struct Items<'a> {
    buf: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl<'a> Items<'a> {
    pub(super) fn new(buf: &'a [u8], frame: &'a Frame) -> Items<'a> {
        Items {
            buf,
            ranges: &frame.items,
        }
    }

    pub(super) fn decoder(&self, i: usize) -> Decoder<'a> {
        Decoder::new(&self.buf[self.ranges[i].clone()])
    }

    pub(super) fn bytes(&self, i: usize) -> Result<Vec<u8>, DaxError> {
        av::bytes(&mut self.decoder(i))
    }

    pub(super) fn is_null(&self, i: usize) -> bool {
        self.decoder(i).datatype().ok() == Some(Type::Null)
    }

    fn table(&self, i: usize) -> Result<String, DaxError> {
        utf8(self.bytes(i)?)
    }

    /// A data request's keyword map: always its last item.
    fn kwargs(&self) -> Result<Kwargs<'a>, DaxError> {
        let last = self
            .ranges
            .last()
            .ok_or_else(|| DaxError::malformed("no items"))?;
        Kwargs::read(&self.buf[last.clone()])
    }
}

fn utf8(bytes: Vec<u8>) -> Result<String, DaxError> {
    String::from_utf8(bytes).map_err(|_| DaxError::malformed("a name is not UTF-8"))
}

/// The trailing keyword map: each key's value, as bytes to decode (the last one wins, as
/// Python sends a condition twice: its text, then its compiled form).
struct Kwargs<'a> {
    values: HashMap<u64, &'a [u8]>,
}

impl<'a> Kwargs<'a> {
    fn read(item: &'a [u8]) -> Result<Kwargs<'a>, DaxError> {
        let mut values = HashMap::new();
        let mut d = Decoder::new(item);
        if d.datatype()? == Type::Null {
            return Ok(Kwargs { values });
        }
        let mut count = 0;
        av::each_pair(&mut d, |d| {
            count += 1;
            if count > MAX_KWARGS {
                return Err(DaxError::malformed("too many parameters"));
            }
            let key = d.u64()?;
            let start = d.position();
            d.skip()?;
            values.insert(key, &item[start..d.position()]);
            Ok(())
        })?;
        Ok(Kwargs { values })
    }

    fn decoder(&self, key: u64) -> Option<Decoder<'a>> {
        self.values.get(&key).map(|b| Decoder::new(b))
    }

    fn bytes(&self, key: u64) -> Result<Option<Vec<u8>>, DaxError> {
        match self.decoder(key) {
            Some(mut d) if d.datatype()? != Type::Null => Ok(Some(av::bytes(&mut d)?)),
            _ => Ok(None),
        }
    }

    fn int(&self, key: u64) -> Result<Option<i64>, DaxError> {
        match self.decoder(key) {
            Some(mut d) if d.datatype()? != Type::Null => Ok(Some(d.i64()?)),
            _ => Ok(None),
        }
    }

    /// A flag that is a bool in some methods and 0/1 in others.
    fn flag(&self, key: u64) -> Result<Option<bool>, DaxError> {
        match self.decoder(key) {
            Some(mut d) => match d.datatype()? {
                Type::Null => Ok(None),
                Type::Bool => Ok(Some(d.bool()?)),
                _ => Ok(Some(d.i64()? != 0)),
            },
            None => Ok(None),
        }
    }

    /// A compiled condition. Python sends the text first under the same key, then the compiled
    /// form, which starts with `[1, ...]` (`0x83 0x01`); the last one read must be that.
    fn expression(&self, key: u64) -> Result<Option<Vec<u8>>, DaxError> {
        match self.bytes(key)? {
            Some(compiled) if compiled.starts_with(&[0x83, 0x01]) => Ok(Some(compiled)),
            Some(_) => Err(DaxError::validation(
                "Invalid ConditionExpression: only the compiled form DAX clients send is read",
            )),
            None => Ok(None),
        }
    }

    fn text(&self, key: u64) -> Result<Option<String>, DaxError> {
        match self.decoder(key) {
            Some(mut d) => match d.datatype()? {
                Type::Null => Ok(None),
                Type::String | Type::StringIndef => Ok(Some(av::text(&mut d)?)),
                _ => Ok(Some(utf8(av::bytes(&mut d)?)?)),
            },
            None => Ok(None),
        }
    }

    /// `ReturnConsumedCapacity` into `body`; whether the client asked for it.
    fn capacity(&self, body: &mut Map<String, Value>) -> Result<bool, DaxError> {
        let value = match self.int(kw::RETURN_CONSUMED_CAPACITY)? {
            None | Some(0) => return Ok(false),
            Some(1) => "TOTAL",
            Some(2) => "INDEXES",
            Some(_) => return Err(DaxError::validation("Unknown ReturnConsumedCapacity")),
        };
        body.insert("ReturnConsumedCapacity".into(), json!(value));
        Ok(true)
    }

    fn collection_metrics(&self, body: &mut Map<String, Value>) -> Result<(), DaxError> {
        match self.int(kw::RETURN_ITEM_COLLECTION_METRICS)? {
            None | Some(0) => {}
            Some(1) => {
                body.insert("ReturnItemCollectionMetrics".into(), json!("SIZE"));
            }
            Some(_) => return Err(DaxError::validation("Unknown ReturnItemCollectionMetrics")),
        }
        Ok(())
    }

    fn return_values(&self) -> Result<ReturnValues, DaxError> {
        Ok(match self.int(kw::RETURN_VALUES)? {
            None | Some(1) => ReturnValues::None,
            Some(2) => ReturnValues::AllOld,
            Some(3) => ReturnValues::UpdatedOld,
            Some(4) => ReturnValues::AllNew,
            Some(5) => ReturnValues::UpdatedNew,
            Some(_) => return Err(DaxError::validation("Unknown ReturnValues")),
        })
    }
}

/// The request body of a batch or transaction: `field` = `value`, then the keyword items that
/// all of them take (capacity, and with `metrics` item collection metrics).
fn envelope<'a>(
    items: &Items<'a>,
    field: &str,
    value: Value,
    metrics: bool,
) -> Result<(Map<String, Value>, Kwargs<'a>, bool), DaxError> {
    let k = items.kwargs()?;
    let mut body = Map::new();
    body.insert(field.into(), value);
    let capacity = k.capacity(&mut body)?;
    if metrics {
        k.collection_metrics(&mut body)?;
    }
    Ok((body, k, capacity))
}

/// Puts an expression's placeholders into `body`.
fn placeholders(body: &mut Map<String, Value>, x: Expressions) {
    if !x.names.is_empty() {
        body.insert("ExpressionAttributeNames".into(), Value::Object(x.names));
    }
    if !x.values.is_empty() {
        body.insert("ExpressionAttributeValues".into(), Value::Object(x.values));
    }
}

fn projection(
    x: &mut Expressions,
    body: &mut Map<String, Value>,
    compiled: Option<Vec<u8>>,
) -> Result<Option<Paths>, DaxError> {
    let Some(compiled) = compiled else {
        return Ok(None);
    };
    let (text, paths) = x.projection(&compiled)?;
    body.insert("ProjectionExpression".into(), json!(text));
    Ok(Some(Arc::new(paths)))
}

/// Fields whose value is a map of attribute values (an item, a key, an expression's values).
/// There, and only there, the translation holds each value as its JSON text already written
/// ([`av::decode_raw`]), in a [`Value::String`]; a value decoded as a tree is a
/// [`Value::Object`]. Neither can be the other: an attribute value is always an object.
const VALUE_MAPS: [&str; 4] = [
    "Item",
    "Key",
    "ExclusiveStartKey",
    "ExpressionAttributeValues",
];

/// The request body as DynamoDB JSON. Every field is written as JSON, except the attribute
/// values of [`VALUE_MAPS`], whose text is written as it was decoded; `RequestItems` is keyed
/// by table names, so its keys are never read as field names.
pub(super) fn write_body(body: &Value) -> Vec<u8> {
    // Sized once, from the values' text: a body of large items is not copied as it grows.
    let mut out = Vec::with_capacity(256 + text_len(body));
    write_fields(body, &mut out);
    out
}

fn write_fields(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(fields) => {
            write_object(fields, out, |name, inner, out| match (name, inner) {
                (field, Value::Object(_)) if VALUE_MAPS.contains(&field) => {
                    write_value_map(inner, out)
                }
                ("Keys", Value::Array(keys)) => write_array(keys, out, write_value_map),
                ("RequestItems", Value::Object(tables)) => {
                    write_object(tables, out, |_, entry, out| write_fields(entry, out))
                }
                _ => write_fields(inner, out),
            })
        }
        Value::Array(list) => write_array(list, out, write_fields),
        scalar => write_json(scalar, out),
    }
}

/// `{"name":value,...}`, each value written by `value`.
fn write_object(
    fields: &Map<String, Value>,
    out: &mut Vec<u8>,
    mut value: impl FnMut(&str, &Value, &mut Vec<u8>),
) {
    out.push(b'{');
    for (i, (name, inner)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_str(name, out);
        out.push(b':');
        value(name, inner, out);
    }
    out.push(b'}');
}

/// `[value,...]`, each written by `value`.
fn write_array(list: &[Value], out: &mut Vec<u8>, value: fn(&Value, &mut Vec<u8>)) {
    out.push(b'[');
    for (i, inner) in list.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        value(inner, out);
    }
    out.push(b']');
}

/// The bytes of the values' text in a body, and a little for everything else.
fn text_len(value: &Value) -> usize {
    match value {
        Value::String(text) => text.len() + 2,
        Value::Object(fields) => fields.iter().map(|(k, v)| k.len() + 4 + text_len(v)).sum(),
        Value::Array(list) => list.iter().map(|v| 1 + text_len(v)).sum(),
        _ => 8,
    }
}

fn write_value_map(map: &Value, out: &mut Vec<u8>) {
    let Value::Object(values) = map else {
        return write_json(map, out);
    };
    write_object(values, out, |_, value, out| match value {
        Value::String(text) => out.extend_from_slice(text.as_bytes()),
        tree => write_json(tree, out),
    });
}

fn write_json_str(text: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, text).expect("a string serialises");
}

fn write_json(value: &Value, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, value).expect("a JSON value serialises");
}

/// Translates a data method.
pub(super) async fn translate(
    shapes: &impl Shapes,
    method: Method,
    items: &Items<'_>,
) -> Result<Translated, DaxError> {
    match method {
        Method::GetItem => get::get_item(shapes, items).await,
        Method::PutItem | Method::UpdateItem | Method::DeleteItem => {
            write::write_item(shapes, method, items).await
        }
        Method::Query | Method::Scan => query::query_or_scan(shapes, method, items).await,
        Method::BatchGetItem => batch_get::batch_get(shapes, items).await,
        Method::BatchWriteItem => write::batch_write(shapes, items).await,
        Method::TransactGetItems => batch_get::transact_get(shapes, items).await,
        Method::TransactWriteItems => write::transact_write(shapes, items).await,
        _ => Err(DaxError::internal("not a data method")),
    }
}

/// What every single-table method starts with: its table's key shape, its keyword map and a
/// body naming the table.
async fn single_table<'a>(
    shapes: &impl Shapes,
    items: &Items<'a>,
) -> Result<(KeyShape, Kwargs<'a>, Map<String, Value>), DaxError> {
    let table = items.table(0)?;
    let shape = shapes.shape(&table).await?;
    let mut body = Map::new();
    body.insert("TableName".into(), json!(table));
    Ok((shape, items.kwargs()?, body))
}

/// The table names of a batch's `{table: ...}` map, in order.
fn batch_tables(d: &mut Decoder<'_>) -> Result<Vec<String>, DaxError> {
    let mut tables = Vec::new();
    av::each_pair(d, |d| {
        tables.push(av::text(d)?);
        d.skip()?;
        Ok(())
    })?;
    Ok(tables)
}

async fn shapes_of(
    shapes: &impl Shapes,
    tables: &[String],
) -> Result<HashMap<String, KeyShape>, DaxError> {
    let mut known = HashMap::new();
    for table in tables {
        if !known.contains_key(table) {
            known.insert(table.clone(), shapes.shape(table).await?);
        }
    }
    Ok(known)
}

/// An array item of byte strings (or nulls), each decoded by `each`.
/// A transaction's list of integers, one per item.
fn int_list(d: &mut Decoder<'_>) -> Result<Vec<u64>, DaxError> {
    let mut out = Vec::new();
    av::each(d, |d| {
        if out.len() >= TRANSACT_MAX_ITEMS {
            return Err(too_many_transact_items());
        }
        out.push(d.u64()?);
        Ok(())
    })?;
    Ok(out)
}

fn too_many_transact_items() -> DaxError {
    DaxError::validation(
        "1 validation error detected: Value at 'transactItems' failed to satisfy constraint: \
         Member must have length less than or equal to 100",
    )
}

fn byte_list<T>(
    d: &mut Decoder<'_>,
    mut each: impl FnMut(Option<Vec<u8>>) -> Result<T, DaxError>,
) -> Result<Vec<T>, DaxError> {
    let mut out = Vec::new();
    if d.datatype()? == Type::Null {
        return Ok(out);
    }
    av::each(d, |d| {
        // Every list is one entry per transaction item: DynamoDB takes 100.
        if out.len() >= TRANSACT_MAX_ITEMS {
            return Err(too_many_transact_items());
        }
        let value = if d.datatype()? == Type::Null {
            d.null()?;
            None
        } else {
            Some(av::bytes(d)?)
        };
        out.push(each(value)?);
        Ok(())
    })?;
    Ok(out)
}

fn table_names(items: &Items<'_>, i: usize) -> Result<Vec<String>, DaxError> {
    byte_list(&mut items.decoder(i), |b| {
        utf8(b.ok_or_else(|| DaxError::malformed("a table name is missing"))?)
    })
}
