//! The reference model: what the MQTT specifications promise, computed from the packets the broker processed, in
//! the order it processed them (the simulator decodes every client-to-broker stream in step with the broker).
//! Every delivery a client sees is checked against it; the liveness phase checks that every promise was kept.

use crate::acl::SimAcl;
use crate::options::QuotaOptions;
use mqtt_core::packet::{Publish, QoS, ReasonCode, SubscriptionOptions};
use mqtt_core::topic::parse_shared_subscription;
use std::collections::{BTreeMap, BTreeSet};

/// A message's identity, carried at the start of its payload: `m{publisher}:{seq}` or `w{client}:{n}` for wills.
pub type MsgId = String;

/// A broken promise, with the statement of the spec it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

#[derive(Debug, Clone)]
pub struct MessageInfo {
    pub publisher: usize,
    pub topic: String,
    pub qos: QoS,
    /// Carries a short Message Expiry Interval, so it may legitimately never arrive.
    pub expires: bool,
    /// The Message Expiry Interval it was published with (seconds) and when the broker first processed it (ms).
    pub expiry: Option<u32>,
    pub first_seen_ms: u64,
}

/// The broker's session for one client, as the model predicts it.
#[derive(Debug, Default, Clone)]
pub struct SessionModel {
    pub exists: bool,
    /// Incremented whenever the broker starts a new session for the client.
    pub epoch: u64,
    pub subscriptions: BTreeMap<String, SubscriptionOptions>,
    /// Maximum Packet Size the client announced (MQTT 5): larger messages are not sent to it [MQTT-3.1.2-25].
    pub max_packet_size: Option<u32>,
    /// Session Present the next CONNACK must carry [MQTT-3.2.2-2], [MQTT-3.2.2-3].
    pub expect_present: Option<bool>,
    /// Incoming QoS 2 packet ids routed and not yet released: a PUBLISH reusing one is a duplicate
    /// [MQTT-4.3.3-9].
    pub qos2_pending: BTreeSet<u16>,
}

/// What a will's connection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WillState {
    Armed,
    /// Normal DISCONNECT: the will must never be published [MQTT-3.1.2-10].
    Discarded,
    /// The connection ended otherwise: the will is due.
    Due,
    /// Ended abnormally with a Will Delay Interval while the session lives on: the will may be published from
    /// `due_at` (ms) on, unless the session resumes first [MQTT-3.1.3-9]. No delivery is owed (the subscribers
    /// are those at publication time, which the model does not pin down).
    Delayed {
        due_at: u64,
    },
    /// The session resumed within the Will Delay Interval: the will must never be published [MQTT-3.1.3-9].
    Cancelled,
}

#[derive(Default, Clone)]
pub struct Model {
    pub sessions: Vec<SessionModel>,
    pub messages: BTreeMap<MsgId, MessageInfo>,
    /// (client, epoch, message) → highest QoS promised by a matching non-shared subscription.
    pub expected: BTreeMap<(usize, u64, MsgId), QoS>,
    /// (client, epoch, message) that a shared subscription may deliver.
    pub shared_allowed: BTreeSet<(usize, u64, MsgId)>,
    /// (client, epoch, message) → first-time deliveries counted by the client.
    pub delivered: BTreeMap<(usize, u64, MsgId), u32>,
    /// When each (client, epoch, message) was first owed, in the broker's routing order.
    pub owed_order: BTreeMap<(usize, u64, MsgId), u64>,
    routed: u64,
    /// Routing order of the last first-delivery per (client, epoch, publisher, topic), for ordering.
    pub last_order: BTreeMap<(usize, u64, usize, String), u64>,
    /// Retained message per topic as the broker should hold it.
    pub retained: BTreeMap<String, MsgId>,
    pub ever_retained: BTreeSet<MsgId>,
    pub wills: BTreeMap<MsgId, WillState>,
    /// The delayed will of each client, if one is pending.
    pub delayed_wills: BTreeMap<usize, MsgId>,
    pub deliveries: u64,
    /// The broker may drop messages from full queues (see `Options::max_queued_messages`).
    pub bounded_queues: bool,
    /// (client, epoch, message) routed more than once (a QoS 1 resend with DUP is a new publication) while the
    /// broker may drop: if the first copy was dropped, the resend legitimately arrives after later messages.
    pub reordered_ok: BTreeSet<(usize, u64, MsgId)>,
    /// (client, epoch, message) the broker may deliver but does not owe: too close to the client's Maximum
    /// Packet Size to tell whether it fits.
    pub optional: BTreeSet<(usize, u64, MsgId)>,
    /// The broker's quotas the model predicts (see `subscribe_refusal`, `topic_refused`).
    pub quotas: QuotaOptions,
    /// The access rules the broker enforces.
    pub acl: SimAcl,
    /// (client, SUBSCRIBE packet id) → the refusal predicted for each of its filters, checked against SUBACK.
    pub predicted_subacks: BTreeMap<(usize, u16), Vec<Option<ReasonCode>>>,
}

