//! The data representations of MQTT section 1.5: integers, Variable Byte Integers, UTF-8 strings, binary data.
//! `Reader` parses them from a packet body without copying; `Sink` writes them either into a buffer or into a
//! counter, so that each packet's encoder is written once and also yields its exact length.

use super::error::{DecodeError, EncodeError};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest value of a Variable Byte Integer [MQTT-1.5.5].
pub const VARINT_MAX: u32 = 268_435_455;

/// Reads fields from one packet body.
pub struct Reader {
    data: Bytes,
}

impl Reader {
    pub fn new(data: Bytes) -> Reader {
        Reader { data }
    }

    pub fn remaining(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, not consumed.
    pub fn peek_u8(&self) -> Option<u8> {
        self.data.first().copied()
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.data.is_empty() {
            return Err(DecodeError::UnexpectedEnd);
        }
        Ok(self.data.get_u8())
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.data.len() < 2 {
            return Err(DecodeError::UnexpectedEnd);
        }
        Ok(self.data.get_u16())
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        if self.data.len() < 4 {
            return Err(DecodeError::UnexpectedEnd);
        }
        Ok(self.data.get_u32())
    }

    /// A big-endian u64 read in place (the persisted records' keys and times; MQTT itself has none).
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        if self.data.len() < 8 {
            return Err(DecodeError::UnexpectedEnd);
        }
        Ok(self.data.get_u64())
    }

    /// `n` bytes copied into a buffer of their own, for what outlives the buffer it is read from (a stored
    /// message's payload); no shared handle is taken on the way.
    pub fn copied(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if self.data.len() < n {
            return Err(DecodeError::UnexpectedEnd);
        }
        let out = Bytes::copy_from_slice(&self.data[..n]);
        self.data.advance(n);
        Ok(out)
    }

    /// A Variable Byte Integer: at most four bytes [MQTT-1.5.5-1].
    pub fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value: u32 = 0;
        for shift in [0u32, 7, 14, 21] {
            let byte = self.u8()?;
            value |= u32::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::MalformedVariableInteger)
    }

    /// `n` bytes as a zero-copy slice.
    pub fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if self.data.len() < n {
            return Err(DecodeError::UnexpectedEnd);
        }
        Ok(self.data.split_to(n))
    }

    /// Binary Data: two-byte length then bytes [MQTT-1.5.6].
    pub fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        self.bytes(len)
    }

    /// UTF-8 Encoded String [MQTT-1.5.4]: well-formed (no surrogates) [MQTT-1.5.4-1], no U+0000 [MQTT-1.5.4-2].
    pub fn string(&mut self) -> Result<String, DecodeError> {
        let raw = self.binary()?;
        let text = std::str::from_utf8(&raw).map_err(|_| DecodeError::InvalidUtf8)?;
        if text.contains('\0') {
            return Err(DecodeError::NullCharacter);
        }
        Ok(text.to_string())
    }

    /// Everything left (a PUBLISH payload).
    pub fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.data)
    }

    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

/// Number of bytes of a Variable Byte Integer.
pub fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Where encoded bytes go: a real buffer, or a counter that only measures.
pub trait Sink {
    fn put_u8(&mut self, value: u8);
    fn put_slice(&mut self, bytes: &[u8]);

    fn put_u16(&mut self, value: u16) {
        self.put_slice(&value.to_be_bytes());
    }

    fn put_u32(&mut self, value: u32) {
        self.put_slice(&value.to_be_bytes());
    }

    fn put_varint(&mut self, value: usize) -> Result<(), EncodeError> {
        if value > VARINT_MAX as usize {
            return Err(EncodeError::InvalidVariableInteger);
        }
        let mut rest = value;
        loop {
            let mut byte = (rest % 128) as u8;
            rest /= 128;
            if rest > 0 {
                byte |= 0x80;
            }
            self.put_u8(byte);
            if rest == 0 {
                return Ok(());
            }
        }
    }

    fn put_binary(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let len = u16::try_from(bytes.len()).map_err(|_| EncodeError::FieldTooLong)?;
        self.put_u16(len);
        self.put_slice(bytes);
        Ok(())
    }

    fn put_string(&mut self, text: &str) -> Result<(), EncodeError> {
        self.put_binary(text.as_bytes())
    }
}

impl Sink for BytesMut {
    fn put_u8(&mut self, value: u8) {
        BufMut::put_u8(self, value);
    }

    fn put_slice(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Counts bytes instead of writing them.
#[derive(Default)]
pub struct Counter(pub usize);

impl Sink for Counter {
    fn put_u8(&mut self, _value: u8) {
        self.0 += 1;
    }

    fn put_slice(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}
