//! Flow control of incoming QoS 1/2 PUBLISHes: a message is acknowledged only once every online subscriber's queue
//! has taken it, so a PUBACK/PUBREC never stands for a message the broker then drops for lack of room.
//!
//! When an online subscriber's queue is full, the PUBLISH is held, unacknowledged, on its connection. The publisher
//! may have at most Receive Maximum unacknowledged QoS 1/2 PUBLISHes [MQTT-3.3.4-7], so it stops by itself until the
//! subscriber catches up: back-pressure through the protocol, while the broker keeps reading the publisher's other
//! packets (its own PUBACKs, PINGREQs), so two clients publishing to each other cannot deadlock.
//!
//! Offline sessions cannot drain, so holding for them would stall publishers indefinitely: their queues stay bounded
//! by `max_queued_messages` and what does not fit is dropped and counted (what Mosquitto does with its
//! `max_queued_messages`).

use super::held::HeldPublish;
use super::planted::PlantedBug;
use super::quota::BudgetCheck;
use super::session::SessionKey;
use super::sys::SYS_PREFIX;
use super::{Broker, ConnectionId, WillPolicy};
use crate::packet::{Packet, PubResponse, QoS, ReasonCode};
use std::sync::Arc;

/// What became of a PUBLISH offered for routing.
enum Admission {
    /// Routed (or refused, with an error reason); acknowledge with this reason.
    Accepted(ReasonCode),
    /// Hold the PUBLISH until this online session's queue drains.
    Blocked(SessionKey),
    /// A transient error (storage does not take writes) that a 3.1.1/3.1 client cannot be told of: close its
    /// connection [MQTT-4.8.0-2].
    Close,
    /// The total queued-bytes budget is used up: hold the PUBLISH until it has room (see `quota`).
    OverBudget,
}

impl Broker {
    /// Routes a received PUBLISH and acknowledges it, or holds it when a subscriber has no room. PUBLISHes of one
    /// connection are admitted in order: once one is held, later QoS 1/2 ones queue behind it [MQTT-4.6.0-2]-style
    /// ordering per publisher. QoS 0 is never held: it is never queued for subscribers either.
    pub(super) fn receive_publish(&mut self, conn: ConnectionId, publisher: SessionKey, publish: HeldPublish) {
        // The transient error is met while processing this very packet, so it closes the connection now rather
        // than once the PUBLISHes held before it are admitted [MQTT-4.8.0-2].
        let queued_behind = publish.qos != QoS::AtMostOnce
            && !self.storage_error_closes(conn)
            && self.connections.expected(conn).is_some_and(|c| c.has_held());
        if queued_behind {
            self.stats.publishes_held += 1;
            if let Some(connection) = self.connections.expected_mut(conn) {
                connection.extras().held.push_back(publish);
            }
            return;
        }
        if !self.offer_publish(conn, publisher, publish) {
            self.stats.publishes_held += 1;
        }
    }

    /// Admits a PUBLISH and acknowledges it, holds it where its admission says, or closes the connection; returns
    /// whether it is no longer held (taken, or gone with its connection).
    fn offer_publish(&mut self, conn: ConnectionId, publisher: SessionKey, publish: HeldPublish) -> bool {
        match self.admit_publish(conn, publisher, &publish) {
            Admission::Accepted(reason) => {
                self.acknowledge_publish(conn, publisher, &publish, reason);
                true
            }
            Admission::Blocked(full) => {
                #[cfg(feature = "planted-bugs")]
                let publish = self.plant_arrival_plan(publisher, publish);
                #[cfg(feature = "planted-bugs")]
                let publish = self.plant_waited_on(full, publish);
                self.hold(conn, full, publish);
                false
            }
            Admission::Close => {
                // Unacknowledged, so nothing is lost: the client sends it again on its next connection
                // [MQTT-4.4.0-1], and the will is published as for any connection the server closes [MQTT-3.1.2-8].
                self.stats.transient_error_closes += 1;
                self.close_connection(conn, WillPolicy::Publish, "storage not writable (transient error)");
                true
            }
            Admission::OverBudget => {
                #[cfg(feature = "planted-bugs")]
                let publish = self.plant_arrival_plan(publisher, publish);
                self.hold_for_budget(conn, publish);
                false
            }
        }
    }

