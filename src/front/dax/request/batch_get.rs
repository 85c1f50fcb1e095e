//! BatchGetItem and TransactGetItems over DAX: each table's keys and projection.

use std::collections::HashMap;

use minicbor::data::Type;

use super::body::{self, Array};
use super::{
    DaxError, Items, Object, Reply, Shapes, Translated, av, batch_tables, batch_tail, byte_list,
    placeholders, projection, shapes_of, table_names,
};
use crate::front::dax::sexpr::Expressions;
use crate::wire::operation::Operation;
use crate::wire::request::BATCH_GET_MAX_KEYS;

pub(super) async fn batch_get(
    shapes: &impl Shapes,
    items: &Items<'_>,
) -> Result<Translated, DaxError> {
    let tables = batch_tables(&mut items.decoder(0))?;
    let mut known = shapes_of(shapes, &tables).await?;
    let mut out = items.body_buffer();
    let mut body = Object::open(&mut out);
    let mut request_items = Object::open(body.field("RequestItems"));
    let mut reply = HashMap::new();
    let mut d = items.decoder(0);
    let mut total = 0;
    av::each_pair(&mut d, |d| {
        let table = av::text(d)?;
        let shape = known
            .remove(&table)
            .ok_or_else(|| DaxError::validation("a table is named twice"))?;
        if d.array()? != Some(3) {
            return Err(DaxError::malformed(
                "a batch table is [consistent, projection, keys]",
            ));
        }
        let mut entry = Object::open(request_items.field(&table));
        let consistent = match d.datatype()? {
            Type::Bool => d.bool()?,
            Type::Null => {
                d.null()?;
                false
            }
            _ => d.i64()? != 0,
        };
        if consistent {
            entry.bool("ConsistentRead", true);
        }
        let compiled = match d.datatype()? {
            Type::Null => {
                d.null()?;
                None
            }
            _ => Some(av::bytes(d)?),
        };
        let mut x = Expressions::default();
        let projection = projection(&mut x, &mut entry, compiled)?;
        let mut keys = Array::open(entry.field("Keys"));
        av::each(d, |d| {
            // Counted before anything is built: DynamoDB takes 100 keys a batch.
            total += 1;
            if total > BATCH_GET_MAX_KEYS {
                return Err(DaxError::validation(
                    "Too many items requested for the BatchGetItem call",
                ));
            }
            body::values(keys.next(), &shape.decode(&av::bytes(d)?)?);
            Ok(())
        })?;
        keys.close();
        placeholders(&mut entry, &x);
        entry.close();
        reply.insert(table, (shape, projection));
        Ok(())
    })?;
    request_items.close();
    let capacity = batch_tail(&items.kwargs()?, &mut body, false)?;
    body.close();
    Ok(Translated {
        op: Operation::BatchGetItem,
        body: out,
        reply: Reply::BatchGet { tables: reply },
        capacity,
    })
}

pub(super) async fn transact_get(
    shapes: &impl Shapes,
    items: &Items<'_>,
) -> Result<Translated, DaxError> {
    let tables = table_names(items, 0)?;
    let known = shapes_of(shapes, &tables).await?;
    let keys = byte_list(&mut items.decoder(1), |b| {
        b.ok_or_else(|| DaxError::malformed("a key is missing"))
    })?;
    let projections = byte_list(&mut items.decoder(2), Ok)?;
    if keys.len() != tables.len() || (!projections.is_empty() && projections.len() != keys.len()) {
        return Err(DaxError::malformed(
            "transactGetItems' lists differ in length",
        ));
    }
    let mut out = items.body_buffer();
    let mut body = Object::open(&mut out);
    let mut transact = Array::open(body.field("TransactItems"));
    let mut reply = Vec::new();
    for (i, (table, key)) in tables.iter().zip(keys).enumerate() {
        let shape = known[table].clone();
        let mut item = Object::open(transact.next());
        let mut get = Object::open(item.field("Get"));
        get.str("TableName", table);
        get.values("Key", &shape.decode(&key)?);
        let mut x = Expressions::default();
        let projection = projection(&mut x, &mut get, projections.get(i).cloned().flatten())?;
        placeholders(&mut get, &x);
        get.close();
        item.close();
        reply.push((shape, projection));
    }
    transact.close();
    let capacity = batch_tail(&items.kwargs()?, &mut body, false)?;
    body.close();
    Ok(Translated {
        op: Operation::TransactGetItems,
        body: out,
        reply: Reply::TransactGet { items: reply },
        capacity,
    })
}
