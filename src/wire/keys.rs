//! Canonical item keys: two requests name the same item exactly when DynamoDB would say so.
//!
//! A key is the table name plus the key attributes in name order, each value canonical: numbers
//! as DynamoDB compares them (`1`, `1.0`, `1E0`, `01` are one number), binary as its decoded
//! bytes, strings as their characters. A type tag keeps `S "1"` and `N "1"` apart.
//!
//! As bytes: the number of attributes, the table, each attribute's name and type tag, then each
//! value; every name and value length-prefixed. What comes before the values (the key's
//! *shape*) is the same for every item of a table, so a store can keep it once
//! ([`split_shape`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;

use super::leb128::{self, read_len};
use super::number::Decimal;

/// A key attribute value as it appears on the wire (`{"S": "..."}` and so on). Any other type
/// cannot be part of a key: DynamoDB refuses it, so the proxy does not cache the request.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub enum KeyValue {
    S(String),
    N(String),
    B(String),
}

/// A wire key: attribute name -> value, ordered by name.
pub type WireKey = BTreeMap<String, KeyValue>;

/// A key value borrowed from the request body where possible (the hit path's zero-copy form).
#[derive(Debug, Clone, Deserialize)]
pub enum KeyValueRef<'a> {
    S(#[serde(borrow)] std::borrow::Cow<'a, str>),
    N(#[serde(borrow)] std::borrow::Cow<'a, str>),
    B(#[serde(borrow)] std::borrow::Cow<'a, str>),
}

/// A wire key borrowed from the request body.
pub type WireKeyRef<'a> = BTreeMap<std::borrow::Cow<'a, str>, KeyValueRef<'a>>;

/// The query cache's key of a Query or Scan: table, operation and the canonical request
/// (every parameter that changes the answer, keys sorted).
pub fn query_key(table: &str, op: &str, canonical_request: &str) -> Arc<[u8]> {
    [
        table.as_bytes(),
        b"\0",
        op.as_bytes(),
        b"\0",
        canonical_request.as_bytes(),
    ]
    .concat()
    .into()
}

/// The three types a key attribute can have.
#[derive(Debug, Clone, Copy)]
enum Kind {
    S,
    N,
    B,
}

/// An item's identity in the cache: table and canonical primary key, as one byte string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ItemKey(Arc<[u8]>);

impl ItemKey {
    /// The key of the item named by `key` in `table`; `None` if a value is not a valid key
    /// value (DynamoDB will refuse the request, so nothing is cached).
    pub fn new(table: &str, key: &WireKey) -> Option<ItemKey> {
        ItemKey::from_parts(
            table,
            key.iter().map(|(name, value)| {
                let value = match value {
                    KeyValue::S(v) => (Kind::S, v.as_str()),
                    KeyValue::N(v) => (Kind::N, v.as_str()),
                    KeyValue::B(v) => (Kind::B, v.as_str()),
                };
                (name.as_str(), value)
            }),
        )
    }

    /// As [`ItemKey::new`], from a key borrowed from the request body.
    pub fn from_ref(table: &str, key: &WireKeyRef<'_>) -> Option<ItemKey> {
        ItemKey::from_parts(
            table,
            key.iter().map(|(name, value)| {
                let value = match value {
                    KeyValueRef::S(v) => (Kind::S, &**v),
                    KeyValueRef::N(v) => (Kind::N, &**v),
                    KeyValueRef::B(v) => (Kind::B, &**v),
                };
                (&**name, value)
            }),
        )
    }

    /// Attributes must come in name order (as a `BTreeMap` yields them).
    fn from_parts<'k>(
        table: &str,
        key: impl Iterator<Item = (&'k str, (Kind, &'k str))> + Clone,
    ) -> Option<ItemKey> {
        let count = key.clone().count();
        if count == 0 {
            return None;
        }
        let mut out = Vec::with_capacity(table.len() + 48);
        push_len(&mut out, count);
        push_field(&mut out, table.as_bytes());
        for (name, (kind, _)) in key.clone() {
            push_field(&mut out, name.as_bytes());
            out.push(match kind {
                Kind::S => b'S',
                Kind::N => b'N',
                Kind::B => b'B',
            });
        }
        for (_, (kind, value)) in key {
            match kind {
                Kind::S => push_field(&mut out, value.as_bytes()),
                Kind::N => push_field(&mut out, canonical_number(value)?.as_bytes()),
                Kind::B => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(value)
                        .ok()?;
                    push_field(&mut out, &bytes);
                }
            }
        }
        Some(ItemKey(out.into()))
    }

    /// The key whose canonical form ([`ItemKey::as_bytes`]) is `canonical`; `None` for bytes
    /// that are not one (they came from outside this process).
    pub fn from_canonical(canonical: &[u8]) -> Option<ItemKey> {
        split_shape(canonical)?;
        let mut at = 0;
        read_len(canonical, &mut at)?;
        std::str::from_utf8(field(canonical, &mut at)?).ok()?;
        Some(ItemKey(canonical.into()))
    }

    /// The table this key belongs to.
    pub fn table(&self) -> &str {
        table_of(&self.0)
    }

    /// The canonical form: equal for equal keys, different otherwise.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The table named by a key's canonical form ([`ItemKey::as_bytes`]).
