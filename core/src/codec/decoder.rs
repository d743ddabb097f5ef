//! The incremental decoder: bytes in, in any chunking; whole packets out.

use super::decode::{connect_version, decode_packet, decode_short_ack};
use super::error::DecodeError;
use super::primitive::varint_len;
use crate::packet::{Packet, ProtocolVersion};
use bytes::BytesMut;
use std::collections::VecDeque;

/// How far a large packet's own allocation may run ahead of the bytes received for it, beyond as many bytes as
/// were received: a length prefix alone must not make us allocate much (a 5-byte header may announce 256 MiB).
const MAX_ALLOCATION_AHEAD: usize = 64 * 1024;

/// Turns a stream of bytes, fed in arbitrary chunks, into packets.
///
/// A server-side decoder starts without a version: the first packet must be CONNECT, which carries it; decoding a
/// CONNECT sets the decoder's version. A client-side decoder is created with the version it connected with.
///
/// Decoded packets refer to the received bytes without copying them (payloads are slices). Packets of at least
/// `own_allocation_min` bytes are received into an allocation of their own, sized to the packet, so that a payload
/// kept from one (shared with subscribers, queued, retained) holds exactly its packet and pins nothing else.
pub struct Decoder {
    /// Received bytes before `buf`: whole packets only, in order. A large packet is alone in its buffer; the other
    /// buffers are runs of smaller packets split off `buf` when a large one began.
    /// Boxed, and only while it holds something: most connections never receive a large packet, and each pays
    /// one word here instead of a `VecDeque`'s four.
    #[allow(clippy::box_collection)]
    framed: Option<Box<VecDeque<BytesMut>>>,
    /// The latest received bytes, starting at a packet boundary; `buf[..scanned]` are whole packets.
    buf: BytesMut,
    /// How many bytes at the front of `buf` are known to be whole packets; the packet after them is not complete
    /// yet (or its header is invalid, which `next_packet` reports once the packets before it are decoded).
    scanned: usize,
    version: Option<ProtocolVersion>,
    /// Kept as u32 (MQTT's own bound, 268,435,460 bytes, fits): one decoder per connection.
    max_packet_size: u32,
    /// Packets this large get an allocation of their own (`u32::MAX`: never).
    own_allocation_min: u32,
    /// While `buf` is the own allocation of a packet still incomplete: the packet's size (else 0).
    own_allocation_len: u32,
    /// The version a CONNECT declared, known even when the rest of that CONNECT failed to decode, so the server
    /// can answer in the client's version [MQTT-3.1.4-1].
    attempted_version: Option<ProtocolVersion>,
}

/// Parsed fixed header: first byte, header length and remaining length.
struct FixedHeader {
    first: u8,
    header_len: usize,
    remaining: usize,
}

impl FixedHeader {
    fn packet_len(&self) -> usize {
        self.header_len + self.remaining
    }
}

/// The fixed header at the start of a byte stream given by `byte(i)`, if enough bytes are there to know it
/// [MQTT-2.1.1]. Never looks past 5 bytes.
fn fixed_header(byte: impl Fn(usize) -> Option<u8>) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(first) = byte(0) else {
        return Ok(None);
    };
    // Packet type 0 is reserved (section 2.1.2): nothing that follows can make the stream valid, so it is
    // refused on its first byte rather than after waiting for a length and a body.
    if first >> 4 == 0 {
        return Err(DecodeError::InvalidPacketType(0));
    }
    let mut remaining: usize = 0;
    for (i, shift) in [0usize, 7, 14, 21].into_iter().enumerate() {
        let Some(byte) = byte(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            // [MQTT-1.5.5-1]: the minimum number of bytes must be used.
            if varint_len(remaining) != i + 1 {
                return Err(DecodeError::MalformedVariableInteger);
            }
            return Ok(Some(FixedHeader {
                first,
                header_len: 2 + i,
                remaining,
            }));
        }
    }
    // [MQTT-1.5.5-1]: at most four bytes.
    Err(DecodeError::MalformedVariableInteger)
}

