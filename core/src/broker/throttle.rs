//! Slowing down password guessing: each failed authentication from an IP address delays the refusing CONNACK of
//! the next failure from that address a little longer (doubling from a base, capped). The delay is a core timer,
//! so the event loop never sleeps and the behaviour is deterministic. A success from the address, or a quiet
//! period, forgets its failures.

use crate::time::Time;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// Addresses remembered at most; beyond this the oldest records go first, so a flood of addresses costs bounded
/// memory (and loses only the slow-down for the addresses forgotten).
const MAX_TRACKED: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Time,
}

#[derive(Debug, Default)]
pub struct AuthThrottle {
    by_ip: BTreeMap<IpAddr, Failures>,
}

impl AuthThrottle {
    /// Records a failure from `ip` and returns how long to hold its refusal: nothing for the first failure, then
    /// `base`, `2 * base`, ... up to `max`. Failures older than `forget_after` no longer count.
    pub fn record_failure(&mut self, ip: IpAddr, now: Time, base: Duration, max: Duration) -> Duration {
        let forget_after = max.saturating_mul(4).max(Duration::from_secs(60));
        let previous = match self.by_ip.get(&ip) {
            Some(f) if now.saturating_sub(f.last) < forget_after => f.count,
            _ => 0,
        };
        if !self.by_ip.contains_key(&ip) && self.by_ip.len() >= MAX_TRACKED {
            self.evict_oldest();
        }
        let count = previous.saturating_add(1);
        self.by_ip.insert(ip, Failures { count, last: now });
        if previous == 0 || base.is_zero() {
            return Duration::ZERO;
        }
        let doublings = (previous - 1).min(20);
        base.saturating_mul(1u32 << doublings).min(max)
    }

    /// A client from `ip` authenticated: it is not guessing.
    pub fn record_success(&mut self, ip: IpAddr) {
        self.by_ip.remove(&ip);
    }

    /// Addresses with failures remembered.
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    fn evict_oldest(&mut self) {
        let oldest = self.by_ip.iter().min_by_key(|(_, f)| f.last).map(|(ip, _)| *ip);
        if let Some(ip) = oldest {
            self.by_ip.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(4);

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn delay_doubles_per_failure_up_to_the_cap() {
        let mut throttle = AuthThrottle::default();
        let delays: Vec<u64> = (0..7)
            .map(|_| throttle.record_failure(ip(1), Time::ZERO, BASE, MAX).as_millis() as u64)
            .collect();
        assert_eq!(delays, [0, 500, 1000, 2000, 4000, 4000, 4000]);
        // Another address is not affected.
        assert_eq!(throttle.record_failure(ip(2), Time::ZERO, BASE, MAX), Duration::ZERO);
    }

    #[test]
    fn success_or_quiet_period_forgets_failures() {
        let mut throttle = AuthThrottle::default();
        throttle.record_failure(ip(1), Time::ZERO, BASE, MAX);
        throttle.record_failure(ip(1), Time::ZERO, BASE, MAX);
        throttle.record_success(ip(1));
        assert_eq!(throttle.record_failure(ip(1), Time::ZERO, BASE, MAX), Duration::ZERO);
        let later = Time::ZERO + Duration::from_secs(3600);
        assert_eq!(throttle.record_failure(ip(1), later, BASE, MAX), Duration::ZERO);
    }

    #[test]
    fn tracked_addresses_are_bounded() {
        let mut throttle = AuthThrottle::default();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            let addr = IpAddr::from(i.to_be_bytes());
            throttle.record_failure(addr, Time::ZERO + Duration::from_millis(u64::from(i)), BASE, MAX);
        }
        assert_eq!(throttle.by_ip.len(), MAX_TRACKED);
    }
}
