//! **The fleet tier**: proxies that share one item cache on Valkey or Redis and tell each
//! other about writes, so a fleet behaves as one cache.
//!
//! - **L1** is each node's own memory ([`crate::cache`]); **L2** is the engine. A read goes to
//!   L1, then L2, then DynamoDB. Items and "not found" live in both; Query and Scan answers
//!   stay in L1.
//! - **Writes**: DynamoDB first; then the writer's own L1 (as on one node); then a tombstone
//!   over the key's shared entry; then an invalidation on the key's channel; only then is the
//!   client answered.
//! - **Other nodes' L1** drops the key and its partition's query answers when the
//!   invalidation arrives.
//!
//! # Why no node stores or serves a value older than an acknowledged write
//!
//! Every step on a shared entry is one command or one single-key script ([`GET_OR_LEASE`],
//! [`FILL`], the tombstone's `SET`), so each is atomic, and cluster-safe.
//!
//! 1. *A slow reader cannot fill L2 after a write.* A miss in L2 grants the reader a lease
//!    (a token in the entry); its fill stores only if the entry still holds that lease. A
//!    write's tombstone replaces whatever the entry held, lease included, so a reader whose
//!    lease predates the tombstone cannot fill (Facebook's memcache leases; a tombstone in
//!    the manner of Shopify's IdentityCache). A fill that lands before the tombstone is
//!    overwritten by it.
//! 2. *Every fill of L2 reads strongly.* An eventually consistent read could return a
//!    replica that has not seen a recent write, and in L2 that would serve the whole fleet
//!    for the TTL. A tombstone marks a recent write (a lease granted over it says so), but
//!    the engine may lose tombstones with its data (a restart without persistence, a
//!    failover that drops recent writes), and a lease granted after that loss cannot tell
//!    that the write was recent. So a fill under a lease always reads strongly consistently:
//!    the extra cost is one strongly consistent read per key per fleet and TTL, not per node.
//!    A node's own memory still follows its consistency window (`cache::window`).
//! 3. *L2 never holds a value older than a write acknowledged before its fill began.* By 1
//!    and 2, every value in L2 was read strongly under a lease that no tombstone replaced
//!    while the read was in flight (a lost tombstone took the lease with it, and a fill
//!    stores only over its own lease), or is older than a tombstone and was overwritten.
//! 4. *Another node's L1 drops the key.* The tombstone is in place before the invalidation
//!    is published, so a node that drops the key and reads again finds the tombstone, not
//!    the old value. The invalidation makes every fill that began before it lose (it counts
//!    as a write that just ended), and puts the key in the node's consistency window.
//! 5. *Lost invalidations.* Pub/sub delivers at most once: a disconnection, an output buffer
//!    limit or a failover can drop messages. A node answers from L1 only while it knows its
//!    channels deliver: it hears its own probe on every channel each interval, numbers what
//!    it sends per channel, and checks every sender's numbers for gaps. A missed probe, a
//!    gap or a disconnection stops L1 from answering and flushes it; it answers again (after
//!    another flush) once a probe sent after that has come back on every channel. Meanwhile
//!    reads go to L2 and DynamoDB.
//! 6. *Engine failures.* Every call has a time budget (`fleet.timeout_ms`). A read whose L2
//!    lookup fails goes to DynamoDB (one read per key per node, shared by concurrent misses)
//!    and fills nothing in L2. A tombstone that fails is kept and retried until the engine
//!    takes it (bounded; see [`MAX_PENDING`]); a node whose L1 could hold the old value
//!    stopped answering from it when its probes failed. Until its tombstone lands, the
//!    writer neither uses nor fills the key's shared entry and reads it strongly: after a
//!    restart another node may refill the entry from a replica that has not seen the write
//!    (the others may serve that for as long as the retry takes, one probe interval once
//!    the engine is back). The writer retries before its own L1 answers again. Losing the
//!    engine's data (a restart without persistence, a failover that loses recent writes)
//!    loses only cached copies.
//! 7. *Flushes.* A fleet-wide flush (`admin flush`, a write whose keys the proxy cannot
//!    tell, a gap in a stream) moves a counter in the engine, the generation, and tells every
//!    node. Each entry records the generation it was filled under, and a lookup takes only an
//!    entry of its node's generation or a later one; an older one is replaced by a lease. The
//!    generation lives in the entry, not in its name: nodes learn of a flush at different
//!    moments, and a write's tombstone must replace the one entry every node reads, whatever
//!    generation its writer knew. (With the generation in the name, a writer that had not yet
//!    heard of a flush tombstoned the old name while another node filled the new one from a
//!    read that began before the write.)
//!
//! What is not covered: a node cut off from the engine while the others still reach it cannot
//! tell them about its writes until it reaches it again (its tombstones are retried then);
//! until then the others may serve their copies of the keys it wrote, for at most the TTL.

