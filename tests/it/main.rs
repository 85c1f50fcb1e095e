//! The integration tests, one binary: each starts the real proxy on port 0 in front of a real
//! DynamoDB emulator (or a fault-injecting shim) through the helpers in `common`. One binary
//! links the SDK, TLS and the emulator once instead of once per test file.

mod common;

mod auth;
mod bad_input;
#[cfg(feature = "bench")]
mod bench;
mod binary;
mod config_files;
mod consistency;
mod consumed_capacity;
mod correctness;
mod dax;
mod deploy_files;
mod deploy_manifests;
mod fleet;
mod forwarding;
mod item_cache;
mod lifecycle;
mod memory;
mod metrics;
mod query_cache;
mod readme;
mod reliability;
mod replica_lag;
mod schema;
mod streams;
mod tls;
mod warm;
