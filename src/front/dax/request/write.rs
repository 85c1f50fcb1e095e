//! PutItem, UpdateItem and DeleteItem over DAX, and BatchWriteItem and TransactWriteItems:
//! items and keys decoded against their table's attribute lists and key shape.

use std::collections::HashSet;

use minicbor::data::Type;

use super::body::Array;
use super::{
    DaxError, Items, Object, Reply, ReturnValues, Shapes, Translated, av, batch_tables, batch_tail,
    byte_list, int_list, kw, placeholders, shapes_of, single_table, table_names,
};
use crate::front::dax::frame::Method;
use crate::front::dax::item::{self, RawItem};
use crate::front::dax::sexpr::Expressions;
use crate::wire::operation::Operation;
use crate::wire::request::BATCH_WRITE_MAX_ITEMS;

pub(super) async fn write_item(
    shapes: &impl Shapes,
    method: Method,
    items: &Items<'_>,
) -> Result<Translated, DaxError> {
    let mut out = items.body_buffer();
    let (shape, k, mut body) = single_table(shapes, items, &mut out).await?;
    let mut key = shape.decode(&items.bytes(1)?)?;
    let op = match method {
        Method::PutItem => {
            key.extend(item::decode_values(shapes.lists(), &items.bytes(2)?)?);
            body.values("Item", &key);
            Operation::PutItem
        }
        Method::UpdateItem => {
            body.values("Key", &key);
            Operation::UpdateItem
        }
        _ => {
            body.values("Key", &key);
            Operation::DeleteItem
        }
    };
    drop(key);
    let return_values = k.return_values()?;
    if return_values != ReturnValues::None {
        body.str("ReturnValues", return_values.name());
    }
    let capacity = k.capacity(&mut body)?;
    k.collection_metrics(&mut body)?;
    let mut x = Expressions::default();
    if let Some(update) = k.bytes(kw::UPDATE)? {
        if method != Method::UpdateItem {
            return Err(DaxError::malformed("only updateItem takes an update"));
        }
        let text = x.update(&update)?;
        body.str("UpdateExpression", &text);
    }
    if let Some(condition) = k.expression(kw::CONDITION)? {
        let text = x.condition(&condition, "c")?;
        body.str("ConditionExpression", &text);
    }
    placeholders(&mut body, &x);
    body.close();
    Ok(Translated {
        op,
        body: out,
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
    let mut out = items.body_buffer();
    let mut body = Object::open(&mut out);
    let mut request_items = Object::open(body.field("RequestItems"));
    let mut seen = HashSet::new();
    let mut d = items.decoder(0);
    let mut total = 0;
    av::each_pair(&mut d, |d| {
        let table = av::text(d)?;
        let shape = &known[&table];
        if !seen.insert(table.clone()) {
            return Err(DaxError::validation("a table is named twice"));
        }
        let mut writes = Array::open(request_items.field(&table));
        let mut pending_key: Option<RawItem> = None;
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
                    let mut write = Object::open(writes.next());
                    if d.datatype()? == Type::Null {
                        d.null()?;
                        let mut delete = Object::open(write.field("DeleteRequest"));
                        delete.values("Key", &key);
                        delete.close();
                    } else {
                        key.extend(item::decode_values(shapes.lists(), &av::bytes(d)?)?);
                        let mut put = Object::open(write.field("PutRequest"));
                        put.values("Item", &key);
                        put.close();
                    }
                    write.close();
                }
            }
            Ok(())
        })?;
        if pending_key.is_some() {
            return Err(DaxError::malformed("a batch write is (key, values) pairs"));
        }
        writes.close();
        Ok(())
    })?;
    request_items.close();
    let capacity = batch_tail(&items.kwargs()?, &mut body, true)?;
    body.close();
    Ok(Translated {
        op: Operation::BatchWriteItem,
        body: out,
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
    let mut out = items.body_buffer();
    let mut body = Object::open(&mut out);
    let mut transact = Array::open(body.field("TransactItems"));
    let mut reply = Vec::new();
    for i in 0..n {
        let shape = known[&tables[i]].clone();
        let kind = match ops[i] {
            2 => "Put",
            7 => "Delete",
            9 => "Update",
            12 => "ConditionCheck",
            _ => return Err(DaxError::validation("Unknown transaction operation")),
        };
        let mut key = shape.decode(&keys[i])?;
        let mut item = Object::open(transact.next());
        let mut entry = Object::open(item.field(kind));
        entry.str("TableName", &tables[i]);
        if kind == "Put" {
            let values = values
                .get(i)
                .cloned()
                .flatten()
                .ok_or_else(|| DaxError::malformed("a Put without its item"))?;
            key.extend(item::decode_values(shapes.lists(), &values)?);
            entry.values("Item", &key);
        } else {
            entry.values("Key", &key);
        }
        let mut x = Expressions::default();
        if let Some(update) = updates.get(i).cloned().flatten() {
            if kind != "Update" {
                return Err(DaxError::malformed("only an Update takes an update"));
            }
            let text = x.update(&update)?;
            entry.str("UpdateExpression", &text);
        }
        if let Some(condition) = conditions.get(i).cloned().flatten() {
            let text = x.condition(&condition, "c")?;
            entry.str("ConditionExpression", &text);
        }
        placeholders(&mut entry, &x);
        if on_failure.get(i) == Some(&2) {
            entry.str("ReturnValuesOnConditionCheckFailure", "ALL_OLD");
        }
        entry.close();
        item.close();
        reply.push(shape);
    }
    transact.close();
    let k = items.kwargs()?;
    let capacity = batch_tail(&k, &mut body, true)?;
    if let Some(token) = k.text(kw::CLIENT_REQUEST_TOKEN)? {
        body.str("ClientRequestToken", &token);
    }
    body.close();
    Ok(Translated {
        op: Operation::TransactWriteItems,
        body: out,
        reply: Reply::TransactWrite { items: reply },
        capacity,
    })
}
