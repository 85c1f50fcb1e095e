//! What the fleet keeps in the engine and sends over its channels, as bytes. Everything read
//! back is checked: the engine is shared, and bytes that are not what this module wrote are
//! treated as absent, never trusted.
//!
//! A **shared entry** is `kind`, `form`, the generation it was filled under (16 hexadecimal
//! digits, so the scripts in `fleet` can read it), the fill time (ms, 8 bytes), the full
//! canonical key (LEB128 length, then the bytes) and the item:
//! - `kind` is `V` (found) or `N` (not found); leases (`L`) and tombstones (`T`) are written
//!   only by the scripts in `fleet` and are never decoded here;
//! - `form` is `c` for the compact form of `cache::compact`, `j` for the JSON as DynamoDB sent
//!   it (an item the compact form cannot hold exactly).
//!
//! A **message** is `kind` (`P` probe, `I` invalidation, `F` flush), the sender's node id,
//! its sequence number on the channel and when it was sent (ms since the epoch), 8 bytes each;
//! then for `I` the canonical key (LEB128 length, bytes) and the partition key value as
//! DynamoDB JSON (nothing: unknown); for `F` the new generation (8 bytes) and the table name
//! (nothing: every table).

use bytes::Bytes;

use crate::cache::compact;
use crate::wire::keys::{ItemKey, KeyValue};
use crate::wire::leb128::{self, read_len};

/// How many hexadecimal digits an entry's generation takes.
const GENERATION_DIGITS: usize = 16;

/// Encodes the shared entry for `key`: `item` (`None`: not found), filled at `filled_ms` under
/// `generation`.
pub(super) fn encode_entry(
    key: &ItemKey,
    item: Option<&[u8]>,
    generation: u64,
    filled_ms: u64,
) -> Vec<u8> {
    let key = key.as_bytes();
    let mut out = Vec::with_capacity(32 + key.len() + item.map_or(0, <[u8]>::len));
    out.push(if item.is_some() { b'V' } else { b'N' });
    out.push(b'c');
    out.extend_from_slice(format!("{generation:016x}").as_bytes());
    out.extend_from_slice(&filled_ms.to_be_bytes());
    leb128::push(&mut out, key.len() as u64);
    out.extend_from_slice(key);
    if let Some(item) = item
        && !compact::encode(item, &mut out)
    {
        out[1] = b'j';
        out.extend_from_slice(item);
    }
    out
}

/// The item a shared entry holds for `key` (`Some(None)`: not found); `None` if the bytes are
/// not an entry, or are another key's.
pub(super) fn decode_entry(bytes: &[u8], key: &ItemKey) -> Option<Option<Bytes>> {
    let (&kind, rest) = bytes.split_first()?;
    let (&form, rest) = rest.split_first()?;
    let rest = rest.get(GENERATION_DIGITS + 8..)?;
    let mut at = 0;
    let len = read_len(rest, &mut at)?;
    let end = at.checked_add(len)?;
    if rest.get(at..end)? != key.as_bytes() {
        return None;
    }
    let item = &rest[end..];
    match (kind, form) {
        (b'N', b'c') if item.is_empty() => Some(None),
        (b'V', b'j') if !item.is_empty() => Some(Some(Bytes::copy_from_slice(item))),
        (b'V', b'c') => {
            let mut text = Vec::with_capacity(item.len() * 2 + 16);
            compact::render(item, &mut text)?;
            Some(Some(Bytes::from(text)))
        }
        _ => None,
    }
}

/// A message on an invalidation channel.
#[derive(Debug, Clone)]
pub(super) struct Message {
    pub origin: u64,
    pub seq: u64,
    pub sent_ms: u64,
    pub body: Body,
}

#[derive(Debug, Clone)]
pub(super) enum Body {
    /// The sender checks that its channel delivers; receivers check they missed nothing.
    Probe,
    /// `key` was written; `partition` is its partition key value, when known.
    Changed {
        key: ItemKey,
        partition: Option<KeyValue>,
    },
    /// Everything (or one table) was dropped; shared entries now live under `generation`.
    Flush {
        generation: u64,
        table: Option<String>,
    },
}

