//! DynamoDB's JSON answer written as the DAX answer the client reads: `0x80`, then the
//! method's body. Every item count is exact: one item too many or too few and the client
//! misreads every answer after it on the connection.

mod batch_get;
mod get;
mod query;
mod write;

use minicbor::Encoder;
use serde_json::{Map, Value};

use super::DaxError;
use super::item::{self, KeyShape, Lists};
use super::request::{Paths, Reply};

/// Response parameters (`DaxResponseParam`).
mod param {
    pub(super) const ITEM: u64 = 0;
    pub(super) const CONSUMED_CAPACITY: u64 = 1;
    pub(super) const ATTRIBUTES: u64 = 2;
    pub(super) const ITEM_COLLECTION_METRICS: u64 = 3;
    pub(super) const ITEMS: u64 = 7;
    pub(super) const COUNT: u64 = 8;
    pub(super) const LAST_EVALUATED_KEY: u64 = 9;
    pub(super) const SCANNED_COUNT: u64 = 10;
}

/// The success status: an empty array.
pub(super) const SUCCESS: u8 = 0x80;

type E<'a> = Encoder<&'a mut Vec<u8>>;

fn object<'a>(value: &'a Value, field: &str) -> Option<&'a Map<String, Value>> {
    value.get(field).and_then(Value::as_object)
}

fn array<'a>(value: &'a Value, field: &str) -> &'a [Value] {
    value
        .get(field)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn as_item(value: &Value) -> Result<&Map<String, Value>, DaxError> {
    value
        .as_object()
        .ok_or_else(|| DaxError::internal("DynamoDB answered an item that is not an object"))
}

/// Writes the answer to a data request.
pub(super) fn encode(
    lists: &Lists,
    reply: &Reply,
    capacity: bool,
    answer: &Value,
    out: &mut Vec<u8>,
) -> Result<(), DaxError> {
    out.push(SUCCESS);
    let mut e = Encoder::new(out);
    match reply {
        Reply::GetItem { shape, projection } => {
            get::get_item(&mut e, lists, shape, projection, capacity, answer)?
        }
        Reply::Write {
            shape,
            return_values,
        } => write::write(&mut e, lists, shape, return_values, capacity, answer)?,
        Reply::QueryOrScan {
            shape,
            index,
            projection,
        } => query::query_or_scan(&mut e, lists, shape, index, projection, capacity, answer)?,
        Reply::BatchGet { tables } => {
            batch_get::batch_get(&mut e, lists, tables, capacity, answer)?
        }
        Reply::BatchWrite { tables } => {
            write::batch_write(&mut e, lists, tables, capacity, answer)?
        }
        Reply::TransactGet { items } => {
            batch_get::transact_get(&mut e, lists, items, capacity, answer)?
        }
        Reply::TransactWrite { .. } => write::transact_write(&mut e, capacity, answer)?,
    }
    Ok(())
}

/// An item as `bytes(values)` (the client puts the key back) or, projected, by ordinal.
fn write_item(
    e: &mut E<'_>,
    lists: &Lists,
    shape: &KeyShape,
    projection: Option<&Paths>,
    item: &Map<String, Value>,
) -> Result<(), DaxError> {
    match projection {
        Some(paths) => item::encode_projected(e, paths, item),
        None => {
            e.bytes(&item::encode_values(lists, shape, item)?)?;
            Ok(())
        }
    }
}

/// UPDATED_OLD / UPDATED_NEW: `bytes(id, {ordinal: value})` over the sorted names returned.
fn updated_attributes(
    e: &mut E<'_>,
    lists: &Lists,
    attributes: &Map<String, Value>,
) -> Result<(), DaxError> {
    let mut names: Vec<&String> = attributes.keys().collect();
    names.sort();
    let owned: Vec<String> = names.iter().map(|n| (*n).clone()).collect();
    let mut inner = Vec::new();
    let mut ie = Encoder::new(&mut inner);
    ie.i64(lists.id_of(&owned)?)?.map(names.len() as u64)?;
    for (ordinal, name) in names.iter().enumerate() {
        ie.u64(ordinal as u64)?;
        super::av::encode(&mut ie, &attributes[*name])?;
    }
    e.bytes(&inner)?;
    Ok(())
}

fn units(value: &Value) -> f64 {
    value
        .get("CapacityUnits")
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
}

/// `bytes(table, units, table units | null, {gsi: units} | null, {lsi: units} | null)`.
fn compact_capacity(e: &mut E<'_>, cc: &Value) -> Result<(), DaxError> {
    let mut inner = Vec::new();
    let mut ie = Encoder::new(&mut inner);
    ie.str(cc.get("TableName").and_then(Value::as_str).unwrap_or(""))?
        .f64(units(cc))?;
    match cc.get("Table") {
        Some(table) => {
            ie.f64(units(table))?;
        }
        None => {
            ie.null()?;
        }
    }
    for field in ["GlobalSecondaryIndexes", "LocalSecondaryIndexes"] {
        match object(cc, field) {
            Some(indexes) => {
                ie.map(indexes.len() as u64)?;
                for (name, index) in indexes {
                    ie.str(name)?.f64(units(index))?;
                }
            }
            None => {
                ie.null()?;
            }
        }
    }
    e.bytes(&inner)?;
    Ok(())
}

