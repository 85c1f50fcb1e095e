//! GetItem's answer in DAX's encoding.

use serde_json::Value;

use super::{DaxError, E, compact_capacity, object, param, write_item};
use crate::front::dax::item::{KeyShape, Lists};
use crate::front::dax::request::Paths;

/// The answer to a GetItem: the item, by its attribute list (or projected), and capacity.
pub(super) fn get_item(
    e: &mut E<'_>,
    lists: &Lists,
    shape: &KeyShape,
    projection: &Option<Paths>,
    capacity: bool,
    answer: &Value,
) -> Result<(), DaxError> {
    let item = object(answer, "Item");
    let cc = capacity.then(|| answer.get("ConsumedCapacity")).flatten();
    e.map(item.is_some() as u64 + cc.is_some() as u64)?;
    if let Some(item) = item {
        e.u64(param::ITEM)?;
        write_item(e, lists, shape, projection.as_ref(), item)?;
    }
    if let Some(cc) = cc {
        e.u64(param::CONSUMED_CAPACITY)?;
        compact_capacity(e, cc)?;
    }
    Ok(())
}
