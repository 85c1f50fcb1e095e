//! Finding where a DAX request ends. The protocol has no length prefix: a request is the
//! service id, the method id, then as many CBOR items as the method takes, so a request is
//! complete once that many whole items have arrived.

use std::ops::Range;

use minicbor::Decoder;

use crate::wire::operation::Operation;

/// The connection preamble's first item: `gJ7yne5G`, which is also the CBOR text `"J7yne5G"`.
const MAGIC: &str = "J7yne5G";
/// Items in the preamble: magic, layering, session id, header map, trailer.
const PREAMBLE_ITEMS: usize = 5;
/// The only service id.
const SERVICE: u64 = 1;

/// The methods a DAX client calls, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    AuthorizeConnection,
    Endpoints,
    DefineAttributeList,
    DefineAttributeListId,
    DefineKeySchema,
    GetItem,
    PutItem,
    UpdateItem,
    DeleteItem,
    BatchGetItem,
    BatchWriteItem,
    Query,
    Scan,
    TransactGetItems,
    TransactWriteItems,
}

impl Method {
    pub(crate) fn from_id(id: i64) -> Option<Method> {
        Some(match id {
            1489122155 => Method::AuthorizeConnection,
            455855874 => Method::Endpoints,
            670678385 => Method::DefineAttributeList,
            -1230579644 => Method::DefineAttributeListId,
            -742646399 => Method::DefineKeySchema,
            263244906 => Method::GetItem,
            -2106490455 => Method::PutItem,
            1425579023 => Method::UpdateItem,
            1013539361 => Method::DeleteItem,
            -697851100 => Method::BatchGetItem,
            116217951 => Method::BatchWriteItem,
            -931250863 => Method::Query,
            -1875390620 => Method::Scan,
            1866287579 => Method::TransactGetItems,
            -1160037738 => Method::TransactWriteItems,
            _ => return None,
        })
    }

    /// Whether it is one of the DynamoDB operations (the rest are the protocol's own).
    pub(crate) fn is_data(self) -> bool {
        self.operation() != Operation::Other
    }

    /// The DynamoDB operation it stands for; `Other` for the protocol's own methods.
    pub(crate) fn operation(self) -> Operation {
        match self {
            Method::GetItem => Operation::GetItem,
            Method::PutItem => Operation::PutItem,
            Method::UpdateItem => Operation::UpdateItem,
            Method::DeleteItem => Operation::DeleteItem,
            Method::BatchGetItem => Operation::BatchGetItem,
            Method::BatchWriteItem => Operation::BatchWriteItem,
            Method::Query => Operation::Query,
            Method::Scan => Operation::Scan,
            Method::TransactGetItems => Operation::TransactGetItems,
            Method::TransactWriteItems => Operation::TransactWriteItems,
            _ => Operation::Other,
        }
    }

    /// Items after the method id: positional arguments, plus the trailing keyword map of the
    /// data methods.
    fn arity(self) -> usize {
        match self {
            Method::AuthorizeConnection => 5,
            Method::Endpoints => 0,
            Method::DefineAttributeList | Method::DefineAttributeListId => 1,
            Method::DefineKeySchema => 1,
            Method::GetItem | Method::UpdateItem | Method::DeleteItem | Method::Query => 3,
            Method::PutItem => 4,
            Method::Scan | Method::BatchGetItem | Method::BatchWriteItem => 2,
            Method::TransactGetItems => 4,
            Method::TransactWriteItems => 9,
        }
    }
}

/// Why the bytes cannot be read as DAX: the connection cannot continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Not CBOR, or not the shape every request has.
    Malformed(String),
    /// A method id this server does not serve: its items cannot be counted.
    UnknownMethod(i64),
}

impl From<minicbor::decode::Error> for FrameError {
    fn from(err: minicbor::decode::Error) -> FrameError {
        FrameError::Malformed(err.to_string())
    }
}

/// One whole request: its method and where each of its items lies in the buffer.
#[derive(Debug)]
pub(crate) struct Frame {
    pub method: Method,
    pub items: Vec<Range<usize>>,
    /// Bytes the request took, from the start of the buffer.
    pub len: usize,
}

/// Which client wrote the requests, where that changes what they mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Dialect {
    #[default]
    Standard,
    /// `aws-dax-go-v2`, which writes `Select` as ALL_ATTRIBUTES whenever its caller left it
    /// unset, and never writes an explicit ALL_ATTRIBUTES (`encodeScanQueryOptionalParams`).
    GoV2,
}

/// The user agent `aws-dax-go-v2` names itself with (`tube.go`).
const GO_V2_AGENT: &str = "DaxGoV2Client";