mod bus;
mod engine;
mod entry;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use redis::Script;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, FleetConfig};
use crate::metrics::Metrics;
use crate::wire::keys::{ItemKey, KeyValue};
use engine::Engine;
use entry::{Body, Message};

/// Invalidation channels: spread over the slots of a cluster, so over its primaries.
const CHANNELS: usize = 8;

/// Tombstones kept for retry while the engine is failing; past this, the oldest are dropped
/// (and counted): the nodes that could hold those keys flushed their memory anyway.
const MAX_PENDING: usize = 100_000;

/// How long the engine is left alone after a call failed, before requests try it again (the
/// probes keep trying meanwhile, and end the pause as soon as one succeeds).
const FAILING_PAUSE: Duration = Duration::from_millis(500);

/// Reads a shared entry, or grants a lease to fill it. `KEYS[1]` the entry, `ARGV[1]` the
/// lease token, `ARGV[2]` the lease time (ms), `ARGV[3]` the generation this node reads.
/// Answers the entry (`V…`, `N…`) if it was filled under that generation or a later one,
/// `G0`/`G1` (a lease granted; `1`: over a tombstone, whose mark and expiry the lease keeps)
/// or `B0`/`B1` (another node holds a lease). A lease is `L`, the mark, its deadline (13
/// digits, ms by the engine's clock) and the token. An entry of an older generation was
/// flushed: a lease replaces it.
const GET_OR_LEASE: &str = r#"
local v = redis.call('GET', KEYS[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_ms = tonumber(ARGV[2])
local mark = '0'
local ttl = lease_ms
if v then
  local kind = string.sub(v, 1, 1)
  if kind == 'V' or kind == 'N' then
    local filled = tonumber(string.sub(v, 3, 18), 16)
    if filled and filled >= tonumber(ARGV[3]) then return v end
  end
  if kind == 'T' then
    mark = '1'
  elseif kind == 'L' then
    mark = string.sub(v, 2, 2)
    local deadline = tonumber(string.sub(v, 3, 15))
    if deadline and now < deadline then return 'B' .. mark end
  end
  if mark == '1' then
    local left = redis.call('PTTL', KEYS[1])
    if left > ttl then ttl = left end
  end
end
redis.call('SET', KEYS[1], 'L' .. mark .. string.format('%013d', now + lease_ms) .. ARGV[1], 'PX', ttl)
return 'G' .. mark
"#;

/// Fills a shared entry if it still holds this node's lease. `ARGV[1]` the token, `ARGV[2]`
/// the entry, `ARGV[3]` its TTL (ms). Answers 1 if stored.
const FILL: &str = r#"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 1) == 'L' and string.sub(v, 16) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"#;

/// Moves the generation of shared entries past `ARGV[1]` (the highest this node knows) and
/// answers it. The engine may have lost the counter with its data: a plain `INCR` would then
/// hand out a generation already used, and the flush would drop nothing.
const NEXT_GENERATION: &str = r#"
local g = redis.call('INCR', KEYS[1])
local known = tonumber(ARGV[1])
if g <= known then
  g = known + 1
  redis.call('SET', KEYS[1], g)
end
return g
"#;

/// Answers the generation of shared entries, first raising it to `ARGV[1]` (the highest this
/// node knows) if the engine holds less (it lost the counter with its data).
const SYNC_GENERATION: &str = r#"
local g = tonumber(redis.call('GET', KEYS[1]) or '0')
local known = tonumber(ARGV[1])
if g < known then
  redis.call('SET', KEYS[1], known)
  return known
end
return g
"#;

/// Takes a lock that is free, or renews one this holder has. `ARGV[1]` the holder,
/// `ARGV[2]` its TTL (ms). Answers 1 if the holder has it.
const LEAD: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// How long a shared DAX attribute list is kept (clients keep the ids they were given for as
/// long as they run).
const LIST_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long a fleet-wide lock outlives its holder's last renewal.
const LOCK_TTL: Duration = Duration::from_secs(10);

static LEAD_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LEAD));
static GET_OR_LEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(GET_OR_LEASE));
static FILL_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(FILL));
static NEXT_GENERATION_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(NEXT_GENERATION));
static SYNC_GENERATION_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SYNC_GENERATION));

