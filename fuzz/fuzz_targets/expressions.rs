//! Expressions and statements from request bodies: KeyConditionExpression, projection
//! expressions, PartiQL statements.
#![no_main]

use dynamo_cache::wire::{keycond, partiql, projection::Projection};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = keycond::pinned_partition(text, "pk", None, None);
    let _ = Projection::parse(text, None);
    let statement = partiql::statement(text);
    if let Some(table) = statement.table {
        assert!(!table.is_empty());
    }
});
