//! The DAX front-end: applications that use a DAX client (`dax://host:8111`, or `daxs://`
//! with TLS) talk to the same cache engine as HTTP clients.
//!
//! A connection starts with a preamble, then carries one request at a time: CBOR items with no
//! length prefix ([`frame`]). Metadata methods are answered here: cluster discovery
//! (`endpoints`), key schemas and attribute lists ([`item::Lists`], shared by every connection
//! and stable across restarts). A data method becomes the DynamoDB request it stands for
//! ([`request`]), takes the same request path as an HTTP request ([`crate::proxy::handle`]),
//! and its answer is written back in DAX's encoding ([`response`]); errors in DAX's
//! ([`DaxError`]).
//!
//! The wire details are what the public DAX clients send and expect; where the clients differ
//! from one another, `docs/dax-protocol.md` says how, citing their sources. Nothing a client
//! sends is trusted: framing never believes a count, decoders are bounded by the bytes they
//! hold and by DynamoDB's own limits, and connections share bounds on what they may buffer.

pub(crate) mod av;
mod error;
pub(crate) mod frame;
mod item;
pub(crate) mod number;
mod request;
mod response;
mod sexpr;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use minicbor::Encoder;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::Principal;
use crate::metrics::Protocol;
use crate::net::listener::{self, Ends, Stream};
use crate::proxy::{self, Context, Inbound};
use crate::state::State;
use crate::upstream::schema::SchemaError;
use crate::wire::answer::{CacheStatus, error_name};
use crate::wire::operation::Operation;
use crate::wire::tables::Named;

pub(crate) use error::DaxError;
use frame::{Dialect, FrameError, Method};
use item::{KeyShape, Lists};
use request::{Items, Shapes};

/// What is read from a socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Room a request may take beyond the body limit: its envelope and keyword items.
const FRAME_SLACK: usize = 64 * 1024;

/// What every DAX connection shares.
pub(crate) struct Dax {
    lists: Lists,
    /// Buffer bytes held by connections that have not authenticated yet.
    pre_auth_bytes: AtomicUsize,
    /// Buffer bytes past [`KEPT_CAPACITY`] held by all connections.
    large_bytes: AtomicUsize,
    /// Turns at looking up a table the proxy does not know ([`LOOKUPS`]).
    lookups: Semaphore,
    /// Reported as the leader's session: when this node started.
    started: u64,
}

impl Default for Dax {
    fn default() -> Dax {
        Dax {
            lists: Lists::default(),
            pre_auth_bytes: AtomicUsize::new(0),
            large_bytes: AtomicUsize::new(0),
            lookups: Semaphore::new(LOOKUPS),
            started: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }
}

/// The DAX protocol, for [`crate::net::listener::serve`]: the listener's accept loop, limits,
/// TLS and drain are the same as HTTP's; a connection is read as DAX frames.
#[derive(Clone)]
pub(crate) struct Listener {
    state: Arc<State>,
    dax: Arc<Dax>,
}

impl Listener {
    /// What every DAX connection shares, with attribute lists kept in
    /// `dax_attribute_lists_file` when one is configured.
    pub(crate) fn new(state: Arc<State>) -> Listener {
        let mut dax = Dax::default();
        if let Some(path) = &state.config.dax_attribute_lists_file {
            match Lists::persisted(path) {
                Ok(lists) => dax.lists = lists,
                Err(err) => tracing::warn!(
                    path = %path.display(),
                    error = %err,
                    "cannot keep DAX attribute lists in this file; keeping them in memory only"
                ),
            }
        }
        if state.caches.fleet().is_some() {
            dax.lists.share();
        }
        Listener {
            state,
            dax: Arc::new(dax),
        }
    }
}

impl listener::Protocol for Listener {
    async fn serve<S: Stream>(&self, stream: S, ends: Ends, drain: CancellationToken) {
        connection(&self.state, &self.dax, stream, ends.local, &drain).await;
    }
}

/// Who is calling when authentication is on (`Ok(None)`: it is off), or why nobody is.
type Identity = Result<Option<Arc<Principal>>, DaxError>;

/// How long one `authorizeConnection` holds, as DAX's own: the clients sign again every 150 s
/// (Python) or 225 s (Go), well inside it.
const AUTH_TTL: Duration = Duration::from_secs(300);

/// What one connection knows about its caller.
#[derive(Default)]
struct Caller {
    /// Who `authorizeConnection` proved the caller to be, with the key it signed with and
    /// when.
    principal: Option<Authenticated>,
    /// Why the last `authorizeConnection` failed: told on the next request, as it has no
    /// answer of its own.
    refused: Option<DaxError>,
    /// Which client it is, where that changes what its requests mean.
    dialect: Dialect,
}

struct Authenticated {
    access_key: String,
    principal: Arc<Principal>,
    at: Instant,
}

/// Bytes a connection may buffer before it has authenticated (when authentication is on):
/// `authorizeConnection` is a few hundred bytes, and nothing else is answered before it.
const PRE_AUTH_LIMIT: usize = 64 * 1024;
/// And all such connections together.
const PRE_AUTH_TOTAL: usize = 32 << 20;
/// A connection's buffers shrink back to this between requests once a large one has passed.
const KEPT_CAPACITY: usize = 64 * 1024;
/// How many requests of the largest size (`max_body_bytes`) all connections may be reading at
/// once: the bound on the bytes they have buffered past [`KEPT_CAPACITY`] each. A connection
/// whose request would pass it is closed with an error; requests under 64 KB never count.
const LARGE_REQUESTS: usize = 4;

/// One connection's part of buffer bytes that all connections share a bound on: before
/// authentication ([`PRE_AUTH_TOTAL`]), and of large requests (past [`KEPT_CAPACITY`] each,
/// four of the largest a request may be). A connection gives its part back as its buffer
/// shrinks, when it authenticates, and when it closes.
struct Share<'a> {
    total: &'a AtomicUsize,
    limit: usize,
    held: usize,
}