/// What the shared tier said about an item this node missed.
pub enum Shared {
    /// It holds the item (`None`: known not to exist).
    Hit(Option<Bytes>),
    /// This node reads DynamoDB, strongly consistently, and fills the shared entry with
    /// `lease` (see point 2 above).
    Lease(Lease),
    /// Read DynamoDB but do not fill the shared entry: another node is reading it, or the
    /// engine failed. `strong`: a write was recent, read strongly consistently.
    Read { strong: bool },
}

/// The right to fill one shared entry.
pub struct Lease {
    entry: String,
    token: String,
    /// The generation the lookup read under: the fill is of that generation, whatever this
    /// node has learned since (its read may predate a flush it heard of meanwhile).
    generation: u64,
}

/// A node's view of its fleet.
pub struct Fleet {
    config: FleetConfig,
    /// `dc:<name>:`, before every key and channel.
    prefix: String,
    /// This node's id in messages and leases (random per process).
    node: u64,
    /// Commands; `None` until the first connection succeeds.
    engine: ArcSwapOption<Engine>,
    /// Shared entries filled under an older generation count as flushed; a fleet-wide flush
    /// moves to the next.
    generation: AtomicU64,
    /// Until when (ms since the epoch) requests leave the engine alone after a failure.
    failing_until: AtomicU64,
    /// Whether this node's memory may answer (its channels are known to deliver).
    serving: AtomicBool,
    /// Per channel: the number of the last message this node sent, and its publish lock
    /// (messages leave in the order they are numbered).
    sent: Vec<tokio::sync::Mutex<u64>>,
    /// Lease tokens.
    tokens: AtomicU64,
    /// Writes whose tombstones the engine did not take yet.
    pending: Mutex<Pending>,
    /// A flush the engine did not take, to retry.
    flush_pending: AtomicBool,
    /// How long a tombstone marks a recent write.
    tombstone_ms: u64,
    /// What this node registers as a member: its DAX address, if it serves DAX.
    member: Option<SocketAddr>,
    /// The live members' DAX addresses, as last read.
    members: ArcSwap<Vec<SocketAddr>>,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
}

/// Writes through this node whose tombstones are being written (see [`Fleet::writing`]).
pub struct Writing {
    fleet: Arc<Fleet>,
    keys: Vec<ItemKey>,
}

impl Drop for Writing {
    fn drop(&mut self) {
        let mut pending = self.fleet.pending.lock().expect("lock poisoned");
        for key in &self.keys {
            pending.settled(key);
        }
    }
}

/// Writes whose tombstones the engine has not taken yet: the queue to retry, and how many
/// of them (queued, or being retried) each key has.
#[derive(Default)]
struct Pending {
    queue: VecDeque<(ItemKey, Option<KeyValue>)>,
    unsettled: HashMap<ItemKey, u32>,
}

impl Pending {
    /// One of `key`'s writes is settled (tombstoned, kept again for another retry, or
    /// dropped past [`MAX_PENDING`]).
    fn settled(&mut self, key: &ItemKey) {
        if let Some(n) = self.unsettled.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.unsettled.remove(key);
            }
        }
    }
}

