//! Inbound authentication and authorisation: who is calling, and may they do this.
//!
//! With `auth.mode = "sigv4"` every request must carry a SigV4 signature made with one of the
//! access keys of the credentials file ([`Principals`]). [`Verifier::verify`] checks it the way
//! DynamoDB does: the canonical request rebuilt from what was received (method, path, query,
//! the signed headers, the body's hash), the credential scope (date, the proxy's region,
//! `dynamodb`, `aws4_request`), `X-Amz-Date` within 15 minutes, and a constant-time comparison.
//! The signing math (key derivation, HMAC) is `aws-sigv4`'s.
//!
//! [`authorize`] then checks the operation's class (read, write, admin) and every table the
//! request names against the principal's globs. Both run before the cache is consulted, so a
//! principal never receives a cached entry of a table it may not read, and before anything
//! goes upstream.
//!
//! Failures are [`AuthError`]s, worded and typed as DynamoDB words them, so SDKs react to them
//! as they would to DynamoDB (none of them is retried).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::{HeaderMap, Method, Uri};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::operation::Operation;

/// How far `X-Amz-Date` may be from the proxy's clock, either way (DynamoDB's window).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const SERVICE: &str = "dynamodb";
const TERMINATOR: &str = "aws4_request";

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

/// What a principal may do: the issue's three classes of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// GetItem, BatchGetItem, Query, Scan, TransactGetItems.
    Read,
    /// PutItem, UpdateItem, DeleteItem, BatchWriteItem, TransactWriteItems.
    Write,
    /// Everything else: table management, PartiQL, streams, backups, tags, and whatever AWS adds.
    Admin,
}

impl Access {
    /// The class of an operation.
    pub fn of(op: Operation) -> Access {
        use Operation::*;
        match op {
            GetItem | BatchGetItem | Query | Scan | TransactGetItems => Access::Read,
            PutItem | UpdateItem | DeleteItem | BatchWriteItem | TransactWriteItems => {
                Access::Write
            }
            _ => Access::Admin,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Admin => "admin",
        }
    }
}

/// Derived signing keys by scope date; never printed.
#[derive(Default)]
struct SigningKeys(Mutex<HashMap<String, Arc<[u8]>>>);

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
}

/// A secret access key: never printed, never logged.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
}

/// One caller the proxy trusts.
#[derive(Debug)]
pub struct Principal {
    /// Who it is, for logs and error messages.
    pub name: String,
    secret: Secret,
    /// Table globs it may use (`*` matches any run of characters).
    tables: Vec<wildmatch::WildMatch>,
    /// Whether one of the globs is `*` alone: needed when a request's tables cannot be told.
    any_table: bool,
    operations: Vec<Access>,
    /// Signing keys derived from this principal's secret, by scope date: deriving one costs
    /// four HMACs, and a caller signs with the same one all day. They belong to this loaded
    /// principal, so a reload that changes the secret starts afresh, even for a request that
    /// was being verified against the old file at the time.
    signing_keys: SigningKeys,
}

impl Principal {
    /// Whether the principal may use `table`.
    pub fn may_use(&self, table: &str) -> bool {
        self.tables.iter().any(|glob| glob.matches(table))
    }

    /// Whether the principal may use operations of class `access`.
    pub fn may(&self, access: Access) -> bool {
        self.operations.contains(&access)
    }
}

/// The credentials file: every principal, by access key id.
#[derive(Debug, Default)]
pub struct Principals {
    by_key: HashMap<String, Arc<Principal>>,
}

/// One `[[principal]]` of the credentials file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalEntry {
    name: String,
    access_key_id: String,
    secret_access_key: Option<String>,
    /// A file holding the secret (a mounted Kubernetes or ECS secret); relative to the
    /// credentials file.
    secret_access_key_file: Option<PathBuf>,
    tables: Vec<String>,
    operations: Vec<Access>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalsFile {
    #[serde(default)]
    principal: Vec<PrincipalEntry>,
}

