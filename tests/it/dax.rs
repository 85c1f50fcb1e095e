//! The DAX listener, byte for byte: requests written as the DAX clients write them (see
//! `DAX-PROTOCOL.md`), answers read item by item. The real Python client runs in the interop
//! suite; these pin the wire details, bad input, authentication and the shared cache.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use minicbor::{Decoder, Encoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Relayed, metric_value};

/// The Python client's preamble: magic, no layering, a session id, its user agent, no types.
const PREAMBLE: &[u8] = b"\x67J7yne5G\x00\x50\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\xa1\x69UserAgent\x75DaxPythonClient-2.1.0\x00";

pub(crate) const ENDPOINTS: i64 = 455855874;
pub(crate) const DEFINE_ATTRIBUTE_LIST: i64 = 670678385;
pub(crate) const DEFINE_ATTRIBUTE_LIST_ID: i64 = -1230579644;
const DEFINE_KEY_SCHEMA: i64 = -742646399;
const GET_ITEM: i64 = 263244906;
const PUT_ITEM: i64 = -2106490455;
const AUTHORIZE: i64 = 1489122155;

/// `orders` key ("a", 1): the hash key as CBOR text, the sort key as LexDecimal.
const KEY_A1: &[u8] = &[0x61, b'a', 0xC1, 0x1C, 0x00, 0x00];

/// A raw DAX connection.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub(crate) async fn open(addr: SocketAddr) -> Conn {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(PREAMBLE).await.unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub(crate) async fn send(&mut self, request: &[u8]) {
        self.stream.write_all(request).await.unwrap();
    }

    /// Reads until `items` whole CBOR items have arrived; their bytes.
    pub(crate) async fn items(&mut self, items: usize) -> Vec<u8> {
        loop {
            let mut d = Decoder::new(&self.buf);
            let complete = (0..items).all(|_| d.skip().is_ok());
            if complete {
                let end = d.position();
                return self.buf.drain(..end).collect();
            }
            let mut chunk = [0u8; 65536];
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
                .await
                .expect("an answer in time")
                .unwrap();
            assert!(n > 0, "connection closed; have {:02x?}", self.buf);
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whether the server closed the connection (after anything it still had to say).
    async fn closed(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk)).await
            {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return false,
            }
        }
    }
}

/// `1, method, items...` as the clients write it.
pub(crate) fn request(method: i64, write: impl FnOnce(&mut Encoder<&mut Vec<u8>>)) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out);
    e.u8(1).unwrap().i64(method).unwrap();
    write(&mut e);
    out
}

fn get_item(table: &str, key: &[u8]) -> Vec<u8> {
    request(GET_ITEM, |e| {
        e.bytes(table.as_bytes()).unwrap().bytes(key).unwrap();
        // Python's keyword map: ReturnConsumedCapacity NONE.
        e.begin_map()
            .unwrap()
            .u8(3)
            .unwrap()
            .u8(0)
            .unwrap()
            .end()
            .unwrap();
    })
}

/// An error answer's code path and error code.
fn error_of(bytes: &[u8]) -> (Vec<u32>, String) {
    let mut d = Decoder::new(bytes);
    let n = d.array().unwrap().unwrap();
    let codes: Vec<u32> = (0..n).map(|_| d.u32().unwrap()).collect();
    let _message = d.str().unwrap();
    assert_eq!(d.array().unwrap(), Some(3));
    d.skip().unwrap();
    let code = d.str().unwrap().to_string();
    (codes, code)
}

#[tokio::test]
async fn endpoints_name_this_node_as_its_leader() {
    let bench = Relayed::start(|_| {}).await;
    let addr = bench.proxy.dax_addr;
    let mut conn = Conn::open(addr).await;
    conn.send(&request(ENDPOINTS, |_| {})).await;
    let answer = conn.items(2).await;
    assert_eq!(answer[0], 0x80, "success is exactly 0x80");
    let mut d = Decoder::new(&answer[1..]);
    assert_eq!(d.array().unwrap(), Some(1));
    assert_eq!(d.map().unwrap(), Some(7));
    let mut fields = std::collections::BTreeMap::new();
    for _ in 0..7 {
        let key = d.u8().unwrap();
        let start = d.position();
        d.skip().unwrap();
        fields.insert(key, answer[1 + start..1 + d.position()].to_vec());
    }
    assert_eq!(
        fields.keys().copied().collect::<Vec<_>>(),
        (0..7).collect::<Vec<_>>()
    );
    assert_eq!(fields[&2], [0x44, 127, 0, 0, 1], "the address as 4 bytes");
    let mut port = Vec::new();
    Encoder::new(&mut port).u16(addr.port()).unwrap();
    assert_eq!(fields[&3], port);
    assert_eq!(fields[&4], [0x01], "the leader");
}

#[tokio::test]
async fn endpoints_advertise_the_configured_address() {
    let advertised: SocketAddr = "10.1.2.3:9111".parse().unwrap();
    let bench = Relayed::start(|c| c.dax_advertise = Some(advertised)).await;
    let mut conn = Conn::open(bench.proxy.dax_addr).await;
    conn.send(&request(ENDPOINTS, |_| {})).await;
    let answer = conn.items(2).await;
    let address = [0x44, 10, 1, 2, 3];
    assert!(answer.windows(5).any(|w| w == address), "{answer:02x?}");
    assert!(
        answer.windows(3).any(|w| w == [0x19, 0x23, 0x97]),
        "port 9111"
    );
}

