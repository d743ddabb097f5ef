//! What the model predicts of the broker's flow control and bounded queues (see `queue` for the counting): which
//! QoS 1/2 PUBLISHes the broker must admit at once, which it may hold or refuse, and which drops are allowed.

use super::{matches, shared_filter, Entry, Model, MsgId, Violation};
use mqtt_core::packet::{Publish, QoS, RetainHandling, SubscriptionOptions};
use std::collections::BTreeMap;

/// One message routed to one shared subscription (see `Model::shared_routes`).
#[derive(Debug, Clone, Default)]
pub struct SharedRoute {
    pub routings: u32,
    pub picks: u32,
    /// Each member with the QoS its copy would have.
    pub members: BTreeMap<usize, QoS>,
}

/// Deliveries (messages, bytes) per client that earlier PUBLISHes of the same broker input may add.
pub type Pending = BTreeMap<usize, (usize, u64)>;

impl Model {
    /// Upper bound of the payload bytes all sessions hold (`max_queued_bytes_total` counts these).
    pub fn total_upper(&self) -> u64 {
        self.sessions.iter().map(|s| s.backlog.bytes_upper()).sum()
    }

    /// Whether the total budget may be used up (with `extra` bytes more).
    pub fn budget_may_be_used_up(&self, extra: u64) -> bool {
        self.limits.total > 0 && self.total_upper() + extra >= self.limits.total
    }

