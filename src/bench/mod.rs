//! `dynamo-cache bench`: read latency as an application sees it, through the real AWS SDK, at one
//! endpoint or two (the proxy and DynamoDB itself, say), with the same workload against each.
//!
//! The steps: check every endpoint answers and has the table (creating and filling it with
//! `--seed`) -> per endpoint, a warm-up whose figures are thrown away (it also fills a cache),
//! then the measured run -> a report per endpoint (throughput, percentiles, errors by kind) and
//! the ratios between the two.
//!
//! Latencies go into HDR histograms (microseconds, 3 significant digits), one per worker and
//! operation, merged at the end so recording never takes a lock. With a target rate (open loop)
//! every request has an intended start time and its latency counts from then, so a stalled
//! endpoint is charged for the requests it kept waiting (no coordinated omission).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, KeysAndAttributes,
    PutRequest, ScalarAttributeType, TableStatus, WriteRequest,
};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution as _, Zipf};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::upstream::credentials::DisplayChain;

pub mod args;
pub mod dax;
pub mod plot;
pub mod staleness;

/// Items per partition: key `k` is item (`pk = "k{k / 10}"`, `sk = k % 10`), so a Query reads
/// one partition of ten items.
pub const ITEMS_PER_PARTITION: u64 = 10;
/// The bench table's key attributes (what `--seed` creates).
const PK: &str = "pk";
const SK: &str = "sk";
/// Largest latency the histograms hold (60 s, in µs); longer ones are clamped to it.
const MAX_LATENCY_US: u64 = 60_000_000;
/// How long one request may take before it counts as a timeout error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Endpoint checks and table creation use a shorter leash: a wrong URL should fail fast.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(5);

/// What went wrong before any figure could be measured.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Options(String),
    #[error("cannot reach {endpoint}: {cause}")]
    Unreachable { endpoint: String, cause: String },
    #[error("table {table:?} does not exist at {endpoint}; pass --seed to create and fill it")]
    NoTable { table: String, endpoint: String },
    #[error(
        "table {table:?} at {endpoint} has key schema {found}; the bench needs {PK} (S, HASH) \
         and {SK} (N, RANGE): use another --table, or --seed to create one"
    )]
    WrongSchema {
        table: String,
        endpoint: String,
        found: String,
    },
    #[error("{endpoint}: {what}: {cause}")]
    Request {
        endpoint: String,
        what: &'static str,
        cause: String,
    },
    #[error("writing {path}: {cause}")]
    Output { path: PathBuf, cause: String },
}

/// A read or write the workload issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Op {
    GetItem,
    Query,
    BatchGetItem,
    PutItem,
}

impl Op {
    const ALL: [Op; 4] = [Op::GetItem, Op::Query, Op::BatchGetItem, Op::PutItem];

    fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::GetItem => "GetItem",
            Op::Query => "Query",
            Op::BatchGetItem => "BatchGetItem",
            Op::PutItem => "PutItem",
        }
    }

    fn parse(word: &str) -> Option<Op> {
        match word.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "get" | "getitem" => Some(Op::GetItem),
            "query" => Some(Op::Query),
            "batchget" | "batchgetitem" => Some(Op::BatchGetItem),
            "put" | "putitem" => Some(Op::PutItem),
            _ => None,
        }
    }
}

/// The operation mix, as cumulative weights out of their total.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    weights: Vec<(Op, u32)>,
}

