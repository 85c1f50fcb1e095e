//! Wire knowledge with no I/O: what a DynamoDB request says, read once.
//!
//! - [`operation`]: which operation an `X-Amz-Target` names.
//! - [`answer`]: what the request path answers, in no front-end's form.
//! - `amz_date`: `X-Amz-Date`'s form and SigV4's hex hashes, read by the SigV4 verifier and
//!   written by the signer.
//! - [`request`]: **the typed request**, parsed once from the operation and body; every later
//!   step reads it.
//! - [`tables`]: which tables a request names, and table ARNs placed by region and account.
//! - [`value`]: attribute values and items read from an answer's JSON as typed values,
//!   borrowing its text (the DAX front-end encodes answers from them).
//! - [`keys`]: canonical item keys, comparing numbers through `number` (DynamoDB numbers,
//!   exact, with DynamoDB's limits, shared with the DAX front-end); [`projection`]:
//!   projections, canonical and evaluated on cached items; [`keycond`]: which partition a
//!   Query reads; [`partiql`]: which table a PartiQL statement uses, and whether it writes;
//!   [`json`]: JSON that refuses repeated keys.

pub(crate) mod amz_date;
pub mod answer;
pub mod json;
pub mod keycond;
pub mod keys;
pub(crate) mod leb128;
pub(crate) mod number;
pub mod operation;
pub mod partiql;
pub mod projection;
pub mod request;
pub mod tables;
pub mod value;
