//! The answers of the writes in DAX's encoding: single items, batches and transactions.

use std::collections::HashMap;

use serde::Deserialize;

use super::{
    Capacity, CollectionMetrics, DaxError, E, capacity_list, collection_metrics, compact_capacity,
    param, read, updated_attributes,
};
use crate::front::dax::item::{self, KeyShape, Lists};
use crate::front::dax::request::ReturnValues;
use crate::wire::value::{Item, Pairs};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WriteAnswer<'a> {
    #[serde(borrow)]
    attributes: Option<Item<'a>>,
    #[serde(borrow)]
    consumed_capacity: Option<Capacity<'a>>,
    #[serde(borrow)]
    item_collection_metrics: Option<CollectionMetrics<'a>>,
}

/// The answer to a PutItem, UpdateItem or DeleteItem: the attributes asked for, capacity and item
/// collection metrics.
pub(super) fn write(
    e: &mut E<'_>,
    lists: &Lists,
    shape: &KeyShape,
    return_values: &ReturnValues,
    capacity: bool,
    body: &[u8],
) -> Result<(), DaxError> {
    let answer: WriteAnswer = read(body)?;
    let cc = answer.consumed_capacity.filter(|_| capacity);
    let icm = &answer.item_collection_metrics;
    e.map(answer.attributes.is_some() as u64 + cc.is_some() as u64 + icm.is_some() as u64)?;
    if let Some(attributes) = &answer.attributes {
        e.u64(param::ATTRIBUTES)?;
        if return_values.whole_item() {
            e.bytes(&item::encode_values(lists, shape, attributes)?)?;
        } else {
            updated_attributes(e, lists, attributes)?;
        }
    }
    if let Some(cc) = &cc {
        e.u64(param::CONSUMED_CAPACITY)?;
        compact_capacity(e, cc)?;
    }
    if let Some(icm) = icm {
        e.u64(param::ITEM_COLLECTION_METRICS)?;
        collection_metrics(e, icm)?;
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchWriteAnswer<'a> {
    #[serde(borrow, default)]
    unprocessed_items: Pairs<'a, Vec<Unprocessed<'a>>>,
    #[serde(borrow, default)]
    consumed_capacity: Vec<Capacity<'a>>,
    #[serde(borrow, default)]
    item_collection_metrics: Pairs<'a, Vec<CollectionMetrics<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Unprocessed<'a> {
    #[serde(borrow)]
    put_request: Option<Put<'a>>,
    #[serde(borrow)]
    delete_request: Option<Delete<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Put<'a> {
    #[serde(borrow)]
    item: Item<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Delete<'a> {
    #[serde(borrow)]
    key: Item<'a>,
}

/// The answer to a BatchWriteItem: the unprocessed writes, capacity and item collection metrics.
pub(super) fn batch_write(
    e: &mut E<'_>,
    lists: &Lists,
    tables: &HashMap<String, KeyShape>,
    capacity: bool,
    body: &[u8],
) -> Result<(), DaxError> {
    let answer: BatchWriteAnswer = read(body)?;
    e.map(answer.unprocessed_items.len() as u64)?;
    for (table, writes) in answer.unprocessed_items.iter() {
        let shape = tables
            .get(table)
            .ok_or_else(|| DaxError::internal("DynamoDB answered for a table not asked for"))?;
        e.str(table)?.array(2 * writes.len() as u64)?;
        for write in writes {
            match (&write.put_request, &write.delete_request) {
                (Some(put), _) => {
                    e.bytes(&shape.encode(&put.item)?)?;
                    // With its key: the Python client reads the key of an unprocessed
                    // put and then drops it, so the values must carry it too.
                    e.bytes(&item::encode_whole(lists, &put.item)?)?;
                }
                (None, Some(delete)) => {
                    e.bytes(&shape.encode(&delete.key)?)?.null()?;
                }
                (None, None) => {
                    return Err(DaxError::internal(
                        "DynamoDB answered a write it does not have",
                    ));
                }
            }
        }
    }
    capacity_list(e, capacity, &answer.consumed_capacity, false)?;
    metrics_by_table(e, &answer.item_collection_metrics)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TransactWriteAnswer<'a> {
    #[serde(borrow, default)]
    consumed_capacity: Vec<Capacity<'a>>,
    #[serde(borrow, default)]
    item_collection_metrics: Pairs<'a, Vec<CollectionMetrics<'a>>>,
}

/// The answer to a TransactWriteItems: capacity and item collection metrics.
pub(super) fn transact_write(e: &mut E<'_>, capacity: bool, body: &[u8]) -> Result<(), DaxError> {
    let answer: TransactWriteAnswer = read(body)?;
    e.array(3)?.array(0)?;
    capacity_list(e, capacity, &answer.consumed_capacity, true)?;
    metrics_by_table(e, &answer.item_collection_metrics)
}

/// `{table: [metrics...]}`.
fn metrics_by_table(
    e: &mut E<'_>,
    metrics: &Pairs<'_, Vec<CollectionMetrics<'_>>>,
) -> Result<(), DaxError> {
    e.map(metrics.len() as u64)?;
    for (table, list) in metrics.iter() {
        e.str(table)?.array(list.len() as u64)?;
        for icm in list {
            collection_metrics(e, icm)?;
        }
    }
    Ok(())
}
