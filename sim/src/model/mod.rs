//! The reference model: what the MQTT specifications promise, computed from the packets the broker processed, in
//! the order it processed them (the simulator decodes every client-to-broker stream in step with the broker).
//! Every delivery a client sees is checked against it; the liveness phase checks that every promise was kept.

use crate::acl::SimAcl;
use crate::options::QuotaOptions;
use mqtt_core::packet::{Publish, QoS, ReasonCode, SubscriptionOptions};
use std::collections::{BTreeMap, BTreeSet};

mod expiry;
mod flow;
mod queue;
mod topic;
pub use flow::{Pending, SharedRoute};
pub use queue::{Backlog, Entry, QueueLimits};
pub use topic::{matches, message_id, plain_filter, shared_filter, SharedFilter};

/// A message's identity, carried at the start of its payload: `m{publisher}:{seq}` or `w{client}:{n}` for wills.
/// Shared, not owned: the model keys a dozen maps and every queue entry and routing target by it, and copies all of
/// them for each candidate state (a power cut armed, a restart), so a copy is a count, not an allocation. It
/// compares, orders and prints exactly as the string does.
pub type MsgId = std::rc::Rc<str>;

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
    /// The earliest `first_seen_ms` has been: a restart on a clock set back moves `first_seen_ms` later for the new
    /// broker, but a copy the old broker sent still carries an interval reduced by its own, longer, count.
    pub earliest_seen_ms: u64,
    /// When the broker last read a PUBLISH of it (ms): a resend is a new publication, retained anew, so the copy the
    /// broker holds was stamped between `first_seen_ms` and this (after a restart: the latest stamp its deadline
    /// may stand at, see `world::clock`).
    pub last_read_ms: u64,
    /// That last read moved by every clock jump since, uncapped: the broker's records keep the deadline it was
    /// given, and each restart caps it afresh, at a full interval from that restart (seed 3777: set back, then
    /// forward, the recorded deadline is capped again at the later restart, not moved from the earlier cap).
    pub uncapped_read_ms: u64,
    /// The latest `last_read_ms` has been: a restart on a clock set forward moves `last_read_ms` earlier for the new
    /// broker, but a copy the old broker sent carries an interval counted to its own, later, deadline.
    pub latest_read_ms: u64,
    /// Payload bytes, as the broker's queue accounting counts them.
    pub bytes: u64,
    /// It may have expired before a broker crash (by the model's clock then): the broker may have dropped it for
    /// good and recorded that, so a restart on a clock set back, which gives a copy the broker still holds more time,
    /// need not bring back one it dropped (seed 6487: m4:17 expired while c1 was offline, then a restart 20 s back).
    pub expired_before_restart: bool,
}

impl MessageInfo {
    /// Whether the broker may have let it expire by `now_ms` [MQTT-3.3.2-5] (from when the model first saw it,
    /// which is no later than when the broker took any copy of it).
    pub fn expired_by(&self, now_ms: u64) -> bool {
        self.expiry
            .is_some_and(|secs| now_ms >= self.first_seen_ms + u64::from(secs) * 1000)
    }

