//! Acknowledgement order on one connection: PUBACKs leave in the order the broker read the QoS 1 PUBLISHes, and
//! PUBRECs in the order of the QoS 2 ones. Section 4.6 states the rule for the receiver of PUBLISHes
//! [MQTT-4.6.0-2], [MQTT-4.6.0-3] (the statements are worded for the Client; the broker is the receiver of its
//! clients' PUBLISHes and follows them, as `mqtt_core::broker::flow` says: "acknowledged in turn").
//!
//! What the broker may legitimately do, and why the check still holds:
//! - a PUBLISH held for room is acknowledged when it is routed, and every later QoS 1/2 PUBLISH of its connection
//!   waits behind it (refused ones too): the order stays;
//! - a refusal (0x87, 0x90, 0x97, ...) is an acknowledgement like any other, in its turn;
//! - a QoS 1 resend with DUP is a new PUBLISH, acknowledged in its turn; a QoS 2 resend of an id awaiting PUBREL
//!   is answered PUBREC again [MQTT-4.3.3-9], also in its turn (behind PUBLISHes held before it);
//! - a resend of a PUBLISH the broker still holds on the same connection is not a new one (the held copy is
//!   acknowledged), so it takes no place of its own;
//! - a connection closed mid-way acknowledges nothing more, so nothing after the gap can overtake it.
//!
//! Checked as the broker's output is decoded (`World::decode_acks`), in the order it leaves.

use super::*;
use std::collections::VecDeque;

/// Per connection, the packet ids of the QoS 1 and of the QoS 2 PUBLISHes read and not yet acknowledged, in
/// reading order.
#[derive(Debug, Default)]
pub struct AckOrder {
    unacked: BTreeMap<ConnectionId, [VecDeque<u16>; 2]>,
}

fn lane(qos: QoS) -> Option<usize> {
    match qos {
        QoS::AtMostOnce => None,
        QoS::AtLeastOnce => Some(0),
        QoS::ExactlyOnce => Some(1),
    }
}

impl World {
    /// The broker read a PUBLISH on `conn`: a QoS 1/2 one is owed its acknowledgement after those read before it.
    pub(super) fn ack_order_read(&mut self, conn: ConnectionId, publish: &Publish) {
        let Some(lane) = lane(publish.qos) else {
            return;
        };
        let ids = &mut self.ack_order.unacked.entry(conn).or_default()[lane];
        // A resend of one still unacknowledged here (held by the broker) is not a new PUBLISH.
        if !ids.contains(&publish.packet_id) {
            ids.push_back(publish.packet_id);
        }
    }

    /// The broker sent a PUBACK (`pubrec` false) or a PUBREC for `packet_id` on `conn`: every PUBLISH of that QoS it
    /// read there before must have been acknowledged already [MQTT-4.6.0-2], [MQTT-4.6.0-3].
    pub(super) fn ack_order_sent(&mut self, conn: ConnectionId, pubrec: bool, packet_id: u16) -> Result<(), Violation> {
        let Some(lanes) = self.ack_order.unacked.get_mut(&conn) else {
            return Ok(());
        };
        let ids = &mut lanes[usize::from(pubrec)];
        let Some(position) = ids.iter().position(|id| *id == packet_id) else {
            return Ok(());
        };
        let earlier: Vec<u16> = ids.drain(..=position).take(position).collect();
        if earlier.is_empty() {
            return Ok(());
        }
        let (kind, qos, statement) = if pubrec {
            ("PUBREC", 2, "[MQTT-4.6.0-3]")
        } else {
            ("PUBACK", 1, "[MQTT-4.6.0-2]")
        };
        Err(Violation(format!(
            "{conn:?}: the broker sent the {kind} of QoS {qos} PUBLISH id={packet_id} before acknowledging id(s) \
             {earlier:?}, read earlier on the same connection: acknowledgements out of order {statement}"
        )))
    }

    /// The connection is gone: nothing more is acknowledged on it.
    pub(super) fn ack_order_closed(&mut self, conn: ConnectionId) {
        self.ack_order.unacked.remove(&conn);
    }
}