/// The length of the preamble, once all of it has arrived, and the client it names.
pub(crate) fn preamble(buf: &[u8]) -> Result<Option<(usize, Dialect)>, FrameError> {
    let mut d = Decoder::new(buf);
    match d.str() {
        Ok(MAGIC) => {}
        Ok(_) => return Err(FrameError::Malformed("not a DAX client".into())),
        Err(e) if e.is_end_of_input() => return Ok(None),
        Err(_) => return Err(FrameError::Malformed("not a DAX client".into())),
    }
    let mut dialect = Dialect::Standard;
    for i in 1..PREAMBLE_ITEMS {
        let start = d.position();
        match skip(&mut d) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => return Err(e),
        }
        // The header map: `{"UserAgent": agent}`.
        if i == 3 && agent(&buf[start..d.position()]).is_some_and(|a| a.starts_with(GO_V2_AGENT)) {
            dialect = Dialect::GoV2;
        }
    }
    Ok(Some((d.position(), dialect)))
}

/// The `UserAgent` of a preamble's header map, if it has one.
fn agent(item: &[u8]) -> Option<&str> {
    let mut d = Decoder::new(item);
    let pairs = d.map().ok()??;
    for _ in 0..pairs.min(16) {
        let key = d.str().ok()?;
        if key == "UserAgent" {
            return d.str().ok();
        }
        d.skip().ok()?;
    }
    None
}

/// The first request in `buf`, if all of it has arrived.
pub(crate) fn split(buf: &[u8]) -> Result<Option<Frame>, FrameError> {
    Reader::default().next(buf)
}

/// How deep containers may nest in one request item: an attribute value nests at most 32
/// deep, inside a few levels of the request's own structure.
const MAX_NESTING: usize = 48;

/// Containers still open in the item being read: for each, the items it still holds
/// (`None`: an indefinite container, open until its break).
#[derive(Debug, Clone)]
struct Open {
    len: usize,
    remaining: [Option<u64>; MAX_NESTING],
    /// Heads read so far, for tests of how much work framing takes.
    heads: u64,
}

impl Default for Open {
    fn default() -> Open {
        Open {
            len: 0,
            remaining: [None; MAX_NESTING],
            heads: 0,
        }
    }
}

/// Finds requests in a buffer that grows between calls, resuming where the last call ran out
/// of bytes instead of starting over, so a request that arrives in many small reads costs time
/// in proportion to its size. It allocates nothing from what the bytes claim: a length is a
/// count to skip, and containers nest at most [`MAX_NESTING`] deep.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    /// The method, once its id has been read.
    method: Option<Method>,
    /// Where each whole item of the request lies.
    items: Vec<Range<usize>>,
    /// Where reading resumes: always at the start of a CBOR head.
    pos: usize,
    /// Where the item being read started.
    item_start: usize,
    open: Open,
}