    /// Why the broker may drop a QoS 1/2 delivery to `client` routed now, if it may. A client's PUBLISH was
    /// admitted only because no online subscriber's queue was full, so it reaches every online one; offline
    /// sessions drop what does not fit, and so does every session for a will (which is not held).
    /// `others`: bytes the routing's other deliveries, not counted yet, may have queued before this one.
    pub(super) fn drop_allowed(&self, client: usize, via_admission: bool, others: u64) -> Option<&'static str> {
        if self.unseen_admissions {
            return Some("a PUBLISH may have been admitted unseen");
        }
        let session = &self.sessions[client];
        let full = session.backlog.may_be_full(self.limits, (0, 0));
        if !session.online {
            if full {
                return Some("the offline session's queue may have been full");
            }
            if self.budget_may_be_used_up(others) {
                return Some("the total queued-bytes budget may have been used up");
            }
            return None;
        }
        (!via_admission && full).then_some("the queue may have been full for a message that is not held")
    }

    /// Why the broker may hold or refuse this QoS 1/2 PUBLISH of `publisher` instead of routing it at once, if
    /// it may; `None`: it must route it now. Every session with a matching subscription counts, whatever it may
    /// read: the broker decides admission before it checks read access per delivery.
    pub fn admission_uncertainty(&self, publisher: usize, publish: &Publish, pending: &Pending) -> Option<String> {
        if self.unseen_admissions {
            return Some("a PUBLISH may have been admitted unseen".into());
        }
        let mut queues_anything = false;
        for (client, session) in self.sessions.iter().enumerate() {
            if !session.exists {
                continue;
            }
            let queued = session.subscriptions.iter().any(|(filter, options)| {
                let (plain, shared) = shared_filter(filter).map_or((filter.as_str(), false), |s| (s.filter, true));
                let local = !shared && options.no_local && publisher == client;
                matches(plain, &publish.topic) && !local && publish.qos.min(options.qos) != QoS::AtMostOnce
            });
            if !queued {
                continue;
            }
            queues_anything = true;
            let extra = pending.get(&client).copied().unwrap_or_default();
            if session.online && session.backlog.may_be_full(self.limits, extra) {
                return Some(format!("c{client}'s queue may be full"));
            }
        }
        let extra_bytes = pending.values().map(|(_, bytes)| bytes).sum();
        (queues_anything && self.budget_may_be_used_up(extra_bytes))
            .then(|| "the total queued-bytes budget may be used up".to_string())
    }

    /// The model's bounds of every online session's queue, for a violation's message.
    pub fn queue_bounds(&self) -> String {
        let online = self.sessions.iter().enumerate().filter(|(_, s)| s.exists && s.online);
        let bounds: Vec<String> = online
            .map(|(c, s)| {
                format!(
                    "c{c}: {} queued, {} bytes",
                    s.backlog.queued_upper(),
                    s.backlog.bytes_upper()
                )
            })
            .collect();
        format!(
            "at most {}; total at most {} bytes",
            bounds.join(", "),
            self.total_upper()
        )
    }

    /// The broker tries to admit a QoS 1/2 PUBLISH: with the total budget used up, it evicts the oldest queued
    /// messages of offline sessions (see `mqtt_core::broker::quota`) until the total is down to three quarters.
    /// `extra`: bytes that PUBLISHes read earlier in the same input may have added. Returns how many bytes the
    /// eviction may have taken (0: none).
    pub fn on_admission_attempt(&mut self, extra: u64) -> u64 {
        if !self.budget_may_be_used_up(extra) {
            return 0;
        }
        let target = self.limits.total - self.limits.total / 4;
        let need = (self.total_upper() + extra).saturating_sub(target);
        self.evict_offline(need);
        need
    }

    /// The total budget's eviction may have taken up to `need` bytes from the front of offline sessions' queues.
    pub fn evict_offline(&mut self, need: u64) {
        let unpinned = &self.unpinned;
        for session in self.sessions.iter_mut().filter(|s| !s.online) {
            session.backlog.mark_evictable(
                need,
                |id| unpinned.contains(id),
                "evicted from an offline session for the total queued-bytes budget",
            );
        }
    }

    /// The deliveries a routing plan adds per client, for the admission of later PUBLISHes of the same input.
    pub fn plan_load(plan: &super::RoutingPlan, into: &mut Pending) {
        for ((client, _, _), target) in &plan.targets {
            let qos = match target {
                super::Target::Owed(qos) | super::Target::Optional(qos) | super::Target::Shared(qos, _) => *qos,
            };
            if qos != QoS::AtMostOnce {
                let load = into.entry(*client).or_default();
                load.0 += 1;
                load.1 += plan.bytes;
            }
        }
    }

    /// The bytes `plan_load` adds over all clients (its total), without building the per-client map.
    pub fn plan_bytes(plan: &super::RoutingPlan) -> u64 {
        let queued = plan.targets.iter().filter(|(_, target)| {
            let qos = match target {
                super::Target::Owed(qos) | super::Target::Optional(qos) | super::Target::Shared(qos, _) => *qos,
            };
            qos != QoS::AtMostOnce
        });
        queued.count() as u64 * plan.bytes
    }

    /// Retained messages a new subscription may be sent [MQTT-3.3.1-9..11]: counted in the session's queue bound
    /// (the broker queues them like any delivery) but not owed here. One that had expired when the broker read the
    /// SUBSCRIBE (`now`) is deleted and must not be sent [MQTT-3.3.2-5].
    pub fn on_subscribe_retained(
        &mut self,
        client: usize,
        filter: &str,
        options: SubscriptionOptions,
        is_new: bool,
        now: u64,
    ) {
        let wanted = match options.retain_handling {
            RetainHandling::SendAtSubscribe => true,
            RetainHandling::SendIfNew => is_new,
            RetainHandling::DoNotSend => false,
        };
        if !wanted || shared_filter(filter).is_some() {
            return;
        }
        let mut entries = Vec::new();
        let mut offers = Vec::new();
        for (topic, candidates) in self.retained_candidates(filter) {
            if !self.acl.may_read(client, &topic) {
                continue;
            }
            // Where the model does not pin the topic down, the broker's copy is one of the candidates: each is
            // counted (an upper bound of the queue) until the client receives one (see `Backlog::on_received`).
            let alternatives = if candidates.len() > 1 {
                format!("retained:{topic}")
            } else {
                String::new()
            };
            for (id, info) in candidates {
                // Only a client's PUBLISH is pinned to the moment the broker read it (a will is published by a timer).
                let expired = self
                    .messages
                    .contains_key(&id)
                    .then(|| info.expired_for_sure(now))
                    .flatten();
                if let Some(ago) = expired {
                    let key = (client, self.sessions[client].epoch, id);
                    self.retained_withheld.insert(key, ago);
                    self.retained_expired_withheld += 1;
                    continue;
                }
                offers.push(id.clone());
                if info.qos.min(options.qos) != QoS::AtMostOnce {
                    entries.push(Entry {
                        id,
                        bytes: info.bytes,
                        batch: self.batch,
                        received: false,
                        in_window: false,
                        packet_id: 0,
                        retained_copy: true,
                        droppable: Some("a retained message sent on subscribe (not checked yet)"),
                        shared: false,
                        group: alternatives.clone(),
                        unplanned: false,
                    });
                }
            }
        }
        for entry in entries {
            self.sessions[client].backlog.push(entry);
        }
        for id in offers {
            self.offer_retained(client, &id, now);
        }
    }

    /// Per retained topic matching `filter`: the messages the broker may hold there. The one the model has, and
    /// where the model cannot pin the topic down (`retained_unsure`) every message ever retained on it.
    fn retained_candidates(&self, filter: &str) -> Vec<(String, Vec<(MsgId, super::MessageInfo)>)> {
        let info = |id: &MsgId| self.messages.get(id).or_else(|| self.will_messages.get(id)).cloned();
        let topics: std::collections::BTreeSet<&String> = self
            .retained
            .keys()
            .chain(self.retained_unsure.iter())
            .filter(|topic| matches(filter, topic))
            .collect();
        let mut out = Vec::new();
        for topic in topics {
            let mut candidates: Vec<(MsgId, super::MessageInfo)> = Vec::new();
            if let Some(id) = self.retained.get(topic) {
                candidates.extend(info(id).map(|i| (id.clone(), i)));
            }
            if self.retained_unsure.contains(topic) {
                for id in &self.ever_retained {
                    if let Some(i) = info(id).filter(|i| &i.topic == topic) {
                        if !candidates.iter().any(|(c, _)| c == id) {
                            candidates.push((id.clone(), i));
                        }
                    }
                }
            }
            if !candidates.is_empty() {
                out.push((topic.clone(), candidates));
            }
        }
        out
    }

    /// One routing's copy for `key`: owed through a non-shared subscription, or one for the shared subscription
    /// (counted once per group and routing in `groups_routed`).
    pub(super) fn count_copy(
        &mut self,
        key: &(usize, u64, MsgId),
        target: &super::Target,
        groups_routed: &mut std::collections::BTreeSet<String>,
    ) {
        match target {
            super::Target::Owed(_) | super::Target::Optional(_) => {
                *self.owed_copies.entry(key.clone()).or_default() += 1;
            }
            super::Target::Shared(qos, group) => {
                let route = self.shared_routes.entry((group.clone(), key.2.clone())).or_default();
                route.members.insert(key.0, *qos);
                if groups_routed.insert(group.clone()) {
                    route.routings += 1;
                }
            }
        }
    }

    /// A first copy (not DUP) of `id` reached `client`: beyond the copies owed through its non-shared
    /// subscriptions, it must be a shared subscription's one copy per routing: a second member of the same group
    /// getting it is a violation [MQTT-4.8.2].
    pub(super) fn check_shared_copy(&mut self, client: usize, epoch: u64, id: &MsgId) -> Result<(), Violation> {
        if self.unpinned.contains(id) {
            return Ok(());
        }
        let key = (client, epoch, id.clone());
        let got = self.copies_got.entry(key.clone()).or_default();
        *got += 1;
        if *got <= self.owed_copies.get(&key).copied().unwrap_or(0) {
            return Ok(());
        }
        // Which group a copy came through cannot always be told (a member of several), so the groups are counted
        // together: every copy beyond the owed ones is one group's single copy of one routing.
        let mut member = false;
        let mut routings = 0;
        for ((_, message), route) in &self.shared_routes {
            if message == id {
                routings += route.routings;
                member |= route.members.contains_key(&client);
            }
        }
        if !member {
            return Ok(());
        }
        let copies = self.shared_copies.entry(id.clone()).or_default();
        *copies += 1;
        if *copies <= routings {
            return Ok(());
        }
        Err(Violation(format!(
            "c{client} got {id} as copy {copies} of its shared subscriptions, which it was routed to {routings} \
             time(s): a second member of a group got it [MQTT-4.8.2]"
        )))
    }

    /// A retained copy of `id` may be sent to `client` because of a SUBSCRIBE it made, read by the broker at `now`.
    pub fn offer_retained(&mut self, client: usize, id: &MsgId, now: u64) {
        let key = (client, self.sessions[client].epoch, id.clone());
        *self.retained_offers.entry(key.clone()).or_default() += 1;
        self.retained_offer_ms.entry(key.clone()).or_insert(now);
        self.retained_offered.insert(key);
    }

    /// A delivery with RETAIN set must be a copy some SUBSCRIBE asked for: not for Retain Handling 2, nor for 1 when
    /// the subscription existed [MQTT-3.3.1-10], [MQTT-3.3.1-11], nor a stale one.
    pub(super) fn check_retained_offer(
        &mut self,
        client: usize,
        epoch: u64,
        publish: &Publish,
        id: &MsgId,
    ) -> Result<(), Violation> {
        let key = (client, epoch, id.clone());
        let offered = if publish.dup {
            self.retained_offered.contains(&key)
        } else {
            match self.retained_offers.get_mut(&key) {
                Some(count) if *count > 0 => {
                    *count -= 1;
                    true
                }
                _ => false,
            }
        };
        // Where the model does not pin the retained store down, it does not hold the broker to it (nor for a will,
        // published by a timer). A message with an expiry is held to it too: see `check_retained_expiry`.
        let unsure = self.retained_unsure.contains(&publish.topic) || !self.messages.contains_key(id);
        if offered || unsure {
            return Ok(());
        }
        Err(Violation(format!(
            "c{client} got retained {id} on '{}' that no SUBSCRIBE of it asked for (Retain Handling 2, or 1 on an \
             existing subscription) [MQTT-3.3.1-10], [MQTT-3.3.1-11]",
            publish.topic
        )))
    }

    /// The client received QoS 1/2 delivery `id` for the first time: deliveries routed to it before and not
    /// received were dropped, which must be allowed. A shared delivery is no longer owed to other members.
    pub fn on_receipt(
        &mut self,
        client: usize,
        epoch: u64,
        publish: &Publish,
        id: &MsgId,
        now: u64,
    ) -> Result<(), Violation> {
        let backlog = &mut self.sessions[client].backlog;
        let resend = backlog.resent(id, publish.packet_id, publish.dup).is_some();
        let (found, skipped) = backlog.on_received(id, publish.packet_id, publish.dup, publish.retain);
        if found.is_none() {
            backlog.adopt_unplanned(id, publish.packet_id, publish.payload.len() as u64, publish.retain);
        }
        // A resend of a shared copy already received took nothing more from the group: the other members' copies
        // are other routings' (seed 10209: c5's DUP of m2:12 removed c0's copy of the second routing, which the
        // broker had queued for c0, and c0's count was short of it).
        if let Some(found) = found.filter(|e| e.shared && !resend) {
            for (other, session) in self.sessions.iter_mut().enumerate() {
                if other != client {
                    session.backlog.remove_shared(id, &found.group);
                }
            }
        }
        for entry in skipped {
            self.excuse_or_fail(client, epoch, &entry, now, Some(id))?;
        }
        Ok(())
    }

    fn excuse_or_fail(
        &mut self,
        client: usize,
        epoch: u64,
        entry: &Entry,
        now: u64,
        overtaken_by: Option<&MsgId>,
    ) -> Result<(), Violation> {
        let expired = self
            .messages
            .get(&entry.id)
            .is_some_and(|m| m.expired_by(now) || m.expired_before_restart);
        // An allowed drop: the message must then not be owed elsewhere.
        if entry.droppable.is_some() || expired {
            self.excused.insert((client, epoch, entry.id.clone()));
            return Ok(());
        }
        let how = match overtaken_by {
            Some(later) => format!("{later}, routed to it later, arrived first"),
            None => "it never arrived".to_string(),
        };
        Err(Violation(format!(
            "c{client}: {} was dropped from its queue although the queue was not full, the queued-bytes budget not \
             used up and the message not expired ({how}) [MQTT-4.3.2], [MQTT-4.6.0-6]",
            entry.id
        )))
    }

    /// The broker processed the client's PUBACK or PUBCOMP for `packet_id`.
    pub fn on_client_ack(&mut self, client: usize, packet_id: u16) {
        self.sessions[client].backlog.complete(packet_id);
    }

    /// After the liveness phase: what an online session was routed and never received was dropped, which must
    /// have been allowed.
    pub fn check_backlogs(&mut self, now: u64) -> Result<(), Violation> {
        for client in 0..self.sessions.len() {
            let session = &self.sessions[client];
            if !session.exists || !session.online {
                continue;
            }
            let epoch = session.epoch;
            let lost: Vec<Entry> = session.backlog.unreceived().filter(|e| !e.shared).cloned().collect();
            for entry in lost {
                self.excuse_or_fail(client, epoch, &entry, now, None)?;
            }
        }
        Ok(())
    }
}