impl Decoder {
    /// `max_packet_size` bounds the whole packet (fixed header included); it is checked as soon as the fixed header
    /// is complete, before the body is buffered.
    pub fn new(version: Option<ProtocolVersion>, max_packet_size: usize) -> Self {
        Decoder {
            framed: None,
            buf: BytesMut::new(),
            scanned: 0,
            version,
            max_packet_size: u32::try_from(max_packet_size).unwrap_or(u32::MAX),
            own_allocation_min: u32::MAX,
            own_allocation_len: 0,
            attempted_version: None,
        }
    }

    /// Packets of at least `min` bytes are received into an allocation of their own (see the type's docs).
    pub fn with_own_allocation_min(mut self, min: usize) -> Self {
        self.own_allocation_min = u32::try_from(min).unwrap_or(u32::MAX);
        self
    }

    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    pub fn set_version(&mut self, version: ProtocolVersion) {
        self.version = Some(version);
    }

    pub fn set_max_packet_size(&mut self, max: usize) {
        self.max_packet_size = u32::try_from(max).unwrap_or(u32::MAX);
    }

    /// The protocol version of the last CONNECT seen, even one that failed to decode.
    pub fn attempted_version(&self) -> Option<ProtocolVersion> {
        self.attempted_version.or(self.version)
    }

    /// Bytes received but not yet decoded.
    pub fn buffered(&self) -> usize {
        let framed = self.framed.iter().flat_map(|framed| framed.iter());
        framed.map(BytesMut::len).sum::<usize>() + self.buf.len()
    }

    /// Bytes still to come before the packet being received is whole: 0 when no partial packet is held, 1 while
    /// its fixed header is incomplete (its length is not known yet). Meaningful once the whole packets before it
    /// were decoded.
    pub fn missing(&self) -> usize {
        if self.own_allocation_len > 0 {
            return (self.own_allocation_len as usize).saturating_sub(self.buf.len());
        }
        let pending = &self.buf[self.scanned.min(self.buf.len())..];
        if pending.is_empty() {
            return 0;
        }
        match fixed_header(|i| pending.get(i).copied()) {
            Ok(Some(header)) => header.packet_len().saturating_sub(pending.len()),
            _ => 1,
        }
    }

    /// Appends received bytes, packet by packet: a large packet goes to an allocation of its own, the others are
    /// appended to `buf` (one allocation for a whole chunk of small packets).
    pub fn feed(&mut self, mut data: &[u8]) {
        if self.own_allocation_min == u32::MAX {
            // Nothing is large: no need to find where packets start.
            self.buf.extend_from_slice(data);
            return;
        }
        while !data.is_empty() {
            if self.own_allocation_len > 0 {
                data = self.fill_own_allocation(data);
                continue;
            }
            let pending = &self.buf[self.scanned..];
            let header = fixed_header(|i| match i.checked_sub(pending.len()) {
                None => pending.get(i).copied(),
                Some(j) => data.get(j).copied(),
            });
            let total = match header {
                Ok(Some(header)) if header.packet_len() <= self.max_packet_size as usize => header.packet_len(),
                // A header not complete yet (at most 4 bytes), or one `next_packet` will refuse after the packets
                // before it: kept as it is.
                _ => {
                    self.buf.extend_from_slice(data);
                    return;
                }
            };
            let have = pending.len();
            let missing = total - have;
            let all_here = data.len() >= missing;
            if total >= self.own_allocation_min as usize && (all_here || missing <= MAX_ALLOCATION_AHEAD.max(have)) {
                self.start_own_allocation(total);
                continue;
            }
            // The rest of this packet and the small packets after it are appended in one copy.
            let (run, whole) = if all_here {
                self.small_packets_from(data, missing)
            } else {
                (data.len(), 0)
            };
            let base = self.buf.len();
            self.buf.extend_from_slice(&data[..run]);
            if all_here {
                self.scanned = base + whole;
            }
            data = &data[run..];
        }
    }

