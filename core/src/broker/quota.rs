//! Quotas and limits (issue #9): connections and connect rate per IP address, publish rates per connection,
//! subscriptions per client, topic size, and the bytes queued per session and in total.
//!
//! Every limit is 0 = unlimited. All bookkeeping is in the core and driven by `self.now`, so it is as
//! deterministic as the rest of the state machine. The choices where the spec leaves one:
//!
//! - **CONNECT**: over the connect rate of its address, CONNACK 0x9F Connection rate exceeded; over the
//!   connections of its address, CONNACK 0x97 Quota exceeded. 3.1.1 gets return code 3 Server unavailable for both.
//!   A CONNECT that takes over a session whose connection comes from the same address does not count that
//!   connection: it is about to be replaced.
//! - **PUBLISH rate** (`max_publish_rate` messages/s, `max_publish_bytes_rate` payload bytes/s per connection,
//!   each a token bucket holding one second's worth): the core cannot stop reading a socket, so a PUBLISH over
//!   the rate is dropped. QoS 1/2 get PUBACK/PUBREC 0x97 Quota exceeded (in order with the others
//!   [MQTT-4.6.0-2]): 0x96 Message rate too high is a DISCONNECT reason only, not among the PUBACK/PUBREC reason
//!   codes (MQTT 5.0 sections 3.4.2.1, 3.5.2.1), and a client must treat an unknown one as a Malformed Packet.
//!   A 3.1.1 client has no reason codes and gets a normal acknowledgement for a dropped message, as with ACL
//!   denials. QoS 0 is dropped and counted. A sustained flood ends the connection with
//!   DISCONNECT 0x96: every refused PUBLISH adds to an excess that drains at the allowed rate, and once the
//!   excess is more than ten seconds' worth of the rate (a client sending at 11x the rate for one second, or at
//!   2x for ten), the connection is closed.
//! - **Topic size** (`max_topic_levels`, `max_topic_length`): such a topic is not malformed, only refused by this
//!   server, which is what 0x90 Topic Name invalid means in PUBACK/PUBREC (MQTT 5.0 section 3.4.2.1), so a QoS 1/2
//!   PUBLISH is answered 0x90 and dropped and the connection stays up; QoS 0 is dropped and counted. A SUBSCRIBE
//!   filter over the limits gets 0x8F Topic Filter invalid in its SUBACK (0x80 for 3.1.1); a will topic over them
//!   refuses the CONNECT with 0x90.
//! - **Subscriptions per client**: a filter that would be the session's one-too-many gets 0x97 Quota exceeded in
//!   SUBACK (0x80 for 3.1.1) [MQTT-3.9.3-1]; replacing an existing subscription is always allowed.
//! - **Queued bytes per session** (`max_queued_bytes`): payload bytes of the QoS 1/2 messages a session holds
//!   (queued and inflight). A session at the bound is full exactly like one at `max_queued_messages`: online, the
//!   publisher's PUBLISH is held (see `flow`); offline, the message is dropped and counted.
//! - **Queued bytes in total** (`max_queued_bytes_total`): the sum over all sessions. QoS 0 is never queued, so
//!   the first to give up messages are offline sessions, which promised nobody anything: once the sum reaches
//!   the budget, their oldest queued (never sent) messages are dropped and counted until it is down to three
//!   quarters. If online sessions alone hold the budget, a QoS 1/2 PUBLISH that would queue anywhere is refused
//!   with PUBACK/PUBREC 0x97 (MQTT 5) or, for 3.1.1, held unacknowledged like one waiting for a full queue, until
//!   the sum is back under three quarters. When waiting could never end (offline sessions' inflight messages,
//!   which must be resent and are not evicted, alone keep the sum above three quarters), 3.1.1 gets a plain
//!   acknowledgement for a dropped message instead. Offline sessions drop what arrives for them while the budget is used
//!   up. Without the eviction, dead sessions could fill the budget and stop every publisher until they expire. Wills, `$SYS` and retained messages sent on SUBSCRIBE are not
//!   refused by anyone, so they may overshoot the budget by their own size.

