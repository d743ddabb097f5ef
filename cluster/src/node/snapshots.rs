//! The node's snapshots: one installed from the leader, one of its own handed to the driver once enough was
//! applied, and the log compacted when the driver reports it written (encoding and writing are in `snapshot`).

use super::{ClusterEvent, Node, NodeOutput};
use crate::snapshot::SnapshotJob;
use crate::wire;
use raft::eraftpb::Snapshot;

impl Node {
    pub(super) fn install_snapshot(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        match wire::decode_snapshot_data(&snapshot.data) {
            Ok((digest, image)) => {
                self.image.replace(image, index);
                self.digest = digest;
                self.applied = index;
                self.last_snapshot = index;
                self.applied_bytes = 0;
                self.last_snapshot_bytes = snapshot.data.len() as u64;
                self.raft.mut_store().install_snapshot(snapshot.clone());
                self.outputs.push_back(NodeOutput::PersistSnapshot {
                    snapshot,
                    discard_log: true,
                });
                self.event(ClusterEvent::SnapshotInstalled { index });
            }
            Err(error) => {
                // raft-rs has already moved its log to the snapshot; without its image this node cannot apply
                // anything after it. A leader only sends snapshots this version wrote, so this is corruption in
                // transit that the protobuf layer did not catch: keep the old image and say so.
                self.event(ClusterEvent::SnapshotUndecodable { error });
            }
        }
    }

    /// Hands the driver a snapshot of the applied image once enough was applied since the last
    /// (`NodeConfig::snapshot_entries`, `snapshot_bytes`), to rebuild, encode and write off its loop (see
    /// `snapshot`). The log is compacted only when the driver reports the snapshot durable (`snapshot_written`).
    pub(super) fn maybe_snapshot(&mut self) {
        if self.snapshot_in_flight.is_some() {
            return;
        }
        let bytes_due = self.applied_bytes >= self.config.snapshot_bytes.max(4 * self.last_snapshot_bytes);
        if self.applied < self.last_snapshot + self.config.snapshot_entries.max(1) && !bytes_due {
            return;
        }
        let index = self.applied;
        let store = self.raft.store();
        let Ok(term) = raft::Storage::term(store, index) else {
            return;
        };
        let base = store.snapshot_index();
        if base >= index {
            return;
        }
        let at = (index, term, store.conf_state().clone());
        let context = raft::GetEntriesContext::empty(false);
        // What rebuilds the image at `index` off the loop: the previous snapshot and the entries since, a pointer
        // each (see `snapshot`). The log reaches back to the previous snapshot unless the node recovered with a gap.
        let job = match raft::Storage::entries(store, base + 1, index + 1, None, context) {
            Ok(entries) => SnapshotJob::replay(at, self.digest, store.snapshot_data(), entries),
            Err(_) => {
                let mut events = Vec::new();
                self.image.catch_up(store, index, u64::MAX, &mut events);
                let job = SnapshotJob::copy(at, self.digest, self.image.get().clone());
                self.outputs.extend(events.into_iter().map(NodeOutput::Event));
                job
            }
        };
        self.snapshot_in_flight = Some(index);
        // Counted from here: what is applied while the driver writes belongs to the next snapshot.
        self.last_snapshot = index;
        self.applied_bytes = 0;
        self.outputs.push_back(NodeOutput::TakeSnapshot(Box::new(job)));
    }

    /// The driver wrote the snapshot of a `TakeSnapshot`: the log is compacted up to it (in memory; the driver's
    /// files were when it wrote it), and it is the snapshot a lagging follower is sent. Unless a snapshot from
    /// the leader at a later index was installed meanwhile: that one stays.
    pub(super) fn snapshot_written(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        if self.snapshot_in_flight == Some(index) {
            self.snapshot_in_flight = None;
        }
        if index <= self.raft.store().snapshot_index() || index > self.applied {
            return;
        }
        self.last_snapshot_bytes = snapshot.data.len() as u64;
        self.raft.mut_store().compact(snapshot);
        self.image.compacted(index);
        self.event(ClusterEvent::SnapshotTaken { index });
    }
}
