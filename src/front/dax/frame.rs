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
pub enum Method {
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
    pub fn from_id(id: i64) -> Option<Method> {
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
    pub fn is_data(self) -> bool {
        self.operation() != Operation::Other
    }

    /// The DynamoDB operation it stands for; `Other` for the protocol's own methods.
    pub fn operation(self) -> Operation {
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
pub enum FrameError {
    /// Not CBOR, or not the shape every request has.
    Malformed(String),
    /// A method id this server does not serve: its items cannot be counted.
    UnknownMethod(i64),
    /// A request that began and then stopped arriving.
    Stalled,
}

/// One whole request: its method and where each of its items lies in the buffer.
#[derive(Debug)]
pub struct Frame {
    pub method: Method,
    pub items: Vec<Range<usize>>,
    /// Bytes the request took, from the start of the buffer.
    pub len: usize,
}

/// The length of the preamble, once all of it has arrived.
pub fn preamble(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let mut d = Decoder::new(buf);
    match d.str() {
        Ok(MAGIC) => {}
        Ok(_) => return Err(FrameError::Malformed("not a DAX client".into())),
        Err(e) if e.is_end_of_input() => return Ok(None),
        Err(_) => return Err(FrameError::Malformed("not a DAX client".into())),
    }
    for _ in 1..PREAMBLE_ITEMS {
        match d.skip() {
            Ok(()) => {}
            Err(e) if e.is_end_of_input() => return Ok(None),
            Err(e) => return Err(FrameError::Malformed(e.to_string())),
        }
    }
    Ok(Some(d.position()))
}

/// The first request in `buf`, if all of it has arrived.
pub fn split(buf: &[u8]) -> Result<Option<Frame>, FrameError> {
    let mut d = Decoder::new(buf);
    let incomplete = |e: &minicbor::decode::Error| e.is_end_of_input();
    let service = match d.u64() {
        Ok(service) => service,
        Err(e) if incomplete(&e) => return Ok(None),
        Err(e) => return Err(FrameError::Malformed(e.to_string())),
    };
    if service != SERVICE {
        return Err(FrameError::Malformed(format!("unknown service {service}")));
    }
    let id = match d.datatype() {
        Ok(t) if super::number::is_integer(t) => match d.i64() {
            Ok(id) => id,
            Err(e) if incomplete(&e) => return Ok(None),
            Err(e) => return Err(FrameError::Malformed(e.to_string())),
        },
        Err(e) if incomplete(&e) => return Ok(None),
        _ => return Err(FrameError::Malformed("a method id is an integer".into())),
    };
    let method = Method::from_id(id).ok_or(FrameError::UnknownMethod(id))?;
    let mut items = Vec::with_capacity(method.arity());
    for _ in 0..method.arity() {
        let start = d.position();
        match d.skip() {
            Ok(()) => items.push(start..d.position()),
            Err(e) if incomplete(&e) => return Ok(None),
            Err(e) => return Err(FrameError::Malformed(e.to_string())),
        }
    }
    Ok(Some(Frame {
        method,
        items,
        len: d.position(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PYTHON_PREAMBLE: &[u8] = b"\x67J7yne5G\x00\x41\x07\xa1\x69UserAgent\x65agent\x00";

    #[test]
    fn the_preamble_is_found_whole_or_not_at_all() {
        assert_eq!(preamble(PYTHON_PREAMBLE), Ok(Some(PYTHON_PREAMBLE.len())));
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
}