impl Message {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(match self.body {
            Body::Probe => b'P',
            Body::Changed { .. } => b'I',
            Body::Flush { .. } => b'F',
        });
        for n in [self.origin, self.seq, self.sent_ms] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        match &self.body {
            Body::Probe => {}
            Body::Changed { key, partition } => {
                leb128::push(&mut out, key.as_bytes().len() as u64);
                out.extend_from_slice(key.as_bytes());
                if let Some(partition) = partition {
                    serde_json::to_writer(&mut out, partition).expect("a key value serialises");
                }
            }
            Body::Flush { generation, table } => {
                out.extend_from_slice(&generation.to_be_bytes());
                if let Some(table) = table {
                    out.extend_from_slice(table.as_bytes());
                }
            }
        }
        out
    }

    /// The message in `bytes`; `None` if they are not one.
    pub(super) fn decode(bytes: &[u8]) -> Option<Message> {
        let (&kind, rest) = bytes.split_first()?;
        let number = |at: usize| -> Option<u64> {
            Some(u64::from_be_bytes(rest.get(at..at + 8)?.try_into().ok()?))
        };
        let (origin, seq, sent_ms) = (number(0)?, number(8)?, number(16)?);
        let tail = &rest[24..];
        let body = match kind {
            b'P' if tail.is_empty() => Body::Probe,
            b'I' => {
                let mut at = 0;
                let len = read_len(tail, &mut at)?;
                let end = at.checked_add(len)?;
                let key = ItemKey::from_canonical(tail.get(at..end)?)?;
                let partition = match &tail[end..] {
                    [] => None,
                    json => Some(serde_json::from_slice(json).ok()?),
                };
                Body::Changed { key, partition }
            }
            b'F' => {
                let generation = u64::from_be_bytes(tail.get(..8)?.try_into().ok()?);
                let table = match &tail[8..] {
                    [] => None,
                    name => Some(std::str::from_utf8(name).ok()?.to_string()),
                };
                Body::Flush { generation, table }
            }
            _ => return None,
        };
        Some(Message {
            origin,
            seq,
            sent_ms,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::keys::WireKey;

    fn key(pk: &str) -> ItemKey {
        let wire: WireKey = serde_json::from_value(serde_json::json!({"pk": {"S": pk}})).unwrap();
        ItemKey::new("t", &wire).unwrap()
    }

    #[test]
    fn entries_give_back_the_item_of_their_own_key_only() {
        let item = br#"{"pk":{"S":"a"},"n":{"N":"1"}}"#;
        let encoded = encode_entry(&key("a"), Some(item), 3, 7);
        assert_eq!(encoded[1], b'c', "a DynamoDB-shaped item is kept compact");
        assert_eq!(
            &encoded[2..18],
            b"0000000000000003",
            "the generation, as the scripts read it"
        );
        assert_eq!(
            decode_entry(&encoded, &key("a")),
            Some(Some(Bytes::from_static(item)))
        );
        assert_eq!(
            decode_entry(&encoded, &key("b")),
            None,
            "another key's entry"
        );
        let spaced = br#"{ "pk": {"S":"a"} }"#;
        let encoded = encode_entry(&key("a"), Some(spaced), 3, 7);
        assert_eq!(encoded[1], b'j');
        assert_eq!(
            decode_entry(&encoded, &key("a")),
            Some(Some(Bytes::from_static(spaced)))
        );
        let missing = encode_entry(&key("a"), None, 3, 7);
        assert_eq!(decode_entry(&missing, &key("a")), Some(None));
    }

    #[test]
    fn bytes_that_are_not_an_entry_are_absent() {
        let good = encode_entry(&key("a"), Some(br#"{"pk":{"S":"a"}}"#), 3, 7);
        for cut in 0..good.len() {
            assert_eq!(decode_entry(&good[..cut], &key("a")), None, "cut at {cut}");
        }
        for bytes in [
            &b"T"[..],
            b"L0123",
            b"",
            b"Vc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ] {
            assert_eq!(decode_entry(bytes, &key("a")), None);
        }
    }

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let partition: KeyValue = serde_json::from_str(r#"{"S":"a"}"#).unwrap();
        for body in [
            Body::Probe,
            Body::Changed {
                key: key("a"),
                partition: Some(partition),
            },
            Body::Changed {
                key: key("a"),
                partition: None,
            },
            Body::Flush {
                generation: 9,
                table: Some("t".into()),
            },
            Body::Flush {
                generation: 9,
                table: None,
            },
        ] {
            let message = Message {
                origin: 1,
                seq: 2,
                sent_ms: 3,
                body,
            };
            let bytes = message.encode();
            let decoded = Message::decode(&bytes).unwrap();
            assert_eq!(format!("{decoded:?}"), format!("{message:?}"));
            // Every cut either fails or parses (a shorter table name); none panics.
            for cut in 0..bytes.len() {
                let _ = Message::decode(&bytes[..cut]);
            }
            assert!(Message::decode(&bytes[..25]).is_none() || matches!(message.body, Body::Probe));
        }
        assert!(
            Message::decode(b"I\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x01\x05abc")
                .is_none()
        );
        assert!(Message::decode(b"Z").is_none());
    }
}
