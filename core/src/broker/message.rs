//! Application messages as the broker holds them between receipt and delivery.

use crate::packet::{BoxedProperties, Publish, QoS};
use crate::time::Time;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

mod topic;

pub use topic::MessageTopic;

/// One application message, shared (via `Arc`) by every session it is queued for: the payload is never copied
/// per subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Unique within the broker's lifetime and across restarts; persistence refers to messages by it.
    pub id: u64,
    /// Inline when short: no allocation of its own for most topics.
    pub topic: MessageTopic,
    pub payload: Bytes,
    /// QoS the publisher sent it with.
    pub qos: QoS,
    /// The RETAIN flag as published.
    pub retain: bool,
    /// Properties forwarded to subscribers unchanged [MQTT-3.3.2-4], [MQTT-3.3.2-17]; the per-hop ones (Topic Alias,
    /// Subscription Identifiers) are cleared, and Message Expiry Interval is recomputed from `expires_at`. Boxed, and
    /// absent for most messages: a million retained messages do not each hold 344 bytes of empty properties.
    pub properties: BoxedProperties,
    /// Absolute expiry derived from Message Expiry Interval at receipt.
    pub expires_at: Option<Time>,
}

impl Message {
    /// Builds the stored form of a received PUBLISH whose topic is already resolved (alias applied).
    /// `shared_payload_min` is the decoder's `own_allocation_min`: a payload that long was received into an
    /// allocation of its own and is kept as it is.
    pub fn from_publish(id: u64, publish: Publish, topic: String, now: Time, shared_payload_min: usize) -> Message {
        let mut properties = publish.properties;
        // Checked before writing: a write allocates the properties of a message that has none.
        if properties.topic_alias.is_some() || !properties.subscription_identifiers.is_empty() {
            properties.topic_alias = None;
            properties.subscription_identifiers.clear();
        }
        let expires_at = properties
            .message_expiry_interval
            .map(|secs| now + Duration::from_secs(u64::from(secs)));
        Message {
            id,
            topic: topic.into(),
            payload: kept_payload(publish.payload, shared_payload_min),
            qos: publish.qos,
            retain: publish.retain,
            properties,
            expires_at,
        }
    }

    pub fn is_expired(&self, now: Time) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// Remaining lifetime in whole seconds, rounded up so that a message never outlives its expiry by the rounding
    /// [MQTT-3.3.2-6].
    pub fn remaining_expiry_secs(&self, now: Time) -> Option<u32> {
        self.expires_at.map(|at| {
            let ms = at.as_millis().saturating_sub(now.as_millis());
            u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)
        })
    }
}

/// A small payload is a slice of the connection's receive buffer: holding it (queued, retained) would pin that
/// whole buffer, so it is copied, once per message (cheap at that size). A large one owns its allocation (the
/// decoder received its packet into one of its own), so it is kept without a copy; the packet's few header
/// bytes are all it holds beyond the payload.
fn kept_payload(payload: Bytes, shared_payload_min: usize) -> Bytes {
    if super::outbuf::is_shared(&payload, shared_payload_min) {
        payload
    } else {
        Bytes::copy_from_slice(&payload)
    }
}

/// One message on its way to one session: the shared message plus what this subscriber's subscriptions made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message: Arc<Message>,
    /// min(publish QoS, granted QoS) [MQTT-3.8.4-8].
    pub qos: QoS,
    /// The RETAIN flag to send: set for retained messages sent on subscribe [MQTT-3.3.1-9], else per Retain As
    /// Published [MQTT-3.3.1-12], [MQTT-3.3.1-13].
    pub retain: bool,
    /// Subscription Identifiers of every matching subscription [MQTT-3.3.4-3].
    pub subscription_ids: Vec<u32>,
    /// Position in the session's queue, assigned when queued; persistence refers to the entry by it.
    pub seq: u64,
}

impl Delivery {
    /// The PUBLISH for this delivery, before topic aliasing.
    pub fn to_publish(&self, packet_id: u16, dup: bool, now: Time) -> Publish {
        // Cloning a message without properties clones a null pointer; each write below is made only when it changes
        // something, so such a delivery allocates nothing for its properties.
        let mut properties = self.message.properties.clone();
        let expiry = self.message.remaining_expiry_secs(now);
        if properties.message_expiry_interval != expiry {
            properties.message_expiry_interval = expiry;
        }
        // Both empty is the common case, and slice equality would still call `memcmp` (a profile's hot spot).
        let both_empty = properties.subscription_identifiers.is_empty() && self.subscription_ids.is_empty();
        if !both_empty && properties.subscription_identifiers != self.subscription_ids {
            properties.subscription_identifiers = self.subscription_ids.clone();
        }
        Publish {
            dup,
            qos: self.qos,
            retain: self.retain,
            topic: self.message.topic.to_string(),
            packet_id,
            properties,
            payload: self.message.payload.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{kept_payload, Message};
    use crate::packet::{Packet, Publish};
    use bytes::Bytes;

    /// A `Publish` is moved through the decoder, the router and the inflight window, and a `Message` is kept per
    /// retained topic: all must stay small (the properties behind one pointer, not 344 bytes inline). Bounds from
    /// issue #18; a new inline field that breaks them should be boxed too.
    #[test]
    fn a_publish_and_a_stored_message_stay_small() {
        let publish = std::mem::size_of::<Publish>();
        let message = std::mem::size_of::<Message>();
        assert!(publish < 160, "size_of::<Publish>() = {publish} bytes, bound 160");
        assert!(message < 160, "size_of::<Message>() = {message} bytes, bound 160");
        // A retained message is an `Arc<Message>`: its 16 counts and the message must stay within a 128-byte malloc
        // chunk (8 bytes of header, 16-byte steps): 8 bytes more and a million retained messages take 16 MB more.
        assert!(message <= 104, "size_of::<Message>() = {message} bytes, bound 104");
        // Every packet is moved as a `Packet` out of the decoder: its largest variant sets what each move copies.
        let packet = std::mem::size_of::<Packet>();
        assert!(packet < 160, "size_of::<Packet>() = {packet} bytes, bound 160");
        eprintln!("Publish {publish} B, Message {message} B, Packet {packet} B");
    }

    #[test]
    fn large_payloads_are_kept_and_small_ones_copied() {
        let large = Bytes::from(vec![1; 4096]);
        assert_eq!(kept_payload(large.clone(), 2048).as_ptr(), large.as_ptr());
        let small = Bytes::from(vec![1; 100]);
        let kept = kept_payload(small.clone(), 2048);
        assert_ne!(kept.as_ptr(), small.as_ptr());
        assert_eq!(kept, small);
        assert_ne!(kept_payload(Bytes::new(), 0).as_ptr(), small.as_ptr());
    }
}
