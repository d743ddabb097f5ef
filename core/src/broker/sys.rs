//! `$SYS/broker/...` statistics, published as retained messages under the names Mosquitto uses, so existing
//! dashboards work.

use super::message::{Message, MessageTopic};
use super::{Broker, Gauges};
use crate::packet::QoS;
use bytes::Bytes;
use std::sync::Arc;

/// Topics under this prefix are the broker's own: clients cannot publish there, and its retained statistics are
/// regenerated every interval rather than persisted.
pub(super) const SYS_PREFIX: &str = "$SYS";

impl Broker {
    /// The broker's current sizes, for metrics. Walks every session and retained message: call it when asked
    /// (a scrape), not per input.
    pub fn gauges(&self) -> Gauges {
        // The broker's own `$SYS` statistics are left out: they say nothing about the clients' load.
        let (mut retained_messages, mut retained_bytes) = (0u64, 0u64);
        self.retained.for_each(|topic, message| {
            if !topic.starts_with(SYS_PREFIX) {
                retained_messages += 1;
                retained_bytes += message.payload.len() as u64;
            }
        });
        let (mut queued, mut inflight) = (0u64, 0u64);
        for session in self.sessions.values() {
            queued += session.queue().len() as u64;
            inflight += session.inflight().len() as u64;
        }
        Gauges {
            clients_connected: self.connected_clients as u64,
            sessions: self.sessions.len() as u64,
            subscriptions: self.subscriptions.len() as u64,
            retained_messages,
            retained_bytes,
            queued_messages: queued,
            queued_bytes: self.quotas.queued_bytes_total(),
            inflight_messages: inflight,
        }
    }

    pub(super) fn publish_sys(&mut self) {
        let uptime = self.now.saturating_sub(self.started_at.unwrap_or(self.now)).as_secs();
        let stats = &self.stats;
        let disconnected = self.sessions.values().filter(|s| s.connection.is_none()).count();
        let stored: usize = self.sessions.values().map(|s| s.pending_count()).sum();
        let (bytes_received, bytes_sent) = if self.planted(super::planted::PlantedBug::SysBytesSwapped) {
            (stats.bytes_sent, stats.bytes_received)
        } else {
            (stats.bytes_received, stats.bytes_sent)
        };
        let values: Vec<(&str, String)> = vec![
            (
                "$SYS/broker/version",
                format!("mqtt-broker {}", env!("CARGO_PKG_VERSION")),
            ),
            ("$SYS/broker/uptime", format!("{uptime} seconds")),
            ("$SYS/broker/clients/connected", self.connected_clients.to_string()),
            ("$SYS/broker/clients/disconnected", disconnected.to_string()),
            (
                "$SYS/broker/clients/total",
                (self.connected_clients + disconnected).to_string(),
            ),
            ("$SYS/broker/clients/maximum", stats.clients_connected_max.to_string()),
            ("$SYS/broker/messages/received", stats.messages_received.to_string()),
            ("$SYS/broker/messages/sent", stats.messages_sent.to_string()),
            (
                "$SYS/broker/publish/messages/dropped",
                stats.messages_dropped.to_string(),
            ),
            ("$SYS/broker/bytes/received", bytes_received.to_string()),
            ("$SYS/broker/bytes/sent", bytes_sent.to_string()),
            ("$SYS/broker/subscriptions/count", self.subscriptions.len().to_string()),
            ("$SYS/broker/retained messages/count", self.retained.len().to_string()),
            ("$SYS/broker/store/messages/count", stored.to_string()),
        ];
        for (topic, value) in values {
            let message = Message {
                id: self.next_message_id(),
                topic: MessageTopic::new(topic),
                payload: Bytes::from(value),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: Default::default(),
                expires_at: None,
            };
            self.publish_message(Arc::new(message), None);
        }
    }
}
