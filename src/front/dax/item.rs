//! Items in DAX's encoding: the primary key as one byte string laid out by the table's key
//! schema, the other attributes as an attribute-list id and their values in that list's order,
//! and projected items as `{ordinal: value}`.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use minicbor::{Decoder, Encoder};
use sha2::{Digest, Sha256};

use super::DaxError;
use super::av;
use super::number::Decimal;
use super::sexpr::{PathElem, value_at};
use crate::upstream::schema::TableSchema;
use crate::wire::value::{AttributeValue, Item};

/// The attribute list of an item with no attributes but its key: both clients assume it.
pub(super) const EMPTY_LIST: i64 = 1;
/// Attribute lists remembered in memory at once. Past it the least recently used are
/// forgotten (and read back from the file, when there is one, on their next use).
const LISTS_CAPACITY: u64 = 100_000;
/// And the bytes their names may take in all.
const LISTS_MAX_BYTES: u64 = 64 << 20;
/// Names one attribute list may hold (DynamoDB's item size bounds them far lower in practice).
pub(super) const MAX_LIST_NAMES: usize = 10_000;
/// Bytes of names one list may hold: at most an item's.
pub(super) const MAX_LIST_BYTES: usize = av::MAX_ITEM_BYTES;
/// Attributes in an index's compound key: the table's key and the index's.
const MAX_COMPOUND_KEY: usize = 4;
/// Bytes the file may grow to: past it, new lists live in memory only.
const MAX_FILE_BYTES: u64 = 32 << 20;
/// How many ids a list may try before its own is free: another list's id is never reused.
const MAX_PROBES: u32 = 16;

/// A list defined here: its id and names.
pub(super) type Defined = (i64, Arc<[String]>);

/// The attribute lists clients and answers use: id ↔ names, the same on every connection.
///
/// Every definition is admitted; under the memory bound the least recently used lists are
/// forgotten. With a file, every list ever defined is written there and its place remembered,
/// so a forgotten list is read back when a client uses its id again (clients keep ids for as
/// long as they run). An id never names two different lists: a definition whose hash is taken
/// by another list tries the next hash in a fixed sequence.
pub(super) struct Lists {
    by_id: moka::sync::Cache<i64, Arc<[String]>>,
    /// Where lists are appended, one JSON array of names per line, to survive restarts and
    /// memory pressure.
    file: Option<Mutex<Persisted>>,
    /// Lists defined here and not yet shared with the fleet (`None`: no fleet).
    fresh: Option<Mutex<Vec<Defined>>>,
}

struct Persisted {
    path: std::path::PathBuf,
    out: std::fs::File,
    /// Bytes in the file.
    len: u64,
    /// Where each list's line starts, by id: the file's index, read on a miss.
    at: HashMap<i64, u32>,
}

impl Default for Lists {
    fn default() -> Lists {
        Lists {
            by_id: moka::sync::Cache::builder()
                .max_capacity(LISTS_MAX_BYTES)
                // Recency, not frequency: a new definition is always admitted, as the client
                // that asked for it will use the id next.
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .weigher(|_, names: &Arc<[String]>| {
                    let bytes: usize = names.iter().map(|n| n.len() + 24).sum();
                    // Every list weighs at least its share of the count bound.
                    (bytes as u64)
                        .max(LISTS_MAX_BYTES / LISTS_CAPACITY)
                        .try_into()
                        .unwrap_or(u32::MAX)
                })
                .build(),
            file: None,
            fresh: None,
        }
    }
}

