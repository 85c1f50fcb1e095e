//! GetItem over DAX: its key in the table's key encoding, its projection.

use super::{
    DaxError, Items, Reply, Shapes, Translated, kw, placeholders, projection, single_table,
};
use crate::front::dax::sexpr::Expressions;
use crate::wire::operation::Operation;

pub(super) async fn get_item(
    shapes: &impl Shapes,
    items: &Items<'_>,
) -> Result<Translated, DaxError> {
    let mut out = items.body_buffer();
    let (shape, k, mut body) = single_table(shapes, items, &mut out).await?;
    body.values("Key", &shape.decode(&items.bytes(1)?)?);
    if let Some(consistent) = k.flag(kw::CONSISTENT_READ)? {
        body.bool("ConsistentRead", consistent);
    }
    let capacity = k.capacity(&mut body)?;
    let mut x = Expressions::default();
    let projection = projection(&mut x, &mut body, k.bytes(kw::PROJECTION)?)?;
    placeholders(&mut body, &x);
    body.close();
    Ok(Translated {
        op: Operation::GetItem,
        body: out,
        reply: Reply::GetItem { shape, projection },
        capacity,
    })
}
