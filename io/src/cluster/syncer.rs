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
//! One request in flight at a time, each covering everything written before it was made (a later request covers
//! all writes since): a group commit that pipelines one sync with the writes of the next batch.

use mio::net::UnixStream;
use mio::{Interest, Registry, Token};
use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::mpsc;
use std::thread;

/// A sync request's outcome: the write sequence number it covers, and whether the disk took it.
pub type SyncDone = (u64, io::Result<()>);

/// The sync thread and the loop's ends of its channels.
pub struct Syncer {
    requests: mpsc::Sender<(u64, File)>,
    done: mpsc::Receiver<SyncDone>,
    /// Readable when a sync completed (the thread writes a byte): wakes the loop.
    wake: UnixStream,
    token: Token,
    /// The write sequence number of the request in flight.
    in_flight: Option<u64>,
}

impl Syncer {
    /// Starts the thread; its completions wake `registry`'s poller with `token`.
    pub fn start(registry: &Registry, token: Token) -> io::Result<Syncer> {
        let (mut wake, mut notify) = UnixStream::pair()?;
        registry.register(&mut wake, token, Interest::READABLE)?;
        let (requests, incoming) = mpsc::channel::<(u64, File)>();
        let (finished, done) = mpsc::channel::<SyncDone>();
        thread::Builder::new().name("raft-sync".to_string()).spawn(move || {
            // Ends when the loop drops its `Syncer` (the request channel closes).
            while let Ok((seq, file)) = incoming.recv() {
                let result = file.sync_data();
                if finished.send((seq, result)).is_err() {
                    return;
                }
                // A full socket already holds a byte that will wake the loop: nothing lost.
                let _ = notify.write(&[1]);
            }
        })?;
        Ok(Syncer {
            requests,
            done,
            wake,
            token,
            in_flight: None,
        })
    }

    pub fn token(&self) -> Token {
        self.token
    }

    pub fn in_flight(&self) -> Option<u64> {
        self.in_flight
    }

    /// Asks the thread to sync `file` (a handle of the log) for the writes up to sequence number `seq`. False if
    /// the thread is gone (the caller syncs on the loop instead).
    pub fn request(&mut self, seq: u64, file: File) -> bool {
        if self.requests.send((seq, file)).is_err() {
            return false;
        }
        self.in_flight = Some(seq);
        true
    }

    /// The completed request, if it has completed (after a wake-up, or polled at the end of a turn).
    pub fn completed(&mut self) -> Option<SyncDone> {
        let mut scratch = [0u8; 64];
        // Edge-triggered: read the wake-up bytes until none are left.
        while matches!(self.wake.read(&mut scratch), Ok(n) if n > 0) {}
        match self.done.try_recv() {
            Ok(done) => {
                self.in_flight = None;
                Some(done)
            }
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => {
                // The thread died (it cannot panic short of an allocation failure): whatever was in flight is
                // unknown, so it is reported as failed and the node stops rather than promise it.
                let seq = self.in_flight.take()?;
                Some((seq, Err(io::Error::other("the Raft log's sync thread stopped"))))
            }
        }
    }
}

#[cfg(test)]
mod tests;
