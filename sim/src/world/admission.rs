//! When the broker routes a client's QoS 1/2 PUBLISH. The broker admits one only when no online subscriber's queue
//! is full and the total budget has room, and holds or refuses it otherwise (see `mqtt_core::broker` flow control
//! and quotas). The model predicts on its own which PUBLISHes must be admitted at once (see `model::flow`): a hold
//! or refusal of one of those is a violation. Where the model cannot tell (a queue may be full), the broker's
//! PUBACK/PUBREC, as the broker sends it, says when the PUBLISH was admitted: the acknowledgement is the promise
//! [MQTT-4.3.2-2], [MQTT-4.3.3-2].

use super::*;
use crate::model::Pending;
use mqtt_core::packet::ReasonCode;

/// What the broker answered in one input: PUBACK/PUBREC reasons by connection and packet id, and the connections
/// it closed.
#[derive(Default)]
pub(super) struct Acks {
    replies: BTreeMap<(ConnectionId, u16), ReasonCode>,
    closed: BTreeSet<ConnectionId>,
}

impl World {
    /// Why the broker may hold or refuse this PUBLISH of `client` on `conn`, read now, rather than route it at
    /// once (`None`: it must route it).
    pub(super) fn admission_uncertainty(
        &mut self,
        conn: ConnectionId,
        client: usize,
        publish: &Publish,
    ) -> Option<String> {
        // The broker evicts for the total budget whenever it tries to admit one, counting what the PUBLISHes read
        // before it in the same input added (seed 137: m6:3's 589 bytes used the budget up, m6:4's admission then
        // evicted m5:4 from offline c3).
        let mut pending = Pending::new();
        for earlier in &self.chunk_publishes {
            crate::model::Model::plan_load(&earlier.plan, &mut pending);
        }
        let unseen = unseen_bytes(&self.awaiting_admission);
        let need = self
            .model
            .on_admission_attempt(pending.values().map(|(_, bytes)| bytes).sum::<u64>() + unseen);
        if need > 0 {
            self.chunk_evicts = (self.chunk_publishes.len(), self.chunk_evicts.1.max(need));
        }
        if self.suspension.is_some() {
            return Some("storage is suspended (disk full)".into());
        }
        // PUBLISHes of one connection are admitted in order: one held makes the later ones wait behind it.
        let behind = self.awaiting_admission.iter().any(|p| p.conn == conn)
            || self
                .chunk_publishes
                .iter()
                .any(|p| p.conn == conn && p.uncertain.is_some());
        if behind {
            return Some("an earlier PUBLISH of the connection may be held".into());
        }
        self.model.admission_uncertainty(client, publish, &pending)
    }

    /// A retained PUBLISH read earlier in the same broker input may be in the store by the time the broker
    /// processes this SUBSCRIBE: its copy may be sent too.
    pub(super) fn offer_chunk_retained(
        &mut self,
        client: usize,
        filter: &str,
        options: mqtt_core::packet::SubscriptionOptions,
        is_new: bool,
    ) {
        let wanted = match options.retain_handling {
            RetainHandling::SendAtSubscribe => true,
            RetainHandling::SendIfNew => is_new,
            RetainHandling::DoNotSend => false,
        };
        if !wanted || crate::model::shared_filter(filter).is_some() {
            return;
        }
        let ids: Vec<_> = self
            .chunk_publishes
            .iter()
            .filter(|p| p.publish.retain && crate::model::matches(filter, &p.publish.topic))
            .filter_map(|p| p.id.clone())
            .collect();
        for id in ids {
            self.model.offer_retained(client, &id, self.now);
        }
    }

    /// A QoS 0 RETAIN PUBLISH read in the same input after a QoS 1/2 RETAIN PUBLISH on its topic: the broker
    /// stores both in reading order, so the later one is what the topic holds [MQTT-3.3.1-5], but the model applies
    /// the earlier one's plan only once the input settles; the later one's retained part is applied again then.
    /// (A held earlier one is routed after it in the broker too, and unpins the topic.)
    pub(super) fn retain_after_chunk(&mut self, plan: &crate::model::RoutingPlan, publish: &Publish) {
        let earlier = self
            .chunk_publishes
            .iter()
            .any(|p| p.publish.retain && p.publish.topic == publish.topic);
        if publish.retain && earlier {
            self.chunk_retained_after.push(plan.clone());
        }
    }

