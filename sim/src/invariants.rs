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
    let waited_s = now_ms.saturating_sub(info.first_seen_ms).div_ceil(1000);
    let lowest = u64::from(original).saturating_sub(waited_s + 1);
    if got > original || u64::from(got) < lowest {
        return Err(Violation(format!(
            "c{client}: {} arrived with Message Expiry Interval {got}s; published with {original}s {waited_s}s ago \
             [MQTT-3.3.2-6]",
            publish.topic
        )));
    }
    Ok(())
}
