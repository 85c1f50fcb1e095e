//! Item keys as the store keeps them.
//!
//! A canonical key (`wire::keys`) is the table, then each key attribute's name, type and value,
//! each length-prefixed. Everything but the values is the same for every item of a table (or
//! of an index's key schema): the key's *shape*. The store keeps each shape once, numbered,
//! and an entry keeps the shape's number and the values: for a two-attribute key of a short
//! table, about half the key's bytes.
//!
//! The stored form is the shape's number (LEB128) then the value fields as they are in the key,
//! so two keys have the same stored form exactly when they are the same key. Bytes that are not
//! a canonical key (the store's own tests use any bytes) are kept whole under number 0.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::cache::compact::{push_varint, read_varint};

/// Shapes numbered at most (tables times key schemas; fills only come from answers DynamoDB
/// gave, so only real tables and key names get here). Keys of further shapes are not stored.
const MAX_SHAPES: usize = 1 << 16;

/// Number 0: the stored form is the key itself.
const WHOLE: u64 = 0;

/// The numbered shapes of one store.
#[derive(Default)]
pub(super) struct Shapes {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    numbers: HashMap<Box<[u8]>, u64>,
    /// Shape `n` is `list[n - 1]`.
    list: Vec<Box<[u8]>>,
}

/// A key split into its shape and its values.
struct Split {
    shape: Vec<u8>,
    values: Vec<u8>,
}

/// One length-prefixed field at `*at`: its whole bytes, prefix included.
fn field<'a>(key: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let start = *at;
    let len = usize::try_from(read_varint(key, at)?).ok()?;
    let end = at.checked_add(len)?;
    key.get(..end)?;
    *at = end;
    Some(&key[start..end])
}

fn split(key: &[u8]) -> Option<Split> {
    let mut at = 0;
    let mut shape = Vec::with_capacity(16);
    let mut values = Vec::with_capacity(key.len());
    shape.extend_from_slice(field(key, &mut at)?);
    let mut attributes = 0;
    while at < key.len() {
        shape.extend_from_slice(field(key, &mut at)?);
        shape.push(*key.get(at)?);
        at += 1;
        values.extend_from_slice(field(key, &mut at)?);
        attributes += 1;
    }
    (attributes > 0).then_some(Split { shape, values })
}

impl Shapes {
    /// `key`'s stored form, numbering its shape if it is new; `None` if there are too many.
    pub(super) fn intern(&self, key: &[u8]) -> Option<Vec<u8>> {
        let Some(split) = split(key) else {
            return Some(whole(key));
        };
        let known = self
            .inner
            .read()
            .expect("lock poisoned")
            .numbers
            .get(&*split.shape)
            .copied();
        let number = match known {
            Some(number) => number,
            None => {
                let mut inner = self.inner.write().expect("lock poisoned");
                match inner.numbers.get(&*split.shape) {
                    Some(&number) => number,
                    None if inner.list.len() >= MAX_SHAPES => return None,
                    None => {
                        inner.list.push(split.shape.clone().into());
                        let number = inner.list.len() as u64;
                        inner.numbers.insert(split.shape.into(), number);
                        number
                    }
                }
            }
        };
        Some(stored(number, &split.values))
    }

    /// `key`'s stored form if its shape is numbered; `None` if it is not (no entry has it).
    pub(super) fn find(&self, key: &[u8]) -> Option<Vec<u8>> {
        let Some(split) = split(key) else {
            return Some(whole(key));
        };
        let number = *self
            .inner
            .read()
            .expect("lock poisoned")
            .numbers
            .get(&*split.shape)?;
        Some(stored(number, &split.values))
    }

    /// The key a stored form stands for, written to `out` (cleared first).
    pub(super) fn key_of(&self, stored: &[u8], out: &mut Vec<u8>) {
        out.clear();
        let mut at = 0;
        let Some(number) = read_varint(stored, &mut at) else {
            return;
        };
        let values = &stored[at..];
        if number == WHOLE {
            out.extend_from_slice(values);
            return;
        }
        let inner = self.inner.read().expect("lock poisoned");
        let Some(shape) = inner.list.get(number as usize - 1) else {
            return;
        };
        join(shape, values, out);
    }
}

fn whole(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    push_varint(&mut out, WHOLE);
    out.extend_from_slice(key);
    out
}