impl Lists {
    /// Lists kept in `path` too: its index is read line by line (never the whole file at
    /// once), the newest lists are loaded up to the memory bound, and new ones are appended.
    pub(super) fn persisted(path: &Path) -> std::io::Result<Lists> {
        let lists = Lists::default();
        let mut at = HashMap::new();
        let mut len = 0u64;
        let mut cut_short = false;
        match std::fs::File::open(path) {
            Ok(file) => {
                let mut reader = std::io::BufReader::new(file);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    let read = (&mut reader)
                        .take(MAX_LIST_BYTES as u64 * 2)
                        .read_until(b'\n', &mut line)?;
                    if read == 0 {
                        break;
                    }
                    let start = len;
                    len += read as u64;
                    if line.last() != Some(&b'\n') {
                        // Cut short by a crash (or too long to be a list): skipped.
                        cut_short = true;
                        continue;
                    }
                    if let Ok(names) = serde_json::from_slice::<Vec<String>>(&line) {
                        let id = lists.place(&names, |id| at.contains_key(&id));
                        if let Some(id) = id
                            && let Ok(start) = u32::try_from(start)
                        {
                            at.insert(id, start);
                            lists.by_id.insert(id, names.into());
                        }
                    }
                    if len > MAX_FILE_BYTES {
                        break;
                    }
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        if cut_short {
            out.write_all(b"\n")?;
            len += 1;
        }
        Ok(Lists {
            file: Some(Mutex::new(Persisted {
                path: path.to_path_buf(),
                out,
                len,
                at,
            })),
            ..lists
        })
    }

    /// The id of this exact, ordered list of names; registered so it can be looked up.
    ///
    /// Ids are a 53-bit hash of the names, never 0 or 1: a client keeps them across this
    /// proxy's restarts, and a restarted proxy hands out the same id for the same list.
    pub(super) fn id_of(&self, names: &[String]) -> Result<i64, DaxError> {
        if names.is_empty() {
            return Ok(EMPTY_LIST);
        }
        if names.len() > MAX_LIST_NAMES
            || names.iter().map(String::len).sum::<usize>() > MAX_LIST_BYTES
        {
            return Err(DaxError::validation("too many attributes in one list"));
        }
        let mut file = self
            .file
            .as_ref()
            .map(|f| f.lock().unwrap_or_else(|p| p.into_inner()));
        for probe in 0..MAX_PROBES {
            let id = list_id(names, probe);
            match self.lookup(id, file.as_deref_mut()) {
                Some(known) if &*known == names => return Ok(id),
                // Another list's id: try the next.
                Some(_) => continue,
                None => {
                    let names: Arc<[String]> = names.to_vec().into();
                    self.by_id.insert(id, names.clone());
                    if let Some(file) = file.as_deref_mut() {
                        file.append(id, &names);
                    }
                    if let Some(fresh) = &self.fresh {
                        fresh
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((id, names));
                    }
                    return Ok(id);
                }
            }
        }
        Err(DaxError::internal("no free attribute list id"))
    }

    /// Which id `names` takes when lists are read back in order: the first probe not taken.
    fn place(&self, names: &[String], taken: impl Fn(i64) -> bool) -> Option<i64> {
        (0..MAX_PROBES)
            .map(|p| list_id(names, p))
            .find(|id| !taken(*id) || self.by_id.get(id).is_some_and(|known| &*known == names))
    }

    /// The names of `id`: from memory, or read back from the file.
    fn lookup(&self, id: i64, file: Option<&mut Persisted>) -> Option<Arc<[String]>> {
        if let Some(names) = self.by_id.get(&id) {
            return Some(names);
        }
        let names: Arc<[String]> = file?.read(id)?.into();
        self.by_id.insert(id, names.clone());
        Some(names)
    }

    /// The names of a list id.
    pub(super) fn names(&self, id: i64) -> Result<Arc<[String]>, DaxError> {
        if id == EMPTY_LIST {
            return Ok(Arc::from(Vec::new()));
        }
        if let Some(names) = self.by_id.get(&id) {
            return Ok(names);
        }
        let mut file = self
            .file
            .as_ref()
            .map(|f| f.lock().unwrap_or_else(|p| p.into_inner()));
        self.lookup(id, file.as_deref_mut()).ok_or_else(|| {
            let mut err = DaxError::validation(format!(
                "Unknown attribute list id {id}: define the attribute list again"
            ));
            err.unknown_list = Some(id);
            err
        })
    }

    /// Keeps the lists defined from now on for [`Lists::take_fresh`], to share with a fleet.
    pub(super) fn share(&mut self) {
        self.fresh = Some(Mutex::new(Vec::new()));
    }

    /// The lists defined here since the last call.
    pub(super) fn take_fresh(&self) -> Vec<Defined> {
        match &self.fresh {
            Some(fresh) => std::mem::take(&mut *fresh.lock().unwrap_or_else(|p| p.into_inner())),
            None => Vec::new(),
        }
    }

    /// Learns a list another node of the fleet defined: `names` under `id`, unless this node
    /// already gives `id` to another list (then `false`).
    pub(super) fn learn(&self, id: i64, names: &[String]) -> bool {
        if names.is_empty() || names.len() > MAX_LIST_NAMES {
            return false;
        }
        let mut file = self
            .file
            .as_ref()
            .map(|f| f.lock().unwrap_or_else(|p| p.into_inner()));
        match self.lookup(id, file.as_deref_mut()) {
            Some(known) => &*known == names,
            None => {
                self.by_id.insert(id, names.to_vec().into());
                if let Some(file) = file.as_deref_mut() {
                    file.append(id, names);
                }
                true
            }
        }
    }
}

impl Persisted {
    fn append(&mut self, id: i64, names: &[String]) {
        let mut line = serde_json::to_vec(names).expect("names serialise");
        line.push(b'\n');
        if self.len + line.len() as u64 > MAX_FILE_BYTES {
            return;
        }
        let Ok(start) = u32::try_from(self.len) else {
            return;
        };
        match self.out.write_all(&line) {
            Ok(()) => {
                self.at.insert(id, start);
                self.len += line.len() as u64;
            }
            Err(err) => tracing::warn!(error = %err, "cannot keep a DAX attribute list"),
        }
    }

    /// The list whose line starts where the index says `id`'s does.
    fn read(&mut self, id: i64) -> Option<Vec<String>> {
        let start = *self.at.get(&id)?;
        let mut file = std::fs::File::open(&self.path).ok()?;
        file.seek(SeekFrom::Start(start as u64)).ok()?;
        let mut line = Vec::new();
        std::io::BufReader::new(file)
            .take(MAX_LIST_BYTES as u64 * 2)
            .read_until(b'\n', &mut line)
            .ok()?;
        serde_json::from_slice(&line).ok()
    }
}

/// A list's id: a 53-bit hash of its names (and, past the first probe, of the probe), never
/// 0 or 1. It has 53 bits because the JavaScript client holds ids as JavaScript numbers, which
/// are exact only up to 2^53 - 1.
fn list_id(names: &[String], probe: u32) -> i64 {
    let mut hash = Sha256::new();
    for name in names {
        hash.update((name.len() as u64).to_be_bytes());
        hash.update(name.as_bytes());
    }
    if probe > 0 {
        hash.update(b"probe");
        hash.update(probe.to_be_bytes());
    }
    let digest = hash.finalize();
    let raw = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) >> 11;
    (raw as i64).max(2)
}

/// The scalar type of a key attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    S,
    N,
    B,
}