impl Mix {
    /// `get=90,query=5,batch-get=3,put=2`; a bare name weighs 1 (`get` alone = only GetItem).
    pub fn parse(text: &str) -> Result<Mix, BenchError> {
        let mut weights: Vec<(Op, u32)> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = match part.split_once('=') {
                Some((name, weight)) => {
                    let weight = weight.trim().parse::<u32>().map_err(|_| {
                        BenchError::Options(format!("--mix: {part:?}: weight is not a number"))
                    })?;
                    (name.trim(), weight)
                }
                None => (part, 1),
            };
            let op = Op::parse(name).ok_or_else(|| {
                BenchError::Options(format!(
                    "--mix: unknown operation {name:?} (get, query, batch-get, put)"
                ))
            })?;
            if weights.iter().any(|(o, _)| *o == op) {
                return Err(BenchError::Options(format!("--mix names {name} twice")));
            }
            if weight > 0 {
                weights.push((op, weight));
            }
        }
        if weights.is_empty() {
            return Err(BenchError::Options(
                "--mix needs at least one operation with a weight above 0".into(),
            ));
        }
        Ok(Mix { weights })
    }

    fn total(&self) -> u32 {
        self.weights.iter().map(|(_, w)| w).sum()
    }

    fn pick(&self, rng: &mut SmallRng) -> Op {
        let mut roll = rng.random_range(0..self.total());
        for &(op, weight) in &self.weights {
            if roll < weight {
                return op;
            }
            roll -= weight;
        }
        unreachable!("roll is below the total of the weights")
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.total() as f64;
        let parts: Vec<String> = self
            .weights
            .iter()
            .map(|(op, w)| format!("{} {:.0}%", op.name(), *w as f64 * 100.0 / total))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// Which keys the workload reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum KeyDistribution {
    /// Every key equally likely.
    Uniform,
    /// Key of rank r (0 = hottest) with probability proportional to 1 / (r + 1)^skew.
    Zipfian { skew: f64 },
}

/// Draws key indexes in `0..keys`.
struct KeyPicker {
    keys: u64,
    zipf: Option<Zipf<f64>>,
}

impl KeyPicker {
    fn new(keys: u64, distribution: KeyDistribution) -> Result<KeyPicker, BenchError> {
        let zipf = match distribution {
            KeyDistribution::Uniform => None,
            KeyDistribution::Zipfian { skew } => Some(
                Zipf::new(keys as f64, skew)
                    .map_err(|e| BenchError::Options(format!("--zipf-skew {skew}: {e}")))?,
            ),
        };
        Ok(KeyPicker { keys, zipf })
    }

    fn pick(&self, rng: &mut SmallRng) -> u64 {
        match &self.zipf {
            None => rng.random_range(0..self.keys),
            // Zipf samples ranks 1..=n.
            Some(zipf) => (zipf.sample(rng) as u64).clamp(1, self.keys) - 1,
        }
    }
}

/// What each request does.
#[derive(Debug, Clone)]
pub struct Workload {
    pub mix: Mix,
    /// Distinct items (`--keys`).
    pub keys: u64,
    pub distribution: KeyDistribution,
    /// Approximate item size in bytes, as DynamoDB counts it (names plus values).
    pub item_size: usize,
    /// Keys per BatchGetItem (1 to 100).
    pub batch_size: usize,
    /// Ask for strongly consistent reads (never served from a cache).
    pub consistent_read: bool,
}

/// When a run stops, and how requests are paced.
#[derive(Debug, Clone)]
pub struct Pacing {
    /// Concurrent requests in flight (workers).
    pub concurrency: usize,
    /// Stop after this long (with `requests`, whichever comes first).
    pub duration: Option<Duration>,
    /// Stop after this many requests.
    pub requests: Option<u64>,
    /// Unmeasured run before each measured one.
    pub warmup: Duration,
    /// Open loop at this many requests per second in total; `None` = closed loop.
    pub rate: Option<f64>,
}

/// Everything `bench` needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Endpoints to measure, in order; the first is the one compared against the others.
    pub endpoints: Vec<String>,
    pub table: String,
    pub region: String,
    pub workload: Workload,
    pub pacing: Pacing,
    /// Create the table if missing and write every item before measuring.
    pub seed_table: bool,
    /// Seed of the key sequence, so runs can be repeated.
    pub rng_seed: u64,
    /// Draw progress bars (on a terminal).
    pub progress: bool,
}

