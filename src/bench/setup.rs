//! Before measuring: each endpoint reached and checked (the SDK, or the bench's own DAX
//! client), the table created and filled with `--seed`.

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
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, PutRequest, ScalarAttributeType,
    TableStatus, WriteRequest,
};
use tokio_util::sync::CancellationToken;

use super::measure::progress_bar;
use super::workload::item_of;
use super::{BenchError, Options, PK, PREFLIGHT_TIMEOUT, REQUEST_TIMEOUT, SK};
use crate::upstream::credentials::DisplayChain;

/// How the bench reaches one endpoint.
#[derive(Clone)]
pub enum Target {
    /// Through the AWS SDK (`http://`, `https://`).
    Sdk(Client),
    /// Through the bench's own DAX client (`dax://`), a connection per worker.
    Dax(String),
}

pub(super) fn is_dax(endpoint: &str) -> bool {
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

pub(super) fn is_loopback(endpoint: &str) -> bool {
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
