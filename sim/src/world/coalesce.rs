//! Segments that carry several packets. A real client's back-to-back PUBLISHes often reach the broker in one TCP
//! segment, which the broker reads in one input and decodes in a loop; without this, every simulated packet is an
//! input of its own and that loop never sees a second PUBLISH. The model processes the packets of one input in
//! the broker's order and routes them in one batch, so only the per-publisher ordering check (not the queue-order
//! check, which cannot order deliveries of one input) holds their deliveries in order [MQTT-4.6.0-6].

use super::{Event, World};
use crate::coverage::Feature;
use mqtt_core::broker::ConnectionId;

/// The first byte of a PUBLISH's fixed header, whatever its flags.
fn is_publish(data: &[u8]) -> bool {
    data.first().is_some_and(|b| b >> 4 == 3)
}

impl World {
    /// Schedules `data` (one packet) to reach the broker at `at`: with coalescing on, a PUBLISH due at the same
    /// moment as the PUBLISHes last scheduled on the connection, still in flight, joins their segment. Only
    /// PUBLISHes join, so keep-alive pings stay segments of their own (the liveness phase tells them apart).
    pub(super) fn schedule_to_broker(&mut self, conn: ConnectionId, at: u64, data: Vec<u8>) {
        let tail = self.links.get(&conn).and_then(|l| l.segment).filter(|key| key.0 == at);
        if let Some(key) = tail.filter(|_| self.opts.coalesce && is_publish(&data)) {
            if let Some(Event::ToBroker { data: segment, .. }) = self.queue.get_mut(&key) {
                segment.extend_from_slice(&data);
                self.coverage.hit(Feature::PublishesCoalesced);
                return;
            }
        }
        let publish = is_publish(&data);
        self.schedule(at, Event::ToBroker { conn, data });
        if let Some(link) = self.links.get_mut(&conn) {
            link.segment = publish.then_some((at, self.sequence));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_publish;

    #[test]
    fn only_publishes_join_a_segment() {
        assert!(is_publish(&[0x30, 0x00]));
        assert!(is_publish(&[0x3d, 0x00]), "any flags (DUP, QoS, RETAIN)");
        assert!(!is_publish(&[0xC0, 0x00]), "PINGREQ");
        assert!(!is_publish(&[0x40, 0x02, 0x00, 0x01]), "PUBACK");
        assert!(!is_publish(&[]));
    }
}
