//! Segments that carry several packets. A real client's back-to-back PUBLISHes often reach the broker in one TCP
//! segment, which the broker reads in one input and decodes in a loop; without this, every simulated packet is an
//! input of its own and that loop never sees a second PUBLISH. The model processes the packets of one input in
//! the broker's order and routes them in one batch, so only the per-publisher ordering check (not the queue-order
//! check, which cannot order deliveries of one input) holds their deliveries in order [MQTT-4.6.0-6].

use super::{Event, World};
use crate::client::Outgoing;
use crate::coverage::Feature;
use bytes::Bytes;
use mqtt_core::broker::ConnectionId;
use mqtt_core::packet::Packet;
use rand::Rng;

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

impl World {
    /// With coalescing on, a QoS 1/2 PUBLISH is sometimes followed at once by another on the same topic (a burst,
    /// as a sensor sends readings), which then often shares its segment: the order of such pairs is what the
    /// broker's decoding loop must keep [MQTT-4.6.0-6]. The second carries a Message Expiry Interval exactly when the
    /// first does not, so pairs of both kinds occur.
    pub(super) fn publish_burst(&mut self, client: usize) {
        if !self.opts.coalesce || !self.rng.gen_bool(0.3) {
            return;
        }
        let c = &self.clients[client];
        let first = c.next_seq.checked_sub(1).map(|seq| format!("m{client}:{seq} "));
        let last = c.outgoing.values().find_map(|o| match o {
            Outgoing::AwaitingAck(p) if first.as_ref().is_some_and(|f| p.payload.starts_with(f.as_bytes())) => {
                Some(p.clone())
            }
            _ => None,
        });
        let Some(mut publish) = last.filter(|_| c.can_publish_qos()) else {
            return;
        };
        let expiry = match publish.properties.message_expiry_interval {
            Some(_) => None,
            None if self.opts.expiry && c.version.is_v5() => Some(self.rng.gen_range(1..10)),
            None => None,
        };
        let c = &mut self.clients[client];
        let seq = c.next_seq;
        c.next_seq += 1;
        publish.packet_id = c.allocate_packet_id();
        publish.retain = false;
        publish.payload = Bytes::from(format!("m{client}:{seq} "));
        publish.properties.message_expiry_interval = expiry;
        c.outgoing
            .insert(publish.packet_id, Outgoing::AwaitingAck(publish.clone()));
        self.counts.published += 1;
        self.send(client, Packet::Publish(*publish));
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
