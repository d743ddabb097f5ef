//! WebSocket frames (RFC 6455 section 5), server side: client frames are decoded as they stream in (a data
//! frame's payload is unmasked and handed on without waiting for the frame's end, so a large MQTT packet is never
//! held twice), and the broker's frames are built without copying the MQTT bytes they carry.

use bytes::Bytes;
use std::io::Cursor;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// A header is at most 14 bytes: 2, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;
/// Control frames carry at most 125 bytes (RFC 6455 section 5.5).
const MAX_CONTROL: u64 = 125;

/// Why the client's frames cannot be accepted; the connection is closed with the frame's close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A text frame: MQTT is carried in binary frames only [MQTT-6.0.0-1].
    Text,
    /// Framing rules broken (unmasked client frame, reserved bits or opcodes, oversized or fragmented control
    /// frame, continuation without a message, new message inside a fragmented one).
    Protocol(&'static str),
}

impl FrameError {
    pub fn close_code(self) -> CloseCode {
        match self {
            FrameError::Text => CloseCode::Unsupported,
            FrameError::Protocol(_) => CloseCode::Protocol,
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Text => write!(f, "text frame (MQTT needs binary frames)"),
            FrameError::Protocol(what) => write!(f, "WebSocket protocol error: {what}"),
        }
    }
}

/// A complete control frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlFrame {
    Ping(Vec<u8>),
    Pong,
    /// The peer's close, with its payload (status code and reason) for echoing.
    Close(Vec<u8>),
}

/// Where the decoder is inside the client's stream.
#[derive(Debug)]
enum Part {
    /// Collecting a header.
    Header,
    /// Streaming a data frame's payload.
    Data {
        remaining: u64,
        mask: [u8; 4],
        offset: usize,
    },
    /// Collecting a control frame's payload (at most 125 bytes).
    Control {
        kind: Control,
        remaining: usize,
        mask: [u8; 4],
    },
}

#[derive(Debug)]
pub struct FrameDecoder {
    part: Part,
    /// Header bytes or control payload collected so far.
    buf: Vec<u8>,
    /// Inside a fragmented data message: the next data frame must be a continuation.
    fragmented: bool,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder {
            part: Part::Header,
            buf: Vec::with_capacity(MAX_HEADER),
            fragmented: false,
        }
    }
}

impl FrameDecoder {
    /// Decode `input`: MQTT bytes are appended to `app`; control frames are returned as they complete (a close
    /// frame ends decoding: whatever follows it is ignored).
    pub fn decode(&mut self, mut input: &[u8], app: &mut Vec<u8>) -> Result<Vec<ControlFrame>, FrameError> {
        let mut controls = Vec::new();
        while !input.is_empty() {
            match &mut self.part {
                Part::Data {
                    remaining,
                    mask,
                    offset,
                } => {
                    let n = usize::try_from(*remaining).unwrap_or(usize::MAX).min(input.len());
                    let (chunk, rest) = input.split_at(n);
                    app.extend(chunk.iter().enumerate().map(|(i, b)| b ^ mask[(*offset + i) % 4]));
                    *offset = (*offset + n) % 4;
                    *remaining -= n as u64;
                    input = rest;
                    if *remaining == 0 {
                        self.part = Part::Header;
                    }
                }
                Part::Control { kind, remaining, mask } => {
                    let n = (*remaining).min(input.len());
                    let (chunk, rest) = input.split_at(n);
                    self.buf.extend_from_slice(chunk);
                    *remaining -= n;
                    input = rest;
                    if *remaining == 0 {
                        let (kind, mask) = (*kind, *mask);
                        let payload: Vec<u8> = self.buf.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
                        self.buf.clear();
                        self.part = Part::Header;
                        match kind {
                            Control::Ping => controls.push(ControlFrame::Ping(payload)),
                            Control::Pong => controls.push(ControlFrame::Pong),
                            Control::Close => {
                                controls.push(ControlFrame::Close(payload));
                                return Ok(controls);
                            }
                            Control::Reserved(_) => return Err(FrameError::Protocol("reserved control opcode")),
                        }
                    }
                }
                Part::Header => {
                    let before = self.buf.len();
                    let take = input.len().min(MAX_HEADER - before);
                    self.buf.extend_from_slice(&input[..take]);
                    let mut cursor = Cursor::new(&self.buf[..]);
                    let parsed = FrameHeader::parse(&mut cursor).map_err(|_| FrameError::Protocol("bad header"))?;
                    let Some((header, len)) = parsed else {
                        input = &input[take..];
                        continue;
                    };
                    // The header ended inside what was just taken; the rest of it is payload.
                    let header_len = usize::try_from(cursor.position()).unwrap_or(MAX_HEADER);
                    input = &input[header_len.saturating_sub(before)..];
                    self.buf.clear();
                    self.start(&header, len, &mut controls)?;
                    if matches!(controls.last(), Some(ControlFrame::Close(_))) {
                        return Ok(controls);
                    }
                }
            }
        }
        Ok(controls)
    }

