//! A minimal MQTT 3.1.1 client wire format: just what the load generator sends and reads. Deliberately independent
//! of mqtt-core's codec, so that the tool measures every broker (ours included) through the same third-party eyes.

use std::io::{self, Read, Write};

fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    remaining_length(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

fn string(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// CONNECT for MQTT 3.1.1; `clean` is the Clean Session flag (false: a persistent session the broker stores).
pub fn connect(client_id: &str, keep_alive: u16, clean: bool) -> Vec<u8> {
    let mut body = Vec::new();
    string("MQTT", &mut body);
    body.push(4);
    body.push(if clean { 0x02 } else { 0x00 });
    body.extend_from_slice(&keep_alive.to_be_bytes());
    string(client_id, &mut body);
    packet(0x10, &body)
}

pub fn subscribe(packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    string(filter, &mut body);
    body.push(qos);
    packet(0x82, &body)
}

pub fn publish(topic: &str, qos: u8, packet_id: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 4);
    string(topic, &mut body);
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1), &body)
}

pub fn ack(kind: u8, packet_id: u16) -> [u8; 4] {
    let id = packet_id.to_be_bytes();
    [kind, 2, id[0], id[1]]
}

pub const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// One packet as read from the wire: first byte and body.
pub struct Frame {
    pub first: u8,
    pub body: Vec<u8>,
}

impl Frame {
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }

    pub fn packet_id(&self) -> Option<u16> {
        Some(u16::from_be_bytes([*self.body.first()?, *self.body.get(1)?]))
    }

    /// Topic, packet id and payload of a PUBLISH.
    pub fn publish(&self) -> Option<(&[u8], u16, &[u8])> {
        let len = usize::from(u16::from_be_bytes([*self.body.first()?, *self.body.get(1)?]));
        let topic = self.body.get(2..2 + len)?;
        let qos = (self.first >> 1) & 3;
        let mut rest = 2 + len;
        let mut packet_id = 0;
        if qos > 0 {
            packet_id = u16::from_be_bytes([*self.body.get(rest)?, *self.body.get(rest + 1)?]);
            rest += 2;
        }
        Some((topic, packet_id, self.body.get(rest..)?))
    }
}

/// Reads packets from a buffered stream.
pub struct Reader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader {
            inner,
            buf: Vec::with_capacity(1 << 16),
            start: 0,
        }
    }

    fn frame_len(&self) -> Option<(usize, usize)> {
        let data = &self.buf[self.start..];
        let mut len = 0usize;
        for i in 0..4 {
            let byte = *data.get(1 + i)?;
            len |= usize::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                return Some((2 + i, len));
            }
        }
        None
    }

    /// Whether a whole frame is already buffered (so `next` will not block).
    pub fn has_frame(&self) -> bool {
        self.frame_len()
            .is_some_and(|(header, len)| self.buf.len() - self.start >= header + len)
    }

    pub fn next(&mut self) -> io::Result<Frame> {
        loop {
            if let Some((header, len)) = self.frame_len() {
                if self.buf.len() - self.start >= header + len {
                    let first = self.buf[self.start];
                    let body = self.buf[self.start + header..self.start + header + len].to_vec();
                    self.start += header + len;
                    return Ok(Frame { first, body });
                }
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let mut chunk = [0u8; 65536];
            let n = self.inner.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "broker closed the connection",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Connects and waits for CONNACK accepted.
pub fn handshake<S: Read + Write>(stream: &mut S, client_id: &str, clean: bool) -> io::Result<()> {
    stream.write_all(&connect(client_id, 600, clean))?;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack)?;
    if connack[0] != 0x20 || connack[3] != 0 {
        return Err(io::Error::other(format!("CONNACK refused: {connack:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_round_trips_through_the_reader() {
        let bytes = publish("a/b", 1, 7, &[9; 300]);
        let mut reader = Reader::new(&bytes[..]);
        let frame = reader.next().expect("one frame");
        assert_eq!(frame.kind(), 3);
        let (topic, id, payload) = frame.publish().expect("a publish");
        assert_eq!((topic, id, payload.len()), (&b"a/b"[..], 7, 300));
    }

    #[test]
    fn remaining_length_uses_two_bytes_past_127() {
        let bytes = publish("t", 0, 0, &[0; 200]);
        assert_eq!(&bytes[..3], &[0x30, 0xCB, 0x01]);
    }
}
