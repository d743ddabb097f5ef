//! Record framing in storage: `[u32 length][u32 CRC-32 of length and body][body]`, big-endian. The checksum covers the
//! length too, so a flipped bit in either is caught; a frame cut short by a crash shows as one that runs past the end.

use bytes::{BufMut, BytesMut};

pub const HEADER: usize = 8;
/// No single record comes near this (a packet is at most 256 MiB); a larger length is corruption.
pub const MAX_BODY: usize = 512 * 1024 * 1024;

pub fn checksum(len: u32, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len.to_be_bytes());
    hasher.update(body);
    hasher.finalize()
}

/// Appends one frame around `body`.
pub fn put(out: &mut BytesMut, body: &[u8]) {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    out.put_u32(len);
    out.put_u32(checksum(len, body));
    out.put_slice(body);
}

/// What is at `offset` of `data`.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan<'a> {
    /// A whole frame with a matching checksum; the next one starts at `next`.
    Frame { body: &'a [u8], next: usize },
    /// Nothing more.
    End,
    /// A frame header or body that runs past the end of the data: a write cut short.
    Truncated,
    /// A complete frame whose checksum does not match, or an impossible length.
    Corrupt,
}

pub fn scan(data: &[u8], offset: usize) -> Scan<'_> {
    let rest = data.get(offset..).unwrap_or_default();
    if rest.is_empty() {
        return Scan::End;
    }
    if rest.len() < HEADER {
        return Scan::Truncated;
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let crc = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
    let body_len = len as usize;
    if body_len > MAX_BODY {
        return Scan::Corrupt;
    }
    let Some(body) = rest.get(HEADER..HEADER + body_len) else {
        return Scan::Truncated;
    };
    if checksum(len, body) != crc {
        return Scan::Corrupt;
    }
    Scan::Frame {
        body,
        next: offset + HEADER + body_len,
    }
}

/// Whether any valid frame starts after `offset`: tells corruption in the middle of a log (valid data follows,
/// which must not be silently dropped) from a torn tail (nothing valid follows).
pub fn valid_frame_after(data: &[u8], offset: usize) -> Option<usize> {
    (offset + 1..data.len().saturating_sub(HEADER - 1))
        .find(|&at| matches!(scan(data, at), Scan::Frame { body, .. } if !body.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_damage_is_classified() {
        let mut out = BytesMut::new();
        put(&mut out, b"first");
        put(&mut out, b"second");
        let data = out.to_vec();
        let Scan::Frame { body, next } = scan(&data, 0) else {
            panic!("first frame")
        };
        assert_eq!(body, b"first");
        assert!(matches!(scan(&data, next), Scan::Frame { body: b"second", .. }));
        // Cut anywhere inside the second frame: truncated.
        for cut in next + 1..data.len() {
            assert_eq!(scan(&data[..cut], next), Scan::Truncated, "cut at {cut}");
        }
        // Any single flipped bit in the first frame is caught.
        for byte in 0..next {
            for bit in 0..8 {
                let mut bad = data.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    !matches!(scan(&bad, 0), Scan::Frame { body: b"first", .. }),
                    "flip at byte {byte} bit {bit} not caught"
                );
            }
        }
        let mut bad = data.clone();
        bad[9] ^= 0x40;
        assert_eq!(scan(&bad, 0), Scan::Corrupt);
        assert_eq!(valid_frame_after(&bad, 0), Some(next));
    }
}