/// A table's primary key, as DAX lays it out in a byte string.
#[derive(Debug, Clone)]
pub(super) struct KeyShape {
    hash: (String, Scalar),
    range: Option<(String, Scalar)>,
}

impl KeyShape {
    pub(super) fn of(schema: &TableSchema) -> Result<KeyShape, DaxError> {
        let typed = |name: &str| -> Result<(String, Scalar), DaxError> {
            let scalar = match schema.types.get(name).map(String::as_str) {
                Some("S") => Scalar::S,
                Some("N") => Scalar::N,
                Some("B") => Scalar::B,
                _ => {
                    return Err(DaxError::internal(format!(
                        "the type of key attribute {name} is not known"
                    )));
                }
            };
            Ok((name.to_string(), scalar))
        };
        Ok(KeyShape {
            hash: typed(&schema.key.partition)?,
            range: schema.key.sort.as_deref().map(typed).transpose()?,
        })
    }

    /// A string hash key `pk` and a numeric range key `sk`, for decoding without an upstream.
    pub(super) fn for_fuzzing() -> KeyShape {
        KeyShape {
            hash: ("pk".into(), Scalar::S),
            range: Some(("sk".into(), Scalar::N)),
        }
    }

    /// `defineKeySchema`'s answer: hash key first, then range key.
    pub(super) fn described(&self) -> Vec<(&str, &'static str)> {
        let kind = |s: Scalar| match s {
            Scalar::S => "S",
            Scalar::N => "N",
            Scalar::B => "B",
        };
        std::iter::once(&self.hash)
            .chain(self.range.as_ref())
            .map(|(name, s)| (name.as_str(), kind(*s)))
            .collect()
    }

