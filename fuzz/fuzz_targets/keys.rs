//! Key canonicalisation on untrusted input: numbers, and whole keys as JSON.
#![no_main]

use dynamo_cache::wire::keys::{
    ItemKey, WireKey, canonical_number, is_wire_canonical_number, split_shape, table_of,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = std::str::from_utf8(data) {
        let canonical = canonical_number(n);
        // DynamoDB's own spelling of a number is a number.
        if is_wire_canonical_number(n) {
            assert!(canonical.is_some(), "{n:?}");
        }
        // Trailing zeros after a decimal point do not change a number.
        if canonical.is_some() && !n.contains(['e', 'E']) {
            let longer = if n.contains('.') {
                format!("{n}0")
            } else {
                format!("{n}.0")
            };
            assert_eq!(canonical_number(&longer), canonical, "{n:?} vs {longer:?}");
        }
    }
    if let Ok(key) = serde_json::from_slice::<WireKey>(data)
        && let Some(key) = ItemKey::new("t", &key)
    {
        // Every key splits into its shape and values, which put together are the key.
        let bytes = key.as_bytes();
        let (shape, values) = split_shape(bytes).expect("a canonical key has a shape");
        assert_eq!([shape, values].concat(), bytes);
        assert_eq!(table_of(bytes), "t");
    }
    // Any bytes: splitting never panics, and what splits is the whole input.
    if let Some((shape, values)) = split_shape(data) {
        assert_eq!(shape.len() + values.len(), data.len());
    }
});
