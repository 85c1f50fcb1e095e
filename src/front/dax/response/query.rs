//! Query's and Scan's answers in DAX's encoding.

use serde::Deserialize;

use super::{Capacity, DaxError, E, compact_capacity, param, read};
use crate::front::dax::item::{self, KeyShape, Lists};
use crate::front::dax::request::Paths;
use crate::wire::value::Item;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer<'a> {
    #[serde(borrow)]
    items: Option<Vec<Item<'a>>>,
    #[serde(default)]
    count: u64,
    #[serde(default)]
    scanned_count: u64,
    #[serde(borrow)]
    last_evaluated_key: Option<Item<'a>>,
    #[serde(borrow)]
    consumed_capacity: Option<Capacity<'a>>,
}

/// The answer to a Query or Scan: the items, the count, the last key (a compound key for an index)
/// and capacity.
pub(super) fn query_or_scan(
    e: &mut E<'_>,
    lists: &Lists,
    shape: &KeyShape,
    index: &bool,
    projection: &Option<Paths>,
    capacity: bool,
    body: &[u8],
) -> Result<(), DaxError> {
    let answer: Answer = read(body)?;
    let cc = answer.consumed_capacity.filter(|_| capacity);
    let last = &answer.last_evaluated_key;
    e.map(2 + answer.items.is_some() as u64 + last.is_some() as u64 + cc.is_some() as u64)?;
    if let Some(items) = &answer.items {
        e.u64(param::ITEMS)?.array(items.len() as u64)?;
        for item in items {
            match projection {
                Some(paths) => item::encode_projected(e, paths, item)?,
                None => {
                    e.array(2)?;
                    e.bytes(&shape.encode(item)?)?;
                    e.bytes(&item::encode_values(lists, shape, item)?)?;
                }
            }
        }
    }
    e.u64(param::COUNT)?.u64(answer.count)?;
    if let Some(last) = last {
        e.u64(param::LAST_EVALUATED_KEY)?;
        if *index {
            e.bytes(&item::encode_compound(last)?)?;
        } else {
            e.bytes(&shape.encode(last)?)?;
        }
    }
    e.u64(param::SCANNED_COUNT)?.u64(answer.scanned_count)?;
    if let Some(cc) = &cc {
        e.u64(param::CONSUMED_CAPACITY)?;
        compact_capacity(e, cc)?;
    }
    Ok(())
}
