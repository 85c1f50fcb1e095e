//! What operators see: Prometheus [`metrics`], the [`admin`] listener (health, readiness,
//! cache statistics, flush, hot keys), and the binary's own [`client`] for it.

pub mod admin;
pub mod client;
pub mod metrics;
