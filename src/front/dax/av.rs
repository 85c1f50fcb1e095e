//! Attribute values between DAX's CBOR and DynamoDB's JSON (`{"S": "x"}`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use minicbor::data::{Tag, Type};
use minicbor::{Decoder, Encoder};

use super::DaxError;
use super::number::{self, Decimal};
use crate::wire::value::AttributeValue;

/// The largest item DynamoDB stores, names and values together.
pub(super) const MAX_ITEM_BYTES: usize = 400 * 1024;

/// Nesting DynamoDB allows in one attribute value.
pub(super) const MAX_DEPTH: usize = 32;

pub(super) const TAG_STRING_SET: u64 = 3321;
pub(super) const TAG_NUMBER_SET: u64 = 3322;
pub(super) const TAG_BINARY_SET: u64 = 3323;
/// A list index inside a document path (expressions only).
pub(super) const TAG_PATH_ORDINAL: u64 = 3324;

/// Reads one key attribute's value: a string, a number or bytes. Anything else is refused
/// before it is built, as no key holds it.
pub(super) fn decode_key(d: &mut Decoder<'_>) -> Result<String, DaxError> {
    let scalar = match d.datatype()? {
        Type::String | Type::StringIndef | Type::Bytes | Type::BytesIndef => true,
        Type::Tag => {
            let tag = d.clone().tag()?.as_u64();
            !matches!(tag, TAG_STRING_SET | TAG_NUMBER_SET | TAG_BINARY_SET)
        }
        t => number::is_integer(t) || matches!(t, Type::F32 | Type::F64),
    };
    if !scalar {
        return Err(DaxError::validation(
            "The provided key element does not match the schema",
        ));
    }
    decode_raw(d, &mut Budget::item())
}

/// Reads one attribute value straight into DynamoDB JSON text, which the request body takes
/// as it is. Nothing else is built: a value costs its JSON text, where a tree of maps costs
/// hundreds of bytes for every scalar in it.
/// `size` grows by at least what DynamoDB counts for the value (never more), so a caller can
/// refuse an item DynamoDB would refuse before building the rest of it.
pub(super) fn decode_raw(d: &mut Decoder<'_>, size: &mut Budget) -> Result<String, DaxError> {
    let mut out = Vec::new();
    write_json(d, &mut out, size, 0)?;
    out.shrink_to_fit();
    // Strings arrive as CBOR text, checked as UTF-8 when read; the rest is ASCII.
    String::from_utf8(out).map_err(|_| DaxError::internal("an attribute value's JSON is not UTF-8"))
}

/// What DynamoDB counts of the values read so far (at least), and the most it takes: a value
/// is refused as soon as it passes, before the rest of it is built.
pub(super) struct Budget {
    used: usize,
    limit: usize,
    /// DynamoDB's words for passing it.
    refusal: &'static str,
}

impl Budget {
    /// An item's: 400 KB.
    pub(super) fn item() -> Budget {
        Budget {
            used: 0,
            limit: MAX_ITEM_BYTES,
            refusal: "Item size has exceeded the maximum allowed size",
        }
    }

    /// An expression's values: 2 MB for every substitution in it.
    pub(super) fn expression() -> Budget {
        Budget {
            used: 0,
            limit: 2 << 20,
            refusal: "ExpressionAttributeValues exceed the maximum allowed size",
        }
    }

    pub(super) fn add(&mut self, bytes: usize) -> Result<(), DaxError> {
        self.used += bytes;
        if self.used > self.limit {
            Err(DaxError::validation(self.refusal))
        } else {
            Ok(())
        }
    }
}

/// A JSON string literal.
pub(super) fn push_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing into memory cannot fail");
}

/// Bytes as base64, inside quotes of the caller's.
fn push_base64(out: &mut Vec<u8>, b: &[u8]) {
    let start = out.len();
    let len = base64::encoded_len(b.len(), true).expect("a length that fits");
    out.resize(start + len, 0);
    BASE64
        .encode_slice(b, &mut out[start..])
        .expect("room for every byte");
}

