//! Session state (MQTT 5.0 section 4.1): what the broker keeps for a client identifier across network connections.

use super::message::Delivery;
use super::ConnectionId;
use crate::hash::HashSet;
use crate::packet::{ProtocolVersion, Will};
use crate::time::Time;
use crate::topic::Subscription;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The broker's key for a session. Keys are never reused, so a stale timer naming a key cannot hit a newer session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionKey(pub u64);

/// Where an outgoing QoS 1/2 message stands in its acknowledgement flow [MQTT-4.3.2], [MQTT-4.3.3].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// The variants are named after the packets awaited, as the spec names them.
#[allow(clippy::enum_variant_names)]
pub enum Awaiting {
    /// QoS 1 sent, waiting for PUBACK.
    PubAck,
    /// QoS 2 sent, waiting for PUBREC.
    PubRec,
    /// QoS 2 PUBREL sent, waiting for PUBCOMP.
    PubComp,
}

#[derive(Debug, Clone)]
pub struct Inflight {
    pub packet_id: u16,
    pub delivery: Delivery,
    pub state: Awaiting,
}

/// A will waiting for its Will Delay Interval to pass after the connection closed [MQTT-3.1.3-9].
#[derive(Debug, Clone)]
pub struct PendingWill {
    pub will: Will,
    pub publish_at: Time,
}

#[derive(Debug)]
pub struct Session {
    pub client_id: String,
    /// The User Name of the connection that last attached, for access control of its deliveries.
    pub username: Option<String>,
    pub protocol: ProtocolVersion,
    /// Session Expiry Interval in seconds; `u32::MAX` never expires [MQTT-3.1.2-23].
    pub expiry_interval: u32,
    /// The connection currently attached, if any.
    pub connection: Option<ConnectionId>,
    /// Subscriptions by the filter exactly as subscribed (including any `$share/{group}/` prefix).
    pub subscriptions: BTreeMap<String, Subscription>,
    /// Messages waiting for the inflight window, in order.
    pub queue: VecDeque<Delivery>,
    /// Outgoing QoS 1/2 messages not yet fully acknowledged, in the order first sent: they are resent in this order
    /// on reconnect [MQTT-4.4.0-1].
    pub inflight: VecDeque<Inflight>,
    /// The packet ids of `inflight`, so allocating a free id costs O(1) instead of a scan of the window. Changed
    /// only through `push_inflight`, `remove_inflight` and `clear_inflight`.
    inflight_ids: HashSet<u16>,
    /// Packet identifiers of incoming QoS 2 messages already delivered onwards, waiting for PUBREL: a repeated
    /// PUBLISH with one of these is not delivered again [MQTT-4.3.3-9].
    pub incoming_qos2: BTreeSet<u16>,
    /// The will of the current connection, kept until it is published or discarded. Boxed, like the pending will:
    /// most sessions have none, and a session is kept per client.
    pub will: Option<Box<Will>>,
    /// The will waiting for its delay after the connection closed.
    pub pending_will: Option<Box<PendingWill>>,
    /// When an offline session expires, if it does.
    pub expires_at: Option<Time>,
    /// Connections holding PUBLISHes until this session's queue has room again (see `flow`).
    pub waiters: BTreeSet<ConnectionId>,
    /// Whether the session is in durable storage (persistence on and a non-zero expiry): its changes are recorded.
    pub durable: bool,
    /// When its last connection ended, for expiry across restarts.
    pub offline_since: Option<Time>,
    /// Sequence number for the next queued message.
    pub next_seq: u64,
    /// Payload bytes of the messages in `queue` and `inflight` (see `quota`).
    pub queued_bytes: u64,
    next_packet_id: u16,
}

impl Session {
    pub fn new(client_id: String, protocol: ProtocolVersion) -> Session {
        Session {
            client_id,
            username: None,
            protocol,
            expiry_interval: 0,
            connection: None,
            subscriptions: BTreeMap::new(),
            queue: VecDeque::new(),
            inflight: VecDeque::new(),
            inflight_ids: HashSet::default(),
            incoming_qos2: BTreeSet::new(),
            will: None,
            pending_will: None,
            expires_at: None,
            waiters: BTreeSet::new(),
            durable: false,
            offline_since: None,
            next_seq: 1,
            queued_bytes: 0,
            next_packet_id: 1,
        }
    }

    /// A packet identifier not used by any inflight message [MQTT-2.2.1-3]: the next in sequence, skipping ids in
    /// use. `None` when all 65,535 are taken (the inflight window never allows that, but input must not panic us).
    pub fn allocate_packet_id(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            let candidate = self.next_packet_id;
            self.next_packet_id = if candidate == u16::MAX { 1 } else { candidate + 1 };
            if !self.inflight_ids.contains(&candidate) {
                return Some(candidate);
            }
        }
        None
    }

    /// Continue packet id allocation after `last` (recovery).
    pub fn set_next_packet_id(&mut self, last: u16) {
        self.next_packet_id = if last == u16::MAX { 1 } else { last + 1 };
    }

    pub fn push_inflight(&mut self, entry: Inflight) {
        self.inflight_ids.insert(entry.packet_id);
        self.inflight.push_back(entry);
    }

    pub fn remove_inflight(&mut self, position: usize) -> Option<Inflight> {
        let entry = self.inflight.remove(position)?;
        self.inflight_ids.remove(&entry.packet_id);
        Some(entry)
    }

    pub fn clear_inflight(&mut self) {
        self.inflight.clear();
        self.inflight_ids.clear();
    }

    pub fn inflight_position(&self, packet_id: u16) -> Option<usize> {
        self.inflight.iter().position(|entry| entry.packet_id == packet_id)
    }

    /// Total of queued and inflight messages, for the queue bound.
    pub fn pending_count(&self) -> usize {
        self.queue.len() + self.inflight.len()
    }
}