    /// How long ago (ms) every copy the broker may hold had expired by `now_ms`, if they all had [MQTT-3.3.2-5]:
    /// counted from the last read, no earlier than the broker's stamp of any copy.
    pub fn expired_for_sure(&self, now_ms: u64) -> Option<u64> {
        let deadline = self.last_read_ms + u64::from(self.expiry?) * 1000;
        now_ms.checked_sub(deadline)
    }
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
    /// A connection of the client is attached to the session at the broker: this one.
    pub online: bool,
    pub attached: Option<u64>,
    /// The QoS 1/2 deliveries routed to the session and not yet completed (see `queue`).
    pub backlog: Backlog,
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
    /// Each will published, as a message (kept apart from `messages`, which the ordering and duplicate checks of
    /// client PUBLISHes read): a retained will is sent on SUBSCRIBE like any retained message, so it counts in the
    /// subscriber's queue bound.
    pub will_messages: BTreeMap<MsgId, MessageInfo>,
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
    /// The broker's queue bounds, which decide which drops are allowed.
    pub limits: QueueLimits,
    /// The broker input being processed (see `Entry::batch`).
    pub batch: u64,
    /// (client, epoch, message) → retained copies the client's SUBSCRIBEs may have been sent and not yet received
    /// [MQTT-3.3.1-9..11]; and every one ever offered (a DUP resend of one is not a new copy).
    pub retained_offers: BTreeMap<(usize, u64, MsgId), u32>,
    pub retained_offered: BTreeSet<(usize, u64, MsgId)>,
    /// (client, epoch, message) → when a SUBSCRIBE of the client was first offered a retained copy of it (ms): a copy
    /// leaves no earlier, so its Message Expiry Interval is at most what was left then [MQTT-3.3.2-6].
    pub retained_offer_ms: BTreeMap<(usize, u64, MsgId), u64>,
    /// (client, epoch, message) → a retained message that had expired (this many ms before) when the broker read a
    /// SUBSCRIBE of the client that matched it: the broker has deleted it, so no copy is owed or allowed for that
    /// SUBSCRIBE [MQTT-3.3.2-5]; and how many times that happened (for the coverage table).
    pub retained_withheld: BTreeMap<(usize, u64, MsgId), u64>,
    pub retained_expired_withheld: u64,
    /// Per shared subscription (`$share/{group}/{filter}`) and message: how often it was routed to the group, how
    /// many copies its members got, and who the members were [MQTT-4.8.2].
    pub shared_routes: BTreeMap<(String, MsgId), SharedRoute>,
    /// (client, epoch, message) → copies owed through non-shared subscriptions (one per routing), and copies
    /// received for the first time (not DUP).
    pub owed_copies: BTreeMap<(usize, u64, MsgId), u32>,
    pub copies_got: BTreeMap<(usize, u64, MsgId), u32>,
    /// Per message, the copies that went through shared subscriptions.
    pub shared_copies: BTreeMap<MsgId, u32>,
    /// Retained topics whose message the model cannot pin down (a held PUBLISH with RETAIN routed at a moment
    /// it could not tell exactly).
    pub retained_unsure: BTreeSet<String>,
    /// Messages the broker may have routed while the model could not see when (the publisher's connection did not
    /// read its acknowledgement): any matching subscriber may get them, none is owed them.
    pub unpinned: BTreeSet<MsgId>,
    /// Some PUBLISH may have been admitted unseen, so the queue bounds may be short of it: no prediction of holds
    /// or drops holds until it is seen.
    pub unseen_admissions: bool,
    /// (client, epoch, message) whose loss the configuration allowed (a drop from a queue that may have been full).
    pub excused: BTreeSet<(usize, u64, MsgId)>,
    /// (client, QoS 2 packet id) of held PUBLISHes that may have been admitted unseen before their connection
    /// went away: the broker may or may not still remember the id (see `world::admission`).
    pub qos2_unsure: BTreeSet<(usize, u16)>,
    /// First deliveries of a message with a Message Expiry Interval that the per-publisher ordering check held
    /// against an earlier message of the same publisher and topic (for the coverage table).
    pub expiring_ordered: u64,
}

/// What routing one PUBLISH does to the model (see [`Model::plan_publish`]).
#[derive(Debug, Clone)]
pub struct RoutingPlan {
    /// The retained store's change: the topic, and the message now retained there (`None`: cleared).
    retained: Option<(String, Option<MsgId>)>,
    id: Option<MsgId>,
    targets: Vec<((usize, u64, MsgId), Target)>,
    /// Payload bytes of each delivery.
    bytes: u64,
    /// A client's PUBLISH, admitted only when no online subscriber's queue is full; a will or `$SYS` message goes
    /// to every queue that has room, and is dropped where there is none.
    via_admission: bool,
    /// Acknowledged, but the broker may have dropped it (a 3.1.1 PUBLISH while the total budget may be used up:
    /// see `mqtt_core::broker::quota`).
    pub maybe_dropped: bool,
    /// Routed at a moment the model cannot pin down (see `Model::unpin`).
    unpinned: bool,
    /// The model's `batch` when it was planned (the PUBLISH read in the next input).
    batch: u64,
    /// Merged by `make_optional`: the broker may have routed it as early as `batch`, so its deliveries count from
    /// then and what was routed since is not inferred dropped when a client receives this one first (see
    /// `queue::Entry::batch`).
    early: bool,
}

impl Model {
    /// The plan's message was routed at a moment the model cannot pin down: owed to none, allowed to any
    /// matching subscriber, and its retained topic unsure.
    pub fn unpin(&mut self, plan: &mut RoutingPlan) {
        plan.unpinned = true;
        if let Some(id) = &plan.id {
            self.unpinned.insert(id.clone());
        }
        if let Some((topic, _)) = &plan.retained {
            self.retained_unsure.insert(topic.clone());
        }
    }
}

