//! Wills beyond the plain case: QoS 0/1/2 and Retain, and the will of a connection abandoned for a takeover, which
//! the broker publishes or cancels when the new CONNECT takes the session over [MQTT-3.1.4-3], [MQTT-3.1.3-9].

use super::*;
use crate::coverage::Feature;

/// A half-open connection its client abandoned (see `faults::take_over`), with its will if it has one.
#[derive(Debug, Clone)]
pub struct ZombieWill {
    pub client: usize,
    pub will: Option<AbandonedWill>,
}

#[derive(Debug, Clone)]
pub struct AbandonedWill {
    pub id: MsgId,
    /// Will Delay Interval, seconds.
    pub delay: u32,
    pub qos: QoS,
    pub retain: bool,
    /// Broker restarts when it was armed: a restart since loses it with the connection (wills are not durable
    /// while their connection is open).
    pub restarts: u64,
}

impl World {
    /// QoS and Retain of a new will. Retain only without a delay: a delayed will goes out at a time the model does
    /// not pin down, so the retained store could not be predicted.
    pub(super) fn will_options(&mut self, with_will: bool, will_delay: u32) -> (QoS, bool) {
        if !with_will {
            return (QoS::AtLeastOnce, false);
        }
        let max_qos = self.opts.publish_qos_max();
        let qos = QoS::from_u8(self.rng.gen_range(0..=max_qos)).unwrap_or_default();
        let retain = self.opts.retained && will_delay == 0 && self.rng.gen_bool(0.3);
        (qos, retain)
    }

    /// `client`'s will `id` is published now, with the QoS and Retain it was armed with.
    pub(super) fn will_due(&mut self, client: usize, id: &MsgId) {
        let (qos, retain) = (
            self.clients[client].armed_will_qos,
            self.clients[client].armed_will_retain,
        );
        self.publish_will(client, id, qos, retain);
    }

    pub(super) fn publish_will(&mut self, client: usize, id: &MsgId, qos: QoS, retain: bool) {
        self.model.wills.insert(id.clone(), WillState::Due);
        self.will_options_of.insert(id.clone(), (qos, retain));
        let will = Publish {
            qos,
            retain,
            topic: format!("will/{client}"),
            payload: Bytes::from(id.to_string()),
            ..Default::default()
        };
        let info = MessageInfo {
            publisher: client,
            topic: will.topic.clone(),
            qos,
            expires: false,
            expiry: None,
            first_seen_ms: self.now,
            earliest_seen_ms: self.now,
            last_read_ms: self.now,
            uncapped_read_ms: self.now,
            latest_read_ms: self.now,
            bytes: will.payload.len() as u64,
            expired_before_restart: false,
        };
        self.model.will_messages.insert(id.clone(), info);
        self.model.on_publish(None, &will, Some(id.clone()));
    }

    /// A takeover: the client's connection `conn`, still open at the broker, is abandoned for a new one; its armed
    /// will moves with it.
    pub(super) fn abandon(&mut self, client: usize, conn: ConnectionId) {
        let c = &mut self.clients[client];
        let will = c.armed_will.take().map(|id| AbandonedWill {
            id,
            delay: c.armed_will_delay,
            qos: c.armed_will_qos,
            retain: c.armed_will_retain,
            restarts: self.counts.broker_restarts,
        });
        self.zombie_wills.insert(conn, ZombieWill { client, will });
    }

    /// An abandoned will that is still armed at the broker (none after a restart, see `restarts`).
    fn still_armed(&self, will: Option<AbandonedWill>) -> Option<AbandonedWill> {
        will.filter(|w| {
            w.restarts == self.counts.broker_restarts && self.model.wills.get(&w.id) == Some(&WillState::Armed)
        })
    }

    /// Every topic a retained message may be on: the topic space and the will topics (retained wills).
    pub(super) fn probe_topics(&self) -> Vec<String> {
        let wills = (0..self.clients.len()).map(|client| format!("will/{client}"));
        self.topics.iter().cloned().chain(wills).collect()
    }

    /// The broker processes a CONNECT of `client`: if an abandoned connection of its with a will is still open,
    /// this CONNECT takes it over, and the broker publishes its will now if it has no delay or the session ends
    /// (Clean Start), and otherwise cancels it, since the session resumed within the delay [MQTT-3.1.3-9].
    pub(super) fn takeover_decides_will(&mut self, client: usize, clean_start: bool) {
        let taken: Vec<ConnectionId> = self
            .zombie_wills
            .iter()
            .filter(|(conn, will)| will.client == client && self.links.get(conn).is_some_and(|l| !l.closed_by_broker))
            .map(|(conn, _)| *conn)
            .collect();
        for conn in taken {
            let Some(zombie) = self.zombie_wills.remove(&conn) else {
                continue;
            };
            let Some(will) = self.still_armed(zombie.will) else {
                continue;
            };
            self.coverage.hit(Feature::TakeoverWithWill);
            if will.delay == 0 || clean_start {
                self.log(format!("c{client} takes over {conn:?}: its will {} is due", will.id));
                // The broker takes the session off the old connection before it publishes the will, and attaches
                // it to the new one after: the session's own copy meets an offline session, dropped while the
                // total budget is used up (seed 9093: c2's will w2:4 to its own `will/#`, which the model had
                // owed to a session it still counted online).
                if let Some(attached) = self.model.sessions[client].attached {
                    self.model.on_offline(client, attached);
                }
                self.publish_will(client, &will.id, will.qos, will.retain);
            } else {
                self.log(format!(
                    "c{client} takes over {conn:?}: its will {} is cancelled",
                    will.id
                ));
                self.model.wills.insert(will.id.clone(), WillState::Cancelled);
            }
        }
    }

    /// The broker closed an abandoned connection before any takeover (keep alive ran out): its session goes offline
    /// and its will is due as for any abnormal end, after its delay or when the session ends, whichever is first.
    /// Returns whether `conn` was such a connection.
    pub(super) fn zombie_ended(&mut self, client: usize, conn: ConnectionId) -> bool {
        let Some(zombie) = self.zombie_wills.remove(&conn) else {
            return false;
        };
        let delay = zombie
            .will
            .as_ref()
            .map_or(0, |w| w.delay.min(self.session_expiry(client)));
        self.expiry_on_end(client, conn);
        let Some(will) = self.still_armed(zombie.will) else {
            return true;
        };
        if delay > 0 && self.clients[client].persistent {
            let due_at = self.now + u64::from(delay) * 1000;
            self.will_delayed(client, &will.id, due_at, will.qos, will.retain);
            self.log(format!(
                "abandoned {conn:?} of c{client} closed: will {} due at {due_at}ms",
                will.id
            ));
        } else {
            self.log(format!("abandoned {conn:?} of c{client} closed: will {} due", will.id));
            self.publish_will(client, &will.id, will.qos, will.retain);
        }
        true
    }
}
