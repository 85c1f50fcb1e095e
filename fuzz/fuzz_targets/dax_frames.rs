//! Arbitrary bytes as a DAX connection: the preamble, the framing of requests by method arity,
//! and every decoder a request reaches before it would go upstream (CBOR items, attribute
//! values, numbers and LexDecimal keys, attribute lists, compiled expressions). None may panic
//! or take memory out of proportion to the input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dynamo_cache::fuzzing::dax(data);
});
