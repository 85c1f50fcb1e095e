//! GetItem over DAX: its key in the table's key encoding, its projection.

use serde_json::{Value, json};

use super::{
    DaxError, Items, Reply, Shapes, Translated, kw, placeholders, projection, single_table,
};
use crate::front::dax::sexpr::Expressions;
use crate::wire::operation::Operation;

pub(super) async fn get_item(
    shapes: &impl Shapes,
    items: &Items<'_>,
) -> Result<Translated, DaxError> {
    let (shape, k, mut body) = single_table(shapes, items).await?;
    let key = shape.decode(&items.bytes(1)?)?;
    body.insert("Key".into(), Value::Object(key));
    if let Some(consistent) = k.flag(kw::CONSISTENT_READ)? {
        body.insert("ConsistentRead".into(), json!(consistent));
    }
    let capacity = k.capacity(&mut body)?;
    let mut x = Expressions::default();
    let projection = projection(&mut x, &mut body, k.bytes(kw::PROJECTION)?)?;
    placeholders(&mut body, x);
    Ok(Translated {
        op: Operation::GetItem,
        body: Value::Object(body),
        reply: Reply::GetItem { shape, projection },
        capacity,
    })
}
