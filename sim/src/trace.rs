//! The event log of a run: one line per event, hashed (FNV-1a, 64 bit) so that two runs of a seed can be compared
//! by one number. Lines are kept (bounded) so a failure can print the story that led to it.

use std::collections::VecDeque;

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
            hash: 0xcbf2_9ce4_8422_2325,
            lines: 0,
            tail: VecDeque::new(),
            echo,
        }
    }

    pub fn record(&mut self, line: String) {
        for byte in line.as_bytes().iter().chain(b"\n") {
            self.hash ^= u64::from(*byte);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.lines += 1;
        if self.echo {
            println!("{line}");
        }
        if self.tail.len() == KEEP {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
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
