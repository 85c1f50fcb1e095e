//! Item keys as the store keeps them.
//!
//! A canonical key (`wire::keys`) is its *shape* (attribute count, table, names and types), then
//! its values. The shape is the same for every item of a table, so the store numbers each shape
//! once and an entry keeps the shape's number and the values: for a two-attribute key of a short
//! table, about half the key's bytes.
//!
//! The stored form is the number (LEB128) then the values as they are in the key, so two keys
//! have the same stored form exactly when they are the same key. Bytes that are not a canonical
//! key (the store's own tests use any bytes) are kept whole under number 0.
//!
//! Looking a key up allocates nothing and takes no lock: the numbered shapes are an immutable
//! map behind an `ArcSwap`, replaced whole when a shape is added (once per table and schema).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::wire::keys::split_shape;
use crate::wire::leb128;

/// Shapes numbered at most (tables times key schemas; fills only come from answers DynamoDB
/// gave, so only real tables and key names get here). Keys of further shapes are not stored.
const MAX_SHAPES: usize = 4096;

/// Up to this many shapes, a lookup compares them in turn instead of hashing.
const SCAN_SHAPES: usize = 8;

/// Number 0: the stored form is the key itself.
const WHOLE: u64 = 0;

/// The numbered shapes of one store.
#[derive(Default)]
pub(super) struct Shapes {
    known: ArcSwap<Known>,
    /// Held while a shape is added, so two adders do not lose one another's.
    adding: Mutex<()>,
}

#[derive(Default, Clone)]
struct Known {
    numbers: HashMap<Arc<[u8]>, u64>,
    /// Shape `n` is `list[n - 1]`.
    list: Vec<Arc<[u8]>>,
}

/// A key as the store looks for it: its shape's number and its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lookup<'k> {
    number: u64,
    values: &'k [u8],
}

impl Lookup<'_> {
    /// Whether `stored` (an entry's key) is this key.
    pub(super) fn matches(&self, stored: &[u8]) -> bool {
        let mut at = 0;
        leb128::read(stored, &mut at) == Some(self.number) && stored[at..] == *self.values
    }

    /// Appends the stored form to `out`.
    pub(super) fn write(&self, out: &mut Vec<u8>) {
        leb128::push(out, self.number);
        out.extend_from_slice(self.values);
    }

    /// The stored form's length.
    pub(super) fn len(&self) -> usize {
        let bits = (u64::BITS - self.number.leading_zeros()).max(1);
        bits.div_ceil(7) as usize + self.values.len()
    }

    pub(super) fn stored(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        self.write(&mut out);
        out
    }
}

impl Shapes {
    /// How the store finds `key`; `None` if its shape is not numbered (no entry has it).
    pub(super) fn find<'k>(&self, key: &'k [u8]) -> Option<Lookup<'k>> {
        let Some((shape, values)) = split_shape(key) else {
            return Some(Lookup {
                number: WHOLE,
                values: key,
            });
        };
        let known = self.known.load();
        // A store usually holds a handful of shapes: comparing them costs less than hashing.
        let number = if known.list.len() <= SCAN_SHAPES {
            known.list.iter().position(|s| **s == *shape)? as u64 + 1
        } else {
            *known.numbers.get(shape)?
        };
        Some(Lookup { number, values })
    }

    /// As [`Shapes::find`], numbering the key's shape if it is new; `None` if there are too
    /// many shapes to number another.
    pub(super) fn intern<'k>(&self, key: &'k [u8]) -> Option<Lookup<'k>> {
        if let Some(found) = self.find(key) {
            return Some(found);
        }
        let (shape, values) = split_shape(key)?;
        let _adding = self.adding.lock().expect("lock poisoned");
        let known = self.known.load();
        if let Some(&number) = known.numbers.get(shape) {
            return Some(Lookup { number, values });
        }
        if known.list.len() >= MAX_SHAPES {
            return None;
        }
        let mut next = Known::clone(&known);
        let shape: Arc<[u8]> = shape.into();
        next.list.push(shape.clone());
        let number = next.list.len() as u64;
        next.numbers.insert(shape, number);
        self.known.store(Arc::new(next));
        Some(Lookup { number, values })
    }

    /// The key a stored form stands for, written to `out` (cleared first).
    pub(super) fn key_of(&self, stored: &[u8], out: &mut Vec<u8>) {
        out.clear();
        let mut at = 0;
        let Some(number) = leb128::read(stored, &mut at) else {
            return;
        };
        if number != WHOLE
            && let Some(shape) = self.known.load().list.get(number as usize - 1)
        {
            out.extend_from_slice(shape);
        }
        out.extend_from_slice(&stored[at..]);
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
        let stored = shapes.intern(key).unwrap().stored();
        let found = shapes.find(key).unwrap();
        assert!(found.matches(&stored));
        assert_eq!(found.len(), stored.len());
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
        assert!(!shapes.find(&a).unwrap().matches(&sb));
        assert_eq!(sa[0], sb[0]);
        // Number, then "customer#1" and "17e2" with their lengths.
        assert_eq!(sa.len(), 1 + 11 + 5);
        assert!(a.len() > 2 * sa.len() - 4, "{} vs {}", a.len(), sa.len());
        assert_eq!(shapes.known.load().list.len(), 1);
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
            b"\x01\x01t",
            b"\x01\x01t\x01a",
            b"\xff\xff",
        ] {
            let stored = round_trip(&shapes, other);
            assert_eq!(stored[0], 0);
        }
        assert!(shapes.known.load().list.is_empty());
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
