//! SigV4 verification on untrusted headers and bodies: `Authorization`, `X-Amz-Date`, the
//! signed headers, the body. Nothing may panic, and nothing unsigned may pass.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;
use std::time::SystemTime;

use dynamo_cache::auth::{Principals, Verifier};
use http::{HeaderMap, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let principals = Principals::parse(
            "[[principal]]\nname = \"fuzz\"\naccess_key_id = \"AKIDFUZZ\"\n\
             secret_access_key = \"fuzz-secret\"\ntables = [\"*\"]\noperations = [\"read\"]\n",
            Path::new("."),
        )
        .expect("valid principals");
        Verifier::new("us-east-1", principals)
    })
}

fuzz_target!(|data: &[u8]| {
    // Fields separated by 0xFF: authorization, x-amz-date, another signed header, body.
    let mut fields = data.splitn(4, |b| *b == 0xFF);
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("127.0.0.1:8000"));
    for name in ["authorization", "x-amz-date", "x-amz-target"] {
        if let Some(Ok(value)) = fields.next().map(HeaderValue::from_bytes) {
            headers.insert(name, value);
        }
    }
    let body = fields.next().unwrap_or_default();
    let verdict = verifier().verify(
        &Method::POST,
        &Uri::from_static("/"),
        &headers,
        body,
        SystemTime::now(),
    );
    assert!(
        verdict.is_err(),
        "accepted a signature made without the secret"
    );
});
