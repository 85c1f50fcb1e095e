//! Accepting connections: HTTP/1.1 with keep-alive, optionally over TLS, a cap on open
//! connections, a header read timeout, and a graceful drain when told to stop.
//!
//! Both listeners (data and admin) use [`serve`]; they differ in the handler and in whether
//! connections are dealt to per-core worker threads.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// On drain, how long busy keep-alive connections get to receive a `connection: close` answer
/// before idle ones are closed.
const CLOSE_WINDOW: Duration = Duration::from_millis(500);

/// Clients over the connection limit being told so at once; past this, a flood's connections
/// are simply closed, so it cannot make the proxy hold unbounded tasks or TLS handshakes.
const MAX_REFUSING: usize = 64;

/// Bounds for one listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    pub max_connections: usize,
    /// Also bounds the TLS handshake: a client that dribbles either holds a slot no longer.
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request; `None` = no limit.
    pub idle_timeout: Option<Duration>,
    pub drain_timeout: Duration,
    /// What a client past `max_connections` is told: a response for that limit.
    pub refusal: fn(usize) -> Response<Bytes>,
}

/// Serves `listener` with `handler` until `stop` is cancelled, then stops accepting, lets
/// in-flight requests finish (closing idle keep-alive connections), and returns once all
/// connections are done or `drain_timeout` has passed.
///
/// With `workers > 0`, connections are served on that many threads, each with its own
/// single-threaded runtime, dealt to them round-robin by this task, which only accepts: a
/// connection lives and dies on one thread, with no work stealing or cross-thread wake-ups on
/// the hot path (nginx's worker model). With `workers == 0` they are served on the caller's
/// runtime (the admin listener).
pub async fn serve<H, F>(
    listener: TcpListener,
    workers: usize,
    limits: ListenerLimits,
    tls: Option<TlsAcceptor>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    handler: H,
) where
    H: Fn(Request<Incoming>, std::net::SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Bytes>> + Send + 'static,
{
    let mut lanes = Vec::new();
    let mut finished = Vec::new();
    // A pooled connection is driven by a task on the runtime that opened it, and the SDK
    // clients' pools (table descriptions) are shared by every worker: a worker that has
    // drained keeps its runtime running until every worker has, or the others' last requests
    // could find their pooled connections dead.
    let release = CancellationToken::new();
    for worker in 0..workers.max(1) {
        let (lane, connections) = mpsc::unbounded_channel::<Accepted>();
        let (done, done_rx) = oneshot::channel::<()>();
        let (metrics, handler, tls) = (metrics.clone(), handler.clone(), tls.clone());
        let release = release.clone();
        let drive = async move {
            drive(connections, limits, tls, metrics, handler).await;
            let _ = done.send(());
            release.cancelled().await;
        };
        if workers == 0 {
            tokio::spawn(drive);
        } else {
            let thread = std::thread::Builder::new()
                .name(format!("dynamo-cache-{worker}"))
                .spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a worker runtime")
                        .block_on(drive)
                });
            if let Err(err) = thread {
                tracing::error!(error = %err, "cannot start a worker thread");
                continue;
            }
        }
        lanes.push(lane);
        finished.push(done_rx);
    }

    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let mut next = 0usize;
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.rejected_connections.inc();
            if let Ok(refusal) = refusing.clone().try_acquire_owned() {
                tokio::spawn(refuse(stream, tls.clone(), limits, refusal));
            }
            continue;
        };
        // Handed over as a plain socket: the worker registers it with its own runtime.
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        if lanes.is_empty() {
            break; // no worker could start; dropping the socket refuses the client
        }
        let _ = lanes[next % lanes.len()].send(Accepted { stream, peer, slot });
        next = next.wrapping_add(1);
    }
    drop(listener);
    drop(lanes); // each worker drains its connections once its lane closes
    for done in finished {
        let _ = done.await;
    }
    release.cancel();
}

/// A connection on its way from the acceptor to a worker.
struct Accepted {
    stream: std::net::TcpStream,
    peer: std::net::SocketAddr,
    /// Held for the connection's life: the shared connection limit.
    slot: OwnedSemaphorePermit,
}

