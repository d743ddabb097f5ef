//! PUBLISH in both directions: receipt (topic aliases, QoS 1/2 receive flows, retain), routing to matching
//! sessions, queueing and the inflight window towards each client, and the acknowledgements.

use super::message::{Delivery, Message};
use super::planted::PlantedBugKind;
use super::session::{Awaiting, Inflight, SessionKey};
use super::{Broker, ConnectionId};
use crate::packet::{Packet, PubResponse, Publish, QoS, ReasonCode};
use crate::topic::TopicMatch;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Topics under this prefix are the broker's own; clients cannot publish there.
const SYS_PREFIX: &str = "$SYS";

impl Broker {
    pub(super) fn handle_publish(&mut self, conn: ConnectionId, publish: Publish) {
        let Some(connection) = self.connections.get_mut(&conn) else {
            return;
        };
        let Some(key) = connection.session else {
            return;
        };
        let v5 = connection.is_v5();

        // Topic Alias [MQTT-3.3.2-8..12].
        let topic = match publish.properties.topic_alias {
            Some(alias) if alias == 0 || alias > self.config.max_topic_alias => {
                self.protocol_error(conn, ReasonCode::TOPIC_ALIAS_INVALID, "topic alias out of range");
                return;
            }
            Some(alias) if publish.topic.is_empty() => match connection.inbound_aliases.get(&alias) {
                Some(topic) => topic.clone(),
                None => {
                    self.protocol_error(conn, ReasonCode::PROTOCOL_ERROR, "unknown topic alias");
                    return;
                }
            },
            Some(alias) => {
                connection.inbound_aliases.insert(alias, publish.topic.clone());
                publish.topic.clone()
            }
            None if publish.topic.is_empty() => {
                self.protocol_error(conn, ReasonCode::PROTOCOL_ERROR, "empty topic without alias");
                return;
            }
            None => publish.topic.clone(),
        };

        // [MQTT-3.2.2-11]: QoS above Maximum QoS; [MQTT-3.2.2-14]: RETAIN when retain is not available.
        if publish.qos as u8 > self.config.maximum_qos {
            self.protocol_error(conn, ReasonCode::QOS_NOT_SUPPORTED, "QoS not supported");
            return;
        }
        if publish.retain && !self.config.retain_available {
            self.protocol_error(conn, ReasonCode::RETAIN_NOT_SUPPORTED, "retain not supported");
            return;
        }
        if crate::topic::validate_topic_name(&topic).is_err() {
            self.protocol_error(conn, ReasonCode::TOPIC_NAME_INVALID, "invalid topic name");
            return;
        }

        let packet_id = publish.packet_id;
        let qos = publish.qos;
        if qos == QoS::ExactlyOnce {
            let Some(session) = self.sessions.get(&key) else {
                return;
            };
            if session.incoming_qos2.contains(&packet_id) && !self.planted(PlantedBugKind::Qos2DuplicateDelivered) {
                // [MQTT-4.3.3-9]: already delivered onwards; acknowledge again, deliver nothing.
                self.send(conn, &Packet::PubRec(PubResponse::new(packet_id, ReasonCode::SUCCESS)));
                return;
            }
            // Section 3.3.4: more unacknowledged QoS 2 PUBLISHes than our Receive Maximum.
            if session.incoming_qos2.len() >= usize::from(self.config.receive_maximum) {
                self.protocol_error(conn, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded");
                return;
            }
        }
        self.stats.messages_received += 1;

        // Denied: v5 gets 0x87 in PUBACK/PUBREC; 3.1.1 has no way to say so and is acknowledged normally while the
        // message is dropped, as Mosquitto does.
        let reason = if topic.starts_with(SYS_PREFIX) || !self.may_publish(conn, &topic) {
            ReasonCode::NOT_AUTHORIZED
        } else {
            let message = Arc::new(Message::from_publish(publish, topic, self.now));
            let matched = self.publish_message(message, Some(key));
            if matched == 0 && v5 {
                ReasonCode::NO_MATCHING_SUBSCRIBERS
            } else {
                ReasonCode::SUCCESS
            }
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                self.send(conn, &Packet::PubAck(PubResponse::new(packet_id, reason)));
            }
            QoS::ExactlyOnce => {
                if !reason.is_error() {
                    if let Some(session) = self.sessions.get_mut(&key) {
                        session.incoming_qos2.insert(packet_id);
                    }
                }
                self.send(conn, &Packet::PubRec(PubResponse::new(packet_id, reason)));
            }
        }
    }

