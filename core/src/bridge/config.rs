//! What one bridge is told: where the remote is, how to log in, and which topics cross in which direction.

use crate::packet::{ProtocolVersion, QoS};
use bytes::Bytes;
use std::time::Duration;

/// Which way a topic rule forwards messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Remote to local.
    In,
    /// Local to remote.
    Out,
    /// Both ways (loops are prevented with No Local, see the module documentation).
    Both,
}

impl Direction {
    pub fn inbound(self) -> bool {
        matches!(self, Direction::In | Direction::Both)
    }

    pub fn outbound(self) -> bool {
        matches!(self, Direction::Out | Direction::Both)
    }
}

/// One `topic` line of a Mosquitto bridge: `pattern` is subscribed as `local_prefix + pattern` locally (for `out`)
/// and as `remote_prefix + pattern` remotely (for `in`); a forwarded topic trades one prefix for the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub pattern: String,
    pub direction: Direction,
    /// The subscription's QoS, and so the highest QoS a message crosses with.
    pub qos: QoS,
    pub local_prefix: String,
    pub remote_prefix: String,
}

impl Rule {
    pub fn local_filter(&self) -> String {
        format!("{}{}", self.local_prefix, self.pattern)
    }

    pub fn remote_filter(&self) -> String {
        format!("{}{}", self.remote_prefix, self.pattern)
    }
}

/// The client side of one bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// For logs and events.
    pub name: String,
    /// The Client Identifier at the remote broker.
    pub client_id: String,
    /// The Client Identifier of the bridge's own client of the local broker.
    pub local_client_id: String,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    /// [`ProtocolVersion::V5`] or [`ProtocolVersion::V3_1_1`].
    pub protocol: ProtocolVersion,
    /// Clean Start (5.0) / Clean Session (3.1.1) of every connection to the remote. With `false` the remote keeps
    /// the bridge's subscriptions and unacknowledged messages across reconnects.
    pub clean_start: bool,
    /// Session Expiry Interval asked of a 5.0 remote, in seconds.
    pub session_expiry: u32,
    /// Keep Alive towards the remote, in seconds; 0 disables it.
    pub keep_alive: u16,
    pub rules: Vec<Rule>,
    /// At most this many messages of each direction wait in the bridge (QoS 0 beyond it are dropped and counted;
    /// QoS 1/2 stay unacknowledged at their source instead, see the module documentation). Also the Receive
    /// Maximum the bridge announces on both of its connections.
    pub queue_size: u16,
    /// 3.1.1 only: announce the bridge to the remote by setting the top bit of the protocol level (0x84), as
    /// Mosquitto's `try_private` does; a Mosquitto remote then does not send the bridge's own messages back.
    pub try_private: bool,
    /// First delay before reconnecting to the remote; it doubles after each failure up to `reconnect_max`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// How long a connection attempt (transport and CONNACK) may take.
    pub connect_timeout: Duration,
    /// A known bug for the simulator's self-test: unacknowledged messages are not resent after a reconnect.
    #[cfg(feature = "planted-bugs")]
    pub planted_no_resend: bool,
    /// A known bug for the simulator's self-test: the remote subscriptions lack No Local.
    #[cfg(feature = "planted-bugs")]
    pub planted_remote_echo: bool,
}

impl BridgeConfig {
    /// A bridge with Mosquitto's defaults, for `rules`.
    pub fn new(name: &str, rules: Vec<Rule>) -> BridgeConfig {
        BridgeConfig {
            name: name.to_string(),
            client_id: format!("bridge-{name}"),
            local_client_id: format!("$bridge/{name}"),
            username: None,
            password: None,
            protocol: ProtocolVersion::V5,
            clean_start: false,
            session_expiry: 3600,
            keep_alive: 60,
            rules,
            queue_size: 1000,
            try_private: true,
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            #[cfg(feature = "planted-bugs")]
            planted_no_resend: false,
            #[cfg(feature = "planted-bugs")]
            planted_remote_echo: false,
        }
    }
}
