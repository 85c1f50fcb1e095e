//! `X-Amz-Date`'s form (`20261121T093000Z`, UTC), as SigV4 signs it, and SigV4's hex hashes:
//! read by the inbound verifier, written by the upstream signer.

use std::time::SystemTime;

const AMZ_DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");

pub(crate) fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let parsed = time::PrimitiveDateTime::parse(text, AMZ_DATE).ok()?;
    Some(parsed.assume_utc().into())
}

pub(crate) fn format_amz_date(at: SystemTime) -> Option<String> {
    time::OffsetDateTime::from(at).format(AMZ_DATE).ok()
}

/// Appends the SHA-256 of `data` to `out` as SigV4 writes hashes: 64 lower-case hex digits.
/// Written in one go; `hex::encode` builds a `String` a character at a time.
pub(crate) fn push_sha256_hex(out: &mut String, data: &[u8]) {
    use sha2::{Digest, Sha256};
    let mut digits = [0u8; 64];
    hex::encode_to_slice(Sha256::digest(data), &mut digits).expect("32 bytes take 64 hex digits");
    out.push_str(std::str::from_utf8(&digits).expect("hex digits are ASCII"));
}