impl Share<'_> {
    /// Holds `bytes` now; `false` when every connection together would hold more than the
    /// bound.
    fn hold(&mut self, bytes: usize) -> bool {
        if bytes > self.held {
            // Only a connection that grows can pass the bound, and one refused takes nothing.
            let more = bytes - self.held;
            let before = self.total.fetch_add(more, Ordering::Relaxed);
            if before + more > self.limit {
                self.total.fetch_sub(more, Ordering::Relaxed);
                return false;
            }
            self.held = bytes;
            true
        } else {
            self.total.fetch_sub(self.held - bytes, Ordering::Relaxed);
            self.held = bytes;
            true
        }
    }
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        self.total.fetch_sub(self.held, Ordering::Relaxed);
    }
}

/// Why a connection stops reading.
enum Ended {
    /// The client closed it, or the proxy is stopping between requests.
    Closed,
    /// A request began and did not arrive whole in time, or the connection sat idle too long.
    Slow,
    /// The bytes cannot be read as DAX, or are more than the connection may hold.
    Refused(FrameError),
}

/// The timeouts a connection reads under.
struct Timing {
    /// A request must arrive whole within this of its first byte.
    request: Duration,
    /// An idle connection is closed after this (`None`: never).
    idle: Option<Duration>,
}

/// One connection's read side: its buffer, the request being found in it, and the buffer's
/// part of the bound all connections share on large requests.
struct Inbox<'a> {
    buf: BytesMut,
    reader: frame::Reader,
    large: Share<'a>,
}

