//! Node-to-node connections as the binary has them (`io/src/cluster/transport.rs`): each node dials every other
//! and sends on the connection it dialled, so each directed pair is one TCP stream. While a stream is up it
//! delivers in order, without loss or duplication. A crash, a restart or a partition breaks both streams of a pair:
//! whatever was in flight is lost, and each sender learns of the break at a seeded moment later (a reset at once,
//! a timeout after a while); until then what it writes goes into a dead socket and is lost too. Once it knows, it
//! queues (bounded, as the transport does) and redials with back-off; the queue goes out in order on the new
//! stream. A sender learning of the break is the node's `NodeInput::PeerUnreachable`.

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};

/// Messages queued for a peer whose stream is down, at most (`transport::MAX_QUEUED_MESSAGES`).
const MAX_QUEUED: usize = 4096;
/// Redial back-off bounds, ms: the transport's 50 ms to 2 s, scaled like the simulator's ticks (10 ms, not 100).
const BACKOFF_MIN: u64 = 5;
const BACKOFF_MAX: u64 = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Up,
    /// Broken; the sender does not know yet (it learns at the scheduled observation).
    Broken,
    /// Broken and known: messages queue; the sender redials at `retry_at`.
    Down {
        retry_at: u64,
        backoff: u64,
    },
}

struct Link {
    state: State,
    /// Bumped at every break: messages in flight on an older stream are lost.
    stream: u64,
    /// Delivery time of the last message sent on the current stream (delivery is in order).
    last_at: u64,
    queue: VecDeque<Bytes>,
}

/// Delay and break-observation timing of the links.
#[derive(Debug, Clone, Copy)]
pub struct LinkTiming {
    pub min_delay: u64,
    pub max_delay: u64,
    /// How late a sender learns of a break at most, ms (a crashed peer's reset: at most a tenth of it).
    pub observe_max: u64,
}

pub struct Links {
    pub timing: LinkTiming,
    links: BTreeMap<(u64, u64), Link>,
    /// Messages in flight by (delivery time, sequence): (from, to, stream, message).
    in_flight: BTreeMap<(u64, u64), (u64, u64, u64, Bytes)>,
    /// Break observations due, by (time, sequence): (sender, peer, stream broken).
    observations: BTreeMap<(u64, u64), (u64, u64, u64)>,
    seq: u64,
    pub sent: u64,
    pub lost: u64,
    pub breaks: u64,
    pub reconnects: u64,
    pub overflowed: u64,
}

impl Links {
    /// Every stream between the `nodes` nodes (ids 1..=nodes) up.
    pub fn new(nodes: u64, timing: LinkTiming) -> Links {
        let mut links = BTreeMap::new();
        for a in 1..=nodes {
            for b in (1..=nodes).filter(|b| *b != a) {
                let link = Link {
                    state: State::Up,
                    stream: 0,
                    last_at: 0,
                    queue: VecDeque::new(),
                };
                links.insert((a, b), link);
            }
        }
        Links {
            timing,
            links,
            in_flight: BTreeMap::new(),
            observations: BTreeMap::new(),
            seq: 0,
            sent: 0,
            lost: 0,
            breaks: 0,
            reconnects: 0,
            overflowed: 0,
        }
    }

    pub fn send(&mut self, now: u64, from: u64, to: u64, message: Bytes, rng: &mut ChaCha8Rng) {
        self.sent += 1;
        let delay = rng.gen_range(self.timing.min_delay..=self.timing.max_delay);
        let Some(link) = self.links.get_mut(&(from, to)) else {
            return;
        };
        match link.state {
            State::Up => {
                let at = (now + delay).max(link.last_at);
                link.last_at = at;
                self.seq += 1;
                self.in_flight.insert((at, self.seq), (from, to, link.stream, message));
            }
            // Written into a socket that is already dead.
            State::Broken => self.lost += 1,
            State::Down { .. } if link.queue.len() >= MAX_QUEUED => self.overflowed += 1,
            State::Down { .. } => link.queue.push_back(message),
        }
    }

