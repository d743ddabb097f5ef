//! The broker state machine.
//!
//! One way in, one way out (in the manner of str0m): the driver calls [`Broker::handle_input`] with the current
//! time and one [`Input`], then drains [`Broker::poll_output`] until it returns `None`, then sleeps until
//! [`Broker::poll_timeout`] (or until the next input) and calls `handle_input(now, Input::Tick)` when it expires.
//! The broker never reads a clock, touches a socket or draws randomness of its own; the same inputs always give the
//! same outputs.

mod access;
mod auth;
mod config;
mod connect;
mod connection;
mod connections;
mod durable;
mod flow;
mod footprint;
mod frozen;
mod held;
mod identity;
mod message;
mod outbuf;
mod partial;
mod planted;
mod preconnect;
mod publish;
mod quota;
mod rate;
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
pub use message::{Delivery, Message};
pub use partial::PartialInput;
pub use quota::AccountingMismatch;
pub use session::SessionKey;
pub use stats::{DropCause, Gauges, Stats};

use crate::hash::{HashKeys, KeyedHashMap};
use crate::packet::{Disconnect, Packet, ProtocolVersion, ReasonCode};
use crate::time::Time;
use crate::topic::{RetainedTree, SubscriptionTree, TopicMatch};
use bytes::Bytes;
use connection::{Connection, Phase};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use session::Session;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
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

/// The driver's handle for one transport connection. Never reused within one broker's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

/// Which of the driver's listeners a connection arrived on (its index in the driver's list), for per-listener
/// policies such as anonymous access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ListenerId(pub usize);

