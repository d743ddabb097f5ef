//! Snapshots written on a thread of their own, so that the event loop goes on serving clients while a large state
//! (a million retained messages, say) is encoded and written. The loop freezes the state (`Core::frozen_image`: a
//! pointer per retained message and a copy of the sessions) and starts the next log (`Storage::begin_snapshot`);
//! the thread encodes and writes the snapshot and rings the loop's waker; the loop then finishes it
//! (`Storage::finish_snapshot`: the files of older generations go). One snapshot at a time. A crash at any moment
//! of this recovers from the previous snapshot and both logs (see `mqtt_storage`'s recovery).

use crate::storage::{SnapshotJob, StdFs, Storage, StorageError};
use mqtt_core::broker::FrozenImage;
use std::io;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The thread writing a snapshot, if one is.
#[derive(Default)]
pub struct SnapshotWriter {
    running: Option<Running>,
}

struct Running {
    job: SnapshotJob,
    thread: JoinHandle<()>,
    /// The thread's result, sent before it rings the waker (so the woken loop finds it).
    written: Receiver<Result<u64, StorageError>>,
    started: Instant,
}

/// A finished snapshot: how long its thread took, and whether it is complete.
pub type Finished = (Duration, Result<(), StorageError>);

impl SnapshotWriter {
    /// Freezes the moment (the next log starts now) and hands `frozen`, the state of this moment, to a thread that
    /// writes it; `waker` is rung when the thread is done.
    pub fn start(
        &mut self,
        storage: &mut Storage,
        frozen: FrozenImage,
        waker: Option<Arc<mio::Waker>>,
    ) -> Result<(), StorageError> {
        let job = storage.begin_snapshot()?;
        let for_thread = job.clone();
        let (send, written) = mpsc::channel();
        let spawned = std::thread::Builder::new().name("snapshot".into()).spawn(move || {
            let written = for_thread.write(&StdFs, frozen.to_records());
            // The retained messages it shared are released before the loop hears of it.
            drop(frozen);
            let _ = send.send(written);
            if let Some(waker) = waker {
                let _ = waker.wake();
            }
        });
        match spawned {
            Ok(thread) => {
                self.running = Some(Running {
                    job,
                    thread,
                    written,
                    started: Instant::now(),
                });
                Ok(())
            }
            Err(source) => {
                let path = job.path();
                storage.finish_snapshot(job, Err(StorageError::Io { path, source }))
            }
        }
    }

    /// Finishes the snapshot if its thread is done.
    pub fn poll(&mut self, storage: &mut Storage) -> Option<Finished> {
        match self.running.as_ref()?.written.try_recv() {
            Ok(written) => Some(self.finish(storage, Ok(written))),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(self.finish(storage, Err(()))),
        }
    }

    /// Waits for the thread, and finishes its snapshot (before a snapshot on the loop itself, and at shutdown, so
    /// that the next start reads one snapshot and one log).
    pub fn wait(&mut self, storage: &mut Storage) -> Option<Finished> {
        let written = self.running.as_ref()?.written.recv().map_err(|_| ());
        Some(self.finish(storage, written))
    }

    /// `written`: the thread's result, or `Err` if it ended without one (it panicked).
    fn finish(&mut self, storage: &mut Storage, written: Result<Result<u64, StorageError>, ()>) -> Finished {
        let Some(running) = self.running.take() else {
            return (Duration::ZERO, Ok(()));
        };
        let elapsed = running.started.elapsed();
        let _ = running.thread.join();
        let written = written.unwrap_or_else(|()| {
            Err(StorageError::Io {
                path: running.job.path(),
                source: io::Error::other("the snapshot thread ended without writing it"),
            })
        });
        (elapsed, storage.finish_snapshot(running.job, written))
    }
}
