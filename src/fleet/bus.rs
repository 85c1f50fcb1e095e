//! The fleet's background work on each node: connecting to the engine, hearing the
//! invalidation channels, probing them, and keeping this node on the member list.
//!
//! Two tasks: the **listener** applies what the channels carry the moment it arrives; the
//! **prober** runs once per `fleet.probe_interval_ms` and decides whether this node's memory
//! may answer (see the module above, point 5).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::engine::Engine;
use super::entry::{Body, Message};
use super::{CHANNELS, Fleet, epoch_ms};
use crate::cache::Caches;
use crate::metrics::Reason;

/// A member that has not renewed its entry for this long is gone.
const MEMBER_TTL: Duration = Duration::from_secs(3);
/// How often a node renews its member entry and reads the list.
const MEMBER_EVERY: Duration = Duration::from_secs(1);

/// What the listener tells the prober.
#[derive(Default)]
struct Heard {
    /// Per channel: the number of this node's last message heard back.
    own: [AtomicU64; CHANNELS],
    /// Set when something may have been missed (a disconnection, a gap in a sender's numbers).
    lost: AtomicBool,
}

impl Fleet {
    /// Starts connecting, listening and probing; returns at once (readiness never waits for
    /// the engine). Until the channels are known to deliver, this node's memory does not
    /// answer.
    pub fn start(self: &Arc<Self>, caches: Arc<Caches>) {
        let fleet = self.clone();
        tokio::spawn(async move {
            let stop = fleet.stop.clone();
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = fleet.run(caches) => {}
            }
        });
    }

    async fn run(self: Arc<Self>, caches: Arc<Caches>) {
        let (pushes, received) = unbounded_channel();
        let channels: Vec<String> = (0..CHANNELS).map(|c| self.channel_name(c)).collect();
        let mut logged = false;
        let bus = loop {
            let connected = async {
                let engine = Engine::connect(&self.config.redis, None).await?;
                let bus = Engine::connect(&self.config.redis, Some(pushes.clone())).await?;
                bus.subscribe(&channels).await?;
                redis::RedisResult::Ok((engine, bus))
            };
            match connected.await {
                Ok((engine, bus)) => {
                    tracing::info!(
                        cluster = engine.is_cluster(),
                        fleet = %self.config.name,
                        "fleet engine connected"
                    );
                    self.engine.store(Some(Arc::new(engine)));
                    break bus;
                }
                Err(err) => {
                    if !logged {
                        tracing::warn!(error = %err, "fleet engine unreachable; serving without it until it answers");
                        logged = true;
                    }
                    tokio::time::sleep(self.probe_interval().max(Duration::from_millis(100))).await;
                }
            }
        };
        let heard = Arc::new(Heard::default());
        let listener = {
            let (fleet, caches, heard) = (self.clone(), caches.clone(), heard.clone());
            tokio::spawn(async move { fleet.listen(received, &caches, &heard).await })
        };
        self.probe(&caches, &heard, &bus).await;
        listener.abort();
    }

    fn probe_interval(&self) -> Duration {
        Duration::from_millis(self.config.probe_interval_ms)
    }

    /// Stops this node's memory from answering, and flushes it.
    fn disarm(&self, caches: &Caches) {
        if self.serving.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                "fleet invalidations may have been missed; memory flushed, not answering until they are heard again"
            );
        }
        caches.invalidate_all_here(Reason::Fleet);
        self.metrics.fleet.memory_serving.set(0);
    }

    // -- listener -----------------------------------------------------------------------------

    async fn listen(
        &self,
        mut received: UnboundedReceiver<PushInfo>,
        caches: &Caches,
        heard: &Heard,
    ) {
        // The last number heard from each other node on each channel, and when.
        let mut last: HashMap<(u64, usize), (u64, Instant)> = HashMap::new();
        while let Some(push) = received.recv().await {
            match push.kind {
                PushKind::Message | PushKind::SMessage => {}
                PushKind::Disconnection => {
                    heard.lost.store(true, Ordering::Release);
                    self.disarm(caches);
                    continue;
                }
                _ => continue,
            }
            let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
                (push.data.first(), push.data.get(1))
            else {
                continue;
            };
            let Some(channel) = self.channel_index(channel) else {
                continue;
            };
            let Some(message) = Message::decode(payload) else {
                tracing::debug!("a fleet message that is not one; ignored");
                continue;
            };
            if message.origin == self.node {
                heard.own[channel].fetch_max(message.seq, Ordering::AcqRel);
                continue;
            }
            let now = Instant::now();
            let previous = last.insert((message.origin, channel), (message.seq, now));
            if let Some((seen, _)) = previous
                && message.seq > seen + 1
            {
                // A message from this sender never arrived: whatever it said is unknown.
                heard.lost.store(true, Ordering::Release);
                self.disarm(caches);
            }
            if last.len() > 4096 {
                last.retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(60));
            }
            self.apply(message, caches);
        }
    }

    fn apply(&self, message: Message, caches: &Caches) {
        let fleet = &self.metrics.fleet;
        match message.body {
            Body::Probe => {}
            Body::Changed { key, partition } => {
                caches.changed_in_fleet(&key, partition.as_ref());
                fleet.invalidations_received.inc();
                let lag_ms = epoch_ms().saturating_sub(message.sent_ms);
                fleet.invalidation_lag.observe(lag_ms as f64 / 1000.0);
            }
            Body::Flush { generation, table } => {
                self.generation.fetch_max(generation, Ordering::AcqRel);
                match table {
                    Some(table) => caches.invalidate_table_here(&table, Reason::Fleet),
                    None => caches.invalidate_all_here(Reason::Fleet),
                }
            }
        }
    }

    fn channel_index(&self, name: &[u8]) -> Option<usize> {
        let name = std::str::from_utf8(name).ok()?;
        let index = name
            .strip_prefix(&self.prefix)?
            .strip_prefix("invalidate:")?
            .parse::<usize>()
            .ok()?;
        (index < CHANNELS).then_some(index)
    }

    // -- prober -------------------------------------------------------------------------------

    async fn probe(&self, caches: &Caches, heard: &Heard, bus: &Engine) {
        let mut ticks = tokio::time::interval(self.probe_interval());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The numbers of the probes sent one and two ticks ago (0: none went out).
        let mut sent_before: [[u64; CHANNELS]; 2] = [[0; CHANNELS]; 2];
        // Memory answers again only once a probe sent after it stopped has come back.
        let mut rearm_after = [0u64; CHANNELS];
        let mut members_at: Option<Instant> = None;
        loop {
            ticks.tick().await;
            // The listening connection sends nothing of its own: this is how it notices a
            // lost connection, reconnects and subscribes again.
            let ping = redis::cmd("PING");
            self.background("ping", |_| async move { bus.call::<Value>(&ping).await })
                .await;
            let sent: Vec<u64> = futures_util::future::join_all(
                (0..CHANNELS).map(|c| self.publish_numbered(c, Body::Probe)),
            )
            .await
            .into_iter()
            .map(|seq| seq.unwrap_or(0))
            .collect();
            let engine_up = sent.iter().all(|&s| s > 0);
            self.metrics.fleet.engine_up.set(i64::from(engine_up));
            if engine_up {
                self.failing_until.store(0, Ordering::Relaxed);
                // Before memory may answer again: the writes the engine missed are told first.
                self.retry_pending().await;
                self.retry_flush().await;
                // A flush message missed, or the engine restarted without the generation.
                if self.sync_generation().await == Some(true) && self.memory_serves() {
                    caches.invalidate_all_here(Reason::Fleet);
                }
            }
            let lost = heard.lost.swap(false, Ordering::AcqRel);
            let two_ago = sent_before[1];
            let delivering = !lost
                && (0..CHANNELS)
                    .all(|c| two_ago[c] > 0 && heard.own[c].load(Ordering::Acquire) >= two_ago[c]);
            sent_before = [
                sent.clone().try_into().expect("one per channel"),
                sent_before[0],
            ];
            if !delivering {
                if self.memory_serves() || rearm_after.iter().all(|&r| r == 0) {
                    self.disarm(caches);
                }
                for (c, after) in rearm_after.iter_mut().enumerate() {
                    *after = (*self.sent[c].lock().await).max(1);
                }
            } else if !self.memory_serves()
                && (0..CHANNELS).all(|c| heard.own[c].load(Ordering::Acquire) >= rearm_after[c])
                && self.sync_generation().await.is_some()
            {
                // Flushed again: what was filled while not answering may have missed a message.
                caches.invalidate_all_here(Reason::Fleet);
                self.serving.store(true, Ordering::Release);
                self.metrics.fleet.memory_serving.set(1);
                tracing::info!("fleet invalidations heard; memory answering");
            }
            if engine_up && members_at.is_none_or(|at| at.elapsed() >= MEMBER_EVERY) {
                members_at = Some(Instant::now());
                self.renew_membership().await;
            }
        }
    }

    /// Publishes `body` on `channel`; its number, or `None` if it did not go out.
    async fn publish_numbered(&self, channel: usize, body: Body) -> Option<u64> {
        if !self.publish(channel, body).await {
            return None;
        }
        // The lock is released between the publication and this read, so a later message may
        // have been numbered already: a number at least as high is as good for the probe.
        Some(*self.sent[channel].lock().await)
    }

    /// Renews this node's entry in the member list and reads who else is live.
    async fn renew_membership(&self) {
        let key = self.members_key();
        let now = epoch_ms();
        let mut renew = redis::cmd("ZADD");
        renew
            .arg(&key)
            .arg(now + MEMBER_TTL.as_millis() as u64)
            .arg(self.member_name());
        let mut prune = redis::cmd("ZREMRANGEBYSCORE");
        prune.arg(&key).arg("-inf").arg(now);
        let mut list = redis::cmd("ZRANGE");
        list.arg(&key).arg(0).arg(-1);
        let names: Option<Vec<String>> = self
            .background("member", |engine| async move {
                engine.call::<Value>(&renew).await?;
                engine.call::<Value>(&prune).await?;
                engine.call(&list).await
            })
            .await;
        let Some(names) = names else { return };
        self.metrics.fleet.members.set(names.len() as i64);
        let mut addresses: Vec<SocketAddr> = names
            .iter()
            .filter_map(|n| n.split_once('/')?.0.parse().ok())
            .collect();
        addresses.sort();
        addresses.dedup();
        self.members.store(Arc::new(addresses));
    }
}
