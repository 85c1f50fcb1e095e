//! What operators see: Prometheus [`metrics`], and the [`admin`] listener (health,
//! readiness, cache statistics, flush, hot keys).

pub mod admin;
pub mod metrics;
