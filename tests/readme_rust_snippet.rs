//! The README's Rust snippet, compiled and run against the quick-start proxy
//! (`dynamo-cache serve --embedded`), configured the way the README says: through
//! `AWS_ENDPOINT_URL_DYNAMODB` and the standard credential variables.
//!
//! This file holds a single test because it sets process environment variables before any
//! other thread exists.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

/// The README's snippet, verbatim between the markers (checked below).
async fn readme_snippet() -> Result<(), aws_sdk_dynamodb::Error> {
    // README snippet begins
    use aws_sdk_dynamodb::types::AttributeValue;

    // The endpoint comes from AWS_ENDPOINT_URL_DYNAMODB; or call
    // .endpoint_url("http://127.0.0.1:8000") on aws_config::defaults(...).
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    client
        .put_item()
        .table_name("orders")
        .item("pk", AttributeValue::S("order-1".into()))
        .item("total", AttributeValue::N("42".into()))
        .send()
        .await?;
    let got = client
        .get_item()
        .table_name("orders")
        .key("pk", AttributeValue::S("order-1".into()))
        .send()
        .await?;
    assert_eq!(got.item().unwrap()["total"], AttributeValue::N("42".into()));
    // README snippet ends
    Ok(())
}

fn dedented(lines: &[&str]) -> Vec<String> {
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| l.get(indent..).unwrap_or("").trim_end().to_string())
        .collect()
}

fn snippet_in_this_file() -> Vec<String> {
    let source = include_str!("readme_rust_snippet.rs");
    let lines: Vec<&str> = source.lines().collect();
    let begin = lines
        .iter()
        .position(|l| l.trim() == "// README snippet begins")
        .unwrap();
    let end = lines
        .iter()
        .position(|l| l.trim() == "// README snippet ends")
        .unwrap();
    dedented(&lines[begin + 1..end])
}

fn snippet_in_readme() -> Vec<String> {
    let readme = include_str!("../README.md");
    let at = readme
        .find("```rust\n")
        .expect("a Rust snippet in the README")
        + 8;
    let block = &readme[at..at + readme[at..].find("```").unwrap()];
    let lines: Vec<&str> = block.lines().collect();
    dedented(&lines)
}

#[test]
fn the_readme_rust_snippet_runs_against_the_quick_start_proxy() {
    assert_eq!(
        snippet_in_readme(),
        snippet_in_this_file(),
        "README.md's Rust snippet and this test's copy differ"
    );

    let mut proxy = Command::new(env!("CARGO_BIN_EXE_dynamo-cache"))
        .args([
            "serve",
            "--embedded",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = BufReader::new(proxy.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_string();

    // SAFETY: the only test in this binary, before its runtime or any other thread starts.
    unsafe {
        std::env::set_var("AWS_ENDPOINT_URL_DYNAMODB", &url);
        std::env::set_var("AWS_ACCESS_KEY_ID", "local");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "local");
        std::env::set_var("AWS_DEFAULT_REGION", "us-east-1");
        std::env::remove_var("AWS_REGION");
        std::env::remove_var("AWS_PROFILE");
        std::env::remove_var("AWS_ENDPOINT_URL");
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // The README's "Try it" creates the table with the AWS CLI; the same here.
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let client = aws_sdk_dynamodb::Client::new(&config);
        client
            .create_table()
            .table_name("orders")
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
        readme_snippet().await.unwrap();
        // It really went through the proxy: the second read is a hit.
        let raw = reqwest_like_get(&url).await;
        assert_eq!(raw, "hit");
    });

    let _ = Command::new("kill")
        .args(["-TERM", &proxy.id().to_string()])
        .status();
    assert_eq!(proxy.wait().unwrap().code(), Some(0));
}

/// A GetItem of the snippet's item straight over HTTP: the `x-dynamo-cache` header.
async fn reqwest_like_get(url: &str) -> String {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let request = http::Request::post(url)
        .header("x-amz-target", "DynamoDB_20120810.GetItem")
        .header("content-type", "application/x-amz-json-1.0")
        .body(Full::new(bytes::Bytes::from_static(
            br#"{"TableName":"orders","Key":{"pk":{"S":"order-1"}}}"#,
        )))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response
        .headers()
        .get("x-dynamo-cache")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let _ = response.into_body().collect().await;
    status
}
