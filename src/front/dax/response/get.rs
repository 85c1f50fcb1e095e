//! GetItem's answer in DAX's encoding.

use serde::Deserialize;

use super::{Capacity, DaxError, E, compact_capacity, param, read, write_item};
use crate::front::dax::item::{KeyShape, Lists};
use crate::front::dax::request::Paths;
use crate::wire::value::Item;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer<'a> {
    #[serde(borrow)]
    item: Option<Item<'a>>,
    #[serde(borrow)]
    consumed_capacity: Option<Capacity<'a>>,
}

/// The answer to a GetItem: the item, by its attribute list (or projected), and capacity.
pub(super) fn get_item(
    e: &mut E<'_>,
    lists: &Lists,
    shape: &KeyShape,
    projection: &Option<Paths>,
    capacity: bool,
    body: &[u8],
) -> Result<(), DaxError> {
    let answer: Answer = read(body)?;
    let cc = answer.consumed_capacity.filter(|_| capacity);
    e.map(answer.item.is_some() as u64 + cc.is_some() as u64)?;
    if let Some(item) = &answer.item {
        e.u64(param::ITEM)?;
        write_item(e, lists, shape, projection.as_ref(), item)?;
    }
    if let Some(cc) = &cc {
        e.u64(param::CONSUMED_CAPACITY)?;
        compact_capacity(e, cc)?;
    }
    Ok(())
}