impl Inbox<'_> {
    /// Reads until `ready` finds something in the buffer. A request must arrive whole within
    /// the header timeout of its first byte (a client writes it in one flush); between
    /// requests the connection may idle for the idle timeout.
    async fn fill<S, T>(
        &mut self,
        stream: &mut S,
        limit: usize,
        timing: &Timing,
        stop: &CancellationToken,
        mut pre_auth: Option<&mut Share<'_>>,
        mut ready: impl FnMut(&mut frame::Reader, &[u8]) -> Result<Option<T>, FrameError>,
    ) -> Result<T, Ended>
    where
        S: AsyncRead + Unpin,
    {
        let idle_until = timing.idle.map(|idle| Instant::now() + idle);
        let mut request_until = None;
        loop {
            if let Some(found) = ready(&mut self.reader, &self.buf).map_err(Ended::Refused)? {
                return Ok(found);
            }
            if self.buf.len() >= limit {
                return Err(Ended::Refused(FrameError::Malformed(format!(
                    "a request larger than {limit} bytes"
                ))));
            }
            let begun = !self.buf.is_empty();
            if begun && request_until.is_none() {
                request_until = Some(Instant::now() + timing.request);
            }
            // Read no more than the limit allows, so the buffer never grows past it.
            let room = READ_CHUNK.min(limit - self.buf.len());
            self.buf.reserve(room);
            if let Some(pre_auth) = pre_auth.as_deref_mut()
                && !pre_auth.hold(self.buf.capacity())
            {
                return Err(Ended::Refused(FrameError::Malformed(
                    "too many bytes from unauthenticated connections".into(),
                )));
            }
            // What the client has sent counts, not the spare room the buffer grew: a stream of
            // small requests never comes near the bound.
            if !self
                .large
                .hold(self.buf.len().saturating_sub(KEPT_CAPACITY))
            {
                return Err(Ended::Refused(FrameError::Malformed(
                    "too many large requests at once".into(),
                )));
            }
            let deadline = request_until.or(idle_until);
            let read = {
                let mut limited = (&mut *stream).take(room as u64);
                tokio::select! {
                    // Between requests only: a request that has begun is read to its end.
                    _ = stop.cancelled(), if !begun => return Err(Ended::Closed),
                    _ = sleep_until(deadline) => return Err(Ended::Slow),
                    read = limited.read_buf(&mut self.buf) => read,
                }
            };
            match read {
                Ok(0) | Err(_) => return Err(Ended::Closed),
                Ok(_) => {}
            }
        }
    }

    /// Gives back a large request's memory once it has been answered.
    fn shrink(&mut self) {
        if self.buf.capacity() > KEPT_CAPACITY && self.buf.len() < KEPT_CAPACITY {
            let mut fresh = BytesMut::with_capacity(READ_CHUNK.max(self.buf.len()));
            fresh.extend_from_slice(&self.buf);
            self.buf = fresh;
        }
        self.large
            .hold(self.buf.len().saturating_sub(KEPT_CAPACITY));
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

async fn connection<S>(
    state: &State,
    dax: &Dax,
    mut stream: S,
    local: SocketAddr,
    stop: &CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limit = state.config.limits.max_body_bytes + FRAME_SLACK;
    let timing = Timing {
        request: state.config.header_read_timeout(),
        idle: state.config.idle_timeout(),
    };
    // The preamble comes as soon as the client connects: it gets the request timeout, not
    // the idle one.
    let preamble_timing = Timing {
        request: timing.request,
        idle: Some(timing.request),
    };
    let auth_on = state.gate.verifier.is_some();
    let mut pre_auth = Share {
        total: &dax.pre_auth_bytes,
        limit: PRE_AUTH_TOTAL,
        held: 0,
    };
    let mut inbox = Inbox {
        buf: BytesMut::with_capacity(READ_CHUNK),
        reader: frame::Reader::default(),
        large: Share {
            total: &dax.large_bytes,
            limit: LARGE_REQUESTS * limit,
            held: 0,
        },
    };
    let preamble = inbox
        .fill(
            &mut stream,
            FRAME_SLACK,
            &preamble_timing,
            stop,
            auth_on.then_some(&mut pre_auth),
            |_, buf| frame::preamble(buf),
        )
        .await;
    let mut caller = Caller::default();
    match preamble {
        Ok((len, dialect)) => {
            inbox.buf.advance(len);
            caller.dialect = dialect;
        }
        Err(Ended::Slow) => {
            state.metrics.slow_clients.inc();
            return;
        }
        Err(Ended::Refused(err)) => {
            tracing::debug!(error = ?err, "not a DAX client");
            return;
        }
        Err(Ended::Closed) => return,
    }
    let mut out = Vec::with_capacity(READ_CHUNK);
    loop {
        let authenticated = !auth_on || caller.principal.is_some();
        let (limit, pre) = if authenticated {
            pre_auth.hold(0);
            (limit, None)
        } else {
            (PRE_AUTH_LIMIT, Some(&mut pre_auth))
        };
        let read = inbox
            .fill(&mut stream, limit, &timing, stop, pre, |reader, buf| {
                reader.next(buf)
            })
            .await;
        let frame = match read {
            Ok(frame) => frame,
            Err(Ended::Closed) => return,
            Err(Ended::Slow) => {
                state.metrics.slow_clients.inc();
                return;
            }
            Err(Ended::Refused(err)) => {
                tracing::debug!(error = ?err, "DAX request refused; closing the connection");
                // The request's end cannot be found: say why, then close.
                let message = match err {
                    FrameError::UnknownMethod(id) => format!("Unknown method {id}"),
                    FrameError::Malformed(why) => format!("Malformed request: {why}"),
                };
                out.clear();
                DaxError::validation(message).encode(&mut out);
                let _ = stream.write_all(&out).await;
                let _ = stream.shutdown().await;
                return;
            }
        };
        let request = inbox.buf.split_to(frame.len).freeze();
        out.clear();
        answer(state, dax, &mut caller, &frame, &request, local, &mut out).await;
        drop(request);
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
        inbox.shrink();
        if out.capacity() > KEPT_CAPACITY {
            out = Vec::with_capacity(READ_CHUNK);
        }
    }
}

/// Answers one request into `out` (nothing for `authorizeConnection`).
async fn answer(
    state: &State,
    dax: &Dax,
    caller: &mut Caller,
    frame: &frame::Frame,
    request: &Bytes,
    local: SocketAddr,
    out: &mut Vec<u8>,
) {
    let items = Items::new(request, frame);
    if frame.method == Method::AuthorizeConnection {
        authorize(state, caller, &items);
        return;
    }
    let started = Instant::now();
    let mut result = method(state, dax, caller, frame, &items, local, started, out).await;
    // In a fleet, an attribute list another node defined: learned from the engine, then the
    // request is answered again (nothing was sent upstream: lists are read while decoding).
    let mut learned = 0;
    while let Err(err) = &result
        && let Some(id) = err.unknown_list
        && learned < MAX_LISTS_LEARNED
        && learn_list(state, dax, id).await
    {
        learned += 1;
        out.clear();
        result = method(state, dax, caller, frame, &items, local, started, out).await;
    }
    share_lists(state, dax).await;
    if let Err(err) = result {
        out.clear();
        err.encode(out);
    }
}

/// How many lists one request may need to learn from the fleet.
const MAX_LISTS_LEARNED: usize = 4;

/// Runs one method, its answer into `out`.
#[allow(clippy::too_many_arguments)]
async fn method(
    state: &State,
    dax: &Dax,
    caller: &mut Caller,
    frame: &frame::Frame,
    items: &Items<'_>,
    local: SocketAddr,
    started: Instant,
    out: &mut Vec<u8>,
) -> Result<(), DaxError> {
    // Every method needs an identity when authentication is on; data methods count their
    // refusal.
    let identity = caller.identity(state);
    match frame.method {
        _ if identity.is_err() && !frame.method.is_data() => identity.map(drop),
        Method::Endpoints => endpoints(state, dax, local, out),
        Method::DefineAttributeListId => define_attribute_list_id(dax, items, out),
        Method::DefineAttributeList => define_attribute_list(dax, items, out),
        Method::DefineKeySchema => define_key_schema(state, dax, identity, items, out).await,
        _ => {
            let dialect = caller.dialect;
            data(
                state,
                dax,
                identity,
                dialect,
                frame.method,
                items,
                started,
                out,
            )
            .await
        }
    }
}

/// Learns list `id` from the fleet; `false` if there is no fleet or it does not know it.
async fn learn_list(state: &State, dax: &Dax, id: i64) -> bool {
    let Some(fleet) = state.caches.fleet() else {
        return false;
    };
    match fleet.attribute_list(id).await {
        Some(names) => dax.lists.learn(id, &names),
        None => false,
    }
}

/// Gives the fleet the lists defined while answering, before the answer leaves: a client may
/// use an id it was given on any node.
async fn share_lists(state: &State, dax: &Dax) {
    let Some(fleet) = state.caches.fleet() else {
        return;
    };
    for (id, names) in dax.lists.take_fresh() {
        fleet.share_attribute_list(id, &names).await;
    }
}

/// `authorizeConnection`: the caller's SigV4 signature, verified when authentication is on.
fn authorize(state: &State, caller: &mut Caller, items: &Items<'_>) {
    let Some(verifier) = &state.gate.verifier else {
        return;
    };
    let verified = (|| {
        let access_key = av::text(&mut items.decoder(0))?;
        let signature = av::text(&mut items.decoder(1))?;
        let string_to_sign = String::from_utf8(items.bytes(2)?)
            .map_err(|_| DaxError::malformed("the string to sign is not UTF-8"))?;
        verifier
            .verify_dax(&access_key, &signature, &string_to_sign, SystemTime::now())
            .map(|principal| (access_key.clone(), principal))
            .map_err(|err| {
                state
                    .metrics
                    .auth_failures
                    .with_label_values(&[err.reason()])
                    .inc();
                DaxError::unauthenticated(error_name(err.error_type()), err.to_string())
            })
    })();
    match verified {
        Ok((access_key, principal)) => {
            caller.principal = Some(Authenticated {
                access_key,
                principal,
                at: Instant::now(),
            });
            caller.refused = None;
        }
        Err(err) => {
            caller.principal = None;
            caller.refused = Some(err);
        }
    }
}

impl Caller {
    /// Who is calling, when authentication is on (`Ok(None)`: it is off).
    fn identity(&self, state: &State) -> Identity {
        if state.gate.verifier.is_none() {
            return Ok(None);
        }
        if let Some(refused) = &self.refused {
            return Err(refused.clone());
        }
        let Some(auth) = &self.principal else {
            return Err(DaxError::unauthenticated(
                "MissingAuthenticationTokenException",
                "Request is missing Authentication Token",
            ));
        };
        // The client signs again before this: one that has not is told to.
        if auth.at.elapsed() >= AUTH_TTL {
            return Err(DaxError::unauthenticated(
                "ExpiredTokenException",
                "The security token included in the request is expired",
            ));
        }
        // A principals file reloaded since: the key must still be there with the same secret,
        // and its grants are the file's current ones.
        match state
            .gate
            .verifier
            .as_ref()
            .and_then(|v| v.current(&auth.access_key, &auth.principal))
        {
            Some(principal) => Ok(Some(principal)),
            None => Err(DaxError::unauthenticated(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )),
        }
    }
}

/// `endpoints`: this node, as the one leader of its cluster; with `fleet` discovery, every
/// live member of the fleet, each a leader (any node takes writes: they go to DynamoDB), so
/// clients spread their load over the fleet.
fn endpoints(
    state: &State,
    dax: &Dax,
    local: SocketAddr,
    out: &mut Vec<u8>,
) -> Result<(), DaxError> {
    let node = state.config.dax_advertise.unwrap_or(local);
    let mut nodes = vec![node];
    if state.config.fleet.discovery == crate::config::Discovery::Fleet
        && let Some(fleet) = state.caches.fleet()
    {
        // Clients drop nodes of the other address family than the one they asked on.
        let members: Vec<SocketAddr> = fleet
            .members()
            .iter()
            .copied()
            .filter(|m| m.is_ipv4() == node.is_ipv4() && *m != node)
            .collect();
        nodes.extend(members);
    }
    out.push(response::SUCCESS);
    let mut e = Encoder::new(out);
    e.array(nodes.len() as u64)?;
    for (id, node) in nodes.iter().enumerate() {
        let address = match node.ip() {
            IpAddr::V4(ip) => ip.octets().to_vec(),
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(v4) => v4.octets().to_vec(),
                None => ip.octets().to_vec(),
            },
        };
        e.map(7)?;
        e.u8(0)?.u64(id as u64)?;
        e.u8(1)?.str(&node.ip().to_string())?;
        e.u8(2)?.bytes(&address)?;
        e.u8(3)?.u16(node.port())?;
        // A leader: clients send writes to leaders only.
        e.u8(4)?.u8(1)?;
        e.u8(5)?.str("local")?;
        e.u8(6)?.u64(dax.started)?;
    }
    Ok(())
}