/// What routing one PUBLISH does to the model (see [`Model::plan_publish`]).
#[derive(Debug, Clone)]
pub struct RoutingPlan {
    /// The retained store's change: the topic, and the message now retained there (`None`: cleared).
    retained: Option<(String, Option<MsgId>)>,
    id: Option<MsgId>,
    targets: Vec<((usize, u64, MsgId), Target)>,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    /// A matching non-shared subscription promises delivery at this QoS.
    Owed(QoS),
    /// A shared subscription's group may pick this client.
    Shared,
    /// Too close to the client's Maximum Packet Size to tell whether it fits.
    Optional,
}

/// Topic filter matching per section 4.7, including the `$` rule [MQTT-4.7.2-1].
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match (level, topic_levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(t)) if f == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// The topic filter without a `$share/{group}/` prefix.
pub fn plain_filter(filter: &str) -> &str {
    match parse_shared_subscription(filter) {
        Ok(Some(shared)) => shared.filter,
        _ => filter,
    }
}

/// The message id at the start of a payload, if any.
pub fn message_id(payload: &[u8]) -> Option<MsgId> {
    let text = std::str::from_utf8(payload).ok()?;
    let id = text.split(' ').next()?;
    // Exactly `m{publisher}:{seq}` or `w{client}:{n}`: other payloads ($SYS values such as "mqtt-broker") are not
    // the simulator's messages.
    let (publisher, seq) = id.get(1..)?.split_once(':')?;
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let tagged = id.starts_with('m') || id.starts_with('w');
    (tagged && numeric(publisher) && numeric(seq)).then(|| id.to_string())
}

impl Model {
    /// `bounded_queues`: the broker may drop queued messages (small max_queued_messages).
    pub fn new(clients: usize, bounded_queues: bool) -> Model {
        Model {
            sessions: vec![SessionModel::default(); clients],
            bounded_queues,
            ..Default::default()
        }
    }

    /// The broker quotas the model predicts refusals from.
    pub fn with_quotas(mut self, quotas: QuotaOptions) -> Model {
        self.quotas = quotas;
        self.acl = SimAcl {
            enabled: quotas.acl,
            ..SimAcl::default()
        };
        self
    }

    /// The broker processed a CONNECT from `client`.
    pub fn on_connect(&mut self, client: usize, clean_start: bool, now: u64) {
        let present = !clean_start && self.sessions[client].exists;
        if let Some(id) = self.delayed_wills.remove(&client) {
            if let Some(state) = self.wills.get_mut(&id) {
                match *state {
                    // The session resumed before the delay ran out: no will.
                    WillState::Delayed { due_at } if present && now < due_at => *state = WillState::Cancelled,
                    // Clean Start ends the old session, which publishes its will now.
                    WillState::Delayed { due_at } if !present => {
                        *state = WillState::Delayed {
                            due_at: due_at.min(now),
                        }
                    }
                    _ => {}
                }
            }
        }
        let session = &mut self.sessions[client];
        session.expect_present = Some(present);
        if !present {
            session.epoch += 1;
            session.subscriptions.clear();
            session.qos2_pending.clear();
        }
        session.exists = true;
    }

    /// A connection of a client whose session ends with it (Session Expiry 0) is gone.
    pub fn on_session_end(&mut self, client: usize) {
        let session = &mut self.sessions[client];
        session.exists = false;
        session.subscriptions.clear();
        session.qos2_pending.clear();
    }