    /// Begin the frame whose header was just read.
    fn start(&mut self, header: &FrameHeader, len: u64, controls: &mut Vec<ControlFrame>) -> Result<(), FrameError> {
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(FrameError::Protocol("reserved bits set (no extension was negotiated)"));
        }
        // RFC 6455 section 5.1: a server must close the connection on an unmasked client frame.
        let Some(mask) = header.mask else {
            return Err(FrameError::Protocol("unmasked client frame"));
        };
        match header.opcode {
            OpCode::Data(Data::Text) => return Err(FrameError::Text),
            OpCode::Data(Data::Reserved(_)) => return Err(FrameError::Protocol("reserved data opcode")),
            OpCode::Data(Data::Binary) if self.fragmented => {
                return Err(FrameError::Protocol("new message inside a fragmented one"))
            }
            OpCode::Data(Data::Continue) if !self.fragmented => {
                return Err(FrameError::Protocol("continuation without a message"))
            }
            OpCode::Data(_) => {
                self.fragmented = !header.is_final;
                if len > 0 {
                    self.part = Part::Data {
                        remaining: len,
                        mask,
                        offset: 0,
                    };
                }
            }
            OpCode::Control(kind) => {
                if len > MAX_CONTROL || !header.is_final {
                    return Err(FrameError::Protocol("oversized or fragmented control frame"));
                }
                if len == 0 {
                    match kind {
                        Control::Ping => controls.push(ControlFrame::Ping(Vec::new())),
                        Control::Pong => controls.push(ControlFrame::Pong),
                        Control::Close => controls.push(ControlFrame::Close(Vec::new())),
                        Control::Reserved(_) => return Err(FrameError::Protocol("reserved control opcode")),
                    }
                } else {
                    self.part = Part::Control {
                        kind,
                        remaining: len as usize,
                        mask,
                    };
                }
            }
        }
        Ok(())
    }
}

/// The header of an unmasked (server) frame carrying `len` bytes.
fn header(opcode: OpCode, len: usize) -> Vec<u8> {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    let mut out = Vec::with_capacity(MAX_HEADER);
    // Writing into a Vec cannot fail.
    let _ = header.format(len as u64, &mut out);
    out
}

/// The header of one binary frame carrying `len` MQTT bytes [MQTT-6.0.0-1].
pub fn binary_header(len: usize) -> Bytes {
    Bytes::from(header(OpCode::Data(Data::Binary), len))
}

pub fn pong(payload: &[u8]) -> Bytes {
    let mut frame = header(OpCode::Control(Control::Pong), payload.len());
    frame.extend_from_slice(payload);
    Bytes::from(frame)
}

/// A close frame: `payload` is a status code and reason (or empty).
pub fn close(payload: &[u8]) -> Bytes {
    let mut frame = header(OpCode::Control(Control::Close), payload.len());
    frame.extend_from_slice(payload);
    Bytes::from(frame)
}

/// A close frame with a status code.
pub fn close_with(code: CloseCode) -> Bytes {
    close(&u16::from(code).to_be_bytes())
}

#[cfg(test)]
mod tests;
