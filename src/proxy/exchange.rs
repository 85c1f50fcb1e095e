//! What every operation family shares: the per-request [`Context`], the request as it goes
//! upstream ([`Outbound`]), and [`forward`], the one way a request reaches DynamoDB (counted in
//! metrics and in the context).

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use crate::error::ProxyError;
use crate::metrics::Protocol;
use crate::state::State;
use crate::upstream::UpstreamResponse;
use crate::wire::answer::{Answer, CacheStatus, ErrorEnvelope};
use crate::wire::operation::{Api, Operation};
use crate::wire::request::Capacity;

/// How a family of operations answered.
pub(super) type Handled = Result<Answer, ProxyError>;

/// One request's context: what its metrics and its log line need, gathered along the path.
pub(crate) struct Context {
    pub op: Operation,
    pub(super) started: Instant,
    /// The front-end it came in through.
    pub protocol: Protocol,
    /// The last upstream exchange's status (0: none, or no answer) and microseconds.
    upstream_status: AtomicU16,
    upstream_micros: AtomicU64,
}

impl Context {
    /// A context for `op`, timed from `started` (when the front-end began reading it).
    pub(crate) fn new(op: Operation, started: Instant) -> Context {
        Context {
            op,
            started,
            protocol: Protocol::Http,
            upstream_status: AtomicU16::new(0),
            upstream_micros: AtomicU64::new(0),
        }
    }

    /// The same, for a request that came in through `protocol`.
    pub(crate) fn over(protocol: Protocol, op: Operation, started: Instant) -> Context {
        Context {
            protocol,
            ..Context::new(op, started)
        }
    }

    fn record_upstream(&self, status: u16, micros: u64) {
        self.upstream_status.store(status, Ordering::Relaxed);
        self.upstream_micros.store(micros, Ordering::Relaxed);
    }

    pub(super) fn upstream(&self) -> (u16, u64) {
        (
            self.upstream_status.load(Ordering::Relaxed),
            self.upstream_micros.load(Ordering::Relaxed),
        )
    }
}

/// What goes upstream: the request as the caller sent it.
pub(super) struct Outbound {
    pub op: Operation,
    /// Which API the target names: the Streams API has an endpoint of its own on AWS.
    pub api: Api,
    pub target: HeaderValue,
    pub body: Bytes,
}

/// Sends `body` upstream as `out.op`, recording the exchange in metrics and in `ctx`.
pub(super) async fn forward(
    state: &State,
    ctx: &Context,
    out: &Outbound,
    body: Bytes,
) -> Result<UpstreamResponse, ProxyError> {
    let started = Instant::now();
    let upstream = match out.api {
        Api::DynamoDb => &state.upstream,
        Api::Streams => &state.streams_upstream,
    };
    let result = upstream.call(&out.target, body).await;
    let elapsed = started.elapsed();
    let status = result.as_ref().map_or(0, |a| a.status.as_u16());
    ctx.record_upstream(status, elapsed.as_micros() as u64);
    let outcome = match &result {
        Ok(answer) => Ok(answer.status),
        Err(err) => Err(err.upstream_kind()),
    };
    state
        .metrics
        .record_upstream(out.op, outcome, elapsed.as_secs_f64());
    result
}

/// The upstream's answer, relayed as it came.
pub(super) fn relay(answer: &UpstreamResponse, cache: CacheStatus) -> Answer {
    Answer::upstream(
        answer.status,
        answer.headers.clone(),
        answer.body.clone(),
        cache,
    )
}

/// As [`relay`], for an answer nobody else needs: its headers move instead of being copied.
pub(super) fn relay_owned(answer: UpstreamResponse, cache: CacheStatus) -> Answer {
    Answer::upstream(answer.status, answer.headers, answer.body, cache)
}

/// Whether DynamoDB failed to answer: the proxy could not reach it or read its answer, it
/// answered 5xx, or it throttled. (Other 4xx are the caller's to handle.)
pub(super) fn upstream_failed(result: &Result<UpstreamResponse, ProxyError>) -> bool {
    match result {
        Err(err) => err.is_upstream(),
        Ok(answer) if answer.status.is_server_error() => true,
        Ok(answer) if answer.status == StatusCode::BAD_REQUEST => ErrorEnvelope::of(&answer.body)
            .is_some_and(|error| {
                matches!(
                    error.name.as_str(),
                    "ThrottlingException"
                        | "ProvisionedThroughputExceededException"
                        | "RequestLimitExceeded"
                )
            }),
        Ok(_) => false,
    }
}

/// Whether DynamoDB refused a write (4xx): it changed nothing. Any other outcome (success,
/// 5xx, no answer) may have changed what it touched.
pub(super) fn changed_nothing(result: &Result<UpstreamResponse, ProxyError>) -> bool {
    matches!(result, Ok(answer) if answer.status.is_client_error())
}

/// Which index a read used, for its capacity report.
#[derive(Debug, Clone, Copy)]
pub(super) enum IndexRead<'a> {
    Global(&'a str),
    Local(&'a str),
}

impl<'a> IndexRead<'a> {
    /// The index `read` names on `table`, told global or local by the table's schema (an index
    /// the proxy has not described is taken as global, as most are).
    pub(super) fn of(
        state: &crate::state::State,
        table: &str,
        index: Option<&'a str>,
    ) -> Option<Self> {
        let name = index?;
        let local = state
            .schemas
            .cached(table)
            .is_some_and(|schema| schema.local.contains(name));
        Some(if local {
            IndexRead::Local(name)
        } else {
            IndexRead::Global(name)
        })
    }
}

/// A hit's `ConsumedCapacity`: zero units, in the shape DynamoDB gives the same request.
/// `TOTAL` names the table; `INDEXES` adds the table's own units and, for a read of an
/// index, the index's under `GlobalSecondaryIndexes` or `LocalSecondaryIndexes`.
pub(super) fn zero_capacity(
    table: &str,
    form: Capacity,
    index: Option<IndexRead<'_>>,
) -> serde_json::Value {
    use serde_json::json;
    let mut consumed = json!({ "TableName": table, "CapacityUnits": 0.0 });
    if form == Capacity::Indexes {
        consumed["Table"] = json!({ "CapacityUnits": 0.0 });
        match index {
            Some(IndexRead::Global(name)) => {
                consumed["GlobalSecondaryIndexes"] = json!({ name: { "CapacityUnits": 0.0 } });
            }
            Some(IndexRead::Local(name)) => {
                consumed["LocalSecondaryIndexes"] = json!({ name: { "CapacityUnits": 0.0 } });
            }
            None => {}
        }
    }
    consumed
}

/// A GetItem, Query or Scan request asking for a strongly consistent read, every other
/// parameter as the caller sent it; `None` if the body is not a JSON object (it was parsed
/// before, so that does not happen). A strongly consistent answer satisfies the eventually
/// consistent request it fills for: it reflects every write acknowledged before it.
pub(super) fn strongly_consistent(body: &[u8]) -> Option<Bytes> {
    let mut fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).ok()?;
    fields.insert("ConsistentRead".into(), serde_json::Value::Bool(true));
    Some(Bytes::from(serde_json::Value::Object(fields).to_string()))
}
