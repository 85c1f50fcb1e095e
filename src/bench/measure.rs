//! The measured runs: workers that send the mix, latencies into HDR histograms (one per
//! worker and operation, merged at the end), a progress bar.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio_util::sync::CancellationToken;

use super::report::OpReport;
use super::workload::{KeyPicker, item_of};
use super::{
    EndpointReport, ITEMS_PER_PARTITION, MAX_LATENCY_US, Op, Options, PK, Pacing, Percentiles,
    REQUEST_TIMEOUT, SK, Target, Workload, dax, error_kind, key_of,
};

pub(super) fn progress_bar(visible: bool, len: u64, label: &str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {percent:>3}% {msg}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

pub(super) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("bounds are valid")
}

/// One worker's (or the merged) recordings of one run.
pub(super) struct Recording {
    /// Successful requests' latency, per operation.
    latency: [Histogram<u64>; 4],
    /// Requests per operation, successful or not.
    requests: [u64; 4],
    errors: [u64; 4],
    errors_by_kind: BTreeMap<String, u64>,
    seconds: f64,
}

impl Recording {
    fn new() -> Recording {
        Recording {
            latency: std::array::from_fn(|_| new_histogram()),
            requests: [0; 4],
            errors: [0; 4],
            errors_by_kind: BTreeMap::new(),
            seconds: 0.0,
        }
    }

    fn merge(&mut self, other: Recording) {
        for i in 0..4 {
            self.latency[i]
                .add(&other.latency[i])
                .expect("histograms share bounds");
            self.requests[i] += other.requests[i];
            self.errors[i] += other.errors[i];
        }
        for (kind, n) in other.errors_by_kind {
            *self.errors_by_kind.entry(kind).or_default() += n;
        }
    }

    pub(super) fn report(&self, endpoint: &str) -> EndpointReport {
        let mut all = new_histogram();
        for h in &self.latency {
            all.add(h).expect("histograms share bounds");
        }
        let requests: u64 = self.requests.iter().sum();
        let by_op = Op::ALL
            .iter()
            .filter(|op| self.requests[op.index()] > 0)
            .map(|op| {
                let i = op.index();
                (
                    op.name(),
                    OpReport {
                        requests: self.requests[i],
                        errors: self.errors[i],
                        latency_us: Percentiles::of(&self.latency[i]),
                    },
                )
            })
            .collect();
        EndpointReport {
            endpoint: endpoint.to_string(),
            requests,
            errors: self.errors.iter().sum(),
            errors_by_kind: self.errors_by_kind.clone(),
            seconds: self.seconds,
            throughput: if self.seconds > 0.0 {
                requests as f64 / self.seconds
            } else {
                0.0
            },
            latency_us: Percentiles::of(&all),
            by_op,
            percentile_curve: percentile_curve(&all),
            histogram: all,
        }
    }
}

/// Points of the latency distribution from the median to the maximum, denser in the tail.
pub(super) fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut points: Vec<(f64, u64)> = h
        .iter_quantiles(4)
        .map(|v| (v.quantile_iterated_to() * 100.0, v.value_iterated_to()))
        .filter(|(p, _)| *p < 100.0)
        .collect();
    points.dedup_by(|a, b| a.0 == b.0);
    points.push((100.0, h.max()));
    points
}

/// Counts requests and errors as they complete, for the progress bar.
#[derive(Default)]
struct Live {
    requests: AtomicU64,
    errors: AtomicU64,
}

