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
/// How far beyond `MAX_QUEUED` a relayed stream's closing message may go (the transport's reserve).
const NOTICE_RESERVE: usize = 65_536;
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

    /// Sends or queues `message`; false if the queue was full and it was dropped (as the transport's `send`).
    pub fn send(&mut self, now: u64, from: u64, to: u64, message: Bytes, rng: &mut ChaCha8Rng) -> bool {
        self.send_bounded(now, from, to, message, rng, MAX_QUEUED)
    }

    /// A message that ends a relayed stream: queued beyond the bound, as the transport's `send_notice` does.
    pub fn send_notice(&mut self, now: u64, from: u64, to: u64, message: Bytes, rng: &mut ChaCha8Rng) -> bool {
        self.send_bounded(now, from, to, message, rng, MAX_QUEUED + NOTICE_RESERVE)
    }

    fn send_bounded(
        &mut self,
        now: u64,
        from: u64,
        to: u64,
        message: Bytes,
        rng: &mut ChaCha8Rng,
        bound: usize,
    ) -> bool {
        self.sent += 1;
        let delay = rng.gen_range(self.timing.min_delay..=self.timing.max_delay);
        let Some(link) = self.links.get_mut(&(from, to)) else {
            return false;
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
            State::Down { .. } if link.queue.len() >= bound => {
                self.overflowed += 1;
                return false;
            }
            State::Down { .. } => link.queue.push_back(message),
        }
        true
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn links() -> (Links, ChaCha8Rng) {
        let timing = LinkTiming {
            min_delay: 1,
            max_delay: 20,
            observe_max: 50,
        };
        (Links::new(3, timing), ChaCha8Rng::seed_from_u64(7))
    }

    fn drain(links: &mut Links, until: u64) -> Vec<(u64, u64, Bytes)> {
        let mut got = Vec::new();
        for now in 0..=until {
            while let Some(m) = links.next_due(now) {
                got.push(m);
            }
        }
        got
    }

    #[test]
    fn an_unbroken_stream_delivers_everything_once_in_order() {
        let (mut l, mut rng) = links();
        for i in 0..200u32 {
            l.send(u64::from(i / 10), 1, 2, Bytes::from(i.to_be_bytes().to_vec()), &mut rng);
        }
        let got: Vec<u32> = drain(&mut l, 100)
            .into_iter()
            .map(|(from, to, m)| {
                assert_eq!((from, to), (1, 2));
                u32::from_be_bytes([m[0], m[1], m[2], m[3]])
            })
            .collect();
        assert_eq!(
            got,
            (0..200).collect::<Vec<u32>>(),
            "delays of 1-20 ms must not reorder a stream"
        );
    }

    #[test]
    fn a_break_loses_what_was_in_flight_and_the_sender_learns_then_queues_and_redials() {
        let (mut l, mut rng) = links();
        l.send(0, 1, 2, Bytes::from_static(b"in flight"), &mut rng);
        l.send(0, 2, 1, Bytes::from_static(b"other way"), &mut rng);
        l.break_pair(0, 1, 2, 50, &mut rng);
        l.send(0, 1, 2, Bytes::from_static(b"into a dead socket"), &mut rng);
        let mut learned = Vec::new();
        let mut now = 0;
        while learned.len() < 2 {
            now += 1;
            assert!(now <= 50, "each sender learns within observe_max");
            while let Some(seen) = l.next_observation(now) {
                learned.push(seen);
            }
        }
        learned.sort_unstable();
        assert_eq!(learned, vec![(1, 2), (2, 1)], "both ends learn of the break");
        // Known now: queued, and sent on the redialled stream once the peer is reachable.
        l.send(now, 1, 2, Bytes::from_static(b"queued"), &mut rng);
        l.redial(now + 500, &mut rng, |_, _| false);
        assert!(
            drain(&mut l, now + 1_000).is_empty(),
            "nothing passes while unreachable"
        );
        l.redial(now + 2_000, &mut rng, |_, _| true);
        let got: Vec<Bytes> = drain(&mut l, now + 3_000).into_iter().map(|(_, _, m)| m).collect();
        assert_eq!(got, vec![Bytes::from_static(b"queued")]);
        assert_eq!(l.lost, 3);
    }

    #[test]
    fn a_crashed_node_loses_its_queue_and_its_peers_learn_soon() {
        let (mut l, mut rng) = links();
        l.break_pair(0, 1, 3, 50, &mut rng);
        while l.next_observation(60).is_some() {}
        l.send(60, 1, 3, Bytes::from_static(b"queued for 3"), &mut rng);
        l.crashed(60, 1, &mut rng);
        let mut seen = Vec::new();
        for now in 60..=65 {
            while let Some(s) = l.next_observation(now) {
                seen.push(s);
            }
        }
        seen.sort_unstable();
        assert_eq!(
            seen,
            vec![(2, 1)],
            "node 2 learns within a tenth of observe_max; node 1 is gone"
        );
        l.started(100, 1);
        l.redial(100, &mut rng, |_, _| true);
        assert!(
            drain(&mut l, 200).is_empty(),
            "the crashed process's queue died with it"
        );
    }
}
