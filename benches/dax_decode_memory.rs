//! Peak heap while a DAX request is decoded into the body that would go upstream, as a
//! multiple of the request's size, for the shapes that once cost hundreds of bytes per byte:
//! many numbers, many keys, many names, deep nesting, a large expression value table, and a
//! batch of small values that DynamoDB accepts. Counted by a global allocator, so the figure
//! is exact and the same on a busy machine.
//!
//! `cargo bench --bench dax_decode_memory`

use minicbor::Encoder;

/// The fuzz targets' counting allocator: the same count, the same peak.
#[path = "../fuzz/fuzz_targets/guard.rs"]
mod guard;

#[global_allocator]
static ALLOCATOR: guard::Counting = guard::Counting;

const PREAMBLE: &[u8] = b"\x67J7yne5G\x00\x41\x07\xa1\x69UserAgent\x65bench\x00";
const PUT_ITEM: i64 = -2106490455;
const BATCH_GET: i64 = -697851100;
const BATCH_WRITE: i64 = 116217951;
const DEFINE_LIST_ID: i64 = -1230579644;
const SCAN: i64 = -1875390620;

fn request(method: i64, write: impl FnOnce(&mut Encoder<&mut Vec<u8>>)) -> Vec<u8> {
    let mut out = PREAMBLE.to_vec();
    let mut e = Encoder::new(&mut out);
    e.u8(1).unwrap().i64(method).unwrap();
    write(&mut e);
    out
}

/// The decoder's test table: a string hash key and a numeric sort key ("a", 1).
const KEY: &[u8] = &[0x61, b'a', 0xC1, 0x1C, 0x00, 0x00];

/// An attribute list of one name ("n"), as the decoder's fresh registry numbers it, then a
/// value list of `values` (already CBOR).
fn item_with(values: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let names = ["n".to_string()];
    Encoder::new(&mut out)
        .i64(dynamo_cache::fuzzing::dax_list_id(&names))
        .unwrap();
    out.extend_from_slice(values);
    out
}

fn shapes() -> Vec<(&'static str, Vec<u8>)> {
    let mut shapes = Vec::new();
    // A putItem holding a list of 1,000,000 one-byte numbers (1 MB): DynamoDB refuses it.
    let mut list = vec![0x9A];
    list.extend_from_slice(&1_000_000u32.to_be_bytes());
    list.extend(std::iter::repeat_n(0x01, 1_000_000));
    let put = |values: Vec<u8>| {
        let values = item_with(&values);
        request(PUT_ITEM, |e| {
            e.bytes(b"t").unwrap().bytes(KEY).unwrap();
            e.bytes(&values).unwrap();
            e.null().unwrap();
        })
    };
    shapes.push((
        "many numbers (putItem, 1M in a list)",
        define_then(put(list)),
    ));
    // A batchGetItem of 250,000 keys: DynamoDB takes 100.
    shapes.push((
        "many keys (batchGetItem, 250k keys)",
        request(BATCH_GET, |e| {
            e.map(1).unwrap().str("t").unwrap();
            e.array(3).unwrap().bool(false).unwrap().null().unwrap();
            e.array(250_000).unwrap();
            for _ in 0..250_000 {
                e.bytes(KEY).unwrap();
            }
            e.null().unwrap();
        }),
    ));
    // defineAttributeListId with 2,000,000 one-letter names (4 MB).
    shapes.push((
        "many names (defineAttributeListId, 2M names)",
        request(DEFINE_LIST_ID, |e| {
            e.array(2_000_000).unwrap();
            for _ in 0..2_000_000 {
                e.str("a").unwrap();
            }
        }),
    ));
    // A value nested 100,000 lists deep.
    let mut deep = vec![0x81; 100_000];
    deep.push(0x01);
    shapes.push(("deep nesting (putItem, 100k lists)", define_then(put(deep))));
    // A scan whose filter's value table holds 500,000 numbers (0.5 MB).
    let mut table = vec![
        0x83, 0x01, 0x83, 0x00, 0x82, 0x12, 0x61, b'n', 0x82, 0x11, 0x00,
    ];
    table.push(0x9A);
    table.extend_from_slice(&500_000u32.to_be_bytes());
    table.extend(std::iter::repeat_n(0x01, 500_000));
    shapes.push((
        "expression values (scan filter, 500k numbers)",
        request(SCAN, |e| {
            e.bytes(b"t").unwrap();
            e.map(1).unwrap().u8(10).unwrap().bytes(&table).unwrap();
        }),
    ));
    // A batchWriteItem DynamoDB accepts: 25 items, each a list of 40,000 small numbers.
    let mut values = vec![0x9A];
    values.extend_from_slice(&40_000u32.to_be_bytes());
    values.extend(std::iter::repeat_n(0x07, 40_000));
    let values = item_with(&values);
    let batch = request(BATCH_WRITE, |e| {
        e.map(1).unwrap().str("t").unwrap().array(50).unwrap();
        for i in 0..25u8 {
            let key = [0x61, b'a', 0xC1, 0x1C + i, 0x00, 0x00];
            e.bytes(&key).unwrap().bytes(&values).unwrap();
        }
        e.null().unwrap();
    });
    shapes.push((
        "valid batch (batchWriteItem, 25 x 40k numbers)",
        define_then(batch),
    ));
    shapes
}

