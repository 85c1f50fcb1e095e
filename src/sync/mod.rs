//! Keeping the cache in step with the world outside the request path: [`streams`] follows the
//! cached tables' DynamoDB streams so writes that bypass the proxy drop entries (through the
//! cache layer, which also puts them in the consistency window).

pub(crate) mod streams;
