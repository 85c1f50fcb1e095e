//! `X-Amz-Date`'s form (`20261121T093000Z`, UTC), as SigV4 signs it: read by the inbound
//! verifier, written by the upstream signer.

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