impl Principals {
    /// Reads and checks a credentials file.
    pub fn load(path: &Path) -> Result<Principals, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read credentials file {}: {e}", path.display()))?;
        Principals::parse(&text, path.parent().unwrap_or(Path::new(".")))
            .map_err(|e| format!("credentials file {}: {e}", path.display()))
    }

    /// Parses credentials-file text; secret files are read relative to `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<Principals, String> {
        let file: PrincipalsFile = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.principal.is_empty() {
            return Err("no [[principal]]: nobody could call the proxy".into());
        }
        let mut by_key = HashMap::new();
        for entry in file.principal {
            let who = &entry.name;
            let secret = match (&entry.secret_access_key, &entry.secret_access_key_file) {
                (Some(secret), None) => secret.clone(),
                (None, Some(file)) => {
                    let path = dir.join(file);
                    std::fs::read_to_string(&path)
                        .map_err(|e| format!("{who}: cannot read {}: {e}", path.display()))?
                        .trim_end_matches(['\r', '\n'])
                        .to_string()
                }
                _ => {
                    return Err(format!(
                        "{who}: give exactly one of secret_access_key and secret_access_key_file"
                    ));
                }
            };
            if entry.access_key_id.is_empty() || secret.is_empty() {
                return Err(format!("{who}: empty access key id or secret"));
            }
            if entry.tables.is_empty() || entry.operations.is_empty() {
                return Err(format!(
                    "{who}: tables and operations must each list at least one entry"
                ));
            }
            let principal = Principal {
                name: entry.name.clone(),
                secret: Secret(secret),
                any_table: entry.tables.iter().any(|t| t == "*"),
                tables: entry
                    .tables
                    .iter()
                    .map(|t| wildmatch::WildMatch::new(t))
                    .collect(),
                operations: entry.operations,
                signing_keys: SigningKeys::default(),
            };
            if by_key
                .insert(entry.access_key_id.clone(), Arc::new(principal))
                .is_some()
            {
                return Err(format!(
                    "access key id {} is listed twice",
                    entry.access_key_id
                ));
            }
        }
        Ok(Principals { by_key })
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// Checks signatures against the current credentials file.
pub struct Verifier {
    /// The region clients must sign for: the proxy's own, as DynamoDB checks its own.
    region: String,
    /// Swapped whole on reload; requests in flight keep the set they started with.
    principals: ArcSwap<Principals>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("region", &self.region)
            .field("principals", &self.principals.load().len())
            .finish()
    }
}

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
    /// on a loopback admin listener.
    pub fn admit_admin(&self, headers: &HeaderMap) -> Result<(), AdminRefusal> {
        let token = self.admin_token.load();
        let Some(token) = token.as_ref() else {
            return if self.admin_on_loopback {
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

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    terminator: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

impl Verifier {
    pub fn new(region: &str, principals: Principals) -> Verifier {
        Verifier {
            region: region.to_string(),
            principals: ArcSwap::from_pointee(principals),
        }
    }

    /// Replaces the principals (SIGHUP); connections and requests in flight are untouched.
    pub fn replace(&self, principals: Principals) {
        self.principals.store(Arc::new(principals));
    }

    /// How many principals are loaded.
    pub fn principals(&self) -> usize {
        self.principals.load().len()
    }

    /// Verifies a request's signature; the principal who signed it, or why not.
    pub fn verify(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Arc<Principal>, AuthError> {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        let header = values.next().ok_or(AuthError::Missing)?;
        if values.next().is_some() {
            return Err(AuthError::Incomplete(
                "Only one Authorization header is allowed".into(),
            ));
        }
        let header = header
            .to_str()
            .map_err(|_| AuthError::Incomplete("Authorization header is not ASCII".into()))?;
        let auth = parse_authorization(header)?;

        let amz_date = single(headers, "x-amz-date")?.ok_or_else(|| {
            AuthError::Incomplete(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' \
                 header."
                    .into(),
            )
        })?;
        let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
            AuthError::Incomplete(format!(
                "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\", not {amz_date:?}"
            ))
        })?;
        check_scope(&auth, amz_date, &self.region)?;
        check_clock(amz_date, signed_at, now)?;

        let principal = self
            .principals
            .load()
            .by_key
            .get(auth.access_key_id)
            .cloned()
            .ok_or(AuthError::UnknownKey)?;

        let canonical = canonical_request(method, uri, headers, auth.signed_headers, body)?;
        let scope = format!(
            "{}/{}/{}/{}",
            auth.date, auth.region, auth.service, auth.terminator
        );
        let string_to_sign = format!(
            "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let key = self.signing_key(&principal, auth.date, signed_at);
        let expected = aws_sigv4::sign::v4::calculate_signature(&*key, string_to_sign.as_bytes());
        if bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
            Ok(principal)
        } else {
            Err(AuthError::Signature)
        }
    }

    fn signing_key(&self, principal: &Principal, date: &str, signed_at: SystemTime) -> Arc<[u8]> {
        let mut keys = principal
            .signing_keys
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(key) = keys.get(date) {
            return key.clone();
        }
        let derived = aws_sigv4::sign::v4::generate_signing_key(
            &principal.secret.0,
            signed_at,
            &self.region,
            SERVICE,
        );
        let key: Arc<[u8]> = Arc::from(derived.as_ref());
        // Only dates within the clock window get here (two at most); the bound is a backstop.
        if keys.len() >= 4 {
            keys.clear();
        }
        keys.insert(date.to_string(), key.clone());
        key
    }
}

fn parse_authorization(header: &str) -> Result<Authorization<'_>, AuthError> {
    let incomplete = |what: &str| {
        AuthError::Incomplete(format!(
            "Authorization header requires '{what}' parameter. Authorization header must be a \
             SigV4 signature: {ALGORITHM} Credential=..., SignedHeaders=..., Signature=..."
        ))
    };
    let Some(rest) = header
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
    else {
        let algorithm = header.split_whitespace().next().unwrap_or("");
        return Err(AuthError::Incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'"
        )));
    };
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let Some((name, value)) = part.trim().split_once('=') else {
            continue;
        };
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(AuthError::Incomplete(format!(
                "Authorization header lists '{name}' twice"
            )));
        }
    }
    let credential = credential.ok_or_else(|| incomplete("Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| incomplete("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| incomplete("Signature"))?;
    let mut scope = credential.split('/');
    let (Some(access_key_id), Some(date), Some(region), Some(service), Some(terminator), None) = (
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
    ) else {
        return Err(AuthError::Incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. \
             keyid/date/region/service/term, got '{credential}'"
        )));
    };
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        terminator,
        signed_headers,
        signature,
    })
}