    /// A PUBLISH that waited (held for room) takes its place in the message order when it is offered again, not
    /// when it arrived: a retained stream sends only messages no newer than its SUBSCRIBE (newer ones reached the
    /// subscriber by routing), so a held RETAIN PUBLISH routed after a SUBSCRIBE made while it waited would
    /// otherwise be sent twice to the new subscription, once routed and once as a retained copy, although it was
    /// not the topic's retained message when the SUBSCRIBE came [MQTT-3.3.1-9].
    fn restamp(&mut self, publish: &mut HeldPublish) {
        let id = self.next_message_id();
        // Nothing else holds a held PUBLISH's message before it is routed.
        if let Some(message) = Arc::get_mut(&mut publish.message) {
            message.id = id;
        }
    }

    /// Packet ids of the PUBLISHes held on a connection, in order; `None` if the broker does not know the
    /// connection (closed). For the simulator's model, which must know when a PUBLISH was really routed.
    pub fn held_packet_ids(&self, conn: ConnectionId) -> Option<Vec<u16>> {
        self.connections
            .if_open(conn)
            .map(|c| c.held().map(|h| h.packet_id).collect())
    }

    /// Number of QoS 1/2 PUBLISHes of this connection held unacknowledged, beyond the QoS 2 ids already received
    /// (a held duplicate's id is counted there).
    pub(super) fn held_count(&self, conn: ConnectionId) -> usize {
        self.connections
            .expected(conn)
            .map_or(0, |c| c.held().filter(|h| !h.duplicate).count())
    }

    /// Whether a QoS 1/2 PUBLISH with this id is already held on the connection (a retransmission of it).
    pub(super) fn is_held(&self, conn: ConnectionId, packet_id: u16) -> bool {
        self.connections
            .expected(conn)
            .is_some_and(|c| c.held().any(|h| h.packet_id == packet_id))
    }

    fn admit_publish(&mut self, conn: ConnectionId, publisher: SessionKey, publish: &HeldPublish) -> Admission {
        let message = &publish.message;
        if publish.duplicate {
            // Stored already, so neither storage nor the queues have a say.
            return Admission::Accepted(ReasonCode::SUCCESS);
        }
        // Checked first, so the rule is plain: while storage takes no writes, every QoS 1/2 PUBLISH of a 3.1.1/3.1
        // client closes its connection, refused or denied ones too (a 3.1.1 client cannot tell those apart from
        // an acceptance anyway).
        if publish.qos != QoS::AtMostOnce
            && self.storage_error_closes(conn)
            && !self.planted(PlantedBug::V311AcknowledgedOnFullDisk)
        {
            return Admission::Close;
        }
        if let Some(reason) = publish.refused {
            self.stats.dropped(super::DropCause::Quota, 1);
            self.note_publish_refused(conn, publish.packet_id, reason);
            return Admission::Accepted(reason);
        }
        if publish.denied || message.topic.starts_with(SYS_PREFIX) {
            self.stats.received(publish.qos, message.payload.len());
            return Admission::Accepted(ReasonCode::NOT_AUTHORIZED);
        }
        let v5 = self.connections.expected(conn).is_some_and(|c| c.is_v5());
        if publish.qos != QoS::AtMostOnce && self.storage_full {
            // Nothing acknowledged may be lost, and the disk cannot take it. MQTT 5 refuses this one PUBLISH with
            // Quota exceeded and the connection carries on (MQTT 5.0 section 4.13.2, other errors); 3.1.1 has no
            // way to refuse, so its connection was closed above [MQTT-4.8.0-2]. QoS 0 keeps flowing.
            self.stats.received(publish.qos, message.payload.len());
            self.note_publish_refused(conn, publish.packet_id, ReasonCode::QUOTA_EXCEEDED);
            return Admission::Accepted(ReasonCode::QUOTA_EXCEEDED);
        }
        let plan = self.plan_route(message, Some(publisher));
        #[cfg(feature = "planted-bugs")]
        let plan = self.planted_arrival_route(publish, plan);
        if publish.qos != QoS::AtMostOnce {
            let full = plan
                .iter()
                .find(|(key, delivery)| delivery.qos != QoS::AtMostOnce && self.queue_full_online(*key))
                .map(|(key, _)| *key);
            if let Some(full) = full {
                self.recycle_plan(plan);
                return Admission::Blocked(full);
            }
            match self.budget_check(conn, &plan) {
                BudgetCheck::Room => {}
                BudgetCheck::Refuse(reason) => {
                    self.recycle_plan(plan);
                    self.note_publish_refused(conn, publish.packet_id, reason);
                    return Admission::Accepted(reason);
                }
                BudgetCheck::Wait => {
                    self.recycle_plan(plan);
                    return Admission::OverBudget;
                }
            }
        }
        #[cfg(feature = "planted-bugs")]
        let plan = self.plant_held_copy_dropped(publish, plan);
        self.stats.received(publish.qos, message.payload.len());
        self.store_retained(message);
        let matched = plan.len();
        self.deliver_plan(plan);
        if matched == 0 && v5 {
            Admission::Accepted(ReasonCode::NO_MATCHING_SUBSCRIBERS)
        } else {
            Admission::Accepted(ReasonCode::SUCCESS)
        }
    }

