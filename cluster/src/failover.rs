//! What a client sees when the broker holding its session state stops serving (a leader change): its connection
//! is closed, and an MQTT 5 client that has its CONNACK is first told why, with DISCONNECT 0x8B "Server shutting
//! down" [MQTT-3.14.2-1], so it reconnects at once (to any node) instead of waiting for its keep-alive.
//!
//! The node that holds the client's socket watches the two byte streams just enough to know when that is allowed:
//! the protocol level of the CONNECT (MQTT 5 only: 3.1.1 has no server DISCONNECT), whether the CONNACK went out
//! (a DISCONNECT before it is a protocol error [MQTT-3.2.0-1]), and whether the bytes handed out so far end on a
//! packet boundary (a DISCONNECT inside a half-sent PUBLISH would be garbage).

use bytes::Bytes;

/// DISCONNECT, reason 0x8B Server shutting down [MQTT-3.14.2-1], property length 0. The spec lets a server omit
/// the property length when there are none, but some clients (rumqttc 0.25) then wait for it forever.
pub const DISCONNECT_SERVER_SHUTTING_DOWN: [u8; 4] = [0xE0, 0x02, 0x8B, 0x00];
/// The CONNECT bytes looked at: fixed header (at most 5), protocol name (at most 2 + 6), level.
const CONNECT_PREFIX: usize = 16;

/// One connection's watch.
#[derive(Debug, Default, Clone)]
pub struct Watch {
    /// The first bytes from the client, until its protocol level is known.
    head: Vec<u8>,
    /// The CONNECT's protocol level once seen (5: MQTT 5).
    level: Option<u8>,
    /// Whether the server's first packet (the CONNACK) went out.
    connacked: bool,
    frames: Frames,
}

impl Watch {
    /// Bytes from the client.
    pub fn upstream(&mut self, data: &[u8]) {
        if self.level.is_some() || self.head.len() >= CONNECT_PREFIX {
            return;
        }
        let take = data.len().min(CONNECT_PREFIX - self.head.len());
        self.head.extend_from_slice(&data[..take]);
        self.level = connect_level(&self.head);
    }

    /// Bytes to the client.
    pub fn downstream(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.connacked = true;
        }
        self.frames.feed(data);
    }

    /// The DISCONNECT to send before closing, if one may be sent.
    pub fn disconnect(&self) -> Option<Bytes> {
        (self.level == Some(5) && self.connacked && self.frames.at_boundary())
            .then(|| Bytes::from_static(&DISCONNECT_SERVER_SHUTTING_DOWN))
    }
}

/// The protocol level of a CONNECT from its first bytes, once they are all there.
fn connect_level(head: &[u8]) -> Option<u8> {
    if head.first()? >> 4 != 1 {
        return Some(0);
    }
    // Remaining length: 1 to 4 bytes, continuation bit 0x80.
    let mut at = 1;
    while head.get(at)? & 0x80 != 0 {
        at += 1;
        if at > 4 {
            return Some(0);
        }
    }
    at += 1;
    let name_len = u16::from_be_bytes([*head.get(at)?, *head.get(at + 1)?]) as usize;
    head.get(at + 2 + name_len).copied()
}

/// Where a stream of MQTT packets stands.
#[derive(Debug, Default, Clone)]
struct Frames {
    state: FrameState,
}

#[derive(Debug, Default, Clone, Copy)]
enum FrameState {
    #[default]
    Header,
    Length {
        value: usize,
        shift: u32,
    },
    Body(usize),
}

impl Frames {
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            self.state = match self.state {
                FrameState::Header => {
                    data = &data[1..];
                    FrameState::Length { value: 0, shift: 0 }
                }
                FrameState::Length { value, shift } => {
                    let byte = data[0];
                    data = &data[1..];
                    let value = value | (usize::from(byte & 0x7f) << shift);
                    if byte & 0x80 != 0 && shift < 21 {
                        FrameState::Length {
                            value,
                            shift: shift + 7,
                        }
                    } else if value == 0 {
                        FrameState::Header
                    } else {
                        FrameState::Body(value)
                    }
                }
                FrameState::Body(left) => {
                    let take = left.min(data.len());
                    data = &data[take..];
                    if take == left {
                        FrameState::Header
                    } else {
                        FrameState::Body(left - take)
                    }
                }
            };
        }
    }

    fn at_boundary(&self) -> bool {
        matches!(self.state, FrameState::Header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONNECT_V5: &[u8] = &[
        0x10, 0x10, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3c, 0x00,
    ];
    const CONNECT_V311: &[u8] = &[0x10, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c];
    const CONNACK_V5: &[u8] = &[0x20, 0x03, 0x00, 0x00, 0x00];

    #[test]
    fn an_mqtt5_client_past_connack_gets_a_disconnect() {
        let mut w = Watch::default();
        assert!(w.disconnect().is_none(), "nothing known yet");
        w.upstream(&CONNECT_V5[..3]);
        w.upstream(&CONNECT_V5[3..]);
        assert!(
            w.disconnect().is_none(),
            "no DISCONNECT before the CONNACK [MQTT-3.2.0-1]"
        );
        w.downstream(CONNACK_V5);
        assert_eq!(w.disconnect().as_deref(), Some(&DISCONNECT_SERVER_SHUTTING_DOWN[..]));
        // Half a PUBLISH out: no DISCONNECT in the middle of it.
        w.downstream(&[0x30, 0x85, 0x01, 0x00]);
        assert!(w.disconnect().is_none());
        w.downstream(&[0u8; 132]);
        assert!(
            w.disconnect().is_some(),
            "the PUBLISH (remaining length 133) is complete"
        );
    }

    #[test]
    fn an_mqtt311_client_gets_none() {
        let mut w = Watch::default();
        w.upstream(CONNECT_V311);
        w.downstream(&[0x20, 0x02, 0x00, 0x00]);
        assert!(w.disconnect().is_none(), "3.1.1 has no server DISCONNECT");
    }
}
