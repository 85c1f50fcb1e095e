//! BatchGetItem's and TransactGetItems' answers in DAX's encoding.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{DaxError, E, array, as_item, capacity_list, object, write_item};
use crate::front::dax::item::{self, KeyShape, Lists};
use crate::front::dax::request::Paths;

/// The answer to a BatchGetItem: each table's items, the unprocessed keys and capacity.
pub(super) fn batch_get(
    e: &mut E<'_>,
    lists: &Lists,
    tables: &HashMap<String, (KeyShape, Option<Paths>)>,
    capacity: bool,
    answer: &Value,
) -> Result<(), DaxError> {
    e.array(2)?;
    let responses = object(answer, "Responses");
    let empty = Map::new();
    let responses = responses.unwrap_or(&empty);
    e.map(responses.len() as u64)?;
    for (table, items) in responses {
        let (shape, projection) = tables
            .get(table)
            .ok_or_else(|| DaxError::internal("DynamoDB answered for a table not asked for"))?;
        let items = items.as_array().map_or(&[][..], Vec::as_slice);
        e.str(table)?;
        match projection {
            Some(paths) => {
                e.array(items.len() as u64)?;
                for item in items {
                    item::encode_projected(e, paths, as_item(item)?)?;
                }
            }
            None => {
                e.array(2 * items.len() as u64)?;
                for item in items {
                    let item = as_item(item)?;
                    e.bytes(&shape.encode(item)?)?;
                    e.bytes(&item::encode_values(lists, shape, item)?)?;
                }
            }
        }
    }
    let unprocessed = object(answer, "UnprocessedKeys").unwrap_or(&empty);
    e.map(unprocessed.len() as u64)?;
    for (table, entry) in unprocessed {
        let (shape, _) = tables
            .get(table)
            .ok_or_else(|| DaxError::internal("DynamoDB answered for a table not asked for"))?;
        let keys = array(entry, "Keys");
        e.str(table)?.array(keys.len() as u64)?;
        for key in keys {
            e.bytes(&shape.encode(as_item(key)?)?)?;
        }
    }
    capacity_list(e, capacity, answer, false)?;
    Ok(())
}

/// The answer to a TransactGetItems: each item in request order, and capacity.
pub(super) fn transact_get(
    e: &mut E<'_>,
    lists: &Lists,
    items: &[(KeyShape, Option<Paths>)],
    capacity: bool,
    answer: &Value,
) -> Result<(), DaxError> {
    e.array(2)?;
    let responses = array(answer, "Responses");
    e.array(items.len() as u64)?;
    for (i, (shape, projection)) in items.iter().enumerate() {
        match responses.get(i).and_then(|r| object(r, "Item")) {
            None => {
                e.null()?;
            }
            Some(item) => write_item(e, lists, shape, projection.as_ref(), item)?,
        }
    }
    capacity_list(e, capacity, answer, true)?;
    Ok(())
}
