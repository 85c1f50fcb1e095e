//! The item writes (PutItem, DeleteItem, UpdateItem), batches and transactions: which keys
//! they touch, and whether a put's item can be cached as DynamoDB will return it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Form, named, unplaced, writes_to};
use crate::wire::keys::{WireKey, is_wire_canonical_number};
use crate::wire::tables::{Named, Naming, TableRef};

/// A PutItem of a table the proxy can place.
#[derive(Debug)]
pub struct PutItem {
    pub table: String,
    pub item: NewItem,
}

/// An item a write puts.
#[derive(Debug)]
pub struct NewItem {
    /// The item as sent (a slice of the body).
    pub raw: Bytes,
    /// Each top-level attribute's value as sent (a slice of the body).
    pub attributes: BTreeMap<String, Bytes>,
    /// Whether the item can be cached as written: every number already in the form DynamoDB
    /// answers with (otherwise a later read would see different text).
    pub storable: bool,
}

/// DeleteItem or UpdateItem.
#[derive(Debug)]
pub struct KeyedWrite {
    pub table: String,
    pub key: WireKey,
    pub return_values: Option<String>,
    /// Where `ReturnValues`' value sits in the body, so a copy asking for something else can
    /// be made without reading the body again.
    pub return_values_at: Option<std::ops::Range<usize>>,
}

impl KeyedWrite {
    /// The request `body` asking for `ReturnValues: ALL_NEW` instead, every other byte as
    /// the caller sent it.
    pub fn asking_all_new(&self, body: &Bytes) -> Bytes {
        const ALL_NEW: &[u8] = b"\"ALL_NEW\"";
        let mut out = Vec::with_capacity(body.len() + 32);
        match &self.return_values_at {
            Some(at) => {
                out.extend_from_slice(&body[..at.start]);
                out.extend_from_slice(ALL_NEW);
                out.extend_from_slice(&body[at.end..]);
            }
            None => {
                // A JSON object (it was parsed as one): the field goes before its last `}`.
                let close = body.iter().rposition(|b| *b == b'}').unwrap_or(body.len());
                let empty = body[..close]
                    .iter()
                    .rev()
                    .find(|b| !b.is_ascii_whitespace())
                    == Some(&b'{');
                out.extend_from_slice(&body[..close]);
                if !empty {
                    out.push(b',');
                }
                out.extend_from_slice(b"\"ReturnValues\":");
                out.extend_from_slice(ALL_NEW);
                out.extend_from_slice(&body[close..]);
            }
        }
        Bytes::from(out)
    }
}

/// One write of a batch or transaction.
#[derive(Debug)]
pub enum WriteAction {
    Put {
        table: String,
        item: NewItem,
    },
    /// A delete or an update, by key.
    Keyed {
        table: String,
        key: WireKey,
    },
    /// A transaction's condition check: reads, writes nothing.
    Check,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutItemInput<'a> {
    table_name: String,
    #[serde(borrow)]
    item: &'a RawValue,
}

