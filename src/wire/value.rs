//! DynamoDB's attribute values and the ordered maps that hold them (items, keys, capacity by
//! index), read from an answer's JSON as typed values rather than as a tree of
//! `serde_json::Value`s. Names and strings borrow from the answer wherever JSON lets them
//! (text without escapes), so reading an item costs its structure, not a copy of its text.
//!
//! Nesting is bounded by the JSON reader's own recursion limit (128), above DynamoDB's 32
//! levels of attribute values.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

/// One attribute value, as DynamoDB's JSON writes it (`{"S": "x"}`): numbers stay the text
/// DynamoDB gave, binaries their base64.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub enum AttributeValue<'a> {
    #[serde(rename = "S")]
    S(#[serde(borrow)] Cow<'a, str>),
    #[serde(rename = "N")]
    N(#[serde(borrow)] Cow<'a, str>),
    /// Base64, as sent.
    #[serde(rename = "B")]
    B(#[serde(borrow)] Cow<'a, str>),
    #[serde(rename = "BOOL")]
    Bool(bool),
    #[serde(rename = "NULL")]
    Null(bool),
    #[serde(rename = "L")]
    L(#[serde(borrow)] Vec<AttributeValue<'a>>),
    #[serde(rename = "M")]
    M(#[serde(borrow)] Item<'a>),
    #[serde(rename = "SS")]
    Ss(#[serde(borrow)] Vec<Text<'a>>),
    #[serde(rename = "NS")]
    Ns(#[serde(borrow)] Vec<Text<'a>>),
    #[serde(rename = "BS")]
    Bs(#[serde(borrow)] Vec<Text<'a>>),
}

/// A string that borrows from the JSON it was read from when it can (inside a list, a plain
/// `Cow` would always be copied).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(transparent)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// A JSON object read in the order it was written: an item, a key, a map of indexes.
#[derive(Debug, Clone, PartialEq)]
pub struct Pairs<'a, V>(pub Vec<(Text<'a>, V)>);

/// An item or a key: attribute names to values.
pub type Item<'a> = Pairs<'a, AttributeValue<'a>>;

impl<V> Default for Pairs<'_, V> {
    fn default() -> Self {
        Pairs(Vec::new())
    }
}

impl<'a, V> Pairs<'a, V> {
    /// The value of `name`. Items are small (DynamoDB answers them whole, 400 KB at most),
    /// and an answer is read once: a scan costs less than building an index.
    pub fn get(&self, name: &str) -> Option<&V> {
        self.0.iter().find(|(n, _)| &*n.0 == name).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.0.iter().map(|(n, v)| (&*n.0, v))
    }
}

impl<'de: 'a, 'a, V: Deserialize<'de>> Deserialize<'de> for Pairs<'a, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Ordered<'a, V>(PhantomData<(&'a (), V)>);

        impl<'de: 'a, 'a, V: Deserialize<'de>> Visitor<'de> for Ordered<'a, V> {
            type Value = Pairs<'a, V>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                // The hint is the reader's, not the input's: it is bounded before it sizes
                // anything.
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some((name, value)) = map.next_entry::<Text<'a>, V>()? {
                    pairs.push((name, value));
                }
                Ok(Pairs(pairs))
            }
        }

        deserializer.deserialize_map(Ordered(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_is_read_and_text_is_borrowed_where_it_can_be() {
        let json = r#"{"s":{"S":"plain"},"e":{"S":"esc\"aped"},"n":{"N":"-1.5"},"b":{"B":"AAE="},
            "t":{"BOOL":true},"z":{"NULL":true},"l":{"L":[{"N":"1"},{"M":{"in":{"S":"x"}}}]},
            "ss":{"SS":["a","b"]},"ns":{"NS":["1"]},"bs":{"BS":["AA=="]}}"#;
        let item: Item = serde_json::from_str(json).unwrap();
        let names: Vec<&str> = item.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["s", "e", "n", "b", "t", "z", "l", "ss", "ns", "bs"]);
        assert!(matches!(
            item.get("s"),
            Some(AttributeValue::S(Cow::Borrowed("plain")))
        ));
        assert!(
            matches!(item.get("e"), Some(AttributeValue::S(Cow::Owned(s))) if s == "esc\"aped")
        );
        assert_eq!(item.get("n"), Some(&AttributeValue::N("-1.5".into())));
        assert_eq!(item.get("z"), Some(&AttributeValue::Null(true)));
        let Some(AttributeValue::L(list)) = item.get("l") else {
            panic!("a list")
        };
        let AttributeValue::M(inner) = &list[1] else {
            panic!("a map")
        };
        assert_eq!(inner.get("in"), Some(&AttributeValue::S("x".into())));
        let Some(AttributeValue::Ss(set)) = item.get("ss") else {
            panic!("a set")
        };
        assert!(matches!(set[0].0, Cow::Borrowed("a")));
        assert_eq!(item.get("missing"), None);
    }

    #[test]
    fn what_is_no_attribute_value_is_refused() {
        for bad in [
            r#"{"a":{"X":"1"}}"#,
            r#"{"a":{"S":"1","N":"2"}}"#,
            r#"{"a":{"S":1}}"#,
            r#"{"a":"plain"}"#,
        ] {
            assert!(serde_json::from_str::<Item>(bad).is_err(), "{bad}");
        }
    }
}
