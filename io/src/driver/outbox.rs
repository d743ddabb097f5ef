//! The bytes a connection has to send, in order: what the core handed out (framed for WebSockets) and what the
//! transport itself says (HTTP upgrade responses, pongs, close frames). TLS encrypts from the front of it; plain
//! sockets take it with vectored writes.

use bytes::{Buf, Bytes};
use std::collections::VecDeque;
use std::io::IoSlice;

/// Most slices handed to one vectored write (Linux's IOV_MAX is 1024; a few dozen already fill a socket buffer).
pub const MAX_IOV: usize = 64;

#[derive(Debug, Default)]
pub struct Outbox {
    chunks: VecDeque<Bytes>,
    bytes: usize,
}

impl Outbox {
    /// Queue bytes after everything queued before.
    pub fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.bytes += data.len();
            self.chunks.push_back(data);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub fn len(&self) -> usize {
        self.bytes
    }

    /// The first chunks, for one vectored write.
    pub fn slices(&self) -> Vec<IoSlice<'_>> {
        self.chunks.iter().take(MAX_IOV).map(|b| IoSlice::new(b)).collect()
    }

    /// The chunks in order (io_uring sends point into them).
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        self.chunks.iter()
    }

    /// Drop `n` written bytes from the front.
    pub fn consume(&mut self, mut n: usize) {
        self.bytes = self.bytes.saturating_sub(n);
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
        if self.chunks.is_empty() {
            // An idle connection keeps no ring buffer: thousands of them would each pin its capacity.
            self.chunks = VecDeque::new();
        }
    }

    #[cfg(test)]
    pub fn front(&self) -> Option<&[u8]> {
        self.chunks.front().map(|b| &b[..])
    }

    /// Everything queued, concatenated (tests).
    #[cfg(test)]
    pub fn concat(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|b| b.iter().copied()).collect()
    }
}