    /// The next message due at or before `now` on a stream that is still the one it was sent on.
    pub fn next_due(&mut self, now: u64) -> Option<(u64, u64, Bytes)> {
        loop {
            let (&key, _) = self.in_flight.iter().next().filter(|((at, _), _)| *at <= now)?;
            let (from, to, stream, message) = self.in_flight.remove(&key)?;
            if self.links.get(&(from, to)).is_some_and(|l| l.stream == stream) {
                return Some((from, to, message));
            }
            self.lost += 1;
        }
    }

    /// Breaks both streams between `a` and `b` (those up); each sender learns within `observe_max` ms.
    pub fn break_pair(&mut self, now: u64, a: u64, b: u64, observe_max: u64, rng: &mut ChaCha8Rng) {
        for (from, to) in [(a, b), (b, a)] {
            let Some(link) = self.links.get_mut(&(from, to)) else {
                continue;
            };
            if link.state != State::Up {
                continue;
            }
            link.state = State::Broken;
            link.stream += 1;
            self.breaks += 1;
            let at = now + rng.gen_range(1..=observe_max.max(1));
            self.seq += 1;
            self.observations.insert((at, self.seq), (from, to, link.stream));
        }
    }

    /// A node crashed: its streams break (its peers learn soon: the peer's kernel resets them), and what it had
    /// queued dies with it.
    pub fn crashed(&mut self, now: u64, node: u64, rng: &mut ChaCha8Rng) {
        let peers: Vec<u64> = self.links.keys().filter(|(a, _)| *a == node).map(|(_, b)| *b).collect();
        let observe = (self.timing.observe_max / 10).max(1);
        for peer in peers {
            self.break_pair(now, node, peer, observe, rng);
            if let Some(link) = self.links.get_mut(&(node, peer)) {
                link.queue.clear();
                // Its own observation is moot: the restarted process starts with no streams and dials.
                link.state = State::Down {
                    retry_at: u64::MAX,
                    backoff: BACKOFF_MIN,
                };
            }
        }
    }

    /// A node (re)started: it dials every peer now.
    pub fn started(&mut self, now: u64, node: u64) {
        for ((a, _), link) in self.links.iter_mut() {
            if *a == node {
                link.state = State::Down {
                    retry_at: now,
                    backoff: BACKOFF_MIN,
                };
            }
        }
    }

    /// The next sender due to learn that its stream to a peer broke: (sender, peer).
    pub fn next_observation(&mut self, now: u64) -> Option<(u64, u64)> {
        loop {
            let (&key, _) = self.observations.iter().next().filter(|((at, _), _)| *at <= now)?;
            let (from, to, stream) = self.observations.remove(&key)?;
            let Some(link) = self.links.get_mut(&(from, to)) else {
                continue;
            };
            // Moot if the sender crashed since (its restart reset the link).
            if link.stream != stream || link.state != State::Broken {
                continue;
            }
            link.state = State::Down {
                retry_at: now + BACKOFF_MIN,
                backoff: BACKOFF_MIN,
            };
            return Some((from, to));
        }
    }

    /// Redials the streams whose back-off ended: up if `reachable(from, to)` (both nodes up, no cut either way;
    /// TCP needs both directions), with the queue sent first, in order; else the back-off doubles.
    pub fn redial(&mut self, now: u64, rng: &mut ChaCha8Rng, reachable: impl Fn(u64, u64) -> bool) {
        for (&(from, to), link) in self.links.iter_mut() {
            let State::Down { retry_at, backoff } = link.state else {
                continue;
            };
            if retry_at > now {
                continue;
            }
            if !reachable(from, to) {
                let backoff = (backoff * 2).min(BACKOFF_MAX);
                link.state = State::Down {
                    retry_at: now + backoff,
                    backoff,
                };
                continue;
            }
            link.state = State::Up;
            self.reconnects += 1;
            // The connect's round trip, then the queued messages in order.
            let at = now + rng.gen_range(self.timing.min_delay..=self.timing.max_delay);
            for message in link.queue.drain(..) {
                self.seq += 1;
                self.in_flight.insert((at, self.seq), (from, to, link.stream, message));
            }
            link.last_at = at;
        }
    }
}
