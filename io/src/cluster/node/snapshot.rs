//! The driver's side of the node's own snapshots (see `super::super::snapshotter`): one the thread finished is put
//! in place and the node told.

use super::ClusterCore;
use mqtt_cluster::NodeInput;
use std::time::Instant;

impl ClusterCore {
    /// The snapshot the thread finished, if it did: renamed into place as the next generation, the log rewritten
    /// after it (which syncs everything written or queued so far), then the node told, which compacts its log.
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
        // The log's rewrite is synced: the commit index waiting to ride along with the next sync goes with it (it
        // is never past the entries appended, all of which the rewrite holds).
        if let Some(hard_state) = self.lazy_hard_state.take() {
            self.disk.set_hard_state(&hard_state);
        }
        match self.disk.adopt_snapshot(&written.path, &snapshot) {
            Ok(true) => {
                if std::mem::take(&mut self.unsynced) {
                    self.written += 1;
                }
                self.synced_through(self.written);
                self.synced_index = self.appended_index;
            }
            // A leader's snapshot replaced it meanwhile: the hard state queued above goes with the next write.
            Ok(false) => self.unsynced = true,
            Err(e) => return self.fail(&e),
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
