//! Per-connection state: the decoder, the negotiated limits of both sides, topic aliases, and buffered output.

use super::held::HeldPublish;
use super::outbuf::Outbuf;
use super::rate::PublishLimiter;
use super::session::SessionKey;
use super::ListenerId;
use crate::codec::Decoder;
use crate::hash::HashMap;
use crate::packet::{ProtocolVersion, ReasonCode};
use crate::time::Time;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

/// Where a connection stands in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for CONNECT [MQTT-3.1.0-1].
    AwaitingConnect,
    /// CONNECT received with an authentication method; AUTH exchange in progress [MQTT-4.12.0-?].
    Authenticating,
    /// CONNECT received; the authenticator's verdict is pending (`AuthDecision::Pending`). Later bytes stay
    /// undecoded until it comes.
    Verifying,
    /// CONNACK sent; attached to a session.
    Connected,
    /// Authentication failed; the refusing CONNACK is held until a timer fires (guessing slow-down). Input is
    /// ignored meanwhile.
    Refusing,
    /// Close has been requested; nothing more is read or sent.
    Closing,
}

/// Connection state that most connections never use: topic aliases, enhanced authentication, held PUBLISHes,
/// a held refusal and the publish-rate limiter. Kept out of line so that tens of thousands of idle connections do
/// not each carry it.
#[derive(Default)]
pub struct Extras {
    /// The name the transport verified (`Input::Identified`), until the CONNECT takes it: before that nothing
    /// else lives here.
    pub identity: Option<Box<str>>,
    /// Aliases the client set towards us [MQTT-3.3.2-10].
    pub inbound_aliases: HashMap<u16, String>,
    /// Aliases we set towards the client. Keyed by topic names other clients chose, so a B-tree: a hash map with
    /// fixed keys could be flooded with colliding topics (up to 65,535 of them).
    pub outbound_aliases: BTreeMap<String, u16>,
    /// The authentication method of an enhanced authentication exchange.
    pub auth_method: Option<String>,
    /// The CONNECT waiting for an enhanced authentication exchange to finish, or for a pending verdict.
    pub pending_connect: Option<Box<crate::packet::Connect>>,
    /// QoS 1/2 PUBLISHes received but not yet acknowledged because a subscriber's queue was full, in arrival order
    /// (see `flow`).
    pub held: VecDeque<HeldPublish>,
    /// The refusal held while in `Phase::Refusing`.
    pub pending_refusal: Option<(ReasonCode, &'static str)>,
    /// The publish rate of this connection (see `quota`).
    pub publish_limiter: PublishLimiter,
}

pub struct Connection {
    pub peer: SocketAddr,
    /// The listener it arrived on.
    pub listener: ListenerId,
    pub phase: Phase,
    pub decoder: Decoder,
    /// Known once CONNECT is decoded.
    pub protocol: Option<ProtocolVersion>,
    /// The session's client identifier (shared with it), once CONNECT is accepted.
    pub client_id: Option<Arc<str>>,
    /// The client sent an empty client id and the broker assigned one [MQTT-3.1.3-6].
    pub client_id_assigned: bool,
    pub session: Option<SessionKey>,
    /// Encoded bytes waiting to be handed to the driver.
    pub outbuf: Outbuf,
    /// True while the connection id is in the broker's dirty list.
    pub dirty: bool,
    /// The driver could not write everything: hold output until `Writable`.
    pub write_blocked: bool,
    /// Last time any packet arrived, for keep alive.
    pub last_activity: Time,
    /// The latest deadline of this connection's pending `Timer::Connection` entries.
    pub timer_due: Time,
    /// Keep alive in effect, in seconds (0 = none).
    pub keep_alive: u16,
    /// The client's Maximum Packet Size [MQTT-3.1.2-24]; packets larger than this are never sent to it.
    pub client_max_packet_size: u32,
    /// Bytes this connection holds that count against the pre-CONNACK budget (0 once connected; see `preconnect`).
    pub preconnect_bytes: u32,
    /// The client's Receive Maximum, bounding our inflight QoS 1/2 towards it [MQTT-3.3.4-9].
    pub client_receive_maximum: u16,
    /// The client's Topic Alias Maximum: how many aliases we may use towards it [MQTT-3.2.2-17].
    pub client_topic_alias_maximum: u16,
    /// Request Problem Information: when false, no Reason String or User Property on anything but PUBLISH,
    /// CONNACK and DISCONNECT [MQTT-3.1.2-29].
    pub request_problem_information: bool,
    /// What few connections need, allocated on first use: an idle connection pays one pointer for all of it.
    pub extras: Option<Box<Extras>>,
}

impl Connection {
    /// Packets of at least `shared_payload_min` bytes are received into allocations of their own (see `Decoder`).
    pub fn new(
        peer: SocketAddr,
        listener: ListenerId,
        max_packet_size: u32,
        shared_payload_min: usize,
        now: Time,
    ) -> Connection {
        Connection {
            peer,
            listener,
            phase: Phase::AwaitingConnect,
            decoder: Decoder::new(None, max_packet_size as usize).with_own_allocation_min(shared_payload_min),
            protocol: None,
            client_id: None,
            client_id_assigned: false,
            session: None,
            outbuf: Outbuf::default(),
            dirty: false,
            write_blocked: false,
            last_activity: now,
            timer_due: Time::ZERO,
            keep_alive: 0,
            client_max_packet_size: u32::MAX,
            preconnect_bytes: 0,
            client_receive_maximum: u16::MAX,
            client_topic_alias_maximum: 0,
            request_problem_information: true,
            extras: None,
        }
    }

    /// The out-of-line state, allocated now if it was not yet.
    pub fn extras(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// The QoS 1/2 PUBLISHes held unacknowledged, in arrival order.
    pub fn held(&self) -> impl Iterator<Item = &HeldPublish> {
        self.extras.iter().flat_map(|extras| extras.held.iter())
    }

    pub fn has_held(&self) -> bool {
        self.extras.as_ref().is_some_and(|extras| !extras.held.is_empty())
    }

    pub fn pop_held(&mut self) -> Option<HeldPublish> {
        self.extras.as_mut()?.held.pop_front()
    }

    pub fn auth_method(&self) -> Option<&str> {
        self.extras.as_ref()?.auth_method.as_deref()
    }

    pub fn is_v5(&self) -> bool {
        self.protocol.is_some_and(ProtocolVersion::is_v5)
    }
}
