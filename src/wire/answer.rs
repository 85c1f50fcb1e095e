//! What the request path answers, in no front-end's form: a status, a DynamoDB JSON body, how
//! the cache took part, and, for an answer DynamoDB gave, the headers it came with. The HTTP
//! front-end renders it as a response (request id, CRC, headers); the DAX front-end encodes
//! its body as CBOR.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

/// The content type of every DynamoDB JSON 1.0 request and response.
/// DynamoDB's content type, as text (what SigV4 signs).
pub const AMZ_JSON_TYPE: &str = "application/x-amz-json-1.0";
pub const AMZ_JSON: HeaderValue = HeaderValue::from_static(AMZ_JSON_TYPE);

/// How a request was answered. Also the `result` label of the request metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Answered from memory; the upstream was not asked.
    Hit,
    /// Cacheable, not in memory: asked upstream, and the answer may now be cached.
    Miss,
    /// Not cacheable (writes, strongly consistent reads, everything else): forwarded.
    Bypass,
    /// The proxy could not produce an upstream answer (its own error response).
    Error,
    /// The upstream failed and the answer came from an entry past its TTL, within the stale
    /// grace (`serve_stale_on_error`).
    Stale,
}

impl CacheStatus {
    /// Every status, in a fixed order (for pre-registering metrics).
    pub const ALL: [CacheStatus; 5] = [
        CacheStatus::Hit,
        CacheStatus::Miss,
        CacheStatus::Bypass,
        CacheStatus::Error,
        CacheStatus::Stale,
    ];

    /// Label and header value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
            CacheStatus::Error => "error",
            CacheStatus::Stale => "stale",
        }
    }
}

/// Where an answer's body came from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// Written by the proxy: a cache hit, or its own error.
    Generated,
    /// DynamoDB's answer, with the headers it came with (its request id and CRC among them).
    Upstream(HeaderMap),
}

/// One answer of the request path.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    /// DynamoDB JSON: an output, or an error envelope.
    pub body: Bytes,
    pub cache: CacheStatus,
    pub origin: Origin,
    /// The CRC32 of `body` when it is already known, or, for an upstream answer, when the
    /// body is no longer the one DynamoDB's own CRC header describes.
    pub crc: Option<u32>,
    /// An upstream answer handed to a caller that shared another caller's read: it needs a
    /// request id of its own.
    pub shared: bool,
}

impl Answer {
    /// An answer the proxy wrote itself.
    pub fn generated(status: StatusCode, body: Bytes, cache: CacheStatus) -> Answer {
        Answer {
            status,
            body,
            cache,
            origin: Origin::Generated,
            crc: None,
            shared: false,
        }
    }

    /// As [`Answer::generated`], with the CRC32 of `body` already known (cached answers keep
    /// theirs).
    pub fn generated_with_crc(
        status: StatusCode,
        body: Bytes,
        crc: u32,
        cache: CacheStatus,
    ) -> Answer {
        Answer {
            crc: Some(crc),
            ..Answer::generated(status, body, cache)
        }
    }

    /// DynamoDB's answer, as it came.
    pub fn upstream(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        cache: CacheStatus,
    ) -> Answer {
        Answer {
            status,
            body,
            cache,
            origin: Origin::Upstream(headers),
            crc: None,
            shared: false,
        }
    }

    /// DynamoDB's answer with a body the proxy had to change (trimmed to what the caller
    /// asked for, or merged with hits): its headers, the new body and the new body's CRC.
    pub fn upstream_with_body(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        cache: CacheStatus,
    ) -> Answer {
        let crc = crc32fast::hash(&body);
        Answer {
            crc: Some(crc),
            ..Answer::upstream(status, headers, body, cache)
        }
    }
}

/// The short name of a DynamoDB error type: `ThrottlingException` for
/// `com.amazon.coral.availability#ThrottlingException`.
pub fn error_name(kind: &str) -> &str {
    kind.rsplit('#').next().unwrap_or(kind)
}

/// What DynamoDB's error envelope says: `{"__type": "...#Name", "message": "..."}` (some
/// errors spell it `Message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorEnvelope {
    /// The short name ([`error_name`]).
    pub name: String,
    pub message: String,
}

impl ErrorEnvelope {
    /// The envelope in an error answer's body; `None` if the body is not one.
    pub fn of(body: &[u8]) -> Option<ErrorEnvelope> {
        #[derive(serde::Deserialize)]
        struct Envelope<'a> {
            #[serde(rename = "__type", borrow)]
            kind: std::borrow::Cow<'a, str>,
            #[serde(borrow)]
            message: Option<std::borrow::Cow<'a, str>>,
            #[serde(rename = "Message", borrow)]
            capital: Option<std::borrow::Cow<'a, str>>,
        }
        let read: Envelope = serde_json::from_slice(body).ok()?;
        Some(ErrorEnvelope {
            name: error_name(&read.kind).to_string(),
            message: read
                .message
                .or(read.capital)
                .unwrap_or_default()
                .into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelopes_are_read_by_their_short_name() {
        let body = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException","message":"gone"}"#;
        assert_eq!(
            ErrorEnvelope::of(body),
            Some(ErrorEnvelope {
                name: "ResourceNotFoundException".into(),
                message: "gone".into()
            })
        );
        let capital = br#"{"__type":"ThrottlingException","Message":"slow down"}"#;
        assert_eq!(ErrorEnvelope::of(capital).unwrap().message, "slow down");
        assert_eq!(ErrorEnvelope::of(br#"{"Items":[]}"#), None);
        assert_eq!(ErrorEnvelope::of(b"not json"), None);
    }
}