fn define_attribute_list_id(
    dax: &Dax,
    items: &Items<'_>,
    out: &mut Vec<u8>,
) -> Result<(), DaxError> {
    // Bounded while it is read, not after: a list is at most the names of one item.
    let mut names = Vec::new();
    let mut bytes = 0;
    av::each(&mut items.decoder(0), |d| {
        let name = av::text(d)?;
        bytes += name.len();
        if names.len() >= item::MAX_LIST_NAMES || bytes > item::MAX_LIST_BYTES {
            return Err(DaxError::validation("too many attributes in one list"));
        }
        names.push(name);
        Ok(())
    })?;
    let id = dax.lists.id_of(&names)?;
    out.push(response::SUCCESS);
    Encoder::new(out).i64(id)?;
    Ok(())
}

fn define_attribute_list(dax: &Dax, items: &Items<'_>, out: &mut Vec<u8>) -> Result<(), DaxError> {
    let id = items.decoder(0).i64()?;
    let names = dax.lists.names(id)?;
    out.push(response::SUCCESS);
    let mut e = Encoder::new(out);
    e.array(names.len() as u64)?;
    for name in names.iter() {
        e.str(name)?;
    }
    Ok(())
}

async fn define_key_schema(
    state: &State,
    dax: &Dax,
    identity: Identity,
    items: &Items<'_>,
    out: &mut Vec<u8>,
) -> Result<(), DaxError> {
    let principal = identity?;
    let table = String::from_utf8(items.bytes(0)?)
        .map_err(|_| DaxError::malformed("a table name is not UTF-8"))?;
    valid_table_name(&table)?;
    if let Some(principal) = principal
        && !principal.may_use(&table)
    {
        return Err(DaxError::access_denied(format!(
            "User: {} is not authorized to use table {table}",
            principal.name
        )));
    }
    let shape = key_shape(state, dax, &table).await?;
    out.push(response::SUCCESS);
    let described = shape.described();
    let mut e = Encoder::new(out);
    e.map(described.len() as u64)?;
    for (name, kind) in described {
        e.str(name)?.str(kind)?;
    }
    Ok(())
}

