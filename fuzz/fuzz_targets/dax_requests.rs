//! Well-formed DAX sessions with hostile sizes, generated from the fuzzer's bytes: attribute
//! lists, puts, gets, batches and scans whose values, keys, names and expressions may nest
//! deep, repeat many times from a few input bytes, or claim more items than they hold. Each
//! session is checked as the byte-level target checks one: no panic, heap in proportion to the
//! request, and half a worker's stack at most.
#![no_main]

#[path = "guard.rs"]
mod guard;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use minicbor::Encoder;
use minicbor::data::Tag;

#[global_allocator]
static ALLOCATOR: guard::Counting = guard::Counting;

type E<'a> = Encoder<&'a mut Vec<u8>>;

#[derive(Arbitrary, Debug)]
enum Av {
    S(String),
    Int(i64),
    Bignum(bool, Vec<u8>),
    Decimal(i64, i64),
    Float(f64),
    B(Vec<u8>),
    Bool(bool),
    Null,
    List(Option<u32>, Vec<Av>),
    Map(Option<u32>, Vec<(String, Av)>),
    Set(u8, Vec<Av>),
    /// The same value many times over, from a few input bytes.
    Repeat(u16, Box<Av>),
    /// A value inside many one-element lists.
    Deep(u16, Box<Av>),
}

/// Sessions stop growing here: a few input bytes can ask for billions of repeats, and the
/// target measures the proxy's decoders, not the generator's memory.
const MAX_SESSION: usize = 4 << 20;

fn full(e: &E<'_>) -> bool {
    e.writer().len() > MAX_SESSION
}

impl Av {
    fn write(&self, e: &mut E<'_>) {
        if full(e) {
            return;
        }
        match self {
            Av::S(s) => drop(e.str(s)),
            Av::Int(n) => drop(e.i64(*n)),
            Av::Bignum(negative, bytes) => {
                let _ = e.tag(Tag::new(if *negative { 3 } else { 2 }));
                let _ = e.bytes(bytes);
            }
            Av::Decimal(exponent, mantissa) => {
                let _ = e.tag(Tag::new(4));
                let _ = e.array(2);
                let _ = e.i64(*exponent);
                let _ = e.i64(*mantissa);
            }
            Av::Float(f) => drop(e.f64(*f)),
            Av::B(b) => drop(e.bytes(b)),
            Av::Bool(b) => drop(e.bool(*b)),
            Av::Null => drop(e.null()),
            Av::List(claim, items) => {
                let _ = e.array(claim.map_or(items.len() as u64, u64::from));
                for item in items {
                    item.write(e);
                }
            }
            Av::Map(claim, entries) => {
                let _ = e.map(claim.map_or(entries.len() as u64, u64::from));
                for (name, value) in entries {
                    let _ = e.str(name);
                    value.write(e);
                }
            }
            Av::Set(kind, members) => {
                let _ = e.tag(Tag::new(3321 + u64::from(kind % 3)));
                let _ = e.array(members.len() as u64);
                for member in members {
                    member.write(e);
                }
            }
            Av::Repeat(count, value) => {
                let _ = e.array(u64::from(*count));
                for _ in 0..*count {
                    if full(e) {
                        break;
                    }
                    value.write(e);
                }
            }
            Av::Deep(depth, value) => {
                for _ in 0..*depth {
                    let _ = e.array(1);
                }
                value.write(e);
            }
        }
    }
}

/// A compiled expression tree.
#[derive(Arbitrary, Debug)]
enum Expr {
    Op(u8, Option<u64>, Vec<Expr>),
    Path(Vec<String>),
    Var(u32),
    Deep(u16, u8),
}

impl Expr {
    fn write(&self, e: &mut E<'_>) {
        if full(e) {
            return;
        }
        match self {
            Expr::Op(code, claim, args) => {
                let _ = e.array(claim.unwrap_or(args.len() as u64 + 1));
                let _ = e.u8(code % 27);
                for arg in args {
                    arg.write(e);
                }
            }
            Expr::Path(names) => {
                let _ = e.array(names.len() as u64 + 1);
                let _ = e.u8(18);
                for name in names {
                    let _ = e.str(name);
                }
            }
            Expr::Var(id) => {
                let _ = e.array(2).and_then(|e| e.u8(17)).and_then(|e| e.u32(*id));
            }
            Expr::Deep(depth, code) => {
                for _ in 0..*depth {
                    let _ = e.array(2).and_then(|e| e.u8(code % 27));
                }
                let _ = e.array(2).and_then(|e| e.u8(17)).and_then(|e| e.u8(0));
            }
        }
    }

