//! Arbitrary bytes as a DAX connection: the preamble, the framing of requests by method arity,
//! and every decoder a request reaches before it would go upstream (CBOR items, attribute
//! values, numbers and LexDecimal keys, attribute lists, compiled expressions). None may
//! panic, take heap out of proportion to the input, or need more than half a worker's stack.
#![no_main]

#[path = "guard.rs"]
mod guard;

#[global_allocator]
static ALLOCATOR: guard::Counting = guard::Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    guard::check(data, guard::decode);
});