pub fn table_of(canonical: &[u8]) -> &str {
    let mut at = 0;
    let table = read_len(canonical, &mut at).and_then(|_| field(canonical, &mut at));
    std::str::from_utf8(table.expect("a canonical key")).expect("built from a str")
}

/// A canonical key split into its shape (attribute count, table, names and types) and its
/// values; `None` for bytes that are not a canonical key.
pub fn split_shape(canonical: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut at = 0;
    let count = read_len(canonical, &mut at)?;
    field(canonical, &mut at)?;
    for _ in 0..count {
        field(canonical, &mut at)?;
        canonical.get(at)?;
        at += 1;
    }
    let shape = at;
    for _ in 0..count {
        field(canonical, &mut at)?;
    }
    (count > 0 && at == canonical.len()).then(|| canonical.split_at(shape))
}

/// The bytes of the length-prefixed field at `*at`.
fn field<'a>(bytes: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let len = read_len(bytes, at)?;
    let end = at.checked_add(len)?;
    let field = bytes.get(*at..end)?;
    *at = end;
    Some(field)
}

/// One key value in canonical form (type tag and canonical bytes); `None` if invalid.
pub fn canonical_value(value: &KeyValue) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(24);
    let (kind, value) = match value {
        KeyValue::S(v) => (Kind::S, v.as_str()),
        KeyValue::N(v) => (Kind::N, v.as_str()),
        KeyValue::B(v) => (Kind::B, v.as_str()),
    };
    push_value(&mut out, kind, value)?;
    Some(out)
}

fn push_value(out: &mut Vec<u8>, kind: Kind, value: &str) -> Option<()> {
    match kind {
        Kind::S => {
            out.push(b'S');
            push_field(out, value.as_bytes());
        }
        Kind::N => {
            out.push(b'N');
            push_field(out, canonical_number(value)?.as_bytes());
        }
        Kind::B => {
            out.push(b'B');
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value)
                .ok()?;
            push_field(out, &bytes);
        }
    }
    Some(())
}

/// A length-prefixed field, so that no two different keys encode to the same bytes. The length
/// is LEB128 (see `leb128`): most keys spend one byte a field, where a fixed four bytes would
/// add a dozen bytes to every cached item.
fn push_field(out: &mut Vec<u8>, bytes: &[u8]) {
    push_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    leb128::push(out, len as u64);
}

/// A DynamoDB number in a form where equal numbers are equal strings:
/// `[-]DIGITS e EXPONENT`, digits without leading or trailing zeros, value `0.DIGITS x 10^EXP`.
/// `None` if `n` is not a number DynamoDB would accept, or not one the proxy is sure of:
/// surrounding whitespace is not trimmed, so such a key is never answered from memory and
/// DynamoDB alone decides what it means.
pub fn canonical_number(n: &str) -> Option<String> {
    let number = Decimal::parse(n)?;
    // Beyond DynamoDB's precision or range: it refuses the number, so it is never a key.
    number.check().ok()?;
    Some(number.canonical())
}

