//! Query and Scan over DAX: compiled expressions, the start key, the index.

use super::{
    DaxError, Items, Reply, Shapes, Translated, kw, placeholders, projection, single_table, utf8,
};
use crate::front::dax::frame::{Dialect, Method};
use crate::front::dax::item;
use crate::front::dax::sexpr::Expressions;
use crate::wire::operation::Operation;

pub(super) async fn query_or_scan(
    shapes: &impl Shapes,
    method: Method,
    items: &Items<'_>,
) -> Result<Translated, DaxError> {
    let mut out = items.body_buffer();
    let (shape, k, mut body) = single_table(shapes, items, &mut out).await?;
    let mut x = Expressions::default();
    let op = if method == Method::Query {
        if items.is_null(1) {
            return Err(DaxError::validation(
                "Either the KeyConditions or KeyConditionExpression parameter must be specified \
                 in the request.",
            ));
        }
        let text = x.condition(&items.bytes(1)?, "k")?;
        body.str("KeyConditionExpression", &text);
        Operation::Query
    } else {
        Operation::Scan
    };
    let index = match k.bytes(kw::INDEX_NAME)? {
        Some(name) => {
            body.str("IndexName", &utf8(name)?);
            true
        }
        None => false,
    };
    if let Some(limit) = k.int(kw::LIMIT)? {
        body.int("Limit", limit);
    }
    if let Some(consistent) = k.flag(kw::CONSISTENT_READ)? {
        body.bool("ConsistentRead", consistent);
    }
    if let Some(forward) = k.flag(kw::SCAN_INDEX_FORWARD)? {
        body.bool("ScanIndexForward", forward);
    }
    if let Some(segment) = k.int(kw::SEGMENT)? {
        body.int("Segment", segment);
    }
    if let Some(total) = k.int(kw::TOTAL_SEGMENTS)? {
        body.int("TotalSegments", total);
    }
    // aws-dax-go-v2 writes ALL_ATTRIBUTES for a Select its caller left unset, and never for
    // one its caller set: from it, 1 means "not given" (a projection or an index then decides).
    let select = k
        .int(kw::SELECT)?
        .filter(|&s| !(s == 1 && shapes.dialect() == Dialect::GoV2));
    if let Some(select) = select {
        let select = match select {
            1 => "ALL_ATTRIBUTES",
            2 => "ALL_PROJECTED_ATTRIBUTES",
            3 => "COUNT",
            4 => "SPECIFIC_ATTRIBUTES",
            _ => return Err(DaxError::validation("Unknown Select")),
        };
        body.str("Select", select);
    }
    if let Some(start) = k.bytes(kw::EXCLUSIVE_START_KEY)? {
        let start = if index {
            item::decode_compound(&start)?
        } else {
            shape.decode(&start)?
        };
        body.values("ExclusiveStartKey", &start);
    }
    let capacity = k.capacity(&mut body)?;
    if let Some(filter) = k.bytes(kw::FILTER)? {
        let text = x.condition(&filter, "f")?;
        body.str("FilterExpression", &text);
    }
    let projection = projection(&mut x, &mut body, k.bytes(kw::PROJECTION)?)?;
    placeholders(&mut body, &x);
    body.close();
    Ok(Translated {
        op,
        body: out,
        reply: Reply::QueryOrScan {
            shape,
            index,
            projection,
        },
        capacity,
    })
}
