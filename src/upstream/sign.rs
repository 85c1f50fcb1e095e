//! SigV4 for the proxy's own requests to DynamoDB. They all have one shape (`POST` to the
//! upstream's path, with `Content-Type`, `Host` and `X-Amz-Target`), so the canonical request
//! is written straight from those parts, and the signing key, which depends only on the
//! secret, the day and the region, is derived once a day rather than on every forward. The
//! signing math (key derivation, HMAC) is `aws-sigv4`'s, as for the inbound verifier.
//!
//! A test checks every header against `aws_sigv4::http_request::sign` for the same request
//! and time, with and without a session token.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::sign::v4;

use crate::wire::amz_date::{format_amz_date, push_sha256_hex};
use crate::wire::answer::AMZ_JSON_TYPE;

const SERVICE: &str = "dynamodb";

/// The headers a signature adds to a request.
#[derive(Debug, PartialEq, Eq)]
pub struct Signed {
    pub amz_date: String,
    pub security_token: Option<String>,
    pub authorization: String,
}

/// What one day's signatures with one set of credentials share: the signing key, which
/// depends only on the secret, the day and the region, and the credential scope and the
/// `Authorization` header up to its signature, which change with the same things and the
/// access key.
struct DayKey {
    day: String,
    secret: String,
    access_key: String,
    with_token: bool,
    key: Vec<u8>,
    scope: String,
    authorization_prefix: String,
}

/// What the signer keeps between requests: the last second's `X-Amz-Date` (formatting it is
/// a good part of a signature's cost) and the day's key.
#[derive(Default)]
struct Kept {
    second: Option<u64>,
    amz_date: String,
    key: Option<Arc<DayKey>>,
}

/// Signs requests for one upstream: its `Host`, path and region.
pub struct Signer {
    host: String,
    path: String,
    region: String,
    kept: Mutex<Kept>,
}

/// The headers a request signs, in order; with a session token, it is signed too.
fn signed_headers(with_token: bool) -> &'static str {
    if with_token {
        "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
    } else {
        "content-type;host;x-amz-date;x-amz-target"
    }
}

