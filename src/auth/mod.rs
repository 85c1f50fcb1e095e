//! Inbound authentication and authorisation: who is calling, and may they do this.
//!
//! With `auth.mode = "sigv4"` every request must carry a SigV4 signature made with one of the
//! access keys of the credentials file ([`Principals`]). [`Verifier::verify`] checks it the way
//! DynamoDB does: the canonical request rebuilt from what was received (method, path, query,
//! the signed headers, the body's hash), the credential scope (date, the proxy's region,
//! `dynamodb`, `aws4_request`), `X-Amz-Date` within 15 minutes, and a constant-time comparison.
//! The signing math (key derivation, HMAC) is `aws-sigv4`'s.
//!
//! Its parts: [`principals`] (the credentials file), [`verifier`] (SigV4). The tables a
//! request names come from the typed request ([`crate::wire::tables`]).
//!
//! [`authorize`] then checks the operation's class (read, write, admin) and every table the
//! request names against the principal's globs. Both run before the cache is consulted, so a
//! principal never receives a cached entry of a table it may not read, and before anything
//! goes upstream.
//!
//! Failures are [`AuthError`]s, worded and typed as DynamoDB words them, so SDKs react to them
//! as they would to DynamoDB (none of them is retried).

mod error;
mod principals;
mod verifier;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::wire::operation::Operation;
use crate::wire::tables::Named;

pub use error::AuthError;
use principals::Secret;
pub use principals::{Access, Principal, Principals};
pub use verifier::{MAX_CLOCK_SKEW, Verifier};

/// Everything `[auth]` configures: the signature verifier (with `mode = "sigv4"`) and the
/// admin listener's bearer token. Reloaded as a whole on SIGHUP.
pub struct Gate {
    /// `None` with `mode = "none"`: every caller is let through.
    pub verifier: Option<Verifier>,
    credentials_file: Option<PathBuf>,
    token_file: Option<PathBuf>,
    admin_token: arc_swap::ArcSwapOption<Secret>,
    /// Whether the admin listener is on loopback, where no token is needed unless configured.
    admin_on_loopback: bool,
}

/// Why the admin listener refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRefusal {
    /// No token, or the wrong one: 401.
    Unauthenticated,
    /// No token configured and the listener is reachable from other hosts: 403.
    NoTokenConfigured,
}

impl Gate {
    /// Builds the gate, reading the credentials and token files.
    pub fn new(
        config: &crate::config::AuthConfig,
        region: &str,
        admin_on_loopback: bool,
    ) -> Result<Gate, String> {
        let verifier = match config.mode {
            crate::config::AuthMode::None => None,
            crate::config::AuthMode::Sigv4 => {
                let file = config
                    .credentials_file
                    .as_deref()
                    .ok_or("auth.mode = \"sigv4\" needs auth.credentials_file")?;
                Some(Verifier::new(region, Principals::load(file)?))
            }
        };
        let gate = Gate {
            verifier,
            credentials_file: config.credentials_file.clone(),
            token_file: config.admin_token_file.clone(),
            admin_token: arc_swap::ArcSwapOption::empty(),
            admin_on_loopback,
        };
        gate.admin_token.store(gate.read_token()?.map(Arc::new));
        Ok(gate)
    }

    fn read_token(&self) -> Result<Option<Secret>, String> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let token = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read auth.admin_token_file {}: {e}", path.display()))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(format!("auth.admin_token_file {} is empty", path.display()));
        }
        Ok(Some(Secret(token.to_string())))
    }

    /// Re-reads the credentials and token files. All or nothing: on any error the gate keeps
    /// what it had.
    pub fn reload(&self) -> Result<(), String> {
        let principals = match (&self.verifier, &self.credentials_file) {
            (Some(_), Some(file)) => Some(Principals::load(file)?),
            _ => None,
        };
        let token = self.read_token()?;
        if let (Some(verifier), Some(principals)) = (&self.verifier, principals) {
            verifier.replace(principals);
        }
        self.admin_token.store(token.map(Arc::new));
        Ok(())
    }

    /// The admin token, for reading another replica's hot keys.
    pub fn admin_token(&self) -> Option<String> {
        self.admin_token.load().as_ref().map(|t| t.0.clone())
    }

    /// Whether an admin request may use an endpoint that changes or reveals the cache:
    /// always with the right `Authorization: Bearer` token; without a token configured, only
    /// on a loopback admin listener or from a loopback peer (the proxy's own host, its pod or
    /// its container).
    pub fn admit_admin(
        &self,
        headers: &HeaderMap,
        peer_on_loopback: bool,
    ) -> Result<(), AdminRefusal> {
        let token = self.admin_token.load();
        let Some(token) = token.as_ref() else {
            return if self.admin_on_loopback || peer_on_loopback {
                Ok(())
            } else {
                Err(AdminRefusal::NoTokenConfigured)
            };
        };
        let offered = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if bool::from(offered.as_bytes().ct_eq(token.0.as_bytes())) {
            Ok(())
        } else {
            Err(AdminRefusal::Unauthenticated)
        }
    }
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("verifier", &self.verifier)
            .field("admin_token", &self.admin_token.load().is_some())
            .finish()
    }
}