/// An event from the driver.
#[derive(Debug)]
pub enum Input<'a> {
    /// A transport connection was accepted on `listener`.
    Opened {
        conn: ConnectionId,
        peer: SocketAddr,
        listener: ListenerId,
    },
    /// The transport verified who the peer is: `identity` is the subject Common Name of the client certificate its
    /// TLS handshake verified. The handshake ends after `Opened` (the connect timeout runs from there), so this
    /// comes on its own, once, before the connection's first `Received`. Only listeners in
    /// `Config::identity_as_username` use it; one arriving after the CONNECT is ignored.
    Identified { conn: ConnectionId, identity: &'a str },
    /// Bytes arrived on a connection, in any chunking.
    Received { conn: ConnectionId, data: &'a [u8] },
    /// The peer closed the connection, or it failed. The broker forgets it (and may publish its will).
    Closed { conn: ConnectionId },
    /// The driver could not write everything it was given for `conn`: hold further output for it (and apply the
    /// slow-consumer policy) until `Writable`.
    WriteBlocked { conn: ConnectionId },
    /// The connection's socket accepts writes again.
    Writable { conn: ConnectionId },
    /// Time has passed; fire whatever deadlines are due.
    Tick,
    /// Graceful shutdown: tell MQTT 5 clients "Server shutting down" (0x8B), then close every connection.
    Shutdown,
    /// Durable storage stopped (disk full, I/O error) or resumed taking writes. While it does not, QoS 1/2
    /// PUBLISHes are refused with 0x97 Quota exceeded (MQTT 5) or close their connection (3.1.1/3.1,
    /// [MQTT-4.8.0-2]); QoS 0 flows on.
    StorageWritable(bool),
    /// The verdict on a CONNECT the authenticator answered [`AuthDecision::Pending`] for (`Allow` or `Deny`).
    /// Ignored if the connection closed or timed out meanwhile.
    AuthDecided { conn: ConnectionId, decision: AuthDecision },
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write these bytes to the connection, in order after anything written before. One flush of a connection's
    /// output may come as several consecutive `Transmit`s (a large payload is handed out as its own shared chunk,
    /// see `Config::shared_payload_min`); packets span them, so only their concatenation is meaningful.
    Transmit { conn: ConnectionId, data: Bytes },
    /// Close the connection once the bytes already handed out for it are written. No more input is expected for it;
    /// the driver need not send `Closed` for it (it is ignored if it does).
    Close { conn: ConnectionId },
    /// Append this record to durable storage. With `sync = "always"`, no `Transmit` handed out after it may reach
    /// the network before it is on disk.
    Persist(crate::persist::Record),
    /// Something worth logging or counting.
    Event(Event),
}

/// A notable happening, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    ClientConnected {
        conn: ConnectionId,
        client_id: String,
        peer: SocketAddr,
        protocol: ProtocolVersion,
        clean_start: bool,
        keep_alive: u16,
    },
    ClientDisconnected {
        conn: ConnectionId,
        client_id: Option<String>,
        reason: String,
    },
    /// A CONNECT was refused by the authenticator; the CONNACK goes out after `delay_ms` (guessing slow-down).
    AuthenticationFailed {
        conn: ConnectionId,
        peer: SocketAddr,
        client_id: String,
        username: Option<String>,
        reason: ReasonCode,
        delay_ms: u64,
    },
    /// A QoS 1/2 PUBLISH was refused by a quota (see `quota`) and routed nowhere; its acknowledgement carries
    /// `reason` (MQTT 5) or is a plain one (3.1.1).
    PublishRefused {
        conn: ConnectionId,
        packet_id: u16,
        reason: ReasonCode,
    },
    /// A will was due but its author may no longer publish to its topic (the ACL changed since the CONNECT); it
    /// was dropped.
    WillRefused { client_id: String, topic: String },
    /// A connection not yet past CONNACK took the bytes buffered from all such connections over
    /// `max_preconnect_bytes` and was closed (see `preconnect`).
    PreconnectBudgetExceeded {
        conn: ConnectionId,
        peer: SocketAddr,
        buffered_total: usize,
    },
}

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

    fn handle_opened(&mut self, conn: ConnectionId, peer: SocketAddr, listener: ListenerId) {
        // Until its CONNECT is accepted a connection may send at most `max_connect_size` bytes in one packet.
        let connection = Connection::new(
            peer,
            listener,
            self.config.max_connect_size.min(self.config.max_packet_size),
            self.config.shared_payload_min,
            self.now,
        );
        self.connections.insert(conn, connection);
        self.stats.connections_opened += 1;
        let deadline = self.now + std::time::Duration::from_millis(self.config.connect_timeout_ms);
        self.arm_connection_timer(conn, deadline);
    }

    fn handle_received(&mut self, conn: ConnectionId, data: &[u8]) {
        let Some(connection) = self.connections.if_open_mut(conn) else {
            return;
        };
        if matches!(connection.phase, Phase::Closing | Phase::Refusing) {
            return;
        }
        self.stats.bytes_received += data.len() as u64;
        connection.decoder.feed(data);
        self.decode_received(conn);
        self.account_preconnect_bytes(conn);
    }

    /// Decodes and handles what the connection's decoder holds, packet by packet. While the CONNECT waits for its
    /// verdict, the bytes after it stay undecoded: the server must not process anything the client sent after
    /// CONNECT before it has accepted it (section 3.1.4, [MQTT-3.1.4-6]; 3.1.1: [MQTT-3.1.4-5]). They are decoded
    /// once the verdict lets the client in; a client that sends more than `MAX_BUFFERED_WHILE_VERIFYING` meanwhile
    /// is disconnected.
    fn decode_received(&mut self, conn: ConnectionId) {
        // Only the planted `ExpiringOvertaken` puts a packet aside here.
        let mut deferred: Option<Packet> = None;
        loop {
            // The packet handled last time round may have closed the connection.
            let Some(connection) = self.connections.if_open_mut(conn) else {
                return;
            };
            if connection.phase == Phase::Verifying {
                if connection.decoder.buffered() > MAX_BUFFERED_WHILE_VERIFYING {
                    self.close_connection(conn, WillPolicy::Discard, "too much data sent before CONNACK");
                }
                return;
            }
            match connection.decoder.next_packet() {
                Ok(Some(packet)) => {
                    connection.last_activity = self.now;
                    if deferred.is_none() && self.defers_expiring(&packet) {
                        deferred = Some(packet);
                        continue;
                    }
                    let behind = matches!(packet, Packet::Publish(_));
                    if !behind {
                        if let Some(expiring) = deferred.take() {
                            self.handle_packet(conn, expiring);
                        }
                    }
                    self.handle_packet(conn, packet);
                    if let Some(expiring) = deferred.take() {
                        self.handle_packet(conn, expiring);
                    }
                    self.close_if_replies_unread(conn);
                }
                Ok(None) => {
                    if let Some(expiring) = deferred.take() {
                        self.handle_packet(conn, expiring);
                        self.close_if_replies_unread(conn);
                    }
                    return;
                }
                Err(error) => {
                    if let Some(expiring) = deferred.take() {
                        self.handle_packet(conn, expiring);
                    }
                    let reason = error.reason_code();
                    self.handle_decode_error(conn, &error, reason);
                    return;
                }
            }
        }
    }

    /// Deliveries to a connection stop at `max_outbuf_bytes` (see `publish`), but the replies to its own packets
    /// (PINGRESP, PUBACK, SUBACK, ...) are owed whatever it holds. A client that keeps sending without reading them
    /// would grow its buffer without bound, so past the limit plus `REPLY_SLACK` it is disconnected.
    fn close_if_replies_unread(&mut self, conn: ConnectionId) {
        let limit = self.config.max_outbuf_bytes.saturating_add(REPLY_SLACK);
        // The packet just handled may have closed the connection.
        if self.connections.if_open(conn).is_some_and(|c| c.outbuf.len() > limit) {
            self.stats.unread_reply_closes += 1;
            self.close_connection(
                conn,
                WillPolicy::Publish,
                "replies beyond max_outbuf_bytes unread: the client sends without reading",
            );
        }
    }

    fn handle_packet(&mut self, conn: ConnectionId, packet: Packet) {
        // A packet handled just before (the planted `ExpiringOvertaken` handles two in a row) may have closed it.
        let Some(phase) = self.connections.if_open(conn).map(|c| c.phase) else {
            return;
        };
        match (phase, packet) {
            // A verifying connection decodes nothing (see `decode_received`).
            (Phase::Closing | Phase::Refusing | Phase::Verifying, _) => {}
            (Phase::AwaitingConnect, Packet::Connect(connect)) => self.handle_connect(conn, connect),
            // [MQTT-3.1.0-1]: the first packet must be CONNECT; anything else closes the connection.
            (Phase::AwaitingConnect, _) => {
                self.close_connection(conn, WillPolicy::Discard, "first packet was not CONNECT")
            }
            (Phase::Authenticating, Packet::Auth(auth)) => self.handle_auth_during_connect(conn, auth),
            (Phase::Authenticating, _) => {
                self.protocol_error(conn, ReasonCode::PROTOCOL_ERROR, "expected AUTH during authentication")
            }
            // [MQTT-3.1.0-2]: a second CONNECT is a Protocol Error.
            (Phase::Connected, Packet::Connect(_)) => {
                self.protocol_error(conn, ReasonCode::PROTOCOL_ERROR, "second CONNECT")
            }
            (Phase::Connected, Packet::Publish(publish)) => self.handle_publish(conn, publish),
            (Phase::Connected, Packet::PubAck(ack)) => self.handle_puback(conn, ack),
            (Phase::Connected, Packet::PubRec(rec)) => self.handle_pubrec(conn, rec),
            (Phase::Connected, Packet::PubRel(rel)) => self.handle_pubrel(conn, rel),
            (Phase::Connected, Packet::PubComp(comp)) => self.handle_pubcomp(conn, comp),
            (Phase::Connected, Packet::Subscribe(subscribe)) => self.handle_subscribe(conn, subscribe),
            (Phase::Connected, Packet::Unsubscribe(unsubscribe)) => self.handle_unsubscribe(conn, unsubscribe),
            // [MQTT-3.12.4-1]
            (Phase::Connected, Packet::PingReq) => {
                self.send(conn, &Packet::PingResp);
            }
            (Phase::Connected, Packet::Disconnect(disconnect)) => self.handle_disconnect(conn, disconnect),
            (Phase::Connected, Packet::Auth(auth)) => self.handle_reauth(conn, auth),
            // Server-to-client packets sent by a client.
            (Phase::Connected, _) => {
                self.protocol_error(conn, ReasonCode::PROTOCOL_ERROR, "packet not valid from a client")
            }
        }
    }

    fn handle_decode_error(&mut self, conn: ConnectionId, error: &crate::codec::DecodeError, reason: ReasonCode) {
        // As in `handle_packet`: a deferred packet handled just before may have closed it.
        let Some(connection) = self.connections.if_open(conn) else {
            return;
        };
        let text = format!("decode error: {error:?}");
        match connection.phase {
            Phase::AwaitingConnect => self.reject_connect_on_decode_error(conn, error, &text),
            _ => self.protocol_error(conn, reason, &text),
        }
    }

    /// Ends a connection because of something the client did: a DISCONNECT with the reason for MQTT 5 clients
    /// [MQTT-4.13.1-1], just a close for older ones; the will is published.
    fn protocol_error(&mut self, conn: ConnectionId, reason: ReasonCode, text: &str) {
        self.stats.protocol_errors += 1;
        self.disconnect_with(conn, reason, text);
    }

    /// Sends DISCONNECT with `reason` to an MQTT 5 client, then closes the connection with the will published.
    fn disconnect_with(&mut self, conn: ConnectionId, reason: ReasonCode, text: &str) {
        let is_v5_connected = self
            .connections
            .expected(conn)
            .is_some_and(|c| c.is_v5() && matches!(c.phase, Phase::Connected | Phase::Authenticating));
        if is_v5_connected {
            self.send(conn, &Packet::Disconnect(disconnect_packet(reason, text)));
        }
        let text = format!("{text} ({reason})");
        self.close_connection(conn, WillPolicy::Publish, &text);
    }

    /// Encodes `packet` into the connection's output buffer, honouring the client's Maximum Packet Size
    /// [MQTT-3.1.2-24]: a packet too large loses its Reason String and User Properties first [MQTT-3.1.2-25]...
    /// and is not sent at all if still too large. Returns whether it was sent.
    /// Whether `packet` fits the connection's Maximum Packet Size as it stands, before any optional property is
    /// stripped (only MQTT 5 clients announce one).
    fn fits_client(&self, conn: ConnectionId, packet: &Packet) -> bool {
        self.connections.expected(conn).is_some_and(|connection| {
            let version = connection.protocol.unwrap_or(ProtocolVersion::V3_1_1);
            !version.is_v5() || crate::codec::encoded_len(packet, version) <= connection.client_max_packet_size as usize
        })
    }

    fn send(&mut self, conn: ConnectionId, packet: &Packet) -> bool {
        let Some(connection) = self.connections.expected_mut(conn) else {
            return false;
        };
        if connection.phase == Phase::Closing {
            return false;
        }
        let version = connection.protocol.unwrap_or(ProtocolVersion::V3_1_1);
        // Only MQTT 5 clients announce a Maximum Packet Size.
        let limit = if version.is_v5() {
            connection.client_max_packet_size as usize
        } else {
            usize::MAX
        };
        // [MQTT-3.1.2-29]: without Request Problem Information, no Reason String / User Properties except on
        // PUBLISH, CONNACK and DISCONNECT.
        let problem_info_suppressed = !connection.request_problem_information
            && !matches!(packet, Packet::Publish(_) | Packet::ConnAck(_) | Packet::Disconnect(_));
        // Encoded once, straight into the output buffer; measured afterwards (the hot path pays one encode).
        let shared_payload_min = self.config.shared_payload_min;
        let sent = !problem_info_suppressed && connection.outbuf.encode(packet, version, limit, shared_payload_min);
        if !sent {
            let mut trimmed = packet.clone();
            strip_optional_properties(&mut trimmed);
            if !connection.outbuf.encode(&trimmed, version, limit, shared_payload_min) {
                self.stats.dropped(DropCause::PacketTooLarge, 1);
                return false;
            }
        }
        if !connection.dirty {
            connection.dirty = true;
            self.dirty.push_back(conn);
        }
        true
    }

    /// Flushes what is buffered for the connection, asks the driver to close it, and detaches its session.
    fn close_connection(&mut self, conn: ConnectionId, will: WillPolicy, reason: &str) {
        if !self.connections.contains(conn) {
            return;
        }
        self.hand_out(conn);
        self.outputs.push_back(Output::Close { conn });
        self.end_connection(conn, will, reason);
    }

    /// Forgets a connection (the driver already closed it or was told to) and detaches its session: the will is
    /// handled per `will`, and the session ends now or is left to expire [MQTT-3.1.2-23].
    fn end_connection(&mut self, conn: ConnectionId, will: WillPolicy, reason: &str) {
        self.release_preconnect_bytes(conn);
        let Some(connection) = self.connections.remove(conn) else {
            return;
        };
        self.stats.connections_closed += 1;
        let was_connected = connection.phase == Phase::Connected;
        if was_connected {
            self.connected_clients = self.connected_clients.saturating_sub(1);
        }
        self.quota_connection_ended(conn, &connection, was_connected);
        if let Some(key) = connection.session {
            self.detach_session(key, conn, will);
        }
        if connection.phase != Phase::AwaitingConnect || connection.client_id.is_some() {
            self.outputs.push_back(Output::Event(Event::ClientDisconnected {
                conn,
                client_id: connection.client_id.map(|id| id.to_string()),
                reason: reason.to_string(),
            }));
        }
    }

    fn handle_writable(&mut self, conn: ConnectionId) {
        let Some(connection) = self.connections.if_open_mut(conn) else {
            return;
        };
        connection.write_blocked = false;
        if !connection.outbuf.is_empty() && !connection.dirty {
            connection.dirty = true;
            self.dirty.push_back(conn);
        }
        if let Some(key) = connection.session {
            self.pump(key);
        }
    }

    fn shutdown(&mut self) {
        let ids = self.connections.ids();
        for conn in ids {
            // [MQTT-4.13.2-1]-style courtesy: MQTT 5 clients learn why they are being disconnected.
            self.disconnect_with_policy(
                conn,
                ReasonCode::SERVER_SHUTTING_DOWN,
                WillPolicy::Discard,
                "server shutting down",
            );
        }
    }

    fn disconnect_with_policy(&mut self, conn: ConnectionId, reason: ReasonCode, will: WillPolicy, text: &str) {
        // `shutdown` walks ids taken before it closed any.
        let is_v5_connected = self
            .connections
            .if_open(conn)
            .is_some_and(|c| c.is_v5() && c.phase == Phase::Connected);
        if is_v5_connected {
            self.send(conn, &Packet::Disconnect(disconnect_packet(reason, text)));
        }
        self.close_connection(conn, will, text);
    }

    /// Drops the timer entries that would do nothing when they fire: their connection or session is gone, or a
    /// later disconnect re-armed the session's expiry or will at another deadline. Keeps the queue proportional to
    /// live connections and sessions however often clients come and go.
    fn compact_timers(&mut self) {
        let expiry_compacted_away = self.planted(planted::PlantedBug::SessionExpiryCompactedAway);
        let (connections, sessions, streams) = (&self.connections, &self.sessions, &self.retained_streams);
        self.timers.compact(|deadline, timer| match timer {
            Timer::RetainedStream(key) => streams.contains_key(&key),
            Timer::Connection(conn) | Timer::Refusal(conn) => connections.contains(conn),
            // The entry `expiry_timer_due` names stays, whatever the session's state: `arm_expiry_timer` arms no
            // new one while it is pending, counting on it to re-check and re-arm when it fires. Dropped because a
            // later drop had moved `expires_at`, it left the session without any entry, never to expire (seed 3629
            // of the simulator) [MQTT-4.1.0-2]. At most one entry per session is kept.
            // The planted `SessionExpiryCompactedAway` keeps the old rule, which dropped that entry.
            Timer::SessionExpiry(key) if expiry_compacted_away => sessions
                .get(&key)
                .is_some_and(|s| s.connection.is_none() && s.expires_at == Some(deadline)),
            Timer::SessionExpiry(key) => sessions.get(&key).is_some_and(|s| s.expiry_timer_due == Some(deadline)),
            Timer::WillDelay(key) => sessions.get(&key).is_some_and(|s| {
                s.connection.is_none() && s.pending_will.as_ref().is_some_and(|w| w.publish_at == deadline)
            }),
            Timer::Sys => true,
        });
    }

    /// Timer entries pending, stale ones included (tests and metrics).
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    /// Fires the timers due now; one armed for now meanwhile waits for the next Tick (see `Timers::firing`).
    fn fire_timers(&mut self) {
        self.timers.begin_firing(self.now);
        while let Some(timer) = self.timers.pop_due(self.now) {
            match timer {
                Timer::Connection(conn) => self.connection_timer(conn),
                Timer::SessionExpiry(key) => self.check_session_expiry(key),
                Timer::WillDelay(key) => self.check_will_delay(key),
                Timer::Refusal(conn) => self.send_held_refusal(conn),
                Timer::RetainedStream(key) => self.advance_retained(key),
                Timer::Sys => {
                    self.publish_sys();
                    let next = self.now + std::time::Duration::from_secs(u64::from(self.config.sys_interval));
                    self.timers.arm(next, Timer::Sys);
                }
            }
        }
        self.timers.end_firing();
    }

    /// Makes sure a `Timer::Connection` entry fires for `conn` no later than `at`, unless a pending entry fires
    /// earlier (it re-checks and re-arms when it does). Entries are never cancelled; a stale one costs a wake-up.
    fn arm_connection_timer(&mut self, conn: ConnectionId, at: Time) {
        let Some(connection) = self.connections.expected_mut(conn) else {
            return;
        };
        if at < connection.timer_due || connection.timer_due <= self.now {
            connection.timer_due = connection.timer_due.max(at);
            self.timers.arm(at, Timer::Connection(conn));
        }
    }

    fn connection_timer(&mut self, conn: ConnectionId) {
        let Some(phase) = self.connections.if_open(conn).map(|c| c.phase) else {
            return;
        };
        match phase {
            Phase::AwaitingConnect | Phase::Authenticating | Phase::Verifying => self.connect_timeout(conn),
            Phase::Connected => self.check_keep_alive(conn),
            Phase::Refusing | Phase::Closing => {}
        }
    }

    fn connect_timeout(&mut self, conn: ConnectionId) {
        let waiting = self.connections.expected(conn).is_some_and(|c| {
            matches!(
                c.phase,
                Phase::AwaitingConnect | Phase::Authenticating | Phase::Verifying
            )
        });
        if waiting {
            self.close_connection(conn, WillPolicy::Discard, "no CONNECT within the connect timeout");
        }
    }

    /// [MQTT-3.1.2-22]: close a connection that sent nothing for one and a half times its keep alive.
    fn check_keep_alive(&mut self, conn: ConnectionId) {
        let Some(connection) = self.connections.expected(conn) else {
            return;
        };
        if connection.keep_alive == 0 || connection.phase != Phase::Connected {
            return;
        }
        let deadline = connection.last_activity + keep_alive_grace(connection.keep_alive);
        if self.now >= deadline {
            self.disconnect_with(conn, ReasonCode::KEEP_ALIVE_TIMEOUT, "keep alive timeout");
        } else if self.planted(planted::PlantedBug::KeepAliveRearmsStaleDeadline) {
            let stale = connection.timer_due;
            self.arm_connection_timer(conn, stale);
        } else {
            self.arm_connection_timer(conn, deadline);
        }
    }
}