impl RoutingPlan {
    /// Whether `make_optional` made its deliveries allowed but not owed (an unsure moment of routing).
    pub fn is_optional(&self) -> bool {
        self.early
    }

    /// Every delivery of this plan and of `earlier` (the same PUBLISH routed at another moment) becomes allowed
    /// but not owed: the model cannot tell at which of the two moments the broker routed it.
    pub fn make_optional(&mut self, earlier: RoutingPlan) {
        // One delivery per client through its non-shared subscriptions, at the higher QoS of the two moments, and
        // one per shared subscription it was a member of at either (seed 9470: c0's QoS 1 copy of m6:15 through
        // `$share/g1/a` was lost beside its QoS 0 one through `$share/g0/#` when targets were merged per client).
        type Delivery = ((usize, u64, MsgId), Option<String>);
        let mut merged: BTreeMap<Delivery, QoS> = BTreeMap::new();
        for (key, target) in std::mem::take(&mut self.targets).into_iter().chain(earlier.targets) {
            let (qos, group) = match target {
                Target::Owed(qos) | Target::Optional(qos) => (qos, None),
                Target::Shared(qos, group) => (qos, Some(group)),
            };
            let entry = merged.entry((key, group)).or_insert(qos);
            *entry = (*entry).max(qos);
        }
        self.targets = merged
            .into_iter()
            .map(|((key, group), qos)| match group {
                Some(group) => (key, Target::Shared(qos, group)),
                None => (key, Target::Optional(qos)),
            })
            .collect();
        self.batch = self.batch.min(earlier.batch);
        self.early = true;
    }
}

#[derive(Debug, Clone)]
enum Target {
    /// A matching non-shared subscription promises delivery at this QoS.
    Owed(QoS),
    /// A shared subscription's group may pick this client (at this QoS).
    Shared(QoS, String),
    /// Too close to the client's Maximum Packet Size to tell whether it fits (queued at this QoS).
    Optional(QoS),
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

