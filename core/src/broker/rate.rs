//! Token buckets: a connection's publish rate (messages and payload bytes per second) and the refill of an
//! address's connect-rate bucket. Pure arithmetic on `Time`, kept apart from the quota policy (`quota`) that decides
//! what a verdict means, so the connection's state can hold a limiter without depending on that policy.

use crate::time::Time;

/// A connection whose refused PUBLISHes exceed this many seconds' worth of its allowed rate is disconnected.
const FLOOD_SECONDS: i128 = 10;

/// Token counts are kept in thousandths, so that a rate in tokens per second refills a whole number per ms.
pub(super) const MILLI: i128 = 1000;

/// Refill of a bucket of `rate` tokens per second (capacity one second's worth) over the time since `updated`.
pub(super) fn refill(tokens: i128, updated: Time, now: Time, rate: u64) -> i128 {
    let elapsed = i128::from(now.saturating_sub(updated).as_millis().min(u128::from(u64::MAX)) as u64);
    let capacity = i128::from(rate) * MILLI;
    (tokens + elapsed * i128::from(rate)).min(capacity)
}

/// One dimension (messages or bytes) of a connection's publish rate.
#[derive(Debug, Clone, Copy, Default)]
struct RateDimension {
    /// Thousandths of tokens; may go negative (a message larger than a second's worth of bytes passes once the
    /// bucket has refilled, and the debt is paid back before the next).
    tokens: i128,
    /// Refused cost not yet drained, in thousandths.
    excess: i128,
}

impl RateDimension {
    fn advance(&mut self, elapsed_ms: i128, rate: u64) {
        let gained = elapsed_ms * i128::from(rate);
        self.tokens = (self.tokens + gained).min(i128::from(rate) * MILLI);
        self.excess = (self.excess - gained).max(0);
    }
}

/// The publish-rate limiter of one connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublishLimiter {
    /// When the buckets were last brought up to date; `None` before the first PUBLISH (buckets full).
    updated: Option<Time>,
    messages: RateDimension,
    bytes: RateDimension,
}

/// What the publish rate says about one PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RateVerdict {
    Pass,
    Refuse,
    Flood,
}

impl PublishLimiter {
    #[cfg(test)]
    fn check(&mut self, now: Time, message_rate: u64, byte_rate: u64, bytes: usize) -> RateVerdict {
        self.check_refill(now, message_rate, byte_rate, bytes, false)
    }

    /// `whole_seconds` is the planted bug `PublishRateRefillWholeSeconds` (always `false` otherwise).
    pub(super) fn check_refill(
        &mut self,
        now: Time,
        message_rate: u64,
        byte_rate: u64,
        bytes: usize,
        whole_seconds: bool,
    ) -> RateVerdict {
        if message_rate == 0 && byte_rate == 0 {
            return RateVerdict::Pass;
        }
        match self.updated {
            None => {
                self.messages.tokens = i128::from(message_rate) * MILLI;
                self.bytes.tokens = i128::from(byte_rate) * MILLI;
            }
            Some(updated) => {
                let mut elapsed = i128::from(now.saturating_sub(updated).as_millis().min(u128::from(u64::MAX)) as u64);
                if whole_seconds {
                    elapsed = elapsed / 1000 * 1000;
                }
                self.messages.advance(elapsed, message_rate);
                self.bytes.advance(elapsed, byte_rate);
            }
        }
        self.updated = Some(now);
        let byte_cost = i128::try_from(bytes).unwrap_or(i128::MAX / 4) * MILLI;
        let messages_ok = message_rate == 0 || self.messages.tokens > 0;
        let bytes_ok = byte_rate == 0 || self.bytes.tokens > 0;
        if messages_ok && bytes_ok {
            self.messages.tokens -= MILLI;
            self.bytes.tokens -= byte_cost;
            return RateVerdict::Pass;
        }
        let mut flood = false;
        if !messages_ok {
            self.messages.excess += MILLI;
            flood |= self.messages.excess > FLOOD_SECONDS * i128::from(message_rate) * MILLI;
        }
        if !bytes_ok {
            self.bytes.excess += byte_cost;
            flood |= self.bytes.excess > FLOOD_SECONDS * i128::from(byte_rate) * MILLI;
        }
        if flood {
            RateVerdict::Flood
        } else {
            RateVerdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_allows_a_second_worth_then_refuses_then_refills() {
        let mut limiter = PublishLimiter::default();
        let t0 = Time::ZERO;
        let passed = (0..20)
            .filter(|_| limiter.check(t0, 10, 0, 1) == RateVerdict::Pass)
            .count();
        assert_eq!(passed, 10);
        // 100 ms later one more token has come back.
        let t1 = Time::from_millis(100);
        assert_eq!(limiter.check(t1, 10, 0, 1), RateVerdict::Pass);
        assert_eq!(limiter.check(t1, 10, 0, 1), RateVerdict::Refuse);
    }

    #[test]
    fn limiter_lets_a_large_message_through_then_pays_the_debt() {
        let mut limiter = PublishLimiter::default();
        assert_eq!(limiter.check(Time::ZERO, 0, 100, 1000), RateVerdict::Pass);
        // 1000 bytes at 100 bytes/s: nothing more for ten seconds.
        assert_eq!(limiter.check(Time::from_millis(9_000), 0, 100, 1), RateVerdict::Refuse);
        assert_eq!(limiter.check(Time::from_millis(10_001), 0, 100, 1), RateVerdict::Pass);
    }

    #[test]
    fn a_sustained_flood_is_reported_after_ten_seconds_worth_of_excess() {
        let mut limiter = PublishLimiter::default();
        let verdicts: Vec<RateVerdict> = (0..10 + 100 + 1).map(|_| limiter.check(Time::ZERO, 10, 0, 1)).collect();
        assert!(verdicts[..110].iter().all(|v| *v != RateVerdict::Flood));
        assert_eq!(verdicts[110], RateVerdict::Flood);
    }

    #[test]
    fn twice_the_rate_is_limited_but_never_a_flood() {
        let mut limiter = PublishLimiter::default();
        let mut passed = 0;
        for ms in (0..60_000).step_by(50) {
            match limiter.check(Time::from_millis(ms), 10, 0, 1) {
                RateVerdict::Pass => passed += 1,
                RateVerdict::Refuse => {}
                RateVerdict::Flood => panic!("flagged as a flood at {ms} ms"),
            }
        }
        // 60 s at 10/s plus the initial second's burst.
        assert!((600..=611).contains(&passed), "{passed}");
    }
}
