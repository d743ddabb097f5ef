//! The node's in-memory copy of its Raft log, hard state and latest snapshot: what raft-rs reads through its
//! `Storage` trait. The driver keeps the durable copy (see `NodeOutput::Persist*`); this one is rebuilt from it at
//! start-up. Unlike raft-rs's `MemStorage`, the snapshot it serves carries the image, not only metadata.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

pub struct LogStore {
    hard_state: HardState,
    conf_state: ConfState,
    /// The latest snapshot; the log starts right after its index.
    snapshot: Snapshot,
    /// Consecutive entries from `snapshot index + 1`.
    entries: Vec<Entry>,
}

impl LogStore {
    pub fn new(conf_state: ConfState) -> LogStore {
        LogStore {
            hard_state: HardState::default(),
            conf_state,
            snapshot: Snapshot::default(),
            entries: Vec::new(),
        }
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    /// The latest snapshot's data (the image at its index; empty: none), shared.
    pub fn snapshot_data(&self) -> bytes::Bytes {
        self.snapshot.data.clone()
    }

    fn snapshot_term(&self) -> u64 {
        self.snapshot.get_metadata().term
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// The configuration as of the last applied change (kept in every snapshot taken from here on).
    pub fn set_conf_state(&mut self, conf_state: ConfState) {
        self.conf_state = conf_state;
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Replaces everything with a snapshot (one received from the leader, or recovered from disk).
    pub fn install_snapshot(&mut self, snapshot: Snapshot) {
        let meta = snapshot.get_metadata();
        if self.hard_state.commit < meta.index {
            self.hard_state.commit = meta.index;
        }
        if self.hard_state.term < meta.term {
            self.hard_state.term = meta.term;
        }
        self.conf_state = meta.get_conf_state().clone();
        self.entries.clear();
        self.snapshot = snapshot;
    }

    /// Records a snapshot the node took of its own applied state and drops the entries it covers.
    pub fn compact(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        let first = self.first();
        if index >= first {
            let drop = ((index - first + 1) as usize).min(self.entries.len());
            self.entries.drain(..drop);
        }
        self.snapshot = snapshot;
    }

    /// Appends entries, replacing any conflicting suffix (raft-rs hands out overlapping entries after a leader
    /// change). Entries at or below the snapshot are already covered by it and skipped. Entries that would leave a
    /// gap (a damaged log read back from disk; raft-rs never produces one) are not appended: `Err(index)` names
    /// the first one.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), u64> {
        let snapshot_index = self.snapshot_index();
        let entries: Vec<&Entry> = entries.iter().filter(|e| e.index > snapshot_index).collect();
        let Some(first_new) = entries.first().map(|e| e.index) else {
            return Ok(());
        };
        let keep = (first_new - self.first()) as usize;
        if keep > self.entries.len() {
            return Err(first_new);
        }
        self.entries.truncate(keep);
        for entry in entries {
            if entry.index != self.last() + 1 {
                return Err(entry.index);
            }
            self.entries.push(entry.clone());
        }
        Ok(())
    }

    fn first(&self) -> u64 {
        self.snapshot_index() + 1
    }

    fn last(&self) -> u64 {
        self.snapshot_index() + self.entries.len() as u64
    }

    /// The entries after `index` (from the snapshot's on, if `index` is below it), in order.
    pub fn entries_after(&self, index: u64) -> impl Iterator<Item = &Entry> {
        let skip = index.saturating_sub(self.snapshot_index()) as usize;
        self.entries.iter().skip(skip)
    }

    /// The entries at or below `commit` and above the snapshot, for applying at start-up.
    pub fn entries_through(&self, commit: u64) -> impl Iterator<Item = &Entry> {
        self.entries.iter().take_while(move |e| e.index <= commit)
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state.clone(), self.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let from = (low - self.first()) as usize;
        let to = (high - self.first()) as usize;
        let mut out = self.entries[from..to].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snapshot_index() {
            return Ok(self.snapshot_term());
        }
        if idx < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.first()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snapshot_index() < request_index || self.snapshot_index() == 0 {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    fn snapshot(index: u64, term: u64) -> Snapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().index = index;
        s.mut_metadata().term = term;
        s
    }

    #[test]
    fn append_replaces_a_conflicting_suffix() {
        let mut store = LogStore::new(ConfState::default());
        assert_eq!(store.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]), Ok(()));
        assert_eq!(store.append(&[entry(2, 2)]), Ok(()));
        assert_eq!(store.last_index(), Ok(2));
        assert_eq!(store.term(2), Ok(2));
        assert!(store.term(3).is_err());
    }

    #[test]
    fn compaction_keeps_later_entries_and_the_snapshot_term() {
        let mut store = LogStore::new(ConfState::default());
        assert_eq!(
            store.append(&(1..=10).map(|i| entry(i, 1 + i / 5)).collect::<Vec<_>>()),
            Ok(())
        );
        store.compact(snapshot(6, 2));
        assert_eq!(store.first_index(), Ok(7));
        assert_eq!(store.last_index(), Ok(10));
        // The term of the entry just before the first is kept for log matching.
        assert_eq!(store.term(6), Ok(2));
        assert_eq!(store.term(5), Err(raft::Error::Store(StorageError::Compacted)));
        assert_eq!(
            store.entries(5, 8, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        );
        let got = store
            .entries(7, 11, None, GetEntriesContext::empty(false))
            .expect("entries 7..=10");
        assert_eq!(got.iter().map(|e| e.index).collect::<Vec<_>>(), vec![7, 8, 9, 10]);
    }

    #[test]
    fn an_installed_snapshot_replaces_the_log_and_raises_the_commit() {
        let mut store = LogStore::new(ConfState::default());
        assert_eq!(store.append(&[entry(1, 1), entry(2, 1)]), Ok(()));
        store.install_snapshot(snapshot(9, 3));
        assert_eq!((store.first_index(), store.last_index()), (Ok(10), Ok(9)));
        assert_eq!(store.initial_state().map(|s| s.hard_state.commit), Ok(9));
        // Entries the snapshot covers are skipped; later ones follow it.
        assert_eq!(store.append(&[entry(9, 3), entry(10, 3)]), Ok(()));
        assert_eq!(store.last_index(), Ok(10));
        // A log with a hole (damaged on disk) is not taken: nothing after the hole is appended.
        assert_eq!(store.append(&[entry(11, 3), entry(13, 3)]), Err(13));
        assert_eq!(store.last_index(), Ok(11));
        assert_eq!(store.append(&[entry(20, 3)]), Err(20));
        assert_eq!(store.snapshot(0, 2).map(|s| s.get_metadata().index), Ok(9));
    }
}