use super::connection::Connection;
use super::held::HeldPublish;
use super::message::Delivery;
use super::rate::{refill, RateVerdict, MILLI};
use super::session::{Session, SessionKey};
use super::{Broker, ConnectionId, DropCause, Event, Output};
use crate::packet::{Connect, QoS, ReasonCode};
use crate::time::Time;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;
use std::net::IpAddr;

/// Addresses whose connect rate is remembered at most. Idle ones (whose bucket has refilled) go first; beyond
/// that, the least recently seen, which then start again with a full bucket: memory stays bounded under a flood of
/// addresses, at the cost of the limit for the addresses forgotten.
const MAX_TRACKED_ADDRESSES: usize = 4096;

/// The quota bookkeeping of the broker.
#[derive(Debug, Default)]
pub struct Quotas {
    /// Connected clients (past CONNACK) per IP address; entries at zero are removed.
    connected_by_ip: BTreeMap<IpAddr, usize>,
    /// Connect-rate buckets per IP address.
    connect_rate: BTreeMap<IpAddr, ConnectBucket>,
    /// Payload bytes of every QoS 1/2 message held by any session (queued or inflight).
    queued_bytes_total: u64,
    /// Connections holding a 3.1.1 PUBLISH until the total budget has room again.
    budget_waiters: BTreeSet<ConnectionId>,
}

impl Quotas {
    pub(super) fn queued_bytes_total(&self) -> u64 {
        self.queued_bytes_total
    }
}

/// One address's connect-rate bucket: up to one second's worth of CONNECTs, refilled continuously.
#[derive(Debug, Clone, Copy)]
struct ConnectBucket {
    tokens: i128,
    updated: Time,
}

/// What the quotas say about a received PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishQuota {
    Admit,
    /// Drop it; QoS 1/2 are acknowledged with this reason.
    Refuse(ReasonCode),
    /// A sustained flood: disconnect with this reason.
    Disconnect(ReasonCode),
}

/// The total budget's answer for a QoS 1/2 PUBLISH about to be routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetCheck {
    Room,
    /// MQTT 5: refuse with this reason.
    Refuse(ReasonCode),
    /// 3.1.1: hold the PUBLISH until the budget has room.
    Wait,
}

/// The per-session queue bounds, copied out of the config so they can be applied while a session is borrowed.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    messages: usize,
    bytes: u64,
    /// The planted bug `QueueFullOneEarly`: 1, else 0.
    planted_early: usize,
}

impl QueueLimits {
    /// Whether the session's queue can take no further message.
    pub fn is_full(self, session: &Session) -> bool {
        session.queue().len() + self.planted_early >= self.messages
            || (self.bytes > 0 && session.queued_bytes >= self.bytes)
    }

    /// Whether an online session has drained far enough to wake the publishers waiting on it (three quarters of
    /// each bound, so a publisher is not woken for every single slot).
    pub fn may_resume(self, session: &Session) -> bool {
        let messages_ok = session.queue().len() <= self.messages - self.messages / 4;
        let bytes_ok = self.bytes == 0 || session.queued_bytes <= self.bytes - self.bytes / 4;
        messages_ok && bytes_ok
    }
}

/// The byte counters disagree with the messages actually held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountingMismatch {
    /// The session whose counter is wrong, or `None` for the total.
    pub session: Option<SessionKey>,
    pub counted: u64,
    pub actual: u64,
}

impl fmt::Display for AccountingMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.session {
            Some(key) => write!(f, "session {key:?} counts {} queued bytes", self.counted)?,
            None => write!(f, "the total counts {} queued bytes", self.counted)?,
        }
        write!(f, " but holds {}", self.actual)
    }
}

impl std::error::Error for AccountingMismatch {}

/// The bytes a delivery costs in the queue accounting: its payload.
pub fn delivery_bytes(delivery: &Delivery) -> u64 {
    delivery.message.payload.len() as u64
}

