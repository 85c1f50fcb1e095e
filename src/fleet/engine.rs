//! The connection to the fleet's engine, Valkey or Redis, standalone or Cluster: one for
//! commands and one for the invalidation channels, each reconnecting by itself.
//!
//! Standalone engines carry invalidations on plain pub/sub; clusters on sharded pub/sub
//! (`SSUBSCRIBE`/`SPUBLISH`), so each channel's traffic stays on the primary that owns its
//! slot and fan-out grows with the cluster.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, ProtocolVersion, PushInfo, RedisResult, Script};
use tokio::sync::mpsc::UnboundedSender;

/// One connection to the engine, whichever its kind. Cheap to clone; clones share it.
#[derive(Clone)]
pub(super) enum Engine {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// How long to wait for a TCP (and TLS) connection to the engine.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// The longest pause between reconnection attempts: a returning engine is used within it.
const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(250);

impl Engine {
    /// Connects to `urls`: a cluster when there are several seeds or the one engine says it
    /// is a cluster node, standalone otherwise. `pushes` receives what the engine pushes
    /// (invalidation messages, and a disconnection notice from the client library).
    pub(super) async fn connect(
        urls: &[String],
        pushes: Option<UnboundedSender<PushInfo>>,
    ) -> RedisResult<Engine> {
        let resp3: Vec<String> = urls.iter().map(|u| with_resp3(u)).collect();
        let cluster = urls.len() > 1 || is_cluster_node(&resp3[0]).await?;
        if cluster {
            let mut builder = ClusterClientBuilder::new(resp3)
                .use_protocol(ProtocolVersion::RESP3)
                .connection_timeout(CONNECT_TIMEOUT)
                .retries(2)
                .min_retry_wait(5)
                .max_retry_wait(MAX_RECONNECT_DELAY.as_millis() as u64);
            if let Some(pushes) = pushes {
                builder = builder.push_sender(pushes);
            }
            let connection = builder.build()?.get_async_connection().await?;
            return Ok(Engine::Cluster(connection));
        }
        let client = redis::Client::open(resp3[0].as_str())?;
        let mut config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            // Requests are timed by the caller, against the fleet's budget.
            .set_response_timeout(None)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(MAX_RECONNECT_DELAY)
            // A request made while the engine is unreachable fails after one quick retry (the
            // caller goes on without it); the next request tries again.
            .set_number_of_retries(1);
        if let Some(pushes) = pushes {
            config = config
                .set_push_sender(pushes)
                .set_automatic_resubscription();
        }
        let manager = ConnectionManager::new_with_config(client, config).await?;
        Ok(Engine::Single(manager))
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Engine::Cluster(_))
    }

    pub(super) async fn call<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Engine::Single(c) => cmd.query_async(&mut c.clone()).await,
            Engine::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        }
    }

    /// Runs `script` on `key` (one key: atomic, and cluster-safe).
    pub(super) async fn script<T: FromRedisValue>(
        &self,
        script: &Script,
        key: &str,
        args: &[&[u8]],
    ) -> RedisResult<T> {
        let mut invocation = script.key(key);
        for arg in args {
            invocation.arg(*arg);
        }
        match self {
            Engine::Single(c) => invocation.invoke_async(&mut c.clone()).await,
            Engine::Cluster(c) => invocation.invoke_async(&mut c.clone()).await,
        }
    }

    /// Subscribes to `channels` (resubscribed after every reconnection).
    pub(super) async fn subscribe(&self, channels: &[String]) -> RedisResult<()> {
        match self {
            Engine::Single(c) => c.clone().subscribe(channels).await,
            // One at a time: the channels hash to different slots.
            Engine::Cluster(c) => {
                for channel in channels {
                    c.clone().ssubscribe(channel).await?;
                }
                Ok(())
            }
        }
    }

    /// Publishes `message` on `channel`.
    pub(super) async fn publish(&self, channel: &str, message: &[u8]) -> RedisResult<()> {
        let mut cmd = redis::cmd(if self.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        });
        cmd.arg(channel).arg(message);
        self.call::<redis::Value>(&cmd).await.map(drop)
    }
}

/// `url` asking for RESP3, which carries pushes on the connection that subscribed.
fn with_resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

/// Whether the engine at `url` runs in cluster mode.
async fn is_cluster_node(url: &str) -> RedisResult<bool> {
    let client = redis::Client::open(url)?;
    let config = redis::AsyncConnectionConfig::new().set_connection_timeout(Some(CONNECT_TIMEOUT));
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut connection)
        .await?;
    Ok(info.lines().any(|l| l.trim() == "cluster_enabled:1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_ask_for_resp3_once() {
        assert_eq!(
            with_resp3("redis://h:1"),
            "redis://h:1?protocol=resp3".to_string()
        );
        assert_eq!(
            with_resp3("rediss://h:1/0?insecure"),
            "rediss://h:1/0?insecure&protocol=resp3"
        );
        assert_eq!(
            with_resp3("redis://h:1/?protocol=3"),
            "redis://h:1/?protocol=3"
        );
    }
}
