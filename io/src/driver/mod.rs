//! The mio event loop around the sans-IO core.
//!
//! Every socket event becomes one `Input`; after each input the core's outputs are drained, transmits are queued
//! on their connections, and each touched connection is flushed once (so the transmits of one input coalesce into
//! one vectored write). Whatever the flushes learn (blocked, writable again, dead) goes back to the core as further
//! inputs until nothing new happens.

mod accept;
mod clock;
pub use clock::wall_clock_now;
mod commit;
mod conn;
mod control;
mod core_api;
pub use core_api::{Core, CORE_TOKEN_BASE};
mod events;
mod flush;
mod outbox;
mod park;
mod read;
mod slice;
mod snapshot;
mod stats;
mod timers;
mod transport;
mod uring;
mod ws;

use crate::auth::{AuthSource, Verifier};
use crate::config::{IoDriver, Listener, Settings};
use crate::http::{Health, Shared};
use crate::log::Logger;
use crate::metrics::{ListenerLabel, Metrics};
use crate::storage::Storage;
use accept::{bind_one, choose_io};
use clock::Clock;
use conn::{Conn, State};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use mqtt_core::broker::{
    Authenticator, Broker, ConnectionId, FrozenImage, Gauges, Input, ListenerId, Output, PartialInput, Stats,
};
use mqtt_core::persist::Image;
use mqtt_core::time::Time;
use park::InputBudget;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timers::Backoff;
use transport::{Scratch, Transport, TransportConfig};

/// One read buffer for all connections: the core copies what it needs out of each chunk.
const READ_BUF: usize = 64 * 1024;
/// How long accepting pauses when the process is out of file descriptors (closing connections will free some).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a closing connection may take to drain its pending output before it is dropped.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the peer's FIN after ours before dropping the socket.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// How long a graceful shutdown waits for every connection to flush.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait before retrying a failed write to the data directory.
const STORAGE_RETRY: Duration = Duration::from_secs(1);

const SIGNAL_TOKEN: Token = Token(usize::MAX);
/// Rung by the password verifier threads when a verdict is ready (connection tokens start at 1).
const WAKER_TOKEN: Token = Token(0);
/// Listener `i` has token `LISTENER_BASE - i`; connection tokens count up from 1, so the two never meet.
const LISTENER_BASE: usize = usize::MAX - 1;

