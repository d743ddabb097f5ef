//! The durable side of a loop turn: the group commit that releases held output once its records are synced, the
//! snapshot rotation, and the suspension while the data directory cannot be written.

use super::*;

impl<C: Core> Driver<C> {
    /// The group commit: one write and one sync cover every record of this loop iteration, then the sends they
    /// held back go out. A failed commit (disk full, say) keeps the records and the sends, and is retried.
    pub(super) fn commit_and_flush(&mut self) {
        self.finish_snapshot(false);
        let Some(storage) = self.storage.as_mut() else {
            self.broker.durable();
            return;
        };
        if storage.is_suspended() {
            self.try_resume_storage();
            self.flush_dirty_and_settle();
            return;
        }
        let (wrote, started) = (storage.has_pending(), Instant::now());
        if let Err(e) = storage.commit() {
            self.suspend_storage(&e);
            self.flush_dirty_and_settle();
            return;
        }
        if let Some(metrics) = self.metrics.as_ref().filter(|_| wrote) {
            metrics.on_commit(started.elapsed());
        }
        if storage.wants_snapshot() {
            self.start_snapshot();
        }
        self.flush_dirty_and_settle();
        // What the flushes fed back may have produced more records.
        if self.storage.as_ref().is_some_and(Storage::has_pending) {
            self.commit_and_flush();
        } else {
            // Every record appended so far is committed, so everything output before it is covered.
            self.broker.durable();
        }
    }

    /// Freezes the state and the log for a snapshot written by a thread (see `snapshot`): the loop only pays for
    /// the freeze.
    pub(super) fn start_snapshot(&mut self) {
        let started = Instant::now();
        let waker = self.waker().ok();
        let frozen = self.broker.frozen_image();
        let Some(storage) = self.storage.as_mut() else {
            return;
        };
        match self.snapshots.start(storage, frozen, waker) {
            Ok(()) => log::debug!(
                "snapshot {:?}: state frozen in {} ms, written in the background",
                storage.snapshot_in_flight(),
                started.elapsed().as_millis()
            ),
            // Storage logged it, once, with the logs' size and when it tries again.
            Err(e) => log::debug!("snapshot not started: {e}"),
        }
    }

    /// Finishes the snapshot written in the background once its thread is done (`wait`: waits for it).
    pub(super) fn finish_snapshot(&mut self, wait: bool) {
        let Some(storage) = self.storage.as_mut() else {
            return;
        };
        let finished = if wait {
            self.snapshots.wait(storage)
        } else {
            self.snapshots.poll(storage)
        };
        match finished {
            Some((elapsed, Ok(()))) => {
                if let Some(metrics) = &self.metrics {
                    metrics.on_snapshot(elapsed);
                }
            }
            // Storage logged it, once, with the logs' size and when it tries again.
            Some((_, Err(e))) => log::debug!("snapshot failed: {e}"),
            None => {}
        }
    }

    /// The disk refused a commit. What this loop iteration sent stays held (its acknowledgements are not on disk);
    /// the core stops accepting QoS 1/2 messages, so from now on nothing sent promises durability, and other
    /// traffic flows. A snapshot taken once the disk works again makes everything durable at once.
    pub(super) fn suspend_storage(&mut self, error: &crate::storage::StorageError) {
        let what = if error.is_disk_full() {
            "the disk is full"
        } else {
            "cannot write"
        };
        log::error!(
            "data directory: {what} ({error}); refusing QoS 1/2 messages (MQTT 5: 0x97 Quota exceeded; 3.1.1: connection \
             closed) until it can be written again, retrying every {}s",
            STORAGE_RETRY.as_secs()
        );
        if let Some(storage) = self.storage.as_mut() {
            storage.suspend();
        }
        if let Some(metrics) = &self.metrics {
            metrics.set_storage_writable(false);
        }
        for id in std::mem::take(&mut self.dirty) {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.dirty = false;
                conn.durability_hold = true;
            }
        }
        self.storage_retry.pause(self.now);
        self.feed(Input::StorageWritable(false));
    }

    pub(super) fn try_resume_storage(&mut self) {
        if !self.storage_retry.ready(self.now) {
            return;
        }
        // The snapshot that ends the suspension is written here and now, after any in the background.
        self.finish_snapshot(true);
        let image = self.broker.image();
        let Some(storage) = self.storage.as_mut() else {
            return;
        };
        let started = Instant::now();
        if let Err(e) = storage.resume(&image) {
            log::debug!("data directory still not writable: {e}");
            self.storage_retry.pause(self.now);
            return;
        }
        if let Some(metrics) = &self.metrics {
            metrics.on_snapshot(started.elapsed());
            metrics.set_storage_writable(true);
        }
        self.storage_retry.clear();
        log::info!("data directory writable again: state snapshotted, accepting QoS 1/2 messages");
        // The snapshot holds everything the core accepted, also what the failed commits did not write.
        self.broker.durable();
        let held: Vec<ConnectionId> = self
            .conns
            .iter_mut()
            .filter(|(_, c)| c.durability_hold)
            .map(|(id, c)| {
                c.durability_hold = false;
                *id
            })
            .collect();
        for id in held {
            self.mark_dirty(id);
        }
        self.feed(Input::StorageWritable(true));
    }
}