    /// Stores or clears the retained message and routes `message` to every matching session. `publisher` is the
    /// publishing session (for No Local), `None` for wills and `$SYS`. Returns the number of sessions it went to.
    pub(super) fn publish_message(&mut self, message: Arc<Message>, publisher: Option<SessionKey>) -> usize {
        if message.retain && self.config.retain_available {
            if message.payload.is_empty() {
                // [MQTT-3.3.1-6]: an empty retained message clears the topic and is not stored.
                self.retained.remove(&message.topic);
            } else {
                // [MQTT-3.3.1-5]: replaces any existing retained message of the topic.
                self.retained.insert(&message.topic, Arc::clone(&message));
            }
        }
        self.route(message, publisher)
    }

    fn route(&mut self, message: Arc<Message>, publisher: Option<SessionKey>) -> usize {
        let mut matches = std::mem::take(&mut self.match_buffer);
        matches.clear();
        let sessions = &self.sessions;
        self.subscriptions.match_topic(
            &message.topic,
            |key| sessions.get(&key).is_some_and(|s| s.connection.is_some()),
            &mut matches,
        );

        // Overlapping non-shared subscriptions of one session make one delivery with the highest QoS and every
        // Subscription Identifier [MQTT-3.3.4-2], [MQTT-3.3.4-3]; 3.1.1 sessions get the same single copy, which
        // 3.1.1 section 3.3.5 permits. Shared-group picks are separate deliveries.
        let mut per_session: BTreeMap<SessionKey, Delivery> = BTreeMap::new();
        let mut shared: Vec<(SessionKey, Delivery)> = Vec::new();
        for TopicMatch {
            key,
            subscription,
            shared: is_shared,
        } in matches.iter().copied()
        {
            let options = subscription.options;
            // [MQTT-3.8.3-3]: No Local.
            if !is_shared && options.no_local && publisher == Some(key) {
                continue;
            }
            let qos = message.qos.min(options.qos);
            // [MQTT-3.3.1-12], [MQTT-3.3.1-13]: Retain As Published.
            let retain = options.retain_as_published && message.retain;
            if is_shared {
                let delivery = Delivery {
                    message: Arc::clone(&message),
                    qos,
                    retain,
                    subscription_ids: subscription.identifier.into_iter().collect(),
                };
                shared.push((key, delivery));
                continue;
            }
            let entry = per_session.entry(key).or_insert_with(|| Delivery {
                message: Arc::clone(&message),
                qos,
                retain,
                subscription_ids: Vec::new(),
            });
            entry.qos = entry.qos.max(qos);
            entry.retain |= retain;
            if let Some(id) = subscription.identifier {
                entry.subscription_ids.push(id);
            }
        }
        self.match_buffer = matches;
        #[cfg(feature = "planted-bugs")]
        self.plant_plus_across_levels(&message, publisher, &mut per_session);

        let count = per_session.len() + shared.len();
        for (key, delivery) in per_session.into_iter().chain(shared) {
            self.deliver(key, delivery);
        }
        count
    }

