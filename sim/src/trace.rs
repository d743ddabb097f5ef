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
    /// The last lines, each with the simulated time it was stamped with (see `record_at`), if any: a line is
    /// formatted whole only when the tail is read (a failure), not for each of the run's thousands of lines.
    tail: VecDeque<(Option<u64>, String)>,
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
        self.keep(None, line);
    }

    /// Records `line` stamped with the simulated time `now`, as `record(format!("{now:>9}ms {line}"))` would: the
    /// same line, the same hash.
    pub fn record_at(&mut self, now: u64, line: String) {
        let mut stamp = [b' '; 32];
        let stamp = stamp_of(now, &mut stamp);
        self.hash = fnv(fnv(fnv(self.hash, stamp), line.as_bytes()), b"\n");
        self.keep(Some(now), line);
    }

    fn keep(&mut self, now: Option<u64>, line: String) {
        self.lines += 1;
        if self.echo {
            println!("{}", stamped(now, &line));
        }
        if self.tail.len() == KEEP {
            self.tail.pop_front();
        }
        self.tail.push_back((now, line));
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

    pub fn tail(&self) -> impl Iterator<Item = String> + '_ {
        self.tail.iter().map(|(now, line)| stamped(*now, line))
    }
}

/// A line as `record_at` hashed it.
fn stamped(now: Option<u64>, line: &str) -> String {
    match now {
        Some(now) => format!("{now:>9}ms {line}"),
        None => line.to_string(),
    }
}

/// The bytes of `format!("{now:>9}ms ")`, written into `buf` (without the formatting machinery: it ran for every
/// line of every run).
fn stamp_of(now: u64, buf: &mut [u8; 32]) -> &[u8] {
    let mut digits = [0u8; 20];
    let mut n = now;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Right-aligned in 9 columns; a longer number takes the room it needs.
    let width = len.max(9);
    for (i, digit) in digits[..len].iter().enumerate() {
        buf[width - 1 - i] = *digit;
    }
    buf[width..width + 3].copy_from_slice(b"ms ");
    &buf[..width + 3]
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

    /// A stamped line hashes and reads back exactly as the line formatted with its stamp, for times of every width.
    #[test]
    fn a_stamped_line_is_the_formatted_line() {
        for now in [0, 7, 42, 999_999_999, 1_000_000_000, 123_456_789_012, u64::MAX] {
            let mut stamped = Trace::new(false);
            stamped.record_at(now, "c0 sends PINGREQ".to_string());
            let mut formatted = Trace::new(false);
            formatted.record(format!("{now:>9}ms c0 sends PINGREQ"));
            assert_eq!(stamped.hash(), formatted.hash(), "at {now}");
            assert_eq!(stamped.tail().collect::<Vec<_>>(), formatted.tail().collect::<Vec<_>>());
        }
    }
}
