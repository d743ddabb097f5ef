//! The broker state machine.
//!
//! One way in, one way out (in the manner of str0m): the driver calls [`Broker::handle_input`] with the current
//! time and one [`Input`], then drains [`Broker::poll_output`] until it returns `None`, then sleeps until
//! [`Broker::poll_timeout`] (or until the next input) and calls `handle_input(now, Input::Tick)` when it expires.
//! The broker never reads a clock, touches a socket or draws randomness of its own; the same inputs always give the
//! same outputs.
//!
//! Here: the broker's state, the one way in and out, and its counts. The rest of the machine is split by job, each
//! module an `impl Broker` of its own: `interface` (the inputs, outputs and events), `receive` (bytes decoded and
//! dispatched by phase), `outgoing` (packets out, connections ended), `deadlines` (timers firing), and one module
//! per protocol flow (`connect`, `publish`, `subscribe`, `flow`, `will`, `session`, `durable`, ...).

mod access;
mod auth;
mod config;
mod connect;
mod connection;
mod connections;
mod deadlines;
mod durable;
mod flow;
mod footprint;
mod frozen;
mod held;
mod identity;
#[cfg(test)]
mod idle_footprint;
mod interface;
mod message;
mod outbuf;
mod outgoing;
mod partial;
mod planted;
mod preconnect;
mod publish;
mod quota;
mod rate;
mod receive;
mod retained_stream;
mod session;
mod shared_publish;
mod stats;
mod subscribe;
mod sys;
mod throttle;
mod timer;
mod will;

pub use auth::{AllowAll, AuthDecision, Authenticator, ClientIdentity, ConnectInfo};
pub use config::Config;
pub use config::PlantedBug;
pub use durable::RetainedRecovery;
pub use footprint::Footprint;
pub use frozen::FrozenImage;
pub use interface::{ConnectionId, Event, Input, ListenerId, Output};
pub use message::{Delivery, Message};
pub use partial::PartialInput;
pub use quota::AccountingMismatch;
pub use session::SessionKey;
pub use stats::{DropCause, Gauges, Stats};

use crate::hash::{HashKeys, KeyedHashMap};
use crate::time::Time;
use crate::topic::{RetainedTree, SubscriptionTree, TopicMatch};
use connection::Phase;
use deadlines::keep_alive_grace;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use session::Session;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use timer::{Timer, Timers};

/// How many bytes a client may send after its CONNECT while the authenticator's verdict is pending; they are held
/// undecoded until then. Beyond this the connection is closed, so a flood costs bounded memory.
pub const MAX_BUFFERED_WHILE_VERIFYING: usize = 64 * 1024;

/// How far replies to a client's own packets may take its output buffer past `max_outbuf_bytes` before the client
/// is disconnected for not reading them (see `close_if_replies_unread`): room for thousands of pipelined replies.
/// The driver stops reading a client at `max_outbuf_bytes` of unsent bytes (its own and `unsent_output`), so this
/// is only reached within one read's worth of packets, or by a driver that does not hold clients back.
pub const REPLY_SLACK: usize = 64 * 1024;

/// What happens to a session's will when its connection ends [MQTT-3.1.2-8], [MQTT-3.1.2-10].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WillPolicy {
    /// Normal DISCONNECT: the will is deleted.
    Discard,
    /// Any other end: the will is published, after its delay.
    Publish,
}

/// The broker.
pub struct Broker {
    config: Config,
    rng: ChaCha8Rng,
    now: Time,
    started_at: Option<Time>,
    authenticator: Box<dyn Authenticator>,
    /// Boxed values: a B-tree node is then a few pointers wide, and its empty slots cost 8 bytes each instead of a
    /// whole connection or session (memory per idle connection).
    connections: connections::Connections,
    sessions: BTreeMap<SessionKey, Box<Session>>,
    sessions_by_client_id: KeyedHashMap<Arc<str>, SessionKey>,
    next_session_key: u64,
    /// Last message id handed out (ids are never reused, also across restarts).
    next_message_id: u64,
    /// The message whose `Store` record was written last, so fan-out writes each message once.
    last_stored_message: Option<u64>,
    subscriptions: SubscriptionTree<SessionKey>,
    retained: RetainedTree<Arc<Message>>,
    /// Retained messages still to be sent for wide subscriptions, per session (see `retained_stream`).
    retained_streams: BTreeMap<SessionKey, Vec<retained_stream::RetainedStream>>,
    timers: Timers,
    /// Topics whose retained message recovery (`retained_recovery`) gave a capped expiry deadline: `restore` records
    /// them again (see `record_capped`).
    capped_retained: BTreeSet<String>,
    outputs: VecDeque<Output>,
    /// Connections with bytes in their `outbuf`, in the order they first got some, and handed out in that order:
    /// a fan-out's subscribers before the PUBACK to its publisher (sent after routing), as Mosquitto writes them, so
    /// the deliveries leave first and the publisher's wake-up does not delay them.
    dirty: VecDeque<ConnectionId>,
    /// Reused buffer for topic matches, so routing does not allocate per message.
    match_buffer: Vec<TopicMatch<SessionKey>>,
    /// Reused buffer for the deliveries of one message.
    plan_buffer: Vec<(SessionKey, Delivery)>,
    /// Reused buffer for what one pump of a session's queue sends, so a PUBACK that frees one slot of a
    /// subscriber's window does not allocate (see `publish::pump_once`).
    pump_buffer: Vec<publish::Pumped>,
    /// PUBLISHes encoded once for the subscribers that get identical bytes (see `shared_publish`).
    shared_publishes: shared_publish::SharedPublishes,
    /// Connections whose held PUBLISHes may now fit, retried at the end of the current input (see `flow`).
    woken: BTreeSet<ConnectionId>,
    /// Durable storage does not take writes (see `Input::StorageWritable`).
    storage_full: bool,
    /// Connections past CONNACK, for the connection limit.
    connected_clients: usize,
    /// Bytes buffered from connections not yet past CONNACK (see `preconnect`).
    preconnect_bytes: usize,
    /// Recent authentication failures per IP address, for slowing down guessing.
    auth_throttle: throttle::AuthThrottle,
    /// Connections and connect rate per address, queued bytes (see `quota`).
    quotas: quota::Quotas,
    stats: Stats,
}

