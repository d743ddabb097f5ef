//! The commit rule: client outputs that the broker produced after a record wait until the Raft entry carrying that
//! record is committed (on a majority of nodes, each durable), in the order they were produced. It generalises
//! `sync = "always"`, where they wait for the local disk.
//!
//! Outputs with no record of their own ("free" outputs) wait only for what they depend on:
//! - **their connection's order**: a connection's bytes leave in the order the broker produced them, so a free
//!   output for a connection that has output held queues behind it;
//! - **what they could reveal**: a free output must not show a client the effect of a record that is not committed
//!   yet. Records of a session (open, expiry, subscriptions, its queue and in-flight messages) reach other clients
//!   only through that session's own connection, or as outputs produced after the record by the same input (held
//!   with it). A retained message is the exception: a subscriber without a persistent session receives it with no
//!   record of its own. So while a retained-message change is held, every free output queues behind it.
//!
//! Everything else goes at once: one connection's pending record no longer holds every other client's output.
//!
//! Held output is bounded in bytes (`NodeConfig::max_held_bytes`). Beyond the bound, a free or held run of QoS 0
//! PUBLISH packets for a connection is dropped (counted), which QoS 0's "at most once" allows [MQTT-4.3.1];
//! anything else (acknowledgements, QoS 1/2 deliveries, whose number the broker's own limits bound) is kept.

use mqtt_core::broker::{ConnectionId, Output};
use mqtt_core::persist::Record;
use std::collections::{BTreeMap, VecDeque};

/// The index of the batch still collecting records for an entry not yet proposed (see `Held::hold`).
const OPEN: u64 = u64::MAX;

/// Outputs waiting for the commit of entry `index` (of term `term`).
struct Batch {
    index: u64,
    term: u64,
    outputs: Vec<Output>,
    /// The entry changes a retained message: free outputs may not overtake it (see the module documentation).
    barrier: bool,
}

/// Held outputs, oldest entry first. Entry indexes only grow: one leader proposes them in order.
pub struct Held {
    batches: VecDeque<Batch>,
    /// Held outputs per connection, so a free output knows whether its connection waits.
    per_conn: BTreeMap<ConnectionId, usize>,
    /// Held batches that are barriers.
    barriers: usize,
    /// Bytes of held `Transmit`s, and the bound beyond which QoS 0 runs are dropped.
    bytes: usize,
    max_bytes: usize,
    /// QoS 0 PUBLISH packets dropped at the bound, since start.
    dropped_qos0: u64,
}

