//! GetItem: parsed on every hit, straight from the body.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Capacity, Form, capacity_acceptable, wants_capacity};
use crate::wire::keys::{ItemKey, WireKeyRef};
use crate::wire::projection::ProjectionInput;
use crate::wire::tables::{self, Named, Naming, TableRef};

/// An eventually consistent GetItem the cache may answer (a consistent one is [`Form::Forward`]).
#[derive(Debug)]
pub struct GetItem {
    pub table: String,
    pub key: ItemKey,
    /// The key as the caller wrote it (for the hot-key list).
    pub wire_key: Bytes,
    pub projection: ProjectionInput,
    /// The projection's canonical name; `None` for the whole item.
    pub variant: Option<Arc<str>>,
    /// The `ConsumedCapacity` the caller asked for.
    pub capacity: Capacity,
}

/// The fields of a GetItem the proxy reads, borrowed from the body where possible: this is
/// parsed on every hit. (No `#[serde(flatten)]`: it would buffer the whole request first.)
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetItemInput<'a> {
    #[serde(borrow)]
    table_name: Cow<'a, str>,
    #[serde(borrow)]
    key: &'a RawValue,
    #[serde(default)]
    consistent_read: bool,
    projection_expression: Option<String>,
    expression_attribute_names: Option<BTreeMap<String, String>>,
    attributes_to_get: Option<Vec<String>>,
    #[serde(borrow)]
    return_consumed_capacity: Option<Cow<'a, str>>,
}

pub(super) fn get_item(body: &Bytes, naming: &Naming) -> Option<(Named, Form)> {
    let input: GetItemInput = serde_json::from_slice(body).ok()?;
    let resolved = naming.resolve(&input.table_name);
    let named = || tables::of_refs([&resolved]);
    let projection = ProjectionInput {
        projection_expression: input.projection_expression,
        expression_attribute_names: input.expression_attribute_names,
        attributes_to_get: input.attributes_to_get,
    };
    let TableRef::Own(table) = &resolved else {
        return Some((named(), Form::Forward));
    };
    if input.consistent_read
        || !projection.acceptable()
        || !capacity_acceptable(input.return_consumed_capacity.as_deref())
    {
        return Some((named(), Form::Forward));
    }
    let wire: WireKeyRef = serde_json::from_str(input.key.get()).ok()?;
    let Some(key) = ItemKey::from_ref(table, &wire) else {
        return Some((named(), Form::Forward));
    };
    let variant = projection.variant();
    Some((
        // The form names its table (`DynamoRequest::tables`); an empty list allocates nothing.
        Named::Tables(Vec::new()),
        Form::Get(GetItem {
            key,
            wire_key: body.slice_ref(input.key.get().as_bytes()),
            variant,
            projection,
            capacity: wants_capacity(input.return_consumed_capacity.as_deref()),
            table: table.to_string(),
        }),
    ))
}