    /// An online session whose queue cannot take another message.
    pub(super) fn queue_full_online(&self, key: SessionKey) -> bool {
        self.sessions
            .get(&key)
            .is_some_and(|s| s.connection.is_some() && self.queue_limits().is_full(s))
    }

    /// Whether a QoS 1/2 PUBLISH on this connection now meets the transient error that closes it: storage does
    /// not take writes and the client (3.1.1/3.1) cannot be told with a reason code [MQTT-4.8.0-2].
    fn storage_error_closes(&self, conn: ConnectionId) -> bool {
        self.storage_full && self.connections.expected(conn).is_some_and(|c| !c.is_v5())
    }

    fn hold(&mut self, conn: ConnectionId, waiting_on: SessionKey, publish: HeldPublish) {
        let Some(connection) = self.connections.expected_mut(conn) else {
            return;
        };
        connection.extras().held.push_front(publish);
        if let Some(session) = self.sessions.get_mut(&waiting_on) {
            session.waiters_mut().insert(conn);
        }
    }

    /// Whether the broker takes QoS 1/2 messages (durable storage is writable), for the simulator's model.
    pub fn storage_writable(&self) -> bool {
        !self.storage_full
    }

    /// The driver reports whether durable storage takes writes. While it does not, QoS 1/2 PUBLISHes are refused
    /// (MQTT 5) or close their connection (3.1.1/3.1), see `admit_publish`; none is held waiting for the disk.
    pub(super) fn set_storage_writable(&mut self, writable: bool) {
        self.storage_full = !writable;
    }

    /// PUBACK, or PUBREC with the id remembered for exactly-once [MQTT-4.3.3-9]; nothing for QoS 0.
    fn acknowledge_publish(
        &mut self,
        conn: ConnectionId,
        publisher: SessionKey,
        publish: &HeldPublish,
        reason: ReasonCode,
    ) {
        let packet_id = publish.packet_id;
        match publish.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                self.send(conn, &Packet::PubAck(PubResponse::new(packet_id, reason)));
            }
            QoS::ExactlyOnce => {
                if !reason.is_error() && !publish.duplicate {
                    if let Some(session) = self.sessions.get_mut(&publisher) {
                        session.incoming_qos2_mut().insert(packet_id);
                    }
                    self.persist_qos2(publisher, packet_id, true);
                }
                self.send(conn, &Packet::PubRec(PubResponse::new(packet_id, reason)));
            }
        }
    }

    /// Called whenever a session's queue may have shrunk or the session went offline or away: once the queue is
    /// down to three quarters of its bound (hysteresis, so a publisher is not woken for every single slot), the
    /// publishers waiting on it are scheduled to retry.
    pub(super) fn note_queue_drained(&mut self, key: SessionKey) {
        let limits = self.queue_limits();
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        if session.waiters().is_empty() || (session.connection.is_some() && !limits.may_resume(session)) {
            return;
        }
        let waiters = std::mem::take(session.waiters_mut());
        self.woken.extend(waiters);
    }

    /// Retries the held PUBLISHes of every woken connection, in order, until each is empty or blocked again. Run
    /// at the end of every input rather than from deep inside routing, so waking never recurses.
    pub(super) fn release_woken(&mut self) {
        while let Some(conn) = self.woken.pop_first() {
            self.release_held(conn);
        }
    }

    fn release_held(&mut self, conn: ConnectionId) {
        loop {
            // Woken ids may be of connections closed since, and an offer may close this one.
            let Some(connection) = self.connections.if_open_mut(conn) else {
                return;
            };
            let Some(publisher) = connection.session else {
                return;
            };
            let Some(mut publish) = connection.pop_held() else {
                return;
            };
            self.restamp(&mut publish);
            if !self.offer_publish(conn, publisher, publish) {
                return;
            }
        }
    }
}
