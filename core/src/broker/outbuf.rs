//! A connection's encoded output waiting to be handed to the driver.
//!
//! Small packets are encoded into one contiguous buffer: for them a copy is cheaper than anything else. A PUBLISH
//! whose payload is at least `Config::shared_payload_min` bytes has only its header encoded; the payload goes out
//! as the message's own `Bytes`, shared by every subscriber, so fan-out to N connections copies it zero times
//! instead of N.

use super::shared_publish::Encoded;
use crate::codec::{encode, encode_publish_header};
use crate::packet::{Packet, ProtocolVersion};
use bytes::{Bytes, BytesMut};

/// Whether `payload` is long enough to be shared rather than copied (`Config::shared_payload_min`); an empty one
/// never is, as there is nothing to share.
pub(super) fn is_shared(payload: &Bytes, shared_payload_min: usize) -> bool {
    payload.len() >= shared_payload_min.max(1)
}

/// First allocation of a tail (see `Outbuf::reserve_first`).
const TAIL_START: usize = 2048;

/// Encoded bytes in order: `chunks` first, then `tail`.
///
/// An idle connection holds no allocation: both are empty and emptied containers are replaced, not kept. The
/// chunks are boxed so that a connection that never sees a large payload pays one pointer for them.
#[derive(Debug, Default)]
pub struct Outbuf {
    /// Only while a shared payload is held.
    chunks: Option<Box<Chunks>>,
    /// Where small packets are encoded, after everything in `chunks`.
    tail: BytesMut,
}

#[derive(Debug, Default)]
struct Chunks {
    /// Frozen stretches of the tail and shared payloads, in order.
    list: Vec<Bytes>,
    /// Bytes in `list`.
    len: usize,
}

impl Outbuf {
    /// Every byte held, shared payloads included (what `max_outbuf_bytes` bounds).
    pub fn len(&self) -> usize {
        self.chunks.as_ref().map_or(0, |chunks| chunks.len) + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory reserved by the containers (tests: an idle connection holds none).
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.tail.capacity() + self.chunks.as_ref().map_or(0, |chunks| chunks.list.capacity())
    }

    /// Appends the wire form of `packet` if it encodes in at most `limit` bytes; otherwise appends nothing and
    /// returns false. A PUBLISH with at least `shared_payload_min` payload bytes is appended as its encoded header
    /// followed by its payload, not copied.
    pub fn encode(
        &mut self,
        packet: &Packet,
        version: ProtocolVersion,
        limit: usize,
        shared_payload_min: usize,
    ) -> bool {
        self.reserve_first();
        let start = self.tail.len();
        let appended = match packet {
            Packet::Publish(publish) if is_shared(&publish.payload, shared_payload_min) => {
                let fits = encode_publish_header(publish, version, &mut self.tail).is_ok()
                    && self.tail.len() - start + publish.payload.len() <= limit;
                if fits {
                    self.push_chunk(publish.payload.clone());
                }
                fits
            }
            _ => encode(packet, version, &mut self.tail).is_ok() && self.tail.len() - start <= limit,
        };
        if !appended {
            self.tail.truncate(start);
        }
        appended
    }

    /// Appends a PUBLISH encoded once for many subscribers (see `shared_publish`) with `packet_id` written in, if
    /// it is at most `limit` bytes; otherwise appends nothing and returns false, as `encode` does.
    pub fn append_shared(&mut self, encoded: &Encoded, packet_id: u16, limit: usize) -> bool {
        if encoded.len() > limit {
            return false;
        }
        self.reserve_first();
        let start = self.tail.len();
        self.tail.extend_from_slice(&encoded.head);
        if let Some(at) = encoded.id_at {
            self.tail[start + at..start + at + 2].copy_from_slice(&packet_id.to_be_bytes());
        }
        if let Some(payload) = &encoded.payload {
            self.push_chunk(payload.clone());
        }
        true
    }

