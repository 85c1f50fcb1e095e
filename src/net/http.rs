//! HTTP/1.1 connections for a listener ([`super::listener`]): keep-alive, a header read
//! timeout that also catches slowloris clients, an idle timeout for keep-alive connections,
//! and a polite drain: once told to stop, a busy connection gets one more answer, marked
//! `connection: close`, and an idle one is closed. What a request is answered with is the
//! handler's business (the DynamoDB front-end, the admin listener).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::listener::{Ends, ListenerLimits, Protocol, Stream};
use crate::metrics::Metrics;

/// On drain, how long a busy keep-alive connection gets to receive a `connection: close`
/// answer before it is closed (at most half the drain timeout).
const CLOSE_WINDOW: Duration = Duration::from_millis(500);

/// HTTP/1.1, answering each request with `handler`.
#[derive(Clone)]
pub(crate) struct Http<H> {
    handler: H,
    limits: ListenerLimits,
    metrics: Arc<Metrics>,
    /// What a client past the connection limit is told: a response for that limit.
    refusal: fn(usize) -> Response<Bytes>,
    builder: http1::Builder,
}

impl<H, F> Http<H>
where
    H: Fn(Request<Incoming>, std::net::SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Bytes>> + Send + 'static,
{
    pub(crate) fn new(
        handler: H,
        limits: ListenerLimits,
        metrics: Arc<Metrics>,
        refusal: fn(usize) -> Response<Bytes>,
    ) -> Http<H> {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .keep_alive(true)
            // DynamoDB answers are small: one flattened buffer per response beats scattered
            // writes.
            .writev(false)
            // hyper's own timer would also run while a keep-alive connection waits for its
            // next request, cutting every pooled SDK connection idle that long: `guard` keeps
            // the two apart.
            .header_read_timeout(None);
        Http {
            handler,
            limits,
            metrics,
            refusal,
            builder,
        }
    }
}

impl<H, F> Protocol for Http<H>
where
    H: Fn(Request<Incoming>, std::net::SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Bytes>> + Send + 'static,
{
    async fn serve<S: Stream>(&self, stream: S, ends: Ends, drain: CancellationToken) {
        let peer = ends.peer;
        // Set once draining: every answer says `connection: close`, so a busy keep-alive
        // client learns to stop reusing its connection from a response instead of finding it
        // closed under a request it just sent.
        let closing = Arc::new(AtomicBool::new(false));
        let activity = Arc::new(Activity::new());
        let answering = activity.clone();
        let handler = self.handler.clone();
        let marking = closing.clone();
        let service = service_fn(move |request| {
            answering.request();
            let response = handler(request, peer);
            let (closing, answering) = (marking.clone(), answering.clone());
            async move {
                let mut response = response.await;
                answering.answered();
                if closing.load(Ordering::Relaxed) {
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(response.map(Full::new))
            }
        });
        activity.start();
        let stream = Watched::new(stream, activity.clone());
        let connection = self.builder.serve_connection(TokioIo::new(stream), service);
        let mut connection = std::pin::pin!(connection);
        let limits = &self.limits;
        // Ok(whether it was closed for idling), or Err((whether the client was too slow, what
        // happened)).
        let until_drain = tokio::select! {
            served = guard(connection.as_mut(), &activity, limits) => Some(served),
            _ = drain.cancelled() => None,
        };
        let served = match until_drain {
            Some(served) => served,
            None => {
                // Drain, politely: one more answer, marked close; then close it if idle.
                closing.store(true, Ordering::Relaxed);
                let window = CLOSE_WINDOW.min(limits.drain_timeout / 2);
                let last =
                    tokio::time::timeout(window, guard(connection.as_mut(), &activity, limits));
                match last.await {
                    Ok(served) => served,
                    Err(_) => {
                        connection.as_mut().graceful_shutdown();
                        guard(connection.as_mut(), &activity, limits).await
                    }
                }
            }
        };
        match served {
            Err((true, err)) => {
                self.metrics.slow_clients.inc();
                tracing::debug!(%peer, error = %err, "slow client disconnected");
            }
            Err((false, err)) => {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
            Ok(true) => {
                self.metrics.idle_disconnects.inc();
                tracing::debug!(%peer, "idle keep-alive connection closed");
            }
            Ok(false) => {}
        }
    }

    async fn refuse<S: Stream>(&self, stream: S, limit: usize) {
        answer_refusal(stream, (self.refusal)(limit)).await;
    }
}

/// The refusal itself (a 503 the SDKs retry). The request is read (briefly, boundedly) before
/// answering and the socket is drained after: closing with unread bytes makes the kernel send a
/// reset, which can destroy the answer before the client reads it.
async fn answer_refusal<S>(mut stream: S, response: Response<Bytes>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    const LINGER: Duration = Duration::from_millis(500);
    let mut scratch = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        let mut seen = 0usize;
        while let Ok(n) = stream.read(&mut scratch).await {
            seen += n;
            if n == 0 || scratch[..n].windows(4).any(|w| w == b"\r\n\r\n") || seen > 64 * 1024 {
                break;
            }
        }
    })
    .await;
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status().as_u16(),
        response.status().canonical_reason().unwrap_or("")
    );
    for (name, value) in response.headers() {
        head.push_str(name.as_str());
        head.push_str(": ");
        head.push_str(value.to_str().unwrap_or(""));
        head.push_str("\r\n");
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        response.body().len()
    ));
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(response.body()).await;
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(stream.read(&mut scratch).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Where a connection is between requests, for its two timeouts: a request's headers must
/// arrive within the header timeout of its first byte (or of the connection's start), and an
/// idle keep-alive connection is kept for the idle timeout. Updated by the connection's own
/// task, read by its [`guard`].
struct Activity {
    base: std::time::Instant,
    /// The phase in the top two bits, and when it began (ms since `base`) in the rest.
    word: AtomicU64,
}

const PHASE_SHIFT: u32 = 62;
const IDLE: u64 = 0;
const HEAD: u64 = 1;
const BUSY: u64 = 2;

impl Activity {
    fn new() -> Activity {
        Activity {
            base: std::time::Instant::now(),
            word: AtomicU64::new(HEAD << PHASE_SHIFT),
        }
    }

    fn set(&self, phase: u64) {
        let at = self.base.elapsed().as_millis() as u64;
        self.word
            .store((phase << PHASE_SHIFT) | at, Ordering::Relaxed);
    }

    /// Ready for the first request (after any TLS handshake): its headers are due.
    fn start(&self) {
        self.set(HEAD);
    }

    /// Bytes arrived: on an idle connection, a request has begun.
    fn read(&self) {
        if self.word.load(Ordering::Relaxed) >> PHASE_SHIFT == IDLE {
            self.set(HEAD);
        }
    }

    /// The headers are in and the request is being answered: no timeout of ours applies.
    fn request(&self) {
        self.word.store(BUSY << PHASE_SHIFT, Ordering::Relaxed);
    }

    /// The answer is ready: the connection idles until the next request.
    fn answered(&self) {
        self.set(IDLE);
    }

    /// When the current phase runs out, and whether running out means a slow client;
    /// `None` while a request is being answered or an idle connection may stay.
    fn deadline(&self, limits: &ListenerLimits) -> Option<(std::time::Instant, bool)> {
        let word = self.word.load(Ordering::Relaxed);
        let since = self.base + Duration::from_millis(word & ((1 << PHASE_SHIFT) - 1));
        match word >> PHASE_SHIFT {
            HEAD => Some((since + limits.header_read_timeout, true)),
            IDLE => limits.idle_timeout.map(|idle| (since + idle, false)),
            _ => None,
        }
    }
}

/// Serves `connection` until it ends or its [`Activity`] runs out of time: Ok(true) when it
/// was closed for idling, an error marked slow when a request's headers came too late.
///
/// The timer is checked only when it fires, so a busy connection pays no timer per request. It
/// fires no later than the shortest timeout from now: a phase that begins meanwhile cannot run
/// out before that, and is seen then.
async fn guard<F, E>(
    connection: F,
    activity: &Activity,
    limits: &ListenerLimits,
) -> Result<bool, (bool, String)>
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut connection = std::pin::pin!(connection);
    let shortest = limits
        .idle_timeout
        .map_or(limits.header_read_timeout, |idle| {
            idle.min(limits.header_read_timeout)
        });
    loop {
        let soonest = std::time::Instant::now() + shortest;
        let wake = match activity.deadline(limits) {
            Some((at, _)) => at.min(soonest),
            None => soonest,
        };
        tokio::select! {
            // The connection first: bytes that are already here count before the timer does.
            biased;
            served = &mut connection => return served.map(|()| false).map_err(|e| (false, e.to_string())),
            _ = tokio::time::sleep_until(wake.into()) => {
                match activity.deadline(limits) {
                    Some((at, true)) if at <= std::time::Instant::now() => {
                        return Err((true, "request headers not received in time".into()));
                    }
                    Some((at, false)) if at <= std::time::Instant::now() => return Ok(true),
                    _ => {}
                }
            }
        }
    }
}

/// A client stream that tells its [`Activity`] when bytes arrive.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    fn new(inner: S, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