/// A server DISCONNECT with a Reason String saying why, for the client's logs (section 3.14.2.2.3).
fn disconnect_packet(reason: ReasonCode, text: &str) -> Disconnect {
    Disconnect {
        reason,
        properties: crate::packet::Properties {
            reason_string: Some(text.to_string()),
            ..Default::default()
        }
        .into(),
    }
}

/// One and a half times the keep alive [MQTT-3.1.2-22].
fn keep_alive_grace(keep_alive: u16) -> std::time::Duration {
    std::time::Duration::from_millis(u64::from(keep_alive) * 1500)
}

/// Removes the properties a receiver can live without (Reason String, User Properties) [MQTT-3.1.2-25].
fn strip_optional_properties(packet: &mut Packet) {
    let properties = match packet {
        Packet::ConnAck(p) => &mut p.properties,
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => &mut p.properties,
        Packet::SubAck(p) => &mut p.properties,
        Packet::UnsubAck(p) => &mut p.properties,
        Packet::Disconnect(p) => &mut p.properties,
        Packet::Auth(p) => &mut p.properties,
        _ => return,
    };
    properties.reason_string = None;
    properties.user_properties.clear();
}

/// Memory per idle connection is a benchmark target (`mqtt-bench --workload conn`); these guard the structure
/// behind it, which an innocent change can undo (a lookup that allocates, a second timer per connection).
#[cfg(test)]
mod idle_footprint {
    use crate::harness::{connect_packet, Harness};
    use crate::packet::{Packet, ProtocolVersion};
    use std::time::Duration;

