//! One accepted TCP connection: its socket and its write path.
//!
//! The core hands out encoded bytes (`Output::Transmit`); this holds whatever the socket would not take yet, in
//! order, and writes it with vectored writes so that many small transmits become one system call. It holds at most
//! what the core handed out: the core bounds its own per-connection output, the driver adds no buffering of its own.

use bytes::{Buf, Bytes};
use mio::net::TcpStream;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Instant;

/// Most slices handed to one `write_vectored` call (Linux's IOV_MAX is 1024; a few dozen already fill a socket
/// buffer).
const MAX_IOV: usize = 64;

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

/// Result of trying to write the pending output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Everything handed out so far is in the kernel.
    Done,
    /// The socket's send buffer is full; the rest waits for a writable event.
    Blocked,
}

pub struct Conn {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub state: State,
    /// `Input::WriteBlocked` was sent and `Input::Writable` not yet.
    pub write_blocked: bool,
    /// WRITABLE interest is registered with the poller.
    pub writable_interest: bool,
    /// Queued in the driver's to-flush list already.
    pub dirty: bool,
    /// Holds output whose records the disk refused: sent only once a snapshot made them durable.
    pub durability_hold: bool,
    pending: VecDeque<Bytes>,
    pending_bytes: usize,
}

impl Conn {
    pub fn new(stream: TcpStream, peer: SocketAddr) -> Conn {
        Conn {
            stream,
            peer,
            state: State::Open,
            write_blocked: false,
            writable_interest: false,
            dirty: false,
            durability_hold: false,
            pending: VecDeque::new(),
            pending_bytes: 0,
        }
    }

    /// Queue bytes to write after everything queued before.
    pub fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.pending_bytes += data.len();
            self.pending.push_back(data);
        }
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Write as much pending output as the socket takes.
    pub fn flush(&mut self) -> io::Result<Flush> {
        while !self.pending.is_empty() {
            let slices: Vec<IoSlice<'_>> = self.pending.iter().take(MAX_IOV).map(|b| IoSlice::new(b)).collect();
            match self.stream.write_vectored(&slices) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => self.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flush::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(Flush::Done)
    }

    /// Drop `n` written bytes from the front of the queue.
    fn consume(&mut self, mut n: usize) {
        self.pending_bytes = self.pending_bytes.saturating_sub(n);
        while n > 0 {
            let Some(front) = self.pending.front_mut() else {
                return;
            };
            if n >= front.len() {
                n -= front.len();
                self.pending.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }

    /// Send FIN after the last byte. Errors mean the peer is gone already, which is what we wanted.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
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
    use super::*;
    use std::io::Read;

    fn pair() -> (Conn, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (Conn::new(TcpStream::from_std(server), peer), client)
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
        conn.consume(4);
        assert_eq!(conn.pending_bytes(), 2);
        assert_eq!(conn.pending.front().map(|b| &b[..]), Some(&b"ef"[..]));
    }
}
