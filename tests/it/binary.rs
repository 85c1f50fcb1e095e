//! The real binary, as a new user runs it: `serve --embedded` prints how to call it, serves an
//! SDK client, keeps data with `--embedded-db`, and exits 0 on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::common::*;

/// `dynamo-cache serve --embedded [extra...]` on free ports: the process, its data URL, and the
/// first lines it printed.
fn serve_embedded(extra: &[&str]) -> (Child, String, Vec<String>) {
    serve_embedded_admin_on("127.0.0.1:0", extra)
}

/// `dynamo-cache serve --embedded` on a free data port and the admin listener on `admin`,
/// printing to a pipe.
fn embedded_command(admin: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dynamo-cache"));
    command
        .args([
            "serve",
            "--embedded",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            admin,
        ])
        .stdout(Stdio::piped());
    command
}

/// As [`serve_embedded`], with the admin listener on `admin`.
fn serve_embedded_admin_on(admin: &str, extra: &[&str]) -> (Child, String, Vec<String>) {
    let mut child = embedded_command(admin)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
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

/// `--embedded-latency-ms` puts a delay line between the proxy and the emulator: the banner says
/// how far away it is, and whole items, larger than one read of the line, cross it unchanged
/// both through the proxy and straight at the upstream it names.
#[tokio::test]
async fn an_emulator_at_a_distance_still_answers_whole_items() {
    let (child, url, printed) = serve_embedded(&["--embedded-latency-ms", "2"]);
    assert!(
        printed.iter().any(|l| l.contains("2 ms away")),
        "{printed:#?}"
    );
    let upstream = urls_in(&printed[0]).pop().unwrap();
    assert_ne!(upstream, url);

    let proxied = sdk(&url);
    create_table(&proxied, "far").await;
    let large = "v".repeat(300 * 1024);
    let item = aws_sdk_dynamodb::types::AttributeValue::S(large);
    proxied
        .put_item()
        .table_name("far")
        .item("pk", aws_sdk_dynamodb::types::AttributeValue::S("k".into()))
        .item("sk", aws_sdk_dynamodb::types::AttributeValue::N("1".into()))
        .item("v", item.clone())
        .send()
        .await
        .unwrap();
    for client in [&proxied, &sdk(&upstream)] {
        let got = client
            .get_item()
            .table_name("far")
            .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("k".into()))
            .key("sk", aws_sdk_dynamodb::types::AttributeValue::N("1".into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        assert_eq!(got.item().unwrap()["v"], item);
    }
    assert_eq!(terminate(child).await.code(), Some(0));
}

/// The URLs of a printed start-up line: data, admin and upstream.
fn urls_in(line: &str) -> Vec<String> {
    line.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
        .map(str::to_string)
        .collect()
}

fn healthcheck(args: &[&str]) -> std::process::Output {
    dynamo_cache_command("healthcheck", args)
}

/// `dynamo-cache SUBCOMMAND args...`, with none of the caller's admin settings.
fn dynamo_cache_command(subcommand: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dynamo-cache"))
        .arg(subcommand)
        .args(args)
        .env_remove("DYNAMO_CACHE_ADMIN_LISTEN")
        .env_remove("DYNAMO_CACHE_CONFIG")
        .env_remove("DYNAMO_CACHE_ADMIN_TOKEN_FILE")
        .output()
        .unwrap()
}

#[tokio::test]
async fn healthcheck_reports_a_running_proxy_and_fails_on_a_dead_port() {
    let (child, _, printed) = serve_embedded(&[]);
    let admin = urls_in(&printed[0])[1]
        .trim_start_matches("http://")
        .to_string();

    let healthy = tokio::task::spawn_blocking({
        let admin = admin.clone();
        move || healthcheck(&["--admin", &admin])
    })
    .await
    .unwrap();
    assert!(healthy.status.success(), "{healthy:?}");
    // Readiness waits for the upstream check; poll briefly.
    let mut ready = healthcheck(&["--admin", &admin, "--ready"]);
    for _ in 0..50 {
        if ready.status.success() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        ready = healthcheck(&["--admin", &admin, "--ready"]);
    }
    assert!(ready.status.success(), "{ready:?}");
    assert_eq!(terminate(child).await.code(), Some(0));

    let dead = healthcheck(&["--admin", &admin]);
    assert_eq!(dead.status.code(), Some(1), "{dead:?}");
    assert!(String::from_utf8_lossy(&dead.stderr).contains("/healthz"));
}

#[tokio::test]
async fn healthcheck_speaks_https_to_an_admin_listener_served_over_tls() {
    let dir = std::env::temp_dir().join(format!("dynamo-cache-hc-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A certificate for a name the probe does not use: it checks liveness, not identity.
    let cert = rcgen::generate_simple_self_signed(vec!["cache.internal".to_string()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let config = dir.join("dynamo-cache.toml");
    std::fs::write(
        &config,
        "[tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\nadmin = true\n",
    )
    .unwrap();

    let (child, _, printed) = serve_embedded(&["--config", config.to_str().unwrap()]);
    let urls = urls_in(&printed[0]);
    assert!(urls[1].starts_with("https://"), "{printed:?}");
    let admin = urls[1].trim_start_matches("https://").to_string();

    let probe = admin.clone();
    let over_https =
        tokio::task::spawn_blocking(move || healthcheck(&["--admin", &probe, "--https"]))
            .await
            .unwrap();
    assert!(over_https.status.success(), "{over_https:?}");
    assert!(String::from_utf8_lossy(&over_https.stdout).contains("https://"));
    // Plain http gets no health answer from a TLS listener.
    let probe = admin.clone();
    let over_http = tokio::task::spawn_blocking(move || healthcheck(&["--admin", &probe]))
        .await
        .unwrap();
    assert_eq!(over_http.status.code(), Some(1), "{over_http:?}");
    // With the proxy's own config file, `tls.admin` is followed without `--https`.
    let probe = admin.clone();
    let config_arg = config.to_str().unwrap().to_string();
    let by_config = tokio::task::spawn_blocking(move || {
        healthcheck(&["--config", &config_arg, "--admin", &probe])
    })
    .await
    .unwrap();
    assert!(by_config.status.success(), "{by_config:?}");

    assert_eq!(terminate(child).await.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_clients_endpoint_variable_never_becomes_the_proxys_upstream() {
    // A sidecar's environment often carries the app's settings; the proxy must not follow
    // AWS_ENDPOINT_URL_DYNAMODB (or AWS_ENDPOINT_URL) to itself.
    let mut child = Command::new(env!("CARGO_BIN_EXE_dynamo-cache"))
        .args([
            "serve",
            "--region",
            "eu-west-1",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:8000")
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let urls = urls_in(&first);
    assert_eq!(
        urls.last().map(|u| u.trim_end_matches('/')),
        Some("https://dynamodb.eu-west-1.amazonaws.com"),
        "{first}"
    );
    assert_eq!(terminate(child).await.code(), Some(0));
}

#[test]
fn an_upstream_pointing_at_the_proxy_itself_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_dynamo-cache"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:18555",
            "--upstream",
            "http://localhost:18555",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("own listener"), "{stderr}");
}

#[tokio::test]
async fn the_proxy_keeps_serving_after_whoever_read_its_banner_goes_away() {
    // `dynamo-cache serve --embedded | head -1`: the pipe closes after one line.
    let mut child = embedded_command("127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = {
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        lines.next().unwrap().unwrap()
    };
    let url = urls_in(&first)[0].clone();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let tables = sdk(&url).list_tables().send().await;
    assert!(tables.is_ok(), "{tables:?}");
    assert_eq!(terminate(child).await.code(), Some(0));
}

/// Logs written to a file carry no terminal escape codes, and `--log-level` chooses what is
/// logged (here debug: one line per request).
#[tokio::test]
async fn logs_to_a_file_are_plain_text_at_the_configured_level() {
    let path = std::env::temp_dir().join(format!("dynamo-cache-log-{}.txt", std::process::id()));
    let log = std::fs::File::create(&path).unwrap();
    let mut child = embedded_command("127.0.0.1:0")
        .args(["--log-level", "info,dynamo_cache=debug"])
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stderr(log)
        .spawn()
        .unwrap();
    let first = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_string();
    dynamo(&url, "ListTables", "{}").await;
    assert!(terminate(child).await.success());
    let written = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&written);
    assert!(
        text.contains("op=\"ListTables\"") || text.contains("op=ListTables"),
        "{text}"
    );
    assert!(
        !written.contains(&0x1b),
        "escape codes in a log file: {text:?}"
    );
}

/// The binary is its own admin client: with the admin listener on every interface and no
/// token (as the shipped compose and Kubernetes sidecar examples run it), a flush from the
/// proxy's own host works; with a token, it reads the token file of the proxy's config.
#[tokio::test]
async fn the_admin_client_flushes_and_reads_stats() {
    let dir = std::env::temp_dir().join(format!("dynamo-cache-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (child, url, printed) = serve_embedded_admin_on("0.0.0.0:0", &[]);
    let port = urls_in(&printed[0])[1]
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    create_table(&sdk(&url), "orders").await;
    let item = r#"{"TableName":"orders","Item":{"pk":{"S":"a"},"sk":{"N":"1"}}}"#;
    dynamo(&url, "PutItem", item).await;
    let get = r#"{"TableName":"orders","Key":{"pk":{"S":"a"},"sk":{"N":"1"}}}"#;
    assert_eq!(dynamo(&url, "GetItem", get).await.cache_status(), "hit");

    let admin = format!("0.0.0.0:{port}");
    let flushed = tokio::task::spawn_blocking(move || {
        dynamo_cache_command("admin", &["--admin", &admin, "flush", "--table", "orders"])
    })
    .await
    .unwrap();
    assert!(flushed.status.success(), "{flushed:?}");
    assert!(
        String::from_utf8_lossy(&flushed.stdout).contains(r#""table":"orders""#),
        "{flushed:?}"
    );
    assert_eq!(dynamo(&url, "GetItem", get).await.cache_status(), "miss");

    let admin = format!("127.0.0.1:{port}");
    let stats = tokio::task::spawn_blocking(move || {
        dynamo_cache_command("admin", &["--admin", &admin, "stats"])
    })
    .await
    .unwrap();
    assert!(stats.status.success(), "{stats:?}");
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert!(stats["item"]["entries"].is_number(), "{stats}");
    assert_eq!(terminate(child).await.code(), Some(0));

    // With a token: the client finds it through the proxy's config file.
    std::fs::write(dir.join("admin.token"), "t0ken\n").unwrap();
    let config = dir.join("dynamo-cache.toml");
    std::fs::write(&config, "[auth]\nadmin_token_file = \"admin.token\"\n").unwrap();
    let config = config.to_str().unwrap().to_string();
    let (child, _, printed) = serve_embedded(&["--config", &config]);
    let admin = urls_in(&printed[0])[1]
        .trim_start_matches("http://")
        .to_string();
    let (with, without) = tokio::task::spawn_blocking(move || {
        (
            dynamo_cache_command("admin", &["--config", &config, "--admin", &admin, "flush"]),
            dynamo_cache_command("admin", &["--admin", &admin, "flush"]),
        )
    })
    .await
    .unwrap();
    assert!(with.status.success(), "{with:?}");
    assert_eq!(without.status.code(), Some(1), "{without:?}");
    assert!(
        String::from_utf8_lossy(&without.stderr).contains("401"),
        "{without:?}"
    );
    assert_eq!(terminate(child).await.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