/// One run (warm-up or measured) against one endpoint.
pub(super) async fn run_one(
    client: &Target,
    options: &Options,
    pacing: &Pacing,
    picker: &Arc<KeyPicker>,
    label: &str,
    stop: &CancellationToken,
) -> Recording {
    let started = Instant::now();
    let deadline = pacing.duration.map(|d| started + d);
    let (bar_len, by_time) = match (pacing.requests, pacing.duration) {
        (Some(n), _) => (n, false),
        (None, Some(d)) => (d.as_millis() as u64, true),
        (None, None) => unreachable!("validated: a duration or a count"),
    };
    let bar = progress_bar(options.progress, bar_len, label);
    let live = Arc::new(Live::default());
    // Ticket i is the i-th request: its intended start in an open loop, and the count limit.
    let tickets = Arc::new(AtomicU64::new(0));
    let done = CancellationToken::new();

    let mut workers = Vec::new();
    for worker in 0..pacing.concurrency {
        let ctx = Worker {
            target: client.clone(),
            dax: None,
            table: options.table.clone(),
            workload: options.workload.clone(),
            picker: picker.clone(),
            rng: SmallRng::seed_from_u64(options.rng_seed.wrapping_add(worker as u64)),
            tickets: tickets.clone(),
            live: live.clone(),
            started,
            deadline,
            limit: pacing.requests,
            interval: pacing.rate.map(|r| Duration::from_secs_f64(1.0 / r)),
            stop: stop.clone(),
        };
        workers.push(tokio::spawn(ctx.run()));
    }

    let ticker = {
        let (bar, live, done) = (bar.clone(), live.clone(), done.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = done.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let n = live.requests.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                bar.set_position(if by_time {
                    started.elapsed().as_millis() as u64
                } else {
                    n
                });
                bar.set_message(format!(
                    "{n} requests, {:.0}/s, {} errors",
                    n as f64 / secs,
                    live.errors.load(Ordering::Relaxed)
                ));
            }
        })
    };

    let mut total = Recording::new();
    for worker in workers {
        total.merge(worker.await.expect("bench worker panicked"));
    }
    total.seconds = started.elapsed().as_secs_f64();
    done.cancel();
    let _ = ticker.await;
    bar.finish_and_clear();
    total
}

/// One of `concurrency` request loops.
struct Worker {
    target: Target,
    /// This worker's DAX connection, opened on first use (and again after a failure).
    dax: Option<dax::DaxConnection>,
    table: String,
    workload: Workload,
    picker: Arc<KeyPicker>,
    rng: SmallRng,
    tickets: Arc<AtomicU64>,
    live: Arc<Live>,
    started: Instant,
    deadline: Option<Instant>,
    limit: Option<u64>,
    /// Open loop: ticket i is due at `started + i * interval`.
    interval: Option<Duration>,
    stop: CancellationToken,
}

