//! Messages with a Message Expiry Interval in the liveness check. The end-of-run check excuses a message that the
//! model's clock says has expired, and by then, seconds later, most have; so they are also checked at the first
//! quiet moment of the liveness phase, when every online client has acknowledged all it got and the broker's
//! inflight windows are empty: a message still queued for an online session and not yet expired must have been
//! sent by then [MQTT-3.3.2-5], [MQTT-4.3.2].

use super::*;
use crate::coverage::Feature;

impl World {
    /// At a quiet moment of the liveness phase: no online session holds an unexpired message it was never sent.
    /// The model's clock counts the expiry from when the broker first processed the message, which is no later
    /// than when the broker stamped any copy of it, so "not expired" here is not expired at the broker either.
    pub(super) fn check_expiring_sent(&mut self) -> Result<(), Violation> {
        for (client, session) in self.model.sessions.iter().enumerate() {
            if !session.exists || !session.online {
                continue;
            }
            for entry in session.backlog.unreceived() {
                let Some(info) = self.model.messages.get(&entry.id) else {
                    continue;
                };
                let Some(interval) = info.expiry else {
                    continue;
                };
                // One that expired before a restart (by the model's clock then) the broker may have dropped for
                // good, whatever time a clock set back gives it now (seed 3143 of 1..12000, strict: m3:23 expired
                // before the restart at 5120 ms, whose clock went back 5 s, and was checked with 79 ms left).
                let expired = info.expired_by(self.now) || info.expired_before_restart;
                if entry.shared || entry.droppable.is_some() || expired {
                    continue;
                }
                let left = info.first_seen_ms + u64::from(interval) * 1000 - self.now;
                return Err(Violation(format!(
                    "c{client}: {} (Message Expiry Interval {interval}s, {left}ms left) was never sent although \
                     the connection was idle and the message had not expired [MQTT-3.3.2-5], [MQTT-4.3.2]",
                    entry.id
                )));
            }
        }
        Ok(())
    }

    /// A message with an expiry interval delivered in the liveness phase, where the check above holds it owed.
    pub(super) fn observe_expiring_owed(&mut self, publish: &Publish) {
        if !self.faults && publish.qos != QoS::AtMostOnce && publish.properties.message_expiry_interval.is_some() {
            self.coverage.hit(Feature::ExpiringOwed);
        }
    }
}
