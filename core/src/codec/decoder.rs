//! The incremental decoder: bytes in, in any chunking; whole packets out.

use super::decode::{connect_version, decode_packet};
use super::error::DecodeError;
use super::primitive::varint_len;
use crate::packet::{Packet, ProtocolVersion};
use bytes::BytesMut;

/// Turns a stream of bytes, fed in arbitrary chunks, into packets.
///
/// A server-side decoder starts without a version: the first packet must be CONNECT, which carries it; decoding a
/// CONNECT sets the decoder's version. A client-side decoder is created with the version it connected with.
pub struct Decoder {
    buf: BytesMut,
    version: Option<ProtocolVersion>,
    /// Kept as u32 (MQTT's own bound, 268,435,460 bytes, fits): one decoder per connection.
    max_packet_size: u32,
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

impl Decoder {
    /// `max_packet_size` bounds the whole packet (fixed header included); it is checked as soon as the fixed header
    /// is complete, before the body is buffered.
    pub fn new(version: Option<ProtocolVersion>, max_packet_size: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            version,
            max_packet_size: u32::try_from(max_packet_size).unwrap_or(u32::MAX),
            attempted_version: None,
        }
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
        self.buf.len()
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The fixed header, if enough bytes are there to know it [MQTT-2.1.1]. Never looks past 5 bytes.
    fn fixed_header(&self) -> Result<Option<FixedHeader>, DecodeError> {
        let Some(&first) = self.buf.first() else {
            return Ok(None);
        };
        // Packet type 0 is reserved (section 2.1.2): nothing that follows can make the stream valid, so it is
        // refused on its first byte rather than after waiting for a length and a body.
        if first >> 4 == 0 {
            return Err(DecodeError::InvalidPacketType(0));
        }
        let mut remaining: usize = 0;
        for (i, shift) in [0usize, 7, 14, 21].into_iter().enumerate() {
            let Some(&byte) = self.buf.get(1 + i) else {
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

    /// The next whole packet, `Ok(None)` if more bytes are needed, or an error after which the stream is unusable.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, DecodeError> {
        let Some(header) = self.fixed_header()? else {
            return Ok(None);
        };
        let total = header.header_len + header.remaining;
        // Checked before buffering the body: a hostile length prefix cannot make us allocate.
        if total > self.max_packet_size as usize {
            return Err(DecodeError::PacketTooLarge {
                size: total,
                max: self.max_packet_size as usize,
            });
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let mut frame = self.buf.split_to(total).freeze();
        if self.buf.is_empty() {
            // Nothing partial is pending: let go of the receive buffer, which the frame shares. An idle connection
            // then holds no buffer at all, and a kept packet no longer pins spare capacity behind it.
            self.buf = BytesMut::new();
        }
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
