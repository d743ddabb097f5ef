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
///
/// Linear in the length of `data`, whatever it holds: checking each candidate offset by checksumming its body (as
/// `scan` does) would be quadratic when damage reads as many long lengths. Instead the checksum of any byte range
/// comes from prefix checksums kept every `STRIDE` bytes, shifted by CRC-32's combine rule, in O(STRIDE + log n).
pub fn valid_frame_after(data: &[u8], offset: usize) -> Option<usize> {
    const STRIDE: usize = 64;
    let base = offset.checked_add(1)?;
    let region = data.get(base..)?;
    if region.len() < HEADER {
        return None;
    }
    // checkpoints[k]: the CRC-32 of region[..k * STRIDE].
    let mut checkpoints = Vec::with_capacity(region.len() / STRIDE + 1);
    let mut hasher = crc32fast::Hasher::new();
    checkpoints.push(hasher.clone().finalize());
    for chunk in region.chunks(STRIDE) {
        hasher.update(chunk);
        checkpoints.push(hasher.clone().finalize());
    }
    let prefix = |end: usize| {
        let k = end / STRIDE;
        let mut h = crc32fast::Hasher::new_with_initial_len(checkpoints[k], (k * STRIDE) as u64);
        h.update(&region[k * STRIDE..end]);
        h.finalize()
    };
    // crc(A ++ B) = combine(crc(A), crc(B), |B|) = shift(crc(A), |B|) ^ crc(B), so crc(B) = crc(A ++ B) ^ shift(..).
    let range = |start: usize, end: usize| prefix(end) ^ combine(prefix(start), 0, end - start);
    (0..=region.len() - HEADER).find_map(|at| {
        let rest = &region[at..];
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let crc = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let body_len = len as usize;
        if body_len == 0 || body_len > MAX_BODY || rest.len() - HEADER < body_len {
            return None;
        }
        let body = range(at + HEADER, at + HEADER + body_len);
        let whole = combine(crc32fast::hash(&len.to_be_bytes()), body, body_len);
        (whole == crc).then_some(base + at)
    })
}

/// The CRC-32 of `A ++ B` from the CRC-32s of `A` and `B` and the length of `B`.
fn combine(a: u32, b: u32, b_len: usize) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial_len(a, 0);
    h.combine(&crc32fast::Hasher::new_with_initial_len(b, b_len as u64));
    h.finalize()
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

    /// The search the prefix checksums replace: every offset, each body checksummed.
    fn valid_frame_after_naive(data: &[u8], offset: usize) -> Option<usize> {
        (offset + 1..data.len().saturating_sub(HEADER - 1))
            .find(|&at| matches!(scan(data, at), Scan::Frame { body, .. } if !body.is_empty()))
    }

    #[test]
    fn the_linear_search_finds_what_checksumming_every_offset_finds() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        for round in 0..300 {
            let mut out = BytesMut::new();
            for i in 0..rng.gen_range(1..6) {
                let body: Vec<u8> = (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect();
                put(&mut out, &body);
                if i == 0 && round % 3 == 0 {
                    // Garbage whose lengths are small enough to fit: the costly case for the old search.
                    out.extend((0..rng.gen_range(0..200)).map(|j| if j % 4 == 3 { rng.gen() } else { 0 }));
                }
            }
            let mut data = out.to_vec();
            for _ in 0..rng.gen_range(0..4) {
                let at = rng.gen_range(0..data.len());
                data[at] ^= rng.gen_range(1..=255u8);
            }
            for offset in [0, 1, 5, data.len() / 2, data.len().saturating_sub(9), data.len()] {
                assert_eq!(
                    valid_frame_after(&data, offset),
                    valid_frame_after_naive(&data, offset),
                    "round {round}, offset {offset}"
                );
            }
        }
    }

    #[test]
    fn the_search_is_linear_on_damage_that_reads_as_long_lengths() {
        // 512 KiB in which every fourth offset announces a 192 KiB body that fits: checksumming each would read
        // about 16 GB; the prefix checksums read the data once.
        let n = 512 * 1024;
        let data: Vec<u8> = (0..n).map(|i| [0x00, 0x03, 0x00, 0x00][i % 4]).collect();
        assert_eq!(valid_frame_after(&data, 0), None);
        let mut out = BytesMut::from(&data[..]);
        put(&mut out, b"valid at last");
        assert_eq!(valid_frame_after(&out, 0), Some(n));
    }
}