/// Whether `topic` (a name, or a filter without its `$share/{group}/` prefix) has more levels than allowed.
fn too_deep(topic: &str, max_levels: usize) -> bool {
    max_levels > 0 && topic.split('/').nth(max_levels).is_some()
}

impl Broker {
    /// The quota checks of a CONNECT, made before any other: first the connect rate of its address (every
    /// attempt takes a token), then the connections of its address.
    pub(super) fn connect_quota_refusal(&mut self, conn: ConnectionId, connect: &Connect) -> Option<ReasonCode> {
        let ip = self.connections.expected(conn)?.peer.ip();
        let rate = u64::from(self.config.max_connects_per_second_per_address);
        let bucket = if self.planted(super::planted::PlantedBug::ConnectRateShared) {
            IpAddr::from([0, 0, 0, 0])
        } else {
            ip
        };
        if rate > 0 && !self.take_connect_token(bucket, rate) {
            self.stats.quota_refusals += 1;
            return Some(ReasonCode::CONNECTION_RATE_EXCEEDED);
        }
        if self.address_full(ip, connect) {
            self.stats.quota_refusals += 1;
            return Some(ReasonCode::QUOTA_EXCEEDED);
        }
        if let Some(will) = &connect.will {
            if self.topic_over_limits(&will.topic) {
                self.stats.quota_refusals += 1;
                return Some(ReasonCode::TOPIC_NAME_INVALID);
            }
        }
        None
    }

    /// Does the address already have `max_connections_per_address` connections (not counting the one this
    /// CONNECT takes over, same client id from the same address)?
    fn address_full(&self, ip: IpAddr, connect: &Connect) -> bool {
        let max = self.config.max_connections_per_address;
        if max == 0 {
            return false;
        }
        let connected = self.quotas.connected_by_ip.get(&ip).copied().unwrap_or(0);
        let replaced = self
            .sessions_by_client_id
            .get(connect.client_id.as_str())
            .and_then(|key| self.sessions.get(key))
            .and_then(|session| session.connection)
            .and_then(|old| self.connections.expected(old))
            .is_some_and(|old| old.peer.ip() == ip && !connect.client_id.is_empty());
        connected - usize::from(replaced && connected > 0) >= max
    }

    /// The connection-count limits again, for a CONNECT whose verdict came later (others may have connected while
    /// it waited): the address's connections (0x97), then the broker's (0x89).
    pub(super) fn connection_limit_refusal(&mut self, conn: ConnectionId, connect: &Connect) -> Option<ReasonCode> {
        let ip = self.connections.expected(conn)?.peer.ip();
        if self.address_full(ip, connect) {
            self.stats.quota_refusals += 1;
            return Some(ReasonCode::QUOTA_EXCEEDED);
        }
        if self.connected_clients >= self.config.max_connections {
            return Some(ReasonCode::SERVER_BUSY);
        }
        None
    }

    fn take_connect_token(&mut self, ip: IpAddr, rate: u64) -> bool {
        let now = self.now;
        let table = &mut self.quotas.connect_rate;
        if !table.contains_key(&ip) && table.len() >= MAX_TRACKED_ADDRESSES {
            // Forget the idle addresses (a refilled bucket is the same as none), then, if need be, the stalest.
            table.retain(|_, bucket| refill(bucket.tokens, bucket.updated, now, rate) < i128::from(rate) * MILLI);
            if table.len() >= MAX_TRACKED_ADDRESSES {
                let stalest = table.iter().min_by_key(|(_, bucket)| bucket.updated).map(|(ip, _)| *ip);
                if let Some(stalest) = stalest {
                    table.remove(&stalest);
                }
            }
        }
        let bucket = table.entry(ip).or_insert(ConnectBucket {
            tokens: i128::from(rate) * MILLI,
            updated: now,
        });
        bucket.tokens = refill(bucket.tokens, bucket.updated, now, rate);
        bucket.updated = now;
        if bucket.tokens >= MILLI {
            bucket.tokens -= MILLI;
            true
        } else {
            false
        }
    }