    /// Hands one delivery to a session: QoS 0 goes straight out to an online client with room in its output
    /// buffer (and is dropped otherwise); QoS 1/2 joins the session's queue, bounded by `max_queued_messages`,
    /// and the inflight window pulls from there.
    pub(super) fn deliver(&mut self, key: SessionKey, delivery: Delivery) {
        // Read access is checked per delivery, so a wide subscription brings only what the client may read.
        if !self.may_read(key, &delivery.message.topic) {
            return;
        }
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        if delivery.qos == QoS::AtMostOnce {
            let conn = session.connection;
            let has_room = conn
                .and_then(|c| self.connections.get(&c))
                .is_some_and(|c| c.outbuf.len() < self.config.max_outbuf_bytes);
            match conn {
                Some(conn) if has_room => {
                    let publish = delivery.to_publish(0, false, self.now);
                    self.send_publish(conn, publish);
                }
                _ => self.stats.messages_dropped += 1,
            }
            return;
        }
        if session.queue.len() >= self.config.max_queued_messages {
            self.stats.messages_dropped += 1;
            return;
        }
        session.queue.push_back(delivery);
        self.pump(key);
    }

    /// Moves queued QoS 1/2 messages into the inflight window while the client's Receive Maximum
    /// [MQTT-3.3.4-9], the broker's inflight cap and the output buffer allow.
    pub(super) fn pump(&mut self, key: SessionKey) {
        // A message dropped as too large for the client frees its window slot at once, so go round again until
        // a pass sends everything it took (otherwise the rest of the queue would wait for an unrelated event).
        while self.pump_once(key) {}
    }

    /// One pass of `pump`; returns true when a message was dropped and the window has room again.
    fn pump_once(&mut self, key: SessionKey) -> bool {
        let Some(session) = self.sessions.get_mut(&key) else {
            return false;
        };
        let Some(conn) = session.connection else {
            return false;
        };
        let Some(connection) = self.connections.get(&conn) else {
            return false;
        };
        let window = usize::from(connection.client_receive_maximum.min(self.config.max_inflight).max(1));
        let mut to_send = Vec::new();
        let mut outbuf_len = connection.outbuf.len();
        while session.inflight.len() < window && outbuf_len < self.config.max_outbuf_bytes {
            let Some(delivery) = session.queue.pop_front() else {
                break;
            };
            // [MQTT-3.3.2-5]: an expired message is not sent.
            if delivery.message.is_expired(self.now) {
                continue;
            }
            let Some(packet_id) = session.allocate_packet_id() else {
                session.queue.push_front(delivery);
                break;
            };
            let publish = delivery.to_publish(packet_id, false, self.now);
            outbuf_len += publish.payload.len() + publish.topic.len();
            let state = if delivery.qos == QoS::AtLeastOnce {
                Awaiting::PubAck
            } else {
                Awaiting::PubRec
            };
            session.inflight.push_back(Inflight {
                packet_id,
                delivery,
                state,
            });
            to_send.push(publish);
        }
        let mut dropped = false;
        for publish in to_send {
            let packet_id = publish.packet_id;
            if !self.send_publish(conn, publish) {
                // Too large for the client: behave as if it had been delivered [MQTT-3.1.2-25].
                self.complete_inflight(key, packet_id);
                dropped = true;
            }
        }
        dropped
    }

    /// Sends a PUBLISH to a connection, using an outbound topic alias when the client allows them. Returns false
    /// when the packet exceeds the client's Maximum Packet Size and was dropped.
    pub(super) fn send_publish(&mut self, conn: ConnectionId, mut publish: Publish) -> bool {
        let mut new_alias = None;
        if let Some(connection) = self.connections.get(&conn) {
            let maximum = connection.client_topic_alias_maximum;
            if maximum > 0 && !publish.topic.is_empty() {
                if let Some(alias) = connection.outbound_aliases.get(&publish.topic) {
                    publish.properties.topic_alias = Some(*alias);
                    publish.topic.clear();
                } else if connection.outbound_aliases.len() < usize::from(maximum) {
                    // [MQTT-3.3.2-12]: the alias is set by sending it along with the topic once.
                    let alias = connection.outbound_aliases.len() as u16 + 1;
                    publish.properties.topic_alias = Some(alias);
                    new_alias = Some((publish.topic.clone(), alias));
                }
            }
        }
        let sent = self.send(conn, &Packet::Publish(publish));
        if sent {
            self.stats.messages_sent += 1;
            // Only a PUBLISH that went out establishes its alias: one dropped (too large for the client) did not.
            if let (Some((topic, alias)), Some(connection)) = (new_alias, self.connections.get_mut(&conn)) {
                connection.outbound_aliases.insert(topic, alias);
            }
        }
        sent
    }

