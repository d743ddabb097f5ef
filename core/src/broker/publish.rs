//! PUBLISH in both directions: receipt (topic aliases, QoS 1/2 receive flows, retain), routing to matching
//! sessions, queueing and the inflight window towards each client, and the acknowledgements.

use super::connection::Phase;
use super::held::HeldPublish;
use super::message::{Delivery, Message};
use super::planted::PlantedBug;
use super::quota::{delivery_bytes, PublishQuota};
use super::session::{Awaiting, Inflight, SessionKey};
use super::shared_publish::{is_shareable, Form};
use super::{Broker, ConnectionId, DropCause};
use crate::packet::{Packet, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode};
use crate::time::Time;
use crate::topic::TopicMatch;
use std::sync::Arc;

impl Broker {
    pub(super) fn handle_publish(&mut self, conn: ConnectionId, publish: Publish) {
        let Some(connection) = self.connections.expected_mut(conn) else {
            return;
        };
        let Some(key) = connection.session else {
            return;
        };
        // [MQTT-3.3.4-6]: Subscription Identifiers go from server to client only.
        if !publish.properties.subscription_identifiers.is_empty() {
            self.protocol_error(
                conn,
                ReasonCode::PROTOCOL_ERROR,
                "subscription identifier from a client",
            );
            return;
        }

        // Topic Alias [MQTT-3.3.2-8..12].
        let topic = match publish.properties.topic_alias {
            Some(alias) if alias == 0 || alias > self.config.max_topic_alias => {
                self.protocol_error(conn, ReasonCode::TOPIC_ALIAS_INVALID, "topic alias out of range");
                return;
            }
            Some(alias) if publish.topic.is_empty() => match connection
                .extras
                .as_ref()
                .and_then(|extras| extras.inbound_aliases.get(&alias))
            {
                Some(topic) => topic.clone(),
                None => {
                    self.protocol_error(conn, ReasonCode::PROTOCOL_ERROR, "unknown topic alias");
                    return;
                }
            },
            Some(alias) => {
                connection.extras().inbound_aliases.insert(alias, publish.topic.clone());
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
        if qos != QoS::AtMostOnce {
            let Some(session) = self.sessions.get(&key) else {
                return;
            };
            if qos == QoS::ExactlyOnce
                && session.incoming_qos2().contains(&packet_id)
                && !self.planted(PlantedBug::Qos2DuplicateDelivered)
            {
                // [MQTT-4.3.3-9]: already delivered onwards; acknowledge again, deliver nothing. Behind a held
                // PUBLISH, in its turn: PUBRECs leave in the order the PUBLISHes were received [MQTT-4.6.0-3].
                // The planted `Qos2DuplicateOvertakesHeld` answers at once, as before the fix (seed 2703).
                if self.connections.expected(conn).is_some_and(|c| c.has_held())
                    && !self.is_held(conn, packet_id)
                    && !self.planted(PlantedBug::Qos2DuplicateOvertakesHeld)
                {
                    let message = Arc::new(Message::from_publish(0, publish, topic, self.now, 0));
                    let duplicate = HeldPublish {
                        packet_id,
                        qos,
                        message,
                        denied: false,
                        refused: None,
                        duplicate: true,
                        #[cfg(feature = "planted-bugs")]
                        arrival_plan: None,
                        #[cfg(feature = "planted-bugs")]
                        waited_on: None,
                    };
                    if let Some(connection) = self.connections.expected_mut(conn) {
                        connection.extras().held.push_back(duplicate);
                    }
                    return;
                }
                self.send(conn, &Packet::PubRec(PubResponse::new(packet_id, ReasonCode::SUCCESS)));
                return;
            }
            if self.is_held(conn, packet_id) {
                // A retransmission of a PUBLISH still held for a full queue: the held copy will be acknowledged.
                return;
            }
            // Section 3.3.4: more unacknowledged QoS 1/2 PUBLISHes than our Receive Maximum [MQTT-3.3.4-7]
            // (held ones are unacknowledged too).
            let unacknowledged = session.incoming_qos2().len() + self.held_count(conn);
            if unacknowledged >= usize::from(self.config.receive_maximum) {
                self.protocol_error(conn, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded");
                return;
            }
        }
        // Quotas: topic size and publish rate (see `quota`).
        let refused = match self.publish_quota(conn, &topic, publish.payload.len()) {
            PublishQuota::Admit => None,
            PublishQuota::Refuse(_) if qos == QoS::AtMostOnce => {
                self.stats.dropped(DropCause::Quota, 1);
                return;
            }
            PublishQuota::Refuse(reason) => Some(reason),
            PublishQuota::Disconnect(reason) => {
                self.disconnect_with(conn, reason, "publish rate far above the limit");
                return;
            }
        };
        let id = self.next_message_id();
        // Denied by the ACL: v5 gets 0x87 in PUBACK/PUBREC; 3.1.1 has no way to say so and is acknowledged normally
        // while the message is dropped, as Mosquitto does. Acknowledged in turn with the others [MQTT-4.6.0-2].
        let denied = !self.may_publish(conn, &topic);
        let message = Arc::new(Message::from_publish(
            id,
            publish,
            topic,
            self.now,
            self.config.shared_payload_min,
        ));
        let held = HeldPublish {
            packet_id,
            qos,
            message,
            denied,
            refused,
            duplicate: false,
            #[cfg(feature = "planted-bugs")]
            arrival_plan: None,
            #[cfg(feature = "planted-bugs")]
            waited_on: None,
        };
        self.receive_publish(conn, key, held);
    }

    /// Stores or clears the retained message of a PUBLISH with RETAIN set.
    pub(super) fn store_retained(&mut self, message: &Arc<Message>) {
        if message.retain && self.config.retain_available {
            self.persist_retained(message);
            if message.payload.is_empty() {
                // [MQTT-3.3.1-6]: an empty retained message clears the topic and is not stored.
                self.retained.remove(&message.topic);
            } else {
                // [MQTT-3.3.1-5]: replaces any existing retained message of the topic.
                self.retained.insert(&message.topic, Arc::clone(message));
            }
        }
    }

    /// Stores or clears the retained message and routes `message` to every matching session, whatever their
    /// queues hold (wills and `$SYS`: nobody waits for an acknowledgement). `publisher` is the publishing session
    /// (for No Local), `None` for wills and `$SYS`. Returns the number of sessions it went to.
    pub(super) fn publish_message(&mut self, message: Arc<Message>, publisher: Option<SessionKey>) -> usize {
        self.store_retained(&message);
        let plan = self.plan_route(&message, publisher);
        let count = plan.len();
        self.deliver_plan(plan);
        count
    }

    /// Who gets `message`, and how: one delivery per matching session, plus one per shared group.
    pub(super) fn plan_route(
        &mut self,
        message: &Arc<Message>,
        publisher: Option<SessionKey>,
    ) -> Vec<(SessionKey, Delivery)> {
        let mut matches = std::mem::take(&mut self.match_buffer);
        matches.clear();
        let sessions = &self.sessions;
        let limits = self.queue_limits();
        // Shared groups prefer a member that is online and has room in its queue.
        self.subscriptions.match_topic(
            &message.topic,
            |key| {
                sessions
                    .get(&key)
                    .is_some_and(|s| s.connection.is_some() && !limits.is_full(s))
            },
            &mut matches,
        );

        // Overlapping non-shared subscriptions of one session make one delivery with the highest QoS and every
        // Subscription Identifier [MQTT-3.3.4-2], [MQTT-3.3.4-3]; 3.1.1 sessions get the same single copy, which
        // 3.1.1 section 3.3.5 permits. Shared-group picks are separate deliveries.
        let mut plan = std::mem::take(&mut self.plan_buffer);
        plan.clear();
        let mut shared = Vec::new();
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
            let delivery = Delivery {
                message: Arc::clone(message),
                qos: message.qos.min(options.qos),
                // [MQTT-3.3.1-12], [MQTT-3.3.1-13]: Retain As Published.
                retain: options.retain_as_published && message.retain,
                subscription_ids: subscription.identifier.into_iter().collect(),
                seq: 0,
            };
            if is_shared {
                shared.push((key, delivery));
            } else {
                plan.push((key, delivery));
            }
        }
        // Sorted by session, so one session's overlapping matches sit together and merge.
        plan.sort_by_key(|(key, _)| *key);
        plan.dedup_by(|(later_key, later), (key, merged)| {
            if later_key != key {
                return false;
            }
            merged.qos = merged.qos.max(later.qos);
            merged.retain |= later.retain;
            merged.subscription_ids.append(&mut later.subscription_ids);
            true
        });
        #[cfg(feature = "planted-bugs")]
        self.plant_shared_twice(message, &mut shared);
        plan.append(&mut shared);
        self.match_buffer = matches;
        #[cfg(feature = "planted-bugs")]
        self.plant_plus_across_levels(message, publisher, &mut plan);
        #[cfg(feature = "planted-bugs")]
        self.plant_shared_to_every_member(message, &mut plan);
        plan
    }

    pub(super) fn deliver_plan(&mut self, mut plan: Vec<(SessionKey, Delivery)>) {
        for (key, delivery) in plan.drain(..) {
            self.deliver(key, delivery);
        }
        self.plan_buffer = plan;
    }

    /// Gives an unused plan's buffer back for reuse.
    pub(super) fn recycle_plan(&mut self, mut plan: Vec<(SessionKey, Delivery)>) {
        plan.clear();
        self.plan_buffer = plan;
    }

    /// Hands one delivery to a session: QoS 0 goes straight out to an online client with room in its output
    /// buffer (and is dropped otherwise); QoS 1/2 joins the session's queue, bounded by `max_queued_messages`,
    /// and the inflight window pulls from there.
    pub(super) fn deliver(&mut self, key: SessionKey, delivery: Delivery) {
        // Read access is checked per delivery, so a wide subscription brings only what the client may read.
        if self.authenticator.restricts_reads() && !self.may_read(key, &delivery.message.topic) {
            return;
        }
        let (limits, over_budget) = (self.queue_limits(), self.over_budget());
        let plant_drop = self.planted(PlantedBug::QueuedMessageDroppedWithRoom);
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        if delivery.qos == QoS::AtMostOnce {
            let conn = session.connection;
            let has_room = conn
                .and_then(|c| self.connections.expected(c))
                .is_some_and(|c| c.outbuf.len() < self.config.max_outbuf_bytes);
            match conn {
                Some(conn) if has_room => {
                    let outgoing = self.outgoing(conn, &delivery, 0);
                    self.send_outgoing(conn, outgoing, 0);
                }
                Some(_) => self.stats.dropped(DropCause::SlowConsumer, 1),
                None => self.stats.dropped(DropCause::Offline, 1),
            }
            return;
        }
        let planted_drop =
            session.connection.is_none() && !session.queue().is_empty() && session.next_seq % 3 == 0 && plant_drop;
        if limits.is_full(session) || (session.connection.is_none() && over_budget) || planted_drop {
            self.stats.dropped(DropCause::QueueFull, 1);
            return;
        }
        let mut delivery = delivery;
        delivery.seq = session.next_seq;
        session.next_seq += 1;
        self.record_enqueue(key, &delivery);
        self.count_queued(key, delivery_bytes(&delivery));
        if let Some(session) = self.sessions.get_mut(&key) {
            session.queue_mut().push_back(delivery);
        }
        self.pump(key);
    }

    /// Moves queued QoS 1/2 messages into the inflight window while the client's Receive Maximum
    /// [MQTT-3.3.4-9], the broker's inflight cap and the output buffer allow.
    pub(super) fn pump(&mut self, key: SessionKey) {
        // A message dropped as too large for the client frees its window slot at once, so go round again until
        // a pass sends everything it took (otherwise the rest of the queue would wait for an unrelated event).
        while self.pump_once(key) {}
        self.note_queue_drained(key);
        self.advance_retained(key);
    }

    /// One pass of `pump`; returns true when a message was dropped and the window has room again.
    fn pump_once(&mut self, key: SessionKey) -> bool {
        let send_expired = self.planted(PlantedBug::ExpiredMessageDelivered);
        let Some(session) = self.sessions.get_mut(&key) else {
            return false;
        };
        let Some(conn) = session.connection else {
            return false;
        };
        let Some(connection) = self.connections.expected(conn) else {
            return false;
        };
        let window = usize::from(connection.client_receive_maximum.min(self.config.max_inflight).max(1));
        let alias_free = connection.client_topic_alias_maximum == 0;
        let mut to_send = std::mem::take(&mut self.pump_buffer);
        let mut expired = Vec::new();
        let mut expired_bytes = 0;
        let mut outbuf_len = connection.outbuf.len();
        while session.inflight().len() < window && outbuf_len < self.config.max_outbuf_bytes {
            let Some(delivery) = session.pop_queued() else {
                break;
            };
            // [MQTT-3.3.2-5]: an expired message is not sent.
            if delivery.message.is_expired(self.now) && !send_expired {
                expired_bytes += delivery_bytes(&delivery);
                expired.push(delivery.seq);
                continue;
            }
            let Some(packet_id) = session.allocate_packet_id() else {
                session.queue_mut().push_front(delivery);
                break;
            };
            outbuf_len += delivery.message.payload.len() + delivery.message.topic.len();
            let outgoing = outgoing_of(&delivery, packet_id, alias_free, self.now);
            let state = if delivery.qos == QoS::AtLeastOnce {
                Awaiting::PubAck
            } else {
                Awaiting::PubRec
            };
            let seq = delivery.seq;
            session.push_inflight(Inflight {
                packet_id,
                delivery,
                state,
            });
            to_send.push((seq, state, packet_id, outgoing));
        }
        for seq in expired {
            self.persist_done(key, seq);
        }
        if expired_bytes > 0 {
            self.count_dequeued(key, expired_bytes);
        }
        for (seq, state, packet_id, _) in &to_send {
            self.persist_sent(key, *seq, *packet_id, *state);
        }
        let mut dropped = false;
        for (_, _, packet_id, outgoing) in to_send.drain(..) {
            if !self.send_outgoing(conn, outgoing, packet_id) {
                // Too large for the client: behave as if it had been delivered [MQTT-3.1.2-25].
                self.complete_inflight(key, packet_id);
                dropped = true;
            }
        }
        self.pump_buffer = to_send;
        dropped
    }

    /// What to send for `delivery` to `conn`: see `outgoing_of`.
    fn outgoing(&self, conn: ConnectionId, delivery: &Delivery, packet_id: u16) -> Outgoing {
        let alias_free = self
            .connections
            .expected(conn)
            .is_some_and(|c| c.client_topic_alias_maximum == 0);
        outgoing_of(delivery, packet_id, alias_free, self.now)
    }

    /// Sends a delivery's PUBLISH: the encoding shared with the message's other subscribers where it has one (see
    /// `shared_publish`), else a packet of its own through `send_publish`. Returns false as `send_publish` does.
    fn send_outgoing(&mut self, conn: ConnectionId, outgoing: Outgoing, packet_id: u16) -> bool {
        let (message, qos, retain, fan_out) = match outgoing {
            Outgoing::Plain(publish) => return self.send_publish(conn, publish),
            Outgoing::Shared {
                message,
                qos,
                retain,
                fan_out,
            } => (message, qos, retain, fan_out),
        };
        let Some(connection) = self.connections.expected_mut(conn) else {
            return false;
        };
        if connection.phase == Phase::Closing {
            return false;
        }
        let version = connection.protocol.unwrap_or(ProtocolVersion::V3_1_1);
        let form = Form {
            v5: version.is_v5(),
            qos,
            retain,
        };
        let (now, shared_payload_min) = (self.now, self.config.shared_payload_min);
        let Some(encoded) = self
            .shared_publishes
            .get(&message, form, fan_out, now, shared_payload_min)
        else {
            let delivery = Delivery {
                message,
                qos,
                retain,
                subscription_ids: Vec::new(),
                seq: 0,
            };
            return self.send_publish(conn, delivery.to_publish(packet_id, false, now));
        };
        // Only MQTT 5 clients announce a Maximum Packet Size [MQTT-3.1.2-24]; a PUBLISH has nothing optional to
        // strip, so one too large is dropped [MQTT-3.1.2-25], as `send` does.
        let limit = if form.v5 {
            connection.client_max_packet_size as usize
        } else {
            usize::MAX
        };
        if !connection.outbuf.append_shared(encoded, packet_id, limit) {
            self.stats.dropped(DropCause::PacketTooLarge, 1);
            return false;
        }
        if !connection.dirty {
            connection.dirty = true;
            self.dirty.push_back(conn);
        }
        self.stats.sent(qos, message.payload.len());
        true
    }

    /// Sends a PUBLISH to a connection, using an outbound topic alias when the client allows them. Returns false
    /// when the packet exceeds the client's Maximum Packet Size and was dropped.
    pub(super) fn send_publish(&mut self, conn: ConnectionId, mut publish: Publish) -> bool {
        let (qos, payload_len) = (publish.qos, publish.payload.len());
        let mut new_alias = None;
        if let Some(connection) = self.connections.expected(conn) {
            let maximum = connection.client_topic_alias_maximum;
            if maximum > 0 && !publish.topic.is_empty() {
                let aliases = connection.extras.as_ref().map(|extras| &extras.outbound_aliases);
                let in_use = aliases.map_or(0, |aliases| aliases.len());
                if let Some(alias) = aliases.and_then(|aliases| aliases.get(&publish.topic)) {
                    publish.properties.topic_alias = Some(*alias);
                    publish.topic.clear();
                } else if in_use < usize::from(maximum) {
                    // [MQTT-3.3.2-12]: the alias is set by sending it along with the topic once.
                    let alias = in_use as u16 + 1;
                    publish.properties.topic_alias = Some(alias);
                    new_alias = Some((publish.topic.clone(), alias));
                }
            }
        }
        // A new alias adds bytes: it must never be what makes a PUBLISH too large for the client [MQTT-3.1.2-25].
        let mut packet = Packet::Publish(publish);
        if new_alias.is_some() && !self.fits_client(conn, &packet) {
            if let Packet::Publish(publish) = &mut packet {
                publish.properties.topic_alias = None;
            }
            new_alias = None;
        }
        let sent = self.send(conn, &packet);
        if sent {
            self.stats.sent(qos, payload_len);
            // Only a PUBLISH that went out establishes its alias: one dropped (too large for the client) did not.
            if let (Some((topic, alias)), Some(connection)) = (new_alias, self.connections.expected_mut(conn)) {
                connection.extras().outbound_aliases.insert(topic, alias);
            }
        }
        sent
    }

    fn complete_inflight(&mut self, key: SessionKey, packet_id: u16) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        let Some(position) = session.inflight_position(packet_id) else {
            return;
        };
        self.complete_inflight_at(key, position);
    }

    /// Ends the flow of the inflight entry at `position` of `key`'s window.
    fn complete_inflight_at(&mut self, key: SessionKey, position: usize) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        if let Some(entry) = session.remove_inflight(position) {
            self.persist_done(key, entry.delivery.seq);
            self.count_dequeued(key, delivery_bytes(&entry.delivery));
        }
    }

