//! Keeping the cache in step with the world outside the request path: [`streams`] follows the
//! cached tables' DynamoDB streams so writes that bypass the proxy drop entries; [`hot_keys`]
//! counts the most read keys and [`warm`] reads another replica's before reporting ready.

pub mod hot_keys;
pub mod streams;
pub mod warm;