    /// Number of addresses whose connect rate is being tracked (bounded by `MAX_TRACKED_ADDRESSES`).
    pub fn connect_rate_addresses(&self) -> usize {
        self.quotas.connect_rate.len()
    }

    /// A connection was accepted (CONNACK success): it counts against its address.
    pub(super) fn quota_connected(&mut self, conn: ConnectionId) {
        if let Some(connection) = self.connections.expected(conn) {
            *self.quotas.connected_by_ip.entry(connection.peer.ip()).or_insert(0) += 1;
        }
    }

    /// A connection is gone: it no longer counts against its address, and waits for nothing.
    pub(super) fn quota_connection_ended(&mut self, conn: ConnectionId, connection: &Connection, was_connected: bool) {
        self.quotas.budget_waiters.remove(&conn);
        // A session going offline no longer drains: the publishers waiting for the budget look again (and stop
        // waiting if it has become futile, see `budget_wait_is_futile`).
        if was_connected && !self.quotas.budget_waiters.is_empty() {
            let waiters = std::mem::take(&mut self.quotas.budget_waiters);
            self.woken.extend(waiters);
        }
        if !was_connected {
            return;
        }
        let ip = connection.peer.ip();
        if let Some(count) = self.quotas.connected_by_ip.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.quotas.connected_by_ip.remove(&ip);
            }
        }
    }

    /// Whether a topic name (or a filter without its shared prefix) exceeds `max_topic_levels` / `max_topic_length`.
    fn topic_over_limits(&self, topic: &str) -> bool {
        let max_length = self.config.max_topic_length;
        (max_length > 0 && topic.len() > max_length) || too_deep(topic, self.config.max_topic_levels)
    }

    /// The quota checks of a received PUBLISH, after its topic alias is resolved: topic size, then the rate.
    pub(super) fn publish_quota(&mut self, conn: ConnectionId, topic: &str, payload_len: usize) -> PublishQuota {
        if self.topic_over_limits(topic) {
            self.stats.quota_refusals += 1;
            return PublishQuota::Refuse(ReasonCode::TOPIC_NAME_INVALID);
        }
        let now = self.now;
        let whole_seconds = self.planted(super::planted::PlantedBug::PublishRateRefillWholeSeconds);
        let message_rate = u64::from(self.config.max_publish_rate);
        let byte_rate = self.config.max_publish_bytes_rate;
        if message_rate == 0 && byte_rate == 0 {
            return PublishQuota::Admit;
        }
        let Some(connection) = self.connections.expected_mut(conn) else {
            return PublishQuota::Admit;
        };
        match connection
            .extras()
            .publish_limiter
            .check_refill(now, message_rate, byte_rate, payload_len, whole_seconds)
        {
            RateVerdict::Pass => PublishQuota::Admit,
            RateVerdict::Refuse => {
                self.stats.quota_refusals += 1;
                PublishQuota::Refuse(ReasonCode::QUOTA_EXCEEDED)
            }
            RateVerdict::Flood => {
                self.stats.quota_refusals += 1;
                PublishQuota::Disconnect(ReasonCode::MESSAGE_RATE_TOO_HIGH)
            }
        }
    }

    /// The quota checks of one SUBSCRIBE filter (`filter` as subscribed, `plain` without a shared prefix).
    pub(super) fn subscription_quota_refusal(
        &mut self,
        key: SessionKey,
        filter: &str,
        plain: &str,
    ) -> Option<ReasonCode> {
        let max_length = self.config.max_topic_length;
        if (max_length > 0 && filter.len() > max_length) || too_deep(plain, self.config.max_topic_levels) {
            self.stats.quota_refusals += 1;
            return Some(ReasonCode::TOPIC_FILTER_INVALID);
        }
        let max = self.config.max_subscriptions_per_client;
        let session = self.sessions.get(&key)?;
        if max > 0 && !session.subscriptions.contains_key(filter) && session.subscriptions.len() >= max {
            self.stats.quota_refusals += 1;
            return Some(ReasonCode::QUOTA_EXCEEDED);
        }
        None
    }

    pub(super) fn queue_limits(&self) -> QueueLimits {
        QueueLimits {
            messages: self.config.max_queued_messages,
            bytes: self.config.max_queued_bytes,
            planted_early: usize::from(self.planted(super::planted::PlantedBug::QueueFullOneEarly)),
        }
    }

    /// Whether the queued bytes of all sessions have reached `max_queued_bytes_total`.
    pub(super) fn over_budget(&self) -> bool {
        let max = self.config.max_queued_bytes_total;
        max > 0 && self.quotas.queued_bytes_total >= max
    }

    /// The total budget's answer for a QoS 1/2 PUBLISH from `conn` routed per `plan`.
    pub(super) fn budget_check(&mut self, conn: ConnectionId, plan: &[(SessionKey, Delivery)]) -> BudgetCheck {
        if !self.over_budget() || plan.iter().all(|(_, delivery)| delivery.qos == QoS::AtMostOnce) {
            return BudgetCheck::Room;
        }
        self.evict_offline_for_budget();
        if !self.over_budget() {
            return BudgetCheck::Room;
        }
        let v5 = self.connections.expected(conn).is_some_and(|c| c.is_v5());
        if v5 || self.budget_wait_is_futile() {
            // 3.1.1 cannot be told: a plain acknowledgement for a dropped message, as for ACL denials.
            self.stats.quota_refusals += 1;
            self.stats.dropped(DropCause::Quota, 1);
            BudgetCheck::Refuse(ReasonCode::QUOTA_EXCEEDED)
        } else {
            BudgetCheck::Wait
        }
    }

    /// Tells the driver (logs) and the simulator (whose model must not route it) about a refused QoS 1/2 PUBLISH.
    pub(super) fn note_publish_refused(&mut self, conn: ConnectionId, packet_id: u16, reason: ReasonCode) {
        self.outputs.push_back(Output::Event(Event::PublishRefused {
            conn,
            packet_id,
            reason,
        }));
    }

    /// Makes room in the total budget at the expense of offline sessions, which promised nobody anything: their
    /// oldest queued (never sent) messages are dropped and counted, across sessions by age, until the total is
    /// down to three quarters of the budget or no offline session has anything queued. Messages in flight stay:
    /// they must be resent on reconnect [MQTT-4.4.0-1].
    fn evict_offline_for_budget(&mut self) {
        let max = self.config.max_queued_bytes_total;
        let target = max - max / 4;
        let online_too = self.planted(super::planted::PlantedBug::BudgetEvictsOnline);
        let newest = self.planted(super::planted::PlantedBug::BudgetEvictsNewest);
        let mut oldest: BinaryHeap<Reverse<(u64, SessionKey)>> = self
            .sessions
            .iter()
            .filter(|(_, session)| session.connection.is_none() || online_too)
            .filter_map(|(key, session)| session.queue().front().map(|d| Reverse((d.message.id, *key))))
            .collect();
        while self.quotas.queued_bytes_total > target {
            let Some(Reverse((_, key))) = oldest.pop() else {
                return;
            };
            let Some(session) = self.sessions.get_mut(&key) else {
                continue;
            };
            let popped = if newest {
                session.pop_queued_newest()
            } else {
                session.pop_queued()
            };
            let Some(delivery) = popped else {
                continue;
            };
            if let Some(next) = session.queue().front() {
                oldest.push(Reverse((next.message.id, key)));
            }
            self.stats.dropped(DropCause::Evicted, 1);
            self.persist_done(key, delivery.seq);
            self.count_dequeued(key, delivery_bytes(&delivery));
        }
    }

    /// Whether waiting for the budget could never end: what offline sessions hold in flight (which must be resent
    /// on reconnect [MQTT-4.4.0-1], so it is not evicted) alone keeps the total above the level that wakes waiters.
    /// Only online sessions drain.
    fn budget_wait_is_futile(&self) -> bool {
        let max = self.config.max_queued_bytes_total;
        let offline: u64 = self
            .sessions
            .values()
            .filter(|session| session.connection.is_none())
            .map(|session| session.queued_bytes)
            .sum();
        offline > max - max / 4
    }

    /// Holds a PUBLISH (at the front: it was first in line) until the total budget has room.
    pub(super) fn hold_for_budget(&mut self, conn: ConnectionId, publish: HeldPublish) {
        let Some(connection) = self.connections.expected_mut(conn) else {
            return;
        };
        connection.extras().held.push_front(publish);
        self.quotas.budget_waiters.insert(conn);
    }

    /// A delivery of `bytes` joined a session's queue.
    pub(super) fn count_queued(&mut self, key: SessionKey, bytes: u64) {
        if let Some(session) = self.sessions.get_mut(&key) {
            session.queued_bytes += bytes;
            self.quotas.queued_bytes_total += bytes;
        }
    }

    /// Deliveries of `bytes` left a session (acknowledged, expired, dropped).
    pub(super) fn count_dequeued(&mut self, key: SessionKey, bytes: u64) {
        if let Some(session) = self.sessions.get_mut(&key) {
            session.queued_bytes = session.queued_bytes.saturating_sub(bytes);
            self.quotas.queued_bytes_total = self.quotas.queued_bytes_total.saturating_sub(bytes);
        }
        self.note_budget_freed();
    }

    /// A session restored from storage: count what it holds.
    pub(super) fn recount_queued(&mut self, key: SessionKey) {
        if let Some(session) = self.sessions.get_mut(&key) {
            let bytes: u64 = session
                .queue()
                .iter()
                .chain(session.inflight().iter().map(|entry| &entry.delivery))
                .map(delivery_bytes)
                .sum();
            self.quotas.queued_bytes_total =
                self.quotas.queued_bytes_total.saturating_sub(session.queued_bytes) + bytes;
            session.queued_bytes = bytes;
        }
    }

    /// A session with `bytes` queued is gone.
    pub(super) fn count_session_ended(&mut self, bytes: u64) {
        self.quotas.queued_bytes_total = self.quotas.queued_bytes_total.saturating_sub(bytes);
        self.note_budget_freed();
    }

    /// Wakes the publishers waiting for the total budget once it is back under three quarters.
    fn note_budget_freed(&mut self) {
        let max = self.config.max_queued_bytes_total;
        if self.quotas.budget_waiters.is_empty() || self.quotas.queued_bytes_total > max - max / 4 {
            return;
        }
        let waiters = std::mem::take(&mut self.quotas.budget_waiters);
        self.woken.extend(waiters);
    }

    /// Payload bytes of the QoS 1/2 messages held by all sessions, as counted.
    pub fn queued_bytes_total(&self) -> u64 {
        self.quotas.queued_bytes_total
    }

    /// Recounts the queued bytes of every session and the total from the messages actually held, and reports the
    /// first counter that disagrees (for tests and the simulator: the counters must be exact on every path).
    pub fn check_queue_accounting(&self) -> Result<(), AccountingMismatch> {
        let mut total = 0;
        for (key, session) in &self.sessions {
            let actual: u64 = session
                .queue()
                .iter()
                .chain(session.inflight().iter().map(|entry| &entry.delivery))
                .map(delivery_bytes)
                .sum();
            if actual != session.queued_bytes {
                return Err(AccountingMismatch {
                    session: Some(*key),
                    counted: session.queued_bytes,
                    actual,
                });
            }
            total += actual;
        }
        if total != self.quotas.queued_bytes_total {
            return Err(AccountingMismatch {
                session: None,
                counted: self.quotas.queued_bytes_total,
                actual: total,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_depth_counts_levels() {
        assert!(!too_deep("a/b/c", 3));
        assert!(too_deep("a/b/c/d", 3));
        assert!(!too_deep("a/b/c/d", 0));
        assert!(too_deep("//", 2));
    }
}