fn check_scope(auth: &Authorization<'_>, amz_date: &str, region: &str) -> Result<(), AuthError> {
    if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
        return Err(AuthError::Scope(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
             HTTP: '{}' != '{}', from '{amz_date}'.",
            auth.date,
            amz_date.get(..8).unwrap_or(amz_date)
        )));
    }
    if auth.region != region {
        return Err(AuthError::Scope(format!(
            "Credential should be scoped to a valid region, not '{}'. This proxy signs for \
             '{region}'.",
            auth.region
        )));
    }
    if auth.service != SERVICE {
        return Err(AuthError::Scope(format!(
            "Credential should be scoped to correct service: '{SERVICE}'. "
        )));
    }
    if auth.terminator != TERMINATOR {
        return Err(AuthError::Scope(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{}'.",
            auth.terminator
        )));
    }
    Ok(())
}

fn check_clock(amz_date: &str, signed_at: SystemTime, now: SystemTime) -> Result<(), AuthError> {
    let format = |t: SystemTime| format_amz_date(t).unwrap_or_default();
    if signed_at + MAX_CLOCK_SKEW < now {
        return Err(AuthError::Scope(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
            format(now - MAX_CLOCK_SKEW),
            format(now)
        )));
    }
    if signed_at > now + MAX_CLOCK_SKEW {
        return Err(AuthError::Scope(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 15 min.)",
            format(now + MAX_CLOCK_SKEW),
            format(now)
        )));
    }
    Ok(())
}