impl Options {
    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |m: &str| Err(BenchError::Options(m.to_string()));
        if self.endpoints.is_empty() {
            return bad("--endpoint is required");
        }
        for endpoint in &self.endpoints {
            if is_dax(endpoint) {
                if endpoint
                    .trim_start_matches("dax://")
                    .parse::<std::net::SocketAddr>()
                    .is_err()
                {
                    return Err(BenchError::Options(format!(
                        "{endpoint:?} is not a dax://IP:PORT endpoint"
                    )));
                }
                continue;
            }
            let uri: http::Uri = endpoint.parse().map_err(|_| {
                BenchError::Options(format!("{endpoint:?} is not a URL (http://host:port)"))
            })?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(BenchError::Options(format!(
                    "{endpoint:?} is not an http://, https:// or dax:// URL"
                )));
            }
        }
        let w = &self.workload;
        let p = &self.pacing;
        if w.keys == 0 {
            return bad("--keys must be at least 1");
        }
        if self.seed_table && self.endpoints.iter().all(|e| is_dax(e)) {
            return bad("--seed needs an http:// endpoint to create and fill the table through");
        }
        if !(1..=100).contains(&w.batch_size) {
            return bad("--batch-size must be between 1 and 100 (DynamoDB's limit)");
        }
        if w.item_size > 400 * 1024 {
            return bad("--item-size must be at most 409600 bytes (DynamoDB's item limit)");
        }
        if p.concurrency == 0 {
            return bad("--concurrency must be at least 1");
        }
        if p.duration.is_none() && p.requests.is_none() {
            return bad("give --duration or --requests (or both)");
        }
        if p.duration.is_some_and(|d| d.is_zero()) || p.requests == Some(0) {
            return bad("--duration and --requests must be above 0");
        }
        if p.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return bad("--rate must be a positive number of requests per second");
        }
        if let KeyDistribution::Zipfian { skew } = w.distribution
            && !(skew.is_finite() && skew >= 0.0)
        {
            return bad("--zipf-skew must be 0 or more");
        }
        Ok(())
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// One operation's figures at one endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    pub requests: u64,
    pub errors: u64,
    pub latency_us: Percentiles,
}

/// One endpoint's figures.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointReport {
    pub endpoint: String,
    /// Completed requests, successful or not.
    pub requests: u64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Length of the measured run.
    pub seconds: f64,
    /// Requests per second (successful or not).
    pub throughput: f64,
    /// Latency of successful requests.
    pub latency_us: Percentiles,
    pub by_op: BTreeMap<&'static str, OpReport>,
    /// (percentile, µs) points of the latency distribution, for charts.
    pub percentile_curve: Vec<(f64, u64)>,
    /// The whole distribution of successful requests, for plots.
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

/// How many times faster the first endpoint is than another (above 1 = faster).
#[derive(Debug, Clone, Serialize)]
pub struct Speedup {
    pub baseline: String,
    pub p50: f64,
    pub p99: f64,
    pub throughput: f64,
}

/// The whole result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub table: String,
    pub mix: String,
    pub keys: u64,
    pub distribution: KeyDistribution,
    pub item_size: usize,
    pub consistent_read: bool,
    pub concurrency: usize,
    /// Target rate of an open-loop run (`None` = closed loop).
    pub rate: Option<f64>,
    pub endpoints: Vec<EndpointReport>,
    pub speedup: Vec<Speedup>,
    /// Ctrl-C stopped the run early; the figures cover what ran.
    pub interrupted: bool,
}

/// Runs the whole bench; `stop` (Ctrl-C) ends it early with the figures so far.
pub async fn run(options: &Options, stop: CancellationToken) -> Result<Report, BenchError> {
    let clients = prepare_targets(options, &stop).await?;
    let picker = Arc::new(KeyPicker::new(
        options.workload.keys,
        options.workload.distribution,
    )?);
    let mut endpoints = Vec::new();
    for (client, endpoint) in clients.iter().zip(&options.endpoints) {
        if stop.is_cancelled() {
            break;
        }
        if !options.pacing.warmup.is_zero() {
            let warmup = Pacing {
                duration: Some(options.pacing.warmup),
                requests: None,
                ..options.pacing.clone()
            };
            let label = format!("warm-up  {endpoint}");
            measure(client, options, &warmup, &picker, &label, &stop).await;
        }
        let label = format!("measured {endpoint}");
        let run = measure(client, options, &options.pacing, &picker, &label, &stop).await;
        endpoints.push(run.report(endpoint));
    }
    let speedup = endpoints
        .iter()
        .skip(1)
        .map(|baseline| speedup(&endpoints[0], baseline))
        .collect();
    let w = &options.workload;
    Ok(Report {
        table: options.table.clone(),
        mix: w.mix.to_string(),
        keys: w.keys,
        distribution: w.distribution,
        item_size: w.item_size,
        consistent_read: w.consistent_read,
        concurrency: options.pacing.concurrency,
        rate: options.pacing.rate,
        endpoints,
        speedup,
        interrupted: stop.is_cancelled(),
    })
}

/// How the bench reaches one endpoint.
#[derive(Clone)]
pub enum Target {
    /// Through the AWS SDK (`http://`, `https://`).
    Sdk(Client),
    /// Through the bench's own DAX client (`dax://`), a connection per worker.
    Dax(String),
}

