//! The driver's monotonic clock, expressed as the core's [`Time`] (milliseconds since the driver started).

use mqtt_core::time::Time;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock { base: Instant::now() }
    }

    /// Now, in core time. Truncated to the millisecond, so it never runs ahead of the real clock.
    pub fn now(self) -> Time {
        self.time_of(Instant::now())
    }

    pub fn time_of(self, instant: Instant) -> Time {
        let ms = instant.saturating_duration_since(self.base).as_millis();
        Time::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// The instant a core deadline falls at. Far-future deadlines that overflow `Instant` become "in a day", which
    /// is as good as never for a poll timeout and is re-evaluated after every wake-up anyway.
    pub fn instant_of(self, time: Time) -> Instant {
        self.base
            .checked_add(Duration::from_millis(time.as_millis()))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_and_instant_convert_both_ways() {
        let clock = Clock::start();
        let t = Time::from_millis(1500);
        let i = clock.instant_of(t);
        assert_eq!(clock.time_of(i), t);
        assert!(clock.now() < Time::from_millis(60_000));
        // Deadlines far in the future do not panic.
        let _ = clock.instant_of(Time::from_millis(u64::MAX));
    }
}
