//! What the driver decides by time, as small sans-IO types: the time comes in as `now` (the loop turn's one clock
//! read, `Driver::now`), so tests run them on a virtual clock and nothing here reads a clock or sleeps.

use std::time::{Duration, Instant};

/// "Not again before": a pause of a fixed length after a failure, so that retrying does not spin on the same error.
/// The accept back-off (out of file descriptors) and the storage retry (data directory not writable) are one each.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    period: Duration,
    until: Option<Instant>,
}

impl Backoff {
    pub const fn new(period: Duration) -> Backoff {
        Backoff { period, until: None }
    }

    /// The attempt at `now` failed: the next one waits a period from `now` (a later failure starts a new period).
    pub fn pause(&mut self, now: Instant) {
        self.until = Some(now + self.period);
    }

    /// Whether an attempt may be made at `now`: not paused, or the pause is over.
    pub fn ready(&self, now: Instant) -> bool {
        self.until.is_none_or(|until| now >= until)
    }

    /// Ends a pause that is over at `now`; true when it did, so whoever it held back looks again (an
    /// edge-triggered listener reports nothing new for connections that queued up during the pause).
    pub fn expire(&mut self, now: Instant) -> bool {
        let over = self.until.is_some_and(|until| now >= until);
        if over {
            self.until = None;
        }
        over
    }

    /// Attempts may be made again at once (they succeeded, or there is nothing left to attempt).
    pub fn clear(&mut self) {
        self.until = None;
    }

    /// When the loop must wake to end the pause, if paused.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.until
    }
}

/// How long the loop may wait for I/O at `now` before the earliest of `deadlines` is due: `None` (wait until an
/// event) when nothing is, zero when one is due already.
pub fn wait_timeout(now: Instant, deadlines: impl IntoIterator<Item = Option<Instant>>) -> Option<Duration> {
    deadlines
        .into_iter()
        .flatten()
        .min()
        .map(|due| due.saturating_duration_since(now))
}

/// The deadline of a connection closed at `now`: `timeout` to write what it has queued, but never past the
/// shutdown's deadline, so that a shutdown ends when it said it would.
pub fn close_deadline(now: Instant, timeout: Duration, shutdown: Option<Instant>) -> Instant {
    let deadline = now + timeout;
    shutdown.map_or(deadline, |d| d.min(deadline))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_millis(100);

    /// A virtual clock: one real reading, then only arithmetic.
    fn origin() -> Instant {
        Instant::now()
    }

    #[test]
    fn a_backoff_is_ready_until_paused_and_again_once_its_period_has_passed() {
        let t0 = origin();
        let mut backoff = Backoff::new(PERIOD);
        assert!(backoff.ready(t0));
        assert_eq!(backoff.next_deadline(), None);
        backoff.pause(t0);
        assert!(!backoff.ready(t0));
        assert!(!backoff.ready(t0 + PERIOD - Duration::from_millis(1)));
        assert!(backoff.ready(t0 + PERIOD));
        assert_eq!(backoff.next_deadline(), Some(t0 + PERIOD));
    }

    #[test]
    fn a_failure_during_or_after_a_pause_starts_a_new_period_from_its_own_time() {
        let t0 = origin();
        let mut backoff = Backoff::new(PERIOD);
        backoff.pause(t0);
        // The storage retry fails again at its due time: the next try is a full period later, not at once.
        let retry = t0 + PERIOD + Duration::from_millis(30);
        backoff.pause(retry);
        assert!(!backoff.ready(t0 + PERIOD * 2));
        assert!(backoff.ready(retry + PERIOD));
        assert_eq!(backoff.next_deadline(), Some(retry + PERIOD));
    }

    #[test]
    fn expire_ends_a_pause_exactly_once_and_only_when_it_is_over() {
        let t0 = origin();
        let mut backoff = Backoff::new(PERIOD);
        assert!(!backoff.expire(t0), "not paused: nothing held back to look at again");
        backoff.pause(t0);
        assert!(!backoff.expire(t0 + PERIOD / 2));
        assert_eq!(backoff.next_deadline(), Some(t0 + PERIOD));
        assert!(backoff.expire(t0 + PERIOD));
        assert!(
            !backoff.expire(t0 + PERIOD * 2),
            "the listeners were looked at once already"
        );
        assert_eq!(backoff.next_deadline(), None);
        assert!(backoff.ready(t0 + PERIOD));
    }

    #[test]
    fn clear_makes_a_paused_backoff_ready_at_once() {
        let t0 = origin();
        let mut backoff = Backoff::new(Duration::from_secs(1));
        backoff.pause(t0);
        backoff.clear();
        assert!(backoff.ready(t0));
        assert_eq!(backoff.next_deadline(), None);
    }

    #[test]
    fn the_wait_ends_at_the_earliest_deadline_and_never_without_one() {
        let t0 = origin();
        let ms = Duration::from_millis;
        assert_eq!(wait_timeout(t0, [None, None]), None);
        assert_eq!(
            wait_timeout(t0, [Some(t0 + ms(500)), None, Some(t0 + ms(100)), Some(t0 + ms(2000))]),
            Some(ms(100))
        );
        // A storage retry scheduled first and an accept back-off paused later: the storage retry is the earlier.
        let mut storage = Backoff::new(Duration::from_secs(1));
        storage.pause(t0);
        let mut accept = Backoff::new(PERIOD);
        accept.pause(t0 + ms(950));
        let both = [accept.next_deadline(), storage.next_deadline()];
        assert_eq!(wait_timeout(t0 + ms(950), both), Some(ms(50)));
        // Both fell due while the loop was busy: no wait at all.
        assert_eq!(
            wait_timeout(t0 + ms(1200), both),
            Some(Duration::ZERO),
            "a deadline in the past is due now, not in a negative or huge time"
        );
    }

    #[test]
    fn a_close_deadline_never_outlives_the_shutdown_deadline() {
        let t0 = origin();
        let timeout = Duration::from_secs(5);
        assert_eq!(close_deadline(t0, timeout, None), t0 + timeout);
        let shutdown = t0 + Duration::from_secs(2);
        assert_eq!(close_deadline(t0, timeout, Some(shutdown)), shutdown);
        let late = t0 + Duration::from_secs(60);
        assert_eq!(close_deadline(t0, timeout, Some(late)), t0 + timeout);
    }
}