fn is_dax(endpoint: &str) -> bool {
    endpoint.starts_with("dax://")
}

/// Checks the options, builds one client per endpoint, checks each HTTP endpoint has the table
/// (creating and filling it through the first with `seed_table`).
pub async fn prepare_targets(
    options: &Options,
    stop: &CancellationToken,
) -> Result<Vec<Target>, BenchError> {
    options.validate()?;
    let credentials = credentials(&options.endpoints, &options.region).await;
    let targets: Vec<Target> = options
        .endpoints
        .iter()
        .map(|e| match is_dax(e) {
            true => Target::Dax(e.clone()),
            false => Target::Sdk(client(e, &options.region, credentials.clone())),
        })
        .collect();
    let mut seeder = None;
    for (target, endpoint) in targets.iter().zip(&options.endpoints) {
        let Target::Sdk(client) = target else {
            continue;
        };
        let seed_here = options.seed_table && seeder.is_none();
        check_table(client, endpoint, &options.table, seed_here).await?;
        seeder.get_or_insert(client);
    }
    if let (true, Some(client)) = (options.seed_table, seeder) {
        seed(client, options, stop).await?;
    }
    Ok(targets)
}

/// [`prepare_targets`] for HTTP endpoints only (the staleness bench).
pub async fn prepare(
    options: &Options,
    stop: &CancellationToken,
) -> Result<Vec<Client>, BenchError> {
    prepare_targets(options, stop)
        .await?
        .into_iter()
        .map(|target| match target {
            Target::Sdk(client) => Ok(client),
            Target::Dax(endpoint) => Err(BenchError::Options(format!(
                "{endpoint}: this bench reads over HTTP only"
            ))),
        })
        .collect()
}

/// Writes item `k` (about `size` bytes, attribute `ver` = `version`).
pub async fn put(
    client: &Client,
    table: &str,
    k: u64,
    size: usize,
    version: u64,
) -> Result<(), String> {
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item_of(k, size, version)))
        .send()
        .await
        .map(drop)
        .map_err(|e| format!("{}: {}", error_kind(&e), DisplayChain(&e)))
}

fn speedup(first: &EndpointReport, baseline: &EndpointReport) -> Speedup {
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    Speedup {
        baseline: baseline.endpoint.clone(),
        p50: ratio(baseline.latency_us.p50 as f64, first.latency_us.p50 as f64),
        p99: ratio(baseline.latency_us.p99 as f64, first.latency_us.p99 as f64),
        throughput: ratio(first.throughput, baseline.throughput),
    }
}

/// An SDK client as an application would build one, but with no retries (a retry would hide
/// an error and fold two latencies into one) and a bounded time per request.
pub fn client(endpoint: &str, region: &str, credentials: SharedCredentialsProvider) -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .http_client(crate::upstream::sdk_http_client())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_timeout(REQUEST_TIMEOUT)
                .build(),
        )
        .build();
    Client::from_conf(config)
}

fn is_loopback(endpoint: &str) -> bool {
    let Ok(uri) = endpoint.parse::<http::Uri>() else {
        return false;
    };
    match uri.host() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// The standard AWS chain, except that a bench of loopback endpoints with no credentials in the
/// environment signs with placeholders: the proxy re-signs anyway and emulators only check that
/// a signature is there, and asking the chain would probe instance metadata for nothing.
async fn credentials(endpoints: &[String], region: &str) -> SharedCredentialsProvider {
    let configured = [
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some());
    if !configured && endpoints.iter().all(|e| is_loopback(e)) {
        return placeholder_credentials();
    }
    let chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
        .configure(
            aws_config::provider_config::ProviderConfig::without_region()
                .with_http_client(crate::upstream::sdk_http_client()),
        )
        .region(Region::new(region.to_string()))
        .build()
        .await;
    match chain.provide_credentials().await {
        Ok(_) => SharedCredentialsProvider::new(chain),
        Err(err) => {
            eprintln!("no AWS credentials found ({err}); signing with placeholder credentials");
            placeholder_credentials()
        }
    }
}

fn placeholder_credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new("bench", "bench", None, None, "bench"))
}