    /// Walks the packets in `data` from `start` (a packet boundary) while they are small: returns how many bytes of
    /// `data` to append (up to the first large or invalid packet, or all of it when it ends inside a small packet)
    /// and where the last whole packet among them ends.
    fn small_packets_from(&self, data: &[u8], start: usize) -> (usize, usize) {
        let mut whole = start;
        loop {
            let rest = &data[whole..];
            match fixed_header(|i| rest.get(i).copied()) {
                Ok(Some(header))
                    if header.packet_len() < self.own_allocation_min as usize
                        && header.packet_len() <= self.max_packet_size as usize =>
                {
                    if header.packet_len() > rest.len() {
                        return (data.len(), whole);
                    }
                    whole += header.packet_len();
                }
                // A large packet, one to refuse, or a header not complete yet: the caller's next turn sees to it.
                _ => return (whole, whole),
            }
        }
    }

    /// Moves the start of the packet at `buf[scanned..]` into an allocation of exactly `total` bytes, after setting
    /// the whole packets before it aside.
    fn start_own_allocation(&mut self, total: usize) {
        let mut own = BytesMut::with_capacity(total);
        own.extend_from_slice(&self.buf[self.scanned..]);
        self.buf.truncate(self.scanned);
        let before = std::mem::replace(&mut self.buf, own);
        if !before.is_empty() {
            self.framed.get_or_insert_with(Box::default).push_back(before);
        }
        self.scanned = 0;
        self.own_allocation_len = total as u32;
    }

    /// Appends to the packet being received into its own allocation; once it is whole it joins `framed`. Returns
    /// the bytes after it.
    fn fill_own_allocation<'d>(&mut self, data: &'d [u8]) -> &'d [u8] {
        let total = self.own_allocation_len as usize;
        let take = (total - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..take]);
        if self.buf.len() == total {
            let whole = std::mem::take(&mut self.buf);
            self.framed.get_or_insert_with(Box::default).push_back(whole);
            self.own_allocation_len = 0;
        }
        &data[take..]
    }

    /// The next whole packet, `Ok(None)` if more bytes are needed, or an error after which the stream is unusable.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, DecodeError> {
        let from_framed = self.framed.is_some();
        let source = match self.framed.as_deref_mut().and_then(VecDeque::front_mut) {
            Some(front) => front,
            None => &mut self.buf,
        };
        let Some(header) = fixed_header(|i| source.get(i).copied())? else {
            return Ok(None);
        };
        let total = header.packet_len();
        // Checked before buffering the body: a hostile length prefix cannot make us allocate.
        if total > self.max_packet_size as usize {
            // A CONNECT too large is still answered in its own version (CONNACK 0x95) when its level is readable.
            if header.first >> 4 == 1 {
                self.attempted_version = source.get(header.header_len..).and_then(connect_version);
            }
            return Err(DecodeError::PacketTooLarge {
                size: total,
                max: self.max_packet_size as usize,
            });
        }
        if source.len() < total {
            return Ok(None);
        }
        // A four-byte acknowledgement is decoded in place; anything else leaves the buffer as a frame of its own.
        let short_ack = (header.header_len == 2 && total == 4)
            .then(|| decode_short_ack(header.first, [source[2], source[3]], self.version))
            .flatten();
        let frame = match short_ack {
            Some(_) => {
                bytes::Buf::advance(source, total);
                None
            }
            None => Some(source.split_to(total).freeze()),
        };
        if from_framed {
            if source.is_empty() {
                if let Some(framed) = &mut self.framed {
                    framed.pop_front();
                    if framed.is_empty() {
                        // An idle connection keeps no ring buffer.
                        self.framed = None;
                    }
                }
            }
        } else {
            self.scanned = self.scanned.saturating_sub(total);
            if self.buf.is_empty() {
                // Nothing partial is pending: let go of the receive buffer, which the frame shares. An idle
                // connection then holds no buffer at all, and a kept packet no longer pins spare capacity behind it.
                self.buf = BytesMut::new();
            }
        }
        let Some(mut frame) = frame else {
            return short_ack.map_or(Ok(None), |ack| ack.map(Some));
        };
        let body = frame.split_off(header.header_len);
        if header.first >> 4 == 1 {
            self.attempted_version = connect_version(&body);
        }
        let packet = decode_packet(header.first, body, self.version)?;
        if let Packet::Connect(connect) = &packet {
            self.version = Some(connect.protocol);
        }
        Ok(Some(packet))
    }
}

