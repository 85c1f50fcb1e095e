//! A local DynamoDB emulator (dynoxide) inside the binary, on a free loopback port, so that
//! `dynamo-cache serve --embedded` needs no AWS account, Docker or JVM.

use std::path::Path;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running emulator; dropping it without [`Embedded::stop`] leaves it to die with the runtime.
pub struct Embedded {
    /// `http://127.0.0.1:PORT`, the proxy's upstream.
    pub url: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Embedded {
    /// Starts the emulator, in memory or backed by the SQLite file at `path`.
    pub async fn start(path: Option<&Path>) -> Result<Embedded, String> {
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
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("embedded DynamoDB: cannot bind loopback: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(err) = dynoxide::server::serve_with_shutdown(listener, db, shutdown).await {
                tracing::error!(error = %err, "embedded DynamoDB stopped");
            }
        });
        Ok(Embedded {
            url: format!("http://{addr}"),
            stop,
            task,
        })
    }

    /// Stops the emulator and waits for it to close its connections.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