/// DescribeTable calls for tables the proxy does not know yet, at once, from every DAX
/// connection together: names made up by the thousand queue here instead of each costing a
/// call on the proxy's credentials at once.
const LOOKUPS: usize = 4;

async fn key_shape(state: &State, dax: &Dax, table: &str) -> Result<KeyShape, DaxError> {
    let schema = match state.schemas.cached(table) {
        Some(schema) => Ok(schema),
        None => {
            let _turn = dax.lookups.acquire().await.expect("never closed");
            state.schemas.get(table).await
        }
    };
    match schema {
        Ok(schema) => KeyShape::of(&schema),
        // As DynamoDB's item operations word it (DescribeTable names the table; they do not).
        Err(SchemaError::NotFound(_)) => Err(DaxError::not_found("Requested resource not found")),
        Err(SchemaError::Invalid(why)) => Err(DaxError::validation(why)),
        Err(err) => Err(DaxError::internal(err.to_string())),
    }
}

/// Key shapes for translating one request.
struct Lookup<'a> {
    state: &'a State,
    dax: &'a Dax,
    dialect: Dialect,
    /// Who is calling (authentication on): a table is looked up only once the caller may use
    /// it, so a caller without a grant learns nothing of it and costs no DescribeTable.
    caller: Option<&'a Principal>,
    op: Operation,
}