impl Reader {
    /// The first request in `buf` (which holds everything since the last request returned),
    /// if all of it has arrived. After a request is returned the reader starts afresh: the
    /// caller removes that request's bytes from the front of the buffer.
    pub(crate) fn next(&mut self, buf: &[u8]) -> Result<Option<Frame>, FrameError> {
        let mut d = Decoder::new(buf);
        d.set_position(self.pos);
        let incomplete = |e: &minicbor::decode::Error| e.is_end_of_input();
        let method = match self.method {
            Some(method) => method,
            None => {
                let service = match d.u64() {
                    Ok(service) => service,
                    Err(e) if incomplete(&e) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                if service != SERVICE {
                    return Err(FrameError::Malformed(format!("unknown service {service}")));
                }
                let id = match d.datatype() {
                    Ok(t) if super::number::is_integer(t) => match d.i64() {
                        Ok(id) => id,
                        Err(e) if incomplete(&e) => return Ok(None),
                        Err(e) => return Err(e.into()),
                    },
                    Err(e) if incomplete(&e) => return Ok(None),
                    _ => return Err(FrameError::Malformed("a method id is an integer".into())),
                };
                let method = Method::from_id(id).ok_or(FrameError::UnknownMethod(id))?;
                self.method = Some(method);
                self.pos = d.position();
                self.item_start = self.pos;
                method
            }
        };
        while self.items.len() < method.arity() {
            if self.open.len == 0 {
                self.item_start = self.pos;
            }
            let done = walk(&mut d, &mut self.open, &mut self.pos)?;
            if !done {
                return Ok(None);
            }
            self.items.push(self.item_start..self.pos);
        }
        let frame = Frame {
            method,
            items: std::mem::take(&mut self.items),
            len: self.pos,
        };
        *self = Reader::default();
        Ok(Some(frame))
    }
}

/// Skips one whole item; `false` when it has not all arrived.
fn skip(d: &mut Decoder<'_>) -> Result<bool, FrameError> {
    let mut pos = d.position();
    walk(d, &mut Open::default(), &mut pos)
}

/// Reads heads from `*pos` until the item that `open` tracks is whole (`true`), or the bytes
/// run out (`false`, with `*pos` and `open` where to resume). Never recurses.
fn walk(d: &mut Decoder<'_>, open: &mut Open, pos: &mut usize) -> Result<bool, FrameError> {
    use minicbor::data::Type;
    loop {
        // Close every container that has all its items.
        while open.len > 0 && open.remaining[open.len - 1] == Some(0) {
            open.len -= 1;
            if open.len == 0 {
                return Ok(true);
            }
        }
        d.set_position(*pos);
        open.heads += 1;
        let kind = match d.datatype() {
            Ok(kind) => kind,
            Err(e) if e.is_end_of_input() => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let step = match kind {
            Type::Break => {
                if open.len == 0 || open.remaining[open.len - 1].is_some() {
                    return Err(FrameError::Malformed("an unexpected break".into()));
                }
                d.set_position(*pos + 1);
                open.len -= 1;
                Step::Closed
            }
            Type::Array
            | Type::Map
            | Type::ArrayIndef
            | Type::MapIndef
            | Type::BytesIndef
            | Type::StringIndef => {
                let count = match kind {
                    Type::Array | Type::ArrayIndef => d.array(),
                    Type::Map | Type::MapIndef => d.map().map(|n| n.map(|n| n.saturating_mul(2))),
                    // An indefinite string is a run of definite chunks, then a break.
                    _ => {
                        d.set_position(*pos + 1);
                        Ok(None)
                    }
                };
                match count {
                    Ok(Some(0)) => Step::Scalar,
                    Ok(count) => Step::Opened(count),
                    Err(e) if e.is_end_of_input() => return Ok(false),
                    Err(e) => return Err(e.into()),
                }
            }
            // A tag belongs to the item after it: the count is unchanged.
            Type::Tag => match d.tag() {
                Ok(_) => Step::Tag,
                Err(e) if e.is_end_of_input() => return Ok(false),
                Err(e) => return Err(e.into()),
            },
            _ => match d.skip() {
                // A scalar, or a definite string that lies whole in the buffer: `skip` checks
                // its length against the bytes there without allocating.
                Ok(()) => Step::Scalar,
                Err(e) if e.is_end_of_input() => return Ok(false),
                Err(e) => return Err(e.into()),
            },
        };
        *pos = d.position();
        match step {
            Step::Tag => continue,
            Step::Opened(count) => {
                // The container counts as one item of its parent.
                if open.len > 0
                    && let Some(n) = &mut open.remaining[open.len - 1]
                {
                    *n -= 1;
                }
                if open.len == MAX_NESTING {
                    return Err(FrameError::Malformed("items nest too deeply".into()));
                }
                open.remaining[open.len] = count;
                open.len += 1;
            }
            Step::Scalar | Step::Closed => {
                if open.len == 0 {
                    return Ok(true);
                }
                if step == Step::Scalar
                    && let Some(n) = &mut open.remaining[open.len - 1]
                {
                    *n -= 1;
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Scalar,
    Tag,
    Opened(Option<u64>),
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;

    const PYTHON_PREAMBLE: &[u8] = b"\x67J7yne5G\x00\x41\x07\xa1\x69UserAgent\x65agent\x00";

    #[test]
    fn the_preamble_is_found_whole_or_not_at_all() {
        assert_eq!(
            preamble(PYTHON_PREAMBLE),
            Ok(Some((PYTHON_PREAMBLE.len(), Dialect::Standard)))
        );
        for cut in 0..PYTHON_PREAMBLE.len() {
            assert_eq!(preamble(&PYTHON_PREAMBLE[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(preamble(b"GET / HTTP/1.1\r\n").is_err());
    }

    #[test]
    fn a_request_ends_after_its_methods_items() {
        // endpoints: 1, 455855874; then the next request's first byte.
        let endpoints = [0x01, 0x1A, 0x1B, 0x2B, 0xCF, 0x02, 0x01];
        let frame = split(&endpoints).unwrap().unwrap();
        assert_eq!((frame.method, frame.len), (Method::Endpoints, 6));
        // getItem with an indefinite keyword map that has not ended yet.
        let mut get = vec![
            0x01, 0x1A, 0x0F, 0xB0, 0xCC, 0x6A, 0x41, b't', 0x41, b'k', 0xBF, 0x02,
        ];
        assert!(split(&get).unwrap().is_none());
        get.extend_from_slice(&[0xF5, 0xFF]);
        let frame = split(&get).unwrap().unwrap();
        assert_eq!(frame.method, Method::GetItem);
        assert_eq!(frame.items, vec![6..8, 8..10, 10..14]);
    }

    #[test]
    fn unknown_methods_and_services_end_the_connection() {
        assert_eq!(
            split(&[0x01, 0x05]).unwrap_err(),
            FrameError::UnknownMethod(5)
        );
        assert!(matches!(
            split(&[0x02, 0x05]),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            split(&[0x01, 0x61, b'x']),
            Err(FrameError::Malformed(_))
        ));
    }

    fn get_item_with(kwargs: &[u8]) -> Vec<u8> {
        let mut get = vec![0x01, 0x1A, 0x0F, 0xB0, 0xCC, 0x6A, 0x41, b't', 0x41, b'k'];
        get.extend_from_slice(kwargs);
        get
    }

    #[test]
    fn a_request_arriving_a_byte_at_a_time_is_found_once_whole() {
        // Keyword map: {5: {":v": [_ "a", [1, [2, {}]], h'00' ]}} with indefinite parts.
        let kwargs = [
            0xBF, 0x05, 0xA1, 0x62, b':', b'v', 0x9F, 0x7F, 0x61, b'a', 0xFF, 0x82, 0x01, 0x82,
            0x02, 0xA0, 0x41, 0x00, 0xFF, 0xFF,
        ];
        let request = get_item_with(&kwargs);
        let whole = split(&request).unwrap().unwrap();
        let mut reader = Reader::default();
        for end in 0..request.len() {
            assert!(reader.next(&request[..end]).unwrap().is_none(), "at {end}");
        }
        let frame = reader.next(&request).unwrap().unwrap();
        assert_eq!((frame.len, frame.items), (whole.len, whole.items));
        assert_eq!(whole.len, request.len());
    }

    #[test]
    fn counts_are_never_trusted_and_nesting_is_bounded() {
        // An array claiming 2^64 - 1 items is just incomplete.
        let huge = get_item_with(&[0x9B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
        assert!(split(&huge).unwrap().is_none());
        // A byte string claiming more bytes than there are is incomplete too.
        let long = get_item_with(&[0x5B, 0, 0, 0, 0x40, 0, 0, 0, 0, 0x01]);
        assert!(split(&long).unwrap().is_none());
        // Ten thousand nested arrays are refused as soon as they pass the bound.
        let deep = get_item_with(&[0x81; 10_000]);
        assert!(matches!(split(&deep), Err(FrameError::Malformed(_))));
        let deep = get_item_with(&[0x9F; 10_000]);
        assert!(matches!(split(&deep), Err(FrameError::Malformed(_))));
        // A stray break is not an item.
        assert!(split(&get_item_with(&[0xFF])).is_err());
    }

    #[test]
    fn the_go_v2_client_is_known_by_its_agent() {
        let go = b"\x67J7yne5G\x00\x63123\xa1\x69UserAgent\x73DaxGoV2Client-1.0.3\x00";
        assert_eq!(preamble(go).unwrap().unwrap().1, Dialect::GoV2);
    }

    #[test]
    fn framing_a_request_costs_work_in_proportion_to_its_bytes() {
        // A megabyte of one-byte items in a keyword map, arriving 16 KB at a time: each read
        // resumes where the last ran out, so every head is read about once, not once per read.
        let items = 1 << 20;
        let mut request = vec![0x01, 0x1A, 0x0F, 0xB0, 0xCC, 0x6A, 0x41, b't', 0x41, b'k'];
        request.extend_from_slice(&[0xA1, 0x05, 0x9A]);
        request.extend_from_slice(&(items as u32).to_be_bytes());
        request.extend(std::iter::repeat_n(0x01, items));
        let mut reader = Reader::default();
        let mut reads = 0;
        let mut end = 0;
        let frame = loop {
            end = (end + 16 * 1024).min(request.len());
            reads += 1;
            let heads_before = reader.open.heads;
            if let Some(frame) = reader.next(&request[..end]).unwrap() {
                break frame;
            }
            assert!(
                reader.open.heads - heads_before <= 16 * 1024 + 2,
                "read {reads}"
            );
        };
        assert_eq!(frame.len, request.len());
        assert!(reads > 60, "the request arrived in many reads");
    }
}
