//! One of the bridge's two MQTT client connections (to the local broker, or to the remote one): its packet ids,
//! the messages it published and has not seen acknowledged, the messages it received and has not acknowledged yet,
//! the queue of messages waiting to be published on it, and its keep alive.

use crate::codec::{encode, Decoder};
use crate::packet::{Packet, ProtocolVersion, Publish, QoS};
use crate::time::Time;
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// No transport; `retry_at` says when the bridge asks for one again.
    Down,
    /// A transport was asked for (`Output::Open*`); `RemoteOpened` / `LocalOpened` not seen yet.
    Opening,
    /// CONNECT sent, CONNACK awaited.
    Connecting,
    Up,
}

/// The message a forwarded message came from: its packet id on the other link, in that link's session
/// `generation` (an id of a session the other broker has forgotten acknowledges nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub packet_id: u16,
    pub generation: u64,
}

/// A message waiting to be published on this link.
#[derive(Debug, Clone)]
pub struct Pending {
    pub publish: Publish,
    pub origin: Option<Origin>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // named after the packets awaited
pub enum Awaiting {
    /// QoS 1: PUBACK awaited.
    PubAck,
    /// QoS 2: PUBREC awaited.
    PubRec,
    /// QoS 2: PUBREL sent, PUBCOMP awaited.
    PubComp,
}

/// A QoS 1/2 message published on this link and not yet acknowledged.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Publication order, for resending in it [MQTT-4.6.0-1].
    pub seq: u64,
    pub publish: Publish,
    pub origin: Option<Origin>,
    pub state: Awaiting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceivedState {
    /// Handed to the other link; its acknowledgement there is awaited.
    Forwarded,
    /// QoS 1, acknowledged on the other side while this link was down: PUBACK is sent when the broker resends.
    Acked,
    /// QoS 2: PUBREC sent (or owed, if the link was down); PUBREL awaited.
    RecSent,
}

/// A QoS 1/2 message received on this link and not yet (fully) acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub qos: QoS,
    pub state: ReceivedState,
}

pub struct Link {
    pub version: ProtocolVersion,
    pub state: LinkState,
    /// When a `Down` link is opened again.
    pub retry_at: Option<Time>,
    /// When an `Opening` / `Connecting` link gives up.
    pub connect_deadline: Option<Time>,
    pub decoder: Decoder,
    max_packet_size: usize,
    next_id: u16,
    next_seq: u64,
    pub sent: BTreeMap<u16, Sent>,
    pub received: BTreeMap<u16, Received>,
    /// Bumped whenever the broker on this link starts a new session: acknowledgements owed to the old one are void.
    pub generation: u64,
    /// Only through `push` / `pop`, which keep `qos0_queued`.
    queue: VecDeque<Pending>,
    /// QoS 0 messages in `queue`.
    pub qos0_queued: usize,
    /// The broker's Receive Maximum: QoS 1/2 messages in `sent` at most.
    pub send_quota: usize,
    /// The broker's Maximum QoS.
    pub max_qos: QoS,
    /// The negotiated keep alive; zero disables it.
    pub keep_alive: Duration,
    pub last_sent: Time,
    pub last_received: Time,
    /// The driver cannot write more to this connection for now (`Input::Blocked`).
    pub blocked: bool,
    /// Bytes to transmit, collected during one input.
    pub tx: BytesMut,
}

impl Link {
    pub fn new(version: ProtocolVersion, max_packet_size: usize) -> Link {
        Link {
            version,
            state: LinkState::Down,
            retry_at: None,
            connect_deadline: None,
            decoder: Decoder::new(Some(version), max_packet_size),
            max_packet_size,
            next_id: 0,
            next_seq: 0,
            sent: BTreeMap::new(),
            received: BTreeMap::new(),
            generation: 0,
            queue: VecDeque::new(),
            qos0_queued: 0,
            send_quota: 0,
            max_qos: QoS::ExactlyOnce,
            keep_alive: Duration::ZERO,
            last_sent: Time::ZERO,
            last_received: Time::ZERO,
            blocked: false,
            tx: BytesMut::new(),
        }
    }

    pub fn max_packet_size(&self) -> usize {
        self.max_packet_size
    }

    pub fn is_up(&self) -> bool {
        self.state == LinkState::Up
    }

    /// A fresh transport: a new decoder (no bytes of the old one carry over).
    pub fn opened(&mut self, now: Time) {
        self.decoder = Decoder::new(Some(self.version), self.max_packet_size);
        self.tx.clear();
        self.last_sent = now;
        self.last_received = now;
    }

    /// The transport is gone. What was sent and received stays, to be resent or answered after reconnecting.
    pub fn closed(&mut self) {
        self.state = LinkState::Down;
        self.connect_deadline = None;
        self.blocked = false;
        self.tx.clear();
    }

    /// The broker on this link remembers nothing of the previous connection's session: acknowledgements owed to
    /// it are void (its messages will not be resent) [MQTT-3.2.2-2].
    pub fn new_session(&mut self) {
        self.generation += 1;
        self.received.clear();
    }

    /// Encode `packet` for sending; a packet that cannot be encoded (over a limit) is reported to the caller.
    pub fn send(&mut self, now: Time, packet: &Packet) -> Result<(), crate::codec::EncodeError> {
        encode(packet, self.version, &mut self.tx)?;
        self.last_sent = now;
        Ok(())
    }

    pub fn front(&self) -> Option<&Pending> {
        self.queue.front()
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn take_tx(&mut self) -> Option<Bytes> {
        (!self.tx.is_empty()).then(|| self.tx.split().freeze())
    }

    /// A packet id not in use by an unacknowledged message. Callers keep `sent` below 65,535 entries.
    pub fn allocate_id(&mut self) -> u16 {
        loop {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.sent.contains_key(&self.next_id) {
                return self.next_id;
            }
        }
    }

    pub fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    pub fn push(&mut self, pending: Pending) {
        if pending.publish.qos == QoS::AtMostOnce {
            self.qos0_queued += 1;
        }
        self.queue.push_back(pending);
    }

    pub fn pop(&mut self) -> Option<Pending> {
        let pending = self.queue.pop_front()?;
        if pending.publish.qos == QoS::AtMostOnce {
            self.qos0_queued -= 1;
        }
        Some(pending)
    }

    /// The next keep-alive deadline: a PINGREQ due, or the broker silent for too long.
    pub fn keep_alive_deadline(&self) -> Option<Time> {
        if !self.is_up() || self.keep_alive.is_zero() {
            return None;
        }
        let ping = self.last_sent + self.keep_alive;
        // One and a half keep alives of silence (the server's own rule [MQTT-3.1.2-22]) mean the broker is gone.
        let dead = self.last_received + self.keep_alive.mul_f32(1.5);
        Some(ping.min(dead))
    }
}
