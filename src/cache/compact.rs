//! The form cached items take in memory: DynamoDB JSON with its syntax taken out, put back byte
//! for byte when a hit needs the answer.
//!
//! An attribute costs its JSON ten bytes of syntax around its name and value
//! (`"name":{"S":"value"},`); here it costs three or four (two lengths and a type tag). For a
//! 400-byte item of a few attributes that is most of what a cached item spends beyond its data.
//!
//! - **Exact.** Names and string values are kept as they appear between their quotes, escapes and
//!   all: nothing is decoded, normalised or reordered, so [`render`] gives back the very bytes
//!   [`encode`] was given. The caller's proof is the text itself: [`encode`] takes only JSON in
//!   the compact shape DynamoDB writes (no whitespace, one type per value) and refuses anything
//!   else, which the store then keeps as it came.
//! - **Bounded.** Nesting deeper than [`MAX_DEPTH`] is refused, so neither direction recurses
//!   without a limit; [`render`] reads only what [`encode`] wrote, and stops (`None`) rather than
//!   panic if the bytes are not that.
//!
//! The layout, with `len` a LEB128 number:
//! - a map is its entries, then a 0 byte; an entry is `len(name) + 1`, the name, then a value;
//! - a value is a tag, then for `S`, `N`, `B` `len` and the string; for `SS`, `NS`, `BS`
//!   strings as `len + 1` and the bytes, then 0; for `M` a map; for `L` values, then [`END`];
//!   `BOOL` and `NULL` are tags alone.

use crate::wire::leb128::{self, read_len};

/// Deepest nesting of maps and lists taken (DynamoDB allows 32).
pub(super) const MAX_DEPTH: usize = 64;

const S: u8 = 1;
const N: u8 = 2;
const B: u8 = 3;
const TRUE: u8 = 4;
const FALSE: u8 = 5;
const NULL: u8 = 6;
const SS: u8 = 7;
const NS: u8 = 8;
const BS: u8 = 9;
const M: u8 = 10;
const L: u8 = 11;
/// Ends a list.
const END: u8 = 0;

/// The compact form of `item`, an attribute map as DynamoDB JSON (`{"pk":{"S":"a"},...}`),
/// appended to `out`; `false` (and `out` as it was) if `item` is not in the exact compact shape
/// this form can give back.
pub(crate) fn encode(item: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    let mut reader = Reader { text: item, at: 0 };
    let ok = reader.map(out, 0).is_some() && reader.at == item.len();
    if !ok {
        out.truncate(start);
    }
    ok
}

/// Appends the JSON text `encoded` came from to `out`; `None` if `encoded` is not a whole
/// compact item (then `out` holds a partial text the caller must discard).
pub(crate) fn render(encoded: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let mut at = 0;
    write_map(encoded, &mut at, out, 0)?;
    (at == encoded.len()).then_some(())
}

/// A buffer size that holds the JSON text of `encoded` without growing, for most items: syntax
/// adds about a quarter to the compact bytes of a typical item (a few attributes of some
/// length); items of many tiny values need more, and the buffer grows for them.
pub(super) fn rendered_capacity(encoded: &[u8]) -> usize {
    encoded.len() + encoded.len() / 2 + 32
}

struct Reader<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn eat(&mut self, expected: &[u8]) -> Option<()> {
        let end = self.at.checked_add(expected.len())?;
        (self.text.get(self.at..end)? == expected).then(|| self.at = end)
    }

    /// The bytes between a string's quotes, escapes left as they are.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.eat(b"\"")?;
        let (text, start) = (self.text, self.at);
        loop {
            // Most strings have no escape: one scan finds their closing quote.
            self.at += memchr::memchr2(b'"', b'\\', text.get(self.at..)?)?;
            match text[self.at] {
                b'"' => break,
                // An escape is a backslash and at least one more byte, none of them a bare quote.
                _ => self.at += 2,
            }
        }
        let body = text.get(start..self.at)?;
        self.at += 1;
        Some(body)
    }

    /// `{"name":value,...}`.
    fn map(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.sequence(b'{', b'}', |reader| {
            push_listed(out, reader.string()?);
            reader.eat(b":")?;
            reader.value(out, depth)
        })?;
        out.push(0);
        Some(())
    }

    /// `open`, elements (each read by `element`) separated by commas, then `close`.
    fn sequence(
        &mut self,
        open: u8,
        close: u8,
        mut element: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(&[open])?;
        if self.eat(&[close]).is_some() {
            return Some(());
        }
        loop {
            element(self)?;
            if self.eat(b",").is_none() {
                return self.eat(&[close]);
            }
        }
    }

    /// `{"T":payload}`.
    fn value(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        self.eat(b"{")?;
        let tag = self.string()?;
        self.eat(b":")?;
        match tag {
            b"S" | b"N" | b"B" => {
                out.push(match tag {
                    b"S" => S,
                    b"N" => N,
                    _ => B,
                });
                let body = self.string()?;
                push_len(out, body.len());
                out.extend_from_slice(body);
            }
            b"BOOL" => {
                if self.eat(b"true").is_some() {
                    out.push(TRUE);
                } else {
                    self.eat(b"false")?;
                    out.push(FALSE);
                }
            }
            b"NULL" => {
                self.eat(b"true")?;
                out.push(NULL);
            }
            b"SS" | b"NS" | b"BS" => {
                out.push(match tag {
                    b"SS" => SS,
                    b"NS" => NS,
                    _ => BS,
                });
                self.sequence(b'[', b']', |reader| {
                    push_listed(out, reader.string()?);
                    Some(())
                })?;
                out.push(0);
            }
            b"M" => {
                out.push(M);
                self.map(out, depth + 1)?;
            }
            b"L" => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                out.push(L);
                self.sequence(b'[', b']', |reader| reader.value(out, depth + 1))?;
                out.push(END);
            }
            _ => return None,
        }
        self.eat(b"}")
    }
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    leb128::push(out, len as u64);
}

