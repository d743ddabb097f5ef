//! What the driver and the broker exchange: the handles of connections and listeners, the driver's inputs, the
//! outputs it must act on, and the events worth logging.

use super::AuthDecision;
use crate::packet::{ProtocolVersion, ReasonCode};
use bytes::Bytes;
use std::net::SocketAddr;

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
