//! Query's and Scan's answers in DAX's encoding.

use serde_json::Value;

use super::{DaxError, E, as_item, compact_capacity, object, param};
use crate::front::dax::item::{self, KeyShape, Lists};
use crate::front::dax::request::Paths;

/// The answer to a Query or Scan: the items, the count, the last key (a compound key for an index)
/// and capacity.
pub(super) fn query_or_scan(
    e: &mut E<'_>,
    lists: &Lists,
    shape: &KeyShape,
    index: &bool,
    projection: &Option<Paths>,
    capacity: bool,
    answer: &Value,
) -> Result<(), DaxError> {
    let items = answer.get("Items").and_then(Value::as_array);
    let last = object(answer, "LastEvaluatedKey");
    let cc = capacity.then(|| answer.get("ConsumedCapacity")).flatten();
    e.map(2 + items.is_some() as u64 + last.is_some() as u64 + cc.is_some() as u64)?;
    if let Some(items) = items {
        e.u64(param::ITEMS)?.array(items.len() as u64)?;
        for item in items {
            let item = as_item(item)?;
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
    let count = |field| answer.get(field).and_then(Value::as_u64).unwrap_or(0);
    e.u64(param::COUNT)?.u64(count("Count"))?;
    if let Some(last) = last {
        e.u64(param::LAST_EVALUATED_KEY)?;
        if *index {
            e.bytes(&item::encode_compound(last)?)?;
        } else {
            e.bytes(&shape.encode(last)?)?;
        }
    }
    e.u64(param::SCANNED_COUNT)?.u64(count("ScannedCount"))?;
    if let Some(cc) = cc {
        e.u64(param::CONSUMED_CAPACITY)?;
        compact_capacity(e, cc)?;
    }
    Ok(())
}