fn stored(number: u64, values: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() + 3);
    push_varint(&mut out, number);
    out.extend_from_slice(values);
    out
}

/// The shape's fields with the values put back between them.
fn join(shape: &[u8], values: &[u8], out: &mut Vec<u8>) {
    let (mut s, mut v) = (0, 0);
    let Some(table) = field(shape, &mut s) else {
        return;
    };
    out.extend_from_slice(table);
    while s < shape.len() {
        let (Some(name), Some(&tag)) = (field(shape, &mut s), shape.get(s)) else {
            return;
        };
        s += 1;
        out.extend_from_slice(name);
        out.push(tag);
        let Some(value) = field(values, &mut v) else {
            return;
        };
        out.extend_from_slice(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::keys::{ItemKey, KeyValue, WireKey};

    fn key(table: &str, pairs: &[(&str, KeyValue)]) -> Vec<u8> {
        let wire: WireKey = pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        ItemKey::new(table, &wire).unwrap().as_bytes().to_vec()
    }

    fn round_trip(shapes: &Shapes, key: &[u8]) -> Vec<u8> {
        let stored = shapes.intern(key).unwrap();
        assert_eq!(shapes.find(key).as_ref(), Some(&stored));
        let mut back = Vec::new();
        shapes.key_of(&stored, &mut back);
        assert_eq!(back, key);
        stored
    }

    #[test]
    fn keys_of_one_shape_share_it_and_keep_only_their_values() {
        let shapes = Shapes::default();
        let a = key(
            "orders",
            &[
                ("pk", KeyValue::S("customer#1".into())),
                ("sk", KeyValue::N("17".into())),
            ],
        );
        let b = key(
            "orders",
            &[
                ("pk", KeyValue::S("customer#2".into())),
                ("sk", KeyValue::N("17".into())),
            ],
        );
        let (sa, sb) = (round_trip(&shapes, &a), round_trip(&shapes, &b));
        assert_ne!(sa, sb);
        assert_eq!(sa[0], sb[0]);
        // Number, then "customer#1" and "17e2" with their lengths.
        assert_eq!(sa.len(), 1 + 11 + 5);
        assert!(a.len() > 2 * sa.len() - 4, "{} vs {}", a.len(), sa.len());
        assert_eq!(shapes.inner.read().unwrap().list.len(), 1);
    }

    #[test]
    fn tables_names_and_types_make_different_shapes() {
        let shapes = Shapes::default();
        let forms: Vec<Vec<u8>> = [
            key("t", &[("pk", KeyValue::S("1".into()))]),
            key("u", &[("pk", KeyValue::S("1".into()))]),
            key("t", &[("id", KeyValue::S("1".into()))]),
            key("t", &[("pk", KeyValue::N("1".into()))]),
            key("t", &[("pk", KeyValue::B("AQ==".into()))]),
            key(
                "t",
                &[
                    ("pk", KeyValue::S("1".into())),
                    ("sk", KeyValue::S("".into())),
                ],
            ),
        ]
        .iter()
        .map(|k| round_trip(&shapes, k))
        .collect();
        for (i, a) in forms.iter().enumerate() {
            for b in &forms[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // A key whose shape was never stored is not found.
        assert_eq!(
            shapes.find(&key("v", &[("pk", KeyValue::S("1".into()))])),
            None
        );
    }

    #[test]
    fn any_other_bytes_are_kept_whole() {
        let shapes = Shapes::default();
        for other in [
            &b""[..],
            b"a",
            b"ab",
            b"\x05ab",
            b"\x01t",
            b"\x01t\x01a",
            b"\xff\xff",
        ] {
            let stored = round_trip(&shapes, other);
            assert_eq!(stored[0], 0);
        }
        assert!(shapes.inner.read().unwrap().list.is_empty());
    }

    #[test]
    fn shapes_are_bounded() {
        let shapes = Shapes::default();
        for i in 0..MAX_SHAPES {
            shapes
                .intern(&key(&format!("t{i}"), &[("pk", KeyValue::S("1".into()))]))
                .unwrap();
        }
        let one_more = key("more", &[("pk", KeyValue::S("1".into()))]);
        assert_eq!(shapes.intern(&one_more), None);
        // Known shapes still work.
        round_trip(&shapes, &key("t7", &[("pk", KeyValue::S("2".into()))]));
    }
}
