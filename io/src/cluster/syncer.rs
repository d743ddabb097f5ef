//! The Raft log's `fdatasync`, off the loop thread.
//!
//! A sync takes milliseconds on a real disk. Done on the loop, it stops the node for that long: a leader reads no
//! client and hears no follower's acknowledgement meanwhile, so a commit that a follower completed early waits for
//! the end of the leader's own sync, and the next batch of client input waits for it too. With the sync on this
//! thread the loop goes on: it reads, proposes and writes the next batch (into the page cache) and sends its appends
//! while the previous batch syncs, and it acts on an acknowledgement when it arrives. Nothing is promised earlier:
//! the loop still acts on an output only once the sync covering the persists before it has completed (see
//! `ClusterCore::release_durable`).
//!
//! Each sync covers everything written before it started. The loop hands the threads its newest write as it makes
//! it (a later request replaces one no thread has taken yet), and a thread starts the next sync as soon as the
//! previous one returns if a request waits: consecutive syncs do not wait for the loop to be scheduled, hear of the
//! completion and ask again (on a busy machine each such wake-up can cost a scheduler tick).
//!
//! `THREADS` threads take requests, so a write made while one sync runs starts its own at once instead of waiting
//! for that one to return (measured: half a sync's time, 0.2-0.36 ms at the median on this machine's disk, was a
//! write's wait for the sync in flight). A later sync waits in the kernel for the writeback of pages an earlier one
//! started, so its completion still covers every write before it; completions may arrive out of order, and only one
//! past every completion reported before is reported.

use mio::net::UnixStream;
use mio::{Interest, Registry, Token};
use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;

/// A sync request's outcome: the write sequence number it covers, and whether the disk took it.
pub type SyncDone = (u64, io::Result<()>);

/// What the loop hands the thread: the newest write not yet taken (its sequence number and a handle of the log it
/// went to), and whether the loop is gone.
#[derive(Default)]
struct Requests {
    newest: Option<(u64, File)>,
    closed: bool,
}

type Shared = Arc<(Mutex<Requests>, Condvar)>;

/// How many syncs may be in flight at once.
const THREADS: usize = 2;

/// The sync threads and the loop's ends of their channels.
pub struct Syncer {
    requests: Shared,
    done: mpsc::Receiver<SyncDone>,
    /// Readable when a sync completed (the thread writes a byte): wakes the loop.
    wake: UnixStream,
    token: Token,
    /// The newest write sequence number requested and not yet reported synced.
    in_flight: Option<u64>,
    /// The newest write sequence number reported synced (an older completion arriving later says nothing new).
    reported: u64,
}

impl Syncer {
    /// Starts the thread; its completions wake `registry`'s poller with `token`.
    pub fn start(registry: &Registry, token: Token) -> io::Result<Syncer> {
        let (mut wake, notify) = UnixStream::pair()?;
        registry.register(&mut wake, token, Interest::READABLE)?;
        let requests: Shared = Arc::default();
        let notify = Arc::new(notify);
        let (finished, done) = mpsc::channel::<SyncDone>();
        for _ in 0..THREADS {
            let theirs = Arc::clone(&requests);
            let finished = finished.clone();
            let notify = Arc::clone(&notify);
            thread::Builder::new().name("raft-sync".to_string()).spawn(move || {
                // Ends when the loop drops its `Syncer` (see `Drop`).
                while let Some((seq, file)) = next_request(&theirs) {
                    super::timing::step("syncgo", seq, 0);
                    let result = file.sync_data();
                    super::timing::step("syncret", seq, 0);
                    if finished.send((seq, result)).is_err() {
                        return;
                    }
                    // A full socket already holds a byte that will wake the loop: nothing lost.
                    let _ = (&*notify).write(&[1]);
                }
            })?;
        }
        Ok(Syncer {
            requests,
            done,
            wake,
            token,
            in_flight: None,
            reported: 0,
        })
    }

    pub fn token(&self) -> Token {
        self.token
    }

    /// The newest write sequence number requested and not yet reported synced.
    pub fn in_flight(&self) -> Option<u64> {
        self.in_flight
    }

    /// Asks the thread to sync `file` (a handle of the log) for the writes up to sequence number `seq`, after the
    /// sync it is running (if any); replaces a request it has not started, which this one covers. False if the
    /// thread is gone (the caller syncs on the loop instead).
    pub fn request(&mut self, seq: u64, file: File) -> bool {
        let (lock, ready) = &*self.requests;
        let Ok(mut requests) = lock.lock() else {
            // The thread panicked holding the lock (it cannot short of an allocation failure).
            return false;
        };
        requests.newest = Some((seq, file));
        ready.notify_one();
        self.in_flight = Some(seq);
        true
    }

    /// The newest completed sync, if any completed (after a wake-up, or polled at the end of a turn): every sync
    /// that completed is drained, and the first failure wins over later successes (nothing after a failed sync may
    /// be promised).
    pub fn completed(&mut self) -> Option<SyncDone> {
        let mut scratch = [0u8; 64];
        // Edge-triggered: read the wake-up bytes until none are left.
        while matches!(self.wake.read(&mut scratch), Ok(n) if n > 0) {}
        let mut newest: Option<u64> = None;
        loop {
            match self.done.try_recv() {
                Ok((seq, Ok(()))) => newest = Some(newest.map_or(seq, |n| n.max(seq))),
                Ok((seq, Err(e))) => {
                    self.in_flight = None;
                    return Some((seq, Err(e)));
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    // The thread died (it cannot panic short of an allocation failure): whatever was in flight is
                    // unknown, so it is reported as failed and the node stops rather than promise it.
                    let seq = self.in_flight.take()?;
                    return Some((seq, Err(io::Error::other("the Raft log's sync thread stopped"))));
                }
            }
        }
        let seq = newest.filter(|seq| *seq > self.reported)?;
        self.reported = seq;
        if self.in_flight.is_some_and(|requested| requested <= seq) {
            self.in_flight = None;
        }
        Some((seq, Ok(())))
    }
}

/// Waits for the next request (`None`: the loop is gone).
fn next_request(shared: &Shared) -> Option<(u64, File)> {
    let (lock, ready) = &**shared;
    let mut requests = lock.lock().ok()?;
    loop {
        if let Some(request) = requests.newest.take() {
            return Some(request);
        }
        if requests.closed {
            return None;
        }
        requests = ready.wait(requests).ok()?;
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        let (lock, ready) = &*self.requests;
        if let Ok(mut requests) = lock.lock() {
            requests.closed = true;
        }
        ready.notify_all();
    }
}

#[cfg(test)]
mod tests;
