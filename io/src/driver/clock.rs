//! The driver's monotonic clock, expressed as the core's [`Time`]: milliseconds since the Unix epoch as read once at
//! start, then advanced by the monotonic clock. Times the core persists (session offline since, will deadlines,
//! message expiry) therefore still mean the same after a restart.

use mqtt_core::time::Time;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    /// Core time at `base`.
    base_ms: u64,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            base: Instant::now(),
            base_ms: wall_clock_now().as_millis(),
        }
    }

    /// The monotonic clock's now. The driver reads it once per loop turn (`Driver::now`) and decides by that.
    pub fn instant(self) -> Instant {
        Instant::now()
    }

    /// `instant` in core time: the driver passes its turn's clock read (`Driver::now`), so every input of a turn
    /// carries the same time. Truncated to the millisecond, so it never runs ahead of the real clock.
    pub fn time_of(self, instant: Instant) -> Time {
        let ms = instant.saturating_duration_since(self.base).as_millis();
        Time::from_millis(self.base_ms.saturating_add(u64::try_from(ms).unwrap_or(u64::MAX)))
    }

    /// The instant a core deadline falls at. Far-future deadlines that overflow `Instant` become "a day after
    /// `now`", which is as good as never for a poll timeout and is re-evaluated after every wake-up anyway.
    pub fn instant_of(self, time: Time, now: Instant) -> Instant {
        self.base
            .checked_add(Duration::from_millis(time.as_millis().saturating_sub(self.base_ms)))
            .unwrap_or(now + Duration::from_secs(86_400))
    }
}

/// Wall-clock now as core time (milliseconds since the Unix epoch).
pub fn wall_clock_now() -> Time {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Time::from_millis(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_and_instant_convert_both_ways() {
        let clock = Clock::start();
        let now = clock.instant();
        let t = clock.time_of(now) + Duration::from_millis(1500);
        let i = clock.instant_of(t, now);
        assert_eq!(clock.time_of(i), t);
        assert!(clock.time_of(clock.instant()) >= wall_clock_now());
        assert!(clock.time_of(now) < wall_clock_now() + Duration::from_secs(60));
        // Deadlines far in the future do not panic, and are not in the past.
        assert!(clock.instant_of(Time::from_millis(u64::MAX), now) > now);
    }
}
