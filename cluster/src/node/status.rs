//! What a driver, the simulator and the tests can read of a node: its role, term and leader, its applied state,
//! its broker, its replication status and progress, its members.

use super::{Node, NodeStatus, PeerProgress, Role};
use mqtt_core::broker::{Broker, ConnectionId, PartialInput};
use mqtt_core::persist::Image;
use std::collections::BTreeMap;

impl Node {
    /// Whether this node leads and serves clients.
    pub fn is_leader(&self) -> bool {
        self.broker.is_some()
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    pub fn node_id(&self) -> u64 {
        self.config.node_id
    }

    /// The leader as far as this node knows.
    pub fn leader(&self) -> Option<u64> {
        self.leader
    }

    /// The committed state as applied on this node: a copy brought up to the applied index, costly (see `image`),
    /// for checks.
    pub fn image(&self) -> Image {
        self.image.copy_at(self.raft.store(), self.applied)
    }

    /// The index of the last applied entry.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// QoS 0 PUBLISH packets dropped because held output reached `NodeConfig::max_held_bytes`, since start.
    pub fn held_qos0_dropped(&self) -> u64 {
        self.held.dropped_qos0()
    }

    /// Digest of every entry applied (equal on nodes that applied the same entries).
    pub fn applied_digest(&self) -> u64 {
        self.digest
    }

    /// The leader's broker while it serves.
    pub fn broker(&self) -> Option<&Broker> {
        self.broker.as_ref()
    }

    /// The partial packet a client connection holds, for the driver's input budget: on the leader, in its broker;
    /// on a follower that relays it, in the leader's broker, as far as this node relayed it (so a follower's
    /// driver bounds what its clients make the leader hold, as the leader's does for its own).
    pub fn partial_input(&self, conn: ConnectionId) -> PartialInput {
        if let Some(relayed) = self.relayed.get(&conn) {
            return PartialInput {
                held: relayed.partial.held(),
                missing: relayed.partial.missing(),
            };
        }
        self.broker.as_ref().map(|b| b.partial_input(conn)).unwrap_or_default()
    }

    pub fn status(&self) -> NodeStatus {
        let raft = &self.raft.raft;
        let match_index = if self.role == Role::Leader {
            raft.prs().iter().map(|(id, p)| (*id, p.matched)).collect()
        } else {
            BTreeMap::new()
        };
        NodeStatus {
            id: self.config.node_id,
            role: self.role,
            term: self.term,
            leader: self.leader,
            commit: raft.raft_log.committed,
            applied: self.applied,
            serving: self.broker.is_some(),
            voters: self.voters(),
            match_index,
            held_outputs: self.held.len(),
            held_bytes: self.held.bytes(),
            held_qos0_dropped: self.held.dropped_qos0(),
            relays_dropped: self.relays_dropped,
        }
    }

    /// For a leader: raft-rs's replication progress for each other member (empty on any other node), to trace a
    /// follower that does not catch up.
    pub fn peer_progress(&self) -> Vec<PeerProgress> {
        if self.role != Role::Leader {
            return Vec::new();
        }
        let me = self.config.node_id;
        self.raft
            .raft
            .prs()
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, p)| PeerProgress {
                id: *id,
                state: match p.state {
                    raft::ProgressState::Probe => "probe",
                    raft::ProgressState::Replicate => "replicate",
                    raft::ProgressState::Snapshot => "snapshot",
                },
                matched: p.matched,
                next: p.next_idx,
                paused: p.is_paused(),
                inflight: p.ins.count(),
                pending_snapshot: p.pending_snapshot,
                recent_active: p.recent_active,
            })
            .collect()
    }

    /// The voters of the applied configuration, sorted.
    pub fn voters(&self) -> Vec<u64> {
        let mut voters = self.raft.store().conf_state().voters.clone();
        voters.sort_unstable();
        voters
    }

    /// Whether a configuration change removing this node was applied (it serves nothing; a driver stops it).
    pub fn is_removed(&self) -> bool {
        self.removed
    }
}
