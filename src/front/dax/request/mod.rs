//! A DAX data request turned into the DynamoDB request it stands for (operation and JSON
//! body), plus what the answer's encoding needs to know ([`Reply`]). The body is written as
//! JSON while the CBOR is read ([`body`]), the one form of it that must exist because it goes
//! upstream; the typed request is then read from it, as from an HTTP request's.

mod batch_get;
mod body;
mod get;
mod query;
mod write;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use self::body::Object;
use super::DaxError;
use super::av;
use super::frame::{Dialect, Frame, Method};
use super::item::{KeyShape, Lists};
use super::sexpr::{Expressions, PathElem};
use crate::wire::operation::Operation;
use crate::wire::request::TRANSACT_MAX_ITEMS;
use minicbor::Decoder;
use minicbor::data::Type;

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
    /// The JSON body.
    pub body: Vec<u8>,
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

    /// A buffer for the request's JSON body: about the size it will be, so a body of large
    /// items is not copied as it grows.
    fn body_buffer(&self) -> Vec<u8> {
        Vec::with_capacity(128 + self.buf.len() + self.buf.len() / 2)
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
    fn capacity(&self, body: &mut Object<'_>) -> Result<bool, DaxError> {
        let value = match self.int(kw::RETURN_CONSUMED_CAPACITY)? {
            None | Some(0) => return Ok(false),
            Some(1) => "TOTAL",
            Some(2) => "INDEXES",
            Some(_) => return Err(DaxError::validation("Unknown ReturnConsumedCapacity")),
        };
        body.str("ReturnConsumedCapacity", value);
        Ok(true)
    }

    fn collection_metrics(&self, body: &mut Object<'_>) -> Result<(), DaxError> {
        match self.int(kw::RETURN_ITEM_COLLECTION_METRICS)? {
            None | Some(0) => {}
            Some(1) => body.str("ReturnItemCollectionMetrics", "SIZE"),
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

/// What every batch and transaction body ends with: the keyword items that all of them
/// take (capacity, and with `metrics` item collection metrics). Whether the client asked for
/// capacity.
fn batch_tail(k: &Kwargs<'_>, body: &mut Object<'_>, metrics: bool) -> Result<bool, DaxError> {
    let capacity = k.capacity(body)?;
    if metrics {
        k.collection_metrics(body)?;
    }
    Ok(capacity)
}

/// Puts an expression's placeholders into `body`.
fn placeholders(body: &mut Object<'_>, x: &Expressions) {
    if !x.names.is_empty() {
        body.strings("ExpressionAttributeNames", &x.names);
    }
    if !x.values.is_empty() {
        body.values("ExpressionAttributeValues", &x.values);
    }
}

fn projection(
    x: &mut Expressions,
    body: &mut Object<'_>,
    compiled: Option<Vec<u8>>,
) -> Result<Option<Paths>, DaxError> {
    let Some(compiled) = compiled else {
        return Ok(None);
    };
    let (text, paths) = x.projection(&compiled)?;
    body.str("ProjectionExpression", &text);
    Ok(Some(Arc::new(paths)))
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

/// What every single-table method starts with: its table's key shape, its keyword map, and
/// the body (written into `out`) opened with the table's name.
async fn single_table<'a, 'o>(
    shapes: &impl Shapes,
    items: &Items<'a>,
    out: &'o mut Vec<u8>,
) -> Result<(KeyShape, Kwargs<'a>, Object<'o>), DaxError> {
    let table = items.table(0)?;
    let shape = shapes.shape(&table).await?;
    let k = items.kwargs()?;
    let mut body = Object::open(out);
    body.str("TableName", &table);
    Ok((shape, k, body))
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

/// An array item of byte strings (or nulls), each decoded by `each`.
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
