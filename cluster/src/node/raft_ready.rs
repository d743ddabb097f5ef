//! The Raft side of a node: peer messages checked and stepped into raft-rs, and raft-rs's ready states handled in
//! its order (messages, entries and hard state to persist, committed entries applied, configuration changes).

use super::{ClusterEvent, Node, NodeOutput, CATCH_UP_BYTES};
use crate::image::REPLAY_WINDOW_BYTES;
use crate::members::{self, MemberChange};
use crate::relay;
use crate::wire::{self, PeerError};
use raft::eraftpb::{Entry, EntryType, Message};

impl Node {
    pub(super) fn handle_peer(&mut self, from: u64, data: &[u8]) {
        self.unreachable.remove(&from);
        if relay::is_relay(data) {
            self.handle_relay(from, data);
            return;
        }
        let result = wire::decode_peer_message(data, self.config.cluster_id, self.config.max_peer_message)
            .and_then(|message| self.check_peer(from, message))
            .and_then(|message| self.raft.step(message).map_err(|e| PeerError::Refused(e.to_string())));
        if let Err(error) = result {
            self.event(ClusterEvent::PeerRefused { from, error });
        }
    }

    pub(super) fn check_peer(&self, from: u64, message: Message) -> Result<Message, PeerError> {
        if message.from != from || from == self.config.node_id || !self.knows(from) {
            return Err(PeerError::UnknownSender {
                claimed: message.from,
                connection: from,
            });
        }
        if message.to != self.config.node_id {
            return Err(PeerError::WrongRecipient { to: message.to });
        }
        if raft::raw_node::is_local_msg(message.msg_type) {
            return Err(PeerError::Refused(format!("local message type {:?}", message.msg_type)));
        }
        Ok(message)
    }

    /// Handles everything raft-rs has ready, in raft-rs's order: messages a leader may send before its own write,
    /// a snapshot, committed entries, new entries and hard state to persist, messages that must follow the write.
    pub(super) fn process_ready(&mut self) {
        while self.raft.has_ready() {
            let mut ready = self.raft.ready();
            let writes = !ready.entries().is_empty();
            let snapshot = !ready.snapshot().is_empty();
            let number = ready.number();
            // A leader's appends and heartbeats may leave before its own write of the same entries (raft thesis
            // 10.2.1; raft-rs hands them out as `messages`, apart from those that must follow the write).
            self.send_early(ready.take_messages());
            if !ready.snapshot().is_empty() {
                self.install_snapshot(ready.snapshot().clone());
            }
            let committed = ready.take_committed_entries();
            self.apply(committed);
            if !ready.entries().is_empty() {
                let appended = self.raft.mut_store().append(ready.entries());
                debug_assert!(appended.is_ok(), "raft-rs handed out entries with a gap: {appended:?}");
                self.outputs.push_back(NodeOutput::PersistEntries(ready.take_entries()));
            }
            if let Some(hs) = ready.hs() {
                self.raft.mut_store().set_hard_state(hs.clone());
                self.outputs.push_back(NodeOutput::PersistHardState(hs.clone()));
            }
            self.send(ready.take_persisted_messages());
            // raft-rs counts these writes only when the driver confirms them durable (`NodeInput::Durable`): a
            // leader's own copy must not make up a commit majority while it may still be lost (seed 1725 of the
            // cluster simulator: a leader committed on its unsynced write and one follower's, told the follower,
            // crashed, and the entry was replaced under the follower's commit index, which then never moved).
            self.raft.advance_append_async(ready);
            if snapshot {
                // A snapshot from the leader holds committed state only, and raft-rs needs its applied index at
                // the snapshot as soon as the log behind it is gone from the store (an election meanwhile reads
                // the entries after the applied index: seed 504). Counted at once; a crash before the write ends
                // loses it with the rest of this follower's memory. Only a follower installs one, and a follower
                // counts toward no commit.
                self.raft.on_persist_ready(number);
            } else if writes {
                self.outputs.push_back(NodeOutput::ConfirmDurable(number));
            }
            self.report_applied();
            // A snapshot travels as one message that may be lost, and raft-rs pauses the follower until told how it
            // went. Reporting it finished at once resumes probing: if it was lost, the follower rejects the next
            // append and the leader sends the snapshot again.
            for to in std::mem::take(&mut self.snapshots_sent) {
                self.raft.report_snapshot(to, raft::SnapshotStatus::Finish);
            }
            self.observe_role();
        }
        self.observe_role();
        self.maybe_serve();
        self.maybe_snapshot();
    }