    /// The PUBACKs and PUBRECs the broker sent in one input, by connection and packet id, decoded as they leave,
    /// and the connections it closed.
    pub(super) fn decode_acks(&mut self, outputs: &[Output]) -> Result<Acks, Violation> {
        let mut acks = Acks::default();
        for output in outputs {
            let (conn, data) = match output {
                Output::Transmit { conn, data } => (conn, data),
                Output::Close { conn } => {
                    acks.closed.insert(*conn);
                    self.ack_order_closed(*conn);
                    continue;
                }
                _ => continue,
            };
            let Some(decoder) = self.links.get_mut(conn).and_then(|l| l.outbound.as_mut()) else {
                continue;
            };
            decoder.feed(data);
            let mut sent = Vec::new();
            loop {
                match decoder.next_packet() {
                    Ok(Some(Packet::PubAck(ack))) => {
                        acks.replies.insert((*conn, ack.packet_id), ack.reason);
                        sent.push((false, ack.packet_id));
                    }
                    Ok(Some(Packet::PubRec(ack))) => {
                        acks.replies.insert((*conn, ack.packet_id), ack.reason);
                        sent.push((true, ack.packet_id));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        return Err(Violation(format!(
                            "{conn:?}: the broker sent what cannot be decoded: {e}"
                        )))
                    }
                }
            }
            for (pubrec, packet_id) in sent {
                self.ack_order_sent(*conn, pubrec, packet_id)?;
            }
        }
        Ok(acks)
    }

