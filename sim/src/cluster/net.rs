//! The datagram network for Raft messages in seeds without `raft_on_links`: per-message delay (so reordering),
//! loss and duplication. Partitions live here for both models, as a set of cut directed links (symmetric or
//! one-way); `links` breaks the streams of every pair cut either way. Client connections are not on it: clients
//! speak TCP to one node and see a connection close when that node crashes or closes it.

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

/// How the network misbehaves in the fault phase.
#[derive(Debug, Clone, Copy)]
pub struct NetFaults {
    /// Per mille of messages lost.
    pub loss: u32,
    /// Per mille of messages delivered twice.
    pub duplicate: u32,
    /// Delivery delay bounds, ms.
    pub min_delay: u64,
    pub max_delay: u64,
}

impl NetFaults {
    /// The healed network of the liveness phase: no loss, no duplicates, short delays.
    pub const CALM: NetFaults = NetFaults {
        loss: 0,
        duplicate: 0,
        min_delay: 1,
        max_delay: 3,
    };
}

pub struct Net {
    pub faults: NetFaults,
    /// Directed links that drop everything: (from, to).
    cut: BTreeSet<(u64, u64)>,
    /// Messages in flight by (delivery time, sequence).
    in_flight: BTreeMap<(u64, u64), (u64, u64, Bytes)>,
    seq: u64,
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
}

impl Net {
    pub fn new(faults: NetFaults) -> Net {
        Net {
            faults,
            cut: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            seq: 0,
            sent: 0,
            lost: 0,
            duplicated: 0,
        }
    }

    pub fn send(&mut self, now: u64, from: u64, to: u64, message: Bytes, rng: &mut ChaCha8Rng) {
        self.sent += 1;
        if self.cut.contains(&(from, to)) || rng.gen_range(0..1000) < self.faults.loss {
            self.lost += 1;
            return;
        }
        let copies = if rng.gen_range(0..1000) < self.faults.duplicate {
            self.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = now + rng.gen_range(self.faults.min_delay..=self.faults.max_delay);
            self.seq += 1;
            self.in_flight.insert((at, self.seq), (from, to, message.clone()));
        }
    }

    /// The next message due at or before `now`, if any. A link cut while the message was in flight drops it.
    pub fn next_due(&mut self, now: u64) -> Option<(u64, u64, Bytes)> {
        loop {
            let (&key, _) = self.in_flight.iter().next().filter(|((at, _), _)| *at <= now)?;
            let (from, to, message) = self.in_flight.remove(&key)?;
            if self.cut.contains(&(from, to)) {
                self.lost += 1;
                continue;
            }
            return Some((from, to, message));
        }
    }

    pub fn cut(&mut self, from: u64, to: u64) {
        self.cut.insert((from, to));
    }

    /// Cuts every link between the two groups (both ways).
    pub fn split(&mut self, a: &[u64], b: &[u64]) {
        for x in a {
            for y in b {
                self.cut.insert((*x, *y));
                self.cut.insert((*y, *x));
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Messages dropped for a node that crashed (its sockets are gone).
    pub fn drop_to(&mut self, node: u64) {
        self.in_flight.retain(|_, (_, to, _)| *to != node);
    }
}

impl Net {
    /// Whether the directed link `from -> to` is cut by a partition now.
    pub fn is_cut(&self, from: u64, to: u64) -> bool {
        self.cut.contains(&(from, to))
    }
}