    pub(super) fn is_key(&self, name: &str) -> bool {
        self.hash.0 == name || self.range.as_ref().is_some_and(|r| r.0 == name)
    }

    /// The key in a request's `bytes(key)`, each value as its DynamoDB JSON text.
    pub(super) fn decode(&self, bytes: &[u8]) -> Result<RawItem, DaxError> {
        let mut key = RawItem::new();
        match &self.range {
            None => {
                key.insert(self.hash.0.clone(), raw_scalar(self.hash.1, bytes, true)?);
            }
            Some((range, range_type)) => {
                let mut d = Decoder::new(bytes);
                let hash = av::decode_key(&mut d)?;
                check_scalar(self.hash.1, &hash)?;
                key.insert(self.hash.0.clone(), hash);
                let rest = &bytes[d.position()..];
                key.insert(range.clone(), raw_scalar(*range_type, rest, false)?);
            }
        }
        Ok(key)
    }

    /// The key attributes of `item` as `bytes(key)`'s contents.
    pub(super) fn encode(&self, item: &Item<'_>) -> Result<Vec<u8>, DaxError> {
        let missing =
            |name: &str| DaxError::internal(format!("an item has no key attribute {name}"));
        let hash = item
            .get(&self.hash.0)
            .ok_or_else(|| missing(&self.hash.0))?;
        let mut out = Vec::new();
        match &self.range {
            None => write_raw_scalar(self.hash.1, hash, &mut out, true)?,
            Some((range, range_type)) => {
                av::encode(&mut Encoder::new(&mut out), hash)?;
                let range = item.get(range).ok_or_else(|| missing(range))?;
                write_raw_scalar(*range_type, range, &mut out, false)?;
            }
        }
        Ok(out)
    }

    /// `item` without its key attributes.
    pub(super) fn others<'i>(&self, item: &'i Item<'_>) -> Vec<(&'i str, &'i AttributeValue<'i>)> {
        item.iter().filter(|(name, _)| !self.is_key(name)).collect()
    }
}

/// Attribute names to their values' DynamoDB JSON text, as a request's body takes them.
pub(super) type RawItem = BTreeMap<String, String>;

/// Whether a key value's JSON text (as [`av::decode_key`] wrote it) is of the expected type.
fn check_scalar(expected: Scalar, json: &str) -> Result<(), DaxError> {
    let prefix = match expected {
        Scalar::S => "{\"S\":",
        Scalar::N => "{\"N\":",
        Scalar::B => "{\"B\":",
    };
    if json.starts_with(prefix) {
        Ok(())
    } else {
        Err(DaxError::validation(
            "The provided key element does not match the schema",
        ))
    }
}

/// A key value written without a CBOR header: UTF-8, raw bytes, or (a range key) LexDecimal;
/// a hash-only number is one CBOR number. Given back as its DynamoDB JSON text.
fn raw_scalar(scalar: Scalar, bytes: &[u8], hash_only: bool) -> Result<String, DaxError> {
    use base64::Engine;
    let (kind, text) = match scalar {
        Scalar::S => (
            "S",
            std::str::from_utf8(bytes)
                .map_err(|_| DaxError::malformed("a string key is not UTF-8"))?
                .to_string(),
        ),
        Scalar::B => ("B", base64::engine::general_purpose::STANDARD.encode(bytes)),
        Scalar::N if hash_only => {
            let mut d = Decoder::new(bytes);
            let n = Decimal::decode(&mut d)?;
            if d.position() != bytes.len() {
                return Err(DaxError::malformed("a numeric key has trailing bytes"));
            }
            ("N", n.to_text()?)
        }
        Scalar::N => ("N", Decimal::from_lex(bytes)?.to_text()?),
    };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str("{\"");
    out.push_str(kind);
    out.push_str("\":");
    out.push_str(&serde_json::to_string(&text).expect("a string serialises"));
    out.push('}');
    Ok(out)
}