    /// After each broker input: each PUBLISH of the chunk just fed was routed (acknowledged), refused
    /// (acknowledged with an error) or held (not acknowledged), which the model's prediction must allow; held ones
    /// acknowledged now were routed at the end of this input, to the subscriptions of that moment, and held ones
    /// whose connection is gone were dropped unrouted.
    pub(super) fn settle_admissions(&mut self, acks: &Acks, storage_was_suspended: bool) -> Result<(), Violation> {
        let (evicts, need) = std::mem::take(&mut self.chunk_evicts);
        for (index, mut pending) in std::mem::take(&mut self.chunk_publishes).into_iter().enumerate() {
            if index == evicts && evicts > 0 {
                self.model.evict_offline(need);
            }
            let (client, packet_id) = (pending.client, pending.publish.packet_id);
            let v5 = self.clients[client].version.is_v5();
            if storage_was_suspended && !v5 {
                self.expect_transient_error_close(&pending, acks)?;
                continue;
            }
            // The publisher does not read: the broker keeps its acknowledgements until it does.
            let blind = self.links.get(&pending.conn).is_some_and(|l| l.blocked);
            if blind && pending.uncertain.is_none() {
                self.model.apply_publish(pending.plan);
                continue;
            }
            if blind {
                self.make_blind(&mut pending);
            }
            match acks.replies.get(&(pending.conn, packet_id)) {
                Some(reason) if reason.is_error() => {
                    // MQTT 5 only: a 3.1.1 client cannot be told, so its PUBLISH is held or dropped instead (or,
                    // storage suspended, its connection closed: above).
                    let budget = self.opts.quotas.max_queued_bytes_total > 0;
                    let rate = self.rate_may_refuse(pending.conn, packet_id);
                    if v5 && rate == Some(false) && !budget && !storage_was_suspended {
                        return Err(Violation(format!(
                            "the broker refused c{client}'s PUBLISH id={packet_id} with {reason:?}, although the \
                             model's token buckets had room for it in the publish rate ({}/s, {} B/s)",
                            self.opts.publish_rate, self.opts.publish_bytes_rate
                        )));
                    }
                    if !v5 || !budget && !storage_was_suspended && rate != Some(true) {
                        return Err(Violation(format!(
                            "the broker refused c{client}'s PUBLISH id={packet_id} with {reason:?}, although no \
                             quota applied (queued-bytes budget not used up, storage writable)"
                        )));
                    }
                    self.forget_refused(&pending);
                }
                Some(_) => {
                    // A 3.1.1 acknowledgement carries no reason code: one of a PUBLISH the publish rate may have
                    // refused says nothing either (see `rate_refused_unseen`).
                    let rate = !v5 && self.rate_refused_unseen(pending.conn, packet_id);
                    let unseen = unseen_bytes(&self.awaiting_admission);
                    pending.plan.maybe_dropped =
                        !v5 && (pending.uncertain.is_some() || rate || self.model.budget_may_be_used_up(unseen));
                    if pending.plan.maybe_dropped && pending.publish.qos == QoS::ExactlyOnce {
                        // Dropped, the broker does not keep its packet id (nothing to deliver twice).
                        self.model.qos2_unsure.insert((client, packet_id));
                    }
                    self.model.apply_publish(pending.plan);
                }
                None => match pending.uncertain.clone() {
                    // The model's bounds are upper bounds: a hold is allowed wherever a queue may be full, and one
                    // the model calls impossible is a violation, bounded queues or not (see `Model::check_liveness`
                    // for what the count follows).
                    Some(why) => {
                        self.log(format!(
                            "c{client} {:?}: broker holds PUBLISH id={packet_id} ({why})",
                            pending.conn
                        ));
                        self.observe_held_publish();
                        self.awaiting_admission.push(pending);
                    }
                    None => {
                        return Err(Violation(format!(
                            "the broker held c{client}'s PUBLISH id={packet_id} ({}) unacknowledged although no \
                             subscriber's queue could be full, the queued-bytes budget had room and storage was \
                             writable [MQTT-4.3.2-2], [MQTT-4.3.3-2] (queues {})",
                            pending.id.as_deref().unwrap_or("-"),
                            self.model.queue_bounds()
                        )));
                    }
                },
            }
        }
        for plan in std::mem::take(&mut self.chunk_retained_after) {
            self.model.apply_retained(&plan);
        }
        if self.awaiting_admission.is_empty() {
            return Ok(());
        }
        // The broker retries held PUBLISHes connection by connection, in connection id order, each in arrival order.
        let mut waiting = std::mem::take(&mut self.awaiting_admission);
        waiting.sort_by_key(|p| p.conn);
        // Each connection's link looked up once (the PUBLISHes are sorted by connection, and nothing below changes a
        // link): whether its client does not read, and whether it is gone (closed by the broker).
        let mut gone = Vec::with_capacity(waiting.len());
        let mut last: Option<(ConnectionId, bool, bool)> = None;
        for pending in &mut waiting {
            let (blocked, closed) = match last {
                Some((conn, blocked, closed)) if conn == pending.conn => (blocked, closed),
                _ => {
                    let link = self.links.get(&pending.conn);
                    (link.is_some_and(|l| l.blocked), link.is_none_or(|l| l.closed_by_broker))
                }
            };
            last = Some((pending.conn, blocked, closed));
            if blocked {
                self.make_blind(pending);
            }
            gone.push(closed);
        }
        // What each blind one may have queued unseen, summed once: every retry counts all the others' (the sum less
        // its own). Recounting them per retry made an input quadratic in the held PUBLISHes, and each retry cloned
        // its PUBLISH and plan: seed 219 spent three quarters of its time on both.
        let loads: Vec<u64> = waiting.iter().map(unseen_load).collect();
        let all_unseen: u64 = loads.iter().sum();
        // The bytes of the last eviction the model followed, while nothing it reads has changed since: the same
        // eviction again marks nothing more (`Backlog::mark_evictable` decides by bytes and routing moments, never
        // by what it marked before), so it is skipped. Most retries leave the PUBLISH held and the model as it was,
        // and a seed holding hundreds of them (2069) spent a quarter of its time repeating one eviction.
        let mut evicted_for = None;
        // Which stay held: they stay where they are (moving every held PUBLISH to a new list at every input was 3%
        // of the sweep).
        let mut still_held = vec![false; waiting.len()];
        for (index, pending) in waiting.iter().enumerate() {
            // Each retry that reaches the budget check evicts for the total budget anew, counting what the ones
            // released before it in this input added (seed 1601 of 1..3000, strict on holds: five held PUBLISHes
            // of c2 released in one input, the later ones evicted m2:14 from c1, offline since), and what the
            // blind ones may have added unseen, at this input or an earlier one.
            let unseen = all_unseen - loads[index];
            if evicted_for != Some(unseen) {
                self.model.on_admission_attempt(unseen);
                evicted_for = Some(unseen);
            }
            match acks.replies.get(&(pending.conn, pending.publish.packet_id)) {
                _ if gone[index] => self.drop_held(pending),
                None => {
                    // Still held: the model is as it was.
                    still_held[index] = true;
                    continue;
                }
                Some(reason) if reason.is_error() => self.forget_refused(pending),
                Some(_) => {
                    self.log(format!(
                        "c{} {:?}: broker routes held PUBLISH id={}",
                        pending.client, pending.conn, pending.publish.packet_id
                    ));
                    let v5 = self.clients[pending.client].version.is_v5();
                    let mut plan = self
                        .model
                        .plan_publish(Some(pending.client), &pending.publish, pending.id.clone());
                    let rate = !v5 && self.rate_refused_unseen(pending.conn, pending.publish.packet_id);
                    plan.maybe_dropped = !v5 && (rate || self.model.budget_may_be_used_up(unseen));
                    if plan.maybe_dropped && pending.publish.qos == QoS::ExactlyOnce {
                        self.model
                            .qos2_unsure
                            .insert((pending.client, pending.publish.packet_id));
                    }
                    // The broker retries held PUBLISHes at the end of each input (`release_woken`), and its
                    // acknowledgement leaves in that input's output, which the model has just read: the PUBLISH
                    // was routed now, to the subscriptions of this moment, and is owed to them like any other.
                    // A RETAIN one replaced the topic's retained message then, exactly [MQTT-3.3.1-5] (seed 9222
                    // needed an unpinned plan applied after it to leave the topic unsure, see `apply_retained`).
                    if pending.blind || pending.plan.is_optional() {
                        self.model.unpin(&mut plan);
                    }
                    if pending.blind || pending.plan.is_optional() {
                        // Admitted at some point since it was read, while the publisher did not read: the model
                        // cannot tell when, so it allows the delivery to the subscribers of either moment and owes
                        // it to none. Likewise a resend the broker may have taken as a duplicate (an unsure QoS 2
                        // id, see `Model::qos2_unsure`), its first copy routed then, or not: released from a hold,
                        // it is still owed to none (seed 244 of 1..3000, strict on holds: m0:32's resend held, then
                        // owed to c4, which the broker, holding the id, never sent again).
                        plan.make_optional(pending.plan.clone());
                    }
                    self.model.apply_publish(plan);
                }
            }
            // Dropped, refused or routed: the model changed.
            evicted_for = None;
        }
        let mut still_held = still_held.into_iter();
        waiting.retain(|_| still_held.next() == Some(true));
        self.model.unseen_admissions = waiting.iter().any(|p| p.blind);
        self.awaiting_admission = waiting;
        Ok(())
    }