/// One of a run of strings (map names, set members): `len + 1`, then the bytes; the run ends
/// with a 0.
fn push_listed(out: &mut Vec<u8>, string: &[u8]) {
    push_len(out, string.len() + 1);
    out.extend_from_slice(string);
}

/// The next of a run written by [`push_listed`]; `Some(None)` at its end.
fn next_listed<'a>(bytes: &'a [u8], at: &mut usize) -> Option<Option<&'a [u8]>> {
    match read_len(bytes, at)? {
        0 => Some(None),
        len => take(bytes, at, len - 1).map(Some),
    }
}
fn take<'a>(bytes: &'a [u8], at: &mut usize, len: usize) -> Option<&'a [u8]> {
    let end = at.checked_add(len)?;
    let slice = bytes.get(*at..end)?;
    *at = end;
    Some(slice)
}

fn write_map(bytes: &[u8], at: &mut usize, out: &mut Vec<u8>, depth: usize) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    out.push(b'{');
    let mut first = true;
    while let Some(name) = next_listed(bytes, at)? {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(name);
        out.extend_from_slice(b"\":");
        write_value(bytes, at, out, depth)?;
    }
    out.push(b'}');
    Some(())
}

fn write_value(bytes: &[u8], at: &mut usize, out: &mut Vec<u8>, depth: usize) -> Option<()> {
    let tag = *bytes.get(*at)?;
    *at += 1;
    match tag {
        S | N | B => {
            out.extend_from_slice(match tag {
                S => b"{\"S\":\"",
                N => b"{\"N\":\"",
                _ => b"{\"B\":\"",
            });
            let len = read_len(bytes, at)?;
            out.extend_from_slice(take(bytes, at, len)?);
            out.extend_from_slice(b"\"}");
        }
        TRUE => out.extend_from_slice(b"{\"BOOL\":true}"),
        FALSE => out.extend_from_slice(b"{\"BOOL\":false}"),
        NULL => out.extend_from_slice(b"{\"NULL\":true}"),
        SS | NS | BS => {
            out.extend_from_slice(match tag {
                SS => b"{\"SS\":[",
                NS => b"{\"NS\":[",
                _ => b"{\"BS\":[",
            });
            let mut first = true;
            while let Some(member) = next_listed(bytes, at)? {
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                out.push(b'"');
                out.extend_from_slice(member);
                out.push(b'"');
            }
            out.extend_from_slice(b"]}");
        }
        M => {
            out.extend_from_slice(b"{\"M\":");
            write_map(bytes, at, out, depth + 1)?;
            out.push(b'}');
        }
        L => {
            if depth >= MAX_DEPTH {
                return None;
            }
            out.extend_from_slice(b"{\"L\":[");
            let mut first = true;
            while *bytes.get(*at)? != END {
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                write_value(bytes, at, out, depth + 1)?;
            }
            *at += 1;
            out.extend_from_slice(b"]}");
        }
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(item: &str) -> Option<Vec<u8>> {
        let mut encoded = Vec::new();
        if !encode(item.as_bytes(), &mut encoded) {
            assert!(encoded.is_empty());
            return None;
        }
        let mut text = Vec::new();
        render(&encoded, &mut text).expect("renders what it encoded");
        assert_eq!(String::from_utf8_lossy(&text), item);
        Some(encoded)
    }

    #[test]
    fn every_type_comes_back_byte_for_byte() {
        let item = r#"{"pk":{"S":"k0000001"},"sk":{"N":"-1.5E3"},"b":{"B":"AQID"},"t":{"BOOL":true},"f":{"BOOL":false},"z":{"NULL":true},"ss":{"SS":["a","b"]},"ns":{"NS":["1","2.5"]},"bs":{"BS":["AA=="]},"m":{"M":{"in":{"L":[{"S":"x"},{"M":{}},{"L":[]}]}}},"e":{"S":""}}"#;
        let encoded = round_trip(item).unwrap();
        // Three or four bytes of framing an attribute, not ten.
        assert!(encoded.len() * 10 < item.len() * 6, "{}", encoded.len());
        assert!(round_trip("{}").is_some());
    }

    #[test]
    fn escapes_stay_as_they_were_written() {
        // Quotes, backslashes at the end of a string, unicode escapes and raw UTF-8.
        let item =
            r#"{"q\"uote":{"S":"a\"b\\"},"u":{"S":"\u00e9\u2028é\/"},"\\":{"SS":["\\","\""]}}"#;
        round_trip(item).unwrap();
    }

    #[test]
    fn text_in_any_other_shape_is_refused() {
        for other in [
            r#"{ "pk":{"S":"a"}}"#,
            r#"{"pk": {"S":"a"}}"#,
            r#"{"pk":{"S":"a"} }"#,
            r#"{"pk":{"S":"a","N":"1"}}"#,
            r#"{"pk":{"X":"a"}}"#,
            r#"{"pk":{"NULL":false}}"#,
            r#"{"pk":{"N":1}}"#,
            r#"{"pk":{"S":"a"}}x"#,
            r#"{"pk":{"S":"a"}"#,
            r#"{"pk":{"S":"a\"}}"#,
            r#"{"pk":{"SS":["a",]}}"#,
            r#"{"pk":{"L":[{"S":"a"},]}}"#,
            "",
            "{",
        ] {
            assert_eq!(round_trip(other), None, "{other}");
        }
    }

    #[test]
    fn nesting_is_bounded_both_ways() {
        let nested = |depth: usize| {
            let mut text = String::from(r#"{"a":"#);
            for _ in 0..depth {
                text.push_str(r#"{"L":["#);
            }
            text.push_str(r#"{"S":"x"}"#);
            for _ in 0..depth {
                text.push_str("]}");
            }
            text.push('}');
            text
        };
        assert!(round_trip(&nested(MAX_DEPTH)).is_some());
        assert!(round_trip(&nested(MAX_DEPTH + 1)).is_none());
        assert!(round_trip(&nested(100_000)).is_none());
        // Bytes that are not a compact item render to nothing, without panicking or recursing
        // past the limit.
        let deep = [L].repeat(100_000);
        let mut out = Vec::new();
        assert!(render(&[&[2u8, b'a'][..], &deep].concat(), &mut out).is_none());
        for garbage in [
            &[0xffu8; 12][..],
            &[5, b'a'],
            &[2, b'a', S, 200],
            &[2, b'a', 99],
        ] {
            assert!(render(garbage, &mut Vec::new()).is_none(), "{garbage:?}");
        }
    }

    /// JSON the way DynamoDB writes it, from a generated value tree.
    fn arb_value() -> impl Strategy<Value = String> {
        let string = "(\\\\[\"\\\\/bfnrt]|\\\\u[0-9a-f]{4}|[^\"\\\\\\x00-\\x1f]){0,12}";
        let leaf = prop_oneof![
            string.prop_map(|s| format!(r#"{{"S":"{s}"}}"#)),
            "-?[0-9]{1,5}(\\.[0-9]{1,3})?".prop_map(|n| format!(r#"{{"N":"{n}"}}"#)),
            "[A-Za-z0-9+/]{0,8}".prop_map(|b| format!(r#"{{"B":"{b}"}}"#)),
            any::<bool>().prop_map(|b| format!(r#"{{"BOOL":{b}}}"#)),
            Just(r#"{"NULL":true}"#.to_string()),
            prop::collection::vec(string, 1..4)
                .prop_map(|v| format!(r#"{{"SS":["{}"]}}"#, v.join("\",\""))),
        ];
        leaf.prop_recursive(4, 32, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!(r#"{{"L":[{}]}}"#, v.join(","))),
                prop::collection::vec(("[a-z]{1,6}", inner), 0..4).prop_map(|v| {
                    let fields: Vec<String> =
                        v.iter().map(|(k, v)| format!(r#""{k}":{v}"#)).collect();
                    format!(r#"{{"M":{{{}}}}}"#, fields.join(","))
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn generated_items_come_back_byte_for_byte(
            fields in prop::collection::vec(("[a-z\\\\\"]{1,8}", arb_value()), 0..6)
        ) {
            let fields: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!(r#""{}":{v}"#, k.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            let item = format!("{{{}}}", fields.join(","));
            prop_assert!(round_trip(&item).is_some(), "{}", item);
        }

        #[test]
        fn any_bytes_render_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = render(&bytes, &mut Vec::new());
        }
    }
}
