//! Invariants checked on every packet a simulated client receives, as pure functions of the client's view. Each
//! names the statement of the specification it comes from. The reference model (`model.rs`) checks what needs
//! the global picture (who was owed which message when the broker routed it).

use crate::client::SimClient;
use crate::model::{MessageInfo, Violation};
use mqtt_core::packet::{Publish, QoS};

/// CONNACK's Session Present is what the model predicts: 1 only when a stored session resumes [MQTT-3.2.2-2],
/// [MQTT-3.2.2-3].
pub fn session_present(client: usize, expected: Option<bool>, got: bool) -> Result<(), Violation> {
    if expected == Some(got) {
        return Ok(());
    }
    Err(Violation(format!(
        "c{client} got Session Present {got} but the model expected {expected:?} [MQTT-3.2.2-2], [MQTT-3.2.2-3]"
    )))
}

/// A SUBACK grants at most the QoS asked for (section 3.9.3: the maximum QoS granted may be lower, never higher).
pub fn granted_qos(client: usize, filter: &str, asked: QoS, granted: QoS) -> Result<(), Violation> {
    if granted <= asked {
        return Ok(());
    }
    Err(Violation(format!(
        "c{client}: SUBACK granted {granted:?} on '{filter}' above the requested {asked:?}"
    )))
}

/// Checks on a PUBLISH before the client records it (`publish.topic` already resolved from a Topic Alias).
pub fn inbound_publish(client: usize, c: &SimClient, publish: &Publish) -> Result<(), Violation> {
    // [MQTT-2.2.1-3]: a packet identifier is not reused while its message is unacknowledged (a DUP resend reuses
    // its own).
    if publish.qos != QoS::AtMostOnce && !publish.dup && c.unacked_in.contains(&publish.packet_id) {
        return Err(Violation(format!(
            "c{client}: packet id {} reused while still unacknowledged [MQTT-2.2.1-3]",
            publish.packet_id
        )));
    }
    // Whatever the payload, a PUBLISH must match one of the session's filters (section 4.7), with the `$` rule
    // [MQTT-4.7.2-1] so that `$SYS` never reaches `#` or `+/...`.
    let Some(bound) = c.qos_bound(&publish.topic) else {
        return Err(Violation(format!(
            "c{client}: got a PUBLISH on '{}' that none of its filters matches [MQTT-4.7], [MQTT-4.7.2-1]",
            publish.topic
        )));
    };
    // [MQTT-3.8.4-8]: delivered at most with the QoS granted to a matching subscription.
    if publish.qos > bound {
        return Err(Violation(format!(
            "c{client}: {} delivered at {:?}, above the QoS granted to its matching filters ({bound:?}) \
             [MQTT-3.8.4-8]",
            publish.topic, publish.qos
        )));
    }
    Ok(())
}

/// [MQTT-3.3.4-9]: never more unacknowledged QoS 1/2 PUBLISHes towards a client than its Receive Maximum; the
/// broker's own cap (`max_inflight`) applies on top. Counted after the client recorded the new one.
pub fn receive_maximum(client: usize, c: &SimClient, max_inflight: u16) -> Result<(), Violation> {
    let limit = c.receive_maximum.min(max_inflight);
    if c.unacked_in.len() <= usize::from(limit) {
        return Ok(());
    }
    Err(Violation(format!(
        "c{client}: {} unacknowledged QoS 1/2 messages exceed min(Receive Maximum {}, max_inflight {max_inflight}) \
         [MQTT-3.3.4-9]",
        c.unacked_in.len(),
        c.receive_maximum
    )))
}

