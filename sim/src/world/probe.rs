//! What a probe connection (an identity or enhanced-authentication probe) sends and reads: its packets encoded,
//! traced and put on its link behind what it sent before; the broker's bytes fed to the probe's own decoder, every
//! whole packet traced and handed to the probe's step, and bytes that cannot be decoded a violation of their own.

use super::*;

impl World {
    /// Sends `packet` from probe `conn` (`who` names the kind in the trace; `why`, if any, says what for).
    pub(super) fn probe_send(
        &mut self,
        who: &str,
        conn: ConnectionId,
        packet: &Packet,
        version: ProtocolVersion,
        why: Option<&str>,
    ) {
        let data = encoded(packet, version);
        let digest = self.trace.absorb(&data);
        let why = why.map(|why| format!(" ({why})")).unwrap_or_default();
        self.log(format!("{who} {conn:?} sends {}{why} {digest}", describe(packet)));
        let at = self.now + self.delay();
        let at = match self.links.get_mut(&conn) {
            Some(link) => {
                let at = at.max(link.last_to_broker);
                link.last_to_broker = at;
                at
            }
            None => at,
        };
        self.schedule(at, Event::ToBroker { conn, data });
    }

    /// Feeds what the broker sent probe `conn` to its decoder (`decoder_of` its link; none: not a probe of this
    /// kind), and each whole packet, traced, to `step`.
    pub(super) fn probe_receive(
        &mut self,
        who: &str,
        conn: ConnectionId,
        data: &[u8],
        decoder_of: fn(&mut Link) -> Option<&mut Decoder>,
        step: fn(&mut World, ConnectionId, &Packet) -> Result<(), Violation>,
    ) -> Result<(), Violation> {
        let Some(decoder) = self.links.get_mut(&conn).and_then(decoder_of) else {
            return Ok(());
        };
        decoder.feed(data);
        let mut packets = Vec::new();
        loop {
            match decoder.next_packet() {
                Ok(Some(packet)) => packets.push(packet),
                Ok(None) => break,
                Err(e) => {
                    return Err(Violation(format!(
                        "{who} {conn:?} cannot decode what the broker sent: {e}"
                    )))
                }
            }
        }
        for packet in packets {
            self.log(format!("{who} {conn:?} receives {}", describe(&packet)));
            step(self, conn, &packet)?;
        }
        Ok(())
    }
}
