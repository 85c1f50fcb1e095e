//! BatchGetItem: every table's keys, each typed, within DynamoDB's bounds.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{BATCH_GET_MAX_KEYS, Capacity, capacity_acceptable, wants_capacity};
use crate::wire::keys::{ItemKey, WireKey};
use crate::wire::projection::ProjectionInput;
use crate::wire::tables::{Naming, TableRef};

/// A BatchGetItem that DynamoDB would accept.
#[derive(Debug)]
pub struct BatchGet {
    pub tables: Vec<BatchTable>,
    pub return_consumed_capacity: Option<String>,
    pub capacity: Capacity,
}

/// One table's part of a BatchGetItem.
#[derive(Debug)]
pub struct BatchTable {
    /// The table as the request names it (the key of `RequestItems` and of the answer).
    pub sent: String,
    /// The plain name, for the cache.
    pub table: String,
    /// Whether the cache may answer and fill it (eventually consistent, own region).
    pub cacheable: bool,
    /// Every parameter but `Keys`, for the smaller upstream request.
    pub params: Map<String, Value>,
    pub variant: Option<Arc<str>>,
    /// The keys in request order: as sent, and canonical.
    pub keys: Vec<(Value, ItemKey)>,
    /// The key's attribute names, from the requested keys.
    pub key_names: Vec<String>,
}

pub(super) fn batch_get(mut object: Map<String, Value>, naming: &Naming) -> Option<BatchGet> {
    let rcc = match object.remove("ReturnConsumedCapacity") {
        None => None,
        Some(Value::String(rcc)) => Some(rcc),
        Some(_) => return None,
    };
    if !capacity_acceptable(rcc.as_deref()) {
        return None;
    }
    let Some(Value::Object(items)) = object.remove("RequestItems") else {
        return None;
    };
    // Empty, or too many keys: DynamoDB refuses the whole request.
    if items.is_empty() {
        return None;
    }
    let mut total = 0;
    let mut tables = Vec::new();
    for (sent, params) in items {
        let Value::Object(mut params) = params else {
            return None;
        };
        let Some(Value::Array(keys)) = params.remove("Keys") else {
            return None;
        };
        total += keys.len();
        if keys.is_empty() || total > BATCH_GET_MAX_KEYS {
            return None;
        }
        let consistent = match params.get("ConsistentRead") {
            None | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) => true,
            Some(_) => return None,
        };
        let projection: ProjectionInput =
            serde_json::from_value(Value::Object(params.clone())).ok()?;
        if !projection.acceptable() {
            return None;
        }
        let resolved = naming.resolve(&sent);
        let table = resolved.name().to_string();
        let mut seen = HashSet::new();
        let mut typed_keys = Vec::with_capacity(keys.len());
        let mut key_names = Vec::new();
        for raw in keys {
            let wire = serde_json::from_value::<WireKey>(raw.clone()).ok()?;
            let key = ItemKey::new(&table, &wire)?;
            // The same key twice: DynamoDB refuses the request.
            if !seen.insert(key.clone()) {
                return None;
            }
            key_names = wire.keys().cloned().collect();
            typed_keys.push((raw, key));
        }
        tables.push(BatchTable {
            cacheable: !consistent && matches!(resolved, TableRef::Own(_)),
            variant: projection.variant(),
            sent,
            table,
            params,
            keys: typed_keys,
            key_names,
        });
    }
    // Anything else at the top level is DynamoDB's to judge.
    if !object.is_empty() {
        return None;
    }
    Some(BatchGet {
        tables,
        capacity: wants_capacity(rcc.as_deref()),
        return_consumed_capacity: rcc,
    })
}