    /// Storage was suspended when the broker read this QoS 1/2 PUBLISH of a 3.1.1/3.1 client: it cannot store it
    /// and cannot refuse it with a reason code, so it must close the connection in the same input and acknowledge
    /// nothing [MQTT-4.8.0-2]. The PUBLISH is routed nowhere; the client still owns it.
    fn expect_transient_error_close(&mut self, pending: &PendingPublish, acks: &Acks) -> Result<(), Violation> {
        let (client, packet_id) = (pending.client, pending.publish.packet_id);
        let reply = acks.replies.get(&(pending.conn, packet_id));
        let closed = acks.closed.contains(&pending.conn);
        if pending.qos2_maybe_held && reply.map_or(!closed, |r| !r.is_error()) {
            // The broker kept the id of the first receipt: the resend is a duplicate, answered with PUBREC and
            // nothing stored [MQTT-4.3.3-9] — now, or behind output the client has not read yet (seed 19886); that
            // first receipt's routing is already unsure in the model. A new PUBLISH read after it in the same
            // segment may still close the connection (coalesced, seeds 9182, 9348, 15488): the PUBREC went first.
            self.log(format!(
                "c{client} {:?}: broker answers the resend of QoS 2 id={packet_id} as a duplicate (storage suspended)",
                pending.conn
            ));
            return Ok(());
        }
        if let Some(reason) = reply {
            return Err(Violation(format!(
                "the broker acknowledged ({reason:?}) c{client}'s PUBLISH id={packet_id} although storage was \
                 suspended: a 3.1.1 client's connection must be closed instead [MQTT-4.8.0-2]"
            )));
        }
        if !acks.closed.contains(&pending.conn) {
            return Err(Violation(format!(
                "the broker kept c{client}'s {:?} open after a PUBLISH id={packet_id} it could not store (storage \
                 suspended): a transient error must close a 3.1.1 connection [MQTT-4.8.0-2]",
                pending.conn
            )));
        }
        self.log(format!(
            "c{client} {:?}: broker closes on PUBLISH id={packet_id} (storage suspended) [MQTT-4.8.0-2]",
            pending.conn
        ));
        self.drop_held(pending);
        Ok(())
    }

