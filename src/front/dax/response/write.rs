//! The answers of the writes in DAX's encoding: single items, batches and transactions.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{
    DaxError, E, as_item, capacity_list, collection_metrics, compact_capacity, object, param,
    updated_attributes,
};
use crate::front::dax::item::{self, KeyShape, Lists};
use crate::front::dax::request::ReturnValues;

/// The answer to a PutItem, UpdateItem or DeleteItem: the attributes asked for, capacity and item
/// collection metrics.
pub(super) fn write(
    e: &mut E<'_>,
    lists: &Lists,
    shape: &KeyShape,
    return_values: &ReturnValues,
    capacity: bool,
    answer: &Value,
) -> Result<(), DaxError> {
    let attributes = object(answer, "Attributes");
    let cc = capacity.then(|| answer.get("ConsumedCapacity")).flatten();
    let icm = answer.get("ItemCollectionMetrics").filter(|v| !v.is_null());
    e.map(attributes.is_some() as u64 + cc.is_some() as u64 + icm.is_some() as u64)?;
    if let Some(attributes) = attributes {
        e.u64(param::ATTRIBUTES)?;
        if return_values.whole_item() {
            e.bytes(&item::encode_values(lists, shape, attributes)?)?;
        } else {
            updated_attributes(e, lists, attributes)?;
        }
    }
    if let Some(cc) = cc {
        e.u64(param::CONSUMED_CAPACITY)?;
        compact_capacity(e, cc)?;
    }
    if let Some(icm) = icm {
        e.u64(param::ITEM_COLLECTION_METRICS)?;
        collection_metrics(e, icm)?;
    }
    Ok(())
}

/// The answer to a BatchWriteItem: the unprocessed writes, capacity and item collection metrics.
pub(super) fn batch_write(
    e: &mut E<'_>,
    lists: &Lists,
    tables: &HashMap<String, KeyShape>,
    capacity: bool,
    answer: &Value,
) -> Result<(), DaxError> {
    let empty = Map::new();
    let unprocessed = object(answer, "UnprocessedItems").unwrap_or(&empty);
    e.map(unprocessed.len() as u64)?;
    for (table, writes) in unprocessed {
        let shape = tables
            .get(table)
            .ok_or_else(|| DaxError::internal("DynamoDB answered for a table not asked for"))?;
        let writes = writes.as_array().map_or(&[][..], Vec::as_slice);
        e.str(table)?.array(2 * writes.len() as u64)?;
        for write in writes {
            if let Some(item) = write.pointer("/PutRequest/Item") {
                let item = as_item(item)?;
                e.bytes(&shape.encode(item)?)?;
                // With its key: the Python client reads the key of an unprocessed
                // put and then drops it, so the values must carry it too.
                e.bytes(&item::encode_whole(lists, item)?)?;
            } else {
                let key = write.pointer("/DeleteRequest/Key").ok_or_else(|| {
                    DaxError::internal("DynamoDB answered a write it does not have")
                })?;
                e.bytes(&shape.encode(as_item(key)?)?)?.null()?;
            }
        }
    }
    capacity_list(e, capacity, answer, false)?;
    let metrics = object(answer, "ItemCollectionMetrics").unwrap_or(&empty);
    e.map(metrics.len() as u64)?;
    for (table, list) in metrics {
        let list = list.as_array().map_or(&[][..], Vec::as_slice);
        e.str(table)?.array(list.len() as u64)?;
        for icm in list {
            collection_metrics(e, icm)?;
        }
    }
    Ok(())
}

/// The answer to a TransactWriteItems: capacity and item collection metrics.
pub(super) fn transact_write(
    e: &mut E<'_>,
    capacity: bool,
    answer: &Value,
) -> Result<(), DaxError> {
    e.array(3)?.array(0)?;
    capacity_list(e, capacity, answer, true)?;
    let metrics = object(answer, "ItemCollectionMetrics");
    e.map(metrics.map_or(0, Map::len) as u64)?;
    for (table, list) in metrics.into_iter().flatten() {
        let list = list.as_array().map_or(&[][..], Vec::as_slice);
        e.str(table)?.array(list.len() as u64)?;
        for icm in list {
            collection_metrics(e, icm)?;
        }
    }
    Ok(())
}