    /// `[1, tree, [values]]` as the clients compile it.
    fn compiled(&self, values: &[Av]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = Encoder::new(&mut out);
        let _ = e.array(3).and_then(|e| e.u8(1));
        self.write(&mut e);
        let _ = e.array(values.len() as u64);
        for value in values {
            value.write(&mut e);
        }
        out
    }
}

#[derive(Arbitrary, Debug)]
enum Request {
    Define(Vec<String>),
    Put {
        names: Vec<String>,
        values: Vec<Av>,
        condition: Option<(Expr, Vec<Av>)>,
    },
    Get(Option<Vec<Expr>>),
    BatchGet(u16, Option<u64>),
    BatchWrite(Vec<(Vec<String>, Vec<Av>)>),
    Scan(Expr, Vec<Av>),
}

/// The decoder's made-up table: a string hash key and a numeric sort key ("a", 1).
const KEY: &[u8] = &[0x61, b'a', 0xC1, 0x1C, 0x00, 0x00];
const PREAMBLE: &[u8] = b"\x67J7yne5G\x00\x41\x07\xa1\x69UserAgent\x65fuzzr\x00";

fn define(e: &mut E<'_>, names: &[String]) {
    let _ = e.u8(1).and_then(|e| e.i64(-1230579644));
    let _ = e.array(names.len() as u64);
    for name in names {
        let _ = e.str(name);
    }
}

fn values(names: &[String], values: &[Av]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out);
    let _ = e.i64(dynamo_cache::fuzzing::dax_list_id(names));
    for value in values {
        value.write(&mut e);
    }
    out
}

fn session(requests: &[Request]) -> Vec<u8> {
    let mut out = PREAMBLE.to_vec();
    let mut e = Encoder::new(&mut out);
    for request in requests {
        if full(&e) {
            break;
        }
        match request {
            Request::Define(names) => define(&mut e, names),
            Request::Put {
                names,
                values: vs,
                condition,
            } => {
                define(&mut e, names);
                let _ = e.u8(1).and_then(|e| e.i64(-2106490455));
                let _ = e.bytes(b"t").and_then(|e| e.bytes(KEY));
                let _ = e.bytes(&values(names, vs));
                match condition {
                    Some((expr, table)) => {
                        let _ = e.map(1).and_then(|e| e.u8(4));
                        let _ = e.bytes(&expr.compiled(table));
                    }
                    None => drop(e.null()),
                }
            }
            Request::Get(projection) => {
                let _ = e.u8(1).and_then(|e| e.i64(263244906));
                let _ = e.bytes(b"t").and_then(|e| e.bytes(KEY));
                match projection {
                    Some(paths) => {
                        let mut p = Vec::new();
                        let mut pe = Encoder::new(&mut p);
                        let _ = pe.array(2).and_then(|e| e.u8(1));
                        let _ = pe.array(paths.len() as u64);
                        for path in paths {
                            path.write(&mut pe);
                        }
                        let _ = e.map(1).and_then(|e| e.u8(0)).and_then(|e| e.bytes(&p));
                    }
                    None => drop(e.null()),
                }
            }
            Request::BatchGet(count, claim) => {
                let _ = e.u8(1).and_then(|e| e.i64(-697851100));
                let _ = e.map(1).and_then(|e| e.str("t"));
                let _ = e.array(3).and_then(|e| e.bool(false)).and_then(|e| e.null());
                let _ = e.array(claim.unwrap_or(u64::from(*count)));
                for _ in 0..*count {
                    let _ = e.bytes(KEY);
                }
                if full(&e) {
                    break;
                }
                let _ = e.null();
            }
            Request::BatchWrite(items) => {
                for (names, _) in items {
                    define(&mut e, names);
                }
                let _ = e.u8(1).and_then(|e| e.i64(116217951));
                let _ = e.map(1).and_then(|e| e.str("t"));
                let _ = e.array(items.len() as u64 * 2);
                for (names, vs) in items {
                    let _ = e.bytes(KEY).and_then(|e| e.bytes(&values(names, vs)));
                }
                let _ = e.null();
            }
            Request::Scan(filter, table) => {
                let _ = e.u8(1).and_then(|e| e.i64(-1875390620));
                let _ = e.bytes(b"t");
                let _ = e.map(1).and_then(|e| e.u8(10));
                let _ = e.bytes(&filter.compiled(table));
            }
        }
    }
    out
}

libfuzzer_sys::fuzz_target!(|requests: Vec<Request>| {
    guard::check(&session(&requests), guard::decode);
});
