//! Added latency of forwarding: strongly consistent GetItem (never cached) through the proxy vs
//! straight to the same upstream, interleaved call by call so that machine noise hits both
//! alike. Prints medians and the difference.
//!
//! `cargo bench --bench forward_latency [-- N]` (N calls each, default 5000).

use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_dynamodb::config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use dynamo_cache::{Config, State};
use tokio::net::TcpListener;

fn creds() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new("bench", "bench", None, None, "bench"))
}

fn client(url: &str) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(url)
            .credentials_provider(creds())
            .http_client(dynamo_cache::upstream::sdk_http_client())
            .build(),
    )
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
        tokio::spawn(dynoxide::server::serve_with_shutdown(
            upstream,
            dynoxide::Database::memory().unwrap(),
            std::future::pending(),
        ));
        let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_url = format!("http://{}", data.local_addr().unwrap());
        let config = Config {
            listen: data.local_addr().unwrap(),
            admin_listen: admin.local_addr().unwrap(),
            upstream: Some(upstream_url.clone()),
            ..Config::default()
        };
        let state = State::new(config, "us-east-1", creds()).unwrap();
        tokio::spawn(dynamo_cache::run(
            state,
            data,
            admin,
            None,
            std::future::pending(),
        ));

        let direct = client(&upstream_url);
        let proxied = client(&proxy_url);
        direct
            .create_table()
            .table_name("bench")
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .unwrap();
        direct
            .put_item()
            .table_name("bench")
            .item("pk", AttributeValue::S("k".into()))
            .item("v", AttributeValue::S("x".repeat(400)))
            .send()
            .await
            .unwrap();

        let get = |c: &aws_sdk_dynamodb::Client| {
            c.get_item()
                .table_name("bench")
                .key("pk", AttributeValue::S("k".into()))
                .consistent_read(true)
                .send()
        };
        // Warm connections and code paths.
        for _ in 0..200 {
            get(&direct).await.unwrap();
            get(&proxied).await.unwrap();
        }
        let (mut d, mut p) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let t = Instant::now();
            get(&direct).await.unwrap();
            d.push(t.elapsed());
            let t = Instant::now();
            get(&proxied).await.unwrap();
            p.push(t.elapsed());
        }
        let (md, mp) = (median(&mut d), median(&mut p));
        println!("forwarded GetItem (ConsistentRead), {n} calls each, interleaved");
        println!("  direct  median {:>8.1} us", md.as_secs_f64() * 1e6);
        println!("  proxied median {:>8.1} us", mp.as_secs_f64() * 1e6);
        println!(
            "  added   {:>8.1} us  (proxied/direct = {:.2}x)",
            (mp.as_secs_f64() - md.as_secs_f64()) * 1e6,
            mp.as_secs_f64() / md.as_secs_f64()
        );
    });
}
