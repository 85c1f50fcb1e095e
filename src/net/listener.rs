//! One accept loop for every listener: a cap on open connections (a client past it is told
//! why, then closed), the TLS handshake bounded by the header read timeout, connections dealt
//! to per-core worker threads or served on the caller's runtime, and a graceful drain when told
//! to stop. What a connection carries is the [`Protocol`]'s business: HTTP ([`super::http`])
//! or DAX.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Clients over the connection limit being told so at once; past this, a flood's connections
/// are simply closed, so it cannot make the proxy hold unbounded tasks or TLS handshakes.
const MAX_REFUSING: usize = 64;

/// Bounds for one listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListenerLimits {
    pub max_connections: usize,
    /// Also bounds the TLS handshake: a client that dribbles either holds a slot no longer.
    pub header_read_timeout: Duration,
    /// How long a connection may wait for its next request; `None` = no limit.
    pub idle_timeout: Option<Duration>,
    pub drain_timeout: Duration,
}

/// A client's byte stream, plain or TLS.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for S {}

/// Where a connection came from and arrived.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ends {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// What one listener serves.
pub(crate) trait Protocol: Clone + Send + Sync + 'static {
    /// Serves one connection (its TLS handshake done) until it ends. Once `drain` is
    /// cancelled, the connection finishes what it is answering and closes.
    fn serve<S: Stream>(
        &self,
        stream: S,
        ends: Ends,
        drain: CancellationToken,
    ) -> impl Future<Output = ()> + Send;

    /// Tells a client past `limit` open connections why (over TLS on a TLS listener), then
    /// closes. By default it is closed without a word.
    fn refuse<S: Stream>(&self, stream: S, limit: usize) -> impl Future<Output = ()> + Send {
        let _ = (stream, limit);
        async {}
    }
}

/// Serves `listener` with `protocol` until `stop` is cancelled, then stops accepting, tells
/// every connection to finish, and returns once all are done or `drain_timeout` has passed.
///
/// With `workers > 0`, connections are served on that many threads, each with its own
/// single-threaded runtime, dealt to them round-robin by this task, which only accepts: a
/// connection lives and dies on one thread, with no work stealing or cross-thread wake-ups on
/// the hot path (nginx's worker model). With `workers == 0` they are served on the caller's
/// runtime.
pub(crate) async fn serve<P: Protocol>(
    listener: TcpListener,
    workers: usize,
    limits: ListenerLimits,
    tls: Option<TlsAcceptor>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    protocol: P,
) {
    let drain = CancellationToken::new();
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
        let lane_work = Lane {
            limits,
            tls: tls.clone(),
            metrics: metrics.clone(),
            protocol: protocol.clone(),
            drain: drain.clone(),
        };
        let release = release.clone();
        let drive = async move {
            lane_work.drive(connections).await;
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
                let (tls, protocol) = (tls.clone(), protocol.clone());
                tokio::spawn(refuse(stream, tls, limits, protocol, refusal));
            }
            continue;
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        // Handed over as a plain socket: the worker registers it with its own runtime.
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        if lanes.is_empty() {
            break; // no worker could start; dropping the socket refuses the client
        }
        let ends = Ends { peer, local };
        let _ = lanes[next % lanes.len()].send(Accepted { stream, ends, slot });
        next = next.wrapping_add(1);
    }
    drop(listener);
    drain.cancel();
    drop(lanes); // each worker drains its connections once its lane closes
    for done in finished {
        let _ = done.await;
    }
    release.cancel();
}

/// A connection on its way from the acceptor to a worker.
struct Accepted {
    stream: std::net::TcpStream,
    ends: Ends,
    /// Held for the connection's life: the shared connection limit.
    slot: OwnedSemaphorePermit,
}

/// What one worker serves its connections with.
struct Lane<P> {
    limits: ListenerLimits,
    tls: Option<TlsAcceptor>,
    metrics: Arc<Metrics>,
    protocol: P,
    drain: CancellationToken,
}

impl<P: Protocol> Lane<P> {
    /// Serves the connections dealt to this worker until its lane closes, then waits for them
    /// to finish (they were told to by `drain`), up to the drain timeout.
    async fn drive(self, mut connections: mpsc::UnboundedReceiver<Accepted>) {
        let mut open = JoinSet::new();
        while let Some(accepted) = connections.recv().await {
            // Reap the finished ones, so the set holds only live connections.
            while open.try_join_next().is_some() {}
            let Ok(stream) = TcpStream::from_std(accepted.stream) else {
                continue;
            };
            let (limits, tls) = (self.limits, self.tls.clone());
            let (metrics, protocol) = (self.metrics.clone(), self.protocol.clone());
            // A token of its own, cancelled with the listener's: a connection checks it each
            // time it wakes, and a shared one would make every worker's connections meet on
            // one lock.
            let drain = self.drain.child_token();
            let Accepted { ends, slot, .. } = accepted;
            open.spawn(async move {
                metrics.connections.inc();
                match tls {
                    None => protocol.serve(stream, ends, drain).await,
                    Some(tls) => {
                        let handshake =
                            tokio::time::timeout(limits.header_read_timeout, tls.accept(stream));
                        match handshake.await {
                            Ok(Ok(stream)) => protocol.serve(stream, ends, drain).await,
                            Ok(Err(err)) => {
                                tracing::debug!(peer = %ends.peer, error = %err, "TLS handshake failed")
                            }
                            Err(_) => {
                                metrics.slow_clients.inc();
                                tracing::debug!(peer = %ends.peer, "TLS handshake timed out");
                            }
                        }
                    }
                }
                metrics.connections.dec();
                drop(slot);
            });
        }
        let all_done = async { while open.join_next().await.is_some() {} };
        if tokio::time::timeout(self.limits.drain_timeout, all_done)
            .await
            .is_err()
        {
            tracing::warn!(
                timeout_ms = self.limits.drain_timeout.as_millis() as u64,
                "drain deadline passed with requests still in flight"
            );
        }
    }
}

/// Tells a client over the connection limit why, then closes. On a TLS listener the answer
/// goes over TLS (the handshake bounded like a served connection's), since plain bytes would
/// only tell the client that the server speaks no TLS.
async fn refuse<P: Protocol>(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    limits: ListenerLimits,
    protocol: P,
    _refusal: OwnedSemaphorePermit,
) {
    match tls {
        None => protocol.refuse(stream, limits.max_connections).await,
        Some(tls) => {
            let handshake = tokio::time::timeout(limits.header_read_timeout, tls.accept(stream));
            // A failed or stalled handshake is closed unanswered, as a served one would be.
            if let Ok(Ok(stream)) = handshake.await {
                protocol.refuse(stream, limits.max_connections).await;
            }
        }
    }
}
