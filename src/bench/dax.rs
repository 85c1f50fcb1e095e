//! A DAX client of the bench's own, for measuring a `dax://` endpoint: one connection per
//! worker, one request in flight on it, as the DAX clients use their connections. It speaks
//! only what the bench's workload needs, for the bench table (`pk` S, `sk` N), and does not
//! sign (`authorizeConnection` is for a proxy with `auth.mode = "sigv4"`).

use std::collections::HashMap;
use std::time::Duration;

use minicbor::{Decoder, Encoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::dax_codec as codec;

const GET_ITEM: i64 = 263244906;
const PUT_ITEM: i64 = -2106490455;
const QUERY: i64 = -931250863;
const BATCH_GET_ITEM: i64 = -697851100;
const DEFINE_ATTRIBUTE_LIST_ID: i64 = -1230579644;
const DEFINE_ATTRIBUTE_LIST: i64 = 670678385;

/// What the client sends before its first request (the Python client's, with its own agent).
const PREAMBLE: &[u8] = b"\x67J7yne5G\x00\xf6\xa1\x69UserAgent\x72dynamo-cache-bench\x00";

/// One DAX connection.
pub struct DaxConnection {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Attribute lists: names -> id, as the clients keep them.
    ids: HashMap<Vec<String>, i64>,
    /// And the other way, for reading answers.
    names: HashMap<i64, usize>,
}

impl DaxConnection {
    /// Connects to `dax://host:port`.
    pub async fn connect(endpoint: &str) -> Result<DaxConnection, String> {
        let addr = endpoint
            .strip_prefix("dax://")
            .ok_or_else(|| format!("{endpoint:?} is not a dax:// URL"))?;
        let connecting = TcpStream::connect(addr);
        let mut stream = tokio::time::timeout(Duration::from_secs(3), connecting)
            .await
            .map_err(|_| format!("connecting to {addr} timed out"))?
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        stream
            .write_all(PREAMBLE)
            .await
            .map_err(|e| e.to_string())?;
        Ok(DaxConnection {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            ids: HashMap::new(),
            names: HashMap::new(),
        })
    }

    /// Sends one request and reads its whole answer: `Ok` with the body's bytes, or the error
    /// code DAX answered with.
    async fn call(&mut self, request: &[u8], body_items: usize) -> Result<Vec<u8>, String> {
        self.stream
            .write_all(request)
            .await
            .map_err(|_| "connection failed".to_string())?;
        let status = self.items(1).await?;
        if status == [0x80] {
            return self.items(body_items).await;
        }
        let rest = self.items(2).await?;
        let mut d = Decoder::new(&rest);
        let _message = d.str().ok();
        let code = (|| {
            d.array().ok()?;
            d.skip().ok()?;
            d.str().ok().map(str::to_string)
        })();
        Err(code.unwrap_or_else(|| "DAX error".into()))
    }

    /// Reads `n` whole CBOR items.
    async fn items(&mut self, n: usize) -> Result<Vec<u8>, String> {
        loop {
            let mut d = Decoder::new(&self.buf);
            if (0..n).all(|_| d.skip().is_ok()) {
                let end = d.position();
                return Ok(self.buf.drain(..end).collect());
            }
            let mut chunk = [0u8; 16 * 1024];
            let read = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|_| "connection failed".to_string())?;
            if read == 0 {
                return Err("connection closed".into());
            }
            self.buf.extend_from_slice(&chunk[..read]);
        }
    }

    fn request(method: i64, items: impl FnOnce(&mut Encoder<&mut Vec<u8>>)) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        let mut e = Encoder::new(&mut out);
        e.u8(1).and_then(|e| e.i64(method)).expect("in memory");
        items(&mut e);
        out
    }

    /// GetItem of (`pk`, `sk`), eventually consistent unless `consistent`.
    pub async fn get_item(
        &mut self,
        table: &str,
        pk: &str,
        sk: u64,
        consistent: bool,
    ) -> Result<(), String> {
        let key = codec::key(pk, sk);
        let request = Self::request(GET_ITEM, |e| {
            e.bytes(table.as_bytes()).expect("in memory");
            e.bytes(&key).expect("in memory");
            e.map(1)
                .and_then(|e| e.u8(2)?.bool(consistent))
                .expect("in memory");
        });
        let body = self.call(&request, 1).await?;
        self.check_values(&body).await
    }

    /// The items of partition `pk`.
    pub async fn query(&mut self, table: &str, pk: &str, consistent: bool) -> Result<(), String> {
        let condition = codec::equals_expression("pk", pk);
        let request = Self::request(QUERY, |e| {
            e.bytes(table.as_bytes()).expect("in memory");
            e.bytes(&condition).expect("in memory");
            e.map(1)
                .and_then(|e| e.u8(2)?.u8(consistent as u8))
                .expect("in memory");
        });
        self.call(&request, 1).await.map(drop)
    }

    /// BatchGetItem of `keys` (`pk`, `sk`).
    pub async fn batch_get(
        &mut self,
        table: &str,
        keys: &[(String, u64)],
        consistent: bool,
    ) -> Result<(), String> {
        let request = Self::request(BATCH_GET_ITEM, |e| {
            let write = |e: &mut Encoder<&mut Vec<u8>>| -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
                e.map(1)?.str(table)?.array(3)?.bool(consistent)?.null()?;
                e.array(keys.len() as u64)?;
                for (pk, sk) in keys {
                    e.bytes(&codec::key(pk, *sk))?;
                }
                e.null()?;
                Ok(())
            };
            write(e).expect("in memory");
        });
        self.call(&request, 2).await.map(drop)
    }

    /// PutItem of `item`'s attributes other than `pk` and `sk`, given as DynamoDB JSON.
    pub async fn put_item(
        &mut self,
        table: &str,
        pk: &str,
        sk: u64,
        others: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), String> {
        let mut names: Vec<String> = others.keys().cloned().collect();
        names.sort();
        let id = self.list_id(&names).await?;
        let values = codec::values(id, &names, others)?;
        let key = codec::key(pk, sk);
        let request = Self::request(PUT_ITEM, |e| {
            e.bytes(table.as_bytes()).expect("in memory");
            e.bytes(&key).expect("in memory");
            e.bytes(&values).expect("in memory");
            e.null().expect("in memory");
        });
        self.call(&request, 1).await.map(drop)
    }

    async fn list_id(&mut self, names: &[String]) -> Result<i64, String> {
        if let Some(id) = self.ids.get(names) {
            return Ok(*id);
        }
        let request = Self::request(DEFINE_ATTRIBUTE_LIST_ID, |e| {
            e.array(names.len() as u64).expect("in memory");
            for name in names {
                e.str(name).expect("in memory");
            }
        });
        let body = self.call(&request, 1).await?;
        let id = Decoder::new(&body).i64().map_err(|e| e.to_string())?;
        self.ids.insert(names.to_vec(), id);
        self.names.insert(id, names.len());
        Ok(id)
    }

    /// Reads a GetItem answer as a client must: an attribute list it has not seen is looked
    /// up once, as the DAX clients do.
    async fn check_values(&mut self, body: &[u8]) -> Result<(), String> {
        let Some(id) = codec::item_list_id(body) else {
            return Ok(());
        };
        if self.names.contains_key(&id) {
            return Ok(());
        }
        let request = Self::request(DEFINE_ATTRIBUTE_LIST, |e| {
            e.i64(id).expect("in memory");
        });
        let names = self.call(&request, 1).await?;
        let count = Decoder::new(&names)
            .array()
            .ok()
            .flatten()
            .ok_or("unreadable attribute list")?;
        self.names.insert(id, count as usize);
        Ok(())
    }
}