/// A short, single-line description of an SDK error: its DynamoDB error code, or what failed.
pub fn error_kind<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> String {
    match err {
        SdkError::ServiceError(service) => service
            .err()
            .code()
            .unwrap_or("unnamed service error")
            .to_string(),
        SdkError::TimeoutError(_) => "timeout".into(),
        SdkError::DispatchFailure(_) => "connection failed".into(),
        SdkError::ResponseError(_) => "unreadable response".into(),
        SdkError::ConstructionFailure(_) => "request not built".into(),
        _ => "other".into(),
    }
}

/// Checks that `endpoint` answers and has the table with the bench's key schema; with
/// `create`, a missing table is created (and waited for).
async fn check_table(
    client: &Client,
    endpoint: &str,
    table: &str,
    create: bool,
) -> Result<(), BenchError> {
    let request = client.describe_table().table_name(table).send();
    let described = match tokio::time::timeout(PREFLIGHT_TIMEOUT, request).await {
        Err(_) => {
            return Err(BenchError::Unreachable {
                endpoint: endpoint.into(),
                cause: format!("no answer within {} s", PREFLIGHT_TIMEOUT.as_secs()),
            });
        }
        Ok(result) => result,
    };
    let description = match described {
        Ok(out) => out.table,
        Err(SdkError::ServiceError(e)) if e.err().is_resource_not_found_exception() => {
            if !create {
                return Err(BenchError::NoTable {
                    table: table.into(),
                    endpoint: endpoint.into(),
                });
            }
            return create_table(client, endpoint, table).await;
        }
        Err(err @ (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_))) => {
            return Err(BenchError::Unreachable {
                endpoint: endpoint.into(),
                cause: DisplayChain(&err).to_string(),
            });
        }
        Err(err) => {
            return Err(BenchError::Request {
                endpoint: endpoint.into(),
                what: "DescribeTable",
                cause: format!("{}: {}", error_kind(&err), DisplayChain(&err)),
            });
        }
    };
    let schema = description
        .map(|t| {
            let types = crate::upstream::schema::attribute_types(&t);
            t.key_schema()
                .iter()
                .map(|k| {
                    let ty = types.get(k.attribute_name()).map_or("?", String::as_str);
                    format!("{} ({ty}, {})", k.attribute_name(), k.key_type().as_str())
                })
                .collect::<Vec<_>>()
                .join(" + ")
        })
        .unwrap_or_default();
    if schema != format!("{PK} (S, HASH) + {SK} (N, RANGE)") {
        return Err(BenchError::WrongSchema {
            table: table.into(),
            endpoint: endpoint.into(),
            found: if schema.is_empty() {
                "(none)".into()
            } else {
                schema
            },
        });
    }
    Ok(())
}

async fn create_table(client: &Client, endpoint: &str, table: &str) -> Result<(), BenchError> {
    let failed = |what: &'static str, cause: String| BenchError::Request {
        endpoint: endpoint.into(),
        what,
        cause,
    };
    let attribute = |name: &str, ty| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ty)
            .build()
            .expect("name and type are set")
    };
    let key = |name: &str, ty| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(ty)
            .build()
            .expect("name and type are set")
    };
    client
        .create_table()
        .table_name(table)
        .attribute_definitions(attribute(PK, ScalarAttributeType::S))
        .attribute_definitions(attribute(SK, ScalarAttributeType::N))
        .key_schema(key(PK, KeyType::Hash))
        .key_schema(key(SK, KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .map_err(|e| failed("CreateTable", DisplayChain(&e).to_string()))?;
    // DynamoDB creates tables asynchronously; emulators are ACTIVE at once.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| failed("DescribeTable", DisplayChain(&e).to_string()))?
            .table
            .and_then(|t| t.table_status);
        if status == Some(TableStatus::Active) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(failed(
                "CreateTable",
                "the table did not become ACTIVE within 120 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The primary key of item `k`.
pub fn key_of(k: u64) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            PK.to_string(),
            AttributeValue::S(format!("k{}", k / ITEMS_PER_PARTITION)),
        ),
        (
            SK.to_string(),
            AttributeValue::N((k % ITEMS_PER_PARTITION).to_string()),
        ),
    ])
}