#[tokio::test]
async fn a_write_over_http_is_read_over_dax_from_the_shared_cache() {
    let bench = Relayed::start(|_| {}).await;
    bench
        .call(
            "PutItem",
            r#"{"TableName":"orders","Item":{"pk":{"S":"a"},"sk":{"N":"1"},"v":{"S":"one"}}}"#,
        )
        .await;
    let mut conn = Conn::open(bench.proxy.dax_addr).await;

    // The key schema, hash key first.
    conn.send(&request(DEFINE_KEY_SCHEMA, |e| {
        e.bytes(b"orders").unwrap();
    }))
    .await;
    let schema = conn.items(2).await;
    let mut expected = vec![0x80, 0xA2];
    for text in ["pk", "S", "sk", "N"] {
        expected.push(0x60 + text.len() as u8);
        expected.extend_from_slice(text.as_bytes());
    }
    assert_eq!(schema, expected);

    // Written through HTTP, stored by the write, read over DAX: a hit.
    let before = bench.relay.count("GetItem");
    conn.send(&get_item("orders", KEY_A1)).await;
    let answer = conn.items(2).await;
    assert_eq!(answer[0], 0x80);
    let mut d = Decoder::new(&answer[1..]);
    assert_eq!(d.map().unwrap(), Some(1));
    assert_eq!(d.u8().unwrap(), 0, "Item");
    let values = d.bytes().unwrap();
    let mut v = Decoder::new(values);
    let list = v.i64().unwrap();
    assert_eq!(v.str().unwrap(), "one");
    assert_eq!(v.position(), values.len(), "one value: v");
    assert_eq!(bench.relay.count("GetItem"), before, "answered from memory");

    // The list id names the non-key attributes.
    conn.send(&request(DEFINE_ATTRIBUTE_LIST, |e| {
        e.i64(list).unwrap();
    }))
    .await;
    assert_eq!(conn.items(2).await, [0x80, 0x81, 0x61, b'v']);

    // An update over HTTP is seen over DAX at once.
    bench
        .call(
            "UpdateItem",
            r#"{"TableName":"orders","Key":{"pk":{"S":"a"},"sk":{"N":"1"}},"UpdateExpression":"SET v = :v","ExpressionAttributeValues":{":v":{"S":"two"}}}"#,
        )
        .await;
    conn.send(&get_item("orders", KEY_A1)).await;
    let answer = conn.items(2).await;
    assert!(answer.windows(4).any(|w| w == b"\x63two"), "{answer:02x?}");

    // A put over DAX (values under the same list) is read over HTTP.
    conn.send(&request(PUT_ITEM, |e| {
        let mut values = Vec::new();
        Encoder::new(&mut values)
            .i64(list)
            .unwrap()
            .str("three")
            .unwrap();
        e.bytes(b"orders").unwrap().bytes(KEY_A1).unwrap();
        e.bytes(&values).unwrap().null().unwrap();
    }))
    .await;
    assert_eq!(conn.items(2).await, [0x80, 0xA0]);
    let read = bench
        .call(
            "GetItem",
            r#"{"TableName":"orders","Key":{"pk":{"S":"a"},"sk":{"N":"1"}}}"#,
        )
        .await;
    assert_eq!(read.json()["Item"]["v"]["S"], "three");

    let exposition = bench.proxy.metrics().await;
    let dax_hits = metric_value(
        &exposition,
        r#"dynamo_cache_requests_total{op="GetItem",protocol="dax",result="hit"}"#,
    );
    assert_eq!(dax_hits, 2.0);
    let http_hits = metric_value(
        &exposition,
        r#"dynamo_cache_requests_total{op="GetItem",protocol="http",result="hit"}"#,
    );
    assert_eq!(http_hits, 1.0);
}

#[tokio::test]
async fn a_miss_leaves_the_item_out_and_errors_keep_the_connection() {
    let bench = Relayed::start(|_| {}).await;
    let mut conn = Conn::open(bench.proxy.dax_addr).await;
    conn.send(&get_item("orders", KEY_A1)).await;
    assert_eq!(conn.items(2).await, [0x80, 0xA0], "no Item key at all");

    // A table that does not exist.
    conn.send(&get_item("nothing-here", b"a")).await;
    let (codes, code) = error_of(&conn.items(3).await);
    assert_eq!(codes, [4, 37, 38, 39, 41]);
    assert_eq!(code, "ResourceNotFoundException");

    // A key that is not the table's: a number where the hash key is a string.
    conn.send(&get_item("orders", &[0x01, 0xC1, 0x1C, 0x00, 0x00]))
        .await;
    let (codes, code) = error_of(&conn.items(3).await);
    assert_eq!(codes, [4, 37, 38, 39, 46]);
    assert_eq!(code, "ValidationException");

    // An expression the proxy cannot read: function 99.
    let compiled = [0x83, 0x01, 0x81, 0x18, 99, 0x80];
    conn.send(&request(PUT_ITEM, |e| {
        e.bytes(b"orders").unwrap().bytes(KEY_A1).unwrap();
        e.bytes(&[0x01]).unwrap();
        e.begin_map()
            .unwrap()
            .u8(4)
            .unwrap()
            .bytes(&compiled)
            .unwrap();
        e.end().unwrap();
    }))
    .await;
    let (codes, _) = error_of(&conn.items(3).await);
    assert_eq!(codes, [4, 37, 38, 39, 46]);
    assert_eq!(
        bench.relay.count("PutItem"),
        0,
        "nothing was guessed and sent"
    );

    // The connection still serves.
    conn.send(&request(ENDPOINTS, |_| {})).await;
    assert_eq!(conn.items(2).await[0], 0x80);
}