impl Held {
    pub fn new(max_bytes: usize) -> Held {
        Held {
            batches: VecDeque::new(),
            per_conn: BTreeMap::new(),
            barriers: 0,
            bytes: 0,
            max_bytes,
            dropped_qos0: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Outputs held in all.
    pub fn len(&self) -> usize {
        self.batches.iter().map(|b| b.outputs.len()).sum()
    }

    /// Bytes of held transmits.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// QoS 0 PUBLISH packets dropped because held output reached its byte bound.
    pub fn dropped_qos0(&self) -> u64 {
        self.dropped_qos0
    }

    /// Holds `outputs`, produced after `records`, until the entry that will carry those records commits. The
    /// records of several inputs may go into one entry: they gather in the open batch until `seal`.
    pub fn hold(&mut self, records: &[Record], outputs: Vec<Output>) {
        let barrier = records
            .iter()
            .any(|r| matches!(r, Record::Retain { .. } | Record::RetainClear { .. }));
        let outputs = self.within_bound(outputs);
        for output in &outputs {
            self.count(output);
        }
        match self.batches.back_mut() {
            Some(open) if open.index == OPEN => {
                self.barriers += usize::from(barrier && !open.barrier);
                open.barrier |= barrier;
                open.outputs.extend(outputs);
            }
            _ => {
                self.barriers += usize::from(barrier);
                self.batches.push_back(Batch {
                    index: OPEN,
                    term: 0,
                    outputs,
                    barrier,
                });
            }
        }
    }

    /// The open batch's records were proposed as entry `index` of `term`.
    pub fn seal(&mut self, index: u64, term: u64) {
        let before = self
            .batches
            .len()
            .checked_sub(2)
            .and_then(|i| self.batches.get(i))
            .map(|b| b.index);
        debug_assert!(
            before.map(|b| b < index).unwrap_or(true),
            "entries proposed out of order"
        );
        if let Some(open) = self.batches.back_mut().filter(|b| b.index == OPEN) {
            open.index = index;
            open.term = term;
        }
    }

    /// Takes the open batch's outputs out unsealed (planted bug: released before commit).
    pub fn take_open(&mut self) -> Vec<Output> {
        match self.batches.back().filter(|b| b.index == OPEN) {
            Some(_) => {
                let open = self.batches.pop_back().expect("checked");
                self.barriers -= usize::from(open.barrier);
                for output in &open.outputs {
                    self.uncount(output);
                }
                open.outputs
            }
            None => Vec::new(),
        }
    }

    /// Outputs with no record of their own: those that depend on nothing held are returned, to go at once, in
    /// order; the others queue behind the last held batch (see the module documentation).
    pub fn pass_or_queue(&mut self, outputs: Vec<Output>) -> Vec<Output> {
        if self.batches.is_empty() {
            return outputs;
        }
        let mut free = Vec::new();
        let mut queued = Vec::new();
        for output in outputs {
            let waits = self.barriers > 0 || conn_of(&output).is_some_and(|c| self.per_conn.contains_key(&c));
            if waits {
                // Counted at once, so a later output of the same connection queues behind this one.
                self.count(&output);
                queued.push(output);
            } else {
                free.push(output);
            }
        }
        if !queued.is_empty() {
            let kept = self.within_bound_counted(queued);
            if let Some(last) = self.batches.back_mut() {
                last.outputs.extend(kept);
            }
        }
        free
    }

    /// The batches whose entry is now committed: `(index, term, outputs)`, oldest first.
    pub fn release_through(&mut self, committed: u64) -> Vec<(u64, u64, Vec<Output>)> {
        let mut out = Vec::new();
        while self.batches.front().is_some_and(|b| b.index <= committed) {
            if let Some(b) = self.batches.pop_front() {
                self.barriers -= usize::from(b.barrier);
                for output in &b.outputs {
                    self.uncount(output);
                }
                out.push((b.index, b.term, b.outputs));
            }
        }
        out
    }

    /// The term an index was proposed in, if it is held.
    pub fn term_of(&self, index: u64) -> Option<u64> {
        self.batches.iter().find(|b| b.index == index).map(|b| b.term)
    }

    /// Drops everything (the node stopped leading: these outputs must never be sent). Returns how many, and the
    /// connections whose `Close` was among them: the broker counts those closed already, but their transports are
    /// still open and must be closed all the same (else a client waits forever on a connection no one serves).
    pub fn drop_all(&mut self) -> (usize, Vec<ConnectionId>) {
        let n = self.len();
        let closes = self
            .batches
            .iter()
            .flat_map(|b| &b.outputs)
            .filter_map(|o| match o {
                Output::Close { conn } => Some(*conn),
                _ => None,
            })
            .collect();
        self.batches.clear();
        self.per_conn.clear();
        self.barriers = 0;
        self.bytes = 0;
        (n, closes)
    }

    fn count(&mut self, output: &Output) {
        if let Some(conn) = conn_of(output) {
            *self.per_conn.entry(conn).or_default() += 1;
        }
        if let Output::Transmit { data, .. } = output {
            self.bytes += data.len();
        }
    }

    fn uncount(&mut self, output: &Output) {
        if let Some(conn) = conn_of(output) {
            if let Some(n) = self.per_conn.get_mut(&conn) {
                *n -= 1;
                if *n == 0 {
                    self.per_conn.remove(&conn);
                }
            }
        }
        if let Output::Transmit { data, .. } = output {
            self.bytes -= data.len();
        }
    }

    /// `outputs` (not yet counted) without the QoS 0 runs that would take held output past its bound.
    fn within_bound(&mut self, outputs: Vec<Output>) -> Vec<Output> {
        let incoming: usize = outputs.iter().map(transmit_len).sum();
        if self.bytes + incoming <= self.max_bytes {
            return outputs;
        }
        let mut kept = Vec::with_capacity(outputs.len());
        let mut total = self.bytes;
        for run in transmit_runs(outputs) {
            let len: usize = run.iter().map(transmit_len).sum();
            if total + len > self.max_bytes {
                if let Some(packets) = qos0_publishes(&run) {
                    self.dropped_qos0 += packets;
                    continue;
                }
            }
            total += len;
            kept.extend(run);
        }
        kept
    }

    /// As `within_bound`, for outputs already counted (uncounts what it drops).
    fn within_bound_counted(&mut self, outputs: Vec<Output>) -> Vec<Output> {
        if self.bytes <= self.max_bytes {
            return outputs;
        }
        for output in &outputs {
            self.uncount(output);
        }
        let kept = self.within_bound(outputs);
        for output in &kept {
            self.count(output);
        }
        kept
    }
}

fn conn_of(output: &Output) -> Option<ConnectionId> {
    match output {
        Output::Transmit { conn, .. } | Output::Close { conn } => Some(*conn),
        Output::Persist(_) | Output::Event(_) => None,
    }
}

fn transmit_len(output: &Output) -> usize {
    match output {
        Output::Transmit { data, .. } => data.len(),
        _ => 0,
    }
}

/// Splits outputs into runs: consecutive `Transmit`s of one connection (one flush of its buffer, whole packets
/// together), and every other output alone.
fn transmit_runs(outputs: Vec<Output>) -> Vec<Vec<Output>> {
    let mut runs: Vec<Vec<Output>> = Vec::new();
    for output in outputs {
        let joins = match (&output, runs.last().and_then(|r| r.last())) {
            (Output::Transmit { conn, .. }, Some(Output::Transmit { conn: prev, .. })) => conn == prev,
            _ => false,
        };
        match runs.last_mut() {
            Some(run) if joins => run.push(output),
            _ => runs.push(vec![output]),
        }
    }
    runs
}

/// If `run` is whole MQTT packets that are all QoS 0 PUBLISHes, how many; otherwise `None` (keep it).
fn qos0_publishes(run: &[Output]) -> Option<u64> {
    let mut bytes = Vec::new();
    for output in run {
        match output {
            Output::Transmit { data, .. } => bytes.extend_from_slice(data),
            _ => return None,
        }
    }
    let mut at = 0;
    let mut packets = 0;
    while at < bytes.len() {
        let first = bytes[at];
        // PUBLISH (type 3) with QoS bits 00 [MQTT-3.3.1-4 ff.]
        if first >> 4 != 3 || (first >> 1) & 0b11 != 0 {
            return None;
        }
        let (remaining, used) = remaining_length(&bytes[at + 1..])?;
        at = at.checked_add(1 + used + remaining)?;
        packets += 1;
    }
    (at == bytes.len() && packets > 0).then_some(packets)
}

/// The fixed header's Remaining Length (a variable byte integer of at most 4 bytes) and its size [MQTT-1.5.5].
fn remaining_length(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, byte) in bytes.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests;
