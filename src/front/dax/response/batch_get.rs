//! BatchGetItem's and TransactGetItems' answers in DAX's encoding.

use std::collections::HashMap;

use serde::Deserialize;

use super::{Capacity, DaxError, E, capacity_list, read, write_item};
use crate::front::dax::item::{self, KeyShape, Lists};
use crate::front::dax::request::Paths;
use crate::wire::value::{Item, Pairs};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchAnswer<'a> {
    #[serde(borrow, default)]
    responses: Pairs<'a, Vec<Item<'a>>>,
    #[serde(borrow, default)]
    unprocessed_keys: Pairs<'a, Unprocessed<'a>>,
    #[serde(borrow, default)]
    consumed_capacity: Vec<Capacity<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Unprocessed<'a> {
    #[serde(borrow, default)]
    keys: Vec<Item<'a>>,
}

/// The answer to a BatchGetItem: each table's items, the unprocessed keys and capacity.
pub(super) fn batch_get(
    e: &mut E<'_>,
    lists: &Lists,
    tables: &HashMap<String, (KeyShape, Option<Paths>)>,
    capacity: bool,
    body: &[u8],
) -> Result<(), DaxError> {
    let answer: BatchAnswer = read(body)?;
    let asked = |table: &str| {
        tables
            .get(table)
            .ok_or_else(|| DaxError::internal("DynamoDB answered for a table not asked for"))
    };
    e.array(2)?;
    e.map(answer.responses.len() as u64)?;
    for (table, items) in answer.responses.iter() {
        let (shape, projection) = asked(table)?;
        e.str(table)?;
        match projection {
            Some(paths) => {
                e.array(items.len() as u64)?;
                for item in items {
                    item::encode_projected(e, paths, item)?;
                }
            }
            None => {
                e.array(2 * items.len() as u64)?;
                for item in items {
                    e.bytes(&shape.encode(item)?)?;
                    e.bytes(&item::encode_values(lists, shape, item)?)?;
                }
            }
        }
    }
    e.map(answer.unprocessed_keys.len() as u64)?;
    for (table, entry) in answer.unprocessed_keys.iter() {
        let (shape, _) = asked(table)?;
        e.str(table)?.array(entry.keys.len() as u64)?;
        for key in &entry.keys {
            e.bytes(&shape.encode(key)?)?;
        }
    }
    capacity_list(e, capacity, &answer.consumed_capacity, false)?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TransactAnswer<'a> {
    #[serde(borrow, default)]
    responses: Vec<Response<'a>>,
    #[serde(borrow, default)]
    consumed_capacity: Vec<Capacity<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Response<'a> {
    #[serde(borrow)]
    item: Option<Item<'a>>,
}

/// The answer to a TransactGetItems: each item in request order, and capacity.
pub(super) fn transact_get(
    e: &mut E<'_>,
    lists: &Lists,
    items: &[(KeyShape, Option<Paths>)],
    capacity: bool,
    body: &[u8],
) -> Result<(), DaxError> {
    let answer: TransactAnswer = read(body)?;
    e.array(2)?;
    e.array(items.len() as u64)?;
    for (i, (shape, projection)) in items.iter().enumerate() {
        match answer.responses.get(i).and_then(|r| r.item.as_ref()) {
            None => {
                e.null()?;
            }
            Some(item) => write_item(e, lists, shape, projection.as_ref(), item)?,
        }
    }
    capacity_list(e, capacity, &answer.consumed_capacity, true)?;
    Ok(())
}
