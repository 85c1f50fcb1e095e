//! DynamoDB's JSON answer written as the DAX answer the client reads: `0x80`, then the
//! method's body. Every item count is exact: one item too many or too few and the client
//! misreads every answer after it on the connection.
//!
//! Each family reads the answer as its own typed shape ([`crate::wire::value`] for items),
//! borrowing from the answer's bytes, and writes CBOR from that: no tree of JSON values is
//! built. Fields an answer leaves out are absent or zero, as they were for DynamoDB.

mod batch_get;
mod get;
mod query;
mod write;

use std::borrow::Cow;

use minicbor::Encoder;
use serde::Deserialize;

use super::DaxError;
use super::item::{self, KeyShape, Lists};
use super::request::{Paths, Reply};
use crate::wire::value::{AttributeValue, Item, Pairs};

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

/// Reads `body` as the answer shape `T`.
fn read<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, DaxError> {
    serde_json::from_slice(body).map_err(|_| {
        DaxError::internal("DynamoDB answered with JSON that is not the answer's shape")
    })
}

/// Capacity units as DynamoDB reports them for a table or an index.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Units {
    capacity_units: Option<f64>,
    read_capacity_units: Option<f64>,
    write_capacity_units: Option<f64>,
}

/// One `ConsumedCapacity`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Capacity<'a> {
    #[serde(borrow)]
    table_name: Option<Cow<'a, str>>,
    capacity_units: Option<f64>,
    read_capacity_units: Option<f64>,
    write_capacity_units: Option<f64>,
    table: Option<Units>,
    #[serde(borrow)]
    global_secondary_indexes: Option<Pairs<'a, Units>>,
    #[serde(borrow)]
    local_secondary_indexes: Option<Pairs<'a, Units>>,
}

impl Capacity<'_> {
    /// The units counted over the table and its indexes.
    fn units(&self) -> Units {
        Units {
            capacity_units: self.capacity_units,
            read_capacity_units: self.read_capacity_units,
            write_capacity_units: self.write_capacity_units,
        }
    }
}

/// One `ItemCollectionMetrics`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CollectionMetrics<'a> {
    #[serde(borrow)]
    item_collection_key: Item<'a>,
    #[serde(rename = "SizeEstimateRangeGB", default)]
    size_estimate_range_gb: Vec<f64>,
}

/// Writes the answer to a data request.
pub(super) fn encode(
    lists: &Lists,
    reply: &Reply,
    capacity: bool,
    answer: &[u8],
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
    item: &Item<'_>,
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
fn updated_attributes(e: &mut E<'_>, lists: &Lists, attributes: &Item<'_>) -> Result<(), DaxError> {
    let mut sorted: Vec<(&str, &AttributeValue<'_>)> = attributes.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let names: Vec<String> = sorted.iter().map(|(n, _)| (*n).to_string()).collect();
    let mut inner = Vec::new();
    let mut ie = Encoder::new(&mut inner);
    ie.i64(lists.id_of(&names)?)?.map(sorted.len() as u64)?;
    for (ordinal, (_, value)) in sorted.iter().enumerate() {
        ie.u64(ordinal as u64)?;
        super::av::encode(&mut ie, value)?;
    }
    e.bytes(&inner)?;
    Ok(())
}

/// `bytes(table, units, table units | null, {gsi: units} | null, {lsi: units} | null)`.
fn compact_capacity(e: &mut E<'_>, cc: &Capacity<'_>) -> Result<(), DaxError> {
    let units = |u: &Units| u.capacity_units.unwrap_or(0.0);
    let mut inner = Vec::new();
    let mut ie = Encoder::new(&mut inner);
    ie.str(cc.table_name.as_deref().unwrap_or(""))?
        .f64(units(&cc.units()))?;
    match &cc.table {
        Some(table) => {
            ie.f64(units(table))?;
        }
        None => {
            ie.null()?;
        }
    }
    for indexes in [&cc.global_secondary_indexes, &cc.local_secondary_indexes] {
        match indexes {
            Some(indexes) => {
                ie.map(indexes.len() as u64)?;
                for (name, index) in indexes.iter() {
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

/// The units it has, by their keys in a transaction's capacity map.
fn units_entries(e: &mut E<'_>, units: &Units, count: &mut u64) -> Result<(), DaxError> {
    let each = [
        (1u64, units.capacity_units),
        (2, units.read_capacity_units),
        (3, units.write_capacity_units),
    ];
    for (key, value) in each {
        if let Some(value) = value {
            e.u64(key)?.f64(value)?;
            *count += 1;
        }
    }
    Ok(())
}

/// A transaction's capacity entry: a map with int keys.
fn extended_capacity(e: &mut E<'_>, cc: &Capacity<'_>) -> Result<(), DaxError> {
    counted_map(e, |e, count| {
        units_entries(e, &cc.units(), count)?;
        if let Some(table) = &cc.table_name {
            e.u64(4)?.str(table)?;
            *count += 1;
        }
        if let Some(table) = &cc.table {
            e.u64(5)?;
            counted_map(e, |e, count| units_entries(e, table, count))?;
            *count += 1;
        }
        for (key, indexes) in [
            (6u64, &cc.global_secondary_indexes),
            (7, &cc.local_secondary_indexes),
        ] {
            if let Some(indexes) = indexes {
                e.u64(key)?.map(indexes.len() as u64)?;
                for (name, index) in indexes.iter() {
                    e.str(name)?;
                    counted_map(e, |e, count| units_entries(e, index, count))?;
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
    list: &[Capacity<'_>],
    extended: bool,
) -> Result<(), DaxError> {
    let list = if capacity { list } else { &[] };
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
fn collection_metrics(e: &mut E<'_>, icm: &CollectionMetrics<'_>) -> Result<(), DaxError> {
    let (_, key) = icm
        .item_collection_key
        .iter()
        .next()
        .ok_or_else(|| DaxError::internal("item collection metrics without a key"))?;
    let range = &icm.size_estimate_range_gb;
    let mut inner = Vec::new();
    let mut ie = Encoder::new(&mut inner);
    super::av::encode(&mut ie, key)?;
    ie.f64(range.first().copied().unwrap_or(0.0))?
        .f64(range.get(1).copied().unwrap_or(0.0))?;
    e.bytes(&inner)?;
    Ok(())
}

/// TransactionCanceledException's reasons: `code, message, item` for every transaction item.
pub(super) fn cancellation_reasons(
    lists: &Lists,
    reply: &Reply,
    body: &[u8],
) -> Result<Vec<u8>, DaxError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Cancelled<'a> {
        #[serde(borrow, default)]
        cancellation_reasons: Vec<Reason<'a>>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Reason<'a> {
        #[serde(borrow)]
        code: Option<Cow<'a, str>>,
        #[serde(borrow)]
        message: Option<Cow<'a, str>>,
        #[serde(borrow)]
        item: Option<Item<'a>>,
    }
    let reasons = read::<Cancelled>(body)?.cancellation_reasons;
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
        match reason.and_then(|r| r.code.as_deref()) {
            Some(code) => e.str(code)?,
            None => e.null()?,
        };
        match reason.and_then(|r| r.message.as_deref()) {
            Some(message) => e.str(message)?,
            None => e.null()?,
        };
        match reason.and_then(|r| r.item.as_ref()) {
            Some(item) => e.bytes(&item::encode_values(lists, shape, item)?)?,
            None => e.null()?,
        };
    }
    Ok(out)
}
