//! What the driver needs to bound the memory of connected clients beyond the core's own limits: the partial packet
//! each holds (for the global input budget, `max_partial_input_bytes`, which the driver enforces by not reading
//! from the connections that hold the most) and the output the core holds for it (which, with the driver's own
//! unsent bytes, counts against `max_outbuf_bytes`).

use super::{Broker, ConnectionId, Phase};

/// The packet a connected client has begun and not finished sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartialInput {
    /// Bytes of it received and held.
    pub held: usize,
    /// Bytes still to come before it is whole (1 while its length is not known yet).
    pub missing: usize,
}

impl Broker {
    /// The partial packet `conn` holds once past CONNACK (before it, `max_preconnect_bytes` bounds what a
    /// connection holds, and this is empty). Call between inputs, when every whole packet has been decoded.
    pub fn partial_input(&self, conn: ConnectionId) -> PartialInput {
        match self.connections.if_open(conn) {
            Some(connection) if connection.phase == Phase::Connected => PartialInput {
                held: connection.decoder.buffered(),
                missing: connection.decoder.missing(),
            },
            _ => PartialInput::default(),
        }
    }

    /// Bytes encoded for `conn` and not yet handed out (the core holds them while the driver reports the
    /// connection write-blocked).
    pub fn unsent_output(&self, conn: ConnectionId) -> usize {
        self.connections.if_open(conn).map_or(0, |c| c.outbuf.len())
    }
}

#[cfg(test)]
mod tests {
    use crate::harness::{connect_packet, Harness};
    use crate::packet::{Packet, ProtocolVersion, Publish, QoS};

    #[test]
    fn a_partial_publish_is_reported_with_what_is_missing_until_it_is_whole() {
        let mut harness = Harness::new(super::super::Config::default());
        let (conn, connack) = harness.connect(connect_packet(ProtocolVersion::V5, "partial"));
        assert!(matches!(connack, Some(Packet::ConnAck(_))));
        let publish = Packet::Publish(Publish {
            topic: "t".into(),
            payload: vec![7u8; 100_000].into(),
            qos: QoS::AtMostOnce,
            ..Publish::default()
        });
        let mut bytes = bytes::BytesMut::new();
        crate::codec::encode(&publish, ProtocolVersion::V5, &mut bytes).expect("encodable");
        let (head, tail) = bytes.split_at(60_000);
        harness.send_bytes(conn, head);
        let partial = harness.broker.partial_input(conn);
        assert_eq!((partial.held, partial.missing), (60_000, bytes.len() - 60_000));
        harness.send_bytes(conn, &tail[..1]);
        assert_eq!(harness.broker.partial_input(conn).missing, tail.len() - 1);
        harness.send_bytes(conn, &tail[1..]);
        assert_eq!(harness.broker.partial_input(conn), super::PartialInput::default());
    }
}