pub(super) fn put_item(body: &Bytes, naming: &Naming) -> Option<(Named, Form)> {
    let input: PutItemInput = serde_json::from_slice(body).ok()?;
    let item = new_item(body, input.item)?;
    Some(match naming.resolve(&input.table_name) {
        TableRef::Own(table) => {
            let table = table.into_owned();
            (named(&table), Form::PutItem(PutItem { table, item }))
        }
        other => unplaced(vec![other]),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyedInput<'a> {
    table_name: String,
    key: WireKey,
    #[serde(borrow)]
    return_values: Option<&'a RawValue>,
}

pub(super) fn keyed_write(
    body: &Bytes,
    naming: &Naming,
    form: fn(KeyedWrite) -> Form,
) -> Option<(Named, Form)> {
    let input: KeyedInput = serde_json::from_slice(body).ok()?;
    let return_values = match input.return_values {
        Some(raw) => Some(serde_json::from_str::<String>(raw.get()).ok()?),
        None => None,
    };
    let return_values_at = input.return_values.map(|raw| {
        let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
        start..start + raw.get().len()
    });
    Some(match naming.resolve(&input.table_name) {
        TableRef::Own(table) => {
            let table = table.into_owned();
            let write = KeyedWrite {
                table: table.clone(),
                key: input.key,
                return_values,
                return_values_at,
            };
            (named(&table), form(write))
        }
        other => unplaced(vec![other]),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchWriteInput<'a> {
    #[serde(borrow)]
    request_items: BTreeMap<String, Vec<WriteRequestInput<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WriteRequestInput<'a> {
    #[serde(borrow)]
    put_request: Option<PutRequestInput<'a>>,
    delete_request: Option<DeleteRequestInput>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRequestInput<'a> {
    #[serde(borrow)]
    item: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteRequestInput {
    key: WireKey,
}

pub(super) fn batch_write(body: &Bytes, naming: &Naming) -> Option<(Named, Form)> {
    let input: BatchWriteInput = serde_json::from_slice(body).ok()?;
    let mut actions = Vec::new();
    let mut refs = Vec::new();
    for (sent, requests) in input.request_items {
        let resolved = naming.resolve(&sent);
        let table = resolved.name().to_string();
        for request in requests {
            actions.push(match (request.put_request, request.delete_request) {
                (Some(put), None) => WriteAction::Put {
                    table: table.clone(),
                    item: new_item(body, put.item)?,
                },
                (None, Some(delete)) => WriteAction::Keyed {
                    table: table.clone(),
                    key: delete.key,
                },
                // DynamoDB refuses the whole batch: nothing changes.
                _ => return None,
            });
        }
        refs.push(resolved.into_owned());
    }
    Some(writes_to(refs, Form::BatchWriteItem(actions)))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TransactWriteInput<'a> {
    #[serde(borrow)]
    transact_items: Vec<TransactItemInput<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TransactItemInput<'a> {
    #[serde(borrow)]
    put: Option<TransactPut<'a>>,
    update: Option<TransactKeyed>,
    delete: Option<TransactKeyed>,
    condition_check: Option<TransactTable>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TransactPut<'a> {
    table_name: String,
    #[serde(borrow)]
    item: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TransactKeyed {
    table_name: String,
    key: WireKey,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TransactTable {
    table_name: String,
}

pub(super) fn transact_write(body: &Bytes, naming: &Naming) -> Option<(Named, Form)> {
    let input: TransactWriteInput = serde_json::from_slice(body).ok()?;
    let mut actions = Vec::new();
    let mut refs = Vec::new();
    for entry in input.transact_items {
        let (sent, action) = match (
            entry.put,
            entry.update.or(entry.delete),
            entry.condition_check,
        ) {
            (Some(put), None, None) => {
                let table = naming.resolve(&put.table_name).name().to_string();
                let item = new_item(body, put.item)?;
                (put.table_name, WriteAction::Put { table, item })
            }
            (None, Some(keyed), None) => {
                let table = naming.resolve(&keyed.table_name).name().to_string();
                (
                    keyed.table_name,
                    WriteAction::Keyed {
                        table,
                        key: keyed.key,
                    },
                )
            }
            (None, None, Some(check)) => (check.table_name, WriteAction::Check),
            // No action, or several in one entry: DynamoDB refuses the transaction.
            _ => return None,
        };
        refs.push(naming.resolve(&sent).into_owned());
        actions.push(action);
    }
    Some(writes_to(refs, Form::TransactWriteItems(actions)))
}

/// The item's top-level attributes, each a slice of the body: an item is never built as a
/// tree of JSON values (hundreds of bytes for every scalar in it), only read through once.
fn new_item(body: &Bytes, raw: &RawValue) -> Option<NewItem> {
    let top: BTreeMap<String, &RawValue> = serde_json::from_str(raw.get()).ok()?;
    let mut storable = true;
    let mut attributes = BTreeMap::new();
    for (name, value) in top {
        storable &= serde_json::from_str::<Canonical>(value.get()).is_ok_and(|c| c.0);
        attributes.insert(name, body.slice_ref(value.get().as_bytes()));
    }
    Some(NewItem {
        raw: body.slice_ref(raw.get().as_bytes()),
        attributes,
        storable,
    })
}

/// Whether every number in a typed attribute value is in DynamoDB's own form, read as the
/// value streams past (strings of numbers aside, nothing of it is kept).
struct Canonical(bool);

impl<'de> Deserialize<'de> for Canonical {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Canonical, D::Error> {
        d.deserialize_any(CanonicalVisitor)
    }
}

struct CanonicalVisitor;

impl<'de> serde::de::Visitor<'de> for CanonicalVisitor {
    type Value = Canonical;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an attribute value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Canonical, A::Error> {
        use serde::de::IgnoredAny;
        let mut all = true;
        while let Some(kind) = map.next_key::<Cow<'de, str>>()? {
            all &= match &*kind {
                "N" => is_wire_canonical_number(&map.next_value::<Cow<'de, str>>()?),
                "NS" => map.next_value::<AllOf<CanonicalNumber>>()?.0,
                "M" => map.next_value::<CanonicalMap>()?.0,
                "L" => map.next_value::<AllOf<Canonical>>()?.0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    true
                }
            };
        }
        Ok(Canonical(all))
    }

    // Anything but an object is not an attribute value.
    fn visit_bool<E>(self, _: bool) -> Result<Canonical, E> {
        Ok(Canonical(false))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Canonical, E> {
        Ok(Canonical(false))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Canonical, E> {
        Ok(Canonical(false))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Canonical, E> {
        Ok(Canonical(false))
    }
    fn visit_str<E>(self, _: &str) -> Result<Canonical, E> {
        Ok(Canonical(false))
    }
    fn visit_unit<E>(self) -> Result<Canonical, E> {
        Ok(Canonical(false))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Canonical, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Canonical(false))
    }
}

/// `M`'s members, each checked.
struct CanonicalMap(bool);

impl<'de> Deserialize<'de> for CanonicalMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CanonicalMap, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CanonicalMap;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of attribute values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<CanonicalMap, A::Error> {
                let mut all = true;
                while let Some((_, value)) = map.next_entry::<serde::de::IgnoredAny, Canonical>()? {
                    all &= value.0;
                }
                Ok(CanonicalMap(all))
            }
        }
        d.deserialize_map(V)
    }
}

/// Whether every element of a list is canonical: `L`'s values, or `NS`'s numbers.
struct AllOf<T>(bool, std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de> + Into<bool>> Deserialize<'de> for AllOf<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<AllOf<T>, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Into<bool>> serde::de::Visitor<'de> for V<T> {
            type Value = AllOf<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<AllOf<T>, A::Error> {
                let mut all = true;
                while let Some(element) = seq.next_element::<T>()? {
                    all &= element.into();
                }
                Ok(AllOf(all, std::marker::PhantomData))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

impl From<Canonical> for bool {
    fn from(c: Canonical) -> bool {
        c.0
    }
}

/// One member of `NS`: canonical or not.
struct CanonicalNumber(bool);

impl<'de> Deserialize<'de> for CanonicalNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CanonicalNumber, D::Error> {
        let n = Cow::<'de, str>::deserialize(d)?;
        Ok(CanonicalNumber(is_wire_canonical_number(&n)))
    }
}

impl From<CanonicalNumber> for bool {
    fn from(c: CanonicalNumber) -> bool {
        c.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_item_is_read_through_once_and_kept_as_slices_of_the_body() {
        let storable = |item: &str| {
            let body = Bytes::from(format!(r#"{{"TableName":"t","Item":{item}}}"#));
            let input: PutItemInput = serde_json::from_slice(&body).unwrap();
            new_item(&body, input.item).map(|i| (i.storable, i.attributes.len()))
        };
        let nested = r#"{"pk":{"S":"a"},"l":{"L":[{"N":"1"},{"M":{"x":{"NS":["2","-3.5"]}}}]}}"#;
        assert_eq!(storable(nested), Some((true, 2)));
        assert_eq!(
            storable(r#"{"pk":{"S":"a"},"n":{"N":"1.0"}}"#),
            Some((false, 2))
        );
        let deep = r#"{"m":{"M":{"x":{"L":[{"NS":["1","02"]}]}}}}"#;
        assert_eq!(storable(deep), Some((false, 1)));
        // Not an attribute value: not cached from the body.
        assert_eq!(storable(r#"{"pk":"a"}"#), Some((false, 1)));
        assert_eq!(storable(r#"[1]"#), None);
        let body = Bytes::from_static(br#"{"TableName":"t","Item":{"pk":{"S":"a"}}}"#);
        let input: PutItemInput = serde_json::from_slice(&body).unwrap();
        let item = new_item(&body, input.item).unwrap();
        assert_eq!(&item.attributes["pk"][..], br#"{"S":"a"}"#);
    }
}
