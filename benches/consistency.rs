//! Read-your-writes for minutes: the randomised checker of the test suite (every write
//! operation and every cached read, mixed), run for longer against the in-process proxy, in
//! two rounds:
//! 1. through a relay that delays answers at random, so slow fills land after newer writes;
//! 2. against two emulators whose replica applies each write late, as DynamoDB's eventually
//!    consistent reads lag (`CONSISTENCY_LAG_MS`, 200 by default).
//!
//! Each round prints its counts, and the second how its fills read: the share of strongly
//! consistent fills is the extra read cost of the consistency window under a write-heavy mix.
//! Exits non-zero on a violation.
//!
//!     cargo bench --bench consistency                      # 2 × 120 s
//!     CONSISTENCY_SECS=600 cargo bench --bench consistency # longer

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;

const WRITERS: usize = 3;
const READERS: usize = 4;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let secs = Duration::from_secs(env("CONSISTENCY_SECS", 120));
    let lag = Duration::from_millis(env("CONSISTENCY_LAG_MS", 200));
    let mut violations = 0;

    let upstream = Upstream::start().await;
    let relay = shim::Shim::relay(&upstream.url, 3).await;
    let proxy = Proxy::start(&relay.url).await;
    create_table(&sdk(&upstream.url), checker::TABLE).await;
    println!("round 1: {secs:?}, {WRITERS} writers, {READERS} readers, answers delayed at random");
    let report = checker::run(&proxy.url, secs, WRITERS, READERS, checker::index_at_once()).await;
    violations += print(&report);

    let lagging = lagging::Lagging::start(lag).await;
    create_table(&sdk(&lagging.url), checker::TABLE).await;
    let proxy = Proxy::start(&lagging.url).await;
    println!(
        "round 2: {secs:?}, {WRITERS} writers, {READERS} readers, the replica {lag:?} behind; \
         index Queries may lag as far as the replica does"
    );
    let report = checker::run(&proxy.url, secs, WRITERS, READERS, lagging.index_sees()).await;
    violations += print(&report);
    let metrics = proxy.metrics().await;
    let fills = |cache: &str, read: &str| {
        metric_value(
            &metrics,
            &format!(r#"dynamo_cache_fill_reads_total{{cache="{cache}",read="{read}"}}"#),
        )
    };
    for cache in ["item", "query"] {
        let (eventual, strong, uncached) = (
            fills(cache, "eventual"),
            fills(cache, "strong"),
            fills(cache, "uncached"),
        );
        let all = (eventual + strong + uncached).max(1.0);
        println!(
            "{cache:>5} fills: {all} — eventual {eventual}, strong {strong} ({:.1}%), \
             uncached index reads {uncached} ({:.1}%)",
            100.0 * strong / all,
            100.0 * uncached / all
        );
    }
    println!(
        "upstream reads: {} to the replica, {} strongly consistent to the primary",
        ["GetItem", "BatchGetItem", "Query", "Scan"]
            .iter()
            .map(|op| lagging.replica_reads(op))
            .sum::<usize>(),
        ["GetItem", "BatchGetItem", "Query", "Scan"]
            .iter()
            .map(|op| lagging.strong_reads(op))
            .sum::<usize>(),
    );
    if violations > 0 {
        std::process::exit(1);
    }
}

/// Prints a round's counts; its violations.
fn print(report: &checker::Report) -> usize {
    let writes: u64 = report.writes.values().sum();
    println!(
        "acknowledged writes: {writes} {:?}; refused by DynamoDB: {}",
        report.writes, report.refused
    );
    for (kind, (reads, hits)) in &report.reads {
        println!("{kind:>18}: {reads} reads checked, {hits} from memory");
    }
    println!("violations: {}", report.violations.len());
    for violation in report.violations.iter().take(10) {
        println!("  {violation}");
    }
    report.violations.len()
}
