//! Session expiry that elapses: some MQTT 5 clients keep their session for a few seconds only, and may change that
//! on DISCONNECT (0 ends it at once) [MQTT-3.1.2-11], [MQTT-3.14.2-2]. The model ends the session when its time
//! runs out while offline [MQTT-4.1.0-2], and a delayed will goes out when the session ends if that is sooner
//! [MQTT-3.1.3-9].
//!
//! Only in seeds without persistence: a broker crash rolls the model back to before the input it tore, and these
//! deadlines would need to go back with it.

use super::*;
use crate::coverage::Feature;

/// Session expiry per client as the broker should apply it.
#[derive(Debug, Default)]
pub struct Expiries {
    /// The Session Expiry Interval in effect for the client's current or last connection, seconds (`u32::MAX`:
    /// never).
    interval: Vec<u32>,
    /// When the offline session expires (ms).
    deadline: Vec<Option<u64>>,
    /// The connection the broker attached the session to (its CONNECT was processed): only its end takes the
    /// session offline.
    attached: Vec<Option<ConnectionId>>,
    /// Messages published twice (see `World::republished_into_new_session`).
    republished: BTreeSet<MsgId>,
}

impl Expiries {
    pub fn new(clients: usize) -> Expiries {
        Expiries {
            interval: vec![0; clients],
            deadline: vec![None; clients],
            attached: vec![None; clients],
            republished: BTreeSet::new(),
        }
    }
}

/// The short Session Expiry Interval (seconds) of `client` in a seed with short expiries: every other client.
pub(super) fn short_expiry(client: usize) -> Option<u32> {
    client.is_multiple_of(2).then_some(2 + (client as u32 / 2) % 4 * 2)
}

impl World {
    /// The Session Expiry Interval in effect when `client`'s connection ends (seconds).
    pub(super) fn session_expiry(&self, client: usize) -> u32 {
        if self.clients[client].persistent {
            self.expiries.interval[client]
        } else {
            0
        }
    }

    /// The broker processes a CONNECT of `client` at `now`: a session whose time ran out is gone first (the broker's
    /// expiry timer fired before this input), then the new connection's interval applies.
    pub(super) fn expiry_on_connect(&mut self, client: usize, conn: ConnectionId, connect: &Connect) {
        self.expiries.attached[client] = Some(conn);
        if let Some(deadline) = self.expiries.deadline[client].take() {
            if self.now >= deadline && self.model.sessions[client].exists {
                self.log(format!("c{client}: its session expired at {deadline}ms"));
                self.model.on_session_end(client);
                self.coverage.hit(Feature::SessionExpired);
            }
        }
        let v5 = connect.protocol.is_v5();
        self.expiries.interval[client] = match connect.properties.session_expiry_interval {
            Some(interval) if v5 => interval,
            _ if !v5 && !connect.clean_start => u32::MAX,
            _ => 0,
        };
    }

    /// The broker processes a DISCONNECT that sets a new Session Expiry Interval.
    pub(super) fn expiry_on_disconnect(&mut self, client: usize, disconnect: &Disconnect) {
        if let Some(interval) = disconnect.properties.session_expiry_interval {
            self.expiries.interval[client] = interval;
            self.coverage.hit(Feature::ExpirySetByDisconnect);
        }
    }

    /// `client`'s connection `conn` ended: if it held the session, a persistent one expires after the interval, or
    /// now if 0.
    pub(super) fn expiry_on_end(&mut self, client: usize, conn: ConnectionId) {
        if self.expiries.attached[client] != Some(conn) {
            return;
        }
        self.expiries.attached[client] = None;
        if !self.clients[client].persistent {
            return;
        }
        match self.expiries.interval[client] {
            0 => self.model.on_session_end(client),
            u32::MAX => {}
            interval => self.expiries.deadline[client] = Some(self.now + u64::from(interval) * 1000),
        }
    }

    /// A client that missed the CONNACK of a new session (its old one expired, or ended by its DISCONNECT) still
    /// holds its unacknowledged QoS 2 PUBLISHes and resends them with DUP into a session that has no record of
    /// their packet ids: the broker rightly routes them as new publications, so such a message may reach a
    /// subscriber twice, and after later ones (only in seeds with short expiries, the only way a persistent
    /// session ends unseen by its client).
    pub(super) fn republished_into_new_session(&mut self, client: usize, publish: &Publish) {
        let resent = publish.qos == QoS::ExactlyOnce && publish.dup;
        if !self.opts.short_expiry || !resent || self.model.sessions[client].qos2_pending.contains(&publish.packet_id) {
            return;
        }
        let Some(id) = message_id(&publish.payload).filter(|id| self.model.messages.contains_key(id)) else {
            return;
        };
        self.log(format!("c{client}: {id} resent into a new session, a new publication"));
        for (subscriber, session) in self.model.sessions.iter().enumerate() {
            self.model.reordered_ok.insert((subscriber, session.epoch, id.clone()));
        }
        self.expiries.republished.insert(id);
    }

    /// A delivery of a message published twice (see `republished_into_new_session`) is not a duplicate.
    pub(super) fn forgive_republished(&mut self, client: usize, packet: &Packet) {
        let Packet::Publish(publish) = packet else {
            return;
        };
        // A retained copy sent on SUBSCRIBE is never counted as a delivery (see `Model::on_delivery`): forgiving
        // one would forget the routed copy received before it (seed 110 of 1..3000, strict on holds: c1 got m1:90
        // routed, then its retained copy, and was found never to have got it).
        if publish.retain {
            return;
        }
        let Some(id) = message_id(&publish.payload).filter(|id| self.expiries.republished.contains(id)) else {
            return;
        };
        // A QoS 2 resend of a copy the client holds is no new delivery (see `SimClient::on_publish`).
        if publish.qos == QoS::ExactlyOnce && self.clients[client].incoming_qos2.contains(&publish.packet_id) {
            return;
        }
        let epoch = self.model.sessions[client].epoch;
        self.model.delivered.remove(&(client, epoch, id));
    }

    /// A Session Expiry Interval for a client's DISCONNECT, sometimes: only from clients that asked for a non-zero
    /// one in CONNECT [MQTT-3.14.2-2], and only in seeds with short expiries.
    pub(super) fn disconnect_expiry(&mut self, client: usize) -> Option<u32> {
        let c = &self.clients[client];
        if !self.opts.short_expiry || !c.version.is_v5() || !c.persistent || !self.rng.gen_bool(0.4) {
            return None;
        }
        Some([0, 1, 3][self.rng.gen_range(0..3)])
    }
}