    fn idle_clients(count: usize) -> (Harness, Vec<super::ConnectionId>) {
        let mut harness = Harness::new(super::Config {
            sys_interval: 0,
            ..super::Config::default()
        });
        let conns = (0..count)
            .map(|i| {
                let mut connect = connect_packet(ProtocolVersion::V3_1_1, &format!("idle-{i}"));
                connect.keep_alive = 60;
                let (conn, connack) = harness.connect(connect);
                assert!(matches!(connack, Some(Packet::ConnAck(_))));
                conn
            })
            .collect();
        (harness, conns)
    }

    #[test]
    fn an_idle_client_allocates_no_out_of_line_state() {
        let (mut harness, conns) = idle_clients(3);
        harness.send(conns[0], Packet::PingReq);
        assert_eq!(harness.recv(conns[0]), Some(Packet::PingResp));
        let broker = &harness.broker;
        for conn in &conns {
            let connection = broker.connections.expected(*conn).expect("open");
            assert!(
                connection.extras.is_none(),
                "no aliases, auth, held publishes or rate limiter"
            );
            assert!(
                connection.outbuf.capacity() == 0,
                "no output buffer kept once handed out"
            );
            let session = &broker.sessions[&connection.session.expect("attached")];
            assert!(session.queue().is_empty() && session.inflight().is_empty());
            assert!(!session.has_traffic(), "no queue or inflight window allocated");
            assert!(std::sync::Arc::ptr_eq(
                connection.client_id.as_ref().expect("set at CONNACK"),
                &session.client_id
            ));
        }
    }

