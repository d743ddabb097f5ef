//! MQTT over WebSockets (MQTT 5.0 section 6), sans-IO: bytes from the client in, MQTT bytes for the core and
//! bytes to send out. The HTTP upgrade comes first (`handshake`), then binary frames both ways (`frame`).

mod frame;
mod handshake;

pub use frame::FrameError;
pub use handshake::Refusal;

use super::outbox::Outbox;
use bytes::Bytes;
use frame::{ControlFrame, FrameDecoder};
use std::sync::Arc;
use tungstenite::protocol::frame::coding::CloseCode;

/// How a WebSocket connection ended, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsClose {
    /// The upgrade request was refused (the HTTP error response is queued).
    Refused(Refusal),
    /// The client sent a close frame (the answering close frame is queued).
    PeerClosed,
    /// The client broke the framing rules (a close frame with the reason is queued).
    Frame(FrameError),
}

impl std::fmt::Display for WsClose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsClose::Refused(refusal) => write!(f, "WebSocket upgrade refused: {refusal}"),
            WsClose::PeerClosed => write!(f, "WebSocket closed by peer"),
            WsClose::Frame(e) => write!(f, "{e}"),
        }
    }
}

#[derive(Debug)]
enum State {
    /// Collecting the HTTP upgrade request.
    Upgrading {
        request: Vec<u8>,
    },
    Open(FrameDecoder),
    /// A close frame went out or came in: nothing more is read or framed.
    Closed,
}

#[derive(Debug)]
pub struct WebSocket {
    path: Arc<str>,
    state: State,
}

impl WebSocket {
    /// A server connection that upgrades on `path`.
    pub fn new(path: Arc<str>) -> WebSocket {
        WebSocket {
            path,
            state: State::Upgrading { request: Vec::new() },
        }
    }

    /// Whether the upgrade is done and MQTT bytes flow.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// Take bytes from the client: MQTT bytes are appended to `app`; the upgrade response, pongs and close frames
    /// are queued on `out`. An `Err` means the connection is to be closed once `out` is written.
    pub fn receive(&mut self, data: &[u8], app: &mut Vec<u8>, out: &mut Outbox) -> Result<(), WsClose> {
        let frames = match &mut self.state {
            State::Closed => return Ok(()),
            State::Open(_) => data,
            State::Upgrading { request } => {
                // Only what fits the request limit is looked at; the parser refuses an overlong request.
                let room = handshake::MAX_REQUEST.saturating_sub(request.len());
                request.extend_from_slice(&data[..data.len().min(room)]);
                match handshake::parse(request, &self.path) {
                    Ok(handshake::Parsed::Partial) => return Ok(()),
                    Ok(handshake::Parsed::Upgrade { response, consumed }) => {
                        out.push(response);
                        // Frames pipelined behind the request: those in `request` past the headers, then the rest
                        // of `data` that did not fit the request buffer.
                        let early = request.len() - consumed.min(request.len());
                        let behind = data.len() - (data.len().min(room));
                        let mut pipelined = request.split_off(request.len() - early);
                        pipelined.extend_from_slice(&data[data.len() - behind..]);
                        self.state = State::Open(FrameDecoder::default());
                        return self.receive(&pipelined, app, out);
                    }
                    Err(refusal) => {
                        out.push(refusal.response());
                        self.state = State::Closed;
                        return Err(WsClose::Refused(refusal));
                    }
                }
            }
        };
        let State::Open(decoder) = &mut self.state else {
            return Ok(());
        };
        match decoder.decode(frames, app) {
            Ok(controls) => {
                for control in controls {
                    match control {
                        ControlFrame::Ping(payload) => out.push(frame::pong(&payload)),
                        ControlFrame::Pong => {}
                        ControlFrame::Close(payload) => {
                            // Echo the status code (RFC 6455 section 5.5.1); the reason text is not repeated.
                            out.push(frame::close(&payload[..payload.len().min(2)]));
                            self.state = State::Closed;
                            return Err(WsClose::PeerClosed);
                        }
                    }
                }
                Ok(())
            }
            Err(e) => {
                out.push(frame::close_with(e.close_code()));
                self.state = State::Closed;
                Err(WsClose::Frame(e))
            }
        }
    }

    /// Frame MQTT bytes from the core as one binary frame [MQTT-6.0.0-1]. Dropped after close.
    pub fn send(&mut self, data: Bytes, out: &mut Outbox) {
        if self.is_open() && !data.is_empty() {
            out.push(frame::binary_header(data.len()));
            out.push(data);
        }
    }

    /// The broker closes: a normal close frame after everything sent so far (none if the upgrade never finished).
    /// Whether a close frame went out or came in.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    pub fn close(&mut self, out: &mut Outbox) {
        if self.is_open() {
            out.push(frame::close_with(CloseCode::Normal));
        }
        self.state = State::Closed;
    }
}

#[cfg(test)]
mod tests;
