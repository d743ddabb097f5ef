//! Leadership transitions: role changes observed from raft-rs, a new leader catching its image up and building
//! its broker before it serves, a leader deposed (its held outputs dropped, its clients closed), and an election
//! hastened when a follower's link to its leader breaks.

use super::{ClusterEvent, Node, Role, CATCH_UP_BYTES};
use crate::relay::{RelayKind, RelayMessage};
use mqtt_core::broker::Broker;
use std::collections::BTreeSet;

impl Node {
    /// A follower whose link to its leader broke (the leader's process died, most likely) runs its election clock
    /// on to two ticks short of the timeout, instead of waiting a whole election timeout of silence first. Safe
    /// whatever the cause (an election is always safe in Raft); if the leader lives, its next heartbeat (every
    /// `heartbeat_tick`, less than two ticks away) resets the clock and nothing happens. Both followers see the
    /// link break at once, so their leases run out together and the pre-vote of the first is not refused by the
    /// other's lease: a failover takes about one election timeout less.
    pub(super) fn hasten_election(&mut self, peer: u64) {
        if self.role != Role::Follower || self.leader != Some(peer) {
            return;
        }
        for _ in 0..self.config.election_tick.saturating_sub(2) {
            self.raft.tick();
        }
    }

    pub(super) fn observe_role(&mut self) {
        let raft = &self.raft.raft;
        let role = Role::from(raft.state);
        let term = raft.term;
        let leader = Some(raft.leader_id).filter(|id| *id != raft::INVALID_ID);
        if (role, term, leader) == (self.role, self.term, self.leader) {
            return;
        }
        let was_leader = self.role == Role::Leader;
        let new_term = term != self.term;
        self.role = role;
        self.term = term;
        self.leader = leader;
        self.event(ClusterEvent::RoleChanged { role, term, leader });
        if was_leader && (role != Role::Leader || new_term) {
            self.depose("stepped down");
        }
        // Connections relayed to another leader than the current one lived on a broker that no longer serves.
        let stale: Vec<u64> = self
            .relayed
            .values()
            .map(|r| r.leader)
            .filter(|l| Some(*l) != leader)
            .collect::<BTreeSet<u64>>()
            .into_iter()
            .collect();
        for peer in stale {
            self.close_relays_via(peer);
        }
        if role == Role::Leader && self.serve_after.is_none() {
            // raft-rs appended this term's first (empty) entry on becoming leader: serving waits for it.
            self.serve_after = Some(self.raft.raft.raft_log.last_index());
        }
    }

    /// Whether this node leads without serving yet and has applied its term's first entry: it may serve once its
    /// image is caught up (see `maybe_serve`).
    pub(super) fn may_serve(&self) -> bool {
        self.broker.is_none()
            && self.role == Role::Leader
            && !self.removed
            && self.serve_after.is_some_and(|after| self.applied >= after)
    }

    /// Whether this node may serve and is bringing its image up to date first (see `maybe_serve`).
    pub(super) fn catching_up(&self) -> bool {
        self.may_serve() && self.image.is_behind(self.applied)
    }

    pub(super) fn maybe_serve(&mut self) {
        if !self.may_serve() {
            return;
        }
        let mut events = Vec::new();
        let caught_up = self
            .image
            .catch_up(self.raft.store(), self.applied, CATCH_UP_BYTES, &mut events);
        for e in events {
            self.event(e);
        }
        if !caught_up {
            // The rest on the next input (`poll_timeout` asks for one at once).
            return;
        }
        self.brokers_built += 1;
        let seed = self.config.seed ^ (self.config.node_id << 32) ^ self.brokers_built;
        let config = self.config.broker.clone();
        let mut broker = match &self.config.authenticator {
            Some(shared) => Broker::with_authenticator(config, seed, Box::new(shared.clone())),
            None => Broker::new(config, seed),
        };
        // The broker holds the state from here on; the image is rebuilt from the log if this node steps down.
        broker.restore(self.now, self.image.take());
        self.broker = Some(broker);
        self.event(ClusterEvent::Serving {
            term: self.term,
            applied: self.applied,
        });
    }

    /// Stops leading: held outputs are dropped, client connections closed, the broker (whose state may be ahead
    /// of the committed log) discarded.
    pub(super) fn depose(&mut self, _why: &str) {
        self.serve_after = None;
        self.unproposed.clear();
        if self.broker.take().is_none() && self.held.is_empty() && self.clients.is_empty() {
            return;
        }
        let (dropped, closes) = self.held.drop_all();
        let mut clients = std::mem::take(&mut self.clients);
        // A connection the broker closed behind a held output is closed by the failover instead (seed 870 of the
        // cluster simulator: a session taken over while the leader lost its quorum kept its old transport open
        // and its client waiting, unserved, for good).
        clients.extend(closes);
        let closed = clients.len();
        for conn in clients {
            match self.remote.remove(&conn) {
                Some(remote) => {
                    let seq = remote.next_out;
                    let kind = RelayKind::Failover;
                    self.send_relay(remote.origin, RelayMessage { conn, seq, kind });
                }
                None => self.close_for_failover(conn),
            }
        }
        self.remote.clear();
        self.event(ClusterEvent::Deposed {
            term: self.term,
            dropped,
            closed,
        });
    }
}
