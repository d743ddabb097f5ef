//! A QoS 1/2 PUBLISH of a 3.1.1/3.1 client read while storage is suspended closes its connection at once: the
//! client cannot be told of the transient error [MQTT-4.8.0-2] (see `mqtt_core::broker` flow). The broker then
//! reads nothing more of that input, so the PUBLISHes coalesced behind it in the same segment (see `coalesce`) are
//! never processed (seed 4010: a QoS 0 RETAIN PUBLISH behind a closing QoS 1 one does not become the topic's
//! retained message [MQTT-3.3.1-5]).

use super::World;
use mqtt_core::broker::ConnectionId;
use mqtt_core::packet::{Publish, QoS};

/// Whether the broker processes the rest of the input it is reading from a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum RestOfInput {
    #[default]
    Read,
    /// An earlier PUBLISH of the input was a QoS 2 resend the model is unsure the broker kept the id of: answered
    /// as a duplicate (nothing to store [MQTT-4.3.3-9]), the input goes on; not kept, it closed the connection.
    MaybeUnread,
    /// An earlier PUBLISH of the input closed the connection.
    Unread,
}

impl World {
    /// A new input from `conn` starts: whatever closed it in an earlier one ended it there.
    pub(super) fn input_starts(&mut self, conn: ConnectionId) {
        if let Some(link) = self.links.get_mut(&conn) {
            link.rest_of_input = RestOfInput::Read;
        }
    }

    /// Whether the broker reads the packet the model is about to process.
    pub(super) fn rest_of_input(&self, conn: ConnectionId) -> RestOfInput {
        self.links.get(&conn).map_or(RestOfInput::Read, |l| l.rest_of_input)
    }

    /// The model reads this PUBLISH of `client` on `conn` (before it routes it): if storage is suspended and the
    /// client cannot be told, the broker closes the connection at it, unless it is a QoS 2 resend the broker
    /// answers as a duplicate before any admission (a certain one, or one the model is unsure of).
    pub(super) fn transient_close_reads(&mut self, client: usize, conn: ConnectionId, publish: &Publish) {
        if self.suspension.is_none() || publish.qos == QoS::AtMostOnce || self.clients[client].version.is_v5() {
            return;
        }
        let qos2 = publish.qos == QoS::ExactlyOnce;
        let unsure = qos2 && self.model.qos2_unsure.contains(&(client, publish.packet_id));
        let duplicate = qos2 && self.model.sessions[client].qos2_pending.contains(&publish.packet_id);
        let rest = match (unsure, duplicate) {
            (true, _) => RestOfInput::MaybeUnread,
            (false, true) => return,
            (false, false) => RestOfInput::Unread,
        };
        if let Some(link) = self.links.get_mut(&conn) {
            link.rest_of_input = link.rest_of_input.max(rest);
        }
    }
}
