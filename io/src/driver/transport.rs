//! What lies between a socket and the core: plain TCP, TLS, WebSockets over TCP, or WebSockets over TLS.
//!
//! Reading: raw bytes → TLS records decrypted (if TLS) → WebSocket frames unwrapped (if WebSocket) → MQTT bytes for
//! the core. Once the TLS handshake has verified a client certificate, a listener with `use_identity_as_username`
//! also has its Common Name for the core ([`Transport::take_verified`], fed as `Input::Identified`): the core,
//! not the transport, makes it the user name.
//! Writing: MQTT bytes from the core → framed (if WebSocket) → the connection's [`Outbox`] → encrypted (if TLS)
//! → the socket. Handshake answers, pongs and close frames join the same outbox, so there is one write path and
//! one flush for every kind of listener, and the driver's group-commit barrier holds for all of them.

use super::outbox::Outbox;
use super::ws::{WebSocket, WsClose};
use crate::tls::subject_common_name;
use bytes::Bytes;
use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

/// How a listener's connections are wrapped.
#[derive(Clone, Default)]
pub struct TransportConfig {
    pub tls: Option<Arc<ServerConfig>>,
    /// `Some(path)`: WebSocket upgrade on that path.
    pub ws_path: Option<Arc<str>>,
    /// Tell the core the verified client certificate's Common Name (`use_identity_as_username`).
    pub identity_as_username: bool,
}

/// Why a transport gave up on its connection. The connection is closed after its outbox (which may hold an alert,
/// an HTTP error or a close frame explaining why) is written.
#[derive(Debug)]
pub enum TransportError {
    /// TLS failed (bad handshake, no or unverifiable client certificate, corrupt record).
    Tls(rustls::Error),
    /// The peer ended the TLS session (close_notify).
    TlsClosed,
    /// Reading TLS records failed.
    Io(io::Error),
    Ws(WsClose),
}

impl TransportError {
    /// Whether the peer did something wrong (as opposed to closing its session normally).
    pub fn is_failure(&self) -> bool {
        !matches!(
            self,
            TransportError::TlsClosed | TransportError::Ws(WsClose::PeerClosed)
        )
    }
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Tls(e) => write!(f, "TLS error: {e}"),
            TransportError::TlsClosed => write!(f, "TLS session closed by peer"),
            TransportError::Io(e) => write!(f, "TLS read error: {e}"),
            TransportError::Ws(e) => write!(f, "{e}"),
        }
    }
}

/// Result of trying to write the pending output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Everything handed out so far is in the kernel.
    Done,
    /// The socket's send buffer is full; the rest waits for a writable event.
    Blocked,
    /// io_uring: a send is queued or in flight and the socket is not known to be full; the send's completion
    /// flushes again.
    Pending,
}

/// Buffers shared by all connections for one read: decrypted bytes, unframed bytes.
#[derive(Default)]
pub struct Scratch {
    tls: Vec<u8>,
    ws: Vec<u8>,
}

/// What the TLS handshake verified of the client, for the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// The certificate's subject Common Name.
    Name(Box<str>),
    /// A verified certificate without a Common Name: the core refuses the CONNECT, having no name to use.
    NoCommonName,
}

/// Where a `use_identity_as_username` connection stands with its client's name.
enum Identity {
    /// Not such a listener, or the name was handed out already.
    Done,
    /// The handshake has not finished.
    Awaiting,
    Known(Verified),
}

/// Boxed layers: a plain TCP connection, the common case, pays two pointers for the ones it does not use.
pub struct Transport {
    tls: Option<Box<ServerConnection>>,
    ws: Option<Box<WebSocket>>,
    identity: Identity,
}

impl Transport {
    /// The peer closed its WebSocket after the bytes `receive` returned last (see there).
    pub fn peer_closed(&self) -> bool {
        self.ws.as_ref().is_some_and(|ws| ws.is_closed())
    }

    pub fn new(config: &TransportConfig) -> Result<Transport, rustls::Error> {
        let tls = match &config.tls {
            Some(tls) => Some(Box::new(ServerConnection::new(Arc::clone(tls))?)),
            None => None,
        };
        Ok(Transport {
            tls,
            ws: config.ws_path.clone().map(|path| Box::new(WebSocket::new(path))),
            identity: if config.identity_as_username && config.tls.is_some() {
                Identity::Awaiting
            } else {
                Identity::Done
            },
        })
    }

    /// What the TLS handshake verified of the client, once, as soon as it is known (use_identity_as_username
    /// listeners only). TLS delivers no application data before the handshake completes, so this is known before
    /// [`Transport::receive`] returns the first MQTT bytes; the caller gives it to the core before them.
    pub fn take_verified(&mut self) -> Option<Verified> {
        match std::mem::replace(&mut self.identity, Identity::Done) {
            Identity::Known(verified) => Some(verified),
            other => {
                self.identity = other;
                None
            }
        }
    }

