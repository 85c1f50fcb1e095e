//! A local DynamoDB emulator (dynoxide) inside the binary, on a free loopback port, so that
//! `dynamo-cache serve --embedded` needs no AWS account, Docker or JVM.
//!
//! On loopback the emulator answers in tens of microseconds, which hides what a cache is for.
//! With a latency, it is reached through a delay line that holds every byte for half of it in
//! each direction, as a network between an application and DynamoDB in its region would
//! (`--embedded-latency-ms`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running emulator; dropping it without [`Embedded::stop`] leaves it to die with the runtime.
pub struct Embedded {
    /// `http://127.0.0.1:PORT`, the proxy's upstream (the delay line's, when there is one).
    pub url: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    delay_line: Option<JoinHandle<()>>,
}

impl Embedded {
    /// Starts the emulator, in memory or backed by the SQLite file at `path`.
    pub async fn start(path: Option<&Path>) -> Result<Embedded, String> {
        Embedded::start_with_latency(path, Duration::ZERO).await
    }

    /// Starts the emulator behind a delay line: each request and its answer take `latency`
    /// longer in all, half on the way there and half on the way back. Zero: no delay line.
    pub async fn start_with_latency(
        path: Option<&Path>,
        latency: Duration,
    ) -> Result<Embedded, String> {
        let db = match path {
            Some(path) => {
                let path = path
                    .to_str()
                    .ok_or_else(|| format!("{} is not valid UTF-8", path.display()))?;
                dynoxide::Database::new(path)
            }
            None => dynoxide::Database::memory(),
        }
        .map_err(|e| format!("embedded DynamoDB: {e}"))?;
        let listener = loopback().await?;
        let mut addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(err) = dynoxide::server::serve_with_shutdown(listener, db, shutdown).await {
                tracing::error!(error = %err, "embedded DynamoDB stopped");
            }
        });
        let delay_line = if latency.is_zero() {
            None
        } else {
            let front = loopback().await?;
            let emulator = addr;
            addr = front.local_addr().map_err(|e| e.to_string())?;
            Some(tokio::spawn(delay_line(front, emulator, latency / 2)))
        };
        Ok(Embedded {
            url: format!("http://{addr}"),
            stop,
            task,
            delay_line,
        })
    }

    /// Stops the emulator and waits for it to close its connections.
    pub async fn stop(self) {
        if let Some(delay_line) = self.delay_line {
            delay_line.abort();
        }
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn loopback() -> Result<TcpListener, String> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("embedded DynamoDB: cannot bind loopback: {e}"))
}

/// Connections through the delay line at once; more wait for one to close.
const MAX_CONNECTIONS: usize = 512;

/// Relays each connection to `target`, every byte arriving `one_way` late in each direction.
/// A new connection also waits a round trip, as TCP's handshake would.
///
/// The line runs on threads of its own with blocking sockets: the runtime's timer rounds every
/// sleep up to the next millisecond, which would make "4 ms away" nearer 6, while a thread's
/// sleep is good to tens of microseconds.
async fn delay_line(listener: TcpListener, target: SocketAddr, one_way: Duration) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(client) = client.into_std() else {
            continue;
        };
        let spawned = std::thread::Builder::new()
            .name("embedded-delay".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let _slot = slot;
                std::thread::sleep(one_way * 2);
                let Ok(server) = std::net::TcpStream::connect(target) else {
                    return;
                };
                let _ = relay_delayed(client, server, one_way);
            });
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "embedded DynamoDB: cannot start a delay-line thread");
        }
    }
}

/// Both directions of one connection through the line, until both have closed.
fn relay_delayed(
    client: std::net::TcpStream,
    server: std::net::TcpStream,
    delay: Duration,
) -> std::io::Result<()> {
    for socket in [&client, &server] {
        socket.set_nonblocking(false)?;
        socket.set_nodelay(true)?;
    }
    let upward = {
        let (from, to) = (client.try_clone()?, server.try_clone()?);
        std::thread::Builder::new()
            .name("embedded-delay".into())
            .stack_size(256 * 1024)
            .spawn(move || delayed(from, to, delay))?
    };
    delayed(server, client, delay);
    let _ = upward.join();
    Ok(())
}

/// Chunks in flight on one direction of a connection; a reader this far ahead waits.
const IN_FLIGHT: usize = 64;

/// Copies `from` to `to`, each chunk written `delay` after it was read: a reader and a writer
/// thread, so chunks read back to back travel together and the line adds latency without
/// limiting throughput.
fn delayed(mut from: std::net::TcpStream, mut to: std::net::TcpStream, delay: Duration) {
    use std::io::{Read, Write};
    let (chunks, arriving) = std::sync::mpsc::sync_channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let writer = std::thread::Builder::new()
        .name("embedded-delay".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            while let Ok((due, chunk)) = arriving.recv() {
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                if to.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    let Ok(writer) = writer else {
        return;
    };
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        if chunks
            .send((Instant::now() + delay, buf[..n].to_vec()))
            .is_err()
        {
            break;
        }
    }
    drop(chunks);
    let _ = writer.join();
    let _ = from.shutdown(std::net::Shutdown::Read);
}