impl Signer {
    /// A signer for `host`, `path` and `region`; `None` for a path whose canonical form is not
    /// the path itself (SigV4 would encode or normalise it): one with characters other than
    /// letters, digits, `-._~` and `/`, or with `.` or `..` segments.
    pub fn new(host: &str, path: &str, region: &str) -> Option<Signer> {
        let plain = path.starts_with('/')
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b))
            && path
                .split('/')
                .all(|segment| segment != "." && segment != "..");
        plain.then(|| Signer {
            host: host.to_string(),
            path: path.to_string(),
            region: region.to_string(),
            kept: Mutex::new(Kept::default()),
        })
    }

    /// The headers that sign a request with `target` and `body`, at `now`.
    pub fn sign(&self, creds: &Credentials, target: &str, body: &[u8], now: SystemTime) -> Signed {
        let (amz_date, day) = self.date_and_key(creds, now);
        let token = creds.session_token();

        let mut canonical = String::with_capacity(256 + token.map_or(0, str::len));
        canonical.push_str("POST\n");
        canonical.push_str(&self.path);
        canonical.push_str("\n\ncontent-type:");
        canonical.push_str(AMZ_JSON_TYPE);
        canonical.push_str("\nhost:");
        canonical.push_str(&self.host);
        canonical.push_str("\nx-amz-date:");
        canonical.push_str(&amz_date);
        if let Some(token) = token {
            canonical.push_str("\nx-amz-security-token:");
            canonical.push_str(token.trim());
        }
        canonical.push_str("\nx-amz-target:");
        canonical.push_str(target.trim());
        canonical.push_str("\n\n");
        canonical.push_str(signed_headers(token.is_some()));
        canonical.push('\n');
        push_sha256_hex(&mut canonical, body);

        let mut to_sign = String::with_capacity(160);
        to_sign.push_str("AWS4-HMAC-SHA256\n");
        to_sign.push_str(&amz_date);
        to_sign.push('\n');
        to_sign.push_str(&day.scope);
        to_sign.push('\n');
        push_sha256_hex(&mut to_sign, canonical.as_bytes());
        let signature = v4::calculate_signature(&day.key, to_sign.as_bytes());
        let mut authorization =
            String::with_capacity(day.authorization_prefix.len() + signature.len());
        authorization.push_str(&day.authorization_prefix);
        authorization.push_str(&signature);
        Signed {
            authorization,
            security_token: token.map(str::to_string),
            amz_date,
        }
    }

    /// `X-Amz-Date` for `now`, formatted once a second, and what the day's signatures with
    /// `creds` share, made again when the day or the credentials change.
    fn date_and_key(&self, creds: &Credentials, now: SystemTime) -> (String, Arc<DayKey>) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if kept.second != Some(second) {
            kept.amz_date = format_amz_date(now).expect("the clock is within years 0 to 9999");
            kept.second = Some(second);
        }
        let day = &kept.amz_date[..8];
        let (secret, access_key) = (creds.secret_access_key(), creds.access_key_id());
        let with_token = creds.session_token().is_some();
        let key = match &kept.key {
            Some(k)
                if k.day == day
                    && k.secret == secret
                    && k.access_key == access_key
                    && k.with_token == with_token =>
            {
                k.clone()
            }
            _ => {
                let key = v4::generate_signing_key(secret, now, &self.region, SERVICE);
                let scope = format!("{day}/{}/{SERVICE}/aws4_request", self.region);
                let authorization_prefix = format!(
                    "AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={}, \
                     Signature=",
                    signed_headers(with_token)
                );
                let key = Arc::new(DayKey {
                    day: day.to_string(),
                    secret: secret.to_string(),
                    access_key: access_key.to_string(),
                    with_token,
                    key: key.as_ref().to_vec(),
                    scope,
                    authorization_prefix,
                });
                kept.key = Some(key.clone());
                key
            }
        };
        (kept.amz_date.clone(), key)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_smithy_runtime_api::client::identity::Identity;

    use super::*;

    /// What `aws-sigv4` signs for the same request: the headers it would add.
    fn reference(
        creds: &Credentials,
        url: &str,
        host: &str,
        target: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Signed {
        let identity: Identity = creds.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("eu-west-1")
            .name(SERVICE)
            .time(now)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let headers = [
            ("host", host),
            ("content-type", AMZ_JSON_TYPE),
            ("x-amz-target", target),
        ];
        let signable =
            SignableRequest::new("POST", url, headers.into_iter(), SignableBody::Bytes(body))
                .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut request = http::Request::builder().uri(url).body(()).unwrap();
        instructions.apply_to_request_http1x(&mut request);
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        Signed {
            amz_date: header("x-amz-date").unwrap(),
            security_token: header("x-amz-security-token"),
            authorization: header("authorization").unwrap(),
        }
    }

    #[test]
    fn signatures_are_the_ones_aws_sigv4_makes() {
        let plain = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", None, None, "t");
        let session = Credentials::new("ASIAEXAMPLE", "secret", Some("tok/en+=".into()), None, "t");
        let body = br#"{"TableName":"t","Item":{"pk":{"S":"a b"}}}"#;
        for (url, host, path) in [
            (
                "https://dynamodb.eu-west-1.amazonaws.com/",
                "dynamodb.eu-west-1.amazonaws.com",
                "/",
            ),
            ("http://127.0.0.1:8000/", "127.0.0.1:8000", "/"),
            (
                "http://127.0.0.1:8000/local-ddb/v1/",
                "127.0.0.1:8000",
                "/local-ddb/v1/",
            ),
        ] {
            let signer = Signer::new(host, path, "eu-west-1").unwrap();
            let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_720_000);
            // Across midnight, so the cached key must change with the day.
            for hours in [0, 5, 23, 24, 25] {
                let now = start + Duration::from_secs(hours * 3600 + 17);
                for creds in [&plain, &session] {
                    assert_eq!(
                        signer.sign(creds, "DynamoDB_20120810.PutItem", body, now),
                        reference(creds, url, host, "DynamoDB_20120810.PutItem", body, now),
                        "{url} at +{hours} h, token {:?}",
                        creds.session_token()
                    );
                }
            }
        }
    }

    #[test]
    fn paths_sigv4_would_rewrite_are_refused() {
        for path in ["/a b/", "/%41/", "/a/../b/", "/./", "relative/"] {
            assert!(Signer::new("h", path, "eu-west-1").is_none(), "{path}");
        }
    }

    #[test]
    fn a_rotated_secret_gets_a_new_key() {
        let signer = Signer::new("h", "/", "eu-west-1").unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_720_000);
        let old = Credentials::new("AKID", "old", None, None, "t");
        let new = Credentials::new("AKID", "new", None, None, "t");
        let a = signer.sign(&old, "T", b"{}", now);
        let b = signer.sign(&new, "T", b"{}", now);
        assert_ne!(a.authorization, b.authorization);
        assert_eq!(
            b,
            reference(&new, "http://h/", "h", "T", b"{}", now),
            "signed with the new secret"
        );
    }
}