/// Item `k` of about `size` bytes; `version` tells writes apart.
fn item_of(k: u64, size: usize, version: u64) -> HashMap<String, AttributeValue> {
    let mut item = key_of(k);
    let version = version.to_string();
    // DynamoDB counts attribute names and values: pk, sk, "ver", "v" and their values.
    let fixed = PK.len() + SK.len() + 4 + 3 + 1 + (k / ITEMS_PER_PARTITION).to_string().len() + 2;
    let pad = size.saturating_sub(fixed + version.len());
    item.insert("ver".into(), AttributeValue::N(version));
    item.insert("v".into(), AttributeValue::S("x".repeat(pad.max(1))));
    item
}

/// Writes every item once (BatchWriteItem, 25 at a time, a few batches in flight).
async fn seed(
    client: &Client,
    options: &Options,
    stop: &CancellationToken,
) -> Result<(), BenchError> {
    const BATCH: u64 = 25;
    const IN_FLIGHT: u64 = 8;
    let keys = options.workload.keys;
    let bar = progress_bar(
        options.progress,
        keys,
        &format!("seeding  {}", options.endpoints[0]),
    );
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (client, next, bar, stop) = (client.clone(), next.clone(), bar.clone(), stop.clone());
        let (table, size, endpoint) = (
            options.table.clone(),
            options.workload.item_size,
            options.endpoints[0].clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let start = next.fetch_add(BATCH, Ordering::Relaxed);
                if start >= keys || stop.is_cancelled() {
                    return Ok(());
                }
                let mut writes: Vec<WriteRequest> = (start..(start + BATCH).min(keys))
                    .map(|k| {
                        let put = PutRequest::builder()
                            .set_item(Some(item_of(k, size, 0)))
                            .build()
                            .expect("item is set");
                        WriteRequest::builder().put_request(put).build()
                    })
                    .collect();
                let count = writes.len() as u64;
                // Unprocessed items (throttling) are sent again, with a growing pause.
                for attempt in 0u32.. {
                    let out = client
                        .batch_write_item()
                        .request_items(&table, writes)
                        .send()
                        .await
                        .map_err(|e| BenchError::Request {
                            endpoint: endpoint.clone(),
                            what: "BatchWriteItem",
                            cause: format!("{}: {}", error_kind(&e), DisplayChain(&e)),
                        })?;
                    writes = out
                        .unprocessed_items
                        .and_then(|mut u| u.remove(&table))
                        .unwrap_or_default();
                    if writes.is_empty() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50 << attempt.min(6))).await;
                }
                bar.inc(count);
            }
        }));
    }
    for task in tasks {
        task.await.expect("seeding task panicked")?;
    }
    bar.finish_and_clear();
    Ok(())
}

fn progress_bar(visible: bool, len: u64, label: &str) -> ProgressBar {
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

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("bounds are valid")
}

/// One worker's (or the merged) recordings of one run.
struct Recording {
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