impl Shapes for Lookup<'_> {
    fn lists(&self) -> &Lists {
        &self.dax.lists
    }

    fn dialect(&self) -> Dialect {
        self.dialect
    }

    async fn shape(&self, table: &str) -> Result<KeyShape, DaxError> {
        valid_table_name(table)?;
        if let Some(principal) = self.caller {
            let named = Named::Tables(vec![table.to_string()]);
            crate::auth::authorize(principal, self.op, Some(&named))
                .map_err(|err| DaxError::access_denied(err.to_string()))?;
        }
        key_shape(self.state, self.dax, table).await
    }
}

/// DynamoDB's own check of a table name, in the words its item operations use; a name it
/// refuses is never looked up.
fn valid_table_name(table: &str) -> Result<(), DaxError> {
    // A table's ARN names it too; DynamoDB (and the lookup) judge those.
    if table.starts_with("arn:") && table.len() <= 1024 {
        return Ok(());
    }
    let mut broken = Vec::new();
    if !table
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        broken.push("Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+");
    }
    if table.len() < 3 {
        broken.push("Member must have length greater than or equal to 3");
    }
    if table.len() > 255 {
        broken.push("Member must have length less than or equal to 255");
    }
    if broken.is_empty() {
        return Ok(());
    }
    let shown: String = table.chars().take(300).collect();
    let each: Vec<String> = broken
        .iter()
        .map(|why| format!("Value '{shown}' at 'tableName' failed to satisfy constraint: {why}"))
        .collect();
    let count = match each.len() {
        1 => "1 validation error detected".to_string(),
        n => format!("{n} validation errors detected"),
    };
    Err(DaxError::validation(format!(
        "{count}: {}",
        each.join("; ")
    )))
}

