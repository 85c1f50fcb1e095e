//! End to end on loopback: the release binary in front of an emulator, driven through the AWS
//! SDK by the engine of `dynamo-cache bench`. Three workloads, each measured through the proxy
//! and straight at the emulator in one run, so the ratios compare like with like:
//!
//! - GetItem hits (eventually consistent, after a warm-up that fills the cache);
//! - a mix of GetItem, Query and BatchGetItem hits with a zipfian key distribution;
//! - misses: strongly consistent GetItem, which the proxy always forwards.
//!
//! The emulator is reached through a delay line of `E2E_LATENCY_MS` (default 4) round trip, as
//! DynamoDB in the application's region would be; `E2E_LATENCY_MS=0` measures bare loopback.
//!
//! One request at a time by default (`E2E_CONCURRENCY` to change): the latency one call of an
//! application sees. With more, on two cores, the SDK client's own CPU soon sets the pace.
//!
//! Run with `cargo bench --bench end_to_end` (5 s per endpoint and workload), or set
//! `E2E_SECS=20` for longer runs.

#[path = "../tests/it/common/process.rs"]
mod process;

use std::time::Duration;

use dynamo_cache::bench::{self, KeyDistribution, Mix, Options, Pacing, Workload};
use process::Served;
use tokio_util::sync::CancellationToken;

/// The environment variable `name`, parsed, or `default` when it is unset or unreadable.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs: f64 = env_or("E2E_SECS", 5.0);
    let concurrency: usize = env_or("E2E_CONCURRENCY", 1);
    let latency_ms: u64 = env_or("E2E_LATENCY_MS", 4);
    let upstream = dynamo_cache::embedded::Embedded::start_with_latency(
        None,
        Duration::from_millis(latency_ms),
    )
    .await
    .unwrap();
    println!("emulator {latency_ms} ms away (round trip)");
    let proxy = Served::start(env!("CARGO_BIN_EXE_dynamo-cache"), &upstream.url, None);

    let workload = |mix: &str, distribution, consistent_read| Workload {
        mix: Mix::parse(mix).unwrap(),
        keys: 10_000,
        distribution,
        item_size: 400,
        batch_size: 10,
        consistent_read,
    };
    let runs = [
        (
            "GetItem hits",
            workload("get", KeyDistribution::Uniform, false),
        ),
        (
            "mixed reads, zipfian",
            workload(
                "get=80,query=10,batch-get=10",
                KeyDistribution::Zipfian { skew: 0.99 },
                false,
            ),
        ),
        (
            "misses (strongly consistent GetItem)",
            workload("get", KeyDistribution::Uniform, true),
        ),
    ];
    for (i, (name, workload)) in runs.into_iter().enumerate() {
        let options = Options {
            endpoints: vec![proxy.url.clone(), upstream.url.clone()],
            table: "end_to_end".into(),
            region: "us-east-1".into(),
            workload,
            pacing: Pacing {
                concurrency,
                duration: Some(Duration::from_secs_f64(secs)),
                requests: None,
                warmup: Duration::from_secs(2),
                rate: None,
            },
            seed_table: i == 0,
            rng_seed: 1,
            progress: false,
        };
        let report = bench::run(&options, CancellationToken::new())
            .await
            .unwrap();
        println!("== {name} (proxy first, then the emulator directly)");
        println!("{}", report.render());
    }
    assert!(proxy.terminate());
    upstream.stop().await;
}
