//! `dynamo-cache bench`, the real binary, against the proxy and the emulator behind it: the
//! figures it writes match what ran, the proxy really served hits, errors are clear, and
//! Ctrl-C still prints what was measured.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::common::*;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dynamo-cache-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn bench_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dynamo-cache"));
    command
        .arg("bench")
        .args(args)
        .args(["--quiet", "--region", REGION])
        // Placeholder credentials for loopback endpoints: never the machine's chain.
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs the bench off the runtime's threads (the proxy under test runs on them).
async fn bench(args: &[&str]) -> Output {
    let mut command = bench_command(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn bench_measures_both_endpoints_and_writes_json_and_plots() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream.url).await;
    let (json, svg) = (scratch("figures.json"), scratch("latency.svg"));
    let out = bench(&[
        "--endpoint",
        &proxy.url,
        "--compare",
        &upstream.url,
        "--table",
        "bench_mix",
        "--seed",
        "--keys",
        "200",
        "--mix",
        "get=70,query=10,batch-get=10,put=10",
        "--requests",
        "400",
        "--warmup",
        "0.3",
        "--concurrency",
        "4",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ])
    .await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));

    // The JSON counts exactly the requests asked for, per endpoint, all four operations.
    let figures: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let endpoints = figures["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 2);
    assert_eq!(endpoints[0]["endpoint"], proxy.url.as_str());
    assert_eq!(endpoints[1]["endpoint"], upstream.url.as_str());
    for e in endpoints {
        assert_eq!(e["requests"], 400, "{e}");
        assert_eq!(e["errors"], 0, "{e}");
        let by_op = e["by_op"].as_object().unwrap();
        let ops: Vec<&str> = by_op.keys().map(String::as_str).collect();
        assert_eq!(ops, ["BatchGetItem", "GetItem", "PutItem", "Query"]);
        let per_op: u64 = by_op
            .values()
            .map(|o| o["requests"].as_u64().unwrap())
            .sum();
        assert_eq!(per_op, 400);
        let l = &e["latency_us"];
        assert!(l["p50"].as_u64().unwrap() > 0);
        assert!(l["p50"].as_u64() <= l["p99"].as_u64() && l["p99"].as_u64() <= l["max"].as_u64());
    }
    assert_eq!(figures["speedup"][0]["baseline"], upstream.url.as_str());
    assert!(figures["speedup"][0]["p50"].as_f64().unwrap() > 0.0);

    // The table was seeded through the proxy with every key, and its reads were cache hits.
    let count = sdk(&upstream.url)
        .scan()
        .table_name("bench_mix")
        .select(aws_sdk_dynamodb::types::Select::Count)
        .send()
        .await
        .unwrap()
        .count();
    assert_eq!(count, 200);
    let hits = proxy
        .metric(r#"dynamo_cache_requests_total{op="GetItem",protocol="http",result="hit"}"#)
        .await;
    assert!(hits > 100.0, "only {hits} GetItem hits through the proxy");

    // The printed table names both endpoints and the ratio between them.
    assert!(
        stdout.contains(&proxy.url) && stdout.contains(&upstream.url),
        "{stdout}"
    );
    assert!(stdout.contains("faster"), "{stdout}");
    assert!(
        stdout.contains("  GetItem") && stdout.contains("  Query"),
        "{stdout}"
    );

    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg"), "{}", &plot[..plot.len().min(80)]);
    assert!(plot.contains(&proxy.url) && plot.contains("99%"));
    let _ = std::fs::remove_file(&json);
    let _ = std::fs::remove_file(&svg);
}

#[tokio::test]
async fn open_loop_runs_at_the_target_rate_and_draws_png() {
    let upstream = Upstream::start().await;
    let png = scratch("rate.png");
    let json = scratch("rate.json");
    let out = bench(&[
        "--endpoint",
        &upstream.url,
        "--table",
        "bench_rate",
        "--seed",
        "--keys",
        "50",
        "--distribution",
        "zipfian",
        "--rate",
        "200",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--consistent-read",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let figures: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // 200 requests are due in the first second; none is issued after the deadline.
    let requests = figures["endpoints"][0]["requests"].as_u64().unwrap();
    assert!((150..=200).contains(&requests), "{requests} requests");
    assert_eq!(figures["rate"], 200.0);
    assert_eq!(figures["distribution"]["kind"], "zipfian");
    assert_eq!(figures["consistent_read"], true);
    let image = std::fs::read(&png).unwrap();
    assert_eq!(&image[..8], b"\x89PNG\r\n\x1a\n");
    let _ = std::fs::remove_file(&png);
    let _ = std::fs::remove_file(&json);
}

#[tokio::test]
async fn clear_errors_for_unreachable_endpoints_missing_tables_and_bad_options() {
    // A port nothing listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let out = bench(&["--endpoint", &closed, "--requests", "10"]).await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot reach {closed}")),
        "{stderr}"
    );

    let upstream = Upstream::start().await;
    let out = bench(&[
        "--endpoint",
        &upstream.url,
        "--table",
        "absent",
        "--requests",
        "10",
    ])
    .await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("table \"absent\" does not exist") && stderr.contains("--seed"),
        "{stderr}"
    );

    // A table whose key schema the bench cannot use.
    let hash_only = r#"{"TableName":"other_schema","AttributeDefinitions":[{"AttributeName":"id","AttributeType":"S"}],"KeySchema":[{"AttributeName":"id","KeyType":"HASH"}],"BillingMode":"PAY_PER_REQUEST"}"#;
    assert_eq!(
        dynamo(&upstream.url, "CreateTable", hash_only).await.status,
        200
    );
    let out = bench(&[
        "--endpoint",
        &upstream.url,
        "--table",
        "other_schema",
        "--requests",
        "10",
    ])
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("key schema"),
        "{}",
        text(&out.stderr)
    );

    for (args, says) in [
        (&["--mix", "scan=1"][..], "unknown operation"),
        (&["--batch-size", "101"][..], "--batch-size"),
        (&["--rate", "0"][..], "--rate"),
        (&["--plot", "chart.gif"][..], ".svg or .png"),
    ] {
        let mut all = vec!["--endpoint", upstream.url.as_str()];
        all.extend_from_slice(args);
        let out = bench(&all).await;
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[tokio::test]
async fn ctrl_c_prints_what_was_measured() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream.url).await;
    let child = bench_command(&[
        "--endpoint",
        &proxy.url,
        "--table",
        "bench_interrupt",
        "--seed",
        "--keys",
        "20",
        "--duration",
        "60",
        "--warmup",
        "0",
        "--concurrency",
        "2",
    ])
    .spawn()
    .unwrap();
    // Interrupt once the measured run is under way (the proxy has served hits).
    while proxy
        .metric(r#"dynamo_cache_requests_total{op="GetItem",protocol="http",result="hit"}"#)
        .await
        < 50.0
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("interrupted"), "{stdout}");
    assert!(stdout.contains(&proxy.url), "{stdout}");
}

