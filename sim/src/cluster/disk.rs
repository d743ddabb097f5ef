//! A node's simulated Raft disk. Writes land in a volatile buffer and become durable when the driver syncs (before
//! it acts on any later output: the node's ordering rule). A crash keeps a random prefix of the unsynced writes,
//! the way a torn log tail does. Compaction is lazy, as on a real disk: entries at or below a snapshot stay until
//! the next snapshot, so recovery sees entries the snapshot already holds (and the node must skip them).

use mqtt_cluster::eraftpb::{Entry, HardState, Snapshot};
use mqtt_cluster::Recovered;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// One write the node asked for.
#[derive(Debug, Clone)]
pub enum Write {
    Entries(Vec<Entry>),
    HardState(HardState),
    Snapshot { snapshot: Snapshot, discard_log: bool },
}

#[derive(Default)]
pub struct Disk {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
    unsynced: Vec<Write>,
    pub syncs: u64,
}

impl Disk {
    pub fn write(&mut self, write: Write) {
        self.unsynced.push(write);
    }

    pub fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty()
    }

    pub fn sync(&mut self) {
        if self.unsynced.is_empty() {
            return;
        }
        self.syncs += 1;
        for write in std::mem::take(&mut self.unsynced) {
            self.apply(write);
        }
    }

    fn apply(&mut self, write: Write) {
        match write {
            Write::Entries(entries) => {
                let Some(first) = entries.first().map(|e| e.index) else {
                    return;
                };
                self.entries.retain(|e| e.index < first);
                self.entries.extend(entries);
            }
            Write::HardState(hs) => self.hard_state = hs,
            Write::Snapshot { snapshot, discard_log } => {
                if discard_log {
                    self.entries.clear();
                } else {
                    // Lazy compaction: only what the previous snapshot covered goes now.
                    let previous = self.snapshot.as_ref().map_or(0, |s| s.get_metadata().index);
                    self.entries.retain(|e| e.index > previous);
                }
                self.snapshot = Some(snapshot);
            }
        }
    }

    /// The node's own snapshot, written and synced apart from the log (a file renamed into place): durable at once,
    /// unless the disk starts from a later snapshot already (a leader's, installed meanwhile). Whether it was kept.
    pub fn save_own_snapshot(&mut self, snapshot: Snapshot) -> bool {
        let current = self.snapshot.as_ref().map_or(0, |s| s.get_metadata().index);
        if snapshot.get_metadata().index <= current {
            return false;
        }
        self.apply(Write::Snapshot {
            snapshot,
            discard_log: false,
        });
        true
    }

    /// The process dies: unsynced writes are lost, except a random prefix that reached the platter. Returns how
    /// many were lost.
    pub fn crash(&mut self, rng: &mut ChaCha8Rng) -> usize {
        let writes = std::mem::take(&mut self.unsynced);
        let kept = rng.gen_range(0..=writes.len());
        let lost = writes.len() - kept;
        for write in writes.into_iter().take(kept) {
            self.apply(write);
        }
        lost
    }

    /// What a restarting node reads back.
    pub fn recover(&self) -> Recovered {
        Recovered {
            hard_state: self.hard_state.clone(),
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }

    /// Whether entry `index` of `term` is durable here (a durable snapshot at or past it holds it too: snapshots
    /// hold applied, so committed, state only).
    pub fn holds(&self, index: u64, term: u64) -> bool {
        if self.snapshot.as_ref().is_some_and(|s| s.get_metadata().index >= index) {
            return true;
        }
        self.entries.iter().any(|e| e.index == index && e.term == term)
    }
}
