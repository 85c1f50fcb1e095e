//! A scripted HTTP upstream for cases a real emulator cannot show: it records every request
//! exactly as received and answers with fixed bytes (any status, DynamoDB error or not), relays
//! to a real upstream with added latency, or misbehaves on demand: hangs, drops connections,
//! truncates bodies.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// One request as the shim received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// When it arrived.
    pub at: std::time::SystemTime,
}

/// What the shim answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Status, headers and body, sent as given.
    Fixed {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Bytes,
    },
    /// Never answers.
    Hang,
    /// Drops the connection without answering (what a reset or a crashed peer looks like).
    Reset,
    /// Starts a 200 answer promising more body than it sends, then drops the connection.
    Truncated { body: Bytes },
    /// Relays to a real upstream at this URL, after a random delay of up to `jitter_ms`, plus
    /// `slow_ms` for requests whose target ends with `slow_op` (read upstream first, so the
    /// answer is as of the request's arrival, and delivered late).
    Relay {
        to: String,
        jitter_ms: u64,
        slow_op: &'static str,
        slow_ms: u64,
    },
}

/// The body of every answer the test upstreams give.
pub type ShimBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A body of these bytes.
pub fn full(body: Bytes) -> ShimBody {
    BodyExt::boxed(Full::new(body).map_err(|never| match never {}))
}

/// Answers HTTP/1.1 on `listener` with `answer`, each connection on a task of its own, for
/// as long as the test runs.
pub fn serve<F, Fut>(listener: TcpListener, answer: F)
where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<http::Response<ShimBody>, std::io::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    });
}

/// A body that sends its one part, then fails: the connection drops before the promised
/// `content-length` is reached.
struct Truncated {
    part: Option<Bytes>,
}

impl hyper::body::Body for Truncated {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(Some(match self.part.take() {
            Some(part) => Ok(hyper::body::Frame::data(part)),
            None => Err(std::io::Error::other("truncated")),
        }))
    }
}

pub struct Shim {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    reply: Arc<Mutex<Reply>>,
    /// Replies for one operation only (target suffix), ahead of `reply`.
    only: Arc<Mutex<Vec<(String, Reply)>>>,
}

