//! PutItem, UpdateItem and DeleteItem over DAX, and BatchWriteItem and TransactWriteItems:
//! items and keys decoded against their table's attribute lists and key shape.

use minicbor::data::Type;
use serde_json::{Map, Value, json};

use super::{
    DaxError, Items, Reply, ReturnValues, Shapes, Translated, av, batch_tables, byte_list,
    envelope, int_list, kw, placeholders, shapes_of, single_table, table_names,
};
use crate::front::dax::frame::Method;
use crate::front::dax::item;
use crate::front::dax::sexpr::Expressions;
use crate::wire::operation::Operation;
use crate::wire::request::BATCH_WRITE_MAX_ITEMS;

pub(super) async fn write_item(
    shapes: &impl Shapes,
    method: Method,
    items: &Items<'_>,
) -> Result<Translated, DaxError> {
    let (shape, k, mut body) = single_table(shapes, items).await?;
    let mut key = shape.decode(&items.bytes(1)?)?;
    let op = match method {
        Method::PutItem => {
            let values = item::decode_values(shapes.lists(), &items.bytes(2)?)?;
            key.extend(values);
            body.insert("Item".into(), Value::Object(key));
            Operation::PutItem
        }
        Method::UpdateItem => {
            body.insert("Key".into(), Value::Object(key));
            Operation::UpdateItem
        }
        _ => {
            body.insert("Key".into(), Value::Object(key));
            Operation::DeleteItem
        }
    };
    let return_values = k.return_values()?;
    if return_values != ReturnValues::None {
        body.insert("ReturnValues".into(), json!(return_values.name()));
    }
    let capacity = k.capacity(&mut body)?;
    k.collection_metrics(&mut body)?;
    let mut x = Expressions::default();
    if let Some(update) = k.bytes(kw::UPDATE)? {
        if method != Method::UpdateItem {
            return Err(DaxError::malformed("only updateItem takes an update"));
        }
        let text = x.update(&update)?;
        body.insert("UpdateExpression".into(), json!(text));
    }
    if let Some(condition) = k.expression(kw::CONDITION)? {
        let text = x.condition(&condition, "c")?;
        body.insert("ConditionExpression".into(), json!(text));
    }
    placeholders(&mut body, x);
    Ok(Translated {
        op,
        body: Value::Object(body),
        reply: Reply::Write {
            shape,
            return_values,
        },
        capacity,
    })
}

pub(super) async fn batch_write(
    shapes: &impl Shapes,
    items: &Items<'_>,
) -> Result<Translated, DaxError> {
    let tables = batch_tables(&mut items.decoder(0))?;
    let known = shapes_of(shapes, &tables).await?;
    let mut request_items = Map::new();
    let mut d = items.decoder(0);
    let mut total = 0;
    av::each_pair(&mut d, |d| {
        let table = av::text(d)?;
        let shape = &known[&table];
        let mut writes = Vec::new();
        let mut pending_key: Option<Map<String, Value>> = None;
        av::each(d, |d| {
            // Counted before anything is built: DynamoDB takes 25 writes a batch.
            total += 1;
            if total > 2 * BATCH_WRITE_MAX_ITEMS {
                return Err(DaxError::validation(
                    "Too many items requested for the BatchWriteItem call",
                ));
            }
            match pending_key.take() {
                None => pending_key = Some(shape.decode(&av::bytes(d)?)?),
                Some(mut key) => {
                    if d.datatype()? == Type::Null {
                        d.null()?;
                        writes.push(json!({"DeleteRequest": {"Key": key}}));
                    } else {
                        key.extend(item::decode_values(shapes.lists(), &av::bytes(d)?)?);
                        writes.push(json!({"PutRequest": {"Item": key}}));
                    }
                }
            }
            Ok(())
        })?;
        if pending_key.is_some() {
            return Err(DaxError::malformed("a batch write is (key, values) pairs"));
        }
        if request_items.insert(table, Value::Array(writes)).is_some() {
            return Err(DaxError::validation("a table is named twice"));
        }
        Ok(())
    })?;
    let (body, _, capacity) = envelope(items, "RequestItems", request_items.into(), true)?;
    Ok(Translated {
        op: Operation::BatchWriteItem,
        body: Value::Object(body),
        reply: Reply::BatchWrite { tables: known },
        capacity,
    })
}

