//! The node's own Raft snapshots encoded and written on a thread, so the loop goes on serving clients and answering
//! its peers meanwhile: with a large image (100,000 queued messages: 14.7 MB) encoding, writing and syncing it on
//! the loop took 0.3-0.9 s on a busy machine, on every node at once, past the election timeout.
//!
//! The node freezes its image (`NodeOutput::TakeSnapshot`: a clone); the thread encodes it, writes it to the
//! scratch file and syncs it (`disk::write_snapshot_file`), sends it back and wakes the loop; the loop renames it
//! into place as the next generation (`RaftDisk::adopt_snapshot`) and tells the node, which compacts its log only
//! then. A crash before the rename recovers from the previous snapshot and the whole log. One snapshot at a time
//! (the node asks for no other before the last is handed back).

use super::disk::{self, DiskError};
use mio::net::UnixStream;
use mio::{Interest, Registry, Token};
use mqtt_cluster::eraftpb::Snapshot;
use mqtt_cluster::SnapshotJob;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// A snapshot the thread finished: the snapshot, the file it is in, and how long the thread took.
pub struct Written {
    pub snapshot: Snapshot,
    pub path: PathBuf,
    pub took: Duration,
}

/// The snapshot thread's wake-up socket, and the snapshot it is writing, if any.
#[derive(Default)]
pub struct Snapshotter {
    /// The loop's end (registered, readable when a thread is done) and the end the threads write to.
    wake: Option<(UnixStream, std::os::unix::net::UnixStream)>,
    running: Option<Running>,
    /// Test hook: while set and closed, a snapshot thread waits before it writes (a write that never completes).
    #[cfg(test)]
    pub(crate) gate: Option<std::sync::Arc<Gate>>,
}

struct Running {
    index: u64,
    path: PathBuf,
    done: Receiver<Result<Snapshot, DiskError>>,
    started: Instant,
}

impl Snapshotter {
    /// Sets up the wake-up socket: a finished snapshot wakes `registry`'s poller with `token`.
    pub fn attach(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        let mut ours = UnixStream::from_std(ours);
        registry.register(&mut ours, token, Interest::READABLE)?;
        self.wake = Some((ours, theirs));
        Ok(())
    }

    /// The index of the snapshot being written, if one is.
    pub fn in_flight(&self) -> Option<u64> {
        self.running.as_ref().map(|r| r.index)
    }

    /// Starts a thread that encodes `job` and writes it to `path`.
    pub fn start(&mut self, job: SnapshotJob, path: PathBuf) -> Result<(), DiskError> {
        if let Some(index) = self.in_flight() {
            // The node asks for one at a time; a second would write over the first's scratch file.
            return Err(write_error(
                &path,
                io::Error::other(format!("snapshot {index} is still being written")),
            ));
        }
        let notify = match &self.wake {
            Some((_, theirs)) => Some(theirs.try_clone().map_err(|e| write_error(&path, e))?),
            None => None,
        };
        #[cfg(test)]
        let gate = self.gate.clone();
        let (send, done) = mpsc::channel();
        let for_thread = path.clone();
        let index = job.index();
        std::thread::Builder::new()
            .name("raft-snapshot".into())
            .spawn(move || {
                #[cfg(test)]
                if let Some(gate) = gate {
                    gate.wait();
                }
                let written = job
                    .encode()
                    .map_err(|e| write_error(&for_thread, io::Error::other(e.to_string())))
                    .and_then(|snapshot| disk::write_snapshot_file(&for_thread, &snapshot).map(|()| snapshot));
                // What rebuilt the image is released before the loop hears of it.
                drop(job);
                let _ = send.send(written);
                if let Some(mut notify) = notify {
                    // A full socket already holds a byte that will wake the loop.
                    let _ = notify.write(&[1]);
                }
            })
            .map_err(|e| write_error(&path, e))?;
        self.running = Some(Running {
            index,
            path,
            done,
            started: Instant::now(),
        });
        Ok(())
    }

    /// The snapshot the thread finished, if it did (and drains the wake-up socket).
    pub fn poll(&mut self) -> Option<Result<Written, DiskError>> {
        if let Some((ours, _)) = self.wake.as_mut() {
            let mut buf = [0u8; 64];
            while matches!(ours.read(&mut buf), Ok(n) if n > 0) {}
        }
        let running = self.running.as_ref()?;
        let result = match running.done.try_recv() {
            Ok(result) => result,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => Err(write_error(
                &running.path,
                io::Error::other("the snapshot thread ended without writing it"),
            )),
        };
        let running = self.running.take()?;
        Some(result.map(|snapshot| Written {
            snapshot,
            path: running.path,
            took: running.started.elapsed(),
        }))
    }
}

fn write_error(path: &std::path::Path, source: io::Error) -> DiskError {
    DiskError::Storage(crate::storage::StorageError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A test's hold on snapshot threads: closed, they wait before writing; opened, they go on.
#[cfg(test)]
#[derive(Default)]
pub struct Gate {
    open: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
}

#[cfg(test)]
impl Gate {
    pub fn open(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.opened.notify_all();
    }

    fn wait(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while !*open {
            open = self.opened.wait(open).unwrap_or_else(|e| e.into_inner());
        }
    }
}