impl Worker {
    async fn run(mut self) -> Recording {
        let mut recording = Recording::new();
        let mut version = 0u64;
        loop {
            let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
            if self.limit.is_some_and(|n| ticket >= n) || self.stop.is_cancelled() {
                break;
            }
            let due = match self.interval {
                Some(interval) => self.started + interval.mul_f64(ticket as f64),
                None => Instant::now(),
            };
            if self.deadline.is_some_and(|d| due >= d) {
                break;
            }
            if due > Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => {}
                    _ = self.stop.cancelled() => break,
                }
            }
            let op = self.workload.mix.pick(&mut self.rng);
            version += 1;
            let result = self.issue(op, version).await;
            let micros = due.elapsed().as_micros() as u64;
            let i = op.index();
            recording.requests[i] += 1;
            self.live.requests.fetch_add(1, Ordering::Relaxed);
            match result {
                Ok(()) => {
                    let _ = recording.latency[i].record(micros.clamp(1, MAX_LATENCY_US));
                }
                Err(kind) => {
                    recording.errors[i] += 1;
                    *recording
                        .errors_by_kind
                        .entry(format!("{}: {kind}", op.name()))
                        .or_default() += 1;
                    self.live.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        recording
    }

    async fn issue(&mut self, op: Op, version: u64) -> Result<(), String> {
        let client = match &self.target {
            Target::Sdk(client) => client.clone(),
            Target::Dax(endpoint) => {
                let endpoint = endpoint.clone();
                let result =
                    tokio::time::timeout(REQUEST_TIMEOUT, self.issue_dax(&endpoint, op, version))
                        .await
                        .unwrap_or_else(|_| Err("timeout".into()));
                if result
                    .as_ref()
                    .is_err_and(|e| e.starts_with("connection") || e == "timeout")
                {
                    self.dax = None;
                }
                return result;
            }
        };
        self.issue_sdk(&client, op, version).await
    }

    /// The keys of one BatchGetItem, each once: DynamoDB refuses a batch that names a key twice.
    fn batch_keys(&mut self) -> Vec<u64> {
        let w = &self.workload;
        let mut picked: Vec<u64> = (0..w.batch_size.min(w.keys as usize))
            .map(|_| self.picker.pick(&mut self.rng))
            .collect();
        picked.sort_unstable();
        picked.dedup();
        picked
    }

    async fn issue_dax(&mut self, endpoint: &str, op: Op, version: u64) -> Result<(), String> {
        if self.dax.is_none() {
            self.dax = Some(
                dax::DaxConnection::connect(endpoint)
                    .await
                    .map_err(|_| "connection failed".to_string())?,
            );
        }
        let w = self.workload.clone();
        let table = self.table.clone();
        let consistent = w.consistent_read;
        let partition = |k: u64| format!("k{}", k / ITEMS_PER_PARTITION);
        let key = self.picker.pick(&mut self.rng);
        let picked: Vec<(String, u64)> = match op {
            Op::BatchGetItem => self
                .batch_keys()
                .into_iter()
                .map(|k| (partition(k), k % ITEMS_PER_PARTITION))
                .collect(),
            _ => Vec::new(),
        };
        let conn = self.dax.as_mut().expect("connected above");
        match op {
            Op::GetItem => {
                conn.get_item(
                    &table,
                    &partition(key),
                    key % ITEMS_PER_PARTITION,
                    consistent,
                )
                .await
            }
            Op::Query => conn.query(&table, &partition(key), consistent).await,
            Op::BatchGetItem => conn.batch_get(&table, &picked, consistent).await,
            Op::PutItem => {
                let others = item_of(key, w.item_size, version)
                    .into_iter()
                    .filter(|(name, _)| name != PK && name != SK)
                    .map(|(name, value)| {
                        let value = match value {
                            AttributeValue::S(s) => serde_json::json!({ "S": s }),
                            AttributeValue::N(n) => serde_json::json!({ "N": n }),
                            _ => unreachable!("bench items hold strings and numbers"),
                        };
                        (name, value)
                    })
                    .collect();
                conn.put_item(&table, &partition(key), key % ITEMS_PER_PARTITION, &others)
                    .await
            }
        }
    }

    async fn issue_sdk(&mut self, client: &Client, op: Op, version: u64) -> Result<(), String> {
        let picked = match op {
            Op::BatchGetItem => self.batch_keys(),
            _ => Vec::new(),
        };
        let w = &self.workload;
        let table = self.table.as_str();
        let consistent = w.consistent_read;
        match op {
            Op::GetItem => {
                let key = self.picker.pick(&mut self.rng);
                client
                    .get_item()
                    .table_name(table)
                    .set_key(Some(key_of(key)))
                    .consistent_read(consistent)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| error_kind(&e))
            }
            Op::Query => {
                let partition = self.picker.pick(&mut self.rng) / ITEMS_PER_PARTITION;
                client
                    .query()
                    .table_name(table)
                    .key_condition_expression("#pk = :pk")
                    .expression_attribute_names("#pk", PK)
                    .expression_attribute_values(":pk", AttributeValue::S(format!("k{partition}")))
                    .consistent_read(consistent)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| error_kind(&e))
            }
            Op::BatchGetItem => {
                let keys = KeysAndAttributes::builder()
                    .set_keys(Some(picked.into_iter().map(key_of).collect()))
                    .consistent_read(consistent)
                    .build()
                    .expect("keys are set");
                client
                    .batch_get_item()
                    .request_items(table, keys)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| error_kind(&e))
            }
            Op::PutItem => {
                let key = self.picker.pick(&mut self.rng);
                client
                    .put_item()
                    .table_name(table)
                    .set_item(Some(item_of(key, w.item_size, version)))
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| error_kind(&e))
            }
        }
    }
}