#[tokio::test]
async fn bytes_that_are_not_dax_close_the_connection() {
    let bench = Relayed::start(|c| {
        c.limits.max_body_bytes = 64 * 1024;
        c.limits.header_read_timeout_ms = 500;
    })
    .await;
    let addr = bench.proxy.dax_addr;
    let open = || async {
        metric_value(
            &bench.proxy.metrics().await,
            "dynamo_cache_open_connections",
        )
    };
    let before = open().await;

    // Not a DAX client at all.
    let mut http = TcpStream::connect(addr).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    http.read_to_end(&mut answer).await.unwrap();
    assert!(answer.is_empty());

    // A method nobody defined: its end cannot be found, so an error, then the close.
    let mut conn = Conn::open(addr).await;
    conn.send(&request(ENDPOINTS, |_| {})).await;
    conn.items(2).await;
    assert_eq!(open().await, before + 1.0, "a DAX connection is counted");
    conn.send(&request(12345, |_| {})).await;
    let (codes, _) = error_of(&conn.items(3).await);
    assert_eq!(codes[0], 4);
    assert!(conn.closed().await);

    // A byte string that claims a gigabyte: the proxy holds at most its limit, then closes.
    let mut conn = Conn::open(addr).await;
    let mut header = vec![0x01, 0x1A, 0x0F, 0xB0, 0xCC, 0x6A, 0x5A];
    header.extend_from_slice(&(1u32 << 30).to_be_bytes());
    conn.send(&header).await;
    let chunk = vec![0u8; 16 * 1024];
    let mut sent = 0;
    while sent < 512 * 1024 {
        if conn.stream.write_all(&chunk).await.is_err() {
            break;
        }
        sent += chunk.len();
    }
    assert!(conn.closed().await);

    // Half a request, and then nothing: closed after the header read timeout, as for HTTP.
    // An idle connection with no request begun stays open (DAX clients pool them).
    let mut idle = Conn::open(addr).await;
    let mut stalled = Conn::open(addr).await;
    let whole = get_item("orders", KEY_A1);
    stalled.send(&whole[..whole.len() / 2]).await;
    assert!(stalled.closed().await);
    assert_eq!(
        metric_value(
            &bench.proxy.metrics().await,
            "dynamo_cache_slow_client_disconnects_total"
        ),
        1.0
    );
    idle.send(&request(ENDPOINTS, |_| {})).await;
    assert_eq!(idle.items(2).await[0], 0x80);
    drop(idle);

    // Every connection is gone again.
    for _ in 0..100 {
        if open().await == before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("connections stayed open");
}

#[tokio::test]
async fn authorize_connection_is_verified_when_sigv4_is_on() {
    let (bench, dir, _) = signed(
        "auth",
        "[[principal]]\nname = \"app\"\naccess_key_id = \"AKIDAPP\"\nsecret_access_key = \"app-secret\"\ntables = [\"orders\"]\noperations = [\"read\"]\n",
    )
    .await;
    let addr = bench.proxy.dax_addr;

    // No authorizeConnection: refused, as an authentication error the clients re-auth on,
    // for the protocol's own methods too.
    let mut conn = Conn::open(addr).await;
    conn.send(&get_item("orders", KEY_A1)).await;
    let (codes, code) = error_of(&conn.items(3).await);
    assert_eq!(&codes[1..3], [23, 31]);
    assert_eq!(code, "MissingAuthenticationTokenException");
    conn.send(&request(-1230579644, |e| {
        e.array(1).unwrap().str("x").unwrap();
    }))
    .await;
    let (codes, _) = error_of(&conn.items(3).await);
    assert_eq!(&codes[1..3], [23, 31]);
    assert_eq!(bench.relay.count("GetItem"), 0);

    // Signed as the Python client signs: then reads are allowed, writes are not.
    let mut conn = Conn::open(addr).await;
    conn.send(&authorize("AKIDAPP", "app-secret")).await;
    conn.send(&get_item("orders", KEY_A1)).await;
    assert_eq!(conn.items(2).await, [0x80, 0xA0]);
    conn.send(&request(PUT_ITEM, |e| {
        e.bytes(b"orders").unwrap().bytes(KEY_A1).unwrap();
        e.bytes(&[0x01]).unwrap().null().unwrap();
    }))
    .await;
    let (codes, code) = error_of(&conn.items(3).await);
    assert_eq!(codes, [4, 37, 38, 42]);
    assert_eq!(code, "AccessDeniedException");
    assert_eq!(bench.relay.count("PutItem"), 0);

    // The wrong secret.
    let mut conn = Conn::open(addr).await;
    conn.send(&authorize("AKIDAPP", "not-the-secret")).await;
    conn.send(&get_item("orders", KEY_A1)).await;
    let (codes, code) = error_of(&conn.items(3).await);
    assert_eq!(&codes[1..3], [23, 31]);
    assert_eq!(code, "InvalidSignatureException");
    let _ = std::fs::remove_dir_all(dir);
}

/// A bench with SigV4 authentication on, its principals file (in its own folder, named after
/// `tag`) holding `principals`: the bench, the folder to remove, and the file to rewrite.
async fn signed(tag: &str, principals: &str) -> (Relayed, std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("dynamo-cache-dax-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("principals.toml");
    std::fs::write(&file, principals).unwrap();
    let credentials = file.clone();
    let bench = Relayed::start(|c| {
        c.auth.mode = dynamo_cache::config::AuthMode::Sigv4;
        c.auth.credentials_file = Some(credentials);
    })
    .await;
    (bench, dir, file)
}

/// `authorizeConnection` as the Python client builds it: SigV4 over a fixed canonical request,
/// for service `dax`.
fn authorize(key: &str, secret: &str) -> Vec<u8> {
    use sha2::Digest;
    let now = SystemTime::now();
    let amz_date = time::OffsetDateTime::from(now)
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap();
    let date = &amz_date[..8];
    let canonical = format!(
        "POST\n/\n\nhost:dax.amazonaws.com\nx-amz-date:{amz_date}\n\nhost;x-amz-date\n{}",
        hex::encode(sha2::Sha256::digest(b""))
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{}/dax/aws4_request\n{}",
        crate::common::REGION,
        hex::encode(sha2::Sha256::digest(canonical.as_bytes()))
    );
    let signing_key =
        aws_sigv4::sign::v4::generate_signing_key(secret, now, crate::common::REGION, "dax");
    let signature =
        aws_sigv4::sign::v4::calculate_signature(signing_key.as_ref(), string_to_sign.as_bytes());
    request(AUTHORIZE, |e| {
        e.str(key).unwrap().str(&signature).unwrap();
        e.bytes(string_to_sign.as_bytes()).unwrap();
        e.null().unwrap().str("DaxPythonClient-2.1.0").unwrap();
    })
}

#[test]
fn the_decoder_survives_mutated_requests() {
    // Seeds: sessions of the Python client as recorded on the wire (the fuzz target's corpus,
    // fuzz/), a few hand-made requests, then mutations of them: a bounded, deterministic
    // stand-in for the fuzz target.
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/dax_frames");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    assert!(
        seeds.len() >= 2,
        "the recorded sessions are in {}",
        corpus.display()
    );
    // A whole session decodes: its attribute lists are defined, so its writes can be read.
    for seed in &seeds {
        let _ = dynamo_cache::fuzzing::dax(seed);
    }
    let mut session = PREAMBLE.to_vec();
    session.extend(get_item("orders", KEY_A1));
    seeds.push(session);
    seeds.push(request(PUT_ITEM, |e| {
        e.bytes(b"t").unwrap().bytes(KEY_A1).unwrap();
        e.bytes(&[0x18, 0x20, 0x81, 0x01]).unwrap();
        e.begin_map().unwrap().u8(4).unwrap();
        e.bytes(&[
            0x83, 0x01, 0x83, 0x00, 0x82, 0x12, 0x61, b'a', 0x82, 0x11, 0x00, 0x81, 0x01,
        ])
        .unwrap();
        e.end().unwrap();
    }));
    seeds.push(request(-1230579644, |e| {
        e.array(2).unwrap().str("a").unwrap().str("b").unwrap();
    }));
    seeds.push(request(-931250863, |e| {
        e.bytes(b"t").unwrap().null().unwrap();
        e.map(2).unwrap().u8(9).unwrap().bytes(KEY_A1).unwrap();
        e.u8(13).unwrap().u8(5).unwrap();
    }));
    let mut rng = fastrand::Rng::with_seed(20261202);
    for round in 0..20_000 {
        let mut input = seeds[round % seeds.len()].clone();
        for _ in 0..rng.usize(1..8) {
            let at = rng.usize(..input.len());
            match rng.u8(..4) {
                0 => input[at] = rng.u8(..),
                1 => input.insert(at, rng.u8(..)),
                2 => {
                    input.remove(at);
                }
                _ => input[at] ^= 1 << rng.u8(..8),
            }
            if input.is_empty() {
                input.push(0);
            }
        }
        let _ = dynamo_cache::fuzzing::dax(&input);
    }
}

#[test]
fn a_recorded_python_client_session_decodes_to_the_requests_it_made() {
    // amazon-dax-client 2.1.0's bytes, recorded on the wire, for a table keyed (pk S, sk N).
    let session = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/dax_frames/python-client-session"),
    )
    .unwrap();
    let decoded: Vec<(&str, serde_json::Value)> = dynamo_cache::fuzzing::dax(&session)
        .into_iter()
        .map(|r| r.expect("every request decodes"))
        .collect();
    let ops: Vec<&str> = decoded.iter().map(|(op, _)| *op).collect();
    assert_eq!(
        ops,
        [
            "PutItem",
            "GetItem",
            "UpdateItem",
            "Query",
            "Scan",
            "BatchGetItem",
            "BatchWriteItem",
            "TransactWriteItems",
            "TransactGetItems"
        ]
    );
    let body = |i: usize| &decoded[i].1;
    // Put: the item with every type, and the condition written as text again.
    assert_eq!(
        body(0)["Item"]["n"]["N"],
        "-12345678901234567890123456789.5"
    );
    assert_eq!(body(0)["Item"]["sk"]["N"], "1.5", "a LexDecimal sort key");
    assert_eq!(
        body(0)["Item"]["m"]["M"]["ns"]["NS"],
        serde_json::json!(["1", "200000"])
    );
    assert_eq!(
        body(0)["ConditionExpression"],
        "(attribute_not_exists(#n0)) OR ((#n1 BETWEEN :c0 AND :c1) OR (#n2.#n3 IN (:c2, :c3)))"
    );
    assert_eq!(
        body(0)["ExpressionAttributeValues"][":c3"],
        serde_json::json!({"NULL": true})
    );
    assert_eq!(body(1)["ProjectionExpression"], "#n0[0], #n1.#n2");
    assert_eq!(
        body(2)["UpdateExpression"],
        "SET #n0 = if_not_exists(#n0, :u0) - :u1, #n1 = list_append(#n1, :u2) REMOVE #n2.#n3 \
         ADD #n4 :u3 DELETE #n2.#n5 :u4"
    );
    assert_eq!(body(2)["ReturnValues"], "UPDATED_NEW");
    assert_eq!(
        body(3)["KeyConditionExpression"],
        "(#n0 = :k0) AND (#n1 > :k1)"
    );
    assert_eq!(
        body(3)["FilterExpression"],
        "(NOT (contains(#n2, :f0))) AND ((size(#n3) >= :f1) AND (attribute_type(#n4, :f2)))"
    );
    assert_eq!(body(3)["ScanIndexForward"], false);
    assert_eq!(body(3)["ExclusiveStartKey"]["sk"]["N"], "1.5");
    assert_eq!(body(4)["TotalSegments"], 2);
    assert_eq!(body(5)["RequestItems"]["tbl"]["ConsistentRead"], true);
    assert_eq!(
        body(6)["RequestItems"]["tbl"][1]["DeleteRequest"]["Key"]["pk"]["S"],
        "a"
    );
    let transact = body(7)["TransactItems"].as_array().unwrap();
    let kinds: Vec<&str> = transact
        .iter()
        .map(|t| t.as_object().unwrap().keys().next().unwrap().as_str())
        .collect();
    assert_eq!(kinds, ["Put", "ConditionCheck", "Update", "Delete"]);
    assert!(body(7)["ClientRequestToken"].is_string());
    assert_eq!(
        body(8)["TransactItems"][0]["Get"]["ProjectionExpression"],
        "#n0"
    );
}

