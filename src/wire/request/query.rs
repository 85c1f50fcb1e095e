//! Query and Scan: the canonical request a cached answer is keyed by.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Capacity, capacity_acceptable, wants_capacity};
use crate::wire::keys::query_key;
use crate::wire::operation::Operation;
use crate::wire::tables::{Naming, TableRef};

/// An eventually consistent Query or Scan the cache may answer.
#[derive(Debug)]
pub struct QueryOrScan {
    pub table: String,
    /// Everything that changes the answer: the query cache's key.
    pub cache_key: Arc<[u8]>,
    /// The request without `ReturnConsumedCapacity`.
    pub request: Map<String, Value>,
    pub capacity: Capacity,
    /// The index it reads, if any (its capacity is reported under the index's name).
    pub index: Option<String>,
}

pub(super) fn query_or_scan(
    op: Operation,
    mut request: Map<String, Value>,
    naming: &Naming,
) -> Option<QueryOrScan> {
    match request.get("ConsistentRead") {
        None | Some(Value::Bool(false)) => {}
        _ => return None,
    }
    let TableRef::Own(table) = naming.resolve(request.get("TableName")?.as_str()?) else {
        return None;
    };
    let table = table.into_owned();
    let rcc = request.remove("ReturnConsumedCapacity");
    let capacity = match &rcc {
        None => Capacity::None,
        Some(Value::String(v)) if capacity_acceptable(Some(v)) => wants_capacity(Some(v)),
        Some(_) => return None,
    };
    let index = request
        .get("IndexName")
        .and_then(Value::as_str)
        .map(str::to_string);
    // serde_json's map keeps keys sorted, so this text is canonical.
    let canonical = serde_json::to_string(&request).ok()?;
    let cache_key = query_key(&table, op.name(), &canonical);
    Some(QueryOrScan {
        table,
        cache_key,
        request,
        capacity,
        index,
    })
}
