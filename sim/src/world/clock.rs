//! The broker's clock as the real driver gives it: wall-clock based (the records hold absolute times), steady while
//! the process runs (the driver counts from one wall-clock reading at start with a monotonic clock), and free to
//! have jumped back or forward across a restart (the machine's clock was set while the broker was down).
//!
//! In seeds with `restart_clock_jumps` the broker reads the simulated time plus an offset that changes at every
//! restart. The model follows from what it knows, never asking the broker: a recorded deadline of an interval
//! `secs` stands at `min(deadline - jump, restart + secs)` on the new clock, and the restart records the capped
//! deadline, which later restarts start from once that record is durable (a clock set back cannot stretch an
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
    /// The records of the capped deadlines the last restart wrote (`Broker::restore` records each message whose
    /// deadline it capped again, with the first input's records) are durable: a commit or a snapshot succeeded
    /// since. Until then a crash may leave the recorded deadlines, which the next restart caps afresh.
    pub(super) caps_recorded: bool,
}

impl BrokerClock {
    pub fn new(jumps: bool) -> BrokerClock {
        BrokerClock {
            offset_ms: if jumps { START_OFFSET_MS } else { 0 },
            caps_recorded: false,
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

    /// Before a restarted broker reads its first time (recovery included: it caps retained messages' deadlines as
    /// it reads them): in seeds with jumps, its clock was set back or forward while it was down. The model's
    /// deadlines move with it in [`World::apply_restart_jump`], once recovery has chosen the model.
    pub(super) fn draw_restart_jump(&mut self) -> Option<RestartJump> {
        if !self.opts.restart_clock_jumps {
            return None;
        }
        let caps_recorded = std::mem::take(&mut self.clock.caps_recorded);
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
        Some(RestartJump {
            jump,
            forward,
            caps_recorded,
        })
    }

    /// The model's deadlines move as the restarted broker's must (see [`World::draw_restart_jump`]).
    pub(super) fn apply_restart_jump(&mut self, drawn: Option<RestartJump>) {
        let Some(RestartJump {
            jump,
            forward,
            caps_recorded,
        }) = drawn
        else {
            return;
        };
        // The deadlines the last restart capped are the recorded ones now, if their records are durable
        // [MQTT-3.3.2-5]; otherwise the records may still hold the uncapped ones (a later, more lenient deadline).
        if caps_recorded {
            for info in self.model.messages.values_mut().filter(|m| m.expiry.is_some()) {
                info.uncapped_read_ms = info.last_read_ms;
            }
        }
        let restart = self.now;
        // A deadline `stamp + secs` moves with the clock, capped at a full interval from the restart: the same for
        // the earliest and the latest stamp the broker may have given a message.
        let moved = |stamp: u64| {
            if forward {
                stamp - jump
            } else {
                (stamp + jump).min(restart)
            }
        };
        for info in self.model.messages.values_mut().filter(|m| m.expiry.is_some()) {
            info.expired_before_restart |= info.expired_by(restart);
            info.first_seen_ms = moved(info.first_seen_ms);
            info.earliest_seen_ms = info.earliest_seen_ms.min(info.first_seen_ms);
            // The record's deadline moves with the clock, and this restart caps it (and records the capped one).
            info.uncapped_read_ms = if forward {
                info.uncapped_read_ms - jump
            } else {
                info.uncapped_read_ms + jump
            };
            info.last_read_ms = info.uncapped_read_ms.min(restart);
            // Copies the old broker sent carry its own, later, deadline (see `latest_read_ms`).
            info.latest_read_ms = info.latest_read_ms.max(info.last_read_ms);
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

/// A restart's clock jump: drawn before recovery, applied to the model after it.
pub(super) struct RestartJump {
    jump: u64,
    forward: bool,
    caps_recorded: bool,
}