    /// Turn bytes read from the socket into MQTT bytes for the core (a slice of `raw` itself for plain TCP, else of
    /// `scratch`). Replies the transport owes the peer are queued on `out`.
    pub fn receive<'a>(
        &mut self,
        raw: &'a [u8],
        scratch: &'a mut Scratch,
        out: &mut Outbox,
    ) -> Result<&'a [u8], TransportError> {
        let mut data = raw;
        if let Some(tls) = self.tls.as_deref_mut() {
            scratch.tls.clear();
            let peer_closed = decrypt(tls, raw, &mut scratch.tls)?;
            if matches!(self.identity, Identity::Awaiting) && !tls.is_handshaking() {
                // The listener requires a client certificate, so a finished handshake verified one.
                let name = tls
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(|cert| subject_common_name(cert));
                self.identity = Identity::Known(match name {
                    Some(name) => Verified::Name(name.into()),
                    None => Verified::NoCommonName,
                });
            }
            if peer_closed && scratch.tls.is_empty() {
                return Err(TransportError::TlsClosed);
            }
            data = &scratch.tls;
        }
        if let Some(ws) = self.ws.as_mut() {
            scratch.ws.clear();
            match ws.receive(data, &mut scratch.ws, out) {
                // The MQTT bytes framed before the peer's close frame still count: a DISCONNECT followed at once
                // by the close frame (as MQTT.js sends them) must reach the core, or the will it discards would
                // be published [MQTT-3.1.2-10]. The caller learns of the close from `peer_closed`.
                Err(WsClose::PeerClosed) if !scratch.ws.is_empty() => {}
                result => result.map_err(TransportError::Ws)?,
            }
            data = &scratch.ws;
        }
        Ok(data)
    }

    /// Queue MQTT bytes from the core.
    pub fn send(&mut self, data: Bytes, out: &mut Outbox) {
        match self.ws.as_mut() {
            Some(ws) => ws.send(data, out),
            None => out.push(data),
        }
    }

    /// The broker is closing the connection: queue the transport's goodbye after everything queued so far (a
    /// WebSocket close frame; TLS says close_notify at [`Transport::shutdown`], once the outbox is written).
    pub fn close(&mut self, out: &mut Outbox) {
        if let Some(ws) = self.ws.as_mut() {
            ws.close(out);
        }
    }

    /// Whether anything waits to be written: the outbox or TLS records.
    pub fn wants_write(&self, out: &Outbox) -> bool {
        !out.is_empty() || self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Write as much of `out` as the socket takes.
    /// `stream` is the socket (epoll) or the bytes queued for the ring to send (io_uring, TLS only: plain
    /// connections send their outbox as it is).
    pub fn flush<W: Write>(&mut self, stream: &mut W, out: &mut Outbox) -> io::Result<Flush> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return flush_plain(stream, out);
        };
        loop {
            while tls.wants_write() {
                match tls.write_tls(stream) {
                    Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flush::Blocked),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if out.is_empty() {
                return Ok(Flush::Done);
            }
            // rustls takes plaintext up to its buffer limit, so this moves at most one buffer's worth at a time.
            let n = tls.writer().write_vectored(&out.slices())?;
            if n == 0 {
                // Only before the handshake completes (nothing is sent then); the handshake's end flushes again.
                return Ok(Flush::Blocked);
            }
            out.consume(n);
        }
    }

    /// After the last byte: TLS close_notify (best effort: the socket buffer was just drained), then FIN. Errors
    /// mean the peer is gone already, which is what we wanted.
    pub fn shutdown(&mut self, stream: &mut TcpStream) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.send_close_notify();
            while tls.wants_write() {
                if tls.write_tls(stream).is_err() {
                    break;
                }
            }
        }
        let _ = stream.shutdown(Shutdown::Write);
    }
}

/// Feed TLS records, collecting the plaintext. Returns whether the peer sent close_notify.
fn decrypt(tls: &mut ServerConnection, mut raw: &[u8], plain: &mut Vec<u8>) -> Result<bool, TransportError> {
    let mut peer_closed = false;
    while !raw.is_empty() {
        if tls.read_tls(&mut raw).map_err(TransportError::Io)? == 0 {
            break;
        }
        let state = tls.process_new_packets().map_err(TransportError::Tls)?;
        let available = state.plaintext_bytes_to_read();
        if available > 0 {
            let start = plain.len();
            plain.resize(start + available, 0);
            tls.reader()
                .read_exact(&mut plain[start..])
                .map_err(TransportError::Io)?;
        }
        peer_closed |= state.peer_has_closed();
    }
    Ok(peer_closed)
}

fn flush_plain<W: Write>(stream: &mut W, out: &mut Outbox) -> io::Result<Flush> {
    while !out.is_empty() {
        match stream.write_vectored(&out.slices()) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => out.consume(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flush::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(Flush::Done)
}