    #[test]
    fn one_timer_entry_per_connection_and_keep_alive_still_enforced_mqtt_3_1_2_22() {
        let (mut harness, conns) = idle_clients(50);
        // The connect timeout's entry is reused for the keep alive check: one entry per connection.
        assert_eq!(harness.broker.timers.len(), conns.len());
        harness.advance(Duration::from_secs(89));
        assert!(conns.iter().all(|conn| !harness.is_closed(*conn)));
        assert_eq!(harness.broker.timers.len(), conns.len());
        // One and a half times the keep alive of 60 s with no packet: closed [MQTT-3.1.2-22].
        harness.advance(Duration::from_secs(2));
        assert!(conns.iter().all(|conn| harness.is_closed(*conn)));
    }

    /// Timer entries cannot be cancelled: a session that drops and comes back within its expiry must not leave
    /// one entry per drop behind, and must still expire on time [MQTT-3.1.2-23].
    #[test]
    fn a_flapping_session_keeps_one_expiry_timer_entry_and_still_expires_mqtt_3_1_2_23() {
        use crate::packet::Properties;
        let mut harness = crate::harness::Harness::new(super::Config {
            sys_interval: 0,
            ..super::Config::default()
        });
        let connect = |clean_start| crate::packet::Connect {
            clean_start,
            keep_alive: 0,
            properties: Properties {
                session_expiry_interval: Some(3600),
                ..Properties::default()
            },
            ..connect_packet(ProtocolVersion::V5, "flapper")
        };
        let mut most = 0;
        for round in 0..100 {
            let (conn, connack) = harness.connect(connect(round == 0));
            assert!(matches!(connack, Some(Packet::ConnAck(_))));
            harness.drop_connection(conn);
            harness.advance(Duration::from_secs(1));
            most = most.max(harness.broker.timers.len());
        }
        // One connect-timeout entry per connection fires within its 10 s; one expiry entry stays.
        assert!(most <= 12, "{most} timer entries for one session");
        assert_eq!(harness.broker.session_count(), 1);
        // The last drop was 1 s ago: the session expires 3600 s after it, not after the first drop.
        harness.advance(Duration::from_secs(3598));
        assert_eq!(harness.broker.session_count(), 1, "not yet expired");
        harness.advance(Duration::from_secs(2));
        assert_eq!(
            harness.broker.session_count(),
            0,
            "expired 3600 s after its last connection ended"
        );
        assert_eq!(harness.broker.timers.len(), 0);
    }
}
