//! Encoding and incremental decoding of MQTT control packets (MQTT 3.1, 3.1.1 and 5.0).
//!
//! CONTRACT (owned by the codec work): keep these public signatures; add modules and items freely.

use crate::packet::{Packet, ProtocolVersion, ReasonCode};
use bytes::BytesMut;

/// Why bytes could not be decoded into a packet. Each maps to the MQTT 5.0 reason code the server must use when it
/// closes the connection because of it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The remaining length would exceed the allowed maximum packet size.
    PacketTooLarge { size: usize, max: usize },
    /// Placeholder until the codec lands.
    Malformed,
}

impl DecodeError {
    /// The reason code for the DISCONNECT (or CONNACK) the server sends because of this error.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::Malformed => ReasonCode::MALFORMED_PACKET,
        }
    }
}

/// Why a packet could not be encoded (a value out of the range the protocol can express).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    PayloadTooLarge,
}

/// Appends the wire form of `packet` for protocol `version` to `out`.
pub fn encode(_packet: &Packet, _version: ProtocolVersion, _out: &mut BytesMut) -> Result<(), EncodeError> {
    todo!()
}

/// The number of bytes `encode` would append (fixed header included), used to honour a peer's Maximum Packet Size.
pub fn encoded_len(_packet: &Packet, _version: ProtocolVersion) -> usize {
    todo!()
}

/// Turns a stream of bytes, fed in arbitrary chunks, into packets.
///
/// A server-side decoder starts without a version: the first packet must be CONNECT, which carries it; decoding a
/// CONNECT sets the decoder's version. A client-side decoder is created with the version it connected with.
pub struct Decoder {
    _buf: BytesMut,
}

impl Decoder {
    /// `max_packet_size` bounds the whole packet (fixed header included); it is checked as soon as the fixed header
    /// is complete, before the body is buffered.
    pub fn new(_version: Option<ProtocolVersion>, _max_packet_size: usize) -> Self {
        todo!()
    }

    pub fn version(&self) -> Option<ProtocolVersion> {
        todo!()
    }

    pub fn set_version(&mut self, _version: ProtocolVersion) {
        todo!()
    }

    pub fn set_max_packet_size(&mut self, _max: usize) {
        todo!()
    }

    /// Appends received bytes.
    pub fn feed(&mut self, _data: &[u8]) {
        todo!()
    }

    /// The next whole packet, `Ok(None)` if more bytes are needed, or an error after which the stream is unusable.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, DecodeError> {
        todo!()
    }
}