    /// Whether the broker routes this PUBLISH from `client`: a QoS 2 one whose packet id awaits PUBREL is a
    /// duplicate and is not routed again.
    pub fn routes_publish(&mut self, client: usize, publish: &Publish) -> bool {
        // Refused with 0x90 (QoS 0: dropped): routed nowhere, and a QoS 2 packet id is not remembered.
        if self.topic_refused(&publish.topic) {
            return false;
        }
        // Denied by the access rules: 0x87 for MQTT 5, acknowledged and dropped for 3.1.1; routed nowhere either way.
        if !self.acl.may_publish(client, &publish.topic) {
            return false;
        }
        publish.qos != QoS::ExactlyOnce || self.sessions[client].qos2_pending.insert(publish.packet_id)
    }

    /// Whether the broker refuses a topic name for its depth or length.
    pub fn topic_refused(&self, topic: &str) -> bool {
        self.too_deep(topic) || self.too_long(topic)
    }

    fn too_deep(&self, topic: &str) -> bool {
        let max = self.quotas.max_topic_levels;
        max > 0 && topic.split('/').count() > max
    }

    fn too_long(&self, topic: &str) -> bool {
        let max = self.quotas.max_topic_length;
        max > 0 && topic.len() > max
    }

    /// The SUBACK reason the broker gives a filter of `client` beyond a quota, if any: 0x8F for a filter too deep,
    /// 0x97 for a new one beyond `max_subscriptions_per_client` (replacing one is always allowed).
    pub fn subscribe_refusal(&self, client: usize, filter: &str) -> Option<ReasonCode> {
        // Depth without the shared prefix, length with it (that is what the broker stores).
        if self.too_deep(plain_filter(filter)) || self.too_long(filter) {
            return Some(ReasonCode::TOPIC_FILTER_INVALID);
        }
        let max = self.quotas.max_subscriptions_per_client;
        let subscriptions = &self.sessions[client].subscriptions;
        if max > 0 && !subscriptions.contains_key(filter) && subscriptions.len() >= max {
            return Some(ReasonCode::QUOTA_EXCEEDED);
        }
        (!self.acl.may_subscribe(client, plain_filter(filter))).then_some(ReasonCode::NOT_AUTHORIZED)
    }

    pub fn on_pubrel(&mut self, client: usize, packet_id: u16) {
        self.sessions[client].qos2_pending.remove(&packet_id);
    }

    pub fn on_subscribe(&mut self, client: usize, filter: &str, options: SubscriptionOptions) {
        self.sessions[client].subscriptions.insert(filter.to_string(), options);
    }

    pub fn on_unsubscribe(&mut self, client: usize, filter: &str) {
        self.sessions[client].subscriptions.remove(filter);
    }

    /// The broker processed a PUBLISH (or published a will): record who is owed it.
    pub fn on_publish(&mut self, publisher: Option<usize>, publish: &Publish, id: Option<MsgId>) {
        let plan = self.plan_publish(publisher, publish, id);
        self.apply_publish(plan);
    }

    /// Who would be owed `publish` if the broker routed it now. The broker may hold a QoS 1/2 PUBLISH until a
    /// subscriber's queue has room (and route it then, to the subscriptions of that moment), so the world applies
    /// a plan only once it knows the broker routed the PUBLISH.
    pub fn plan_publish(&self, publisher: Option<usize>, publish: &Publish, id: Option<MsgId>) -> RoutingPlan {
        let mut plan = RoutingPlan {
            retained: publish.retain.then(|| {
                let id = id.clone().filter(|_| !publish.payload.is_empty());
                (publish.topic.clone(), id)
            }),
            id: id.clone(),
            targets: Vec::new(),
        };
        let Some(id) = id else {
            return plan;
        };
        for (client, session) in self.sessions.iter().enumerate() {
            // A client that may not read the topic gets nothing through any subscription.
            if !session.exists || !self.acl.may_read(client, &publish.topic) {
                continue;
            }
            let mut best: Option<QoS> = None;
            for (filter, options) in &session.subscriptions {
                match parse_shared_subscription(filter) {
                    Ok(Some(shared)) if matches(shared.filter, &publish.topic) => {
                        plan.targets.push(((client, session.epoch, id.clone()), Target::Shared));
                    }
                    Ok(None) if matches(filter, &publish.topic) => {
                        // [MQTT-3.8.3-3]: No Local.
                        if options.no_local && publisher == Some(client) {
                            continue;
                        }
                        let qos = publish.qos.min(options.qos);
                        best = Some(best.map_or(qos, |b| b.max(qos)));
                    }
                    _ => {}
                }
            }
            if let Some(qos) = best {
                let key = (client, session.epoch, id.clone());
                // A PUBLISH to this client is at most payload + topic + 35 bytes (fixed header, topic length,
                // packet id, expiry, a user property, subscription identifiers); one that may not fit its
                // Maximum Packet Size may be dropped [MQTT-3.1.2-25].
                let size = publish.payload.len() + publish.topic.len() + 64;
                if session.max_packet_size.is_some_and(|max| size > max as usize) {
                    plan.targets.push((key, Target::Optional));
                } else {
                    plan.targets.push((key, Target::Owed(qos)));
                }
            }
        }
        plan
    }