impl Broker {
    /// `seed` drives everything the broker chooses at random (assigned client identifiers).
    pub fn new(config: Config, seed: u64) -> Broker {
        Broker::with_authenticator(config, seed, Box::new(AllowAll))
    }

    pub fn with_authenticator(config: Config, seed: u64, authenticator: Box<dyn Authenticator>) -> Broker {
        // The hash keys come from their own stream of the seed, so the identifier stream is what it always was.
        let mut key_rng = ChaCha8Rng::seed_from_u64(seed);
        key_rng.set_stream(1);
        let hash_keys = HashKeys::draw(&mut key_rng);
        let timers = Timers::new(config.timer_compaction_min);
        Broker {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: Time::ZERO,
            started_at: None,
            authenticator,
            connections: connections::Connections::default(),
            sessions: BTreeMap::new(),
            sessions_by_client_id: KeyedHashMap::with_hasher(hash_keys),
            next_session_key: 1,
            next_message_id: 0,
            last_stored_message: None,
            subscriptions: SubscriptionTree::new(hash_keys),
            retained: RetainedTree::new(),
            retained_streams: BTreeMap::new(),
            timers,
            capped_retained: BTreeSet::new(),
            outputs: VecDeque::new(),
            dirty: VecDeque::new(),
            match_buffer: Vec::new(),
            plan_buffer: Vec::new(),
            pump_buffer: Vec::new(),
            shared_publishes: shared_publish::SharedPublishes::default(),
            woken: BTreeSet::new(),
            storage_full: false,
            connected_clients: 0,
            preconnect_bytes: 0,
            auth_throttle: throttle::AuthThrottle::default(),
            quotas: quota::Quotas::default(),
            stats: Stats::default(),
        }
    }

    /// Replaces the authenticator (e.g. after the password or ACL file was reloaded). Connected clients stay
    /// connected; their further PUBLISHes, SUBSCRIBEs and deliveries are checked by the new one.
    pub fn set_authenticator(&mut self, authenticator: Box<dyn Authenticator>) {
        self.authenticator = authenticator;
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Feed one input at time `now` (monotonic; an earlier time than before is treated as no time passing).
    pub fn handle_input(&mut self, now: Time, input: Input<'_>) {
        self.now = self.now.max(now);
        // A snapshot between inputs may have dropped a message no queue referred to; the next queue entry for it
        // must write it again.
        self.last_stored_message = None;
        if self.started_at.is_none() {
            self.started_at = Some(self.now);
            if self.config.sys_interval > 0 {
                self.timers.arm(self.now, Timer::Sys);
            }
        }
        match input {
            Input::Opened { conn, peer, listener } => self.handle_opened(conn, peer, listener),
            Input::Identified { conn, identity } => self.handle_identified(conn, identity),
            Input::Received { conn, data } => self.handle_received(conn, data),
            Input::Closed { conn } => self.end_connection(conn, WillPolicy::Publish, "connection closed by peer"),
            Input::WriteBlocked { conn } => {
                if let Some(connection) = self.connections.if_open_mut(conn) {
                    connection.write_blocked = true;
                }
            }
            Input::Writable { conn } => self.handle_writable(conn),
            Input::Tick => self.fire_timers(),
            Input::Shutdown => self.shutdown(),
            Input::StorageWritable(writable) => self.set_storage_writable(writable),
            Input::AuthDecided { conn, decision } => self.handle_auth_decided(conn, decision),
        }
        self.release_woken();
        if self.timers.wants_compaction() {
            self.compact_timers();
        }
    }

    /// The next thing the driver must do; drain until `None` after every input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(output) = self.outputs.pop_front() {
            return Some(output);
        }
        while let Some(conn) = self.dirty.pop_front() {
            // The list keeps the ids of connections closed since they were marked.
            let Some(connection) = self.connections.if_open_mut(conn) else {
                continue;
            };
            connection.dirty = false;
            if connection.write_blocked || connection.outbuf.is_empty() {
                continue;
            }
            self.hand_out(conn);
            return self.outputs.pop_front();
        }
        None
    }

    /// Moves everything buffered for `conn` to the outputs, as consecutive `Transmit`s in order.
    fn hand_out(&mut self, conn: ConnectionId) {
        let Some(connection) = self.connections.expected_mut(conn) else {
            return;
        };
        let (outputs, stats) = (&mut self.outputs, &mut self.stats);
        connection.outbuf.drain(|data| {
            stats.bytes_sent += data.len() as u64;
            outputs.push_back(Output::Transmit { conn, data });
        });
    }

    /// When the broker next needs `Input::Tick`, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.next_deadline()
    }

    /// The next timer and its deadline, described (e.g. `Connection(ConnectionId(3))`), for diagnostics: the
    /// simulator names it when a run stalls.
    pub fn next_timer(&self) -> Option<(Time, String)> {
        self.timers.peek().map(|(at, timer)| (at, format!("{timer:?}")))
    }

    /// Number of open connections.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Number of sessions (online and offline).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }
}
