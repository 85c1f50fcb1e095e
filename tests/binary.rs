//! The real binary, as a new user runs it: `serve --embedded` prints how to call it, serves an
//! SDK client, and exits 0 on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

#[tokio::test]
async fn serve_embedded_works_and_stops_cleanly_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dynamo-cache"))
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
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_string();
    let mut printed = vec![first];
    printed.extend(lines.by_ref().take(3).map(|l| l.unwrap()));
    assert!(
        printed
            .iter()
            .any(|l| l.contains("aws dynamodb") && l.contains(&url)),
        "no ready-to-run CLI line in {printed:#?}"
    );

    let client = sdk(&url);
    create_table(&client, "quickstart").await;
    let tables = client.list_tables().send().await.unwrap();
    assert_eq!(tables.table_names(), ["quickstart"]);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}
