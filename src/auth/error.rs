//! Why a caller was refused, worded and typed as DynamoDB words it, so SDKs react as they
//! would to DynamoDB (none of these is retried).

/// Why a request was refused, as DynamoDB would say it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header at all.
    #[error("Request is missing Authentication Token")]
    Missing,
    /// An `Authorization` header that is not a whole SigV4 signature.
    #[error("{0}")]
    Incomplete(String),
    /// An access key the credentials file does not list.
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    /// The signature does not match the request.
    #[error(
        "The request signature we calculated does not match the signature you provided. Check \
         your AWS Secret Access Key and signing method. Consult the service documentation for \
         details."
    )]
    Signature,
    /// A credential scope for another date, region or service, or a date outside the window.
    #[error("{0}")]
    Scope(String),
    /// The principal may not use this operation or one of the tables.
    #[error("{0}")]
    Denied(String),
}

impl AuthError {
    /// DynamoDB's `__type` for this error (all are 400s).
    pub fn error_type(&self) -> &'static str {
        match self {
            AuthError::Missing => "com.amazon.coral.service#MissingAuthenticationTokenException",
            AuthError::Incomplete(_) => "com.amazon.coral.service#IncompleteSignatureException",
            AuthError::UnknownKey => "com.amazon.coral.service#UnrecognizedClientException",
            AuthError::Signature | AuthError::Scope(_) => {
                "com.amazon.coral.service#InvalidSignatureException"
            }
            AuthError::Denied(_) => "com.amazon.coral.service#AccessDeniedException",
        }
    }

    /// The metric label of this refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Incomplete(_) => "incomplete",
            AuthError::UnknownKey => "unknown_key",
            AuthError::Signature => "signature",
            AuthError::Scope(_) => "scope",
            AuthError::Denied(_) => "denied",
        }
    }

    /// Every label [`AuthError::reason`] can return, for pre-registering metrics.
    pub const REASONS: &'static [&'static str] = &[
        "missing",
        "incomplete",
        "unknown_key",
        "signature",
        "scope",
        "denied",
    ];
}