/// Whether `principal` may perform `op` on `tables` (`None`: the tables cannot be read).
pub fn authorize(
    principal: &Principal,
    op: Operation,
    tables: Option<&Named>,
) -> Result<(), AuthError> {
    let denied = |resource: &str, why: String| {
        AuthError::Denied(format!(
            "User: {} is not authorized to perform: dynamodb:{} on resource: {resource} because {why}",
            principal.name,
            op.name()
        ))
    };
    let access = Access::of(op);
    let named = tables.ok_or_else(|| {
        denied(
            "*",
            "the request's tables cannot be read (not one JSON object with unique keys)".into(),
        )
    })?;
    let tables = match named {
        Named::Tables(tables) => tables.as_slice(),
        Named::Unknown if principal.any_table => &[],
        Named::Unknown => {
            return Err(denied(
                "*",
                "the proxy cannot tell which tables it uses, so only principals allowed every \
                 table (\"*\") may"
                    .into(),
            ));
        }
    };
    for table in tables {
        if !principal.may_use(table) {
            return Err(denied(
                &format!("table/{table}"),
                "the table matches none of the principal's tables".into(),
            ));
        }
    }
    if !principal.may(access) {
        let resource = tables
            .first()
            .map_or("*".to_string(), |t| format!("table/{t}"));
        return Err(denied(
            &resource,
            format!(
                "the principal's operations do not include {}",
                access.name()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::wire::amz_date::{format_amz_date, parse_amz_date};

    const FILE: &str = r#"
        [[principal]]
        name = "orders-service"
        access_key_id = "AKIDORDERS"
        secret_access_key = "orders-secret"
        tables = ["orders", "orders-*"]
        operations = ["read", "write"]

        [[principal]]
        name = "ops"
        access_key_id = "AKIDOPS"
        secret_access_key = "ops-secret"
        tables = ["*"]
        operations = ["read", "write", "admin"]
    "#;

    fn principals() -> Principals {
        Principals::parse(FILE, Path::new(".")).unwrap()
    }

    fn principal(key: &str) -> Arc<Principal> {
        principals().by_key[key].clone()
    }

    #[test]
    fn without_a_token_only_the_proxys_own_host_may_change_the_cache() {
        let open = crate::config::AuthConfig::default();
        let exposed = Gate::new(&open, "us-east-1", false).unwrap();
        let none = HeaderMap::new();
        assert_eq!(
            exposed.admit_admin(&none, false),
            Err(AdminRefusal::NoTokenConfigured)
        );
        assert_eq!(exposed.admit_admin(&none, true), Ok(()));
        let local = Gate::new(&open, "us-east-1", true).unwrap();
        assert_eq!(local.admit_admin(&none, false), Ok(()));
    }

    #[test]
    fn tables_of_every_shape() {
        let named = |op, body: &str| tables_named(op, body.as_bytes()).unwrap();
        // A key DynamoDB will refuse still names its table.
        let tables = |names: &[&str]| Named::Tables(names.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            named(Operation::GetItem, r#"{"TableName":"a","Key":{}}"#),
            tables(&["a"])
        );
        assert_eq!(
            named(
                Operation::BatchGetItem,
                r#"{"RequestItems":{"b":{"Keys":[]},"a":{"Keys":[]}}}"#
            ),
            tables(&["a", "b"])
        );
        assert_eq!(
            named(
                Operation::TransactWriteItems,
                r#"{"TransactItems":[{"Put":{"TableName":"x"}},{"ConditionCheck":{"TableName":"y"}}]}"#
            ),
            tables(&["x", "y"])
        );
        assert_eq!(
            named(
                Operation::BatchExecuteStatement,
                r#"{"Statements":[{"Statement":"SELECT * FROM p"},{"Statement":"DELETE FROM \"q\" WHERE k=1"}]}"#
            ),
            tables(&["p", "q"])
        );
        assert_eq!(
            named(
                Operation::DescribeStream,
                r#"{"StreamArn":"arn:aws:dynamodb:us-east-1:000000000000:table/s/stream/2026-01-01T00:00:00.000"}"#
            ),
            tables(&["s"])
        );
        assert_eq!(named(Operation::ListTables, "{}"), tables(&[]));
        assert_eq!(named(Operation::Other, "{}"), Named::Unknown);
        assert_eq!(
            named(Operation::ExecuteStatement, r#"{"Statement":"EXISTS(x)"}"#),
            Named::Unknown
        );
        assert_eq!(
            named(Operation::TagResource, r#"{"ResourceArn":"not-an-arn"}"#),
            Named::Unknown
        );
        assert_eq!(
            named(Operation::GetItem, r#"{"TableName":7}"#),
            Named::Unknown
        );
    }

    /// The tables a request names, as the request path reads them.
    fn tables_named(op: Operation, body: &[u8]) -> Option<Named> {
        let request = crate::wire::request::DynamoRequest::parse(
            op,
            http::HeaderValue::from_static("DynamoDB_20120810.X"),
            bytes::Bytes::copy_from_slice(body),
            &crate::wire::tables::Naming::new("us-east-1"),
        );
        request.tables().map(std::borrow::Cow::into_owned)
    }

    fn authorize(principal: &Principal, op: Operation, body: &[u8]) -> Result<(), AuthError> {
        super::authorize(principal, op, tables_named(op, body).as_ref())
    }

    #[test]
    fn repeated_keys_are_never_authorised() {
        for body in [
            r#"{"TableName":"orders","TableName":"secrets"}"#,
            r#"{"TransactItems":[{"Get":{"TableName":"orders","TableName":"secrets"}}]}"#,
        ] {
            assert!(tables_named(Operation::TransactGetItems, body.as_bytes()).is_none());
            let err = authorize(&principal("AKIDOPS"), Operation::GetItem, body.as_bytes());
            assert!(matches!(err, Err(AuthError::Denied(_))), "{body}");
        }
        assert!(tables_named(Operation::GetItem, b"[]").is_none());
        assert!(tables_named(Operation::GetItem, b"{").is_none());
    }

    #[test]
    fn globs_and_classes() {
        let orders = principal("AKIDORDERS");
        let get = br#"{"TableName":"orders-2026","Key":{}}"#;
        authorize(&orders, Operation::GetItem, get).unwrap();
        authorize(&orders, Operation::PutItem, br#"{"TableName":"orders"}"#).unwrap();
        let err =
            authorize(&orders, Operation::GetItem, br#"{"TableName":"payments"}"#).unwrap_err();
        assert!(err.to_string().contains("table/payments"), "{err}");
        let err = authorize(
            &orders,
            Operation::DeleteTable,
            br#"{"TableName":"orders"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("admin"), "{err}");
        // One table outside the globs spoils a batch.
        let batch = br#"{"RequestItems":{"orders":{"Keys":[]},"payments":{"Keys":[]}}}"#;
        assert!(authorize(&orders, Operation::BatchGetItem, batch).is_err());
        // Unknown tables need "*".
        assert!(authorize(&orders, Operation::Other, b"{}").is_err());
        authorize(&principal("AKIDOPS"), Operation::Other, b"{}").unwrap();
    }

    #[test]
    fn credentials_file_mistakes_are_reported() {
        let dir = Path::new(".");
        assert!(
            Principals::parse("", dir)
                .unwrap_err()
                .contains("no [[principal]]")
        );
        let twice = format!(
            "{FILE}{}",
            FILE.split("[[principal]]")
                .nth(1)
                .map(|p| format!("[[principal]]{p}"))
                .unwrap()
        );
        assert!(
            Principals::parse(&twice, dir)
                .unwrap_err()
                .contains("twice")
        );
        let both = "[[principal]]\nname='x'\naccess_key_id='k'\nsecret_access_key='s'\n\
                    secret_access_key_file='f'\ntables=['*']\noperations=['read']\n";
        assert!(
            Principals::parse(both, dir)
                .unwrap_err()
                .contains("exactly one")
        );
        let typo = "[[principal]]\nname='x'\naccess_key_id='k'\nsecret_acess_key='s'\n\
                    tables=['*']\noperations=['read']\n";
        assert!(
            Principals::parse(typo, dir)
                .unwrap_err()
                .contains("secret_acess_key")
        );
        let bad_op = "[[principal]]\nname='x'\naccess_key_id='k'\nsecret_access_key='s'\n\
                      tables=['*']\noperations=['delete']\n";
        assert!(Principals::parse(bad_op, dir).is_err());
    }

    #[test]
    fn secrets_are_masked_in_debug_output() {
        let shown = format!("{:?}", principals());
        assert!(!shown.contains("orders-secret"), "{shown}");
        assert!(shown.contains("MASKED"));
    }

    #[test]
    fn dates_round_trip() {
        let t = parse_amz_date("20261121T093000Z").unwrap();
        assert_eq!(format_amz_date(t).unwrap(), "20261121T093000Z");
        assert!(parse_amz_date("2026-11-21T09:30:00Z").is_none());
        assert!(parse_amz_date("20261321T093000Z").is_none());
    }

    /// A request signed by `aws-sigv4` (the SDKs' signer) verifies; any change to what was
    /// signed does not.
    #[test]
    fn verifies_what_the_sdk_signer_signs() {
        use aws_credential_types::Credentials;
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        use aws_sigv4::sign::v4;

        let now = SystemTime::now();
        let signed = |key: &str, secret: &str, region: &str, at: SystemTime, body: &str| {
            let identity = Credentials::new(key, secret, None, None, "test").into();
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region(region)
                .name("dynamodb")
                .time(at)
                .settings(SigningSettings::default())
                .build()
                .unwrap()
                .into();
            let headers = [
                ("host", "127.0.0.1:8000"),
                ("content-type", "application/x-amz-json-1.0"),
                ("x-amz-target", "DynamoDB_20120810.GetItem"),
            ];
            let signable = SignableRequest::new(
                "POST",
                "http://127.0.0.1:8000/",
                headers.into_iter(),
                SignableBody::Bytes(body.as_bytes()),
            )
            .unwrap();
            let (instructions, _) = sign(signable, &params).unwrap().into_parts();
            let mut request = http::Request::builder()
                .method("POST")
                .uri("/")
                .body(())
                .unwrap();
            for (name, value) in headers {
                request.headers_mut().insert(name, value.parse().unwrap());
            }
            instructions.apply_to_request_http1x(&mut request);
            request
        };
        let verifier = Verifier::new("us-east-1", principals());
        let verify = |request: &http::Request<()>, body: &str| {
            verifier
                .verify(
                    request.method(),
                    request.uri(),
                    request.headers(),
                    body.as_bytes(),
                    now,
                )
                .map(|p| p.name.clone())
        };
        let body = r#"{"TableName":"orders","Key":{"pk":{"S":"a"}}}"#;

        let good = signed("AKIDORDERS", "orders-secret", "us-east-1", now, body);
        assert_eq!(verify(&good, body).unwrap(), "orders-service");
        // Twice: the second uses the cached signing key.
        assert_eq!(verify(&good, body).unwrap(), "orders-service");

        let tampered = body.replace("\"a\"", "\"b\"");
        assert_eq!(verify(&good, &tampered), Err(AuthError::Signature));
        let mut retargeted = good.clone();
        retargeted.headers_mut().insert(
            "x-amz-target",
            "DynamoDB_20120810.DeleteItem".parse().unwrap(),
        );
        assert_eq!(verify(&retargeted, body), Err(AuthError::Signature));

        let wrong_secret = signed("AKIDORDERS", "guess", "us-east-1", now, body);
        assert_eq!(verify(&wrong_secret, body), Err(AuthError::Signature));
        let unknown = signed("AKIDNOBODY", "orders-secret", "us-east-1", now, body);
        assert_eq!(verify(&unknown, body), Err(AuthError::UnknownKey));

        let old = signed(
            "AKIDORDERS",
            "orders-secret",
            "us-east-1",
            now - Duration::from_secs(20 * 60),
            body,
        );
        let err = verify(&old, body).unwrap_err();
        assert!(err.to_string().starts_with("Signature expired"), "{err}");
        assert_eq!(
            err.error_type(),
            "com.amazon.coral.service#InvalidSignatureException"
        );
        let future = signed(
            "AKIDORDERS",
            "orders-secret",
            "us-east-1",
            now + Duration::from_secs(20 * 60),
            body,
        );
        assert!(
            verify(&future, body)
                .unwrap_err()
                .to_string()
                .contains("not yet current")
        );

        let elsewhere = signed("AKIDORDERS", "orders-secret", "eu-west-1", now, body);
        assert!(
            verify(&elsewhere, body)
                .unwrap_err()
                .to_string()
                .contains("region")
        );

        let mut unsigned = good.clone();
        unsigned.headers_mut().remove("authorization");
        assert_eq!(verify(&unsigned, body), Err(AuthError::Missing));
        let mut basic = good.clone();
        basic
            .headers_mut()
            .insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
        assert!(matches!(
            verify(&basic, body),
            Err(AuthError::Incomplete(_))
        ));

        // After a reload without the key, the same request is refused.
        verifier.replace(
            Principals::parse(&FILE.replace("AKIDORDERS", "AKIDROTATED"), Path::new(".")).unwrap(),
        );
        assert_eq!(verify(&good, body), Err(AuthError::UnknownKey));
    }
}
