//! Table key schemas, read with DescribeTable and kept until the table is changed or deleted
//! through the proxy. The item cache needs them to find an item's key inside a PutItem body.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_dynamodb::config::{BehaviorVersion, Region, timeout::TimeoutConfig};
use aws_sdk_dynamodb::types::{KeySchemaElement, KeyType, TableDescription};

use crate::metrics::Metrics;
use crate::wire::tables::Naming;

/// The attributes that make up one primary key (of a table or an index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySchema {
    /// The partition (HASH) key attribute.
    pub partition: String,
    /// The sort (RANGE) key attribute, if the key has one.
    pub sort: Option<String>,
}

/// A table's primary key and the keys of its secondary indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    pub key: KeySchema,
    /// Index name -> its key, for local and global secondary indexes.
    pub indexes: HashMap<String, KeySchema>,
    /// Which of them are local secondary indexes (the rest are global): capacity is reported
    /// under one name or the other.
    pub local: std::collections::HashSet<String>,
    /// The scalar type (`S`, `N`, `B`) of every key attribute of the table and its indexes.
    pub types: HashMap<String, String>,
}

/// Why a schema could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SchemaError {
    #[error("table {0} does not exist")]
    NotFound(String),
    /// DynamoDB refused the DescribeTable itself (a name it does not accept).
    #[error("{0}")]
    Invalid(String),
    #[error("DescribeTable {table} failed: {reason}")]
    Describe { table: String, reason: String },
}

/// Known schemas, and the SDK client that fetches new ones.
pub struct Schemas {
    /// DescribeTable goes to the same upstream as the data path, with the same identity.
    client: aws_sdk_dynamodb::Client,
    /// Table name -> schema.
    known: RwLock<HashMap<String, Arc<TableSchema>>>,
    /// Described tables get their own metric series.
    metrics: Arc<Metrics>,
    /// Learns the proxy's account from the first table ARN DynamoDB answers with.
    naming: Arc<Naming>,
}

impl Schemas {
    /// A registry describing tables at `endpoint`, signed for `region`.
    pub fn new(
        endpoint: &str,
        region: &str,
        credentials: SharedCredentialsProvider,
        timeout: Duration,
        metrics: Arc<Metrics>,
        naming: Arc<Naming>,
    ) -> Schemas {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(endpoint)
            .credentials_provider(credentials)
            .http_client(super::sdk_http_client())
            .timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build())
            .build();
        Schemas {
            client: aws_sdk_dynamodb::Client::from_conf(config),
            known: RwLock::new(HashMap::new()),
            metrics,
            naming,
        }
    }

    /// The schema of `table`, described once and then served from memory.
    pub async fn get(&self, table: &str) -> Result<Arc<TableSchema>, SchemaError> {
        if let Some(schema) = self.cached(table) {
            return Ok(schema);
        }
        let description = self.describe(table).await?;
        let key = key_schema(description.key_schema()).ok_or_else(|| SchemaError::Describe {
            table: table.to_string(),
            reason: "table has no HASH key".into(),
        })?;
        let local = description
            .local_secondary_indexes()
            .iter()
            .filter_map(|i| i.index_name().map(str::to_string))
            .collect();
        let lsis = description
            .local_secondary_indexes()
            .iter()
            .map(|i| (i.index_name(), i.key_schema()));
        let gsis = description
            .global_secondary_indexes()
            .iter()
            .map(|i| (i.index_name(), i.key_schema()));
        let indexes = lsis
            .chain(gsis)
            .filter_map(|(name, key)| Some((name?.to_string(), key_schema(key)?)))
            .collect();
        let types = attribute_types(&description);
        let schema = Arc::new(TableSchema {
            key,
            indexes,
            local,
            types,
        });
        self.metrics.know_table(table);
        self.known
            .write()
            .expect("lock poisoned")
            .insert(table.to_string(), schema.clone());
        Ok(schema)
    }

    /// The ARN of `table`'s current stream, if it has one enabled (asked every time: streams
    /// are enabled, disabled and replaced without the proxy seeing it).
    pub async fn latest_stream_arn(&self, table: &str) -> Result<Option<String>, SchemaError> {
        let description = self.describe(table).await?;
        let enabled = description
            .stream_specification()
            .is_some_and(|s| s.stream_enabled());
        Ok(enabled.then_some(description.latest_stream_arn).flatten())
    }

    /// DescribeTable, upstream, now.
    async fn describe(&self, table: &str) -> Result<TableDescription, SchemaError> {
        let description = self
            .client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|err| describe_error(table, err))?
            .table
            .ok_or_else(|| SchemaError::Describe {
                table: table.to_string(),
                reason: "response has no Table".into(),
            })?;
        if let Some(arn) = description.table_arn() {
            self.naming.learn_from_arn(arn);
        }
        Ok(description)
    }

    /// The schema if already known, without asking upstream.
    pub fn cached(&self, table: &str) -> Option<Arc<TableSchema>> {
        self.known
            .read()
            .expect("lock poisoned")
            .get(table)
            .cloned()
    }

    /// Drops what is known of `table` (it was deleted, or its indexes changed).
    pub fn forget(&self, table: &str) {
        self.known.write().expect("lock poisoned").remove(table);
    }
}

fn describe_error(
    table: &str,
    err: aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::describe_table::DescribeTableError,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> SchemaError {
    if err
        .as_service_error()
        .is_some_and(|e| e.is_resource_not_found_exception())
    {
        SchemaError::NotFound(table.to_string())
    } else if let Some(refused) = err
        .as_service_error()
        .filter(|e| e.meta().code() == Some("ValidationException"))
    {
        SchemaError::Invalid(
            refused
                .meta()
                .message()
                .unwrap_or("invalid table name")
                .to_string(),
        )
    } else {
        SchemaError::Describe {
            table: table.to_string(),
            reason: crate::upstream::credentials::DisplayChain(&err).to_string(),
        }
    }
}

/// The scalar type (`S`, `N`, `B`) of each attribute a table description defines.
pub fn attribute_types(description: &TableDescription) -> HashMap<String, String> {
    description
        .attribute_definitions()
        .iter()
        .map(|d| {
            (
                d.attribute_name().to_string(),
                d.attribute_type().as_str().to_string(),
            )
        })
        .collect()
}

fn key_schema(elements: &[KeySchemaElement]) -> Option<KeySchema> {
    let find = |kind: KeyType| {
        elements
            .iter()
            .find(|e| *e.key_type() == kind)
            .map(|e| e.attribute_name().to_string())
    };
    Some(KeySchema {
        partition: find(KeyType::Hash)?,
        sort: find(KeyType::Range),
    })
}