impl Fleet {
    /// The fleet `config` describes, not yet connected; `None` without one.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Option<Arc<Fleet>> {
        if !config.fleet.enabled() {
            return None;
        }
        let fleet = &config.fleet;
        let node = loop {
            let n = rand::random::<u64>();
            if n != 0 {
                break n;
            }
        };
        Some(Arc::new(Fleet {
            prefix: format!("dc:{}:", fleet.name),
            config: fleet.clone(),
            node,
            engine: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            failing_until: AtomicU64::new(0),
            serving: AtomicBool::new(false),
            sent: (0..CHANNELS).map(|_| tokio::sync::Mutex::new(0)).collect(),
            tokens: AtomicU64::new(0),
            pending: Mutex::new(Pending::default()),
            flush_pending: AtomicBool::new(false),
            tombstone_ms: config.cache.consistency_window_ms.max(100),
            member: config.dax_advertise.or(config.dax_listen),
            members: ArcSwap::from_pointee(Vec::new()),
            stop: CancellationToken::new(),
            metrics,
        }))
    }

    /// Whether this node's memory may answer now. Until the engine has been reached and the
    /// channels have delivered, it may not.
    pub fn memory_serves(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }

    /// The live members' DAX addresses (this node's included once it has registered).
    pub fn members(&self) -> Arc<Vec<SocketAddr>> {
        self.members.load_full()
    }

    /// What `/cache` (and `admin stats`) show of the fleet.
    pub fn stats(&self) -> serde_json::Value {
        let fleet = &self.metrics.fleet;
        let lookups = |result: &str| fleet.lookups.with_label_values(&[result]).get();
        let (hits, misses) = (lookups("hit"), lookups("miss") + lookups("busy"));
        let shared_lookups = hits + misses;
        serde_json::json!({
            "name": self.config.name,
            "engine_up": fleet.engine_up.get() == 1,
            "memory_serving": self.memory_serves(),
            "discovery": self.config.discovery,
            "members": fleet.members.get(),
            "dax_endpoints": self.members().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "shared": {
                "hits": hits,
                "misses": misses,
                "errors": lookups("error"),
                "skipped": lookups("skipped"),
                "hit_ratio": if shared_lookups == 0 { 0.0 } else { hits as f64 / shared_lookups as f64 },
                "lease_waits": fleet.lease_waits.get(),
            },
            "invalidations": {
                "sent": fleet.invalidations_sent.get(),
                "received": fleet.invalidations_received.get(),
            },
            "pending_tombstones": fleet.pending_tombstones.get(),
        })
    }

    /// Stops the background work and leaves the member list.
    pub async fn stop(&self) {
        self.stop.cancel();
        if let Some(engine) = self.engine.load_full() {
            let mut cmd = redis::cmd("ZREM");
            cmd.arg(self.members_key()).arg(self.member_name());
            let _ =
                tokio::time::timeout(Duration::from_millis(200), engine.call::<i64>(&cmd)).await;
        }
    }

    // -- reads --------------------------------------------------------------------------------

    /// Looks `key` up in the shared tier after a memory miss: its entry, or a lease to fill
    /// it, or (another node reading it, the engine failing) neither. Waits up to
    /// `fleet.lease_wait_ms` for another node's read to land.
    pub async fn lookup(&self, key: &ItemKey) -> Shared {
        let lookups = &self.metrics.fleet.lookups;
        if self.unsettled(key) || self.flush_pending.load(Ordering::Acquire) {
            // A write of the key through this node (or a flush) has not reached the engine
            // yet: until it does, the shared entry may be older than that write, and
            // DynamoDB's replicas may be too.
            lookups.with_label_values(&["skipped"]).inc();
            return Shared::Read { strong: true };
        }
        if self.failing() {
            lookups.with_label_values(&["skipped"]).inc();
            return Shared::Read { strong: false };
        }
        let entry = self.entry_key(key);
        let generation = self.generation.load(Ordering::Acquire);
        let generation_arg = generation.to_string();
        let token = format!(
            "{:016x}{:x}",
            self.node,
            self.tokens.fetch_add(1, Ordering::Relaxed)
        );
        let lease_ms = self.config.lease_ms.to_string();
        let wait_until = Instant::now() + Duration::from_millis(self.config.lease_wait_ms);
        let mut waited = false;
        loop {
            let script = &*GET_OR_LEASE_SCRIPT;
            let args = [
                token.as_bytes(),
                lease_ms.as_bytes(),
                generation_arg.as_bytes(),
            ];
            let (entry, args) = (&entry, &args);
            let reply: Option<Vec<u8>> = self
                .timed("lookup", |engine| async move {
                    engine.script(script, entry, args).await
                })
                .await;
            let Some(reply) = reply else {
                lookups.with_label_values(&["error"]).inc();
                return Shared::Read { strong: false };
            };
            let strong = reply.get(1) == Some(&b'1');
            match reply.first() {
                Some(b'G') if reply.len() == 2 => {
                    lookups.with_label_values(&["miss"]).inc();
                    return Shared::Lease(Lease {
                        entry: entry.clone(),
                        token: token.clone(),
                        generation,
                    });
                }
                Some(b'B') if reply.len() == 2 => {
                    if Instant::now() >= wait_until {
                        lookups.with_label_values(&["busy"]).inc();
                        return Shared::Read { strong };
                    }
                    if !waited {
                        waited = true;
                        self.metrics.fleet.lease_waits.inc();
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                _ => {
                    return match entry::decode_entry(&reply, key) {
                        Some(item) => {
                            lookups.with_label_values(&["hit"]).inc();
                            Shared::Hit(item)
                        }
                        // Not an entry of this key (a hash collision, or bytes this
                        // version does not know): read DynamoDB, leave it alone.
                        None => {
                            lookups.with_label_values(&["error"]).inc();
                            Shared::Read { strong: false }
                        }
                    };
                }
            }
        }
    }

    /// Fills the shared entry `lease` was granted for with what DynamoDB returned for `key`
    /// (`None`: not found), for `ttl`; stored only if no write came between.
    pub async fn fill(&self, key: &ItemKey, lease: Lease, item: Option<&[u8]>, ttl: Duration) {
        let value = entry::encode_entry(key, item, lease.generation, epoch_ms());
        let ttl = ttl.as_millis().max(1).to_string();
        let script = &*FILL_SCRIPT;
        let stored: Option<i64> = self
            .timed("fill", |engine| async move {
                engine
                    .script(
                        script,
                        &lease.entry,
                        &[lease.token.as_bytes(), &value, ttl.as_bytes()],
                    )
                    .await
            })
            .await;
        let result = match stored {
            Some(1) => "stored",
            Some(_) => "lost",
            None => return,
        };
        self.metrics.fleet.fills.with_label_values(&[result]).inc();
    }

    // -- writes -------------------------------------------------------------------------------

    /// After DynamoDB acknowledged writes to `changed` (and before the client is answered):
    /// tombstones their shared entries, then tells the fleet.
    pub async fn wrote(&self, changed: Vec<(ItemKey, Option<KeyValue>)>) {
        if changed.is_empty() {
            return;
        }
        let tombstoned =
            futures_util::future::join_all(changed.iter().map(|(key, _)| self.tombstone(key)))
                .await;
        let mut failed = Vec::new();
        let mut publish = Vec::with_capacity(changed.len());
        for (change, ok) in changed.into_iter().zip(tombstoned) {
            if ok {
                publish.push(change);
            } else {
                failed.push(change);
            }
        }
        // The tombstone first: a node that hears of the write and reads again must find it.
        futures_util::future::join_all(publish.into_iter().map(|(key, partition)| {
            let channel = channel_of(&key, partition.as_ref());
            self.publish(channel, Body::Changed { key, partition })
        }))
        .await;
        if !failed.is_empty() {
            self.keep_pending(failed);
        }
    }

    /// Drops every shared entry (or, with `table`, at least that table's) and tells every
    /// node to drop the same from memory. A new generation: older entries are no longer
    /// taken, and are replaced as they are read. `false` if the engine did not take it, or
    /// not every channel carried the message.
    ///
    /// A generation the engine did not take is retried (as a flush of everything) before this
    /// node's memory answers again, and until then this node does not use the shared tier. A
    /// message that did not go out is not: the generation has moved, and a node that missed
    /// the message finds it at its next probe (and flushes its memory), or had stopped
    /// answering from memory because its own probes failed on that channel too. (Retrying
    /// would move the generation again on every probe while a cluster node is lost, and every
    /// shared entry with it.)
    pub async fn flush(&self, table: Option<&str>) -> bool {
        let Some(generation) = self
            .generation_script("flush", &NEXT_GENERATION_SCRIPT)
            .await
        else {
            self.flush_pending.store(true, Ordering::Release);
            return false;
        };
        self.generation.fetch_max(generation, Ordering::AcqRel);
        let body = Body::Flush {
            generation,
            table: table.map(str::to_string),
        };
        futures_util::future::join_all((0..CHANNELS).map(|c| self.publish(c, body.clone())))
            .await
            .into_iter()
            .all(|ok| ok)
    }

    /// Retries a flush the engine did not take (see [`Fleet::flush`]).
    async fn retry_flush(&self) {
        if self.flush_pending.swap(false, Ordering::AcqRel) {
            self.flush(None).await;
        }
    }

    /// Reads the generation of shared entries, raising the engine's to this node's if it lost
    /// it. `Some(true)` if it moved on since this node last knew (a flush message was
    /// missed); `None` if the engine did not answer.
    async fn sync_generation(&self) -> Option<bool> {
        let generation = self
            .generation_script("generation", &SYNC_GENERATION_SCRIPT)
            .await?;
        Some(self.generation.fetch_max(generation, Ordering::AcqRel) < generation)
    }

    /// Runs `script` on the generation counter with the highest generation this node knows.
    async fn generation_script(&self, call: &'static str, script: &Script) -> Option<u64> {
        let key = self.generation_key();
        let known = self.generation.load(Ordering::Acquire).to_string();
        let (key, known) = (&key, &known);
        self.background(call, |engine| async move {
            engine.script(script, key, &[known.as_bytes()]).await
        })
        .await
    }

    async fn tombstone(&self, key: &ItemKey) -> bool {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.entry_key(key))
            .arg("T")
            .arg("PX")
            .arg(self.tombstone_ms);
        self.timed("tombstone", |engine| async move {
            engine.call::<redis::Value>(&cmd).await
        })
        .await
        .is_some()
    }

    /// Publishes `body` on `channel`, numbered. `false` if it was not sent.
    async fn publish(&self, channel: usize, body: Body) -> bool {
        let is_change = matches!(body, Body::Changed { .. });
        let mut sent = self.sent[channel].lock().await;
        *sent += 1;
        let message = Message {
            origin: self.node,
            seq: *sent,
            sent_ms: epoch_ms(),
            body,
        }
        .encode();
        let name = self.channel_name(channel);
        let publish = |engine: Engine| async move { engine.publish(&name, &message).await };
        let ok = if is_change {
            self.call_within("publish", self.budget(), publish).await
        } else {
            self.background("probe", publish).await
        }
        .is_some();
        if ok && is_change {
            self.metrics.fleet.invalidations_sent.inc();
        }
        ok
    }

    fn keep_pending(&self, failed: Vec<(ItemKey, Option<KeyValue>)>) {
        let mut pending = self.pending.lock().expect("lock poisoned");
        for change in failed {
            if pending.queue.len() >= MAX_PENDING
                && let Some((dropped, _)) = pending.queue.pop_front()
            {
                pending.settled(&dropped);
            }
            *pending.unsettled.entry(change.0.clone()).or_default() += 1;
            pending.queue.push_back(change);
        }
        self.metrics
            .fleet
            .pending_tombstones
            .set(pending.queue.len() as i64);
    }

    /// Marks `keys` as being written through this node, from before its memory learns of the
    /// writes until their tombstones land (or are kept for retry): a read that starts in
    /// between must not take the shared entry, which still holds the value from before the
    /// write, and fill memory with it. Settled when the returned guard goes.
    pub fn writing(self: &Arc<Self>, keys: Vec<ItemKey>) -> Writing {
        let mut pending = self.pending.lock().expect("lock poisoned");
        for key in &keys {
            *pending.unsettled.entry(key.clone()).or_default() += 1;
        }
        drop(pending);
        Writing {
            fleet: self.clone(),
            keys,
        }
    }

    /// Whether a write to `key` through this node still waits for its tombstone. The shared
    /// entry may then hold a value older than that write, so this node must not use it.
    fn unsettled(&self, key: &ItemKey) -> bool {
        let pending = self.pending.lock().expect("lock poisoned");
        pending.unsettled.contains_key(key)
    }

    /// Retries the tombstones the engine did not take. Their keys stay unsettled until the
    /// retry is over (one that fails again is kept once more).
    async fn retry_pending(&self) {
        let batch: Vec<_> = {
            let mut pending = self.pending.lock().expect("lock poisoned");
            let n = pending.queue.len().min(1000);
            pending.queue.drain(..n).collect()
        };
        if !batch.is_empty() {
            let keys: Vec<ItemKey> = batch.iter().map(|(key, _)| key.clone()).collect();
            self.wrote(batch).await;
            let mut pending = self.pending.lock().expect("lock poisoned");
            for key in &keys {
                pending.settled(key);
            }
            self.metrics
                .fleet
                .pending_tombstones
                .set(pending.queue.len() as i64);
        }
    }

    /// Takes or keeps the fleet-wide lock `name` for this node (for a few seconds; call again
    /// well within them): `Some(true)` if this node holds it, `Some(false)` if another does,
    /// `None` if the engine did not answer.
    pub async fn lead(&self, name: &str) -> Option<bool> {
        let key = format!("{}lock:{name}", self.prefix);
        let holder = self.member_name();
        let ttl = LOCK_TTL.as_millis().to_string();
        let script = &*LEAD_SCRIPT;
        let (key, holder, ttl) = (&key, &holder, &ttl);
        let held: Option<i64> = self
            .background("lock", |engine| async move {
                engine
                    .script(script, key, &[holder.as_bytes(), ttl.as_bytes()])
                    .await
            })
            .await;
        held.map(|h| h == 1)
    }

    // -- DAX attribute lists -----------------------------------------------------------------

    /// Shares the DAX attribute list `id` (its `names`) with the fleet, so clients may use the
    /// id on any node. An id already taken by another list stays with it (ids are hashes of
    /// the names: two lists meet on one id about once in 2^53).
    pub async fn share_attribute_list(&self, id: i64, names: &[String]) {
        let json = serde_json::to_vec(names).expect("names serialise");
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("{}list:{id}", self.prefix))
            .arg(json)
            .arg("NX")
            .arg("PX")
            .arg(LIST_TTL.as_millis() as u64);
        self.timed("list", |engine| async move {
            engine.call::<redis::Value>(&cmd).await
        })
        .await;
    }

    /// The names of DAX attribute list `id`, if a node of the fleet shared it.
    pub async fn attribute_list(&self, id: i64) -> Option<Vec<String>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(format!("{}list:{id}", self.prefix));
        let json: Option<Vec<u8>> = self
            .timed("list", |engine| async move { engine.call(&cmd).await })
            .await
            .flatten();
        serde_json::from_slice(&json?).ok()
    }

    // -- engine calls -------------------------------------------------------------------------

    fn budget(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms)
    }

    fn failing(&self) -> bool {
        self.failing_until.load(Ordering::Relaxed) > epoch_ms()
    }

    /// One call on the request path: skipped while the engine is failing, bounded by the
    /// budget, counted. `None` if it did not succeed.
    async fn timed<T, F, Fut>(&self, call: &'static str, run: F) -> Option<T>
    where
        F: FnOnce(Engine) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if self.failing() {
            self.metrics.fleet.errors.with_label_values(&[call]).inc();
            return None;
        }
        self.call_within(call, self.budget(), run).await
    }

    /// One call off the request path (probes, membership, flushes), given longer than a
    /// request's budget: a slow engine still counts as delivering.
    async fn background<T, F, Fut>(&self, call: &'static str, run: F) -> Option<T>
    where
        F: FnOnce(Engine) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        // Never much past half a probe interval: a paused engine must be noticed in time.
        let budget = self
            .budget()
            .max(Duration::from_millis(self.config.probe_interval_ms / 2));
        self.call_within(call, budget, run).await
    }

    /// One call whatever the engine's recent failures, bounded by `budget`, counted.
    async fn call_within<T, F, Fut>(
        &self,
        call: &'static str,
        budget: Duration,
        run: F,
    ) -> Option<T>
    where
        F: FnOnce(Engine) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let fleet = &self.metrics.fleet;
        let Some(engine) = self.engine.load_full() else {
            fleet.errors.with_label_values(&[call]).inc();
            return None;
        };
        let started = Instant::now();
        let result = tokio::time::timeout(budget, run((*engine).clone())).await;
        fleet
            .calls
            .with_label_values(&[call])
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(Ok(value)) => Some(value),
            Ok(Err(err)) => {
                tracing::debug!(call, error = %err, "fleet engine call failed");
                self.failed(call);
                None
            }
            Err(_) => {
                tracing::debug!(call, "fleet engine call ran out of time");
                self.failed(call);
                None
            }
        }
    }

    fn failed(&self, call: &'static str) {
        self.metrics.fleet.errors.with_label_values(&[call]).inc();
        self.failing_until.store(
            epoch_ms() + FAILING_PAUSE.as_millis() as u64,
            Ordering::Relaxed,
        );
    }

    // -- names --------------------------------------------------------------------------------

    /// The shared entry of `key`: the fleet's prefix and a hash of the key (the entry holds
    /// the key itself, checked on every read). One name whatever the generation: see point 7
    /// above.
    fn entry_key(&self, key: &ItemKey) -> String {
        let digest = Sha256::digest(key.as_bytes());
        let mut name = String::with_capacity(self.prefix.len() + 34);
        name.push_str(&self.prefix);
        name.push_str("e:");
        name.push_str(&hex::encode(&digest[..16]));
        name
    }

    fn channel_name(&self, channel: usize) -> String {
        format!("{}invalidate:{channel}", self.prefix)
    }

    fn generation_key(&self) -> String {
        format!("{}generation", self.prefix)
    }

    fn members_key(&self) -> String {
        format!("{}members", self.prefix)
    }

    /// This node as a member: its DAX address (or `-`) and its id.
    fn member_name(&self) -> String {
        match self.member {
            Some(addr) => format!("{addr}/{:016x}", self.node),
            None => format!("-/{:016x}", self.node),
        }
    }
}