    fn session_of(&self, conn: ConnectionId) -> Option<SessionKey> {
        self.connections.expected(conn).and_then(|c| c.session)
    }

    /// [MQTT-4.3.2-4]-ish: PUBACK ends a QoS 1 flow; an unknown id is ignored.
    pub(super) fn handle_puback(&mut self, conn: ConnectionId, ack: PubResponse) {
        let Some(key) = self.session_of(conn) else {
            return;
        };
        let expected = self.sessions.get(&key).and_then(|s| {
            s.inflight_position(ack.packet_id)
                .filter(|&i| s.inflight()[i].state == Awaiting::PubAck)
        });
        if let Some(position) = expected {
            self.complete_inflight_at(key, position);
            if !self.expiring_head_left_queued(key) {
                self.pump(key);
            }
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
        if session.inflight()[position].state == Awaiting::PubAck {
            self.protocol_error(conn, ReasonCode::PROTOCOL_ERROR, "PUBREC for a QoS 1 message");
            return;
        }
        if rec.reason.is_error() {
            if let Some(entry) = session.remove_inflight(position) {
                self.persist_done(key, entry.delivery.seq);
                self.count_dequeued(key, delivery_bytes(&entry.delivery));
            }
            self.pump(key);
            return;
        }
        session.set_inflight_state(position, Awaiting::PubComp);
        let seq = session.inflight()[position].delivery.seq;
        self.persist_sent(key, seq, rec.packet_id, Awaiting::PubComp);
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
                .filter(|&i| s.inflight()[i].state == Awaiting::PubComp)
        });
        if expected.is_some() {
            self.complete_inflight(key, comp.packet_id);
            if !self.expiring_head_left_queued(key) {
                self.pump(key);
            }
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
            .is_some_and(|s| s.incoming_qos2_mut().remove(&rel.packet_id));
        if known {
            self.persist_qos2(key, rel.packet_id, false);
        }
        let reason = if known {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        };
        self.send(conn, &Packet::PubComp(PubResponse::new(rel.packet_id, reason)));
    }
}

