//! Errors in DAX's encoding: a code path the clients map to DynamoDB's exception types, a
//! message, and `[requestId, errorCode, httpStatus, cancellationReasons?]`.

use std::borrow::Cow;
use std::convert::Infallible;

use minicbor::Encoder;

use crate::wire::answer::ErrorEnvelope;

/// An error a DAX client receives.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DaxError {
    /// The code path (`[4, 37, 38, 39, 43]`: ConditionalCheckFailedException).
    pub codes: &'static [u32],
    /// DynamoDB's exception name: what the clients fall back to for a path they do not know.
    pub code: Cow<'static, str>,
    pub message: String,
    pub status: u16,
    /// TransactionCanceledException: the flat `[code, message, item]` triples, encoded.
    pub reasons: Option<Vec<u8>>,
    /// The attribute list id this node does not know, when that is the error (another node
    /// of a fleet may have defined it).
    pub unknown_list: Option<i64>,
}

const VALIDATION: &[u32] = &[4, 37, 38, 39, 46];
const INTERNAL: &[u32] = &[3, 37, 54];
/// Not in the clients' maps, so they report `code` as it is.
const OTHER_CLIENT: &[u32] = &[4, 37, 38, 39, 99];
const OTHER_SERVER: &[u32] = &[1, 37, 38, 39, 99];
/// An authentication failure: the clients re-authenticate the connection.
const UNAUTHENTICATED: &[u32] = &[4, 23, 31, 33];

impl DaxError {
    pub(crate) fn new(
        codes: &'static [u32],
        code: &'static str,
        message: impl Into<String>,
    ) -> DaxError {
        let status = if codes[0] == 4 { 400 } else { 500 };
        DaxError {
            codes,
            code: Cow::Borrowed(code),
            message: message.into(),
            status,
            reasons: None,
            unknown_list: None,
        }
    }

    pub(crate) fn validation(message: impl Into<String>) -> DaxError {
        DaxError::new(VALIDATION, "ValidationException", message)
    }

    /// A request whose items do not have the shape the method takes.
    pub(crate) fn malformed(message: impl Into<String>) -> DaxError {
        DaxError::validation(format!("Malformed request: {}", message.into()))
    }

    pub(crate) fn internal(message: impl Into<String>) -> DaxError {
        DaxError::new(INTERNAL, "InternalServerErrorException", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> DaxError {
        DaxError::new(&[4, 37, 38, 39, 41], "ResourceNotFoundException", message)
    }

    pub(crate) fn unauthenticated(code: &'static str, message: impl Into<String>) -> DaxError {
        DaxError::new(UNAUTHENTICATED, code, message)
    }

    pub(crate) fn access_denied(message: impl Into<String>) -> DaxError {
        DaxError::new(&[4, 37, 38, 42], "AccessDeniedException", message)
    }

    /// DynamoDB's error answer (`{"__type": "...#Name", "message": ...}`) as DAX words it.
    pub(crate) fn from_dynamo(status: u16, body: &[u8]) -> DaxError {
        let (name, message) = match ErrorEnvelope::of(body) {
            Some(error) => (error.name, error.message),
            None if status >= 500 => ("InternalServerError".to_string(), String::new()),
            None => ("ValidationException".to_string(), String::new()),
        };
        let codes: &'static [u32] = match name.as_str() {
            "ProvisionedThroughputExceededException" => &[4, 37, 38, 39, 40],
            "ResourceNotFoundException" => &[4, 37, 38, 39, 41],
            "ConditionalCheckFailedException" => &[4, 37, 38, 39, 43],
            "ResourceInUseException" => &[4, 37, 38, 39, 45],
            "ValidationException" | "SerializationException" => VALIDATION,
            "InternalServerError" => &[4, 37, 38, 39, 47],
            "ItemCollectionSizeLimitExceededException" => &[4, 37, 38, 39, 48],
            "LimitExceededException" => &[4, 37, 38, 39, 49],
            "ThrottlingException" => &[4, 37, 38, 39, 50],
            "TransactionConflictException" => &[4, 37, 38, 39, 57],
            "TransactionCanceledException" => &[4, 37, 38, 39, 58],
            "TransactionInProgressException" => &[4, 37, 38, 39, 59],
            "IdempotentParameterMismatchException" => &[4, 37, 38, 39, 60],
            "RequestLimitExceeded" => &[4, 37, 38, 39, 61],
            "AccessDeniedException" => &[4, 37, 38, 42],
            "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "MissingAuthenticationTokenException"
            | "IncompleteSignatureException" => UNAUTHENTICATED,
            _ if status >= 500 => OTHER_SERVER,
            _ => OTHER_CLIENT,
        };
        let code = match name.as_str() {
            // The name DAX clients give it.
            "InternalServerError" => "InternalServerErrorException".to_string(),
            "ValidationException" | "SerializationException" => "ValidationException".into(),
            _ => name,
        };
        DaxError {
            codes,
            code: Cow::Owned(code),
            message,
            status,
            reasons: None,
            unknown_list: None,
        }
    }

    /// Writes the error as the whole answer to a request.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let mut e = Encoder::new(&mut *out);
        let written: Result<(), minicbor::encode::Error<Infallible>> = (|| {
            e.array(self.codes.len() as u64)?;
            for code in self.codes {
                e.u32(*code)?;
            }
            e.str(&self.message)?;
            e.array(if self.reasons.is_some() { 4 } else { 3 })?;
            e.null()?.str(&self.code)?.u16(self.status)?;
            Ok(())
        })();
        written.expect("writing to memory");
        if let Some(reasons) = &self.reasons {
            out.extend_from_slice(reasons);
        }
    }
}

impl std::fmt::Display for DaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl From<minicbor::decode::Error> for DaxError {
    fn from(err: minicbor::decode::Error) -> DaxError {
        DaxError::malformed(err.to_string())
    }
}

impl From<minicbor::encode::Error<Infallible>> for DaxError {
    fn from(err: minicbor::encode::Error<Infallible>) -> DaxError {
        DaxError::internal(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_failure_is_written_as_the_clients_read_it() {
        let err = DaxError::from_dynamo(
            400,
            br#"{"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
                 "message": "The conditional request failed"}"#,
        );
        let mut out = Vec::new();
        err.encode(&mut out);
        let mut expected = vec![0x85, 4, 0x18, 37, 0x18, 38, 0x18, 39, 0x18, 43];
        expected.extend_from_slice(&[0x78, 30]);
        expected.extend_from_slice(b"The conditional request failed");
        expected.extend_from_slice(&[0x83, 0xF6, 0x78, 31]);
        expected.extend_from_slice(b"ConditionalCheckFailedException");
        expected.extend_from_slice(&[0x19, 0x01, 0x90]);
        assert_eq!(out, expected);
    }

    #[test]
    fn unknown_errors_keep_their_name_and_class() {
        let err = DaxError::from_dynamo(503, br#"{"__type": "x#ServiceUnavailable"}"#);
        assert_eq!(err.codes[0], 1);
        assert_eq!(err.code, "ServiceUnavailable");
        let err = DaxError::from_dynamo(400, br#"{"__type": "x#SomethingNew"}"#);
        assert_eq!((err.codes[0], err.status), (4, 400));
    }
}
