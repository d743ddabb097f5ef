//! Deadlines, kept in one ordered queue. Entries are checked against the current state when they fire (a keep
//! alive that saw traffic re-arms itself), so nothing has to be cancelled and a stale entry costs one wake-up.

use super::session::SessionKey;
use super::ConnectionId;
use crate::time::Time;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// The connect timeout before CONNACK, the keep alive check after it: one entry per connection serves both,
    /// so a connection costs one heap entry (see `Broker::arm_connection_timer`).
    Connection(ConnectionId),
    SessionExpiry(SessionKey),
    WillDelay(SessionKey),
    /// A held authentication refusal is due.
    Refusal(ConnectionId),
    Sys,
    /// The next slice of a session's retained messages sent on subscribe (see `retained_stream`).
    RetainedStream(SessionKey),
}

/// Below this many entries the queue is never compacted by default (`Config::timer_compaction_min`): a few stale
/// entries cost less than a pass.
pub const COMPACT_MIN: usize = 1024;

pub struct Timers {
    /// (deadline, timer): ties fire in the order of `Timer`, deterministically. 24 bytes an entry, and there is
    /// one per connection.
    heap: BinaryHeap<Reverse<(Time, Timer)>>,
    /// Entries left after the last compaction: the queue is compacted again once it doubles.
    live_after_compaction: usize,
    /// While a Tick fires (`begin_firing`), the time it fires for: entries armed meanwhile for no later than that
    /// wait in `deferred` for the next Tick, so one Tick does bounded work. A timer that kept re-arming itself for
    /// `now` would otherwise never let `handle_input` return; this way it shows as a driver asked to tick again
    /// and again at one instant, which the simulator reports as a stall.
    firing: Option<Time>,
    deferred: Vec<(Time, Timer)>,
    /// Below this many entries the queue is never compacted (see `COMPACT_MIN`).
    compact_min: usize,
}

impl Default for Timers {
    fn default() -> Self {
        Timers::new(COMPACT_MIN)
    }
}

impl Timers {
    pub fn new(compact_min: usize) -> Timers {
        Timers {
            heap: BinaryHeap::new(),
            live_after_compaction: 0,
            firing: None,
            deferred: Vec::new(),
            compact_min,
        }
    }

    pub fn arm(&mut self, deadline: Time, timer: Timer) {
        match self.firing {
            Some(now) if deadline <= now => self.deferred.push((deadline, timer)),
            _ => self.heap.push(Reverse((deadline, timer))),
        }
    }

    /// A Tick at `now` starts firing the entries due (see `firing`).
    pub fn begin_firing(&mut self, now: Time) {
        self.firing = Some(now);
    }

    /// The Tick is done: entries it armed for its own instant are due at the next one.
    pub fn end_firing(&mut self) {
        self.firing = None;
        for (deadline, timer) in self.deferred.drain(..) {
            self.heap.push(Reverse((deadline, timer)));
        }
    }

    /// The next entry, for diagnostics (the simulator names what a stalled run was waiting for).
    pub fn peek(&self) -> Option<(Time, Timer)> {
        self.heap.peek().map(|Reverse(entry)| *entry)
    }

    /// Entries pending, stale ones included (tests, and the broker's footprint).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether enough entries were armed since the last compaction that a pass pays for itself: entries are never
    /// cancelled, and a session that reconnects and disconnects again leaves an expiry entry per disconnect that
    /// may lie far in the future. Doubling keeps the pass amortised O(1) per `arm`.
    pub fn wants_compaction(&self) -> bool {
        self.heap.len() > self.compact_min.max(2 * self.live_after_compaction)
    }

    /// Drops every entry `is_live` says can no longer do anything when it fires, and duplicates (a session that
    /// disconnects twice within one millisecond arms the same deadline twice).
    pub fn compact(&mut self, mut is_live: impl FnMut(Time, Timer) -> bool) {
        let mut entries = std::mem::take(&mut self.heap).into_vec();
        entries.retain(|Reverse((deadline, timer))| is_live(*deadline, *timer));
        entries.sort_unstable();
        entries.dedup();
        entries.shrink_to(entries.len() * 3 / 2);
        self.heap = BinaryHeap::from(entries);
        self.live_after_compaction = self.heap.len();
    }

    pub fn next_deadline(&self) -> Option<Time> {
        self.heap.peek().map(|Reverse((deadline, _))| *deadline)
    }

    /// The next timer due at `now`, removed from the queue.
    pub fn pop_due(&mut self, now: Time) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse((deadline, _))) if *deadline <= now => {
                let timer = self.heap.pop().map(|Reverse((_, timer))| timer);
                // A burst of connects leaves two entries per connection (connect timeout, keep alive) for a while;
                // give the room back once most have fired. Amortised O(1): the heap halved since it last grew.
                if self.heap.capacity() > 1024 && self.heap.len() * 3 < self.heap.capacity() {
                    self.heap.shrink_to(self.heap.len() * 3 / 2);
                }
                timer
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One Tick does bounded work: an entry armed while firing, for the Tick's own instant, is left for the next
    /// Tick (so a timer that keeps re-arming itself for now cannot keep `handle_input` from returning).
    #[test]
    fn an_entry_armed_for_now_while_firing_waits_for_the_next_tick() {
        let mut timers = Timers::default();
        let now = Time::from_millis(100);
        timers.arm(now, Timer::Sys);
        timers.begin_firing(now);
        assert_eq!(timers.pop_due(now), Some(Timer::Sys));
        timers.arm(now, Timer::Sys);
        timers.arm(Time::from_millis(200), Timer::Refusal(ConnectionId(1)));
        assert_eq!(timers.pop_due(now), None, "re-armed for now: not in this Tick");
        timers.end_firing();
        assert_eq!(timers.next_deadline(), Some(now), "due at the next Tick");
        assert_eq!(timers.pop_due(now), Some(Timer::Sys));
        assert_eq!(
            timers.peek(),
            Some((Time::from_millis(200), Timer::Refusal(ConnectionId(1))))
        );
    }
}
