//! Connections to the upstream, each driven by the request that is using it.
//!
//! A pooled client (hyper's legacy one) drives every connection from a task of its own: the
//! request hands its message to that task over a channel and waits on another for the answer,
//! so each forward wakes and schedules two tasks, and checking a connection out of the pool
//! hashes its host and takes a lock. Here a request takes an idle connection from its own
//! thread's list, polls the connection itself until the answer's last byte is in, and puts it
//! back. Nothing runs on a connection between requests.
//!
//! An idle connection is not watched, so one the upstream closed meanwhile is found out when it
//! is taken: it is polled once, which reads the close, and a connection that is not ready for a
//! request is dropped before anything is written to it. A request that its connection gave
//! back unwritten is sent on a new connection ([`Exchange::Unsent`]). One that was written and
//! then lost with its connection is not sent again (it may have been applied); it fails as it
//! would through any client.

use std::cell::RefCell;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use http::Request;
use http::response::Parts;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use super::POOL_IDLE;
use crate::error::ProxyError;

type Io = MaybeHttpsStream<TokioIo<TcpStream>>;

/// One HTTP/1.1 connection to the upstream.
pub(super) struct Conn {
    send: SendRequest<Full<Bytes>>,
    /// Dropped once it has finished (closed by either side, or failed): that gives back a
    /// request it had not yet taken.
    conn: Option<Connection<Io, Full<Bytes>>>,
    idle_since: Instant,
}

/// How an exchange on one connection ended.
pub(super) enum Exchange {
    /// The answer's head and its whole body.
    Answered(Parts, Bytes),
    /// The connection closed before it wrote any of the request, which comes back.
    Unsent(Request<Full<Bytes>>),
    Failed(ProxyError),
}

/// Polls `conn` once; drops it if it has finished.
fn poll_conn(conn: &mut Option<Connection<Io, Full<Bytes>>>, cx: &mut Context<'_>) {
    if let Some(open) = conn
        && Pin::new(open).poll(cx).is_ready()
    {
        *conn = None;
    }
}

impl Conn {
    /// Opens a connection (TLS for `https://`) to `uri`.
    pub(super) async fn open(
        connector: &HttpsConnector<HttpConnector>,
        uri: &http::Uri,
    ) -> Result<Conn, ProxyError> {
        let io = connector
            .clone()
            .call(uri.clone())
            .await
            .map_err(|e| ProxyError::UpstreamUnavailable(super::error_chain(&*e)))?;
        let (send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| ProxyError::UpstreamUnavailable(super::error_chain(&e)))?;
        Ok(Conn {
            send,
            conn: Some(conn),
            idle_since: Instant::now(),
        })
    }

    /// Whether a request may be written now. Polls the connection once, without waiting, so a
    /// close that arrived while it was idle is read here.
    fn ready(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        poll_conn(&mut self.conn, &mut cx);
        self.conn.is_some() && matches!(self.send.poll_ready(&mut cx), Poll::Ready(Ok(())))
    }

    /// Sends `request` and reads the whole answer (at most `limit` bytes of body), driving the
    /// connection meanwhile.
    pub(super) async fn exchange(
        &mut self,
        request: Request<Full<Bytes>>,
        limit: usize,
    ) -> Exchange {
        let Conn { send, conn, .. } = self;
        let answer = async {
            let response = match send.try_send_request(request).await {
                Ok(response) => response,
                Err(mut err) => {
                    return match err.take_message() {
                        Some(request) => Exchange::Unsent(request),
                        None => Exchange::Failed(ProxyError::UpstreamUnavailable(
                            super::error_chain(&err.into_error()),
                        )),
                    };
                }
            };
            let (parts, body) = response.into_parts();
            match Limited::new(body, limit).collect().await {
                Ok(body) => Exchange::Answered(parts, body.to_bytes()),
                Err(e) => Exchange::Failed(ProxyError::UpstreamUnavailable(format!(
                    "reading body: {e}"
                ))),
            }
        };
        let mut answer = std::pin::pin!(answer);
        std::future::poll_fn(|cx| {
            // The connection first: it writes the request and reads what answers it.
            poll_conn(conn, cx);
            answer.as_mut().poll(cx)
        })
        .await
    }
}

/// One upstream's idle connections on one thread, the most recently used last.
struct Idle {
    /// The upstream's id.
    of: usize,
    /// Lives as long as the upstream: the connections of upstreams that are gone are dropped.
    alive: Weak<()>,
    conns: Vec<Conn>,
}

thread_local! {
    /// This thread's idle connections, by upstream.
    static IDLE: RefCell<Vec<Idle>> = const { RefCell::new(Vec::new()) };
}

/// An idle connection of upstream `id` on this thread that is ready for a request, if any.
/// Those that are not are dropped.
pub(super) fn take(id: usize) -> Option<Conn> {
    loop {
        let mut conn = IDLE.with_borrow_mut(|idle| {
            idle.iter_mut()
                .find(|list| list.of == id)
                .and_then(|list| list.conns.pop())
        })?;
        if conn.idle_since.elapsed() < POOL_IDLE && conn.ready() {
            return Some(conn);
        }
    }
}

/// Keeps `conn` for upstream `id`'s next request on this thread, unless it is finished or
/// this thread already keeps `max` of them. Connections idle for longer than [`POOL_IDLE`]
/// are closed.
pub(super) fn put_back(id: usize, alive: &Arc<()>, mut conn: Conn, max: usize) {
    if conn.conn.is_none() {
        return;
    }
    let now = Instant::now();
    conn.idle_since = now;
    IDLE.with_borrow_mut(|idle| {
        let at = match idle.iter().position(|list| list.of == id) {
            Some(at) => at,
            None => {
                idle.retain(|list| list.alive.strong_count() > 0);
                idle.push(Idle {
                    of: id,
                    alive: Arc::downgrade(alive),
                    conns: Vec::new(),
                });
                idle.len() - 1
            }
        };
        let conns = &mut idle[at].conns;
        // The oldest are first.
        let stale = conns
            .iter()
            .take_while(|c| now.duration_since(c.idle_since) >= POOL_IDLE)
            .count();
        conns.drain(..stale);
        if conns.len() < max {
            conns.push(conn);
        }
    });
}
