//! Session state (MQTT 5.0 section 4.1): what the broker keeps for a client identifier across network connections.

use super::message::Delivery;
use super::ConnectionId;
use crate::hash::PacketIdSet;
use crate::packet::{ProtocolVersion, Will};
use crate::time::Time;
use crate::topic::Subscription;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

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

/// What a session has in motion. Reached through the session's accessors, which allocate it on first use.
#[derive(Debug, Default)]
struct Traffic {
    /// Messages waiting for the inflight window, in order.
    queue: VecDeque<Delivery>,
    /// Outgoing QoS 1/2 messages not yet fully acknowledged, in the order first sent: they are resent in this order
    /// on reconnect [MQTT-4.4.0-1].
    inflight: VecDeque<Inflight>,
    /// The packet ids of `inflight`, so allocating a free id costs O(1) instead of a scan of the window. Changed
    /// only through `push_inflight`, `remove_inflight` and `clear_inflight`.
    inflight_ids: PacketIdSet,
    /// Packet identifiers of incoming QoS 2 messages already delivered onwards, waiting for PUBREL: a repeated
    /// PUBLISH with one of these is not delivered again [MQTT-4.3.3-9].
    incoming_qos2: BTreeSet<u16>,
    /// Connections holding PUBLISHes until this session's queue has room again (see `flow`).
    waiters: BTreeSet<ConnectionId>,
}

static NO_QUEUE: VecDeque<Delivery> = VecDeque::new();
static NO_INFLIGHT: VecDeque<Inflight> = VecDeque::new();
static NO_IDS: BTreeSet<u16> = BTreeSet::new();
static NO_WAITERS: BTreeSet<ConnectionId> = BTreeSet::new();

#[derive(Debug)]
pub struct Session {
    /// Shared with the connection and the broker's index by client id: one allocation, not three.
    pub client_id: Arc<str>,
    /// The User Name of the connection that last attached, for access control of its deliveries.
    pub username: Option<Arc<str>>,
    pub protocol: ProtocolVersion,
    /// Session Expiry Interval in seconds; `u32::MAX` never expires [MQTT-3.1.2-23].
    pub expiry_interval: u32,
    /// The connection currently attached, if any.
    pub connection: Option<ConnectionId>,
    /// Subscriptions by the filter exactly as subscribed (including any `$share/{group}/` prefix).
    pub subscriptions: BTreeMap<String, Subscription>,
    /// Queued and inflight messages, QoS 2 receipts and waiting publishers: nothing for an idle client, so out of
    /// line and allocated on first use (memory per idle connection).
    traffic: Option<Box<Traffic>>,
    /// The will of the current connection, kept until it is published or discarded. Boxed, like the pending will:
    /// most sessions have none, and a session is kept per client.
    pub will: Option<Box<Will>>,
    /// The will waiting for its delay after the connection closed.
    pub pending_will: Option<Box<PendingWill>>,
    /// When an offline session expires, if it does.
    pub expires_at: Option<Time>,
    /// The deadline of the earliest `Timer::SessionExpiry` entry still pending for this session. Entries cannot be
    /// cancelled, so without this a client that reconnects and drops again within its expiry would leave one entry
    /// per drop behind until each one's deadline (a week's expiry and a drop a second: 600,000 entries).
    pub expiry_timer_due: Option<Time>,
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
    pub fn new(client_id: Arc<str>, protocol: ProtocolVersion) -> Session {
        Session {
            client_id,
            username: None,
            protocol,
            expiry_interval: 0,
            connection: None,
            subscriptions: BTreeMap::new(),
            traffic: None,
            will: None,
            pending_will: None,
            expires_at: None,
            expiry_timer_due: None,
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
            if !self
                .traffic
                .as_ref()
                .is_some_and(|t| t.inflight_ids.contains(&candidate))
            {
                return Some(candidate);
            }
        }
        None
    }

    /// Continue packet id allocation after `last` (recovery).
    pub fn set_next_packet_id(&mut self, last: u16) {
        self.next_packet_id = if last == u16::MAX { 1 } else { last + 1 };
    }

    /// Whether the out-of-line traffic state was allocated (tests of the idle footprint).
    #[cfg(test)]
    pub fn has_traffic(&self) -> bool {
        self.traffic.is_some()
    }

    fn traffic_mut(&mut self) -> &mut Traffic {
        self.traffic.get_or_insert_with(Box::default)
    }

    /// Messages waiting for the inflight window, in order.
    pub fn queue(&self) -> &VecDeque<Delivery> {
        self.traffic.as_ref().map_or(&NO_QUEUE, |t| &t.queue)
    }

    pub fn queue_mut(&mut self) -> &mut VecDeque<Delivery> {
        &mut self.traffic_mut().queue
    }

    /// The next queued message, without allocating anything for a session that has none.
    pub fn pop_queued(&mut self) -> Option<Delivery> {
        self.traffic.as_mut()?.queue.pop_front()
    }

    /// The last queued message (only the planted bug `BudgetEvictsNewest` takes it).
    pub fn pop_queued_newest(&mut self) -> Option<Delivery> {
        self.traffic.as_mut()?.queue.pop_back()
    }

    /// Outgoing QoS 1/2 messages not yet fully acknowledged, in the order first sent.
    pub fn inflight(&self) -> &VecDeque<Inflight> {
        self.traffic.as_ref().map_or(&NO_INFLIGHT, |t| &t.inflight)
    }

    /// Where an inflight message stands; its packet id stays as it is (ids change only through `push_inflight`,
    /// `remove_inflight` and `clear_inflight`).
    pub fn set_inflight_state(&mut self, position: usize, state: Awaiting) {
        if let Some(entry) = self.traffic_mut().inflight.get_mut(position) {
            entry.state = state;
        }
    }

    /// Packet identifiers of incoming QoS 2 messages waiting for PUBREL [MQTT-4.3.3-9].
    pub fn incoming_qos2(&self) -> &BTreeSet<u16> {
        self.traffic.as_ref().map_or(&NO_IDS, |t| &t.incoming_qos2)
    }

    pub fn incoming_qos2_mut(&mut self) -> &mut BTreeSet<u16> {
        &mut self.traffic_mut().incoming_qos2
    }

    /// Connections holding PUBLISHes until this session's queue has room again (see `flow`).
    pub fn waiters(&self) -> &BTreeSet<ConnectionId> {
        self.traffic.as_ref().map_or(&NO_WAITERS, |t| &t.waiters)
    }

    pub fn waiters_mut(&mut self) -> &mut BTreeSet<ConnectionId> {
        &mut self.traffic_mut().waiters
    }

    pub fn push_inflight(&mut self, entry: Inflight) {
        let traffic = self.traffic_mut();
        traffic.inflight_ids.insert(entry.packet_id);
        traffic.inflight.push_back(entry);
    }

    pub fn remove_inflight(&mut self, position: usize) -> Option<Inflight> {
        let traffic = self.traffic.as_mut()?;
        let entry = traffic.inflight.remove(position)?;
        traffic.inflight_ids.remove(&entry.packet_id);
        Some(entry)
    }

    pub fn clear_inflight(&mut self) {
        if let Some(traffic) = self.traffic.as_mut() {
            traffic.inflight.clear();
            traffic.inflight_ids.clear();
        }
    }

    pub fn inflight_position(&self, packet_id: u16) -> Option<usize> {
        self.inflight().iter().position(|entry| entry.packet_id == packet_id)
    }

    /// Total of queued and inflight messages, for the queue bound.
    pub fn pending_count(&self) -> usize {
        self.queue().len() + self.inflight().len()
    }
}
