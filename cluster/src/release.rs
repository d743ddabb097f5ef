//! The commit rule: client outputs that the broker produced after a record wait until the Raft entry carrying that
//! record is committed (on a majority of nodes, each durable), in the order they were produced. It generalises
//! `sync = "always"`, where they wait for the local disk.

use mqtt_core::broker::Output;
use std::collections::VecDeque;

/// Outputs waiting for the commit of entry `index` (of term `term`).
struct Batch {
    index: u64,
    term: u64,
    outputs: Vec<Output>,
}

/// Held outputs, oldest entry first. Entry indexes only grow: one leader proposes them in order.
#[derive(Default)]
pub struct Held {
    batches: VecDeque<Batch>,
}

impl Held {
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Outputs held in all.
    pub fn len(&self) -> usize {
        self.batches.iter().map(|b| b.outputs.len()).sum()
    }

    /// Holds `outputs` until entry `index` commits.
    pub fn hold(&mut self, index: u64, term: u64, outputs: Vec<Output>) {
        debug_assert!(
            self.batches.back().map(|b| b.index < index).unwrap_or(true),
            "entries proposed out of order"
        );
        self.batches.push_back(Batch { index, term, outputs });
    }

    /// Outputs with no record of their own produced while others wait: they queue behind the last batch, so a
    /// connection's bytes keep their order. Returns them back if nothing is held (they may go at once).
    pub fn queue_behind(&mut self, outputs: Vec<Output>) -> Option<Vec<Output>> {
        match self.batches.back_mut() {
            Some(last) => {
                last.outputs.extend(outputs);
                None
            }
            None => Some(outputs),
        }
    }

    /// The batches whose entry is now applied: `(index, term, outputs)`, oldest first.
    pub fn release_through(&mut self, applied: u64) -> Vec<(u64, u64, Vec<Output>)> {
        let mut out = Vec::new();
        while self.batches.front().is_some_and(|b| b.index <= applied) {
            if let Some(b) = self.batches.pop_front() {
                out.push((b.index, b.term, b.outputs));
            }
        }
        out
    }

    /// The term an index was proposed in, if it is held.
    pub fn term_of(&self, index: u64) -> Option<u64> {
        self.batches.iter().find(|b| b.index == index).map(|b| b.term)
    }

    /// Drops everything (the node stopped leading: these outputs must never be sent). Returns how many.
    pub fn drop_all(&mut self) -> usize {
        let n = self.len();
        self.batches.clear();
        n
    }
}
