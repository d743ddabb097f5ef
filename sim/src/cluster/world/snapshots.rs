//! The nodes' own snapshots, as the binary's driver takes them: the node freezes its image
//! (`NodeOutput::TakeSnapshot`), a thread encodes and writes it while the node goes on, and the node hears back
//! (`NodeInput::SnapshotWritten`) only once it is durable. Here the write takes a seeded 0 to
//! `SNAPSHOT_WRITE_MAX_MS` ms of virtual time, and a crash meanwhile loses it (the thread dies with the process):
//! the node then restarts from its previous snapshot and its log.

use super::World;
use mqtt_cluster::{NodeInput, SnapshotJob};
use rand::Rng;

/// The longest a snapshot write takes, ms: long enough for elections, crashes and leader snapshots to come between
/// a snapshot's freeze and its write.
const SNAPSHOT_WRITE_MAX_MS: u64 = 60;

impl World {
    /// Node `i` froze its image: the write starts, to complete a seeded while later.
    pub(super) fn take_snapshot(&mut self, i: usize, job: SnapshotJob) -> Result<(), String> {
        let took = self.rng.gen_range(0..=SNAPSHOT_WRITE_MAX_MS);
        let id = self.nodes[i].id;
        let index = job.index();
        let snapshot = job
            .encode()
            .map_err(|e| format!("n{id}'s snapshot {index} does not rebuild: {e}"))?;
        self.line(format!("n{id} snapshot {index} frozen, written in {took} ms"));
        self.nodes[i].snapshot = Some((self.now + took, snapshot));
        Ok(())
    }

    /// Node `i`'s snapshot write completes if it is due: durable on its disk, then the node is told.
    pub(super) fn snapshot_due(&mut self, i: usize) -> Result<(), String> {
        if self.nodes[i].node.is_none() || self.nodes[i].snapshot.as_ref().is_none_or(|(at, _)| *at > self.now) {
            return Ok(());
        }
        let Some((_, snapshot)) = self.nodes[i].snapshot.take() else {
            return Ok(());
        };
        let id = self.nodes[i].id;
        let index = snapshot.get_metadata().index;
        let kept = self.nodes[i].disk.save_own_snapshot(snapshot.clone());
        self.line(format!(
            "n{id} snapshot {index} written{}",
            if kept { "" } else { " (older than the disk's: dropped)" }
        ));
        self.input(i, NodeInput::SnapshotWritten(snapshot))
    }
}