const SCAN: i64 = -1875390620;

/// A scan of `orders` whose filter (keyword 10) is `compiled`.
fn scan_filtered(compiled: &[u8]) -> Vec<u8> {
    request(SCAN, |e| {
        e.bytes(b"orders").unwrap();
        e.begin_map()
            .unwrap()
            .u8(10)
            .unwrap()
            .bytes(compiled)
            .unwrap()
            .end()
            .unwrap();
    })
}

#[tokio::test]
async fn hostile_requests_get_dax_errors_and_the_proxy_serves_on() {
    let bench = Relayed::start(|_| {}).await;
    let mut conn = Conn::open(bench.proxy.dax_addr).await;
    // 13 bytes claiming an operator with 2^43 operands, then one with 2^64 - 1.
    for claim in [
        [0x9B, 0, 0, 0x08, 0, 0, 0, 0, 0],
        [0x9B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
    ] {
        let mut compiled = vec![0x83, 0x01];
        compiled.extend_from_slice(&claim);
        compiled.extend_from_slice(&[0x00, 0x80]);
        conn.send(&scan_filtered(&compiled)).await;
        let (codes, code) = error_of(&conn.items(3).await);
        assert_eq!(
            (codes, code.as_str()),
            (vec![4, 37, 38, 39, 46], "ValidationException")
        );
    }
    // A put whose value is 10,000 nested decimals (30 KB).
    let mut values = vec![0x01];
    let mut nested = Vec::new();
    for _ in 0..10_000 {
        nested.extend_from_slice(&[0xC4, 0x82, 0x00]);
    }
    nested.push(0x01);
    values.extend_from_slice(&nested);
    // The list id must name one attribute: define it first.
    conn.send(&request(-1230579644, |e| {
        e.array(1).unwrap().str("n").unwrap();
    }))
    .await;
    let defined = conn.items(2).await;
    let id = Decoder::new(&defined[1..]).i64().unwrap();
    let mut item = Vec::new();
    Encoder::new(&mut item).i64(id).unwrap();
    item.extend_from_slice(&nested);
    conn.send(&request(PUT_ITEM, |e| {
        e.bytes(b"orders").unwrap().bytes(KEY_A1).unwrap();
        e.bytes(&item).unwrap();
        e.null().unwrap();
    }))
    .await;
    let (codes, _) = error_of(&conn.items(3).await);
    assert_eq!(codes, [4, 37, 38, 39, 46]);
    assert_eq!(bench.relay.count("PutItem"), 0);
    assert_eq!(bench.relay.count("Scan"), 0);
    // The same connection, and HTTP, still serve.
    conn.send(&request(ENDPOINTS, |_| {})).await;
    assert_eq!(conn.items(2).await[0], 0x80);
    assert!(!bench.proxy.metrics().await.is_empty());
}

#[tokio::test]
async fn idle_and_trickling_connections_are_closed() {
    let bench = Relayed::start(|c| {
        c.limits.header_read_timeout_ms = 400;
        c.limits.idle_timeout_ms = 400;
    })
    .await;
    let addr = bench.proxy.dax_addr;
    // Idle past the idle timeout after a request: closed.
    let mut idle = Conn::open(addr).await;
    idle.send(&request(ENDPOINTS, |_| {})).await;
    idle.items(2).await;
    assert!(idle.closed().await, "an idle connection is closed");

    // A request trickled a byte every 50 ms: each byte used to restart the timer, so it was
    // never closed. Its whole request must arrive within the timeout of its first byte.
    let mut slow = Conn::open(addr).await;
    let whole = get_item("orders", KEY_A1);
    let trickle = tokio::spawn(async move {
        for byte in whole.iter().cycle().take(200) {
            if slow.stream.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        slow.closed().await
    });
    assert!(trickle.await.unwrap(), "a trickling request is cut off");
}

/// An error answer's code path, error code and message.
fn error_with_message(bytes: &[u8]) -> (Vec<u32>, String, String) {
    let mut d = Decoder::new(bytes);
    let n = d.array().unwrap().unwrap();
    let codes: Vec<u32> = (0..n).map(|_| d.u32().unwrap()).collect();
    let message = d.str().unwrap().to_string();
    assert_eq!(d.array().unwrap(), Some(3));
    d.skip().unwrap();
    let code = d.str().unwrap().to_string();
    (codes, code, message)
}

#[tokio::test]
async fn tables_are_looked_up_for_allowed_callers_only_and_reloads_reach_open_connections() {
    let principal = |key: &str| {
        format!(
            "[[principal]]\nname = \"app\"\naccess_key_id = \"{key}\"\nsecret_access_key = \"s\"\n\
             tables = [\"orders\", \"missing*\"]\noperations = [\"read\"]\n"
        )
    };
    let (bench, dir, file) = signed("grants", &principal("AKIDOLD")).await;
    let mut conn = Conn::open(bench.proxy.dax_addr).await;
    conn.send(&authorize("AKIDOLD", "s")).await;
    conn.send(&get_item("orders", KEY_A1)).await;
    assert_eq!(conn.items(2).await, [0x80, 0xA0]);
    let described = bench.relay.count("DescribeTable");

    // A table the caller has no grant on: refused, and nobody asked DynamoDB about it.
    for _ in 0..3 {
        conn.send(&get_item("payroll", b"a")).await;
        let (codes, code, _) = error_with_message(&conn.items(3).await);
        assert_eq!(
            (codes, code.as_str()),
            (vec![4, 37, 38, 42], "AccessDeniedException")
        );
    }
    assert_eq!(bench.relay.count("DescribeTable"), described);

    // A table it may use that does not exist: worded as GetItem words it.
    conn.send(&get_item("missing-table", b"a")).await;
    let (codes, code, message) = error_with_message(&conn.items(3).await);
    assert_eq!(codes, [4, 37, 38, 39, 41]);
    assert_eq!(code, "ResourceNotFoundException");
    assert_eq!(message, "Requested resource not found");

    // A name DynamoDB refuses: its own validation, and no lookup.
    let before = bench.relay.count("DescribeTable");
    conn.send(&get_item("no", b"a")).await;
    let (_, code, message) = error_with_message(&conn.items(3).await);
    assert_eq!(code, "ValidationException");
    assert_eq!(
        message,
        "1 validation error detected: Value 'no' at 'tableName' failed to satisfy constraint: \
         Member must have length greater than or equal to 3"
    );
    assert_eq!(bench.relay.count("DescribeTable"), before);

    // The key is replaced in the file and reloaded: the open connection's next request is
    // refused as the clients re-authenticate on, and the new key then works on it.
    std::fs::write(&file, principal("AKIDNEW")).unwrap();
    bench.proxy.state.reload().unwrap();
    conn.send(&get_item("orders", KEY_A1)).await;
    let (codes, code, _) = error_with_message(&conn.items(3).await);
    assert_eq!(&codes[..3], [4, 23, 31]);
    assert_eq!(code, "UnrecognizedClientException");
    conn.send(&authorize("AKIDNEW", "s")).await;
    conn.send(&get_item("orders", KEY_A1)).await;
    assert_eq!(conn.items(2).await, [0x80, 0xA0]);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn before_authenticating_a_connection_may_hold_little() {
    let (bench, dir, _) = signed(
        "preauth",
        "[[principal]]\nname = \"app\"\naccess_key_id = \"AKIDAPP\"\nsecret_access_key = \"s\"\ntables = [\"*\"]\noperations = [\"read\", \"write\"]\n",
    )
    .await;
    // A request of a megabyte (well within max_body_bytes) from a caller who has not
    // authenticated: closed after 64 KB, not buffered whole.
    let mut conn = Conn::open(bench.proxy.dax_addr).await;
    let mut header = vec![0x01, 0x3A, 0x7D, 0x8E, 0x7E, 0x56, 0x5A];
    header.extend_from_slice(&(1u32 << 20).to_be_bytes());
    conn.send(&header).await;
    let chunk = vec![0u8; 8 * 1024];
    let mut sent = 0;
    while sent < 256 * 1024 && conn.stream.write_all(&chunk).await.is_ok() {
        sent += chunk.len();
    }
    assert!(conn.closed().await);
    // Authenticated first, the same request is read whole (and answered).
    let mut conn = Conn::open(bench.proxy.dax_addr).await;
    conn.send(&authorize("AKIDAPP", "s")).await;
    let mut big = vec![0x01, 0x3A, 0x7D, 0x8E, 0x7E, 0x56];
    let mut e = Encoder::new(&mut big);
    e.bytes(b"orders").unwrap().bytes(KEY_A1).unwrap();
    e.bytes(&vec![0u8; 256 * 1024]).unwrap().null().unwrap();
    conn.send(&big).await;
    let (codes, _) = error_of(&conn.items(3).await);
    assert_eq!(codes[0], 4, "an answer, not a closed connection");
    let _ = std::fs::remove_dir_all(dir);
}

const QUERY: i64 = -931250863;

/// A query of partition "a" of `orders` with Select = 1 (ALL_ATTRIBUTES) and a projection of
/// `pk`, from a client that introduces itself with `preamble`.
async fn query_selecting_all(bench: &Relayed, preamble: &[u8]) -> (Vec<u8>, serde_json::Value) {
    let mut stream = TcpStream::connect(bench.proxy.dax_addr).await.unwrap();
    stream.write_all(preamble).await.unwrap();
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    // [1, [EQ, [PATH, "pk"], [VAR, 0]], [{S: "a"}]]: pk = :v0.
    let condition = [
        0x83, 0x01, 0x83, 0x00, 0x82, 0x12, 0x62, b'p', b'k', 0x82, 0x11, 0x00, 0x81, 0x61, b'a',
    ];
    // [1, [[PATH, "pk"]]]
    let projection = [0x82, 0x01, 0x81, 0x82, 0x12, 0x62, b'p', b'k'];
    conn.send(&request(QUERY, |e| {
        e.bytes(b"orders").unwrap().bytes(&condition).unwrap();
        e.begin_map().unwrap();
        e.u8(15).unwrap().u8(1).unwrap();
        e.u8(0).unwrap().bytes(&projection).unwrap();
        e.end().unwrap();
    }))
    .await;
    let answer = conn.items(1).await;
    let sent = bench
        .relay
        .last_body("Query")
        .unwrap_or(serde_json::Value::Null);
    (answer, sent)
}

#[tokio::test]
async fn select_all_attributes_from_the_go_v2_client_means_unset() {
    let bench = Relayed::start(|_| {}).await;
    // aws-dax-go-v2 writes Select = 1 whenever its caller left Select unset: with the
    // projection it also sent, DynamoDB would refuse ALL_ATTRIBUTES.
    let go = b"\x67J7yne5G\x00\x63123\xa1\x69UserAgent\x73DaxGoV2Client-1.0.3\x00";
    let (answer, sent) = query_selecting_all(&bench, go).await;
    assert_eq!(answer, [0x80], "answered, not refused");
    assert!(sent.get("Select").is_none(), "{sent}");
    assert_eq!(sent["ProjectionExpression"], "#n0");
    // The Python client writes it only when its caller asked: then it is forwarded as asked.
    let (_, sent) = query_selecting_all(&bench, PREAMBLE).await;
    assert_eq!(sent["Select"], "ALL_ATTRIBUTES");
}

#[tokio::test]
async fn large_requests_share_one_bound_and_small_ones_are_served_beside_them() {
    // Four of the largest requests may be buffered at once (4 x 1 MB past the first 64 KB of
    // each). Eight connections each send 700 KB of a request that claims a gigabyte, within
    // the per-request limit: without the shared bound all eight would be held until the
    // header timeout (a minute here).
    let bench = Relayed::start(|c| {
        c.limits.max_body_bytes = 1 << 20;
        c.limits.header_read_timeout_ms = 60_000;
    })
    .await;
    let addr = bench.proxy.dax_addr;
    let mut huge = Vec::new();
    for _ in 0..8 {
        let mut conn = Conn::open(addr).await;
        let mut header = vec![0x01, 0x1A, 0x0F, 0xB0, 0xCC, 0x6A, 0x5A];
        header.extend_from_slice(&(1u32 << 30).to_be_bytes());
        conn.send(&header).await;
        let _ = conn.stream.write_all(&vec![0u8; 700 * 1024]).await;
        huge.push(conn);
    }
    let mut small = Conn::open(addr).await;
    small.send(&get_item("orders", KEY_A1)).await;
    assert_eq!(small.items(2).await, [0x80, 0xA0]);
    let mut closed = 0;
    for mut conn in huge {
        let mut chunk = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(2), conn.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed += 1;
                    break;
                }
                Ok(Ok(_)) => continue,
                Err(_) => break,
            }
        }
    }
    assert!(
        (1..8).contains(&closed),
        "some but not all were refused at once: {closed}"
    );
}

