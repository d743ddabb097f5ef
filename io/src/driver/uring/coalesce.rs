//! Coalescing: when many clients each send now and then (the IoT shape: thousands of devices, a packet each every
//! few seconds), the loop waits a short window for their packets to gather instead of waking for each one.
//!
//! Without it every PUBLISH from a quiet device is a wake-up of the loop, a turn of the core and an
//! `io_uring_enter` of its own: on the many-clients row of `bench/io_drivers.sh` (2,000 devices x 8 msg/s) that
//! per-packet turn, not the packet, was most of the broker's CPU. The ring is set up with deferred task work, so
//! the kernel wakes a waiting loop only when as many completions as it asked for are in (or the window ends): a
//! window of 250 µs at 16,000 packets a second turns four wake-ups into one, for at most the window's worth of
//! added latency per packet (BENCHMARKS.md, "Coalescing quiet clients on io_uring").
//!
//! A window would slow a conversation: a client that waits for each answer before sending again (a request and
//! its response, a publisher awaiting each PUBACK) would wait up to a window per round trip. So the loop waits
//! only while most receives come from *cold* connections (nothing received from them for [`HOT`]) and they come
//! often enough that a window gathers at least [`MIN_GATHERED`] of them; a loop serving a few busy connections, or
//! a few quiet ones, never waits. The decision is taken per [`PERIOD`] from the one before.
//!
//! Pure logic, time passed in: the ring asks [`Coalescer::window`] before it waits.

use std::time::{Duration, Instant};

/// How often the decision is taken again (from the receives counted since the last one).
const PERIOD: Duration = Duration::from_millis(20);
/// A connection that received less than this long ago is in a conversation: its receive counts as hot.
pub(super) const HOT: Duration = Duration::from_millis(5);
/// A window must be expected to gather at least this many cold receives to be worth a wait.
const MIN_GATHERED: f64 = 2.0;
/// Cold receives must outnumber hot ones by this factor (a few conversations among many devices do not stop it).
const COLD_PER_HOT: u32 = 4;

#[derive(Debug)]
pub(super) struct Coalescer {
    /// Zero: never wait (`io_coalesce_us = 0`).
    window: Duration,
    period_start: Option<Instant>,
    cold: u32,
    hot: u32,
    /// What the last period decided.
    active: bool,
}

impl Coalescer {
    pub(super) fn new(window: Duration) -> Coalescer {
        Coalescer {
            window,
            period_start: None,
            cold: 0,
            hot: 0,
            active: false,
        }
    }

    /// Count a receive on a connection whose previous receive was at `previous` (`None`: its first).
    pub(super) fn receive(&mut self, now: Instant, previous: Option<Instant>) {
        if previous.is_some_and(|p| now.saturating_duration_since(p) < HOT) {
            self.hot = self.hot.saturating_add(1);
        } else {
            self.cold = self.cold.saturating_add(1);
        }
    }

    /// How long the loop should wait for input to gather before a turn, if at all. Asked only when the turn
    /// before found work (an idle loop blocks until the first completion, as without coalescing).
    pub(super) fn window(&mut self, now: Instant) -> Option<Duration> {
        self.roll(now);
        (self.active && !self.window.is_zero()).then_some(self.window)
    }

    /// Take the decision again once a period has passed: from the rate of cold receives over it.
    fn roll(&mut self, now: Instant) {
        let start = *self.period_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed < PERIOD {
            return;
        }
        let expected_per_window = f64::from(self.cold) * self.window.as_secs_f64() / elapsed.as_secs_f64();
        self.active = expected_per_window >= MIN_GATHERED && self.hot.saturating_mul(COLD_PER_HOT) <= self.cold;
        self.period_start = Some(now);
        self.cold = 0;
        self.hot = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_micros(250);

    /// `per_second` cold receives spread over `span`, starting at `start`; returns the time after them.
    fn cold_receives(c: &mut Coalescer, start: Instant, per_second: u32, span: Duration) -> Instant {
        let count = (f64::from(per_second) * span.as_secs_f64()) as u32;
        let step = span / count.max(1);
        let mut now = start;
        for _ in 0..count {
            c.receive(now, None);
            now += step;
        }
        now
    }

    /// A coalescer that has seen one period of `per_second` cold receives, and the time at its end.
    fn after_a_period_of(per_second: u32) -> (Coalescer, Instant) {
        let mut c = Coalescer::new(WINDOW);
        let t0 = Instant::now();
        c.window(t0);
        let t1 = cold_receives(&mut c, t0, per_second, PERIOD);
        (c, t1)
    }

    #[test]
    fn many_quiet_clients_turn_the_window_on_after_one_period() {
        let mut c = Coalescer::new(WINDOW);
        let t0 = Instant::now();
        assert_eq!(c.window(t0), None, "no decision before a period has been seen");
        let t1 = cold_receives(&mut c, t0, 16_000, PERIOD);
        assert_eq!(
            c.window(t1),
            Some(WINDOW),
            "16,000 cold receives a second gather four per 250 µs window"
        );
    }

    #[test]
    fn a_few_quiet_clients_never_wait() {
        // 4,000 a second gather one per window: a wait would add latency and save nothing.
        let (mut c, t1) = after_a_period_of(4_000);
        assert_eq!(c.window(t1), None);
    }

    #[test]
    fn conversations_turn_it_off() {
        let (mut c, t1) = after_a_period_of(16_000);
        assert_eq!(c.window(t1), Some(WINDOW));
        // The next period: four connections each answering 50 µs after their last receive.
        let mut now = t1;
        for _ in 0..2_000 {
            c.receive(now, Some(now - Duration::from_micros(50)));
            now += Duration::from_micros(10);
        }
        assert_eq!(
            c.window(now),
            None,
            "a client awaiting each answer would wait a window per round trip"
        );
    }

    #[test]
    fn a_few_conversations_among_many_devices_keep_it_on() {
        let (mut c, t1) = after_a_period_of(16_000);
        for _ in 0..50 {
            c.receive(t1, Some(t1 - Duration::from_micros(50)));
        }
        assert_eq!(c.window(t1), Some(WINDOW));
    }

    #[test]
    fn the_decision_lapses_when_the_devices_go_quiet() {
        let (mut c, t1) = after_a_period_of(16_000);
        assert_eq!(c.window(t1), Some(WINDOW));
        // A second of silence, then one packet: the rate over that period is far below the threshold.
        let t2 = t1 + Duration::from_secs(1);
        c.receive(t2, None);
        assert_eq!(c.window(t2), None);
    }

    #[test]
    fn a_zero_window_is_off() {
        let mut c = Coalescer::new(Duration::ZERO);
        let t0 = Instant::now();
        c.window(t0);
        let t1 = cold_receives(&mut c, t0, 100_000, PERIOD);
        assert_eq!(c.window(t1), None);
    }
}