fn write_raw_scalar(
    scalar: Scalar,
    value: &AttributeValue<'_>,
    out: &mut Vec<u8>,
    hash_only: bool,
) -> Result<(), DaxError> {
    use base64::Engine;
    let bad = || DaxError::internal("a key attribute does not have its table's type");
    match (scalar, value) {
        (Scalar::S, AttributeValue::S(s)) => out.extend_from_slice(s.as_bytes()),
        (Scalar::B, AttributeValue::B(b)) => out.extend_from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .map_err(|_| bad())?,
        ),
        (Scalar::N, AttributeValue::N(_)) if hash_only => {
            av::encode(&mut Encoder::new(out), value)?
        }
        (Scalar::N, AttributeValue::N(n)) => {
            out.extend_from_slice(&Decimal::parse(n).ok_or_else(bad)?.to_lex());
        }
        _ => return Err(bad()),
    }
    Ok(())
}

/// Reads `bytes(id, AV...)`: an item's non-key attributes.
pub(super) fn decode_values(lists: &Lists, bytes: &[u8]) -> Result<RawItem, DaxError> {
    let mut d = Decoder::new(bytes);
    let id = d.i64()?;
    let names = lists.names(id)?;
    let mut item = RawItem::new();
    // What DynamoDB counts of the item, at least: past its limit the item is refused before
    // the rest of it is built.
    let mut size = av::Budget::item();
    for name in names.iter() {
        if d.position() >= bytes.len() {
            return Err(DaxError::validation(
                "an item has fewer values than its attribute list has names",
            ));
        }
        size.add(name.len())?;
        item.insert(name.clone(), av::decode_raw(&mut d, &mut size)?);
    }
    if d.position() != bytes.len() {
        return Err(DaxError::validation(
            "an item has more values than its attribute list has names",
        ));
    }
    Ok(item)
}

/// Writes `id, AV...` for an item's attributes other than its key, sorted by name.
pub(super) fn encode_values(
    lists: &Lists,
    shape: &KeyShape,
    item: &Item<'_>,
) -> Result<Vec<u8>, DaxError> {
    encode_sorted(lists, shape.others(item))
}

/// Writes `id, AV...` for every attribute of `item`, its key included: for unprocessed
/// writes, whose key the Python client drops when it reads them back.
pub(super) fn encode_whole(lists: &Lists, item: &Item<'_>) -> Result<Vec<u8>, DaxError> {
    encode_sorted(lists, item.iter().collect())
}

/// `id, AV...` for `attributes`, sorted by name, under the id of their names.
fn encode_sorted(
    lists: &Lists,
    mut attributes: Vec<(&str, &AttributeValue<'_>)>,
) -> Result<Vec<u8>, DaxError> {
    attributes.sort_by(|a, b| a.0.cmp(b.0));
    let names: Vec<String> = attributes.iter().map(|(n, _)| (*n).to_string()).collect();
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out);
    e.i64(lists.id_of(&names)?)?;
    for (_, value) in attributes {
        av::encode(&mut e, value)?;
    }
    Ok(out)
}

/// Reads a compound key (`ExclusiveStartKey` with an index): a map of names to values.
pub(super) fn decode_compound(bytes: &[u8]) -> Result<RawItem, DaxError> {
    let mut d = Decoder::new(bytes);
    let mut key = RawItem::new();
    av::each_pair(&mut d, |d| {
        // The table's key and the index's: four attributes at most.
        if key.len() >= MAX_COMPOUND_KEY {
            return Err(DaxError::validation(
                "The provided starting key is invalid: too many attributes",
            ));
        }
        let name = av::text(d)?;
        key.insert(name, av::decode_key(d)?);
        Ok(())
    })?;
    Ok(key)
}

/// Writes a compound key as a stream map, which Go's client requires.
pub(super) fn encode_compound(key: &Item<'_>) -> Result<Vec<u8>, DaxError> {
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out);
    e.begin_map()?;
    for (name, value) in key.iter() {
        e.str(name)?;
        av::encode(&mut e, value)?;
    }
    e.end()?;
    Ok(out)
}

