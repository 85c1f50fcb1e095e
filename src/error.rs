//! What the proxy itself can get wrong, and the one place that renders it as DynamoDB error JSON.
//!
//! Errors from DynamoDB are never represented here: they pass through untouched. These are the
//! proxy's own refusals (bad input it can recognise) and failures (upstream unreachable), shaped
//! the way DynamoDB shapes errors so SDK retry logic treats them correctly: 4xx for the caller's
//! fault, 5xx (retried by every SDK) for ours or the upstream's.

use bytes::Bytes;
use http::StatusCode;

use crate::wire::answer::{Answer, CacheStatus};

/// An error raised by the proxy, not by DynamoDB. `Clone` so that every waiter of a shared
/// upstream read gets the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    /// No `X-Amz-Target`, or one naming neither DynamoDB API.
    #[error("unknown operation")]
    UnknownOperation,
    /// A method or path no DynamoDB client sends.
    #[error("{0} {1} is not a DynamoDB request")]
    NotDynamoDb(http::Method, String),
    /// The body of an operation the proxy reads is not a JSON object.
    #[error("request body is not a JSON object")]
    Serialization,
    /// The request is well-formed JSON but cannot be valid (the proxy can tell before DynamoDB).
    #[error("{0}")]
    Validation(String),
    /// The body is larger than the proxy accepts.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// Every connection slot is taken.
    #[error("the proxy is at its connection limit of {0}")]
    TooManyConnections(usize),
    /// The upstream could not be reached (connect failure, reset, TLS failure).
    #[error("upstream unavailable: {0}")]
    UpstreamUnavailable(String),
    /// The upstream did not answer within the configured timeout.
    #[error("upstream did not answer within {0} ms")]
    UpstreamTimeout(u64),
    /// Every upstream slot stayed busy for the whole queue timeout (upstream slow or down).
    #[error("upstream saturated: {limit} requests in flight, no slot within {waited_ms} ms")]
    UpstreamSaturated { limit: usize, waited_ms: u64 },
    /// The upstream answered something that is not a DynamoDB answer (checksum mismatch, a
    /// success whose body cannot be read).
    #[error("upstream answer unreadable: {0}")]
    UpstreamGarbled(String),
    /// The caller is not who it says, or may not do this (inbound authentication).
    #[error("{0}")]
    Auth(crate::auth::AuthError),
    /// No usable AWS credentials to sign the upstream request with.
    #[error("no AWS credentials: {0}")]
    Credentials(String),
}

impl ProxyError {
    /// HTTP status and DynamoDB `__type` for this error.
    fn status_and_type(&self) -> (StatusCode, &'static str) {
        match self {
            ProxyError::UnknownOperation | ProxyError::NotDynamoDb(..) => (
                StatusCode::BAD_REQUEST,
                "com.amazon.coral.service#UnknownOperationException",
            ),
            ProxyError::Serialization => (
                StatusCode::BAD_REQUEST,
                "com.amazon.coral.service#SerializationException",
            ),
            ProxyError::Validation(_) => (
                StatusCode::BAD_REQUEST,
                "com.amazon.coral.validate#ValidationException",
            ),
            ProxyError::BodyTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "com.amazon.coral.validate#ValidationException",
            ),
            ProxyError::TooManyConnections(_)
            | ProxyError::UpstreamUnavailable(_)
            | ProxyError::UpstreamSaturated { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "com.amazonaws.dynamodb.v20120810#ServiceUnavailableException",
            ),
            ProxyError::Auth(err) => (StatusCode::BAD_REQUEST, err.error_type()),
            ProxyError::UpstreamTimeout(_)
            | ProxyError::UpstreamGarbled(_)
            | ProxyError::Credentials(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "com.amazonaws.dynamodb.v20120810#InternalServerError",
            ),
        }
    }

    /// The error as DynamoDB's error envelope.
    pub fn to_answer(&self) -> Answer {
        let (status, kind) = self.status_and_type();
        let body = serde_json::json!({ "__type": kind, "message": self.to_string() });
        let body = Bytes::from(body.to_string());
        Answer::generated(status, body, CacheStatus::Error)
    }

    /// Whether the error counts against the upstream (for metrics and logs) rather than the
    /// caller.
    pub fn is_upstream(&self) -> bool {
        matches!(
            self,
            ProxyError::UpstreamUnavailable(_)
                | ProxyError::UpstreamTimeout(_)
                | ProxyError::UpstreamSaturated { .. }
                | ProxyError::UpstreamGarbled(_)
                | ProxyError::Credentials(_)
        )
    }

    /// The metrics label of an upstream failure.
    pub fn upstream_kind(&self) -> &'static str {
        match self {
            ProxyError::UpstreamTimeout(_) => "timeout",
            ProxyError::UpstreamSaturated { .. } => "saturated",
            ProxyError::UpstreamGarbled(_) => "garbled",
            ProxyError::Credentials(_) => "credentials",
            _ => "unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(err: ProxyError) -> (u16, serde_json::Value) {
        let answer = err.to_answer();
        assert_eq!(answer.cache, CacheStatus::Error);
        (
            answer.status.as_u16(),
            serde_json::from_slice(&answer.body).unwrap(),
        )
    }

    #[test]
    fn caller_faults_are_400_with_dynamodb_types() {
        let (status, body) = rendered(ProxyError::Serialization);
        assert_eq!(status, 400);
        assert_eq!(
            body["__type"],
            "com.amazon.coral.service#SerializationException"
        );
        let (status, body) = rendered(ProxyError::Validation("bad key".into()));
        assert_eq!(status, 400);
        assert_eq!(
            body["__type"],
            "com.amazon.coral.validate#ValidationException"
        );
        assert_eq!(body["message"], "bad key");
    }

    #[test]
    fn upstream_failures_are_retryable_5xx() {
        let (status, body) = rendered(ProxyError::UpstreamUnavailable("refused".into()));
        assert_eq!(status, 503);
        assert_eq!(
            body["__type"],
            "com.amazonaws.dynamodb.v20120810#ServiceUnavailableException"
        );
        let (status, body) = rendered(ProxyError::UpstreamTimeout(5000));
        assert_eq!(status, 500);
        assert_eq!(
            body["__type"],
            "com.amazonaws.dynamodb.v20120810#InternalServerError"
        );
    }
}