    /// The broker's queue bounds, from which the model predicts holds and allowed drops.
    pub fn with_limits(mut self, limits: QueueLimits) -> Model {
        self.limits = limits;
        self
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
            session.backlog.clear();
        }
        session.exists = true;
        session.online = true;
    }

    /// A connection of a client whose session ends with it (Session Expiry 0) is gone.
    pub fn on_session_end(&mut self, client: usize) {
        let session = &mut self.sessions[client];
        session.exists = false;
        session.online = false;
        session.subscriptions.clear();
        session.qos2_pending.clear();
        session.backlog.clear();
        session.backlog.set_window(0);
    }

    /// The broker processed a CONNECT of `client` on connection `conn` (after `on_connect`).
    /// `window`: its inflight window, `min(Receive Maximum, max_inflight)` and at least 1 [MQTT-3.3.4-9].
    pub fn on_attached(&mut self, client: usize, conn: u64, window: usize) {
        self.sessions[client].attached = Some(conn);
        self.sessions[client].backlog.set_window(window);
    }

    /// The broker is done with connection `conn` of `client`: if it was the one attached to the session, the
    /// session (which may live on) is offline.
    pub fn on_offline(&mut self, client: usize, conn: u64) {
        let session = &mut self.sessions[client];
        if session.attached == Some(conn) {
            session.online = false;
            session.attached = None;
            session.backlog.set_window(0);
        }
    }

    /// The broker process died: no session has a connection any more.
    pub fn on_broker_restart(&mut self) {
        for session in &mut self.sessions {
            session.online = false;
            session.attached = None;
            session.backlog.on_broker_restart();
        }
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
        self.qos2_unsure.remove(&(client, packet_id));
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
            bytes: publish.payload.len() as u64,
            via_admission: publisher.is_some(),
            maybe_dropped: false,
            unpinned: false,
            batch: self.batch,
            early: false,
        };
        // A message without an id (an empty one clearing a retained topic) is queued like any other: it counts in
        // the queue bounds under the empty id, but nothing is owed for it.
        let id = id.unwrap_or_default();
        for (client, session) in self.sessions.iter().enumerate() {
            // A client that may not read the topic gets nothing through any subscription.
            if !session.exists || !self.acl.may_read(client, &publish.topic) {
                continue;
            }
            let mut best: Option<QoS> = None;
            for (filter, options) in &session.subscriptions {
                match shared_filter(filter) {
                    Some(shared) if matches(shared.filter, &publish.topic) => {
                        plan.targets.push((
                            (client, session.epoch, id.clone()),
                            Target::Shared(publish.qos.min(options.qos), filter.clone()),
                        ));
                    }
                    None if matches(filter, &publish.topic) => {
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
                    plan.targets.push((key, Target::Optional(qos)));
                } else {
                    plan.targets.push((key, Target::Owed(qos)));
                }
            }
        }
        plan
    }

    pub fn apply_publish(&mut self, plan: RoutingPlan) {
        self.apply_retained(&plan);
        self.apply_routing(plan);
    }

    /// The retained store after the broker processed `plan`'s PUBLISH, if it has RETAIN set [MQTT-3.3.1-5],
    /// [MQTT-3.3.1-6].
    pub fn apply_retained(&mut self, plan: &RoutingPlan) {
        if let Some((topic, id)) = plan.retained.clone() {
            let pinned = !plan.unpinned && plan.id.as_ref().is_none_or(|id| !self.unpinned.contains(id));
            if plan.maybe_dropped || !pinned {
                // Acknowledged but maybe dropped (a 3.1.1 PUBLISH while the budget may be used up): the topic
                // holds this message or the one before. Likewise one routed at a moment the model cannot pin down,
                // applied after a pinned one of the same input (seed 9222 of 1..12000, strict: m2:66's resend
                // pinned 'a/a', then an unsure QoS 2 resend of m2:69 the broker took as a duplicate left the model
                // sure of m2:69, which the broker never stored again).
                self.retained_unsure.insert(topic.clone());
            } else {
                // Routed at a moment the model knows: whatever came before on the topic is replaced.
                self.retained_unsure.remove(&topic);
            }
            match id {
                Some(id) if plan.maybe_dropped => {
                    self.ever_retained.insert(id);
                }
                Some(id) => {
                    self.retained.insert(topic, id.clone());
                    self.ever_retained.insert(id);
                }
                None if plan.maybe_dropped => {}
                None => {
                    self.retained.remove(&topic);
                }
            }
        }
    }

    /// Whether this delivery was routed before, owed or allowed, while the broker may drop: if the first copy was
    /// dropped, this one legitimately arrives after later messages (seed 1691 of 1..3000, strict on holds: m0:31
    /// first allowed to c3, then owed by a resend, and c3's DUP of the first copy came after m0:33).
    fn routed_again(&self, key: &(usize, u64, MsgId)) -> bool {
        self.bounded_queues && (self.expected.contains_key(key) || self.optional.contains(key))
    }

    fn apply_routing(&mut self, plan: RoutingPlan) {
        self.routed += 1;
        let anonymous = plan.id.is_none();
        let mut groups_routed = BTreeSet::new();
        // The broker hands the deliveries of one routing to the sessions one after the other, and each one queued
        // adds to the total an offline session's delivery is checked against (see `mqtt_core::broker::quota`), in an
        // order (by session key) the model does not follow: for each delivery, all the others may have come first.
        let queued = |t: &Target| match t {
            Target::Owed(qos) | Target::Optional(qos) | Target::Shared(qos, _) => *qos != QoS::AtMostOnce,
        };
        let mut later = plan.targets.iter().filter(|(_, t)| queued(t)).count() as u64 * plan.bytes;
        for (key, target) in plan.targets {
            if !anonymous {
                self.count_copy(&key, &target, &mut groups_routed);
            }
            let (qos, group) = match &target {
                Target::Owed(qos) | Target::Optional(qos) => (*qos, None),
                Target::Shared(qos, group) => (*qos, Some(group.clone())),
            };
            if qos != QoS::AtMostOnce {
                let optional = matches!(target, Target::Optional(_)).then_some("maybe too large for the client");
                let dropped = plan
                    .maybe_dropped
                    .then_some("acknowledged while the total budget may be used up");
                let unchecked = anonymous.then_some("an empty message is not checked");
                later -= plan.bytes;
                let droppable = self
                    .drop_allowed(key.0, plan.via_admission, later)
                    .or(optional)
                    .or(dropped)
                    .or(unchecked);
                self.sessions[key.0].backlog.push(Entry {
                    id: key.2.clone(),
                    bytes: plan.bytes,
                    batch: if plan.early { plan.batch } else { self.batch },
                    received: false,
                    in_window: false,
                    packet_id: 0,
                    retained_copy: false,
                    droppable,
                    shared: group.is_some(),
                    group: group.unwrap_or_default(),
                    unplanned: false,
                });
            }
            if anonymous {
                continue;
            }
            match target {
                Target::Shared(..) => {
                    self.shared_allowed.insert(key);
                }
                Target::Optional(_) => {
                    // Routed again, allowed but not owed (an unsure QoS 2 resend, a blind admission): if the first
                    // copy was dropped, this one legitimately arrives after later messages (seed 81 of 1..3000,
                    // strict on holds: m4:43 maybe dropped for the budget, resent, got after m4:45).
                    if self.routed_again(&key) {
                        self.reordered_ok.insert(key.clone());
                    }
                    self.optional.insert(key);
                }
                Target::Owed(qos) => {
                    // Ordering is owed from the first routing that promised QoS 1 or 2 (a QoS 0 one may be dropped).
                    if qos != QoS::AtMostOnce {
                        self.owed_order.entry(key.clone()).or_insert(self.routed);
                    }
                    // A message routed near the queue bounds is owed and ordered like any other: each drop the
                    // bounds allow is marked on its delivery (`droppable`), every other one is a violation.
                    if self.routed_again(&key) {
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
        now: u64,
    ) -> Result<(), Violation> {
        self.deliveries += 1;
        let id = message_id(&publish.payload);
        if first_time && publish.qos != QoS::AtMostOnce {
            let queued = id.clone().unwrap_or_default();
            self.on_receipt(client, epoch, publish, &queued, now)?;
        }
        let Some(id) = id else {
            return Ok(());
        };
        let key = (client, epoch, id.clone());
        let expected = self.expected.get(&key).copied();
        let shared = self.shared_allowed.contains(&key) || self.optional.contains(&key) || self.unpinned.contains(&id);
        let retained_ok = publish.retain
            && self.ever_retained.contains(&id)
            && client_filters.iter().any(|f| matches(plain_filter(f), &publish.topic));
        if first_time && !publish.dup && !publish.retain {
            self.check_shared_copy(client, epoch, &id)?;
        }

        // The sim never asks for Retain As Published, so RETAIN marks a retained copy sent on SUBSCRIBE
        // [MQTT-3.3.1-13]: one the model offered for that SUBSCRIBE per its Retain Handling.
        if publish.retain {
            self.check_retained_offer(client, epoch, publish, &id)?;
        }
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
            // A message with an expiry is owed in order like any other: it may be skipped (expired), never
            // overtaken and then sent. Only a copy of a message routed again (a QoS 1 resend is a new publication)
            // after the first copy may have expired in the queue legitimately arrives out of order.
            let resent_after_expiry = expiry::resent_after_expiry(info, self.owed_copies.get(&key).copied(), now);
            if *count == 1 && !resent_after_expiry && !self.reordered_ok.contains(&key) {
                let order_key = (client, epoch, info.publisher, info.topic.clone());
                let last = self.last_order.get(&order_key).copied();
                if last.is_some_and(|last| order < last) {
                    return Err(Violation(format!(
                        "client {client} got {id} after a later message of the same publisher and topic{} \
                         [MQTT-4.6.0-6]",
                        expiry::ordering_note(info, now)
                    )));
                }
                if last.is_some() && info.expiry.is_some() {
                    self.expiring_ordered += 1;
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

    /// Liveness: every QoS 1/2 message promised to a session that still exists was delivered to it, message by
    /// message, in every seed: no waiver excuses a drop. Only the drops the configuration allows are excused
    /// (`excused`, `Entry::droppable`), which the model decides itself: it mirrors the inflight window (`queue`), a
    /// restart's requeueing, DUP resends, the total budget's eviction (a prefix of each offline queue, counting the
    /// bytes PUBLISHes read earlier in the same input add, seeds 137, 845, 1914, 1032, and those held PUBLISHes of a
    /// publisher that does not read may have added unseen, seeds 3995, 10417) and the budget a routing's own
    /// deliveries use up (seeds 7842, 11379), deliveries received before the model saw them routed (seed 8357) or as
    /// a delayed will (seed 10406), every shared subscription of a client (seeds 9470, 10209), the session a
    /// takeover's will meets offline (seeds 9093, 11393, 7262, 7686), a held PUBLISH routed at the end of the input
    /// whose output acknowledges it (see `world::admission`), and a session stays with the connection the broker
    /// attached (seed 545 and 12 more).
    pub fn check_liveness(&self) -> Result<(), Violation> {
        for ((client, epoch, id), qos) in &self.expected {
            let session = &self.sessions[*client];
            if *qos == QoS::AtMostOnce || !session.exists || session.epoch != *epoch {
                continue;
            }
            // With bounded queues, see `on_delivery`: the model does not owe messages there yet.
            if self.messages.get(id).is_some_and(|m| m.expires) || self.excused.contains(&(*client, *epoch, id.clone()))
            {
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
