//! The dashboard and alert rules shipped in `deploy/` parse, and every metric they query is one
//! the proxy exports (a renamed metric must not silently blank a panel or mute an alert).

use std::collections::BTreeSet;
use std::path::Path;

use dynamo_cache::ops::metrics::Metrics;

fn exported() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for name in Metrics::new().names() {
        for suffix in ["", "_bucket", "_sum", "_count"] {
            names.insert(format!("{name}{suffix}"));
        }
    }
    names
}

/// Every `dynamo_cache_*` identifier in a PromQL expression.
fn metrics_in(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("dynamo_cache_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        found.push(name);
    }
    found
}

fn check(expressions: &[String], source: &str) {
    let exported = exported();
    assert!(!expressions.is_empty(), "no expressions found in {source}");
    for expr in expressions {
        let names = metrics_in(expr);
        assert!(
            !names.is_empty(),
            "{source}: {expr:?} names no dynamo-cache metric"
        );
        for name in names {
            assert!(exported.contains(&name), "{source}: {name} is not exported");
        }
    }
}

fn deploy(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&deploy("grafana/dynamo-cache.json")).unwrap();
    let expressions: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(expressions.len() >= 8);
    check(&expressions, "grafana/dynamo-cache.json");
}

#[test]
fn the_alerts_query_only_exported_metrics() {
    let rules: serde_yaml::Value = serde_yaml::from_str(&deploy("prometheus/alerts.yml")).unwrap();
    let expressions: Vec<String> = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .map(|r| {
            assert!(r["alert"].as_str().is_some() && r["annotations"]["summary"].is_string());
            r["expr"].as_str().unwrap().to_string()
        })
        .collect();
    check(&expressions, "prometheus/alerts.yml");
}

#[test]
fn a_misspelt_metric_would_be_caught() {
    let exported = exported();
    assert!(exported.contains("dynamo_cache_request_duration_seconds_bucket"));
    assert!(!exported.contains("dynamo_cache_request_latency_seconds_bucket"));
    assert_eq!(
        metrics_in("rate(dynamo_cache_requests_total[5m]) / dynamo_cache_cache_bytes"),
        ["dynamo_cache_requests_total", "dynamo_cache_cache_bytes"]
    );
}