/// A data method: translated, answered by the request path, written back.
#[allow(clippy::too_many_arguments)]
async fn data(
    state: &State,
    dax: &Dax,
    identity: Identity,
    dialect: Dialect,
    method: Method,
    items: &Items<'_>,
    started: Instant,
    out: &mut Vec<u8>,
) -> Result<(), DaxError> {
    let fail = |op: Operation, err: DaxError| {
        state.metrics.record_request(
            op,
            CacheStatus::Error,
            Protocol::Dax,
            started.elapsed().as_secs_f64(),
        );
        err
    };
    let op = method.operation();
    let principal = identity.map_err(|e| fail(op, e))?;
    let lookup = Lookup {
        state,
        dax,
        dialect,
        caller: principal.as_deref(),
        op,
    };
    let translated = request::translate(&lookup, method, items)
        .await
        .map_err(|e| fail(op, e))?;
    let request::Translated {
        op,
        body,
        reply,
        capacity,
    } = translated;
    let ctx = Context::over(Protocol::Dax, op, started);
    let inbound = Inbound {
        op,
        api: op.api(),
        target: op.target(),
        body: Bytes::from(body),
        caller: principal,
    };
    let answered = proxy::handle(state, &ctx, inbound).await;
    let status = answered.status.as_u16();
    if status != 200 {
        let mut err = DaxError::from_dynamo(status, &answered.body);
        if err.code == "TransactionCanceledException" {
            err.reasons = Some(response::cancellation_reasons(
                &dax.lists,
                &reply,
                &answered.body,
            )?);
        }
        return Err(err);
    }
    response::encode(&dax.lists, &reply, capacity, &answered.body, out)
}

/// Reads DAX requests from arbitrary bytes, as a connection would, and decodes every one that
/// needs no upstream: for fuzzing the frame and CBOR decoders, and for checking what recorded
/// client sessions decode to. Never panics. Each data request gives its operation and the
/// DynamoDB JSON it stands for (against one made-up table with a string hash key `pk` and a
/// numeric range key `sk`), or why not.
pub fn decode_session(input: &[u8]) -> Vec<Result<(&'static str, serde_json::Value), String>> {
    let mut decoded = Vec::new();
    translate_session(input, |op, body| {
        decoded.push(body.map(|body| {
            let json = serde_json::from_slice(&body).expect("the body is JSON");
            (op, json)
        }));
    });
    decoded
}