pub(super) async fn transact_write(
    shapes: &impl Shapes,
    items: &Items<'_>,
) -> Result<Translated, DaxError> {
    let ops = int_list(&mut items.decoder(0))?;
    let tables = table_names(items, 1)?;
    let known = shapes_of(shapes, &tables).await?;
    let keys = byte_list(&mut items.decoder(2), |b| {
        b.ok_or_else(|| DaxError::malformed("a key is missing"))
    })?;
    let values = byte_list(&mut items.decoder(3), Ok)?;
    // Item 4 is ReturnValues, always null.
    let on_failure = if items.is_null(5) {
        Vec::new()
    } else {
        int_list(&mut items.decoder(5))?
    };
    let conditions = byte_list(&mut items.decoder(6), Ok)?;
    let updates = byte_list(&mut items.decoder(7), Ok)?;
    let n = ops.len();
    let lengths_agree = tables.len() == n
        && keys.len() == n
        && [
            values.len(),
            on_failure.len(),
            conditions.len(),
            updates.len(),
        ]
        .iter()
        .all(|&len| len == 0 || len == n);
    if !lengths_agree {
        return Err(DaxError::malformed(
            "transactWriteItems' lists differ in length",
        ));
    }
    let mut transact = Vec::new();
    let mut reply = Vec::new();
    for i in 0..n {
        let shape = known[&tables[i]].clone();
        let mut key = shape.decode(&keys[i])?;
        let mut entry = Map::new();
        entry.insert("TableName".into(), json!(tables[i]));
        let kind = match ops[i] {
            2 => {
                let values = values
                    .get(i)
                    .cloned()
                    .flatten()
                    .ok_or_else(|| DaxError::malformed("a Put without its item"))?;
                key.extend(item::decode_values(shapes.lists(), &values)?);
                entry.insert("Item".into(), Value::Object(key));
                "Put"
            }
            7 => {
                entry.insert("Key".into(), Value::Object(key));
                "Delete"
            }
            9 => {
                entry.insert("Key".into(), Value::Object(key));
                "Update"
            }
            12 => {
                entry.insert("Key".into(), Value::Object(key));
                "ConditionCheck"
            }
            _ => return Err(DaxError::validation("Unknown transaction operation")),
        };
        let mut x = Expressions::default();
        if let Some(update) = updates.get(i).cloned().flatten() {
            if kind != "Update" {
                return Err(DaxError::malformed("only an Update takes an update"));
            }
            let text = x.update(&update)?;
            entry.insert("UpdateExpression".into(), json!(text));
        }
        if let Some(condition) = conditions.get(i).cloned().flatten() {
            let text = x.condition(&condition, "c")?;
            entry.insert("ConditionExpression".into(), json!(text));
        }
        placeholders(&mut entry, x);
        if on_failure.get(i) == Some(&2) {
            entry.insert(
                "ReturnValuesOnConditionCheckFailure".into(),
                json!("ALL_OLD"),
            );
        }
        transact.push(json!({ kind: entry }));
        reply.push(shape);
    }
    let (mut body, k, capacity) = envelope(items, "TransactItems", transact.into(), true)?;
    if let Some(token) = k.text(kw::CLIENT_REQUEST_TOKEN)? {
        body.insert("ClientRequestToken".into(), json!(token));
    }
    Ok(Translated {
        op: Operation::TransactWriteItems,
        body: Value::Object(body),
        reply: Reply::TransactWrite { items: reply },
        capacity,
    })
}
