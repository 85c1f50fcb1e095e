//! SigV4 verification of inbound requests, the way DynamoDB checks them: the canonical
//! request rebuilt from what was received (method, path, query, the signed headers, the body's
//! hash), the credential scope (date, the proxy's region, `dynamodb`, `aws4_request`),
//! `X-Amz-Date` within 15 minutes, and a constant-time comparison. The signing math (key
//! derivation, HMAC) is `aws-sigv4`'s.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::{HeaderMap, Method, Uri};
use subtle::ConstantTimeEq;

use super::error::AuthError;
use super::principals::{Principal, Principals};
use crate::wire::amz_date::{format_amz_date, parse_amz_date, push_sha256_hex};

/// How far `X-Amz-Date` may be from the proxy's clock, either way (DynamoDB's window).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const SERVICE: &str = "dynamodb";
/// What DAX clients sign for.
const DAX_SERVICE: &str = "dax";
const TERMINATOR: &str = "aws4_request";

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
        let mut string_to_sign = format!("{ALGORITHM}\n{amz_date}\n{scope}\n");
        push_sha256_hex(&mut string_to_sign, canonical.as_bytes());
        let key = self.signing_key(&principal, auth.date, signed_at);
        let expected = aws_sigv4::sign::v4::calculate_signature(&*key, string_to_sign.as_bytes());
        if bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
            Ok(principal)
        } else {
            Err(AuthError::Signature)
        }
    }

    /// Verifies a DAX connection's `authorizeConnection`: the signature over the string to
    /// sign the client sent (DAX clients sign a fixed canonical request for service `dax`,
    /// which the proxy cannot rebuild, as their host differs; the scope, date and key are
    /// checked as for any signature).
    pub fn verify_dax(
        &self,
        access_key_id: &str,
        signature: &str,
        string_to_sign: &str,
        now: SystemTime,
    ) -> Result<Arc<Principal>, AuthError> {
        let malformed = || {
            AuthError::Incomplete(
                "authorizeConnection's string to sign is not a SigV4 string to sign".into(),
            )
        };
        let Some([ALGORITHM, amz_date, scope, hash]) = exactly(string_to_sign.split('\n')) else {
            return Err(malformed());
        };
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed());
        }
        let [date, region, service, terminator] =
            exactly(scope.split('/')).ok_or_else(malformed)?;
        let signed_at = parse_amz_date(amz_date).ok_or_else(malformed)?;
        let auth = Authorization {
            access_key_id,
            date,
            region,
            service,
            terminator,
            signed_headers: "",
            signature,
        };
        check_scope_for(&auth, amz_date, &self.region, DAX_SERVICE)?;
        check_clock(amz_date, signed_at, now)?;
        let principal = self
            .principals
            .load()
            .by_key
            .get(access_key_id)
            .cloned()
            .ok_or(AuthError::UnknownKey)?;
        let key = self.signing_key_for(&principal, date, signed_at, DAX_SERVICE);
        let expected = aws_sigv4::sign::v4::calculate_signature(&*key, string_to_sign.as_bytes());
        if bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
            Ok(principal)
        } else {
            Err(AuthError::Signature)
        }
    }

    /// The principal a DAX connection authenticated as, as the principals file has it now:
    /// `None` once its key has been removed or its secret changed, so a connection's identity
    /// follows a reload at its next request, not only at its next `authorizeConnection`.
    pub fn current(
        &self,
        access_key_id: &str,
        authenticated: &Principal,
    ) -> Option<Arc<Principal>> {
        let principals = self.principals.load();
        let now = principals.by_key.get(access_key_id)?;
        let same: bool = now
            .secret
            .0
            .as_bytes()
            .ct_eq(authenticated.secret.0.as_bytes())
            .into();
        same.then(|| now.clone())
    }

    fn signing_key(&self, principal: &Principal, date: &str, signed_at: SystemTime) -> Arc<[u8]> {
        self.signing_key_for(principal, date, signed_at, SERVICE)
    }

    fn signing_key_for(
        &self,
        principal: &Principal,
        date: &str,
        signed_at: SystemTime,
        service: &str,
    ) -> Arc<[u8]> {
        let mut keys = principal
            .signing_keys
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let cached_as = format!("{date}/{service}");
        if let Some(key) = keys.get(&cached_as) {
            return key.clone();
        }
        let derived = aws_sigv4::sign::v4::generate_signing_key(
            &principal.secret.0,
            signed_at,
            &self.region,
            service,
        );
        let key: Arc<[u8]> = Arc::from(derived.as_ref());
        // Only dates within the clock window get here (two at most, per service); the bound is
        // a backstop.
        if keys.len() >= 8 {
            keys.clear();
        }
        keys.insert(cached_as, key.clone());
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
    let Some([access_key_id, date, region, service, terminator]) = exactly(credential.split('/'))
    else {
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

/// The parts of `parts` if there are exactly `N`.
fn exactly<'a, const N: usize>(mut parts: impl Iterator<Item = &'a str>) -> Option<[&'a str; N]> {
    let mut out = [""; N];
    for slot in out.iter_mut() {
        *slot = parts.next()?;
    }
    parts.next().is_none().then_some(out)
}

fn check_scope(auth: &Authorization<'_>, amz_date: &str, region: &str) -> Result<(), AuthError> {
    check_scope_for(auth, amz_date, region, SERVICE)
}

fn check_scope_for(
    auth: &Authorization<'_>,
    amz_date: &str,
    region: &str,
    expected_service: &str,
) -> Result<(), AuthError> {
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
    if auth.service != expected_service {
        return Err(AuthError::Scope(format!(
            "Credential should be scoped to correct service: '{expected_service}'. "
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
    push_sha256_hex(&mut out, body);
    Ok(out)
}