/// Follows packet boundaries in a byte stream without keeping its bytes: how much of the packet being received has
/// come and how much is still to come. For a node that passes a client's bytes on to the broker that decodes them
/// (a cluster follower relaying to the leader), so that its driver can hold the client to the input budget as if
/// it held the partial packet itself.
#[derive(Debug, Default, Clone)]
pub struct PacketTracker {
    /// The fixed header of the packet being received, as far as it came (at most 5 bytes).
    header: [u8; 5],
    header_len: usize,
    /// The whole packet's length, once its fixed header is complete.
    packet_len: Option<usize>,
    /// Bytes of the packet being received so far.
    held: usize,
    /// The stream is malformed (the broker will close it): nothing more is counted.
    broken: bool,
    /// Whole packets seen so far (a client's first is its CONNECT).
    packets: u64,
}

impl PacketTracker {
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.broken {
            let Some(len) = self.packet_len else {
                self.header[self.header_len] = data[0];
                self.header_len += 1;
                self.held += 1;
                data = &data[1..];
                let header = &self.header[..self.header_len];
                match fixed_header(|i| header.get(i).copied()) {
                    Ok(Some(header)) => self.packet_len = Some(header.packet_len()),
                    Ok(None) => {}
                    Err(_) => self.broken = true,
                }
                self.finish_if_whole();
                continue;
            };
            let take = (len - self.held).min(data.len());
            self.held += take;
            data = &data[take..];
            self.finish_if_whole();
        }
    }

    fn finish_if_whole(&mut self) {
        if self.packet_len == Some(self.held) {
            let packets = self.packets + 1;
            *self = PacketTracker {
                packets,
                ..PacketTracker::default()
            };
        }
    }

    /// Whole packets seen so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Bytes of the packet being received so far (0 between packets).
    pub fn held(&self) -> usize {
        if self.broken {
            0
        } else {
            self.held
        }
    }

    /// Bytes still to come before it is whole: 0 between packets, 1 while its length is not known yet.
    pub fn missing(&self) -> usize {
        match (self.broken, self.held, self.packet_len) {
            (true, _, _) | (false, 0, _) => 0,
            (false, held, Some(len)) => len - held,
            (false, _, None) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode;
    use crate::packet::{Publish, QoS};

    fn publish_bytes(payload_len: usize) -> BytesMut {
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "t".into(),
            packet_id: 1,
            properties: Default::default(),
            payload: bytes::Bytes::from(vec![3; payload_len]),
        };
        let mut bytes = BytesMut::new();
        encode(&Packet::Publish(publish), ProtocolVersion::V5, &mut bytes).expect("encodes");
        bytes
    }

    #[test]
    fn a_large_packet_is_received_into_an_allocation_of_its_own() {
        let (small, large) = (publish_bytes(10), publish_bytes(1000));
        let stream = [&small, &large, &small, &large, &large, &small]
            .map(|b| b.to_vec())
            .concat();
        for chunk in [1, 3, 64, 999, 1000, 1010, 5000] {
            let mut decoder = Decoder::new(Some(ProtocolVersion::V5), usize::MAX).with_own_allocation_min(500);
            let mut decoded = Vec::new();
            for piece in stream.chunks(chunk) {
                decoder.feed(piece);
                let framed = decoder.framed.iter().flat_map(|framed| framed.iter());
                for buf in framed.filter(|buf| buf.len() >= 500) {
                    assert_eq!(buf.len(), large.len(), "alone in its buffer (chunk {chunk})");
                    assert_eq!(buf.capacity(), large.len(), "sized to it (chunk {chunk})");
                }
                while let Some(packet) = decoder.next_packet().expect("decodes") {
                    decoded.push(packet);
                }
            }
            assert_eq!(decoded.len(), 6);
            assert_eq!(decoder.buffered(), 0);
            assert!(
                decoder.framed.is_none() && decoder.buf.capacity() == 0,
                "nothing kept once decoded"
            );
        }
    }

    /// A length prefix alone does not make the decoder allocate the packet: at most `MAX_ALLOCATION_AHEAD` beyond
    /// what was received, or as much as was received.
    #[test]
    fn a_large_announced_length_allocates_in_step_with_the_bytes_received() {
        let large = publish_bytes(1 << 20);
        let mut decoder = Decoder::new(Some(ProtocolVersion::V5), usize::MAX).with_own_allocation_min(500);
        decoder.feed(&large[..5]);
        assert!(decoder.buf.capacity() < 1024, "{}", decoder.buf.capacity());
        for piece in large[5..].chunks(64 * 1024) {
            decoder.feed(piece);
            let received = decoder.buffered();
            let framed = decoder.framed.iter().flat_map(|framed| framed.iter());
            let held = decoder.buf.capacity() + framed.map(BytesMut::capacity).sum::<usize>();
            assert!(held <= 2 * received + MAX_ALLOCATION_AHEAD, "{held} for {received}");
        }
        assert!(matches!(decoder.next_packet(), Ok(Some(Packet::Publish(p))) if p.payload.len() == 1 << 20));
    }

    /// The tracker agrees with the decoder on what is held and missing, however the stream is chunked.
    #[test]
    fn the_packet_tracker_follows_boundaries_in_any_chunking() {
        // PINGREQ, a PUBLISH with a 200-byte remaining length (2-byte varint), and the start of another.
        let mut stream = vec![0xC0, 0x00, 0x30, 0xC8, 0x01];
        stream.extend(std::iter::repeat_n(b'p', 200));
        stream.extend([0x30, 0x80, 0x80, 0x01, b'x', b'y']);
        for chunk in [1, 2, 3, 7, 64, stream.len()] {
            let mut tracker = PacketTracker::default();
            let mut fed = 0;
            for piece in stream.chunks(chunk) {
                tracker.feed(piece);
                fed += piece.len();
                let (held, missing) = match fed {
                    0..=1 => (fed, 1),
                    2 => (0, 0),
                    3..=4 => (fed - 2, 1),
                    5..=204 => (fed - 2, 203 - (fed - 2)),
                    205 => (0, 0),
                    206..=208 => (fed - 205, 1),
                    _ => (fed - 205, 4 + 16384 - (fed - 205)),
                };
                assert_eq!(
                    (tracker.held(), tracker.missing()),
                    (held, missing),
                    "chunk {chunk}, fed {fed}"
                );
                assert_eq!(
                    tracker.packets(),
                    [2, 205].iter().filter(|at| fed >= **at).count() as u64
                );
            }
        }
        let mut broken = PacketTracker::default();
        broken.feed(&[0x00, 1, 2, 3]);
        assert_eq!(
            (broken.held(), broken.missing()),
            (0, 0),
            "reserved type 0: the broker closes it"
        );
    }

    /// The in-place decoding of four-byte acknowledgements gives exactly what the general decoder gives, for every
    /// first byte (right and wrong flags [MQTT-2.1.3-1], every packet type), packet id (0 is malformed
    /// [MQTT-2.2.1-3]) and protocol version (none before CONNECT).
    #[test]
    fn four_byte_acknowledgements_decode_in_place_as_the_general_decoder_does() {
        let versions = [
            None,
            Some(ProtocolVersion::V3_1),
            Some(ProtocolVersion::V3_1_1),
            Some(ProtocolVersion::V5),
        ];
        let mut in_place = 0;
        for first in 0..=255u8 {
            for body in [[0, 0], [0, 1], [0x12, 0x34], [0xFF, 0xFF]] {
                for version in versions {
                    let general = decode_packet(first, bytes::Bytes::copy_from_slice(&body), version);
                    if let Some(short) = decode_short_ack(first, body, version) {
                        assert_eq!(short, general, "first byte {first:#04x}, body {body:?}, {version:?}");
                        in_place += 1;
                    }
                    // Through the stream decoder, whichever path it takes, with a packet after it.
                    let mut decoder = Decoder::new(version, 1 << 20);
                    decoder.feed(&[first, 2, body[0], body[1], 0xC0, 0]);
                    assert_eq!(decoder.next_packet().map(|p| p.expect("whole")), general);
                    if general.is_ok() {
                        assert_eq!(decoder.next_packet(), Ok(Some(Packet::PingReq)));
                    }
                }
            }
        }
        // PUBACK, PUBREC, PUBREL, PUBCOMP: 4 types x 16 flag values x 4 bodies x 4 versions.
        assert_eq!(in_place, 4 * 16 * 4 * 4);
    }
}