/// Message expiry as delivered to an MQTT 5 client: the interval it had, lowered by the time the message waited in
/// the broker [MQTT-3.3.2-6], so never above the published one and never below it minus the time since the broker
/// first processed it (rounded up, and a second of slack for the broker's rounding).
pub fn message_expiry(client: usize, info: &MessageInfo, publish: &Publish, now_ms: u64) -> Result<(), Violation> {
    let Some(original) = info.expiry else {
        return match publish.properties.message_expiry_interval {
            None => Ok(()),
            Some(got) => Err(Violation(format!(
                "c{client}: {} arrived with a Message Expiry Interval of {got}s it was never published with",
                publish.topic
            ))),
        };
    };
    let Some(got) = publish.properties.message_expiry_interval else {
        return Err(Violation(format!(
            "c{client}: {} lost its Message Expiry Interval on the way [MQTT-3.3.2-6]",
            publish.topic
        )));
    };
    // Sent for the first time with no time left, it had expired and must not have been sent at all [MQTT-3.3.2-5]:
    // the remaining interval is rounded up, so a message sent before its expiry carries at least 1. A resend (DUP)
    // of one whose onward delivery had begun is owed whatever its expiry [MQTT-4.4.0-1]. QoS 0 is handed to the
    // connection at once, which is onward delivery begun, even if a slow reader's output waits past the expiry.
    if got == 0 && !publish.dup && publish.qos != QoS::AtMostOnce {
        return Err(Violation(format!(
            "c{client}: {} arrived with a Message Expiry Interval of 0: the broker sent it after it expired \
             [MQTT-3.3.2-5]",
            publish.topic
        )));
    }
    // The lower bound, without saturating: once it is below 1, the time the message may have waited in the network
    // (which the client cannot tell from its time in the broker) leaves nothing more to check.
    let waited_s = now_ms.saturating_sub(info.earliest_seen_ms).div_ceil(1000);
    let lowest = i64::from(original) - i64::try_from(waited_s).unwrap_or(i64::MAX) - 1;
    if got > original || i64::from(got) < lowest {
        return Err(Violation(format!(
            "c{client}: {} arrived with Message Expiry Interval {got}s; published with {original}s {waited_s}s ago \
             [MQTT-3.3.2-6]",
            publish.topic
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt_core::packet::Properties;

    fn delivered(qos: QoS, dup: bool, expiry: u32) -> Publish {
        Publish {
            qos,
            dup,
            topic: "a".into(),
            packet_id: 1,
            properties: Properties {
                message_expiry_interval: Some(expiry),
                ..Properties::default()
            }
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_expired_message_is_never_sent_first_time_mqtt_3_3_2_5() {
        let info = MessageInfo {
            publisher: 0,
            topic: "a".into(),
            qos: QoS::AtLeastOnce,
            expires: true,
            expiry: Some(5),
            first_seen_ms: 0,
            earliest_seen_ms: 0,
            last_read_ms: 0,
            uncapped_read_ms: 0,
            latest_read_ms: 0,
            bytes: 4,
            expired_before_restart: false,
        };
        // Long after it was published, the lower bound is gone, but 0 left means it was sent expired.
        assert!(message_expiry(0, &info, &delivered(QoS::AtLeastOnce, false, 0), 60_000).is_err());
        assert!(message_expiry(0, &info, &delivered(QoS::AtLeastOnce, false, 1), 60_000).is_ok());
        // A resend of one already on its way, and QoS 0 handed to a slow connection, may carry 0.
        assert!(message_expiry(0, &info, &delivered(QoS::AtLeastOnce, true, 0), 60_000).is_ok());
        assert!(message_expiry(0, &info, &delivered(QoS::AtMostOnce, false, 0), 60_000).is_ok());
        // Never more than published, never much less than published minus the wait [MQTT-3.3.2-6].
        assert!(message_expiry(0, &info, &delivered(QoS::AtLeastOnce, false, 6), 0).is_err());
        assert!(message_expiry(0, &info, &delivered(QoS::AtLeastOnce, false, 2), 1_000).is_err());
        assert!(message_expiry(0, &info, &delivered(QoS::AtLeastOnce, false, 4), 1_000).is_ok());
    }
}
