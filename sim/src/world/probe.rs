//! What a probe connection (an identity or enhanced-authentication probe) reads: the broker's bytes fed to the
//! probe's own decoder, every whole packet out, and bytes that cannot be decoded a violation of their own.

use super::*;

/// The whole packets `data` completes in `decoder`; `who` names the probe in the violation.
pub(super) fn whole_packets(decoder: &mut Decoder, data: &[u8], who: &str) -> Result<Vec<Packet>, Violation> {
    decoder.feed(data);
    let mut packets = Vec::new();
    loop {
        match decoder.next_packet() {
            Ok(Some(packet)) => packets.push(packet),
            Ok(None) => return Ok(packets),
            Err(e) => return Err(Violation(format!("{who} cannot decode what the broker sent: {e}"))),
        }
    }
}