fn write_json(
    d: &mut Decoder<'_>,
    out: &mut Vec<u8>,
    size: &mut Budget,
    depth: usize,
) -> Result<(), DaxError> {
    if depth > MAX_DEPTH {
        return Err(DaxError::validation(
            "Nesting Levels have exceeded supported limits: Attributes in the item have nested \
             levels beyond supported limit",
        ));
    }
    match d.datatype()? {
        Type::String | Type::StringIndef => {
            let s = text(d)?;
            size.add(s.len())?;
            out.extend_from_slice(b"{\"S\":");
            push_str(out, &s);
            out.push(b'}');
        }
        Type::Bytes | Type::BytesIndef => {
            let b = bytes(d)?;
            size.add(b.len())?;
            out.extend_from_slice(b"{\"B\":\"");
            push_base64(out, &b);
            out.extend_from_slice(b"\"}");
        }
        Type::Bool => {
            size.add(1)?;
            out.extend_from_slice(if d.bool()? {
                b"{\"BOOL\":true}"
            } else {
                b"{\"BOOL\":false}"
            });
        }
        Type::Null => {
            d.null()?;
            size.add(1)?;
            out.extend_from_slice(b"{\"NULL\":true}");
        }
        Type::Array | Type::ArrayIndef => {
            out.extend_from_slice(b"{\"L\":[");
            let mut first = true;
            each(d, |d| {
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                size.add(1)?;
                write_json(d, out, size, depth + 1)
            })?;
            out.extend_from_slice(b"]}");
        }
        Type::Map | Type::MapIndef => {
            out.extend_from_slice(b"{\"M\":{");
            let mut first = true;
            each_pair(d, |d| {
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                let name = text(d)?;
                size.add(name.len() + 1)?;
                push_str(out, &name);
                out.push(b':');
                write_json(d, out, size, depth + 1)
            })?;
            out.extend_from_slice(b"}}");
        }
        Type::Tag => {
            let mut probe = d.clone();
            let tag = probe.tag()?.as_u64();
            match tag {
                TAG_STRING_SET | TAG_NUMBER_SET | TAG_BINARY_SET => {
                    d.tag()?;
                    out.extend_from_slice(match tag {
                        TAG_STRING_SET => b"{\"SS\":[",
                        TAG_NUMBER_SET => b"{\"NS\":[",
                        _ => b"{\"BS\":[",
                    });
                    let mut first = true;
                    each(d, |d| {
                        if !std::mem::take(&mut first) {
                            out.push(b',');
                        }
                        match tag {
                            TAG_STRING_SET => {
                                let s = text(d)?;
                                size.add(s.len())?;
                                push_str(out, &s);
                            }
                            TAG_NUMBER_SET => {
                                size.add(1)?;
                                number_json(d, out)?;
                            }
                            _ => {
                                let b = bytes(d)?;
                                size.add(b.len())?;
                                out.push(b'"');
                                push_base64(out, &b);
                                out.push(b'"');
                            }
                        }
                        Ok(())
                    })?;
                    out.extend_from_slice(b"]}");
                }
                _ => {
                    size.add(1)?;
                    out.extend_from_slice(b"{\"N\":");
                    number_json(d, out)?;
                    out.push(b'}');
                }
            }
        }
        Type::F16 => {
            return Err(DaxError::validation(
                "a number must be an integer, a decimal or a float of 32 or 64 bits",
            ));
        }
        t if number::is_integer(t) || matches!(t, Type::F32 | Type::F64) => {
            size.add(1)?;
            out.extend_from_slice(b"{\"N\":");
            number_json(d, out)?;
            out.push(b'}');
        }
        other => {
            return Err(DaxError::malformed(format!(
                "{other} is not an attribute value"
            )));
        }
    }
    Ok(())
}

/// A number as a JSON string of DynamoDB's text.
fn number_json(d: &mut Decoder<'_>, out: &mut Vec<u8>) -> Result<(), DaxError> {
    out.push(b'"');
    out.extend_from_slice(Decimal::decode(d)?.to_text()?.as_bytes());
    out.push(b'"');
    Ok(())
}

/// Reads a text string, definite or indefinite.
pub(super) fn text(d: &mut Decoder<'_>) -> Result<String, DaxError> {
    let mut out = String::new();
    for chunk in d.str_iter()? {
        out.push_str(chunk?);
    }
    Ok(out)
}

/// Reads a byte string, definite or indefinite.
pub(super) fn bytes(d: &mut Decoder<'_>) -> Result<Vec<u8>, DaxError> {
    let mut out = Vec::new();
    for chunk in d.bytes_iter()? {
        out.extend_from_slice(chunk?);
    }
    Ok(out)
}