    /// Tells raft-rs how far this node applied, as far as raft-rs allows: an installed snapshot counts as applied
    /// here at once but for raft-rs only once it is durable.
    pub(super) fn report_applied(&mut self) {
        let log = &self.raft.raft.raft_log;
        let applied = self.applied.min(log.persisted).min(log.committed);
        if applied > log.applied {
            self.raft.advance_apply_to(applied);
        }
    }

    pub(super) fn send(&mut self, messages: Vec<Message>) {
        self.send_with(messages, false);
    }

    pub(super) fn send_early(&mut self, messages: Vec<Message>) {
        self.send_with(messages, true);
    }

    pub(super) fn send_with(&mut self, messages: Vec<Message>, early: bool) {
        if self.removed {
            // A removed node takes no part: a removed leader's heartbeats would keep the others from electing one.
            return;
        }
        for message in messages {
            let to = message.to;
            if message.msg_type == raft::eraftpb::MessageType::MsgSnapshot {
                self.snapshots_sent.push(to);
            }
            let bytes = wire::encode_peer_message(self.config.cluster_id, &message);
            if early {
                self.outputs.push_back(NodeOutput::PeerEarly { to, message: bytes });
            } else {
                self.outputs.push_back(NodeOutput::Peer { to, message: bytes });
            }
        }
    }

    pub(super) fn apply(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            if entry.index <= self.applied {
                continue;
            }
            self.digest = wire::fold_digest(self.digest, entry.index, entry.term, &entry.data);
            self.applied_bytes += entry.data.len() as u64;
            self.image_lag_bytes += entry.data.len() as u64;
            // The records go to the image when it is needed (see `image`): the entry stays in the log until a
            // snapshot holds it.
            if entry.get_entry_type() == EntryType::EntryConfChangeV2 {
                self.apply_conf_change(&entry);
            }
            self.applied = entry.index;
            self.release(entry.index, entry.term);
        }
        // A node that may have to take over keeps its image a window behind at most, so that a new leader has
        // little to catch up before it serves (after 5 s of fan-out load, catching up from the last snapshot
        // took a failover 0.5-1 s longer); a window at a time, its cancelled records skipped (see `Replay`).
        if self.broker.is_none() && self.image_lag_bytes >= REPLAY_WINDOW_BYTES {
            let mut events = Vec::new();
            if self
                .image
                .catch_up(self.raft.store(), self.applied, CATCH_UP_BYTES, &mut events)
            {
                self.image_lag_bytes = 0;
            }
            for e in events {
                self.event(e);
            }
        }
    }

    /// A committed configuration change takes effect here (raft-rs's rule: on apply, on every node). A node that
    /// removes itself stops serving: a leader first closes its clients as in a failover, and the others elect a
    /// leader among the remaining members.
    pub(super) fn apply_conf_change(&mut self, entry: &Entry) {
        let index = entry.index;
        let Some((cc, change)) = members::decode_entry(entry) else {
            let why = "not a single add or remove of a voter".to_string();
            self.event(ClusterEvent::ConfChangeRefused { index, why });
            return;
        };
        match self.raft.apply_conf_change(&cc) {
            Ok(conf) => self.raft.mut_store().set_conf_state(conf),
            Err(e) => {
                let why = e.to_string();
                self.event(ClusterEvent::ConfChangeRefused { index, why });
                return;
            }
        }
        let removed = change
            == MemberChange::Remove {
                id: self.config.node_id,
            };
        let voters = self.voters();
        self.event(ClusterEvent::MembersChanged { index, change, voters });
        if removed && !self.removed {
            self.removed = true;
            self.depose("removed from the cluster");
            self.event(ClusterEvent::Removed { index });
        }
    }
}