impl Broker {
    /// The planted lost wakeup (`ExpiringLeftQueued`): the head of the queue carries a Message Expiry Interval.
    fn expiring_head_left_queued(&self, key: SessionKey) -> bool {
        self.planted(PlantedBug::ExpiringLeftQueued)
            && self
                .sessions
                .get(&key)
                .and_then(|s| s.queue().front())
                .is_some_and(|d| d.message.expires_at.is_some())
    }
}

/// One delivery a pump sends: its queue sequence number, the acknowledgement awaited, its packet id, the PUBLISH.
pub(super) type Pumped = (u64, Awaiting, u16, Outgoing);

/// A PUBLISH on its way out: the message and form of a shareable one (its bytes may come from the shared
/// encoding), or a packet built for this subscriber alone.
pub(super) enum Outgoing {
    Shared {
        message: Arc<Message>,
        qos: QoS,
        retain: bool,
        /// Other sessions hold the message too, so an encoding made now will likely be used again.
        fan_out: bool,
    },
    Plain(Publish),
}

/// Shareable when the delivery itself is (`is_shareable`) and the connection uses no outbound topic aliases,
/// which make one subscriber's bytes differ from another's [MQTT-3.3.2-12].
fn outgoing_of(delivery: &Delivery, packet_id: u16, alias_free: bool, now: Time) -> Outgoing {
    if alias_free && is_shareable(delivery) {
        Outgoing::Shared {
            // More than this delivery and one other holder (the PUBLISH being routed, the retained store): worth
            // encoding once for the others. A one-to-one stream encodes straight into the buffer as before.
            fan_out: Arc::strong_count(&delivery.message) > 2,
            message: Arc::clone(&delivery.message),
            qos: delivery.qos,
            retain: delivery.retain,
        }
    } else {
        Outgoing::Plain(delivery.to_publish(packet_id, false, now))
    }
}
