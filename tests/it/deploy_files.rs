//! The dashboard and alert rules shipped in `deploy/` parse, and every metric they query is one
//! the proxy exports (a renamed metric must not silently blank a panel or mute an alert).

use std::collections::BTreeSet;
use std::path::Path;

use dynamo_cache::metrics::Metrics;

fn exported() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for name in Metrics::new().names() {
        for suffix in ["", "_bucket", "_sum", "_count"] {
            names.insert(format!("{name}{suffix}"));
        }
    }
    names
}

/// Every metric identifier in a PromQL expression: the proxy's own (`dynamo_cache_*`) and the
/// process metrics it exports (`process_*`).
fn metrics_in(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(at) = ["dynamo_cache_", "process_"]
        .iter()
        .filter_map(|prefix| rest.find(prefix))
        .min()
    {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        found.push(name);
    }
    found
}

fn dashboard_expressions() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&deploy("grafana/dynamo-cache.json")).unwrap();
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect()
}

fn alert_expressions() -> Vec<String> {
    let rules: serde_yaml::Value = serde_yaml::from_str(&deploy("prometheus/alerts.yml")).unwrap();
    rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .map(|r| {
            assert!(r["alert"].as_str().is_some() && r["annotations"]["summary"].is_string());
            r["expr"].as_str().unwrap().to_string()
        })
        .collect()
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
    let expressions = dashboard_expressions();
    assert!(expressions.len() >= 8);
    check(&expressions, "grafana/dynamo-cache.json");
}

#[test]
fn the_alerts_query_only_exported_metrics() {
    check(&alert_expressions(), "prometheus/alerts.yml");
}

/// What a running proxy's `/metrics` really exports is what the dashboard and the alerts
/// query; every metric of the proxy's own has a panel; every panel follows the instance
/// selector.
#[tokio::test]
async fn the_dashboard_and_alerts_match_what_metrics_exports() {
    use crate::common::*;
    // A little traffic of every kind, so that series created on first use exist.
    let env = Relayed::start(|_| {}).await;
    let item = r#"{"TableName":"orders","Item":{"pk":{"S":"a"},"sk":{"N":"1"}}}"#;
    let key = r#"{"TableName":"orders","Key":{"pk":{"S":"a"},"sk":{"N":"1"}}}"#;
    let query = r#"{"TableName":"orders","KeyConditionExpression":"pk = :p","ExpressionAttributeValues":{":p":{"S":"a"}}}"#;
    env.call("PutItem", item).await;
    env.call("GetItem", key).await;
    env.call("Query", query).await;
    env.call("Query", query).await;
    // And one exchange that gets no answer.
    env.relay
        .set_reply_for("ListTables", crate::common::shim::Reply::Reset);
    env.call("ListTables", "{}").await;
    let scraped = env.proxy.metrics().await;
    let families: BTreeSet<String> = scraped
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let served = |name: &str| {
        ["", "_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| families.contains(base))
        })
    };
    let dashboard = dashboard_expressions();
    for (source, expressions) in [("dashboard", &dashboard), ("alerts", &alert_expressions())] {
        for expr in expressions {
            for name in metrics_in(expr) {
                assert!(served(&name), "{source}: {name} is not in /metrics");
            }
        }
    }
    let shown: BTreeSet<String> = dashboard.iter().flat_map(|e| metrics_in(e)).collect();
    for family in families.iter().filter(|f| f.starts_with("dynamo_cache_")) {
        assert!(
            ["", "_bucket", "_count"]
                .iter()
                .any(|suffix| shown.contains(&format!("{family}{suffix}"))),
            "{family} has no panel"
        );
    }
    for expr in &dashboard {
        let names = metrics_in(expr).len();
        assert_eq!(
            expr.matches(r#"instance=~"$instance""#).count(),
            names,
            "{expr} ignores the instance selector"
        );
    }
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