    /// A tail handed out leaves none behind, and growing a new one from nothing packet by packet reallocates and
    /// copies it about ten times on the way to a socket buffer's worth; starting at `TAIL_START` skips the first
    /// half of those. Drained (idle) connections still hold nothing.
    fn reserve_first(&mut self) {
        if self.tail.capacity() == 0 {
            self.tail.reserve(TAIL_START);
        }
    }

    /// Appends `chunk` after everything held, closing off the tail first so the order stays.
    fn push_chunk(&mut self, chunk: Bytes) {
        let chunks = self.chunks.get_or_insert_with(Box::default);
        if !self.tail.is_empty() {
            // `split` keeps the spare capacity in `tail`, so the next small packets still need no allocation.
            let head = self.tail.split().freeze();
            chunks.len += head.len();
            chunks.list.push(head);
        }
        chunks.len += chunk.len();
        chunks.list.push(chunk);
    }

    /// Hands out everything held, chunk by chunk in order, and lets go of every buffer: small packets only give
    /// one chunk.
    pub fn drain(&mut self, mut emit: impl FnMut(Bytes)) {
        if let Some(chunks) = self.chunks.take() {
            chunks.list.into_iter().for_each(&mut emit);
        }
        // Taking the tail whole (not `split`) leaves no spare capacity sharing the transmitted buffer behind.
        let tail = std::mem::take(&mut self.tail);
        if !tail.is_empty() {
            emit(tail.freeze());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Publish, QoS};

    fn publish(payload_len: usize) -> Packet {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "t".into(),
            packet_id: 1,
            properties: Default::default(),
            payload: Bytes::from(vec![1; payload_len]),
        })
    }

    fn drained(outbuf: &mut Outbuf) -> Vec<Bytes> {
        let mut chunks = Vec::new();
        outbuf.drain(|chunk| chunks.push(chunk));
        chunks
    }

    #[test]
    fn small_packets_make_one_chunk_and_large_payloads_are_shared_in_order() {
        let version = ProtocolVersion::V5;
        let mut outbuf = Outbuf::default();
        let large = publish(4096);
        assert!(outbuf.encode(&Packet::PingResp, version, usize::MAX, 1024));
        assert!(outbuf.encode(&large, version, usize::MAX, 1024));
        assert!(outbuf.encode(&Packet::PingResp, version, usize::MAX, 1024));
        let mut whole = BytesMut::new();
        for packet in [&Packet::PingResp, &large, &Packet::PingResp] {
            encode(packet, version, &mut whole).expect("encodes");
        }
        assert_eq!(outbuf.len(), whole.len());
        let chunks = drained(&mut outbuf);
        assert_eq!(chunks.len(), 3, "ping + header, payload, ping");
        let Packet::Publish(large) = large else { unreachable!() };
        assert_eq!(chunks[1].as_ptr(), large.payload.as_ptr(), "the payload is not copied");
        assert_eq!(chunks.concat(), whole.to_vec());
        assert!(outbuf.is_empty() && outbuf.capacity() == 0);

        assert!(outbuf.encode(&publish(100), version, usize::MAX, 1024));
        assert!(outbuf.encode(&Packet::PingResp, version, usize::MAX, 1024));
        assert_eq!(drained(&mut outbuf).len(), 1);
    }

    #[test]
    fn a_packet_over_the_limit_leaves_nothing_behind() {
        let mut outbuf = Outbuf::default();
        assert!(outbuf.encode(&Packet::PingResp, ProtocolVersion::V5, usize::MAX, 1024));
        assert!(!outbuf.encode(&publish(4096), ProtocolVersion::V5, 4096, 1024));
        assert!(!outbuf.encode(&publish(500), ProtocolVersion::V5, 500, 1024));
        assert_eq!(outbuf.len(), 2);
        assert_eq!(drained(&mut outbuf).len(), 1);
    }
}
