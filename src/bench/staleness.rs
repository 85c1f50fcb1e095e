//! `dynamo-cache bench --staleness`: how long a write made somewhere else takes to be served by
//! a cache. Each round reads an item through every reader (so each has it cached), writes a new
//! version through the writer (DynamoDB itself, or another replica), then polls every reader
//! until it serves the new version, and records the delay from the write's acknowledgement.
//!
//! With DynamoDB Streams invalidation the delay is the stream's lag; without it, up to the TTL.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::bench::{self, BenchError};
use crate::upstream::credentials::DisplayChain;

/// Pause between two polls of a reader.
const POLL: Duration = Duration::from_millis(5);

/// What a staleness run needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where each round's write goes.
    pub writer: String,
    /// The caches measured (each polled until it serves the write).
    pub readers: Vec<String>,
    pub table: String,
    pub region: String,
    pub rounds: u64,
    /// Distinct items the rounds cycle through.
    pub keys: u64,
    pub item_size: usize,
    /// A reader that has not served the write after this long is counted as not seeing it.
    pub timeout: Duration,
    /// Create and fill the table (through the writer) first.
    pub seed_table: bool,
}

/// One reader's visibility delays.
#[derive(Debug, Clone, Serialize)]
pub struct ReaderReport {
    pub endpoint: String,
    pub rounds: u64,
    /// Rounds in which it served the new version within the timeout.
    pub seen: u64,
    /// Delay from the write's acknowledgement to the first read that returned it, in ms.
    pub delay_ms: DelayPercentiles,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DelayPercentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// The whole result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub writer: String,
    pub table: String,
    pub timeout_ms: u64,
    pub readers: Vec<ReaderReport>,
    pub interrupted: bool,
}

/// Runs `options.rounds` rounds; `stop` ends early with the rounds so far.
pub async fn run(options: &Options, stop: CancellationToken) -> Result<Report, BenchError> {
    let mut all = vec![options.writer.clone()];
    all.extend(options.readers.iter().cloned());
    let bench_options = bench::Options {
        endpoints: all,
        table: options.table.clone(),
        region: options.region.clone(),
        workload: bench::Workload {
            mix: bench::Mix::parse("get")?,
            keys: options.keys,
            distribution: bench::KeyDistribution::Uniform,
            item_size: options.item_size,
            batch_size: 1,
            consistent_read: false,
        },
        pacing: bench::Pacing {
            concurrency: 1,
            duration: None,
            requests: Some(options.rounds),
            warmup: Duration::ZERO,
            rate: None,
        },
        seed_table: options.seed_table,
        rng_seed: 1,
        progress: false,
    };
    let clients = bench::prepare(&bench_options, &stop).await?;
    let (writer, readers) = clients.split_first().expect("the writer is first");

    let mut delays: Vec<Histogram<u64>> = readers
        .iter()
        .map(|_| Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"))
        .collect();
    let mut seen = vec![0u64; readers.len()];
    let mut rounds = 0;
    // Versions above anything seeding wrote, distinct per run.
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64);
    for round in 0..options.rounds {
        if stop.is_cancelled() {
            break;
        }
        let k = round % options.keys;
        // Every reader has the current version cached.
        for (reader, endpoint) in readers.iter().zip(&options.readers) {
            for _ in 0..2 {
                version(reader, endpoint, &options.table, k).await?;
            }
        }
        let new = base + round;
        bench::put(writer, &options.table, k, options.item_size, new)
            .await
            .map_err(|cause| BenchError::Request {
                endpoint: options.writer.clone(),
                what: "PutItem",
                cause,
            })?;
        let written = Instant::now();
        // Every reader polled at once, each from the same write.
        let polls: Vec<_> = readers
            .iter()
            .zip(&options.readers)
            .map(|(reader, endpoint)| {
                let (reader, endpoint) = (reader.clone(), endpoint.clone());
                let (table, timeout) = (options.table.clone(), options.timeout);
                tokio::spawn(async move {
                    loop {
                        if version(&reader, &endpoint, &table, k).await? == Some(new) {
                            return Ok::<_, BenchError>(Some(written.elapsed()));
                        }
                        if written.elapsed() >= timeout {
                            return Ok(None);
                        }
                        tokio::time::sleep(POLL).await;
                    }
                })
            })
            .collect();
        for (i, poll) in polls.into_iter().enumerate() {
            if let Some(delay) = poll.await.expect("poll task panicked")? {
                seen[i] += 1;
                let _ = delays[i].record((delay.as_micros() as u64).max(1));
            }
        }
        rounds += 1;
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(Report {
        writer: options.writer.clone(),
        table: options.table.clone(),
        timeout_ms: options.timeout.as_millis() as u64,
        readers: options
            .readers
            .iter()
            .zip(delays.iter().zip(seen))
            .map(|(endpoint, (h, seen))| ReaderReport {
                endpoint: endpoint.clone(),
                rounds,
                seen,
                delay_ms: if h.is_empty() {
                    DelayPercentiles::default()
                } else {
                    DelayPercentiles {
                        p50: ms(h, 0.5),
                        p90: ms(h, 0.9),
                        p99: ms(h, 0.99),
                        max: h.max() as f64 / 1000.0,
                    }
                },
            })
            .collect(),
        interrupted: stop.is_cancelled(),
    })
}

/// The `ver` attribute of item `k` as `reader` serves it (an eventually consistent GetItem).
async fn version(
    reader: &Client,
    endpoint: &str,
    table: &str,
    k: u64,
) -> Result<Option<u64>, BenchError> {
    let out = reader
        .get_item()
        .table_name(table)
        .set_key(Some(bench::key_of(k)))
        .send()
        .await
        .map_err(|e| BenchError::Request {
            endpoint: endpoint.to_string(),
            what: "GetItem",
            cause: format!("{}: {}", bench::error_kind(&e), DisplayChain(&e)),
        })?;
    Ok(out.item.and_then(|item| match item.get("ver") {
        Some(AttributeValue::N(n)) => n.parse().ok(),
        _ => None,
    }))
}

impl Report {
    /// One row per reader.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = format!(
            "visibility of writes through {} (table {}), each reader polled every {} ms for up to {} ms\n\n",
            self.writer,
            self.table,
            POLL.as_millis(),
            self.timeout_ms
        );
        let _ = writeln!(
            out,
            "{:<36} {:>7} {:>7} {:>10} {:>10} {:>10} {:>10}",
            "reader", "rounds", "seen", "p50", "p90", "p99", "max"
        );
        for r in &self.readers {
            let ms = |v: f64| {
                if r.seen == 0 {
                    "-".to_string()
                } else {
                    format!("{v:.1}ms")
                }
            };
            let _ = writeln!(
                out,
                "{:<36} {:>7} {:>7} {:>10} {:>10} {:>10} {:>10}",
                r.endpoint,
                r.rounds,
                r.seen,
                ms(r.delay_ms.p50),
                ms(r.delay_ms.p90),
                ms(r.delay_ms.p99),
                ms(r.delay_ms.max)
            );
        }
        for r in self.readers.iter().filter(|r| r.seen < r.rounds) {
            let _ = writeln!(
                out,
                "\n{}: {} of {} writes not served within {} ms (stale until the TTL?)",
                r.endpoint,
                r.rounds - r.seen,
                r.rounds,
                self.timeout_ms
            );
        }
        if self.interrupted {
            out.push_str("\n(interrupted: the figures cover the rounds that ran)\n");
        }
        out
    }
}
