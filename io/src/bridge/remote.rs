//! A bridge's connection to its remote broker: a non-blocking TCP socket, optionally wrapped in a rustls client
//! session, with the bytes the socket would not take yet.

use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

/// Past this many unwritten bytes the bridge publishes nothing more to the remote until they are written.
pub const BLOCKED_AT: usize = 256 * 1024;

pub struct Remote {
    pub stream: TcpStream,
    tls: Option<rustls::ClientConnection>,
    /// The TCP handshake completed (`Input::Opened` given to the bridge).
    pub connected: bool,
    /// Readiness said readable and a read has not yet returned `WouldBlock`.
    pub readable: bool,
    /// Plain-TCP bytes not written yet; with TLS, rustls holds them.
    unsent: VecDeque<u8>,
    /// `Input::Blocked(Remote, true)` was given to the bridge.
    pub blocked: bool,
}

/// What a read produced.
pub enum ReadResult {
    Data(usize),
    WouldBlock,
    Closed(String),
}

impl Remote {
    /// Starts connecting to `address` (`host:port`, resolved now: blocking for a host name, instant for an IP).
    pub fn connect(address: &str, tls: Option<(&Arc<rustls::ClientConfig>, &str)>) -> io::Result<Remote> {
        let addr: SocketAddr = address
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{address}: no address")))?;
        let stream = TcpStream::connect(addr)?;
        let tls = match tls {
            Some((config, name)) => {
                let name = ServerName::try_from(name.to_string())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
                Some(rustls::ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?)
            }
            None => None,
        };
        Ok(Remote {
            stream,
            tls,
            connected: false,
            readable: false,
            unsent: VecDeque::new(),
            blocked: false,
        })
    }

    /// After a writable event: whether the TCP handshake has completed (an error if it failed).
    pub fn check_connected(&mut self) -> io::Result<bool> {
        if let Some(e) = self.stream.take_error()? {
            return Err(e);
        }
        match self.stream.peer_addr() {
            Ok(_) => {
                let _ = self.stream.set_nodelay(true);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn send(&mut self, data: &[u8]) {
        match &mut self.tls {
            // rustls buffers the plaintext until the handshake is done.
            Some(tls) => {
                let _ = tls.writer().write_all(data);
            }
            None => self.unsent.extend(data),
        }
    }

    /// Bytes handed over and not yet written to the socket.
    pub fn pending(&self) -> usize {
        match &self.tls {
            // rustls does not say how much plaintext it holds; a handshake in progress or unwritten records count.
            Some(tls) if tls.wants_write() => BLOCKED_AT,
            _ => self.unsent.len(),
        }
    }

    /// Writes what it can; `Ok(true)` when nothing is left.
    pub fn flush(&mut self) -> io::Result<bool> {
        if !self.connected {
            return Ok(false);
        }
        if let Some(tls) = &mut self.tls {
            while tls.wants_write() {
                match tls.write_tls(&mut self.stream) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(true);
        }
        while !self.unsent.is_empty() {
            let (front, _) = self.unsent.as_slices();
            match self.stream.write(front) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    self.unsent.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// One read into `buf` (plaintext after TLS).
    pub fn read(&mut self, buf: &mut [u8]) -> ReadResult {
        let Some(tls) = &mut self.tls else {
            return match self.stream.read(buf) {
                Ok(0) => ReadResult::Closed("closed by the remote".into()),
                Ok(n) => ReadResult::Data(n),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                    ReadResult::WouldBlock
                }
                Err(e) => ReadResult::Closed(e.to_string()),
            };
        };
        // Plaintext already decrypted comes first.
        match tls.reader().read(buf) {
            Ok(n) if n > 0 => return ReadResult::Data(n),
            Ok(_) => return ReadResult::Closed("TLS session closed by the remote".into()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return ReadResult::Closed(e.to_string()),
        }
        match tls.read_tls(&mut self.stream) {
            Ok(0) => return ReadResult::Closed("closed by the remote".into()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                return ReadResult::WouldBlock
            }
            Err(e) => return ReadResult::Closed(e.to_string()),
        }
        if let Err(e) = tls.process_new_packets() {
            return ReadResult::Closed(format!("TLS: {e}"));
        }
        match tls.reader().read(buf) {
            Ok(n) if n > 0 => ReadResult::Data(n),
            Ok(_) => ReadResult::Closed("TLS session closed by the remote".into()),
            // Handshake records only: the caller reads again (and flushes what the handshake wants to send).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadResult::Data(0),
            Err(e) => ReadResult::Closed(e.to_string()),
        }
    }
}