    /// The broker closed `conn`: the PUBLISHes it still held for it die unrouted, at once (a resend on the next
    /// connection, read before another input, is then a new one: seed 1843).
    pub(super) fn drop_held_of(&mut self, conn: ConnectionId) {
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.awaiting_admission)
            .into_iter()
            .partition(|p| p.conn == conn);
        self.awaiting_admission = kept;
        for mut pending in gone {
            if self.links.get(&pending.conn).is_some_and(|l| l.blocked) {
                self.make_blind(&mut pending);
            }
            self.drop_held(&pending);
        }
        self.model.unseen_admissions = self.awaiting_admission.iter().any(|p| p.blind);
    }

    /// A held PUBLISH whose connection is gone was dropped unrouted, unless it was admitted unseen (blind).
    fn drop_held(&mut self, pending: &PendingPublish) {
        if pending.blind {
            // Maybe admitted unseen, its acknowledgement still in the output buffer when the connection went (seed
            // 15108).
            self.route_maybe_admitted(pending);
        }
        if pending.blind && pending.publish.retain {
            // Maybe admitted unseen before the connection went: the topic holds it or what it had.
            self.model.retained_unsure.insert(pending.publish.topic.clone());
            if let Some(id) = &pending.id {
                self.model.ever_retained.insert(id.clone());
            }
        }
        if pending.publish.qos == QoS::ExactlyOnce {
            // A resend of an id the broker may still hold is held as a duplicate, if it is one, behind the
            // PUBLISHes before it [MQTT-4.6.0-3]; dropped, it leaves the id as the broker had it: still unsure
            // (seed 3235: ids 59-61 resent on three connections, held and dropped each time, kept by the broker).
            if pending.blind || pending.qos2_maybe_held {
                self.model
                    .qos2_unsure
                    .insert((pending.client, pending.publish.packet_id));
            }
            self.model.forget_qos2(pending.client, pending.publish.packet_id);
        }
    }

    /// A held PUBLISH the broker may have admitted unseen (its publisher did not read, so the acknowledgement may
    /// have stayed in the output buffer) before it went: its copies may sit in subscribers' queues since as early
    /// as it was read, and count towards their bounds, though none is owed.
    pub(super) fn route_maybe_admitted(&mut self, pending: &PendingPublish) {
        let mut plan = self
            .model
            .plan_publish(Some(pending.client), &pending.publish, pending.id.clone());
        self.model.unpin(&mut plan);
        plan.make_optional(pending.plan.clone());
        plan.maybe_dropped = true;
        self.model.apply_publish(plan);
    }

    /// A SUBSCRIBE while blind PUBLISHes wait: the broker may admit each at any moment until the model sees it go,
    /// so its plan takes in the subscribers of every moment since it was read, not just of its reading and of its
    /// end (seed 1540: c4 subscribed to `a/#` and unsubscribed while c0's m0:6 waited, got the copy admitted in
    /// between, ahead of m3:2, and the model, with no entry for that copy, took it for a later resend's).
    pub(super) fn widen_blind_plans(&mut self) {
        let mut waiting = std::mem::take(&mut self.awaiting_admission);
        for pending in waiting.iter_mut().filter(|p| p.blind) {
            let mut now = self
                .model
                .plan_publish(Some(pending.client), &pending.publish, pending.id.clone());
            now.make_optional(pending.plan.clone());
            pending.plan = now;
        }
        self.awaiting_admission = waiting;
    }

    /// The publisher's connection does not read, so the broker may admit this PUBLISH without the model seeing
    /// its acknowledgement until later: from now on it may reach any matching subscriber.
    fn make_blind(&mut self, pending: &mut PendingPublish) {
        pending.blind = true;
        self.model.unseen_admissions = true;
        if let Some(id) = &pending.id {
            self.model.unpinned.insert(id.clone());
        }
        if pending.publish.retain {
            // Admitted unseen, it may be the topic's retained message from now on, and be sent on SUBSCRIBE
            // (seed 132).
            self.model.retained_unsure.insert(pending.publish.topic.clone());
            if let Some(id) = pending.id.clone().filter(|_| !pending.publish.payload.is_empty()) {
                self.model.ever_retained.insert(id);
            }
        }
    }

    /// Whether the publish rate may have refused this QoS 1/2 PUBLISH of a 3.1.1 client that the broker
    /// acknowledged: 3.1.1 has no reason codes, so the refusal (0x97 in MQTT 5.0 section 3.4.2.1) goes out as a plain
    /// PUBACK/PUBREC, and a refused QoS 2 id is not kept. The model must not count on the broker keeping it (seed
    /// 8984: resends of ids 18 and 22 unsure since an earlier connection, read again when the rate may have been
    /// used up, held, then acknowledged; recovery restored no incoming QoS 2 ids, the model had {18, 22}).
    fn rate_refused_unseen(&mut self, conn: ConnectionId, packet_id: u16) -> bool {
        let unseen = self.rate_may_refuse(conn, packet_id) == Some(true);
        if unseen {
            self.log(format!(
                "{conn:?}: acknowledged PUBLISH id={packet_id}, which the publish rate may have refused (3.1.1: no \
                 reason code)"
            ));
        }
        unseen
    }

    /// A PUBLISH the broker refused (quota): routed nowhere, and a QoS 2 packet id is not remembered (the
    /// PUBREC carried an error).
    fn forget_refused(&mut self, pending: &PendingPublish) {
        self.log(format!(
            "c{} {:?}: broker refuses PUBLISH id={}",
            pending.client, pending.conn, pending.publish.packet_id
        ));
        if pending.publish.qos == QoS::ExactlyOnce {
            self.model.forget_qos2(pending.client, pending.publish.packet_id);
        }
    }
}

/// Payload bytes the blind held PUBLISHes of `waiting` may have queued unseen: the
/// broker may have admitted each at any input since it was read, its acknowledgement kept in the output buffer of
/// a connection that does not read (seed 3995 of 1..12000, strict: c2's m2:48 and m2:49 admitted unseen when c0's
/// connection went, their 609 bytes used the total budget up, and the next admission attempt evicted m1:32 from
/// c0, offline since, which the model, short of those bytes, did not allow).
fn unseen_bytes(waiting: &[PendingPublish]) -> u64 {
    waiting.iter().map(unseen_load).sum()
}

/// What one held PUBLISH may have queued unseen: its plan's bytes if it is blind, else nothing.
fn unseen_load(pending: &PendingPublish) -> u64 {
    if pending.blind {
        crate::model::Model::plan_bytes(&pending.plan)
    } else {
        0
    }
}