/// Capacity units by their keys in a transaction's capacity map.
const UNITS: [(u64, &str); 3] = [
    (1, "CapacityUnits"),
    (2, "ReadCapacityUnits"),
    (3, "WriteCapacityUnits"),
];

/// A definite map whose entries `fill` writes, counting each: the length is known once they
/// all are.
fn counted_map(
    e: &mut E<'_>,
    fill: impl FnOnce(&mut E<'_>, &mut u64) -> Result<(), DaxError>,
) -> Result<(), DaxError> {
    let mut entries = Vec::new();
    let mut count = 0;
    fill(&mut Encoder::new(&mut entries), &mut count)?;
    e.map(count)?;
    e.writer_mut().extend_from_slice(&entries);
    Ok(())
}

/// The units of `value` that it has, by key.
fn units_map(e: &mut E<'_>, value: &Value) -> Result<(), DaxError> {
    counted_map(e, |e, count| {
        for (key, field) in UNITS {
            if let Some(units) = value.get(field).and_then(Value::as_f64) {
                e.u64(key)?.f64(units)?;
                *count += 1;
            }
        }
        Ok(())
    })
}

/// A transaction's capacity entry: a map with int keys.
fn extended_capacity(e: &mut E<'_>, cc: &Value) -> Result<(), DaxError> {
    counted_map(e, |e, count| {
        for (key, field) in UNITS {
            if let Some(units) = cc.get(field).and_then(Value::as_f64) {
                e.u64(key)?.f64(units)?;
                *count += 1;
            }
        }
        if let Some(table) = cc.get("TableName").and_then(Value::as_str) {
            e.u64(4)?.str(table)?;
            *count += 1;
        }
        if let Some(table) = cc.get("Table").filter(|v| v.is_object()) {
            e.u64(5)?;
            units_map(e, table)?;
            *count += 1;
        }
        for (key, field) in [
            (6u64, "GlobalSecondaryIndexes"),
            (7, "LocalSecondaryIndexes"),
        ] {
            if let Some(indexes) = object(cc, field) {
                e.u64(key)?.map(indexes.len() as u64)?;
                for (name, index) in indexes {
                    e.str(name)?;
                    units_map(e, index)?;
                }
                *count += 1;
            }
        }
        Ok(())
    })
}

/// The batch and transaction answers' array of capacities (empty unless asked for).
fn capacity_list(
    e: &mut E<'_>,
    capacity: bool,
    answer: &Value,
    extended: bool,
) -> Result<(), DaxError> {
    let list = if capacity {
        array(answer, "ConsumedCapacity")
    } else {
        &[]
    };
    e.array(list.len() as u64)?;
    for cc in list {
        if extended {
            extended_capacity(e, cc)?;
        } else {
            compact_capacity(e, cc)?;
        }
    }
    Ok(())
}

/// `bytes(partition key value, lower GB, upper GB)`.
fn collection_metrics(e: &mut E<'_>, icm: &Value) -> Result<(), DaxError> {
    let key = object(icm, "ItemCollectionKey")
        .and_then(|k| k.values().next())
        .ok_or_else(|| DaxError::internal("item collection metrics without a key"))?;
    let range = array(icm, "SizeEstimateRangeGB");
    let mut inner = Vec::new();
    let mut ie = Encoder::new(&mut inner);
    super::av::encode(&mut ie, key)?;
    ie.f64(range.first().and_then(Value::as_f64).unwrap_or(0.0))?
        .f64(range.get(1).and_then(Value::as_f64).unwrap_or(0.0))?;
    e.bytes(&inner)?;
    Ok(())
}

/// TransactionCanceledException's reasons: `code, message, item` for every transaction item.
pub(super) fn cancellation_reasons(
    lists: &Lists,
    reply: &Reply,
    body: &Value,
) -> Result<Vec<u8>, DaxError> {
    let reasons = array(body, "CancellationReasons");
    let shapes: Vec<&KeyShape> = match reply {
        Reply::TransactWrite { items } => items.iter().collect(),
        Reply::TransactGet { items } => items.iter().map(|(s, _)| s).collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out);
    e.array(3 * shapes.len() as u64)?;
    for (i, shape) in shapes.iter().enumerate() {
        let reason = reasons.get(i);
        let text = |field| reason.and_then(|r| r.get(field)).and_then(Value::as_str);
        match text("Code") {
            Some(code) => e.str(code)?,
            None => e.null()?,
        };
        match text("Message") {
            Some(message) => e.str(message)?,
            None => e.null()?,
        };
        match reason.and_then(|r| object(r, "Item")) {
            Some(item) => e.bytes(&item::encode_values(lists, shape, item)?)?,
            None => e.null()?,
        };
    }
    Ok(out)
}
