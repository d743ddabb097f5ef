//! Messages with a Message Expiry Interval in the per-publisher ordering check [MQTT-4.6.0-6]: the broker may let
//! such a message expire in a session's queue and never send it [MQTT-3.3.2-5], but one it does send was not
//! expired, so it is owed in order like any other. The one exception the model predicts from its own clock: the
//! publisher resent the message (a QoS 1 resend is a new publication) after the first copy may have expired in
//! the queue, and the resend's copy arrives behind messages routed between the two.

use super::{message_id, MessageInfo, Model, Violation};
use mqtt_core::packet::Publish;

/// Whether the copy of `info` arriving at `now_ms` may be a resend's whose first copy expired before it was sent:
/// the message was routed to the session more than once (`routings`) and the model's clock, which counts the
/// expiry from the first routing (no later than the broker's stamp), says the first copy may have expired by now.
pub(super) fn resent_after_expiry(info: &MessageInfo, routings: Option<u32>, now_ms: u64) -> bool {
    routings.is_some_and(|n| n > 1) && info.expired_by(now_ms)
}

/// For the violation's text: how long the overtaken message still had to live by the model's clock.
pub(super) fn ordering_note(info: &MessageInfo, now_ms: u64) -> String {
    match info.expiry {
        Some(secs) => {
            let deadline = info.first_seen_ms + u64::from(secs) * 1000;
            format!(
                " (it carries a Message Expiry Interval of {secs}s, {}ms left by the model's clock: not expired, so \
                 owed in order)",
                deadline.saturating_sub(now_ms)
            )
        }
        None => String::new(),
    }
}

impl Model {
    /// A retained copy (RETAIN set: sent because of a SUBSCRIBE [MQTT-3.3.1-9]) of a client's message. The broker
    /// deletes a retained message once its expiry passes, so one that had expired when the broker read the SUBSCRIBE
    /// is never sent for it [MQTT-3.3.2-5]; and a copy it does send carries at most what was left of the interval
    /// when the first SUBSCRIBE it may answer was read [MQTT-3.3.2-6] (a copy leaves no earlier; the model's clock
    /// follows the broker's across restarts, see `world::clock`). Checked before the delivery's other expiry checks:
    /// it is the more specific.
    pub fn check_retained_expiry(
        &self,
        client: usize,
        epoch: u64,
        publish: &Publish,
        v5: bool,
    ) -> Result<(), Violation> {
        let Some(id) = message_id(&publish.payload) else {
            return Ok(());
        };
        let Some(info) = self.messages.get(&id).filter(|i| i.expiry.is_some()) else {
            return Ok(());
        };
        let key = (client, epoch, id);
        // A copy some SUBSCRIBE was offered and has not received yet (a DUP resend: of one it was offered).
        let offered = if publish.dup {
            self.retained_offered.contains(&key)
        } else {
            self.retained_offers.get(&key).is_some_and(|n| *n > 0)
        };
        if !offered {
            if let Some(ago) = self.retained_withheld.get(&key) {
                return Err(Violation(format!(
                    "c{client} got retained {} on '{}' although it had expired {ago}ms before the broker read the \
                     SUBSCRIBE that matched it (Message Expiry Interval {}s): a retained message is deleted once it \
                     expires [MQTT-3.3.2-5]",
                    key.2,
                    publish.topic,
                    info.expiry.unwrap_or_default()
                )));
            }
            return Ok(());
        }
        let (Some(got), Some(offered_ms), true) = (
            publish.properties.message_expiry_interval,
            self.retained_offer_ms.get(&key),
            v5,
        ) else {
            return Ok(());
        };
        let deadline = info.latest_read_ms + u64::from(info.expiry.unwrap_or_default()) * 1000;
        let left_s = deadline.saturating_sub(*offered_ms).div_ceil(1000);
        if u64::from(got) > left_s {
            return Err(Violation(format!(
                "c{client} got retained {} on '{}' with Message Expiry Interval {got}s, but only {left_s}s were left \
                 when the broker read the SUBSCRIBE it answers: the interval is lowered by the time the message \
                 waited [MQTT-3.3.2-6]",
                key.2, publish.topic
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt_core::packet::QoS;

    fn expiring(secs: u32) -> MessageInfo {
        MessageInfo {
            publisher: 1,
            topic: "t/0".into(),
            qos: QoS::AtLeastOnce,
            expires: true,
            expiry: Some(secs),
            first_seen_ms: 1_000,
            earliest_seen_ms: 1_000,
            last_read_ms: 1_000,
            uncapped_read_ms: 1_000,
            latest_read_ms: 1_000,
            bytes: 5,
            expired_before_restart: false,
        }
    }

    #[test]
    fn only_a_resend_after_the_first_copy_may_have_expired_is_excused_mqtt_4_6_0_6() {
        let info = expiring(2);
        // Routed once: owed in order whatever the clock says (it was sent, so it had not expired).
        assert!(!resent_after_expiry(&info, Some(1), 60_000));
        assert!(!resent_after_expiry(&info, None, 60_000));
        // Routed twice, but the first copy cannot have expired yet: still owed in order.
        assert!(!resent_after_expiry(&info, Some(2), 2_999));
        // Routed twice and the first copy may have expired: the resend's copy may come late.
        assert!(resent_after_expiry(&info, Some(2), 3_000));
        // Without an expiry nothing expires.
        let plain = MessageInfo {
            expires: false,
            expiry: None,
            ..expiring(2)
        };
        assert!(!resent_after_expiry(&plain, Some(2), 60_000));
    }

    #[test]
    fn the_violation_says_how_long_the_message_had_left() {
        assert!(ordering_note(&expiring(5), 2_000).contains("5s, 4000ms left"));
        let plain = MessageInfo {
            expiry: None,
            ..expiring(5)
        };
        assert_eq!(ordering_note(&plain, 2_000), "");
    }
}