/// The value of a header that must appear at most once.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::Incomplete(format!(
            "Only one {name} header is allowed"
        )));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| AuthError::Incomplete(format!("{name} is not ASCII")))
}

const AMZ_DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");

fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let parsed = time::PrimitiveDateTime::parse(text, AMZ_DATE).ok()?;
    Some(parsed.assume_utc().into())
}

fn format_amz_date(at: SystemTime) -> Option<String> {
    time::OffsetDateTime::from(at).format(AMZ_DATE).ok()
}

/// The SigV4 canonical request, rebuilt from what was received.
fn canonical_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    signed_headers: &str,
    body: &[u8],
) -> Result<String, AuthError> {
    let mut out = String::with_capacity(512);
    out.push_str(method.as_str());
    out.push('\n');
    out.push_str(uri.path());
    out.push('\n');
    let mut query: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .collect();
    // Sorted by name, then value; the pairs stay encoded as the client sent them.
    query.sort_unstable_by_key(|pair| pair.split_once('=').unwrap_or((pair, "")));
    for (i, pair) in query.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(pair);
        if !pair.contains('=') {
            out.push('=');
        }
    }
    out.push('\n');
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"host") {
        return Err(AuthError::Incomplete(
            "'Host' must be a signed header".into(),
        ));
    }
    for name in &names {
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(AuthError::Incomplete(format!(
                "SignedHeaders must be lower-case names separated by ';', not '{signed_headers}'"
            )));
        }
        out.push_str(name);
        out.push(':');
        for (i, value) in headers.get_all(*name).iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let value = value.to_str().map_err(|_| AuthError::Signature)?;
            // Trimmed, with runs of spaces collapsed to one.
            let mut words = value.split_whitespace();
            if let Some(first) = words.next() {
                out.push_str(first);
                for word in words {
                    out.push(' ');
                    out.push_str(word);
                }
            }
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(signed_headers);
    out.push('\n');
    out.push_str(&hex::encode(Sha256::digest(body)));
    Ok(out)
}

/// The tables a request names, for authorisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// These tables (possibly none: ListTables, DescribeLimits).
    Tables(Vec<String>),
    /// The proxy cannot tell (an operation it does not know, a PartiQL statement it cannot
    /// read, an opaque shard iterator): only a principal allowed every table (`*`) passes.
    Unknown,
}

/// Top-level fields that name a table, directly or by ARN, in any operation.
const TABLE_FIELDS: &[&str] = &[
    "TableName",
    "SourceTableName",
    "TargetTableName",
    "GlobalTableName",
];
const ARN_FIELDS: &[&str] = &[
    "TableArn",
    "ResourceArn",
    "StreamArn",
    "SourceTableArn",
    "BackupArn",
    "ExportArn",
    "ImportArn",
];

