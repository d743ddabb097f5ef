//! The decoder's self-check, shared by the `decode` fuzz target and the seeded regression test: whatever decodes
//! from arbitrary bytes in arbitrary chunks must re-encode to bytes that decode to the same packet, and a decoder
//! receiving larger packets into allocations of their own must decode exactly what the plain one does.

use super::{encode, Decoder};
use crate::packet::ProtocolVersion;
use bytes::BytesMut;

/// Feeds `data` to a decoder in chunks of the given sizes (cycled; 0 counts as 1). Panics if a decoded packet
/// does not survive encode → decode unchanged, or if a decoder with own allocations from 16 bytes decodes anything
/// else (packet or error) than the plain one. Returns how many packets decoded before the first error or the end.
pub fn decode_reencode(version: Option<ProtocolVersion>, data: &[u8], chunk_sizes: &[usize]) -> usize {
    let mut decoder = Decoder::new(version, 1 << 20);
    let mut own_allocations = Decoder::new(version, 1 << 20).with_own_allocation_min(16);
    let mut offset = 0;
    let mut decoded = 0;
    let mut sizes = chunk_sizes.iter().copied().cycle();
    while offset < data.len() {
        let size = sizes.next().unwrap_or(data.len()).max(1);
        let end = data.len().min(offset + size);
        decoder.feed(&data[offset..end]);
        own_allocations.feed(&data[offset..end]);
        offset = end;
        loop {
            let next = decoder.next_packet();
            assert_eq!(
                next,
                own_allocations.next_packet(),
                "own allocations decode differently"
            );
            assert_eq!(decoder.buffered(), own_allocations.buffered());
            match next {
                Ok(Some(packet)) => {
                    decoded += 1;
                    let Some(packet_version) = decoder.version() else {
                        panic!("a decoded packet leaves the decoder with a version");
                    };
                    let mut bytes = BytesMut::new();
                    if let Err(e) = encode(&packet, packet_version, &mut bytes) {
                        panic!("decoded packet failed to re-encode: {e}: {packet:?}");
                    }
                    let mut again = Decoder::new(Some(packet_version), usize::MAX);
                    again.feed(&bytes);
                    match again.next_packet() {
                        Ok(Some(same)) => assert_eq!(same, packet, "re-decoded packet differs"),
                        other => panic!("re-encoded packet did not decode: {other:?} from {packet:?}"),
                    }
                }
                Ok(None) => break,
                Err(_) => return decoded,
            }
        }
    }
    decoded
}