    fn report(&self, endpoint: &str) -> EndpointReport {
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
fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, u64)> {
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
async fn measure(
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

impl Report {
    /// The human-readable tables: one row per endpoint, one per operation when the mix has
    /// several, then the speed-up ratios.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let pacing = match self.rate {
            Some(rate) => format!("open loop at {rate:.0} req/s"),
            None => "closed loop".into(),
        };
        let distribution = match self.distribution {
            KeyDistribution::Uniform => "uniform".to_string(),
            KeyDistribution::Zipfian { skew } => format!("zipfian (skew {skew})"),
        };
        let _ = writeln!(
            out,
            "table {}: {}; {} keys, {distribution}; items ~{} B; {}concurrency {}, {pacing}",
            self.table,
            self.mix,
            self.keys,
            self.item_size,
            if self.consistent_read {
                "strongly consistent reads; "
            } else {
                ""
            },
            self.concurrency,
        );
        let _ = writeln!(
            out,
            "\n{:<36} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "endpoint", "requests", "req/s", "p50", "p90", "p99", "p99.9", "max", "errors"
        );
        for e in &self.endpoints {
            let row = |out: &mut String,
                       name: &str,
                       requests: u64,
                       rate: Option<f64>,
                       l: &Percentiles,
                       errors: u64| {
                let _ = writeln!(
                    out,
                    "{:<36} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
                    name,
                    requests,
                    rate.map_or(String::new(), |r| format!("{r:.0}")),
                    micros(l.p50),
                    micros(l.p90),
                    micros(l.p99),
                    micros(l.p999),
                    micros(l.max),
                    errors
                );
            };
            row(
                &mut out,
                &e.endpoint,
                e.requests,
                Some(e.throughput),
                &e.latency_us,
                e.errors,
            );
            if e.by_op.len() > 1 {
                for (op, r) in &e.by_op {
                    row(
                        &mut out,
                        &format!("  {op}"),
                        r.requests,
                        None,
                        &r.latency_us,
                        r.errors,
                    );
                }
            }
        }
        for e in self.endpoints.iter().filter(|e| e.errors > 0) {
            let _ = writeln!(out, "\nerrors at {}:", e.endpoint);
            for (kind, n) in &e.errors_by_kind {
                let _ = writeln!(out, "  {kind:<50} {n}");
            }
        }
        if let Some(first) = self.endpoints.first() {
            for s in &self.speedup {
                let _ = writeln!(
                    out,
                    "\n{} vs {}: p50 {:.2}x, p99 {:.2}x faster; throughput {:.2}x",
                    first.endpoint, s.baseline, s.p50, s.p99, s.throughput
                );
            }
        }
        if self.interrupted {
            let _ = writeln!(out, "\n(interrupted: the figures cover the part that ran)");
        }
        out
    }
}

/// A latency in µs, as µs or ms, whichever reads better.
fn micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{us}µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_weights_names_and_aliases() {
        let mix = Mix::parse("get=80, Query=10,batch-get=5,PutItem=5").unwrap();
        assert_eq!(
            mix.weights,
            vec![
                (Op::GetItem, 80),
                (Op::Query, 10),
                (Op::BatchGetItem, 5),
                (Op::PutItem, 5)
            ]
        );
        assert_eq!(Mix::parse("get").unwrap().weights, vec![(Op::GetItem, 1)]);
        assert!(Mix::parse("scan=1").is_err());
        assert!(Mix::parse("get=x").is_err());
        assert!(Mix::parse("get=0").is_err());
        assert!(Mix::parse("get=1,get=2").is_err());
    }

    #[test]
    fn mix_picks_in_proportion() {
        let mix = Mix::parse("get=75,put=25").unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        let puts = (0..10_000)
            .filter(|_| mix.pick(&mut rng) == Op::PutItem)
            .count();
        assert!((2200..2800).contains(&puts), "{puts} puts of 10000");
    }

    #[test]
    fn zipfian_keys_favour_the_hot_end_and_stay_in_range() {
        let picker = KeyPicker::new(1000, KeyDistribution::Zipfian { skew: 1.1 }).unwrap();
        let mut rng = SmallRng::seed_from_u64(1);
        let picks: Vec<u64> = (0..20_000).map(|_| picker.pick(&mut rng)).collect();
        assert!(picks.iter().all(|&k| k < 1000));
        let hottest = picks.iter().filter(|&&k| k == 0).count();
        let coldest_half = picks.iter().filter(|&&k| k >= 500).count();
        assert!(hottest > coldest_half, "{hottest} vs {coldest_half}");

        let uniform = KeyPicker::new(1000, KeyDistribution::Uniform).unwrap();
        let zeros = (0..20_000).filter(|_| uniform.pick(&mut rng) == 0).count();
        assert!(zeros < 100, "uniform picked key 0 {zeros} times");
    }

    #[test]
    fn items_have_about_the_asked_size() {
        for size in [100usize, 400, 4000] {
            let item = item_of(12345, size, 99);
            let bytes: usize = item
                .iter()
                .map(|(name, value)| {
                    name.len()
                        + match value {
                            AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
                            _ => 0,
                        }
                })
                .sum();
            assert!(bytes.abs_diff(size) <= 8, "asked {size}, got {bytes}");
        }
        assert_eq!(key_of(123)[PK], AttributeValue::S("k12".into()));
        assert_eq!(key_of(123)[SK], AttributeValue::N("3".into()));
    }

    #[test]
    fn loopback_endpoints_are_recognised() {
        assert!(is_loopback("http://127.0.0.1:8000"));
        assert!(is_loopback("http://localhost:8000"));
        assert!(is_loopback("http://[::1]:8000"));
        assert!(!is_loopback("https://dynamodb.us-east-1.amazonaws.com"));
        assert!(!is_loopback("http://10.0.0.1:8000"));
    }

    #[test]
    fn percentile_curve_ends_at_the_maximum() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let curve = percentile_curve(&h);
        assert!(
            curve
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
        );
        assert_eq!(curve.last().copied(), Some((100.0, h.max())));
    }
}
