//! One encoding of a PUBLISH for every subscriber that gets the same bytes (issue #18).
//!
//! Subscribers of one message whose deliveries differ only in the packet id (same protocol family, QoS and RETAIN
//! flag; no topic alias, no Subscription Identifier, no Message Expiry Interval to recompute) would otherwise each
//! get a `Publish` built (its topic `String` cloned) and encoded. Here the message is encoded once per form, and
//! each delivery appends those bytes with its own packet id written in. A payload long enough to be shared
//! (`Config::shared_payload_min`) is not part of the cached bytes: it goes out as the message's own `Bytes`, as it
//! does on the plain path (see `outbuf`).
//!
//! The cache is a fixed number of slots, indexed by message id, so it holds at most `SLOTS` encodings of at most
//! `shared_payload_min` + `MAX_CACHED_HEADER` bytes each. It holds only a `Weak` reference to each message, so a
//! cached encoding never keeps a payload alive, and identity is checked by allocation (the `Weak` keeps the
//! allocation from being reused), not by id alone, so two messages never share an entry.

use super::message::{Delivery, Message};
use crate::codec::{encode, encode_publish_header};
use crate::packet::{Packet, ProtocolVersion, QoS};
use crate::time::Time;
use bytes::{Bytes, BytesMut};
use std::sync::{Arc, Weak};

/// Slots in the cache (a power of two). Subscribers of a fan-out drift apart by up to their inflight windows; a
/// few hundred messages apart still hit.
const SLOTS: usize = 1024;

/// Headers longer than this (a long topic, many user properties) are encoded per delivery as before: the cache's
/// memory stays bounded by `SLOTS` times a small size.
const MAX_CACHED_HEADER: usize = 1024;

/// What makes the bytes of a shareable PUBLISH differ, apart from the message and the packet id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Form {
    pub v5: bool,
    pub qos: QoS,
    pub retain: bool,
}

impl Form {
    fn index(self) -> usize {
        usize::from(self.v5) * 6 + self.qos as usize * 2 + usize::from(self.retain)
    }
}

/// A PUBLISH encoded once: `head` with a zero packet id at `id_at` (QoS 1/2), then `payload` when it is shared
/// rather than part of `head`.
#[derive(Debug)]
pub struct Encoded {
    pub head: Bytes,
    pub id_at: Option<usize>,
    pub payload: Option<Bytes>,
}

impl Encoded {
    /// Bytes on the wire, shared payload included.
    pub fn len(&self) -> usize {
        self.head.len() + self.payload.as_ref().map_or(0, Bytes::len)
    }

    /// Encodes what `to_publish` makes of a delivery in `form` (packet id 0, DUP clear). `None` when the form is
    /// not worth caching (header too long) or does not encode (too large for any packet): the plain path decides.
    fn of(message: &Arc<Message>, form: Form, now: Time, shared_payload_min: usize) -> Option<Encoded> {
        let delivery = Delivery {
            message: Arc::clone(message),
            qos: form.qos,
            retain: form.retain,
            subscription_ids: Vec::new(),
            seq: 0,
        };
        let publish = delivery.to_publish(0, false, now);
        let version = if form.v5 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V3_1_1
        };
        let mut head = BytesMut::new();
        let payload = if super::outbuf::is_shared(&publish.payload, shared_payload_min) {
            encode_publish_header(&publish, version, &mut head).ok()?;
            Some(publish.payload.clone())
        } else {
            encode(&Packet::Publish(publish), version, &mut head).ok()?;
            None
        };
        let header_len = head.len() - if payload.is_some() { 0 } else { message.payload.len() };
        if header_len > MAX_CACHED_HEADER {
            return None;
        }
        // Fixed header (type byte, remaining length), then the topic as a two-byte length and its bytes.
        let id_at = (form.qos != QoS::AtMostOnce).then(|| 1 + varint_bytes(&head[1..]) + 2 + message.topic.len());
        Some(Encoded {
            head: head.freeze(),
            id_at,
            payload,
        })
    }
}

/// Length of the Variable Byte Integer at the start of `bytes` [MQTT-1.5.5].
fn varint_bytes(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| *b & 0x80 != 0).count() + 1
}

struct Slot {
    message: Weak<Message>,
    form: Form,
    encoded: Encoded,
}

/// The shared encodings of recently delivered messages.
#[derive(Default)]
pub struct SharedPublishes {
    /// Allocated at the first shareable delivery, so a broker that never fans out holds nothing.
    slots: Vec<Option<Slot>>,
    /// Deliveries that reused an encoding.
    pub hits: u64,
    /// Tests compare a broker's output with and without sharing.
    #[cfg(test)]
    pub disabled: bool,
}

impl std::fmt::Debug for SharedPublishes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used = self.slots.iter().filter(|slot| slot.is_some()).count();
        write!(f, "SharedPublishes {{ used: {used}, hits: {} }}", self.hits)
    }
}

impl SharedPublishes {
    /// The encoding of `message` in `form`, made now if it is missing and the message is likely to go to more
    /// subscribers (`fan_out`); `None` sends the plain way.
    pub fn get(
        &mut self,
        message: &Arc<Message>,
        form: Form,
        fan_out: bool,
        now: Time,
        shared_payload_min: usize,
    ) -> Option<&Encoded> {
        #[cfg(test)]
        if self.disabled {
            return None;
        }
        let index = slot_index(message.id, form);
        let hit = self
            .slots
            .get(index)
            .and_then(Option::as_ref)
            .is_some_and(|slot| slot.form == form && std::ptr::eq(slot.message.as_ptr(), Arc::as_ptr(message)));
        if hit {
            self.hits += 1;
        } else {
            if !fan_out {
                return None;
            }
            let encoded = Encoded::of(message, form, now, shared_payload_min)?;
            if self.slots.is_empty() {
                self.slots.resize_with(SLOTS, || None);
            }
            self.slots[index] = Some(Slot {
                message: Arc::downgrade(message),
                form,
                encoded,
            });
        }
        self.slots[index].as_ref().map(|slot| &slot.encoded)
    }
}

/// Consecutive message ids take consecutive slots; each form of a message is spread a fixed distance away, so a
/// mix of v3.1.1 and v5 subscribers does not make the forms of one message evict each other.
fn slot_index(id: u64, form: Form) -> usize {
    (id as usize).wrapping_add(form.index() * (SLOTS / 12 + 1)) & (SLOTS - 1)
}

/// Whether a delivery's bytes are the shared ones: no Subscription Identifier [MQTT-3.3.4-3] and no expiry to
/// count down [MQTT-3.3.2-6] make it differ from other subscribers' (a topic alias is the connection's business).
pub fn is_shareable(delivery: &Delivery) -> bool {
    delivery.subscription_ids.is_empty() && delivery.message.expires_at.is_none()
}

#[cfg(test)]
mod tests;