/// Whether `n` is written exactly as DynamoDB writes numbers in its answers (plain decimal,
/// no redundant zeros, no exponent, no `+`, no `-0`). Items whose numbers are all in this form
/// can be cached from a request body without changing what a later read returns.
pub fn is_wire_canonical_number(n: &str) -> bool {
    let body = n.strip_prefix('-').unwrap_or(n);
    let (int, frac) = match body.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (body, None),
    };
    let int_ok = int == "0"
        || (!int.is_empty() && !int.starts_with('0') && int.bytes().all(|b| b.is_ascii_digit()));
    let frac_ok = frac.is_none_or(|f| {
        !f.is_empty() && !f.ends_with('0') && f.bytes().all(|b| b.is_ascii_digit())
    });
    int_ok && frac_ok && n != "-0" && canonical_number(n).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(pairs: &[(&str, KeyValue)]) -> WireKey {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn equal_numbers_are_one_key() {
        let forms = ["1", "1.0", "1E0", "01", "10e-1", "0.1E1", "+1", "1.000"];
        let keys: Vec<_> = forms
            .iter()
            .map(|n| ItemKey::new("t", &key(&[("pk", KeyValue::N(n.to_string()))])).unwrap())
            .collect();
        assert!(keys.windows(2).all(|w| w[0] == w[1]), "{forms:?}");
        for zero in ["0", "-0", "0.000", "0e5", "00"] {
            assert_eq!(canonical_number(zero).unwrap(), "0", "{zero}");
        }
        assert_ne!(canonical_number("1"), canonical_number("-1"));
        assert_ne!(canonical_number("10"), canonical_number("1"));
        assert_eq!(canonical_number("123.45").unwrap(), "12345e3");
        assert_eq!(canonical_number("0.00012").unwrap(), "12e-3");
    }

    #[test]
    fn invalid_numbers_are_not_keys() {
        for bad in [
            "", "-", ".", "1e", "e1", "1.2.3", "abc", "1e99999", "0x10", " ",
        ] {
            assert_eq!(canonical_number(bad), None, "{bad:?}");
        }
        // 39 significant digits: more than DynamoDB keeps.
        assert_eq!(canonical_number(&"1".repeat(39)), None);
    }

    /// Found by fuzzing (`benches/fuzz.sh`, target `keys`): `"5\u{b}"` was trimmed into the key
    /// 5 while `"5\u{b}.0"` was no number at all. Whitespace anywhere now makes a key the proxy
    /// leaves to DynamoDB, so a padded number is never served item 5 from memory.
    #[test]
    fn padded_numbers_are_left_to_dynamodb() {
        for padded in ["5\u{b}", " 5", "5 ", "\t-1.5", "1e3\n", "5\u{b}.0"] {
            assert_eq!(canonical_number(padded), None, "{padded:?}");
        }
    }

    #[test]
    fn types_names_and_tables_separate_keys() {
        let s1 = ItemKey::new("t", &key(&[("pk", KeyValue::S("1".into()))])).unwrap();
        let n1 = ItemKey::new("t", &key(&[("pk", KeyValue::N("1".into()))])).unwrap();
        let other_table = ItemKey::new("u", &key(&[("pk", KeyValue::S("1".into()))])).unwrap();
        let other_name = ItemKey::new("t", &key(&[("id", KeyValue::S("1".into()))])).unwrap();
        assert_ne!(s1, n1);
        assert_ne!(s1, other_table);
        assert_ne!(s1, other_name);
        assert_eq!(s1.table(), "t");
        // Length prefixes: ("ab","c") and ("a","bc") differ.
        let a = ItemKey::new(
            "t",
            &key(&[
                ("h", KeyValue::S("ab".into())),
                ("r", KeyValue::S("c".into())),
            ]),
        );
        let b = ItemKey::new(
            "t",
            &key(&[
                ("h", KeyValue::S("a".into())),
                ("r", KeyValue::S("bc".into())),
            ]),
        );
        assert_ne!(a, b);
    }

    #[test]
    fn long_fields_keep_their_table_and_stay_apart() {
        // 255 bytes (DynamoDB's longest table name) and 300 take two length bytes; 127 and
        // 128 straddle the first step.
        for len in [1, 127, 128, 255, 300] {
            let table = "t".repeat(len);
            let key = ItemKey::new(&table, &key(&[("pk", KeyValue::S("v".repeat(len)))])).unwrap();
            assert_eq!(key.table(), table);
        }
        // A long value whose tail looks like the next field does not run into it.
        let long = ItemKey::new(
            "t",
            &key(&[
                ("h", KeyValue::S(format!("{}\x01r", "a".repeat(200)))),
                ("r", KeyValue::S("c".into())),
            ]),
        );
        let short = ItemKey::new(
            "t",
            &key(&[
                ("h", KeyValue::S("a".repeat(200))),
                ("r", KeyValue::S("c".into())),
            ]),
        );
        assert_ne!(long, short);
    }

    #[test]
    fn keys_of_one_table_share_their_shape() {
        let orders = |pk: &str| {
            ItemKey::new(
                "orders",
                &key(&[
                    ("pk", KeyValue::S(pk.into())),
                    ("sk", KeyValue::N("1.50".into())),
                ]),
            )
            .unwrap()
        };
        let (a, b) = (orders("a"), orders("bb"));
        let (shape_a, values_a) = split_shape(a.as_bytes()).unwrap();
        let (shape_b, values_b) = split_shape(b.as_bytes()).unwrap();
        assert_eq!(shape_a, shape_b);
        assert_eq!(shape_a, b"\x02\x06orders\x02pkS\x02skN");
        assert_eq!(values_a, b"\x01a\x0415e1");
        assert_ne!(values_a, values_b);
        let other = ItemKey::new("orders", &key(&[("pk", KeyValue::N("1".into()))])).unwrap();
        assert_ne!(split_shape(other.as_bytes()).unwrap().0, shape_a);
        // Bytes that are not a canonical key have no shape.
        for other in [
            &b""[..],
            b"\x00\x01t",
            b"\x01\x01t\x01aS",
            b"\x01\x01t\x01aS\x01vv",
        ] {
            assert_eq!(split_shape(other), None, "{other:?}");
        }
    }

    #[test]
    fn binary_keys_compare_as_bytes() {
        let a = ItemKey::new("t", &key(&[("pk", KeyValue::B("AQID".into()))])).unwrap();
        let b = ItemKey::new("t", &key(&[("pk", KeyValue::B("AQIE".into()))])).unwrap();
        assert_ne!(a, b);
        assert!(ItemKey::new("t", &key(&[("pk", KeyValue::B("not base64!".into()))])).is_none());
    }

    #[test]
    fn wire_canonical_numbers() {
        for good in [
            "0",
            "1",
            "-1",
            "10",
            "1.5",
            "-0.25",
            "123456789012345678901234567890",
        ] {
            assert!(is_wire_canonical_number(good), "{good}");
        }
        for bad in [
            "01", "1.0", "1.50", "1e3", "+1", "-0", ".5", "5.", "", "1E0",
        ] {
            assert!(!is_wire_canonical_number(bad), "{bad}");
        }
    }

    proptest! {
        /// Any decimal written with extra zeros or an exponent is the same key as itself.
        #[test]
        fn rescaling_never_changes_the_key(
            negative in any::<bool>(),
            int in 0u64..1_000_000,
            frac in 0u32..1000,
            pad in 0usize..4,
            shift in -5i64..5,
        ) {
            let sign = if negative { "-" } else { "" };
            let plain = format!("{sign}{int}.{frac:03}");
            let padded = format!("{sign}{}{int}.{frac:03}{}", "0".repeat(pad), "0".repeat(pad));
            // Move the decimal point by `shift` and compensate in the exponent.
            let digits = format!("{int}{frac:03}");
            let point = digits.len() as i64 - 3 - shift;
            let shifted = if point <= 0 {
                format!("{sign}0.{}{digits}e{shift}", "0".repeat((-point) as usize))
            } else if point as usize >= digits.len() {
                format!("{sign}{digits}{}e{shift}", "0".repeat(point as usize - digits.len()))
            } else {
                format!("{sign}{}.{}e{shift}", &digits[..point as usize], &digits[point as usize..])
            };
            let canonical = canonical_number(&plain).unwrap();
            prop_assert_eq!(canonical_number(&padded).unwrap(), canonical.clone());
            prop_assert_eq!(canonical_number(&shifted).unwrap(), canonical);
        }

        /// Arbitrary input never panics.
        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = canonical_number(&s);
            let _ = is_wire_canonical_number(&s);
        }
    }
}
