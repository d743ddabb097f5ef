//! What a simulated client does with each packet the broker sends it, and the per-packet invariants checked
//! on the way (Session Present, packet identifiers, Receive Maximum, granted QoS, wills).

use super::*;
use crate::invariants;

impl World {
    pub(super) fn client_receives(&mut self, client: usize, packet: Packet) -> Result<(), Violation> {
        match packet {
            Packet::ConnAck(connack) => {
                if connack.reason.is_error() {
                    return Err(Violation(format!("c{client} refused: {:?}", connack.reason)));
                }
                self.check_connack_maximum_qos(client, &connack)?;
                let expected = self.model.sessions[client].expect_present.take();
                invariants::session_present(client, expected, connack.session_present)?;
                let broker_max = connack.properties.receive_maximum.unwrap_or(u16::MAX);
                let c = &mut self.clients[client];
                c.broker_alias_max = connack.properties.topic_alias_maximum.unwrap_or(0);
                c.broker_receive_maximum = broker_max.min(self.opts.receive_maximum);
                for resend in c.on_connack(connack.session_present) {
                    self.send(client, resend);
                }
            }
            Packet::Publish(mut publish) => {
                self.check_delivery_maximum_qos(client, &publish)?;
                let c = &mut self.clients[client];
                if let Some(alias) = publish.properties.topic_alias {
                    if publish.topic.is_empty() {
                        publish.topic = c
                            .topic_aliases
                            .get(&alias)
                            .cloned()
                            .ok_or_else(|| Violation(format!("c{client}: unknown alias {alias} from broker")))?;
                    } else {
                        c.topic_aliases.insert(alias, publish.topic.clone());
                    }
                }
                invariants::inbound_publish(client, c, &publish)?;
                // A PUBLISH without DUP is a new delivery [MQTT-3.3.1-1] even when the client still holds its QoS 2
                // packet id from a session it did not see end (the CONNACK saying Session Present 0 was lost with
                // its connection): the client takes it for a duplicate and drops it, but the broker did deliver it
                // (seed 19670).
                let first_time = c.on_publish(&publish) || !publish.dup;
                invariants::receive_maximum(client, c, self.opts.max_inflight)?;
                // The session epoch is the model's: a CONNACK lost in a cut leaves the client unaware of a new session.
                let epoch = self.model.sessions[client].epoch;
                let filters = c.filters_ever.clone();
                if publish.topic.starts_with("will/") {
                    if let Some(id) = message_id(&publish.payload) {
                        self.model.on_will_delivery(&id, self.now)?;
                        // A delayed will is checked for timing and for a matching filter only (see `WillState`).
                        if matches!(self.model.wills.get(&id), Some(WillState::Delayed { .. })) {
                            if self.clients[client].qos_bound(&publish.topic).is_none() {
                                return Err(Violation(format!(
                                    "c{client} got will {id} on '{}' without a matching subscription [MQTT-4.7]",
                                    publish.topic
                                )));
                            }
                            // Its copy was queued and sits in the inflight window like any delivery, which the
                            // queue count must follow (seed 10406: c2 got w0:4, published at a restart whose clock
                            // jump ran its delay out, and then m0:18; w0:4 stayed unreceived, so it was taken for
                            // dropped and its window slot for free, one short of c2's full queue).
                            if first_time && publish.qos != QoS::AtMostOnce {
                                self.model.on_receipt(client, epoch, &publish, &id, self.now)?;
                            }
                            return Ok(());
                        }
                    }
                }
                if publish.retain {
                    let v5 = self.clients[client].version.is_v5();
                    self.model.check_retained_expiry(client, epoch, &publish, v5)?;
                }
                if self.clients[client].version.is_v5() {
                    let info = message_id(&publish.payload).and_then(|id| self.model.messages.get(&id));
                    if let Some(info) = info {
                        invariants::message_expiry(client, info, &publish, self.now)?;
                    }
                }
                let ordered = self.model.expiring_ordered;
                self.model
                    .on_delivery(client, epoch, &publish, first_time, &filters, self.now)?;
                if self.model.expiring_ordered > ordered {
                    self.coverage.hit(crate::coverage::Feature::ExpiringInOrder);
                }
            }
            Packet::PubAck(ack) => {
                self.check_rate_ack(client, &ack)?;
                let c = &mut self.clients[client];
                if matches!(c.outgoing.get(&ack.packet_id), Some(Outgoing::AwaitingAck(p)) if p.qos == QoS::AtLeastOnce)
                {
                    c.outgoing.remove(&ack.packet_id);
                }
            }
            Packet::PubRec(rec) => {
                self.check_rate_ack(client, &rec)?;
                let c = &mut self.clients[client];
                let ours = matches!(c.outgoing.get(&rec.packet_id), Some(Outgoing::AwaitingAck(p)) if p.qos == QoS::ExactlyOnce);
                if ours && rec.reason.is_error() {
                    // Refused (0x97 while the broker's disk is full, say): the flow ends here, no PUBREL.
                    c.outgoing.remove(&rec.packet_id);
                } else if ours {
                    c.outgoing.insert(rec.packet_id, Outgoing::AwaitingComp(rec.packet_id));
                    self.send(
                        client,
                        Packet::PubRel(PubResponse::new(rec.packet_id, ReasonCode::SUCCESS)),
                    );
                }
            }
            Packet::PubComp(comp) => {
                let c = &mut self.clients[client];
                if matches!(c.outgoing.get(&comp.packet_id), Some(Outgoing::AwaitingComp(_))) {
                    c.outgoing.remove(&comp.packet_id);
                }
            }
            Packet::PubRel(rel) => {
                let ack = Packet::PubComp(PubResponse::new(rel.packet_id, ReasonCode::SUCCESS));
                self.clients[client].pending_acks.push_back(ack);
            }
            Packet::SubAck(suback) => {
                // Refusals are only those the model predicts from the quotas, with their reason (3.1.1 has only
                // 0x80 Failure).
                let predicted = self
                    .model
                    .predicted_subacks
                    .remove(&(client, suback.packet_id))
                    .unwrap_or_default();
                let v5 = self.clients[client].version.is_v5();
                for (index, reason) in suback.reasons.iter().enumerate() {
                    match (reason.is_error(), predicted.get(index).copied().flatten()) {
                        (false, None) => {}
                        (true, Some(expected)) if !v5 || *reason == expected => {}
                        (true, expected) => {
                            return Err(Violation(format!(
                                "c{client}: SUBACK refused filter {index} with {reason:?}, expected {expected:?}"
                            )));
                        }
                        (false, Some(expected)) => {
                            return Err(Violation(format!(
                                "c{client}: SUBACK granted filter {index}, which the quotas refuse ({expected:?})"
                            )));
                        }
                    }
                }
                let c = &mut self.clients[client];
                let filters = c.pending_subscribes.remove(&suback.packet_id).unwrap_or_default();
                for ((filter, asked), reason) in filters.into_iter().zip(&suback.reasons) {
                    if reason.is_error() {
                        continue;
                    }
                    let granted = QoS::from_u8(reason.0).unwrap_or(QoS::ExactlyOnce);
                    invariants::granted_qos(client, &filter, asked, granted)?;
                    self.check_granted_qos(client, &filter, asked, granted)?;
                }
            }
            // A PINGREQ sent right after CONNECT is processed only once the CONNECT is accepted [MQTT-3.1.4-6].
            Packet::PingResp if !self.clients[client].connacked => {
                return Err(Violation(format!(
                    "c{client} got PINGRESP before CONNACK [MQTT-3.1.4-6]"
                )));
            }
            _ => {}
        }
        Ok(())
    }

    pub(super) fn flush_acks(&mut self, client: usize) {
        while let Some(ack) = self.clients[client].pending_acks.pop_front() {
            self.send(client, ack);
        }
    }
}