/// Which of a compact capacity's five fields are present (not null).
fn capacity_fields(answer: &[u8]) -> Vec<bool> {
    let mut d = Decoder::new(answer);
    let mut fields = None;
    let n = d.map().unwrap();
    for _ in 0..n.unwrap_or(u64::MAX) {
        if d.datatype().unwrap() == minicbor::data::Type::Break {
            break;
        }
        let key = d.u8().unwrap();
        if key == 1 {
            let inner = d.bytes().unwrap();
            let mut c = Decoder::new(inner);
            let _table = c.str().unwrap();
            let _units = c.f64().unwrap();
            fields = Some(
                (0..3)
                    .map(|_| {
                        let present = c.datatype().unwrap() != minicbor::data::Type::Null;
                        c.skip().unwrap();
                        present
                    })
                    .collect(),
            );
        } else {
            d.skip().unwrap();
        }
    }
    fields.expect("a ConsumedCapacity")
}

#[tokio::test]
async fn a_dax_hit_reports_capacity_as_the_miss_did() {
    let bench = Relayed::start(|_| {}).await;
    // Written straight to the emulator, so the first read is a miss.
    crate::common::sdk(&bench.upstream.url)
        .put_item()
        .table_name("orders")
        .item("pk", aws_sdk_dynamodb::types::AttributeValue::S("a".into()))
        .item("sk", aws_sdk_dynamodb::types::AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    let mut conn = Conn::open(bench.proxy.dax_addr).await;
    let get = request(GET_ITEM, |e| {
        e.bytes(b"orders").unwrap().bytes(KEY_A1).unwrap();
        // ReturnConsumedCapacity INDEXES.
        e.map(1).unwrap().u8(3).unwrap().u8(2).unwrap();
    });
    let mut seen = Vec::new();
    for _ in 0..2 {
        conn.send(&get).await;
        let answer = conn.items(2).await;
        // [0x80] then the body map.
        seen.push(capacity_fields(&answer[1..]));
    }
    assert_eq!(bench.relay.count("GetItem"), 1, "the second was a hit");
    assert_eq!(seen[0], seen[1], "the hit's fields are the miss's");
    assert_eq!(
        seen[1],
        [true, false, false],
        "the table's own units, no index"
    );
}

#[test]
fn counts_past_dynamodbs_are_refused_while_they_are_read() {
    // 101 keys in a batchGetItem, 26 writes in a batchWriteItem: DynamoDB's own refusals.
    let batch_get = |keys: usize| {
        request(-697851100, |e| {
            e.map(1).unwrap().str("t").unwrap();
            e.array(3).unwrap().bool(false).unwrap().null().unwrap();
            e.array(keys as u64).unwrap();
            for _ in 0..keys {
                e.bytes(KEY_A1).unwrap();
            }
            e.null().unwrap();
        })
    };
    let decoded = |bytes: Vec<u8>| dynamo_cache::fuzzing::dax(&bytes).remove(0);
    assert!(decoded(batch_get(100)).is_ok());
    let refused = decoded(batch_get(101)).unwrap_err();
    assert!(
        refused.contains("Too many items requested for the BatchGetItem call"),
        "{refused}"
    );
    let batch_write = |writes: usize| {
        request(116217951, |e| {
            e.map(1).unwrap().str("t").unwrap();
            e.array(2 * writes as u64).unwrap();
            for _ in 0..writes {
                e.bytes(KEY_A1).unwrap().null().unwrap();
            }
            e.null().unwrap();
        })
    };
    assert!(decoded(batch_write(25)).is_ok());
    let refused = decoded(batch_write(26)).unwrap_err();
    assert!(
        refused.contains("Too many items requested for the BatchWriteItem call"),
        "{refused}"
    );
}

/// The DAX front-end fills through the same cache layer: a DAX read right after a write
/// reads strongly consistently, and sees the write though DynamoDB's replica has not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dax_read_after_a_write_sees_it_though_the_replica_lags() {
    use crate::common::{Proxy, dynamo, lagging::Lagging, sdk, table_like_orders};
    let lagging = Lagging::start(Duration::from_secs(2)).await;
    table_like_orders(&sdk(&lagging.url), "orders")
        .send()
        .await
        .unwrap();
    let key = r#"{"pk":{"S":"a"},"sk":{"N":"1"}}"#;
    let put = r#"{"TableName":"orders","Item":{"pk":{"S":"a"},"sk":{"N":"1"},"v":{"S":"one"}}}"#;
    assert_eq!(dynamo(&lagging.url, "PutItem", put).await.status, 200);
    lagging.settle().await;
    let proxy = Proxy::start(&lagging.url).await;
    let mut conn = Conn::open(proxy.dax_addr).await;
    conn.send(&get_item("orders", KEY_A1)).await;
    let answer = conn.items(2).await;
    assert!(answer.windows(4).any(|w| w == b"\x63one"), "{answer:02x?}");

    // A transaction drops the key; the replica applies it 2 s later.
    let transact = format!(
        r#"{{"TransactItems":[{{"Update":{{"TableName":"orders","Key":{key},"UpdateExpression":"SET v = :v","ExpressionAttributeValues":{{":v":{{"S":"two"}}}}}}}}]}}"#
    );
    let written = std::time::Instant::now();
    assert_eq!(
        dynamo(&proxy.url, "TransactWriteItems", &transact)
            .await
            .status,
        200
    );
    conn.send(&get_item("orders", KEY_A1)).await;
    let answer = conn.items(2).await;
    assert!(written.elapsed() < lagging.lag(), "the test cannot tell");
    assert!(
        answer.windows(4).any(|w| w == b"\x63two"),
        "a DAX read after the write saw the replica's old version: {answer:02x?}"
    );
    assert_eq!(lagging.strong_reads("GetItem"), 1);
}

