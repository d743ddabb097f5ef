//! The broker state machine.
//!
//! One way in, one way out (in the manner of str0m): the driver calls [`Broker::handle_input`] with the current
//! time and one [`Input`], then drains [`Broker::poll_output`] until it returns `None`, then sleeps until
//! [`Broker::poll_timeout`] (or until the next input) and calls `handle_input(now, Input::Tick)` when it expires.
//! The broker never reads a clock, touches a socket or draws randomness of its own; the same inputs always give the
//! same outputs.

mod config;

pub use config::Config;

use crate::time::Time;
use bytes::Bytes;
use std::net::SocketAddr;

/// The driver's handle for one transport connection. Never reused within one broker's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

/// An event from the driver.
#[derive(Debug)]
pub enum Input<'a> {
    /// A transport connection was accepted.
    Opened { conn: ConnectionId, peer: SocketAddr },
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
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write these bytes to the connection, in order after anything written before.
    Transmit { conn: ConnectionId, data: Bytes },
    /// Close the connection once the bytes already handed out for it are written.
    Close { conn: ConnectionId },
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
        protocol: crate::packet::ProtocolVersion,
        clean_start: bool,
        keep_alive: u16,
    },
    ClientDisconnected {
        conn: ConnectionId,
        client_id: Option<String>,
        reason: String,
    },
}

/// The broker.
pub struct Broker {
    config: Config,
    outputs: std::collections::VecDeque<Output>,
}

impl Broker {
    /// `seed` drives everything the broker chooses at random (assigned client identifiers).
    pub fn new(config: Config, _seed: u64) -> Broker {
        Broker {
            config,
            outputs: Default::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Feed one input at time `now` (monotonic, never decreasing).
    pub fn handle_input(&mut self, _now: Time, _input: Input<'_>) {}

    /// The next thing the driver must do; drain until `None` after every input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the broker next needs `Input::Tick`, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        None
    }
}
