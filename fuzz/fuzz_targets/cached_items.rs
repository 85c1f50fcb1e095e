//! The item cache's compact form: any bytes it takes as an item's JSON come back byte for byte,
//! and rendering any bytes as if they were that form never panics or recurses without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dynamo_cache::fuzzing::cached_item(data));
