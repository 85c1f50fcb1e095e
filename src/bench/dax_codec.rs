//! The few encodings a DAX client of the proxy's own needs (the bench's): keys of a table
//! keyed (string, number), a key condition on the hash key, and values under a list id.

use minicbor::{Decoder, Encoder};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::front::dax::av;
use crate::wire::number::Decimal;
use crate::wire::value::AttributeValue;

/// `bytes(key)`'s contents for hash key `pk` (S) and range key `sk` (N).
pub(crate) fn key(pk: &str, sk: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(pk.len() + 8);
    Encoder::new(&mut out).str(pk).expect("in memory");
    let sk = Decimal::parse(&sk.to_string()).expect("an integer");
    out.extend_from_slice(&sk.to_lex());
    out
}

/// The compiled key condition `name = value` (value a string).
pub(crate) fn equals_expression(name: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out);
    let written = (|| -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
        e.array(3)?.u8(1)?;
        e.array(3)?.u8(0)?;
        e.array(2)?.u8(18)?.str(name)?;
        e.array(2)?.u8(17)?.u8(0)?;
        e.array(1)?.str(value)?;
        Ok(())
    })();
    written.expect("in memory");
    out
}

/// `id, AV...` for `names` (sorted, the key excluded) of `item`.
pub(crate) fn values(
    id: i64,
    names: &[String],
    item: &Map<String, Value>,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out);
    e.i64(id).map_err(|e| e.to_string())?;
    for name in names {
        let value = AttributeValue::deserialize(&item[name]).map_err(|e| e.to_string())?;
        av::encode(&mut e, &value).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// The attribute list id of a GetItem answer's item, if it has one.
pub(crate) fn item_list_id(body: &[u8]) -> Option<i64> {
    let mut d = Decoder::new(body);
    let n = d.map().ok()??;
    for _ in 0..n {
        if d.u64().ok()? == 0 {
            return Decoder::new(d.bytes().ok()?).i64().ok();
        }
        d.skip().ok()?;
    }
    None
}