/// One worker: serves the connections dealt to it until its lane closes, then drains them.
async fn drive<H, F>(
    mut connections: mpsc::UnboundedReceiver<Accepted>,
    limits: ListenerLimits,
    tls: Option<TlsAcceptor>,
    metrics: Arc<Metrics>,
    handler: H,
) where
    H: Fn(Request<Incoming>, std::net::SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Bytes>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .keep_alive(true)
        // DynamoDB answers are small: one flattened buffer per response beats scattered writes.
        .writev(false)
        // hyper's own timer would also run while a keep-alive connection waits for its next
        // request, cutting every pooled SDK connection idle that long: `guard` keeps the two
        // apart.
        .header_read_timeout(None);
    // Set once draining: every answer says `connection: close`, so a busy keep-alive client
    // learns to stop reusing its connection from a response instead of finding it closed
    // under a request it just sent.
    let closing = Arc::new(AtomicBool::new(false));
    let open = Arc::new(AtomicUsize::new(0));
    while let Some(Accepted { stream, peer, slot }) = connections.recv().await {
        let Ok(stream) = TcpStream::from_std(stream) else {
            continue;
        };
        let handler = handler.clone();
        let closing = closing.clone();
        let activity = Arc::new(Activity::new());
        let answering = activity.clone();
        let service = service_fn(move |request| {
            answering.request();
            let response = handler(request, peer);
            let (closing, answering) = (closing.clone(), answering.clone());
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
        let watcher = graceful.watcher();
        let (http, tls) = (http.clone(), tls.clone());
        let (metrics, open) = (metrics.clone(), open.clone());
        metrics.connections.inc();
        open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            // Ok(whether it was closed for idling), or Err((whether the client was too slow, what
            // happened)).
            let served: Result<bool, (bool, String)> = match tls {
                None => {
                    activity.start();
                    let stream = Watched::new(stream, activity.clone());
                    let connection = http.serve_connection(TokioIo::new(stream), service);
                    guard(watcher.watch(connection), &activity, &limits).await
                }
                Some(tls) => {
                    match tokio::time::timeout(limits.header_read_timeout, tls.accept(stream)).await
                    {
                        Ok(Ok(stream)) => {
                            activity.start();
                            let stream = Watched::new(stream, activity.clone());
                            let connection = http.serve_connection(TokioIo::new(stream), service);
                            guard(watcher.watch(connection), &activity, &limits).await
                        }
                        Ok(Err(err)) => Err((false, format!("TLS handshake failed: {err}"))),
                        Err(_) => Err((true, "TLS handshake timed out".into())),
                    }
                }
            };
            match served {
                Err((true, err)) => {
                    metrics.slow_clients.inc();
                    tracing::debug!(%peer, error = %err, "slow client disconnected");
                }
                Err((false, err)) => {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                Ok(true) => {
                    metrics.idle_disconnects.inc();
                    tracing::debug!(%peer, "idle keep-alive connection closed");
                }
                Ok(false) => {}
            }
            metrics.connections.dec();
            open.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
    // Drain, politely: first let active clients get one more answer each, marked close;
    // then close whatever is left idle, and wait for in-flight requests.
    let started = tokio::time::Instant::now();
    closing.store(true, Ordering::Relaxed);
    let window = CLOSE_WINDOW.min(limits.drain_timeout / 2);
    while open.load(Ordering::Relaxed) > 0 && started.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left = limits.drain_timeout.saturating_sub(started.elapsed());
    if tokio::time::timeout(left, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout_ms = limits.drain_timeout.as_millis() as u64,
            "drain deadline passed with requests still in flight"
        );
    }
}

/// Tells a client over the connection limit why, then closes: a 503 the SDKs retry. On a TLS
/// listener the answer goes over TLS (the handshake bounded like a served connection's), since
/// plain bytes would only tell the client that the server speaks no TLS.
async fn refuse(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    limits: ListenerLimits,
    _refusal: OwnedSemaphorePermit,
) {
    match tls {
        None => answer_refusal(stream, limits).await,
        Some(tls) => {
            let handshake = tokio::time::timeout(limits.header_read_timeout, tls.accept(stream));
            // A failed or stalled handshake is closed unanswered, as a served one would be.
            if let Ok(Ok(stream)) = handshake.await {
                answer_refusal(stream, limits).await;
            }
        }
    }
}

/// The 503 itself. The request is read (briefly, boundedly) before answering and the socket is
/// drained after: closing with unread bytes makes the kernel send a reset, which can destroy
/// the answer before the client reads it.
async fn answer_refusal<S>(mut stream: S, limits: ListenerLimits)
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
    let response = (limits.refusal)(limits.max_connections);
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
