//! The README's Rust snippet, compiled and run as an application would run it: configured
//! through `AWS_ENDPOINT_URL_DYNAMODB` and the standard credential variables, which the
//! interop suite points at the quick-start proxy (`dynamo-cache serve --embedded`).
//!
//! Exits 0 when the README's copy and this one agree and the snippet ran.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

/// The README's snippet, verbatim between the markers (checked in `main`).
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
    let lines: Vec<&str> = include_str!("main.rs").lines().collect();
    let marker = |m: &str| lines.iter().position(|l| l.trim() == m).unwrap();
    let (begin, end) = (
        marker("// README snippet begins"),
        marker("// README snippet ends"),
    );
    dedented(&lines[begin + 1..end])
}

fn snippet_in_readme() -> Vec<String> {
    let readme = include_str!("../../../README.md");
    let at = readme.find("```rust\n").expect("a Rust snippet in the README") + 8;
    let block = &readme[at..at + readme[at..].find("```").unwrap()];
    let lines: Vec<&str> = block.lines().collect();
    dedented(&lines)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(
        snippet_in_readme(),
        snippet_in_this_file(),
        "README.md's Rust snippet and tests/readme-snippet's copy differ"
    );
    // The README's "Try it" creates the table with the AWS CLI; the same here.
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_dynamodb::Client::new(&config)
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
}