    pub fn apply_publish(&mut self, plan: RoutingPlan) {
        if let Some((topic, id)) = plan.retained {
            match id {
                Some(id) => {
                    self.retained.insert(topic, id.clone());
                    self.ever_retained.insert(id);
                }
                None => {
                    self.retained.remove(&topic);
                }
            }
        }
        if plan.id.is_none() {
            return;
        }
        self.routed += 1;
        for (key, target) in plan.targets {
            match target {
                Target::Shared => {
                    self.shared_allowed.insert(key);
                }
                Target::Optional => {
                    self.optional.insert(key);
                }
                Target::Owed(qos) => {
                    // Ordering is owed from the first routing that promised QoS 1 or 2 (a QoS 0 one may be dropped).
                    if qos != QoS::AtMostOnce {
                        self.owed_order.entry(key.clone()).or_insert(self.routed);
                    }
                    if self.bounded_queues && self.expected.contains_key(&key) {
                        self.reordered_ok.insert(key.clone());
                    }
                    let entry = self.expected.entry(key).or_insert(qos);
                    *entry = (*entry).max(qos);
                }
            }
        }
    }

    /// A QoS 2 PUBLISH the broker held and then dropped unrouted (its connection closed): its packet id is free
    /// again, as the broker never took it.
    pub fn forget_qos2(&mut self, client: usize, packet_id: u16) {
        self.sessions[client].qos2_pending.remove(&packet_id);
    }

    /// A client received a PUBLISH. `first_time` is false for a QoS 2 the client already holds (a DUP resend).
    pub fn on_delivery(
        &mut self,
        client: usize,
        epoch: u64,
        publish: &Publish,
        first_time: bool,
        client_filters: &BTreeSet<String>,
    ) -> Result<(), Violation> {
        self.deliveries += 1;
        let Some(id) = message_id(&publish.payload) else {
            return Ok(());
        };
        let key = (client, epoch, id.clone());
        let expected = self.expected.get(&key).copied();
        let shared = self.shared_allowed.contains(&key) || self.optional.contains(&key);
        let retained_ok = publish.retain
            && self.ever_retained.contains(&id)
            && client_filters.iter().any(|f| {
                let plain = parse_shared_subscription(f)
                    .ok()
                    .flatten()
                    .map_or(f.as_str(), |s| s.filter);
                matches(plain, &publish.topic)
            });
        if expected.is_none() && !shared && !retained_ok {
            return Err(Violation(format!(
                "client {client} got {id} on '{}' without a matching subscription when it was published \
                 [MQTT-4.7], [MQTT-3.10.4-2]",
                publish.topic
            )));
        }
        if let Some(info) = self.messages.get(&id) {
            if publish.qos > info.qos {
                return Err(Violation(format!(
                    "client {client} got {id} at {:?}, above the published {:?} [MQTT-3.8.4-8]",
                    publish.qos, info.qos
                )));
            }
        }
        // Each shared subscription delivers independently, so a member of several matching groups may get
        // several copies; only non-shared deliveries are counted.
        if publish.retain || !first_time || (shared && expected.is_none()) {
            return Ok(());
        }
        let count = self.delivered.entry(key.clone()).or_insert(0);
        *count += 1;
        let published_qos = self.messages.get(&id).map(|m| m.qos);
        if *count > 1 && publish.qos == QoS::ExactlyOnce && !shared {
            return Err(Violation(format!(
                "client {client} got QoS 2 message {id} twice [MQTT-4.3.3]"
            )));
        }
        if *count > 1 && published_qos == Some(QoS::AtMostOnce) {
            return Err(Violation(format!(
                "client {client} got QoS 0 message {id} twice [MQTT-4.3.1]"
            )));
        }
        // [MQTT-4.6.0-6]: per publisher and topic, QoS 1/2 messages arrive in the order the broker received them.
        let order = self.owed_order.get(&key).copied();
        if let (Some(info), Some(order), QoS::AtLeastOnce | QoS::ExactlyOnce) =
            (self.messages.get(&id), order, publish.qos)
        {
            // A message that expired in a queue and was then published again (a QoS 1 resend) legitimately
            // arrives out of order.
            if *count == 1 && !info.expires && !self.reordered_ok.contains(&key) {
                let order_key = (client, epoch, info.publisher, info.topic.clone());
                if self.last_order.get(&order_key).is_some_and(|&last| order < last) {
                    return Err(Violation(format!(
                        "client {client} got {id} after a later message of the same publisher and topic \
                         [MQTT-4.6.0-6]"
                    )));
                }
                self.last_order.insert(order_key, order);
            }
        }
        Ok(())
    }

