//! The pieces every cached read runs: classifying the target, deriving the canonical key from
//! the request body, and the cache lookup (hit, which renders the answer from its segment,
//! and miss); and what every forward runs first,
//! signing the request for the upstream as the proxy does.
//!
//! `cargo bench --bench hot_path`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use dynamo_cache::cache::ItemCache;
use dynamo_cache::config::CacheConfig;
use dynamo_cache::wire::keys::{ItemKey, WireKeyRef};
use dynamo_cache::wire::operation::Target;

const BODY: &[u8] =
    br#"{"TableName":"orders","Key":{"pk":{"S":"customer#12345"},"sk":{"N":"1700000000.25"}}}"#;

/// The fields the hit path reads, borrowed from the body as the proxy borrows them.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Get<'a> {
    #[serde(borrow)]
    table_name: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    key: WireKeyRef<'a>,
}

fn key_of(body: &[u8]) -> ItemKey {
    let get: Get = serde_json::from_slice(body).unwrap();
    ItemKey::from_ref(&get.table_name, &get.key).unwrap()
}

fn bench(c: &mut Criterion) {
    c.bench_function("classify target", |b| {
        b.iter(|| Target::parse(black_box("DynamoDB_20120810.GetItem")))
    });
    c.bench_function("derive key from GetItem body", |b| {
        b.iter(|| key_of(black_box(BODY)))
    });

    let cache = ItemCache::new(
        &CacheConfig::default(),
        Duration::from_secs(10),
        std::sync::Arc::new(dynamo_cache::metrics::Metrics::new()),
    );
    for i in 0..100_000 {
        let body = format!(
            r#"{{"TableName":"orders","Key":{{"pk":{{"S":"customer#{i}"}},"sk":{{"N":"1700000000.25"}}}}}}"#
        );
        let key = key_of(body.as_bytes());
        // An item of about 400 bytes as DynamoDB counts it, in DynamoDB's JSON.
        let item = format!(
            r#"{{"pk":{{"S":"customer#{i}"}},"sk":{{"N":"1700000000.25"}},"v":{{"S":"{}"}}}}"#,
            "x".repeat(360)
        );
        let ticket = cache.begin_fill();
        cache.fill(&key, ticket, |_| ItemCache::whole(Some(item.as_bytes())));
    }
    let present = key_of(
        br#"{"TableName":"orders","Key":{"pk":{"S":"customer#777"},"sk":{"N":"1700000000.25"}}}"#,
    );
    // Not among the 100k (`BODY`'s customer#12345 is).
    let absent = key_of(
        br#"{"TableName":"orders","Key":{"pk":{"S":"customer#999999"},"sk":{"N":"1700000000.25"}}}"#,
    );
    c.bench_function("lookup hit (100k entries)", |b| {
        b.iter(|| cache.get(black_box(&present)).unwrap())
    });
    c.bench_function("lookup miss (100k entries)", |b| {
        b.iter(|| cache.get(black_box(&absent)))
    });
    c.bench_function("derive key + lookup hit", |b| {
        b.iter(|| {
            cache
                .get(&key_of(black_box(
                    br#"{"TableName":"orders","Key":{"pk":{"S":"customer#777"},"sk":{"N":"1700000000.25"}}}"#,
                )))
                .unwrap()
        })
    });
}

/// Signs a 500-byte PutItem for the upstream: as the proxy does (its signer, with the day's
/// signing key kept), and with `aws_sigv4::http_request::sign`, which derives the key and
/// builds the canonical request generically each time.
fn sign(c: &mut Criterion) {
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;

    let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "bench");
    let body = vec![b'x'; 500];
    let signer =
        dynamo_cache::upstream::Signer::new("dynamodb.us-east-1.amazonaws.com", "/", "us-east-1")
            .unwrap();
    c.bench_function("sign a forwarded request (the proxy's signer)", |b| {
        b.iter(|| {
            signer.sign(
                &creds,
                "DynamoDB_20120810.PutItem",
                black_box(&body),
                std::time::SystemTime::now(),
            )
        })
    });
    let identity: Identity = creds.into();
    c.bench_function(
        "sign a forwarded request (aws_sigv4::http_request::sign)",
        |b| {
            b.iter(|| {
                let params = v4::SigningParams::builder()
                    .identity(&identity)
                    .region("us-east-1")
                    .name("dynamodb")
                    .time(std::time::SystemTime::now())
                    .settings(SigningSettings::default())
                    .build()
                    .unwrap()
                    .into();
                let headers = [
                    ("host", "dynamodb.us-east-1.amazonaws.com"),
                    ("content-type", "application/x-amz-json-1.0"),
                    ("x-amz-target", "DynamoDB_20120810.PutItem"),
                ];
                let signable = SignableRequest::new(
                    "POST",
                    "https://dynamodb.us-east-1.amazonaws.com/",
                    headers.into_iter(),
                    SignableBody::Bytes(black_box(&body)),
                )
                .unwrap();
                sign(signable, &params).unwrap().into_parts()
            })
        },
    );
}

criterion_group!(benches, bench, sign);
criterion_main!(benches);
