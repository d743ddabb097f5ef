//! A minimal MQTT 3.1.1 and 5.0 client wire format: just what the load generator sends and reads (in 5.0 every packet
//! carries an empty property list, and acknowledgements use the short form that means Success). Deliberately independent
//! of mqtt-core's codec, so that the tool measures every broker (ours included) through the same third-party eyes.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long the tool waits for the broker at each setup step (TCP connect, CONNACK, SUBACK): a broker that is slow
/// or stuck (or slowed by strace) makes a failed run with an error naming the step, never a hung one.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one write may block during a run: a peer that takes no bytes for this long fails the run.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

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

/// CONNECT for MQTT 3.1.1 or (`v5`) 5.0; `clean` is the Clean Session / Clean Start flag (false: a persistent
/// session the broker stores; in 5.0 a Session Expiry Interval of 0 would end it at disconnect, so none is sent
/// only for a clean one).
pub fn connect(client_id: &str, keep_alive: u16, clean: bool, v5: bool) -> Vec<u8> {
    let mut body = Vec::new();
    string("MQTT", &mut body);
    body.push(if v5 { 5 } else { 4 });
    body.push(if clean { 0x02 } else { 0x00 });
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if v5 {
        if clean {
            body.push(0);
        } else {
            // Session Expiry Interval (0x11): an hour, so the session outlives the connection like 3.1.1's.
            body.extend_from_slice(&[5, 0x11, 0, 0, 0x0E, 0x10]);
        }
    }
    string(client_id, &mut body);
    packet(0x10, &body)
}

pub fn subscribe(packet_id: u16, filter: &str, qos: u8, v5: bool) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    string(filter, &mut body);
    body.push(qos);
    packet(0x82, &body)
}

pub fn publish(topic: &str, qos: u8, packet_id: u16, payload: &[u8], v5: bool) -> Vec<u8> {
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 5);
    string(topic, &mut body);
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    if v5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1), &body)
}

pub const PINGREQ: [u8; 2] = [0xC0, 0x00];

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

    /// Topic, packet id and payload of a PUBLISH (`v5`: a property list precedes the payload).
    pub fn publish(&self, v5: bool) -> Option<(&[u8], u16, &[u8])> {
        let len = usize::from(u16::from_be_bytes([*self.body.first()?, *self.body.get(1)?]));
        let topic = self.body.get(2..2 + len)?;
        let qos = (self.first >> 1) & 3;
        let mut rest = 2 + len;
        let mut packet_id = 0;
        if qos > 0 {
            packet_id = u16::from_be_bytes([*self.body.get(rest)?, *self.body.get(rest + 1)?]);
            rest += 2;
        }
        if v5 {
            let (header, len) = varint(self.body.get(rest..)?)?;
            rest += header + len;
        }
        Some((topic, packet_id, self.body.get(rest..)?))
    }
}

/// A Variable Byte Integer: (bytes it takes, value).
fn varint(data: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for i in 0..4 {
        let byte = *data.get(i)?;
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((i + 1, value));
        }
    }
    None
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

    /// The stream read from (to write to it too, without a second descriptor).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
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

/// Connects over TCP and completes the MQTT handshake, each wait bounded by [`SETUP_TIMEOUT`]. The read timeout is
/// left at [`SETUP_TIMEOUT`] (callers bound their SUBACK wait with it, then set their own); writes stay bounded by
/// [`WRITE_TIMEOUT`].
pub fn open(broker: SocketAddr, client_id: &str, clean: bool, v5: bool) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&broker, SETUP_TIMEOUT).map_err(|e| step_failed(e, "TCP connect"))?;
    handshake_bounded(&mut stream, client_id, clean, v5)?;
    Ok(stream)
}

/// [`handshake`] on a connected socket with its waits bounded (see [`open`]).
pub fn handshake_bounded(stream: &mut TcpStream, client_id: &str, clean: bool, v5: bool) -> io::Result<()> {
    stream.set_read_timeout(Some(SETUP_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    handshake(stream, client_id, clean, v5).map_err(|e| step_failed(e, "CONNACK"))
}

/// Names the setup step an error came from; a timeout says how long was waited.
pub fn step_failed(e: io::Error, step: &str) -> io::Error {
    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
        let secs = SETUP_TIMEOUT.as_secs();
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no {step} from the broker within {secs} s"),
        )
    } else {
        io::Error::new(e.kind(), format!("{step}: {e}"))
    }
}

/// Connects and waits for CONNACK accepted. Reads exactly the CONNACK (a 5.0 one carries properties), nothing after.
pub fn handshake<S: Read + Write>(stream: &mut S, client_id: &str, clean: bool, v5: bool) -> io::Result<()> {
    stream.write_all(&connect(client_id, 600, clean, v5))?;
    let mut header = [0u8; 2];
    stream.read_exact(&mut header)?;
    let mut len = usize::from(header[1] & 0x7F);
    if header[1] & 0x80 != 0 {
        let mut more = [0u8; 1];
        stream.read_exact(&mut more)?;
        len |= usize::from(more[0] & 0x7F) << 7;
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    if header[0] != 0x20 || body.get(1) != Some(&0) {
        return Err(io::Error::other(format!("CONNACK refused: {header:?} {body:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_round_trips_through_the_reader() {
        for v5 in [false, true] {
            let bytes = publish("a/b", 1, 7, &[9; 300], v5);
            let mut reader = Reader::new(&bytes[..]);
            let frame = reader.next().expect("one frame");
            assert_eq!(frame.kind(), 3);
            let (topic, id, payload) = frame.publish(v5).expect("a publish");
            assert_eq!((topic, id, payload), (&b"a/b"[..], 7, &[9; 300][..]));
        }
    }

    #[test]
    fn a_v5_publish_skips_the_properties_a_broker_adds() {
        // QoS 0, topic "t", properties: Subscription Identifier 1 (0x0B 0x01), then payload "hi".
        let frame = Frame {
            first: 0x30,
            body: vec![0, 1, b't', 2, 0x0B, 1, b'h', b'i'],
        };
        assert_eq!(frame.publish(true), Some((&b"t"[..], 0, &b"hi"[..])));
    }

    #[test]
    fn a_v5_connack_with_properties_is_read_whole() {
        // CONNACK, session present 0, Success, properties: Receive Maximum 10 (0x21 0x00 0x0A); then one more byte.
        let mut wire = std::io::Cursor::new(vec![0x20, 6, 0, 0, 3, 0x21, 0, 10, 0xAA]);
        struct Duplex<'a>(&'a mut std::io::Cursor<Vec<u8>>);
        impl Read for Duplex<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.0.read(buf)
            }
        }
        impl Write for Duplex<'_> {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        handshake(&mut Duplex(&mut wire), "c", true, true).expect("accepted");
        assert_eq!(wire.position(), 8, "the byte after the CONNACK is left unread");
    }

    #[test]
    fn a_broker_that_never_answers_connect_fails_the_handshake_with_a_timeout() {
        // A listener that accepts (the kernel completes the TCP handshake) but never sends CONNACK.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let started = std::time::Instant::now();
        let err = open(addr, "c", true, false).expect_err("no CONNACK ever comes");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("no CONNACK"), "{err}");
        assert!(started.elapsed() < SETUP_TIMEOUT + Duration::from_secs(5));
        drop(listener);
    }

    #[test]
    fn remaining_length_uses_two_bytes_past_127() {
        let bytes = publish("t", 0, 0, &[0; 200], false);
        assert_eq!(&bytes[..3], &[0x30, 0xCB, 0x01]);
    }
}
