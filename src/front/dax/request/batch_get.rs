//! BatchGetItem and TransactGetItems over DAX: each table's keys and projection.

use std::collections::HashMap;

use minicbor::data::Type;
use serde_json::{Map, Value, json};

use super::{
    DaxError, Items, Reply, Shapes, Translated, av, batch_tables, byte_list, envelope,
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
    let mut request_items = Map::new();
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
        let mut entry = Map::new();
        let consistent = match d.datatype()? {
            Type::Bool => d.bool()?,
            Type::Null => {
                d.null()?;
                false
            }
            _ => d.i64()? != 0,
        };
        if consistent {
            entry.insert("ConsistentRead".into(), json!(true));
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
        let mut keys = Vec::new();
        av::each(d, |d| {
            // Counted before anything is built: DynamoDB takes 100 keys a batch.
            total += 1;
            if total > BATCH_GET_MAX_KEYS {
                return Err(DaxError::validation(
                    "Too many items requested for the BatchGetItem call",
                ));
            }
            keys.push(Value::Object(shape.decode(&av::bytes(d)?)?));
            Ok(())
        })?;
        entry.insert("Keys".into(), Value::Array(keys));
        placeholders(&mut entry, x);
        request_items.insert(table.clone(), Value::Object(entry));
        reply.insert(table, (shape, projection));
        Ok(())
    })?;
    let (body, _, capacity) = envelope(items, "RequestItems", request_items.into(), false)?;
    Ok(Translated {
        op: Operation::BatchGetItem,
        body: Value::Object(body),
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
    let mut transact = Vec::new();
    let mut reply = Vec::new();
    for (i, (table, key)) in tables.iter().zip(keys).enumerate() {
        let shape = known[table].clone();
        let mut get = Map::new();
        get.insert("TableName".into(), json!(table));
        get.insert("Key".into(), Value::Object(shape.decode(&key)?));
        let mut x = Expressions::default();
        let projection = projection(&mut x, &mut get, projections.get(i).cloned().flatten())?;
        placeholders(&mut get, x);
        transact.push(json!({ "Get": get }));
        reply.push((shape, projection));
    }
    let (body, _, capacity) = envelope(items, "TransactItems", transact.into(), false)?;
    Ok(Translated {
        op: Operation::TransactGetItems,
        body: Value::Object(body),
        reply: Reply::TransactGet { items: reply },
        capacity,
    })
}