    /// A will arrived somewhere: only legal for a connection that ended without a normal DISCONNECT.
    pub fn on_will_delivery(&self, id: &str, now: u64) -> Result<(), Violation> {
        match self.wills.get(id) {
            Some(WillState::Discarded) => Err(Violation(format!(
                "will {id} published after a normal DISCONNECT [MQTT-3.1.2-10]"
            ))),
            Some(WillState::Armed) => Err(Violation(format!("will {id} published while its connection was open"))),
            Some(WillState::Cancelled) => Err(Violation(format!(
                "will {id} published although its session resumed within the Will Delay Interval [MQTT-3.1.3-9]"
            ))),
            Some(WillState::Delayed { due_at }) if now < *due_at => Err(Violation(format!(
                "will {id} published {}ms before its Will Delay Interval ran out [MQTT-3.1.3-9]",
                due_at - now
            ))),
            _ => Ok(()),
        }
    }

    /// Liveness: every QoS 1/2 message promised to a session that still exists was delivered to it.
    pub fn check_liveness(&self) -> Result<(), Violation> {
        for ((client, epoch, id), qos) in &self.expected {
            let session = &self.sessions[*client];
            if *qos == QoS::AtMostOnce || !session.exists || session.epoch != *epoch {
                continue;
            }
            if self.messages.get(id).is_some_and(|m| m.expires) {
                continue;
            }
            if !self.delivered.contains_key(&(*client, *epoch, id.clone())) {
                return Err(Violation(format!(
                    "client {client} never got {id} ({qos:?}) although its session survived [MQTT-4.3.2], \
                     [MQTT-4.4.0-1]"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_follows_section_4_7() {
        assert!(matches("a/+", "a/b"));
        assert!(!matches("a/+", "a/b/c"), "+ is one level [MQTT-4.7.1-3]");
        assert!(matches("a/#", "a"), "# includes the parent level [MQTT-4.7.1-2]");
        assert!(matches("#", "a/b/c"));
        assert!(!matches("#", "$SYS/x"), "[MQTT-4.7.2-1]");
        assert!(!matches("+/x", "$SYS/x"), "[MQTT-4.7.2-1]");
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(!matches("a/b", "a"));
    }

    #[test]
    fn message_ids_are_strict() {
        assert_eq!(message_id(b"m3:17 ppp").as_deref(), Some("m3:17"));
        assert_eq!(message_id(b"w2:1").as_deref(), Some("w2:1"));
        assert_eq!(message_id(b"mqtt-broker"), None);
        assert_eq!(message_id(b""), None);
        assert_eq!(plain_filter("$share/g/a/+"), "a/+");
    }
}