#[tokio::test]
async fn bench_drives_the_dax_listener_with_its_own_client() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream.url).await;
    let dax = format!("dax://{}", proxy.dax_addr);
    let json = scratch("dax-figures.json");
    let out = bench(&[
        "--endpoint",
        &proxy.url,
        "--compare",
        &dax,
        "--table",
        "bench_dax",
        "--seed",
        "--keys",
        "100",
        "--mix",
        "get=7,query=1,batch-get=1,put=1",
        "--requests",
        "300",
        "--warmup",
        "0.2",
        "--concurrency",
        "2",
        "--json",
        json.to_str().unwrap(),
    ])
    .await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let figures: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let over_dax = &figures["endpoints"][1];
    assert_eq!(over_dax["endpoint"], dax.as_str());
    assert_eq!(over_dax["requests"], 300, "{over_dax}");
    assert_eq!(over_dax["errors"], 0, "{over_dax}");
    assert_eq!(over_dax["by_op"].as_object().unwrap().len(), 4);

    // The DAX requests were the proxy's, and its reads hits.
    let hits = proxy
        .metric(r#"dynamo_cache_requests_total{op="GetItem",protocol="dax",result="hit"}"#)
        .await;
    assert!(hits > 100.0, "only {hits} GetItem hits over DAX");
    let puts = proxy
        .metric(r#"dynamo_cache_requests_total{op="PutItem",protocol="dax",result="bypass"}"#)
        .await;
    assert!(puts > 0.0, "no PutItem over DAX");
}
