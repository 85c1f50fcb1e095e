//! Read-your-writes for minutes: the randomised checker of the test suite (every write
//! operation and every cached read, mixed, through a relay that delays answers at random),
//! run for longer against the in-process proxy and emulator. Exits non-zero on a violation.
//!
//!     cargo bench --bench consistency                      # 180 s
//!     CONSISTENCY_SECS=600 cargo bench --bench consistency # longer

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs: u64 = std::env::var("CONSISTENCY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    let upstream = Upstream::start().await;
    let relay = shim::Shim::relay(&upstream.url, 3).await;
    let proxy = Proxy::start(&relay.url).await;
    create_table(&sdk(&upstream.url), checker::TABLE).await;
    eprintln!("consistency: {secs} s, 3 writers, 4 readers");
    let report = checker::run(&proxy.url, Duration::from_secs(secs), 3, 4).await;
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
    if !report.violations.is_empty() {
        std::process::exit(1);
    }
}