impl Shim {
    pub async fn start(reply: Reply) -> Shim {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reply = Arc::new(Mutex::new(reply));
        let only: Arc<Mutex<Vec<(String, Reply)>>> = Arc::default();
        let (seen2, reply2, only2) = (seen.clone(), reply.clone(), only.clone());
        serve(
            listener,
            move |req: http::Request<hyper::body::Incoming>| {
                let (seen, reply, only) = (seen2.clone(), reply2.clone(), only2.clone());
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.unwrap().to_bytes();
                    let request = Seen {
                        method: parts.method,
                        headers: parts.headers,
                        body,
                        at: std::time::SystemTime::now(),
                    };
                    seen.lock().unwrap().push(request.clone());
                    let target = request
                        .headers
                        .get("x-amz-target")
                        .and_then(|t| t.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let special = only
                        .lock()
                        .unwrap()
                        .iter()
                        .find(|(op, _)| target.ends_with(&format!(".{op}")))
                        .map(|(_, reply)| reply.clone());
                    let reply = special.unwrap_or_else(|| reply.lock().unwrap().clone());
                    match reply {
                        Reply::Fixed {
                            status,
                            headers,
                            body,
                        } => {
                            let mut resp = http::Response::new(full(body));
                            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            for (name, value) in headers {
                                resp.headers_mut().append(name, value.parse().unwrap());
                            }
                            Ok::<_, std::io::Error>(resp)
                        }
                        Reply::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            unreachable!()
                        }
                        Reply::Reset => Err(std::io::Error::other("reset")),
                        Reply::Truncated { body } => {
                            let claimed = body.len() + 100;
                            let mut resp =
                                http::Response::new(BodyExt::boxed(Truncated { part: Some(body) }));
                            resp.headers_mut()
                                .insert("content-length", claimed.to_string().parse().unwrap());
                            resp.headers_mut().insert(
                                "content-type",
                                "application/x-amz-json-1.0".parse().unwrap(),
                            );
                            Ok(resp)
                        }
                        Reply::Relay {
                            to,
                            jitter_ms,
                            slow_op,
                            slow_ms,
                        } => {
                            let mut out = http::Request::builder()
                                .method(request.method)
                                .uri(format!("{to}/"));
                            for (name, value) in &request.headers {
                                if name != "host" {
                                    out = out.header(name, value);
                                }
                            }
                            let out = out.body(Full::new(request.body)).unwrap();
                            let client = hyper_util::client::legacy::Client::builder(
                                hyper_util::rt::TokioExecutor::new(),
                            )
                            .build_http();
                            let answer = client.request(out).await.unwrap();
                            let (parts, body) = answer.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let mut pause = fastrand::u64(0..=jitter_ms);
                            let target = request.headers.get("x-amz-target");
                            if !slow_op.is_empty()
                                && target
                                    .is_some_and(|t| t.to_str().unwrap_or("").ends_with(slow_op))
                            {
                                pause += slow_ms;
                            }
                            if pause > 0 {
                                tokio::time::sleep(Duration::from_millis(pause)).await;
                            }
                            let mut resp = http::Response::from_parts(parts, full(body));
                            resp.headers_mut().remove("transfer-encoding");
                            Ok(resp)
                        }
                    }
                }
            },
        );
        Shim {
            url,
            seen,
            reply,
            only,
        }
    }

    /// Answers requests for `op` (e.g. `DescribeTable`) with `reply`, and everything else as
    /// before.
    pub fn set_reply_for(&self, op: &str, reply: Reply) {
        let mut only = self.only.lock().unwrap();
        only.retain(|(o, _)| o != op);
        only.push((op.to_string(), reply));
    }

    /// Stops answering `op` specially.
    pub fn clear_reply_for(&self, op: &str) {
        self.only.lock().unwrap().retain(|(o, _)| o != op);
    }

    /// The shared reply slot, to change the reply from another task.
    pub fn reply_handle(&self) -> Arc<Mutex<Reply>> {
        self.reply.clone()
    }

    pub fn set_reply(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    /// A relay in front of the real upstream at `to`.
    pub async fn relay(to: &str, jitter_ms: u64) -> Shim {
        Shim::start(Reply::Relay {
            to: to.to_string(),
            jitter_ms,
            slow_op: "",
            slow_ms: 0,
        })
        .await
    }

    /// A relay that delivers `op`'s answers `slow_ms` late.
    pub async fn slow_relay(to: &str, op: &'static str, slow_ms: u64) -> Shim {
        Shim::start(Reply::Relay {
            to: to.to_string(),
            jitter_ms: 0,
            slow_op: op,
            slow_ms,
        })
        .await
    }

    /// How many requests of operation `op` reached the shim.
    pub fn count(&self, op: &str) -> usize {
        self.count_target(&format!("DynamoDB_20120810.{op}"))
    }

    /// How many requests with exactly this `X-Amz-Target` reached the shim.
    pub fn count_target(&self, target: &str) -> usize {
        self.requests()
            .iter()
            .filter(|s| s.headers.get("x-amz-target").is_some_and(|t| t == target))
            .count()
    }

    /// The body of the last request of operation `op` that reached the shim, as JSON.
    pub fn last_body(&self, op: &str) -> Option<serde_json::Value> {
        let target = format!("DynamoDB_20120810.{op}");
        self.requests()
            .into_iter()
            .rev()
            .find(|s| s.headers.get("x-amz-target").is_some_and(|t| t == &target))
            .map(|s| serde_json::from_slice(&s.body).expect("a JSON body"))
    }

    /// Waits (up to 5 s) until a request of operation `op` has reached the shim.
    pub async fn wait_for(&self, op: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.count(op) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no {op} reached the upstream"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Requests that reached the shim (the SDK health check `GET /` excluded).
    pub fn requests(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == http::Method::POST)
            .cloned()
            .collect()
    }
}