/// Writes a projected item: `{ordinal: value at that path}` for each path the item has.
pub(super) fn encode_projected(
    e: &mut Encoder<&mut Vec<u8>>,
    paths: &[Vec<PathElem>],
    item: &Item<'_>,
) -> Result<(), DaxError> {
    let found: Vec<(usize, &AttributeValue<'_>)> = paths
        .iter()
        .enumerate()
        .filter_map(|(i, path)| Some((i, value_at(item, paths, path)?)))
        .collect();
    e.map(found.len() as u64)?;
    for (ordinal, value) in found {
        e.u64(ordinal as u64)?;
        av::encode(e, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::collections::HashMap;

    fn shape(hash: (&str, &str), range: Option<(&str, &str)>) -> KeyShape {
        let mut types = HashMap::new();
        types.insert(hash.0.to_string(), hash.1.to_string());
        if let Some(r) = range {
            types.insert(r.0.to_string(), r.1.to_string());
        }
        KeyShape::of(&TableSchema {
            key: crate::upstream::schema::KeySchema {
                partition: hash.0.into(),
                sort: range.map(|r| r.0.to_string()),
            },
            indexes: HashMap::new(),
            local: Default::default(),
            types,
        })
        .unwrap()
    }

    /// An item as DynamoDB's answer would give it.
    fn object(v: Value) -> Item<'static> {
        let text: &'static str = Box::leak(v.to_string().into_boxed_str());
        serde_json::from_str(text).unwrap()
    }

    /// A decoded key or item, its values' text read as JSON.
    fn parsed(raw: RawItem) -> Value {
        raw.into_iter()
            .map(|(name, text)| (name, serde_json::from_str(&text).unwrap()))
            .collect::<serde_json::Map<String, Value>>()
            .into()
    }

    #[test]
    fn keys_are_laid_out_as_the_clients_lay_them_out() {
        let s = shape(("pk", "S"), None);
        assert_eq!(
            s.encode(&object(json!({"pk": {"S": "ab"}}))).unwrap(),
            b"ab"
        );
        let sn = shape(("pk", "S"), Some(("sk", "N")));
        let key = json!({"pk": {"S": "ab"}, "sk": {"N": "100"}});
        let bytes = sn.encode(&object(key.clone())).unwrap();
        assert_eq!(bytes, [0x62, b'a', b'b', 0xC3, 0x1C, 0x00, 0x20]);
        assert_eq!(parsed(sn.decode(&bytes).unwrap()), key);
        let n = shape(("id", "N"), None);
        assert_eq!(
            n.encode(&object(json!({"id": {"N": "7"}}))).unwrap(),
            [0x07]
        );
        let nb = shape(("id", "N"), Some(("b", "B")));
        let key = json!({"id": {"N": "-3"}, "b": {"B": "AAE="}});
        let bytes = nb.encode(&object(key.clone())).unwrap();
        assert_eq!(parsed(nb.decode(&bytes).unwrap()), key);
    }

    #[test]
    fn a_key_of_the_wrong_type_is_refused() {
        let sn = shape(("pk", "S"), Some(("sk", "N")));
        // hash as a number
        assert!(sn.decode(&[0x01, 0x80]).is_err());
    }

    #[test]
    fn list_ids_are_stable_and_never_the_empty_list() {
        let lists = Lists::default();
        let names = vec!["a".to_string(), "b".to_string()];
        let id = lists.id_of(&names).unwrap();
        assert!((2..1 << 53).contains(&id), "exact as a JavaScript number");
        assert_eq!(Lists::default().id_of(&names).unwrap(), id);
        assert_eq!(&*lists.names(id).unwrap(), &names[..]);
        assert_eq!(lists.id_of(&[]).unwrap(), EMPTY_LIST);
        assert!(lists.names(12345).is_err());
    }

    #[test]
    fn persisted_lists_survive_a_restart() {
        let path = std::env::temp_dir().join(format!("dax-lists-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let names = vec!["a".to_string(), "b c".to_string()];
        let id = Lists::persisted(&path).unwrap().id_of(&names).unwrap();
        // A line cut short is skipped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"[\"tru")
            .unwrap();
        let restarted = Lists::persisted(&path).unwrap();
        assert_eq!(&*restarted.names(id).unwrap(), &names[..]);
        let more = vec!["z".to_string()];
        let other = restarted.id_of(&more).unwrap();
        drop(restarted);
        let again = Lists::persisted(&path).unwrap();
        assert_eq!(
            &*again.names(other).unwrap(),
            &more[..],
            "written after the cut line"
        );
        assert!(Lists::default().names(id).is_err());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn values_round_trip_in_name_order() {
        let lists = Lists::default();
        let s = shape(("pk", "S"), None);
        let item = object(json!({"pk": {"S": "k"}, "z": {"N": "1"}, "a": {"S": "x"}}));
        let bytes = encode_values(&lists, &s, &item).unwrap();
        let back = decode_values(&lists, &bytes).unwrap();
        // Each value comes back as its JSON text, written as it is into the request body.
        assert_eq!(parsed(back), json!({"a": {"S": "x"}, "z": {"N": "1"}}));
        // Fewer values than names.
        let short = &bytes[..bytes.len() - 1];
        assert!(decode_values(&lists, short).is_err());
    }

    #[test]
    fn a_definition_is_always_admitted_and_a_forgotten_list_is_read_back() {
        let path = std::env::temp_dir().join(format!("dax-lists-lru-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let lists = Lists::persisted(&path).unwrap();
        let first = vec!["first".to_string()];
        let id = lists.id_of(&first).unwrap();
        // Fill memory far past its bound with other lists: each is admitted at once.
        for i in 0..LISTS_CAPACITY + 1_000 {
            let names = vec![format!("n{i}")];
            let other = lists.id_of(&names).unwrap();
            assert_eq!(&*lists.names(other).unwrap(), &names[..], "list {i}");
        }
        lists.by_id.run_pending_tasks();
        assert!(lists.by_id.weighted_size() <= LISTS_MAX_BYTES);
        // The first list left memory long ago; its id still answers, from the file.
        assert!(
            lists.by_id.get(&id).is_none(),
            "the oldest list was forgotten"
        );
        assert_eq!(&*lists.names(id).unwrap(), &first[..]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_id_never_names_two_lists() {
        let lists = Lists::default();
        let mine = vec!["a".to_string()];
        // Another list already holds the id `mine` hashes to.
        let squatter: Arc<[String]> = vec!["b".to_string()].into();
        lists.by_id.insert(list_id(&mine, 0), squatter.clone());
        let id = lists.id_of(&mine).unwrap();
        assert_ne!(id, list_id(&mine, 0));
        assert_eq!(&*lists.names(id).unwrap(), &mine[..]);
        assert_eq!(lists.names(list_id(&mine, 0)).unwrap(), squatter);
        assert_eq!(lists.id_of(&mine).unwrap(), id, "stable");
    }

    #[test]
    fn the_file_is_bounded_in_bytes_and_read_a_line_at_a_time() {
        let path = std::env::temp_dir().join(format!("dax-lists-full-{}", std::process::id()));
        // A file already at its bound (lines that are not lists, as a crash might leave).
        let line = format!("{}\n", "x".repeat(1023));
        let full = line.repeat((MAX_FILE_BYTES as usize / line.len()) + 1);
        std::fs::write(&path, &full).unwrap();
        let lists = Lists::persisted(&path).unwrap();
        let names = vec!["new".to_string()];
        let id = lists.id_of(&names).unwrap();
        assert_eq!(
            &*lists.names(id).unwrap(),
            &names[..],
            "still served from memory"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            full.len() as u64,
            "nothing written past the bound"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_key_value_that_is_no_key_is_refused_before_it_is_built() {
        // A hash key given as a list of a million numbers, and a compound key of many pairs.
        let mut list = vec![0x9A];
        list.extend_from_slice(&1_000_000u32.to_be_bytes());
        list.extend(std::iter::repeat_n(0x01, 1_000_000));
        list.extend_from_slice(&[0xC1, 0x1C, 0x00, 0x00]);
        let s = shape(("pk", "S"), Some(("sk", "N")));
        assert!(s.decode(&list).is_err());
        let compound = |pairs: u8| {
            let mut out = vec![0xBF];
            for i in 0..pairs {
                out.extend_from_slice(&[0x61, b'a' + i, 0x01]);
            }
            out.push(0xFF);
            out
        };
        assert!(decode_compound(&compound(10)).is_err());
        assert!(decode_compound(&compound(4)).is_ok_and(|k| k.len() == 4));
    }
}