    fn complete_inflight(&mut self, key: SessionKey, packet_id: u16) {
        if let Some(session) = self.sessions.get_mut(&key) {
            if let Some(position) = session.inflight_position(packet_id) {
                session.inflight.remove(position);
            }
        }
    }

    fn session_of(&self, conn: ConnectionId) -> Option<SessionKey> {
        self.connections.get(&conn).and_then(|c| c.session)
    }

    /// [MQTT-4.3.2-4]-ish: PUBACK ends a QoS 1 flow; an unknown id is ignored.
    pub(super) fn handle_puback(&mut self, conn: ConnectionId, ack: PubResponse) {
        let Some(key) = self.session_of(conn) else {
            return;
        };
        let expected = self.sessions.get(&key).and_then(|s| {
            s.inflight_position(ack.packet_id)
                .filter(|&i| s.inflight[i].state == Awaiting::PubAck)
        });
        if expected.is_some() {
            self.complete_inflight(key, ack.packet_id);
            self.pump(key);
        }
    }

    /// PUBREC: answer PUBREL and wait for PUBCOMP [MQTT-4.3.3-4]; an error reason ends the flow.
    pub(super) fn handle_pubrec(&mut self, conn: ConnectionId, rec: PubResponse) {
        let Some(key) = self.session_of(conn) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        let Some(position) = session.inflight_position(rec.packet_id) else {
            // Not ours: PUBREL with 0x92 tells an MQTT 5 client so [MQTT-4.3.3-?]; 3.1.1 has no reason codes.
            let reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
            self.send(conn, &Packet::PubRel(PubResponse::new(rec.packet_id, reason)));
            return;
        };
        if session.inflight[position].state == Awaiting::PubAck {
            self.protocol_error(conn, ReasonCode::PROTOCOL_ERROR, "PUBREC for a QoS 1 message");
            return;
        }
        if rec.reason.is_error() {
            session.inflight.remove(position);
            self.pump(key);
            return;
        }
        session.inflight[position].state = Awaiting::PubComp;
        self.send(
            conn,
            &Packet::PubRel(PubResponse::new(rec.packet_id, ReasonCode::SUCCESS)),
        );
    }

    pub(super) fn handle_pubcomp(&mut self, conn: ConnectionId, comp: PubResponse) {
        let Some(key) = self.session_of(conn) else {
            return;
        };
        let expected = self.sessions.get(&key).and_then(|s| {
            s.inflight_position(comp.packet_id)
                .filter(|&i| s.inflight[i].state == Awaiting::PubComp)
        });
        if expected.is_some() {
            self.complete_inflight(key, comp.packet_id);
            self.pump(key);
        }
    }

    /// PUBREL for an incoming QoS 2 message: forget the id and answer PUBCOMP [MQTT-4.3.3-11]; an unknown id gets
    /// 0x92 (MQTT 5) so the client can finish its flow.
    pub(super) fn handle_pubrel(&mut self, conn: ConnectionId, rel: PubResponse) {
        let Some(key) = self.session_of(conn) else {
            return;
        };
        let known = self
            .sessions
            .get_mut(&key)
            .is_some_and(|s| s.incoming_qos2.remove(&rel.packet_id));
        let reason = if known {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        };
        self.send(conn, &Packet::PubComp(PubResponse::new(rel.packet_id, reason)));
    }
}
