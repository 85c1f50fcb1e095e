//! The request body DynamoDB takes, written as JSON as it is translated: no tree is built.
//! Attribute values arrive already written as their JSON text ([`RawItem`]) and are copied
//! in as they are.

use std::collections::BTreeMap;

use crate::front::dax::av::push_str;
use crate::front::dax::item::RawItem;

/// A JSON object being written into a buffer; [`Object::close`] ends it.
pub(super) struct Object<'o> {
    out: &'o mut Vec<u8>,
    empty: bool,
}

impl<'o> Object<'o> {
    /// Opens an object at the end of `out`.
    pub(super) fn open(out: &'o mut Vec<u8>) -> Object<'o> {
        out.push(b'{');
        Object { out, empty: true }
    }

    /// Writes `"name":` and gives the buffer for the value, which the caller writes whole.
    pub(super) fn field(&mut self, name: &str) -> &mut Vec<u8> {
        if !std::mem::take(&mut self.empty) {
            self.out.push(b',');
        }
        push_str(self.out, name);
        self.out.push(b':');
        self.out
    }

    pub(super) fn str(&mut self, name: &str, value: &str) {
        push_str(self.field(name), value);
    }

    pub(super) fn bool(&mut self, name: &str, value: bool) {
        let text: &[u8] = if value { b"true" } else { b"false" };
        self.field(name).extend_from_slice(text);
    }

    pub(super) fn int(&mut self, name: &str, value: i64) {
        use std::io::Write;
        write!(self.field(name), "{value}").expect("writing into memory cannot fail");
    }

    /// A map of attribute values, each copied as its JSON text.
    pub(super) fn values(&mut self, name: &str, item: &RawItem) {
        values(self.field(name), item);
    }

    /// A map of strings (expression attribute names).
    pub(super) fn strings(&mut self, name: &str, strings: &BTreeMap<String, String>) {
        let mut map = Object::open(self.field(name));
        for (key, value) in strings {
            map.str(key, value);
        }
        map.close();
    }

    pub(super) fn close(self) {
        self.out.push(b'}');
    }
}

/// A JSON array being written into a buffer; [`Array::close`] ends it.
pub(super) struct Array<'o> {
    out: &'o mut Vec<u8>,
    empty: bool,
}

impl<'o> Array<'o> {
    pub(super) fn open(out: &'o mut Vec<u8>) -> Array<'o> {
        out.push(b'[');
        Array { out, empty: true }
    }

    /// Gives the buffer for the next element, which the caller writes whole.
    pub(super) fn next(&mut self) -> &mut Vec<u8> {
        if !std::mem::take(&mut self.empty) {
            self.out.push(b',');
        }
        self.out
    }

    pub(super) fn close(self) {
        self.out.push(b']');
    }
}

/// A map of attribute values, each copied as its JSON text.
pub(super) fn values(out: &mut Vec<u8>, item: &RawItem) {
    let mut map = Object::open(out);
    for (attribute, json) in item {
        map.field(attribute).extend_from_slice(json.as_bytes());
    }
    map.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_is_the_json_it_stands_for() {
        let mut out = Vec::new();
        let mut body = Object::open(&mut out);
        body.str("TableName", "t\"1");
        body.bool("ConsistentRead", false);
        body.int("Limit", -3);
        let mut key = RawItem::new();
        key.insert("pk".into(), r#"{"S":"a"}"#.into());
        body.values("Key", &key);
        let mut list = Array::open(body.field("L"));
        for i in 0..2 {
            let mut entry = Object::open(list.next());
            entry.int("i", i);
            entry.close();
        }
        list.close();
        body.strings("Names", &BTreeMap::new());
        body.close();
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "TableName": "t\"1", "ConsistentRead": false, "Limit": -3,
                "Key": {"pk": {"S": "a"}}, "L": [{"i": 0}, {"i": 1}], "Names": {}
            })
        );
    }
}
