//! What the bench asks for: the operation mix, which keys (uniform or Zipf), how fast, and
//! the items it reads and writes.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use rand::RngExt;
use rand::rngs::SmallRng;
use rand_distr::{Distribution as _, Zipf};
use serde::Serialize;

use super::{BenchError, ITEMS_PER_PARTITION, PK, SK};

/// A read or write the workload issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Op {
    GetItem,
    Query,
    BatchGetItem,
    PutItem,
}

impl Op {
    pub(super) const ALL: [Op; 4] = [Op::GetItem, Op::Query, Op::BatchGetItem, Op::PutItem];

    pub(super) fn index(self) -> usize {
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
    pub(super) weights: Vec<(Op, u32)>,
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

    pub(super) fn pick(&self, rng: &mut SmallRng) -> Op {
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
pub(super) struct KeyPicker {
    keys: u64,
    zipf: Option<Zipf<f64>>,
}

impl KeyPicker {
    pub(super) fn new(keys: u64, distribution: KeyDistribution) -> Result<KeyPicker, BenchError> {
        let zipf = match distribution {
            KeyDistribution::Uniform => None,
            KeyDistribution::Zipfian { skew } => Some(
                Zipf::new(keys as f64, skew)
                    .map_err(|e| BenchError::Options(format!("--zipf-skew {skew}: {e}")))?,
            ),
        };
        Ok(KeyPicker { keys, zipf })
    }

    pub(super) fn pick(&self, rng: &mut SmallRng) -> u64 {
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
pub(super) fn item_of(k: u64, size: usize, version: u64) -> HashMap<String, AttributeValue> {
    let mut item = key_of(k);
    let version = version.to_string();
    // DynamoDB counts attribute names and values: pk, sk, "ver", "v" and their values.
    let fixed = PK.len() + SK.len() + 4 + 3 + 1 + (k / ITEMS_PER_PARTITION).to_string().len() + 2;
    let pad = size.saturating_sub(fixed + version.len());
    item.insert("ver".into(), AttributeValue::N(version));
    item.insert("v".into(), AttributeValue::S("x".repeat(pad.max(1))));
    item
}