/// Calls `each` for every element of an array, definite or indefinite.
pub(super) fn each(
    d: &mut Decoder<'_>,
    each: impl FnMut(&mut Decoder<'_>) -> Result<(), DaxError>,
) -> Result<(), DaxError> {
    let len = d.array()?;
    repeat(d, len, each)
}

/// Calls `each` for every pair of a map, definite or indefinite (it reads key then value).
pub(super) fn each_pair(
    d: &mut Decoder<'_>,
    each: impl FnMut(&mut Decoder<'_>) -> Result<(), DaxError>,
) -> Result<(), DaxError> {
    let len = d.map()?;
    repeat(d, len, each)
}

/// `len` times, or (indefinite) until the break.
fn repeat(
    d: &mut Decoder<'_>,
    len: Option<u64>,
    mut each: impl FnMut(&mut Decoder<'_>) -> Result<(), DaxError>,
) -> Result<(), DaxError> {
    match len {
        Some(n) => {
            for _ in 0..n {
                each(d)?;
            }
        }
        None => {
            while d.datatype()? != Type::Break {
                each(d)?;
            }
            d.skip()?;
        }
    }
    Ok(())
}

/// Writes one attribute value of DynamoDB's answer.
pub(crate) fn encode(
    e: &mut Encoder<&mut Vec<u8>>,
    value: &AttributeValue<'_>,
) -> Result<(), DaxError> {
    let bad = || DaxError::internal("DynamoDB answered an attribute value the proxy cannot read");
    let number = |e: &mut Encoder<&mut Vec<u8>>, n: &str| -> Result<(), DaxError> {
        Decimal::parse(n).ok_or_else(bad)?.encode(e)
    };
    let binary = |e: &mut Encoder<&mut Vec<u8>>, b: &str| -> Result<(), DaxError> {
        e.bytes(&BASE64.decode(b).map_err(|_| bad())?)?;
        Ok(())
    };
    match value {
        AttributeValue::S(s) => {
            e.str(s)?;
        }
        AttributeValue::N(n) => number(e, n)?,
        AttributeValue::B(b) => binary(e, b)?,
        AttributeValue::Bool(b) => {
            e.bool(*b)?;
        }
        AttributeValue::Null(_) => {
            e.null()?;
        }
        AttributeValue::L(list) => {
            e.array(list.len() as u64)?;
            for member in list {
                encode(e, member)?;
            }
        }
        AttributeValue::M(map) => {
            e.map(map.len() as u64)?;
            for (name, member) in map.iter() {
                e.str(name)?;
                encode(e, member)?;
            }
        }
        AttributeValue::Ss(members) => {
            e.tag(Tag::new(TAG_STRING_SET))?
                .array(members.len() as u64)?;
            for member in members {
                e.str(member)?;
            }
        }
        AttributeValue::Ns(members) => {
            e.tag(Tag::new(TAG_NUMBER_SET))?
                .array(members.len() as u64)?;
            for member in members {
                number(e, member)?;
            }
        }
        AttributeValue::Bs(members) => {
            e.tag(Tag::new(TAG_BINARY_SET))?
                .array(members.len() as u64)?;
            for member in members {
                binary(e, member)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::{Value, json};

    fn encoded(value: &Value) -> Vec<u8> {
        let text = value.to_string();
        let typed: AttributeValue = serde_json::from_str(&text).unwrap();
        let mut out = Vec::new();
        encode(&mut Encoder::new(&mut out), &typed).unwrap();
        out
    }

    fn decoded(cbor: &[u8]) -> Result<Value, DaxError> {
        let text = decode_raw(&mut Decoder::new(cbor), &mut Budget::item())?;
        Ok(serde_json::from_str(&text).expect("the text is JSON"))
    }

    /// Encoded as DAX does an answer's value, then read back as a request's.
    fn round_trip(value: Value) {
        assert_eq!(decoded(&encoded(&value)).unwrap(), value);
    }

    #[test]
    fn every_type_round_trips() {
        round_trip(json!({"S": "héllo"}));
        round_trip(json!({"N": "-12.5"}));
        round_trip(json!({"B": "AAEC"}));
        round_trip(json!({"BOOL": true}));
        round_trip(json!({"NULL": true}));
        round_trip(json!({"SS": ["a", "b"]}));
        round_trip(json!({"NS": ["1", "2.5", "12345678901234567890123456789012345678"]}));
        round_trip(json!({"BS": ["AA==", "AQ=="]}));
        round_trip(json!({"L": [{"S": "x"}, {"M": {"n": {"L": []}}}]}));
    }

    #[test]
    fn set_tags_are_the_ones_clients_use() {
        assert_eq!(
            encoded(&json!({"SS": ["a"]})),
            [0xD9, 0x0C, 0xF9, 0x81, 0x61, b'a']
        );
    }

    #[test]
    fn half_floats_and_deep_nesting_are_refused() {
        assert_eq!(
            decoded(&[0xFB, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap(),
            json!({"N": "0"})
        );
        let deep: Vec<u8> = std::iter::repeat_n(0x81, 40).chain([0x01]).collect();
        assert!(decode_raw(&mut Decoder::new(&deep), &mut Budget::item()).is_err());
        let half = [0xF9, 0x3C, 0x00];
        assert!(decode_raw(&mut Decoder::new(&half), &mut Budget::item()).is_err());
        // A list past an item's size is refused part-way, not once built.
        let mut list = vec![0x9A];
        list.extend_from_slice(&1_000_000u32.to_be_bytes());
        list.extend(std::iter::repeat_n(0x01, 1_000_000));
        assert!(decode_raw(&mut Decoder::new(&list), &mut Budget::item()).is_err());
    }

    #[test]
    fn indefinite_containers_are_read() {
        // [_ "a", "b"] as an indefinite array and an indefinite text string.
        let bytes = [0x9F, 0x7F, 0x61, b'a', 0xFF, 0x61, b'b', 0xFF];
        assert_eq!(
            decoded(&bytes).unwrap(),
            json!({"L": [{"S": "a"}, {"S": "b"}]})
        );
    }
}
