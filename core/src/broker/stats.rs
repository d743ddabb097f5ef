//! Counters for `$SYS` topics, logs, the driver's metrics and the simulator's summary.

use crate::packet::{QoS, ReasonCode};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub connections_opened: u64,
    pub connections_closed: u64,
    pub clients_connected_max: u64,
    pub messages_received: u64,
    pub messages_sent: u64,
    /// Messages not delivered because of a full queue, a slow consumer or a client's Maximum Packet Size.
    pub messages_dropped: u64,
    /// `messages_dropped`, split by why (indexed by `DropCause as usize`).
    pub drops_by_cause: [u64; DropCause::ALL.len()],
    /// `messages_received` / `messages_sent` split by QoS (indexed by `QoS as usize`), with their payload bytes.
    pub messages_received_by_qos: [u64; 3],
    pub messages_sent_by_qos: [u64; 3],
    pub payload_bytes_received_by_qos: [u64; 3],
    pub payload_bytes_sent_by_qos: [u64; 3],
    /// CONNECTs answered with a refusing CONNACK, by reason code (the 3.1.1 return code is derived from it).
    pub connects_refused: BTreeMap<u8, u64>,
    /// QoS 1/2 PUBLISHes whose acknowledgement waited for room in a subscriber's queue.
    pub publishes_held: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub protocol_errors: u64,
    /// Connections closed because bytes buffered before CONNACK exceeded `max_preconnect_bytes`.
    pub preconnect_budget_closes: u64,
    /// Connections closed for sending without reading their replies (see `REPLY_SLACK`).
    pub unread_reply_closes: u64,
    /// 3.1.1/3.1 connections closed because a QoS 1/2 PUBLISH arrived while storage took no writes [MQTT-4.8.0-2].
    pub transient_error_closes: u64,
    /// CONNECTs, PUBLISHes and SUBSCRIBE filters refused by a quota (see `quota`).
    pub quota_refusals: u64,
    pub wills_published: u64,
    /// Persistence records emitted.
    pub records_written: u64,
}

/// Why a message was not delivered (or not routed at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropCause {
    /// A publish quota (rate, topic size, the total queued-bytes budget) refused it.
    Quota,
    /// An offline session's queue was full.
    QueueFull,
    /// QoS 0 for a reader whose output buffer is full.
    SlowConsumer,
    /// QoS 0 for an offline session (never queued).
    Offline,
    /// Larger than the client's Maximum Packet Size even without optional properties.
    PacketTooLarge,
    /// Still queued when its session ended.
    SessionEnded,
    /// Evicted from an offline session to bring the total queued bytes back under budget.
    Evicted,
    /// A will whose author may no longer publish to its topic.
    WillDenied,
}

impl DropCause {
    pub const ALL: [DropCause; 8] = [
        DropCause::Quota,
        DropCause::QueueFull,
        DropCause::SlowConsumer,
        DropCause::Offline,
        DropCause::PacketTooLarge,
        DropCause::SessionEnded,
        DropCause::Evicted,
        DropCause::WillDenied,
    ];

    /// The label value for metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropCause::Quota => "quota",
            DropCause::QueueFull => "queue_full",
            DropCause::SlowConsumer => "slow_consumer",
            DropCause::Offline => "offline",
            DropCause::PacketTooLarge => "packet_too_large",
            DropCause::SessionEnded => "session_ended",
            DropCause::Evicted => "evicted",
            DropCause::WillDenied => "will_denied",
        }
    }
}

impl Stats {
    pub(super) fn dropped(&mut self, cause: DropCause, count: u64) {
        self.messages_dropped += count;
        self.drops_by_cause[cause as usize] += count;
    }

    pub(super) fn received(&mut self, qos: QoS, payload_len: usize) {
        self.messages_received += 1;
        self.messages_received_by_qos[qos as usize] += 1;
        self.payload_bytes_received_by_qos[qos as usize] += payload_len as u64;
    }

    pub(super) fn sent(&mut self, qos: QoS, payload_len: usize) {
        self.messages_sent += 1;
        self.messages_sent_by_qos[qos as usize] += 1;
        self.payload_bytes_sent_by_qos[qos as usize] += payload_len as u64;
    }

    pub(super) fn connect_refused(&mut self, reason: ReasonCode) {
        *self.connects_refused.entry(reason.0).or_default() += 1;
    }
}

/// The broker's state at one moment, for metrics (`Broker::gauges`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    pub clients_connected: u64,
    pub sessions: u64,
    pub subscriptions: u64,
    /// Retained messages published by clients (the broker's own `$SYS` ones are not counted).
    pub retained_messages: u64,
    /// Payload bytes of those retained messages.
    pub retained_bytes: u64,
    /// QoS 1/2 messages waiting in session queues (not yet sent).
    pub queued_messages: u64,
    /// Payload bytes of QoS 1/2 messages held by sessions, queued and in flight.
    pub queued_bytes: u64,
    /// QoS 1/2 messages sent and not yet acknowledged.
    pub inflight_messages: u64,
}
