//! The broker's clock as the real driver gives it: wall-clock based (the records hold absolute times), steady while
//! the process runs (the driver counts from one wall-clock reading at start with a monotonic clock), and free to
//! have jumped back or forward across a restart (the machine's clock was set while the broker was down).
//!
//! In seeds with `restart_clock_jumps` the broker reads the simulated time plus an offset that changes at every
//! restart. The model follows from what it knows, never asking the broker: a recorded deadline of an interval
//! `secs` stands at `min(deadline - jump, restart + secs)` on the new clock (a clock set back cannot stretch an
//! interval beyond a full one from the restart; one set forward cannot be told from time that passed)
//! [MQTT-3.3.2-5], [MQTT-3.1.3-9]. For messages that is exact; a delayed will only moves earlier on a forward jump
//! (the model's check is "not before it is due", and a will is owed across a restart by no check).

use super::*;
use crate::coverage::Feature;

/// Where the broker's clock starts in seeds with jumps: far enough from zero that a jump back stays positive.
const START_OFFSET_MS: u64 = 3_600_000;
/// The sizes of a jump: across an interval boundary (the sim's message expiries are 1-9 s) and well past one.
const JUMPS_MS: [u64; 4] = [500, 2_000, 5_000, 20_000];

/// The offset of the broker's clock from the simulated time.
#[derive(Debug, Default)]
pub struct BrokerClock {
    offset_ms: u64,
}

impl BrokerClock {
    pub fn new(jumps: bool) -> BrokerClock {
        BrokerClock {
            offset_ms: if jumps { START_OFFSET_MS } else { 0 },
        }
    }
}

impl World {
    /// The time the broker reads now.
    pub(super) fn broker_now(&self) -> Time {
        Time::from_millis(self.now + self.clock.offset_ms)
    }

    /// Whether the broker's timer at `at` (its clock) is due now.
    pub(super) fn broker_due(&self, at: Time) -> bool {
        at.as_millis() <= self.now + self.clock.offset_ms
    }

    /// Before a restarted broker reads its first time: in seeds with jumps, its clock was set back or forward
    /// while it was down, and the model's deadlines move as the broker's must.
    pub(super) fn jump_clock_on_restart(&mut self) {
        if !self.opts.restart_clock_jumps {
            return;
        }
        let size = JUMPS_MS[self.rng.gen_range(0..JUMPS_MS.len())];
        let forward = self.rng.gen_bool(0.5);
        // A message first seen at `first_seen_ms` is `size` older on the new clock; the model's times are
        // simulated milliseconds, which a forward jump must not take below zero.
        let earliest = self
            .model
            .messages
            .values()
            .filter(|m| m.expiry.is_some())
            .map(|m| m.first_seen_ms)
            .min()
            .unwrap_or(self.now);
        let jump = if forward {
            size.min(earliest)
        } else {
            size.min(self.clock.offset_ms)
        };
        if forward {
            self.clock.offset_ms += jump;
            self.coverage.hit(Feature::RestartClockForward);
        } else {
            self.clock.offset_ms -= jump;
            self.coverage.hit(Feature::RestartClockBack);
        }
        self.log(format!(
            "the broker's clock was set {} {jump}ms while it was down",
            if forward { "forward" } else { "back" }
        ));
        let restart = self.now;
        for info in self.model.messages.values_mut().filter(|m| m.expiry.is_some()) {
            // The deadline `first_seen + secs` moves with the clock, capped at a full interval from the restart.
            info.first_seen_ms = if forward {
                info.first_seen_ms - jump
            } else {
                (info.first_seen_ms + jump).min(restart)
            };
            info.earliest_seen_ms = info.earliest_seen_ms.min(info.first_seen_ms);
        }
        if forward {
            for state in self.model.wills.values_mut() {
                if let WillState::Delayed { due_at } = state {
                    *due_at = due_at.saturating_sub(jump);
                }
            }
            self.delayed_wills.clock_set_forward(jump);
        }
    }
}
