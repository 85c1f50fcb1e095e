//! The real binary, as a new user runs it: `serve --embedded` prints how to call it, serves an
//! SDK client, keeps data with `--embedded-db`, and exits 0 on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;

/// `dynamo-cache serve --embedded [extra...]` on free ports: the process, its data URL, and the
/// first lines it printed.
fn serve_embedded(extra: &[&str]) -> (Child, String, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dynamo-cache"))
        .args([
            "serve",
            "--embedded",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
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
    (child, url, printed)
}

/// SIGTERM, then the exit status.
async fn terminate(mut child: Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn serve_embedded_works_and_stops_cleanly_on_sigterm() {
    let (child, url, printed) = serve_embedded(&[]);
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

    let exit = terminate(child).await;
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}

#[tokio::test]
async fn embedded_db_keeps_data_across_restarts() {
    let dir = std::env::temp_dir().join(format!("dynamo-cache-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("local.db");
    let path = path.to_str().unwrap();

    let (child, url, _) = serve_embedded(&["--embedded-db", path]);
    create_table(&sdk(&url), "kept").await;
    assert_eq!(terminate(child).await.code(), Some(0));

    let (child, url, _) = serve_embedded(&["--embedded-db", path]);
    let tables = sdk(&url).list_tables().send().await.unwrap();
    assert_eq!(tables.table_names(), ["kept"]);
    assert_eq!(terminate(child).await.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