/// As [`decode_session`], but each data request is given to `each` as the body that would go
/// upstream, bytes and all, with nothing else built from it: what a connection does before
/// the request path, for measuring and fuzzing what decoding costs.
pub fn translate_session(
    input: &[u8],
    mut each: impl FnMut(&'static str, Result<Vec<u8>, String>),
) {
    let dax = Dax::default();
    let mut out = Vec::new();
    let mut rest = match frame::preamble(input) {
        Ok(Some((len, _))) => &input[len..],
        _ => input,
    };
    while let Ok(Some(frame)) = frame::split(rest) {
        let request = &rest[..frame.len];
        let items = Items::new(request, &frame);
        out.clear();
        match frame.method {
            Method::DefineAttributeListId => {
                let _ = define_attribute_list_id(&dax, &items, &mut out);
            }
            Method::DefineAttributeList => {
                let _ = define_attribute_list(&dax, &items, &mut out);
            }
            Method::AuthorizeConnection | Method::Endpoints | Method::DefineKeySchema => {}
            method => {
                let op = method.operation().name();
                let body = translate_offline(&dax.lists, method, &items).map(|t| t.body);
                each(op, body.map_err(|e| e.to_string()));
            }
        }
        rest = &rest[frame.len..];
    }
}

/// The id a fresh registry gives the list `names`.
pub(crate) fn list_id_for(names: &[String]) -> i64 {
    Lists::default().id_of(names).unwrap_or(item::EMPTY_LIST)
}

/// Translates a data request against the made-up table, without an upstream.
fn translate_offline(
    lists: &Lists,
    method: Method,
    items: &Items<'_>,
) -> Result<request::Translated, DaxError> {
    struct Fixed<'a> {
        lists: &'a Lists,
        shape: KeyShape,
    }
    impl Shapes for Fixed<'_> {
        fn lists(&self) -> &Lists {
            self.lists
        }
        async fn shape(&self, _table: &str) -> Result<KeyShape, DaxError> {
            Ok(self.shape.clone())
        }
    }
    let fixed = Fixed {
        lists,
        shape: KeyShape::for_fuzzing(),
    };
    let translating = std::pin::pin!(request::translate(&fixed, method, items));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match translating.poll(&mut cx) {
        std::task::Poll::Ready(result) => result,
        std::task::Poll::Pending => Err(DaxError::internal("translation waited")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Principals;
    use crate::config::{AuthMode, Config};

    const PRINCIPALS: &str = "[[principal]]\nname = \"app\"\naccess_key_id = \"AKID\"\n\
        secret_access_key = \"s\"\ntables = [\"*\"]\noperations = [\"read\"]\n";

    #[test]
    fn an_authorization_holds_for_five_minutes_as_on_dax() {
        let dir = std::env::temp_dir().join(format!("dax-ttl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("principals.toml");
        std::fs::write(&file, PRINCIPALS).unwrap();
        let mut config = Config {
            upstream: Some("http://127.0.0.1:9".into()),
            ..Config::default()
        };
        config.auth.mode = AuthMode::Sigv4;
        config.auth.credentials_file = Some(file);
        let credentials = aws_credential_types::provider::SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new("a", "b", None, None, "test"),
        );
        let state = State::new(config, "us-east-1", credentials).unwrap();
        let principal = Principals::parse(PRINCIPALS, &dir).unwrap().by_key["AKID"].clone();
        let signed = |ago: Duration| Caller {
            principal: Some(Authenticated {
                access_key: "AKID".into(),
                principal: principal.clone(),
                at: Instant::now() - ago,
            }),
            ..Caller::default()
        };
        assert!(signed(Duration::from_secs(299)).identity(&state).is_ok());
        let expired = signed(AUTH_TTL + Duration::from_secs(1))
            .identity(&state)
            .unwrap_err();
        assert_eq!(expired.code, "ExpiredTokenException");
        // The code path the clients re-authenticate on.
        let mut out = Vec::new();
        expired.encode(&mut out);
        assert_eq!(&out[..5], [0x84, 0x04, 0x17, 0x18, 0x1F]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_connection_gives_back_a_large_request_s_memory() {
        let total = AtomicUsize::new(0);
        let mut inbox = Inbox {
            buf: BytesMut::with_capacity(READ_CHUNK),
            reader: frame::Reader::default(),
            large: Share {
                total: &total,
                limit: usize::MAX,
                held: 0,
            },
        };
        // A 4 MB request arrived, and the start of the next one behind it.
        inbox.buf.extend_from_slice(&vec![0u8; 4 << 20]);
        assert!(inbox.large.hold(inbox.buf.len() - KEPT_CAPACITY));
        let request = inbox.buf.split_to((4 << 20) - 10).freeze();
        drop(request);
        inbox.shrink();
        assert!(
            inbox.buf.capacity() <= KEPT_CAPACITY,
            "{}",
            inbox.buf.capacity()
        );
        assert_eq!(&inbox.buf[..], &[0u8; 10]);
        assert_eq!(
            total.load(Ordering::Relaxed),
            0,
            "its share of the bound is back"
        );
    }
}