/// Why the driver could not start or had to stop.
#[derive(Debug)]
pub enum DriverError {
    /// The poller could not be created or polled.
    Poll(io::Error),
    /// The core's own sockets could not be set up (a cluster node's peer listener), or its disk failed.
    Core(String),
    /// A listener address could not be bound (in use, not local, no permission).
    Bind { address: SocketAddr, source: io::Error },
    /// The signal handlers could not be installed.
    Signals(io::Error),
    /// A TLS listener's certificate or key could not be loaded.
    Tls(crate::tls::TlsError),
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverError::Poll(e) => write!(f, "event loop failed: {e}"),
            DriverError::Bind { address, source } => {
                write!(f, "cannot listen on {address}: {source}")
            }
            DriverError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            DriverError::Tls(e) => write!(f, "{e}"),
            DriverError::Core(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DriverError {}

struct BoundListener {
    socket: TcpListener,
    local: SocketAddr,
    /// How its connections are wrapped (TLS, WebSocket).
    transport: TransportConfig,
}

/// How bytes move between the sockets and the loop: the one thing in which the two drivers differ.
enum Io {
    /// Readiness from epoll (mio), then one `read`/`writev` system call per socket.
    Epoll,
    /// Completions from io_uring (see `uring`).
    Uring(Box<uring::Ring>),
}

/// The event loop and everything it owns.
pub struct Driver<C: Core = Broker> {
    /// Under io_uring it still carries the waker, the signal pipe and the core's own sockets (see `uring`).
    poll: Poll,
    io: Io,
    broker: C,
    clock: Clock,
    /// The monotonic clock as read once per loop turn, right after the wait for I/O returns: every decision by
    /// time in the driver (close deadlines, accept back-off, storage retry, shutdown, the wait's timeout) uses it,
    /// so one turn sees one time and a deadline cannot pass halfway through it. Only elapsed-time metrics read the
    /// clock themselves.
    now: Instant,
    listeners: Vec<BoundListener>,
    /// The listeners as configured: where SIGHUP reloads the TLS certificates and keys from.
    listener_settings: Vec<Listener>,
    signals: Signals,
    logger: Option<&'static Logger>,
    /// Where the password and ACL files are reloaded from on SIGHUP.
    auth_source: Option<AuthSource>,
    /// The threads that verify passwords off the event loop, and their verdicts.
    verifier: Option<Verifier>,
    /// Boxed: the map's spare capacity then costs a pointer per slot, not a whole connection.
    conns: HashMap<ConnectionId, Box<Conn>>,
    next_conn: u64,
    read_buf: Vec<u8>,
    /// Decrypted and unframed bytes of the current read.
    scratch: Scratch,
    /// Connections with output queued since they were last flushed.
    dirty: Vec<ConnectionId>,
    /// Connections given output (or closed) since `settle_read` last looked: the only ones that can have reached
    /// its flush-now threshold. Looking at every dirty connection after every read instead cost a fifth of the
    /// broker's time with 2,000 clients (most of them dirty with a PUBACK each turn).
    touched: Vec<ConnectionId>,
    /// Connections whose sockets may hold unread bytes, read one buffer each per turn in this order (see
    /// `read_turn`).
    readable: VecDeque<ConnectionId>,
    /// Connections in `Flushing` or `Draining`, whose deadlines the loop watches.
    closing: HashSet<ConnectionId>,
    /// Connections not being read (see `park`), and the budgets that decide it.
    parked: HashSet<ConnectionId>,
    input: InputBudget,
    max_outbuf: usize,
    /// Accepting pauses after a failed accept (out of file descriptors).
    accept_backoff: Backoff,
    /// Whether the current episode of fd exhaustion was logged already.
    fd_exhaustion_logged: bool,
    /// Set by SIGINT/SIGTERM: the instant the shutdown gives up waiting.
    shutdown_deadline: Option<Instant>,
    /// Where the core's records go; `None` runs from memory only.
    storage: Option<Storage>,
    /// When a failed commit (data directory not writable) is retried.
    storage_retry: Backoff,
    /// The thread writing a snapshot, if one is.
    snapshots: snapshot::SnapshotWriter,
    /// Rung by other threads (verifier, HTTP) that have something for the loop; created when first needed (a
    /// poller has at most one).
    waker: Option<Arc<mio::Waker>>,
    /// The optional HTTP listener's metrics and its line to the loop (see `crate::http`).
    metrics: Option<Metrics>,
    http: Option<Arc<Shared>>,
    /// What the loop did (see `stats`).
    stats: stats::LoopStats,
}

impl<C: Core> Driver<C> {
    /// Bind every listener and install the signal handlers. Nothing is accepted until [`Driver::run`].
    pub fn bind(settings: &Settings, mut broker: C, logger: Option<&'static Logger>) -> Result<Driver<C>, DriverError> {
        let poll = Poll::new().map_err(DriverError::Poll)?;
        broker
            .attach(poll.registry())
            .map_err(|e| DriverError::Core(e.to_string()))?;
        let tls = crate::tls::load_listeners(&settings.listeners).map_err(DriverError::Tls)?;
        let mut listeners = settings
            .listeners
            .iter()
            .zip(tls)
            .map(|(listener, tls)| {
                let transport = TransportConfig {
                    tls,
                    ws_path: listener.ws_path.as_deref().map(Arc::from),
                    identity_as_username: listener.tls.as_ref().is_some_and(|t| t.use_identity_as_username),
                };
                bind_one(listener, transport)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let io = choose_io(settings.io, settings.io_coalesce, &listeners, &poll)?;
        if let Io::Epoll = io {
            for (i, listener) in listeners.iter_mut().enumerate() {
                poll.registry()
                    .register(&mut listener.socket, Token(LISTENER_BASE - i), Interest::READABLE)
                    .map_err(|source| DriverError::Bind {
                        address: listener.local,
                        source,
                    })?;
            }
        }
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(DriverError::Signals)?;
        poll.registry()
            .register(&mut signals, SIGNAL_TOKEN, Interest::READABLE)
            .map_err(DriverError::Signals)?;
        let clock = Clock::start();
        Ok(Driver {
            poll,
            io,
            broker,
            clock,
            now: clock.instant(),
            listeners,
            listener_settings: settings.listeners.clone(),
            signals,
            logger,
            auth_source: None,
            verifier: None,
            conns: HashMap::new(),
            next_conn: 1,
            read_buf: vec![0; READ_BUF],
            scratch: Scratch::default(),
            dirty: Vec::new(),
            touched: Vec::new(),
            readable: VecDeque::new(),
            closing: HashSet::new(),
            parked: HashSet::new(),
            input: InputBudget::new(settings.limits.max_partial_input_bytes),
            max_outbuf: settings.limits.max_outbuf_bytes,
            accept_backoff: Backoff::new(ACCEPT_BACKOFF),
            fd_exhaustion_logged: false,
            shutdown_deadline: None,
            storage: None,
            storage_retry: Backoff::new(STORAGE_RETRY),
            snapshots: snapshot::SnapshotWriter::default(),
            waker: None,
            metrics: None,
            http: None,
            stats: stats::LoopStats::default(),
        })
    }

    /// Keep the core's records in `storage`.
    pub fn with_storage(mut self, storage: Storage) -> Driver<C> {
        self.storage = Some(storage);
        self
    }

    /// Reload the authenticator from `source` on SIGHUP (in addition to reopening the log file).
    pub fn reload_auth_from(mut self, source: AuthSource) -> Self {
        self.auth_source = Some(source);
        self
    }

    /// Deliver the verdicts of `verifier`'s threads (whose queue the authenticator was given) to the core; a
    /// reloaded authenticator gets the same queue.
    pub fn with_verifier(mut self, verifier: Verifier) -> Result<Self, DriverError> {
        verifier.set_waker(self.waker()?);
        self.verifier = Some(verifier);
        Ok(self)
    }

    fn waker(&mut self) -> Result<Arc<mio::Waker>, DriverError> {
        if let Some(waker) = &self.waker {
            return Ok(Arc::clone(waker));
        }
        let waker = Arc::new(mio::Waker::new(self.poll.registry(), WAKER_TOKEN).map_err(DriverError::Poll)?);
        self.waker = Some(Arc::clone(&waker));
        Ok(waker)
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.local).collect()
    }

    /// Run until SIGINT/SIGTERM and a graceful shutdown.
    pub fn run(mut self) -> Result<(), DriverError> {
        let result = self.run_loop();
        if let Io::Uring(ring) = &self.io {
            ring.add_stats(&mut self.stats);
        }
        let driver = if matches!(self.io, Io::Epoll) {
            "epoll"
        } else {
            "io_uring"
        };
        self.stats.report(driver);
        result
    }

    fn run_loop(&mut self) -> Result<(), DriverError> {
        slice::request_short_slices();
        let mut events = Events::with_capacity(1024);
        // Time passed since `bind`; the first wait's timeout is measured from here.
        self.now = self.clock.instant();
        loop {
            // A finisher that completed its packet, or a budget that drained, unparks connections whose input
            // already waits in the kernel: no new event would report it, so review before choosing to sleep (a
            // burst of large PUBLISHes otherwise stalled until the next timer, the 10 s `$SYS` tick).
            self.review_parked();
            // Unread input waits for nothing: poll only collects new events then.
            // Measured from this turn's clock read: the wait may end late by the time the turn itself took.
            let timeout = if self.readable.is_empty() {
                timers::wait_timeout(self.now, self.deadlines())
            } else {
                Some(Duration::ZERO)
            };
            self.stats.turns += 1;
            self.stats.zero_waits += u64::from(timeout == Some(Duration::ZERO));
            match &mut self.io {
                Io::Epoll => {
                    let polled = self.poll.poll(&mut events, timeout);
                    self.now = self.clock.instant();
                    match polled {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(DriverError::Poll(e)),
                    }
                    if self.dispatch(&events) {
                        return Ok(());
                    }
                }
                Io::Uring(ring) => {
                    let completions = ring
                        .wait(timeout, self.clock, &mut self.now, &mut self.conns)
                        .map_err(DriverError::Poll)?;
                    for completion in completions {
                        match completion {
                            uring::Completion::Acceptable(i) => self.accept(i),
                            uring::Completion::Readable(id) => self.mark_readable(id),
                            uring::Completion::Flushable(id) => self.mark_dirty(id),
                            uring::Completion::Poller => {
                                match self.poll.poll(&mut events, Some(Duration::ZERO)) {
                                    Ok(()) => {}
                                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                                    Err(e) => return Err(DriverError::Poll(e)),
                                }
                                if self.dispatch(&events) {
                                    return Ok(());
                                }
                            }
                        }
                    }
                    self.flush_dirty_and_settle();
                }
            }
            self.after_events()?;
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() {
                    self.finish_snapshot(true);
                    log::info!("shutdown complete");
                    return Ok(());
                }
                if self.now >= deadline {
                    log::warn!(
                        "shutdown: dropping {} connection(s) that did not close in time",
                        self.conns.len()
                    );
                    self.finish_snapshot(true);
                    return Ok(());
                }
            }
        }
    }

    /// Handle the poller's events; true when the process should exit at once (a second stop signal).
    fn dispatch(&mut self, events: &Events) -> bool {
        for event in events.iter() {
            match event.token() {
                // Verdicts are collected below, after every wake-up.
                WAKER_TOKEN => {}
                SIGNAL_TOKEN => {
                    if self.handle_signals() {
                        log::warn!("second stop signal: exiting without waiting for connections");
                        return true;
                    }
                }
                Token(t) if t > LISTENER_BASE - self.listeners.len() && t <= LISTENER_BASE => {
                    self.accept(LISTENER_BASE - t);
                }
                token if self.broker.owns(token) => {
                    let now = self.clock.time_of(self.now);
                    self.broker.io_event(now, event);
                    self.settle();
                }
                Token(t) => {
                    let id = ConnectionId(t as u64);
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        self.mark_readable(id);
                    }
                    if event.is_writable() {
                        self.mark_dirty(id);
                        self.flush_dirty_and_settle();
                    }
                }
            }
        }
        false
    }

    /// The rest of a loop turn, after the I/O events: reads, verdicts, timers, the core's turn, the group commit.
    fn after_events(&mut self) -> Result<(), DriverError> {
        self.read_turn();
        self.deliver_verdicts();
        self.on_timers();
        let now = self.clock.time_of(self.now);
        self.broker.end_turn(now);
        self.settle();
        if let Some(failure) = self.broker.failure() {
            return Err(DriverError::Core(failure));
        }
        self.commit_and_flush();
        self.answer_http();
        Ok(())
    }

    /// Everything the loop must wake for: the core's timer and its own sockets', the accept back-off, the earliest
    /// closing deadline, the shutdown deadline, the storage's sync deadline and its retry.
    fn deadlines(&self) -> [Option<Instant>; 7] {
        let core = self.broker.poll_timeout().map(|t| self.clock.instant_of(t, self.now));
        let closing = self
            .closing
            .iter()
            .filter_map(|id| self.conns.get(id)?.deadline())
            .min();
        let storage = self.storage.as_ref().and_then(Storage::sync_deadline);
        [
            core,
            self.broker.io_deadline(),
            self.accept_backoff.next_deadline(),
            closing,
            self.shutdown_deadline,
            storage,
            self.storage_retry.next_deadline(),
        ]
    }

    fn on_timers(&mut self) {
        let now = self.now;
        if let Some(due) = self.broker.poll_timeout() {
            if due <= self.clock.time_of(now) {
                self.feed(Input::Tick);
            }
        }
        if self.accept_backoff.expire(now) {
            // Edge-triggered listeners report no new event for connections that queued up during the pause.
            for i in 0..self.listeners.len() {
                self.accept(i);
            }
        }
        let expired: Vec<ConnectionId> = self
            .closing
            .iter()
            .copied()
            .filter(|id| !matches!(self.conns.get(id).and_then(|conn| conn.deadline()), Some(d) if d > now))
            .collect();
        for id in expired {
            if let Some(conn) = self.conns.get(&id) {
                log::debug!(
                    "conn {} ({}): close timed out with {} bytes unsent",
                    id.0,
                    conn.peer(),
                    conn.pending_bytes()
                );
            }
            self.drop_conn(id);
        }
    }

    /// Feeds the verifier's finished verdicts to the core. A verdict for a connection that is gone meanwhile is
    /// ignored by the core.
    fn deliver_verdicts(&mut self) {
        let Some(verifier) = &self.verifier else {
            return;
        };
        let verdicts: Vec<_> = std::iter::from_fn(|| verifier.try_verdict()).collect();
        for verdict in verdicts {
            self.feed(Input::AuthDecided {
                conn: verdict.conn,
                decision: verdict.decision,
            });
        }
    }

    /// Feed one input and settle its consequences.
    fn feed(&mut self, input: Input<'_>) {
        let now = self.clock.time_of(self.now);
        self.broker.handle_input(now, input);
        self.settle();
    }

    /// Drain the core's outputs, flush what they queued, and feed back what the flushes learned, until quiet.
    fn settle(&mut self) {
        loop {
            while let Some(output) = self.broker.poll_output() {
                self.apply(output);
            }
            if self.storage.as_ref().is_some_and(Storage::holds_sends) {
                // Sends wait for the group commit at the end of this loop iteration (`commit_and_flush`).
                return;
            }
            let follow_ups = self.flush_dirty();
            if follow_ups.is_empty() {
                return;
            }
            let now = self.clock.time_of(self.now);
            for input in follow_ups {
                self.broker.handle_input(now, input);
            }
        }
    }

    /// `settle` after one read of the read turn, but leaving small writes for the end of the loop turn (the
    /// `settle` in `after_events`): a connection then gets one write with everything the turn's reads produced for
    /// it, instead of one per read (a subscriber fed by a publisher's read and then by its own PUBACKs' read got
    /// two). A connection with `FLUSH_NOW_BYTES` queued is written at once, so the core learns of a full socket
    /// (WriteBlocked) as early as before and keeps further output in its own bounded buffer.
    fn settle_read(&mut self) {
        loop {
            while let Some(output) = self.broker.poll_output() {
                self.apply(output);
            }
            if self.storage.as_ref().is_some_and(Storage::holds_sends) {
                return;
            }
            // Below the output bound by a margin too, so that unwritten bytes of this turn never hold a connection
            // back (`park`) that would not have been otherwise.
            let (conns, flush_now) = (&self.conns, FLUSH_NOW_BYTES.min(self.max_outbuf / 2));
            let mut now: Vec<ConnectionId> = self
                .touched
                .drain(..)
                .filter(|id| {
                    conns
                        .get(id)
                        .is_some_and(|c| c.dirty && (c.state != State::Open || c.pending_bytes() >= flush_now))
                })
                .collect();
            if now.is_empty() {
                return;
            }
            now.sort_unstable();
            now.dedup();
            self.dirty.retain(|id| !now.contains(id));
            let follow_ups = self.flush(now);
            if follow_ups.is_empty() {
                return;
            }
            let now = self.clock.time_of(self.now);
            for input in follow_ups {
                self.broker.handle_input(now, input);
            }
        }
    }

    fn flush_dirty_and_settle(&mut self) {
        if self.storage.as_ref().is_some_and(Storage::holds_sends) {
            return;
        }
        let follow_ups = self.flush_dirty();
        if !follow_ups.is_empty() {
            let now = self.clock.time_of(self.now);
            for input in follow_ups {
                self.broker.handle_input(now, input);
            }
            self.settle();
        }
    }

    fn apply(&mut self, output: Output) {
        match output {
            Output::Transmit { conn: id, data } => match self.conns.get_mut(&id) {
                Some(conn) if conn.state == State::Open => {
                    conn.push(data);
                    self.mark_dirty(id);
                }
                // Output after Close, or for a connection already gone: nobody will read it.
                _ => log::trace!("conn {}: dropping {} bytes for a closed connection", id.0, data.len()),
            },
            Output::Close { conn: id } => {
                let deadline = timers::close_deadline(self.now, CLOSE_FLUSH_TIMEOUT, self.shutdown_deadline);
                self.start_close(id, deadline);
            }
            Output::Persist(record) => {
                if let Some(storage) = self.storage.as_mut() {
                    storage.append(&record);
                }
            }
            Output::Event(event) => {
                if let Some(metrics) = &mut self.metrics {
                    metrics.on_event(&event);
                }
                events::log_event(&event);
            }
        }
    }

    fn mark_dirty(&mut self, id: ConnectionId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(id);
            }
            self.touched.push(id);
        }
    }

    /// The transport ended the connection (peer's close frame or close_notify, refused upgrade, TLS failure):
    /// write what it queued (a close frame, an HTTP error, an alert) and close; the core forgets the connection now
    /// (its later `Closed` from `drop_conn` is ignored).
    fn end_transport(&mut self, id: ConnectionId) {
        let deadline = timers::close_deadline(self.now, CLOSE_FLUSH_TIMEOUT, self.shutdown_deadline);
        self.start_close(id, deadline);
        self.feed(Input::Closed { conn: id });
    }

    fn start_close(&mut self, id: ConnectionId, deadline: Instant) {
        if let Some(conn) = self.conns.get_mut(&id) {
            if conn.state == State::Open {
                conn.close_transport();
                self.unpark_closing(id);
                let Some(conn) = self.conns.get_mut(&id) else {
                    return;
                };
                conn.state = State::Flushing { deadline };
                self.closing.insert(id);
                self.mark_dirty(id);
            }
        }
    }

    /// Forget a connection and tell the core. Sent for every connection exactly once, also after the core's own
    /// `Close`, so the core never keeps state for a socket that no longer exists.
    fn drop_conn(&mut self, id: ConnectionId) {
        if self.remove(id) {
            self.feed(Input::Closed { conn: id });
        }
    }

    fn remove(&mut self, id: ConnectionId) -> bool {
        self.closing.remove(&id);
        if let Some(metrics) = &mut self.metrics {
            metrics.on_close(id);
        }
        match self.conns.remove(&id) {
            Some(mut conn) => {
                self.forget_input(id, conn.held_input);
                match &mut self.io {
                    Io::Epoll => {
                        let _ = self.poll.registry().deregister(&mut conn.stream);
                    }
                    Io::Uring(ring) => ring.deregister(id),
                }
                true
            }
            None => false,
        }
    }
}

/// Queued output at which a connection is written right after the read that produced it rather than at the end of
/// the loop turn (see `settle_read`): a socket buffer's worth, past which batching saves nothing.
const FLUSH_NOW_BYTES: usize = 64 * 1024;

fn token(id: ConnectionId) -> Token {
    // Connection ids count up from 1 and stay far below the listener and signal tokens on 64-bit targets.
    Token(id.0 as usize)
}

fn set_interest(poll: &Poll, id: ConnectionId, conn: &mut Conn, interest: Interest) {
    if let Err(e) = poll.registry().reregister(&mut conn.stream, token(id), interest) {
        // The socket is unusable if the poller rejects it; a later read or write will report that.
        log::debug!("conn {}: reregister failed: {e}", id.0);
    }
}

#[cfg(test)]
mod coalesce_tests;
#[cfg(test)]
mod tests;
