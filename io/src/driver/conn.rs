//! One accepted TCP connection: its socket, its transport (TLS, WebSocket or neither) and its write path.
//!
//! The core hands out encoded bytes (`Output::Transmit`); this holds whatever the socket would not take yet, in
//! order, and writes it with vectored writes so that many small transmits become one system call. It holds at most
//! what the core handed out (plus WebSocket frame headers, and what rustls holds of one buffer): the core bounds
//! its own per-connection output, the driver adds no buffering of its own.

use super::outbox::Outbox;
use super::park::Park;
pub use super::transport::Flush;
use super::transport::{Scratch, Transport, TransportError, Verified};
use super::uring::WireWriter;
use bytes::Bytes;
use mio::net::TcpStream;
use std::io;
use std::time::Instant;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Normal operation: reads go to the core, the core's output is written.
    Open,
    /// The core said Close (or the broker is shutting down): write what is pending, then half-close. Given up at
    /// the deadline.
    Flushing { deadline: Instant },
    /// Our write half is shut; reading and discarding until the peer closes too, so the kernel does not answer
    /// unread input with a reset that could destroy the last bytes we sent. Given up at the deadline.
    Draining { deadline: Instant },
}

pub struct Conn {
    pub stream: TcpStream,
    pub state: State,
    /// `Input::WriteBlocked` was sent and `Input::Writable` not yet.
    pub write_blocked: bool,
    /// WRITABLE interest is registered with the poller.
    pub writable_interest: bool,
    /// Queued in the driver's to-flush list already.
    pub dirty: bool,
    /// Queued in the driver's to-read list already.
    pub readable: bool,
    /// Holds output whose records the disk refused: sent only once a snapshot made them durable.
    pub durability_hold: bool,
    /// Not being read, and why (see `park`).
    pub parked: Option<Park>,
    /// The partial packet the core holds from this connection as of its last read: bytes held, bytes missing.
    pub held_input: usize,
    pub missing_input: usize,
    /// A flush wrote everything queued since its last read: its client reads, so its next read is not held back
    /// for its output (see `park`).
    pub read_grant: bool,
    transport: Transport,
    pending: Outbox,
}

impl Conn {
    pub fn new(stream: TcpStream, transport: Transport) -> Conn {
        Conn {
            stream,
            state: State::Open,
            write_blocked: false,
            writable_interest: false,
            dirty: false,
            readable: false,
            durability_hold: false,
            parked: None,
            held_input: 0,
            missing_input: 0,
            read_grant: false,
            transport,
            pending: Outbox::default(),
        }
    }

    /// The peer's address, for log lines on rare paths: asked of the socket rather than kept, since every idle
    /// connection would carry it (the core has it too, and logs it at connect).
    pub fn peer(&self) -> String {
        self.stream
            .peer_addr()
            .map_or_else(|_| "peer gone".to_string(), |addr| addr.to_string())
    }

    /// Queue bytes from the core to write after everything queued before.
    pub fn push(&mut self, data: Bytes) {
        self.transport.send(data, &mut self.pending);
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// MQTT bytes for the core out of bytes read from the socket (see [`Transport::receive`]).
    pub fn receive<'a>(&mut self, raw: &'a [u8], scratch: &'a mut Scratch) -> Result<&'a [u8], TransportError> {
        self.transport.receive(raw, scratch, &mut self.pending)
    }

    /// What the TLS handshake verified of the client, once (see [`Transport::take_verified`]).
    pub fn take_verified(&mut self) -> Option<Verified> {
        self.transport.take_verified()
    }

    /// The transport ended while the connection was open: the peer's WebSocket close frame came with MQTT bytes
    /// (which were handed on first).
    pub fn transport_ended(&self) -> bool {
        self.state == State::Open && self.transport.peer_closed()
    }

    /// Whether a flush has something to do (transport replies queued by `receive`, say).
    pub fn wants_write(&self) -> bool {
        self.transport.wants_write(&self.pending)
    }

    /// Write as much pending output as the socket takes.
    pub fn flush(&mut self) -> io::Result<Flush> {
        self.transport.flush(&mut self.stream, &mut self.pending)
    }

    /// io_uring: the bytes to send, in order. For TLS, encrypts what rustls takes of the outbox into `wire`
    /// first (the ring sends `wire` then); plain connections send their outbox itself.
    pub fn wire<'a>(&'a mut self, wire: &'a mut WireWriter) -> io::Result<&'a mut Outbox> {
        if self.transport.is_tls() {
            match self.transport.flush(wire, &mut self.pending) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            Ok(&mut wire.out)
        } else {
            Ok(&mut self.pending)
        }
    }

    /// The broker closes: queue the transport's goodbye (a WebSocket close frame) after the core's last bytes.
    pub fn close_transport(&mut self) {
        self.transport.close(&mut self.pending);
    }

    /// Say goodbye after the last byte (TLS close_notify) and send FIN.
    pub fn shutdown_write(&mut self) {
        self.transport.shutdown(&mut self.stream);
    }

    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Open => None,
            State::Flushing { deadline } | State::Draining { deadline } => Some(deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::transport::TransportConfig;
    use super::*;
    use std::io::Read;

    fn pair() -> (Conn, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let transport = Transport::new(&TransportConfig::default()).unwrap();
        (Conn::new(TcpStream::from_std(server), transport), client)
    }

    #[test]
    fn small_transmits_are_written_in_order() {
        let (mut conn, mut client) = pair();
        conn.push(Bytes::from_static(b"ab"));
        conn.push(Bytes::new());
        conn.push(Bytes::from_static(b"cde"));
        assert_eq!(conn.pending_bytes(), 5);
        assert_eq!(conn.flush().unwrap(), Flush::Done);
        assert_eq!(conn.pending_bytes(), 0);
        let mut got = [0u8; 5];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abcde");
    }

    #[test]
    fn a_full_socket_keeps_the_rest_pending() {
        let (mut conn, client) = pair();
        let chunk = Bytes::from(vec![7u8; 1 << 20]);
        for _ in 0..64 {
            conn.push(chunk.clone());
        }
        // 64 MiB cannot fit in the kernel buffers of a peer that is not reading.
        assert_eq!(conn.flush().unwrap(), Flush::Blocked);
        assert!(conn.pending_bytes() > 0 && conn.pending_bytes() < 64 << 20);
        drop(client);
    }

    #[test]
    fn consume_advances_across_chunk_boundaries() {
        let (mut conn, _client) = pair();
        conn.push(Bytes::from_static(b"abc"));
        conn.push(Bytes::from_static(b"def"));
        conn.pending.consume(4);
        assert_eq!(conn.pending_bytes(), 2);
        assert_eq!(conn.pending.front(), Some(&b"ef"[..]));
    }
}
