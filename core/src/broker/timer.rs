//! Deadlines, kept in one ordered queue. Entries are checked against the current state when they fire (a keep
//! alive that saw traffic re-arms itself), so nothing has to be cancelled and a stale entry costs one wake-up.

use super::session::SessionKey;
use super::ConnectionId;
use crate::time::Time;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    ConnectTimeout(ConnectionId),
    KeepAlive(ConnectionId),
    SessionExpiry(SessionKey),
    WillDelay(SessionKey),
    /// A held authentication refusal is due.
    Refusal(ConnectionId),
    Sys,
}

#[derive(Default)]
pub struct Timers {
    /// (deadline, arming sequence, timer): the sequence makes ties fire in arming order, deterministically.
    heap: BinaryHeap<Reverse<(Time, u64, Timer)>>,
    sequence: u64,
}

impl Timers {
    pub fn arm(&mut self, deadline: Time, timer: Timer) {
        self.sequence += 1;
        self.heap.push(Reverse((deadline, self.sequence, timer)));
    }

    pub fn next_deadline(&self) -> Option<Time> {
        self.heap.peek().map(|Reverse((deadline, _, _))| *deadline)
    }

    /// The next timer due at `now`, removed from the queue.
    pub fn pop_due(&mut self, now: Time) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse((deadline, _, _))) if *deadline <= now => self.heap.pop().map(|Reverse((_, _, timer))| timer),
            _ => None,
        }
    }
}