/// The DAX listener is served by the same accept loop as HTTP: its connection limit refuses
/// (and counts) a client past it, open connections are counted, and on shutdown a connection
/// between requests is closed while the proxy drains.
#[tokio::test]
async fn the_dax_listener_shares_the_connection_limit_and_the_drain() {
    let mut bench = Relayed::start(|c| c.limits.max_connections = 1).await;
    let addr = bench.proxy.dax_addr;
    // The scrape's own admin connection is counted too.
    let scraping = bench.proxy.metric("dynamo_cache_open_connections").await;
    let mut held = Conn::open(addr).await;
    held.send(&request(ENDPOINTS, |_| {})).await;
    held.items(2).await;
    assert_eq!(
        bench.proxy.metric("dynamo_cache_open_connections").await,
        scraping + 1.0,
        "the DAX connection is counted"
    );

    let mut refused = Conn::open(addr).await;
    assert!(refused.closed().await, "a client past the limit is closed");
    assert_eq!(
        bench
            .proxy
            .metric("dynamo_cache_rejected_connections_total")
            .await,
        1.0
    );

    // Shutting down closes the connection that waits between requests, well before the
    // drain deadline.
    let started = std::time::Instant::now();
    bench.proxy.stop().await;
    assert!(
        held.closed().await,
        "the held connection is closed on drain"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the drain waited for an idle DAX connection"
    );
}