/// The channel that carries invalidations of `key`: by partition, so one partition's writes
/// stay in order on one channel.
fn channel_of(key: &ItemKey, partition: Option<&KeyValue>) -> usize {
    let mut hasher = Sha256::new();
    hasher.update(key.table().as_bytes());
    match partition.and_then(crate::wire::keys::canonical_value) {
        Some(value) => hasher.update(&value),
        None => hasher.update(key.as_bytes()),
    }
    hasher.finalize()[0] as usize % CHANNELS
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::keys::WireKey;

    fn key(pk: &str) -> ItemKey {
        let wire: WireKey = [("pk".to_string(), KeyValue::S(pk.into()))].into();
        ItemKey::new("t", &wire).unwrap()
    }

    fn unconnected() -> Arc<Fleet> {
        let mut config = Config::default();
        config.fleet.redis = vec!["redis://127.0.0.1:1".into()];
        Fleet::new(&config, Arc::new(Metrics::new())).unwrap()
    }

    #[tokio::test]
    async fn a_key_written_while_the_engine_was_away_is_read_strongly_until_its_tombstone_lands() {
        let fleet = unconnected();
        fleet.wrote(vec![(key("a"), None), (key("a"), None)]).await;
        assert!(matches!(
            fleet.lookup(&key("a")).await,
            Shared::Read { strong: true }
        ));
        assert!(matches!(
            fleet.lookup(&key("b")).await,
            Shared::Read { strong: false }
        ));
        // While a write's tombstone is being written, too.
        let writing = fleet.writing(vec![key("c")]);
        assert!(matches!(
            fleet.lookup(&key("c")).await,
            Shared::Read { strong: true }
        ));
        drop(writing);
        assert!(!fleet.unsettled(&key("c")));
        // A retry the engine does not take leaves both writes waiting.
        fleet.retry_pending().await;
        assert_eq!(
            fleet.pending.lock().unwrap().unsettled.get(&key("a")),
            Some(&2)
        );
        assert_eq!(fleet.metrics.fleet.pending_tombstones.get(), 2);
        // Dropped past the bound: settled, and no longer remembered.
        fleet.keep_pending(
            (0..MAX_PENDING)
                .map(|i| (key(&i.to_string()), None))
                .collect(),
        );
        assert!(!fleet.unsettled(&key("a")));
        assert_eq!(fleet.pending.lock().unwrap().unsettled.len(), MAX_PENDING);
    }
}