/// Every table `body` names for `op`. `None` when the body is not one JSON object without
/// repeated keys: a request whose tables could be read two ways is never authorised.
pub fn tables_named(op: Operation, body: &[u8]) -> Option<Named> {
    let value = strict::parse(body)?;
    let Value::Object(object) = &value else {
        return None;
    };
    let mut tables = Vec::new();
    let mut unknown = false;
    let mut push_name = |v: &Value, tables: &mut Vec<String>| match v.as_str() {
        Some(name) => tables.push(name.to_string()),
        None => unknown = true,
    };
    match op {
        Operation::Other | Operation::GetRecords => return Some(Named::Unknown),
        Operation::BatchGetItem | Operation::BatchWriteItem => match object.get("RequestItems") {
            Some(Value::Object(items)) => tables.extend(items.keys().cloned()),
            None => {}
            Some(_) => return Some(Named::Unknown),
        },
        Operation::TransactGetItems | Operation::TransactWriteItems => {
            for entry in object
                .get("TransactItems")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(actions) = entry.as_object() else {
                    return Some(Named::Unknown);
                };
                for action in actions.values() {
                    match action.get("TableName") {
                        Some(name) => push_name(name, &mut tables),
                        None => return Some(Named::Unknown),
                    }
                }
            }
        }
        Operation::ExecuteStatement
        | Operation::BatchExecuteStatement
        | Operation::ExecuteTransaction => {
            let mut statements: Vec<&Value> = object.get("Statement").into_iter().collect();
            for list in ["Statements", "TransactStatements"] {
                for entry in object
                    .get(list)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    statements.push(entry.get("Statement").unwrap_or(&Value::Null));
                }
            }
            for statement in statements {
                match statement
                    .as_str()
                    .and_then(|s| crate::partiql::statement(s).table)
                {
                    Some(table) => tables.push(table),
                    None => return Some(Named::Unknown),
                }
            }
        }
        _ => {}
    }
    for field in TABLE_FIELDS {
        if let Some(v) = object.get(*field) {
            push_name(v, &mut tables);
        }
    }
    if let Some(v) = object
        .get("TableCreationParameters")
        .and_then(|p| p.get("TableName"))
    {
        push_name(v, &mut tables);
    }
    for field in ARN_FIELDS {
        if let Some(v) = object.get(*field) {
            match v.as_str().and_then(table_of_arn) {
                Some(table) => tables.push(table.to_string()),
                None => unknown = true,
            }
        }
    }
    if unknown {
        return Some(Named::Unknown);
    }
    tables.sort_unstable();
    tables.dedup();
    Some(Named::Tables(tables))
}

/// `arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-...` -> `orders`; also
/// `global-table/NAME`.
fn table_of_arn(arn: &str) -> Option<&str> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let rest = resource
        .strip_prefix("table/")
        .or_else(|| resource.strip_prefix("global-table/"))?;
    let name = rest.split('/').next()?;
    (!name.is_empty()).then_some(name)
}

/// Whether `principal` may perform `op` on the tables `body` names.
pub fn authorize(principal: &Principal, op: Operation, body: &[u8]) -> Result<(), AuthError> {
    let denied = |resource: &str, why: String| {
        AuthError::Denied(format!(
            "User: {} is not authorized to perform: dynamodb:{} on resource: {resource} because {why}",
            principal.name,
            op.name()
        ))
    };
    let access = Access::of(op);
    let named = tables_named(op, body).ok_or_else(|| {
        denied(
            "*",
            "the request's tables cannot be read (not one JSON object with unique keys)".into(),
        )
    })?;
    let tables = match named {
        Named::Tables(tables) => tables,
        Named::Unknown if principal.any_table => Vec::new(),
        Named::Unknown => {
            return Err(denied(
                "*",
                "the proxy cannot tell which tables it uses, so only principals allowed every \
                 table (\"*\") may"
                    .into(),
            ));
        }
    };
    for table in &tables {
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

/// JSON parsing that refuses repeated object keys. Parsers disagree on which of two
/// `"TableName"`s wins; a request that could be read as naming different tables is refused
/// rather than authorised for one and served for the other.
mod strict {
    use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};

    pub fn parse(body: &[u8]) -> Option<Value> {
        serde_json::from_slice::<Strict>(body).ok().map(|s| s.0)
    }

    struct Strict(Value);

    impl<'de> Deserialize<'de> for Strict {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
            d.deserialize_any(StrictVisitor).map(Strict)
        }
    }

    struct StrictVisitor;

    impl<'de> Visitor<'de> for StrictVisitor {
        type Value = Value;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E: Error>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E: Error>(self, v: f64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_string()))
        }
        fn visit_string<E: Error>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E: Error>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut out = Vec::new();
            while let Some(Strict(v)) = seq.next_element()? {
                out.push(v);
            }
            Ok(Value::Array(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = Map::new();
            while let Some((key, Strict(v))) = map.next_entry::<String, Strict>()? {
                if out.contains_key(&key) {
                    return Err(A::Error::custom(format!("repeated key {key:?}")));
                }
                out.insert(key, v);
            }
            Ok(Value::Object(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn tables_of_every_shape() {
        let named = |op, body: &str| tables_named(op, body.as_bytes()).unwrap();
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
