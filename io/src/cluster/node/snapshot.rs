//! The driver's side of the node's own snapshots (see `super::super::snapshotter`): when one is handed over the
//! next log starts; one the thread finished is put in place and the node told.

use super::ClusterCore;
use crate::cluster::disk::DiskError;
use mqtt_cluster::NodeInput;
use std::time::Instant;

impl ClusterCore {
    /// The node handed over its snapshot at `index`: the next generation's log starts now (`start_next_log`), so
    /// that putting the snapshot in place is a rename. The new log is written synced with every persist queued or
    /// written so far, so they all count as synced.
    pub(super) fn hand_over(&mut self, index: u64) -> Result<(), DiskError> {
        let began = Instant::now();
        if let Some(hard_state) = self.lazy_hard_state.take() {
            self.disk.set_hard_state(&hard_state);
        }
        self.disk.start_next_log(index, self.synced_index)?;
        if std::mem::take(&mut self.unsynced) {
            self.written += 1;
        }
        self.synced_through(self.written);
        self.synced_index = self.appended_index;
        log::info!(
            "cluster: snapshot at index {index} handed over, next log started in {} µs",
            began.elapsed().as_micros()
        );
        Ok(())
    }

    /// The snapshot the thread finished, if it did: renamed into place as the generation whose log the hand-over
    /// started, then the node told, which compacts its log.
    pub(super) fn snapshot_completed(&mut self) {
        let Some(result) = self.snapshots.poll() else {
            return;
        };
        if self.failure.is_some() {
            return;
        }
        let written = match result {
            Ok(written) => written,
            Err(e) => return self.fail(&e),
        };
        let began = Instant::now();
        let snapshot = written.snapshot;
        // A rename: the log it starts was started at the hand-over (or a leader's snapshot replaced it meanwhile,
        // and it is dropped).
        if let Err(e) = self.disk.adopt_snapshot(&written.path, &snapshot) {
            return self.fail(&e);
        }
        log::info!(
            "cluster: snapshot at index {} ({} bytes) written in {} ms by its thread, put in place in {} ms",
            snapshot.get_metadata().index,
            snapshot.data.len(),
            written.took.as_millis(),
            began.elapsed().as_millis()
        );
        self.input(self.now, NodeInput::SnapshotWritten(snapshot));
        self.release_durable();
    }
}
