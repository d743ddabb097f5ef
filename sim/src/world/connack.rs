//! What a successful CONNACK tells an MQTT 5 client about the broker and its session: Retain Available 0 when the
//! broker keeps no retained messages, and the client identifier it assigned when the CONNECT had none
//! [MQTT-3.2.2-16], one no other client has [MQTT-3.1.3-6].

use super::*;
use crate::coverage::Feature;

impl World {
    pub(super) fn check_connack(&mut self, client: usize, packet: &Packet) -> Result<(), Violation> {
        let Packet::ConnAck(connack) = packet else {
            return Ok(());
        };
        self.check_certified_connack(client, connack)?;
        if connack.reason.is_error() || !self.clients[client].version.is_v5() {
            return Ok(());
        }
        let properties = &connack.properties;
        if self.opts.retain_unavailable {
            if properties.retain_available != Some(0) {
                return Err(Violation(format!(
                    "c{client}: CONNACK says Retain Available {:?}, but the broker keeps no retained messages",
                    properties.retain_available
                )));
            }
            self.coverage.hit(Feature::RetainUnavailable);
        }
        let asked_none = self.clients[client].client_id.is_empty();
        match (&properties.assigned_client_identifier, asked_none) {
            (None, false) => Ok(()),
            (Some(id), false) => Err(Violation(format!(
                "c{client}: CONNACK assigns '{id}' to a client that named itself"
            ))),
            (None, true) => Err(Violation(format!(
                "c{client}: CONNECT had no client identifier and CONNACK assigns none [MQTT-3.2.2-16]"
            ))),
            (Some(id), true) => {
                let taken = id.is_empty() || id.starts_with("sim-") || id.starts_with("bad-") || id == "retained-probe";
                if taken || !self.assigned_ids.insert(id.clone()) {
                    return Err(Violation(format!(
                        "c{client}: CONNACK assigns '{id}', which is empty or another client's [MQTT-3.1.3-6]"
                    )));
                }
                self.coverage.hit(Feature::AssignedClientId);
                Ok(())
            }
        }
    }
}
