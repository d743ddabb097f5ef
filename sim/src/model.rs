//! The reference model: what the MQTT specifications promise, computed from the packets the broker processed, in
//! the order it processed them (the simulator decodes every client-to-broker stream in step with the broker).
//! Every delivery a client sees is checked against it; the liveness phase checks that every promise was kept.

use mqtt_core::packet::{Publish, QoS, SubscriptionOptions};
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
}

/// The broker's session for one client, as the model predicts it.
#[derive(Debug, Default, Clone)]
pub struct SessionModel {
    pub exists: bool,
    /// Incremented whenever the broker starts a new session for the client.
    pub epoch: u64,
    pub subscriptions: BTreeMap<String, SubscriptionOptions>,
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
}

#[derive(Default)]
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
    pub deliveries: u64,
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

/// The message id at the start of a payload, if any.
pub fn message_id(payload: &[u8]) -> Option<MsgId> {
    let text = std::str::from_utf8(payload).ok()?;
    let id = text.split(' ').next()?;
    (id.starts_with('m') || id.starts_with('w')).then(|| id.to_string())
}

impl Model {
    pub fn new(clients: usize) -> Model {
        Model {
            sessions: vec![SessionModel::default(); clients],
            ..Default::default()
        }
    }

    /// The broker processed a CONNECT from `client`.
    pub fn on_connect(&mut self, client: usize, clean_start: bool) {
        let session = &mut self.sessions[client];
        let present = !clean_start && session.exists;
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
        publish.qos != QoS::ExactlyOnce || self.sessions[client].qos2_pending.insert(publish.packet_id)
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
        if publish.retain {
            match &id {
                Some(id) if !publish.payload.is_empty() => {
                    self.retained.insert(publish.topic.clone(), id.clone());
                    self.ever_retained.insert(id.clone());
                }
                _ => {
                    self.retained.remove(&publish.topic);
                }
            }
        }
        let Some(id) = id else {
            return;
        };
        self.routed += 1;
        for (client, session) in self.sessions.iter().enumerate() {
            if !session.exists {
                continue;
            }
            let mut best: Option<QoS> = None;
            for (filter, options) in &session.subscriptions {
                match parse_shared_subscription(filter) {
                    Ok(Some(shared)) if matches(shared.filter, &publish.topic) => {
                        self.shared_allowed.insert((client, session.epoch, id.clone()));
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
                // Ordering is owed from the first routing that promised QoS 1 or 2 (a QoS 0 one may be dropped).
                if qos != QoS::AtMostOnce {
                    self.owed_order.entry(key.clone()).or_insert(self.routed);
                }
                let entry = self.expected.entry(key).or_insert(qos);
                *entry = (*entry).max(qos);
            }
        }
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
        let shared = self.shared_allowed.contains(&key);
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
            if *count == 1 && !info.expires {
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
    pub fn on_will_delivery(&self, id: &str) -> Result<(), Violation> {
        match self.wills.get(id) {
            Some(WillState::Discarded) => Err(Violation(format!(
                "will {id} published after a normal DISCONNECT [MQTT-3.1.2-10]"
            ))),
            Some(WillState::Armed) => Err(Violation(format!("will {id} published while its connection was open"))),
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
