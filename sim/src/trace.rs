//! The event log of a run: one line per event (simulated time, connection, what happened), hashed (FNV-1a, 64 bit)
//! so that two runs of a seed can be compared by one number. The hash also covers the exact bytes sent each way and
//! the records written ([`Trace::absorb`]), and the lines that describe them carry a short digest of those bytes, so
//! two traces diffed line by line part at the first step whose bytes differ, even where the descriptions agree.
//! Lines are kept (bounded) so a failure can print the story that led to it.

use std::collections::VecDeque;
use std::fmt;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// A short digest of some bytes, shown as `#` and 8 hex digits in the line that describes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest(pub u32);

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:08x}", self.0)
    }
}

fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

const KEEP: usize = 50;

pub struct Trace {
    hash: u64,
    lines: u64,
    tail: VecDeque<String>,
    /// Print every line as it happens.
    pub echo: bool,
}

impl Trace {
    pub fn new(echo: bool) -> Trace {
        Trace {
            hash: FNV_OFFSET,
            lines: 0,
            tail: VecDeque::new(),
            echo,
        }
    }

    pub fn record(&mut self, line: String) {
        self.hash = fnv(fnv(self.hash, line.as_bytes()), b"\n");
        self.lines += 1;
        if self.echo {
            println!("{line}");
        }
        if self.tail.len() == KEEP {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    /// A line printed with `--trace` only, neither hashed nor counted: detail too bulky for every run (each Raft
    /// message), so a run's hash is the same with and without it.
    pub fn detail(&self, line: impl FnOnce() -> String) {
        if self.echo {
            println!("{}", line());
        }
    }

    /// Hashes `bytes` (sent, received or written) into the trace as they are, and returns their digest for the
    /// line that describes them.
    pub fn absorb(&mut self, bytes: &[u8]) -> Digest {
        self.hash = fnv(self.hash, bytes);
        let own = fnv(FNV_OFFSET, bytes);
        Digest((own >> 32) as u32 ^ own as u32)
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    pub fn tail(&self) -> impl Iterator<Item = &String> {
        self.tail.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two traces with the same lines but different bytes behind one of them differ in hash and in that line's
    /// digest.
    #[test]
    fn bytes_count_not_only_their_description() {
        let run = |payload: &[u8]| {
            let mut trace = Trace::new(false);
            let digest = trace.absorb(payload);
            trace.record(format!("c0 sends PUBLISH a {digest}"));
            (trace.hash(), digest)
        };
        let (hash_a, digest_a) = run(b"\x30\x03\x00\x01a");
        let (hash_b, digest_b) = run(b"\x30\x03\x00\x01b");
        assert_ne!(digest_a, digest_b);
        assert_ne!(hash_a, hash_b);
        assert_eq!(run(b"xyz"), run(b"xyz"));
        assert_eq!(format!("{}", Digest(0xab)), "#000000ab");
    }
}