/// The attribute list defined first, in the same session.
fn define_then(request: Vec<u8>) -> Vec<u8> {
    let mut out = PREAMBLE.to_vec();
    let mut e = Encoder::new(&mut out);
    e.u8(1).unwrap().i64(DEFINE_LIST_ID).unwrap();
    e.array(1).unwrap().str("n").unwrap();
    out.extend_from_slice(&request[PREAMBLE.len()..]);
    out
}

/// A getItem whose keyword map holds `n` one-byte items (under key 5, which the Python client
/// sends and the proxy ignores): what a connection must frame before it can answer.
fn one_byte_items(n: u32) -> Vec<u8> {
    let mut out = vec![0x01, 0x1A, 0x0F, 0xB0, 0xCC, 0x6A, 0x41, b't', 0x41, b'k'];
    out.extend_from_slice(&[0xA1, 0x05, 0x9A]);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend(std::iter::repeat_n(0x01, n as usize));
    out
}

fn framing() {
    println!();
    println!("framing a request of one-byte items arriving 16 KB at a time (CPU time)");
    for mib in [1u32, 4, 16] {
        let request = one_byte_items(mib << 20);
        let time = |resume: bool| {
            let started = std::time::Instant::now();
            assert_eq!(
                dynamo_cache::fuzzing::dax_frames(&request, 16 * 1024, resume),
                1
            );
            started.elapsed()
        };
        let resumed = time(true);
        // Starting over on every read grows with the square of the size: 16 MiB is left out.
        let restarted = (mib <= 4).then(|| time(false));
        println!(
            "  {mib:>2} MiB: resumed {:>9.1} ms, starting over {}",
            resumed.as_secs_f64() * 1e3,
            restarted.map_or("(not run)".to_string(), |d| format!(
                "{:.1} ms ({:.0}x)",
                d.as_secs_f64() * 1e3,
                d.as_secs_f64() / resumed.as_secs_f64()
            ))
        );
    }
}

fn main() {
    println!(
        "{:<48} {:>10} {:>12} {:>8}  answer",
        "shape", "request", "peak heap", "ratio"
    );
    for (name, input) in shapes() {
        let before = guard::start_peak();
        let mut outcome = String::new();
        dynamo_cache::fuzzing::dax_bodies(&input, |_, body| {
            outcome = match body {
                Ok(body) => format!("{} bytes of JSON upstream", body.len()),
                Err(err) => err.chars().take(60).collect(),
            };
        });
        let peak = guard::peak_since(before);
        println!(
            "{name:<48} {:>10} {:>12} {:>7.2}x  {outcome}",
            input.len(),
            peak,
            peak as f64 / input.len() as f64
        );
    }
    framing();
}
