//! One topic level as the retained store keeps it: up to `INLINE_MAX` bytes inside the value itself (most levels
//! are short: `site`, `1234`, `temp`), longer ones in an allocation of their own. A boxed `str` would cost 16 bytes
//! plus an allocation (32 bytes with malloc's overhead) for every level of a million topics.
//!
//! The value is 16 bytes (a child of the tree, level and node, is then 40): a longer level is behind a thin
//! pointer to a boxed `str`, one allocation more than a fat pointer would take, paid only by levels over 14 bytes.

use std::borrow::Borrow;
use std::cmp::Ordering;

/// Longest level kept inline: with the length byte and the tag the value is 16 bytes.
const INLINE_MAX: usize = 14;

#[derive(Clone)]
pub(super) enum Level {
    Inline {
        len: u8,
        bytes: [u8; INLINE_MAX],
    },
    // A thin pointer: `Box<str>` alone is 16 bytes and would make every level 24.
    #[allow(clippy::box_collection, clippy::redundant_allocation)]
    Heap(Box<Box<str>>),
}

impl Level {
    pub(super) fn new(level: &str) -> Level {
        if level.len() <= INLINE_MAX {
            let mut bytes = [0u8; INLINE_MAX];
            bytes[..level.len()].copy_from_slice(level.as_bytes());
            Level::Inline {
                len: level.len() as u8,
                bytes,
            }
        } else {
            Level::Heap(Box::new(level.into()))
        }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        match self {
            Level::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Level::Heap(level) => level.as_bytes(),
        }
    }

    pub(super) fn as_str(&self) -> &str {
        match self {
            // Copied whole from a `str` in `new`, so always valid UTF-8.
            Level::Inline { .. } => std::str::from_utf8(self.as_bytes()).expect("a level is copied whole from a str"),
            Level::Heap(level) => level,
        }
    }
}

/// Ordered by bytes, as `str` is: the walk order is the one the `Box<str>` keys gave.
impl Ord for Level {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl PartialOrd for Level {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Level {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Level {}

/// Lookups by a level's bytes; consistent with `Ord` and `Eq` above.
impl Borrow<[u8]> for Level {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::Level;

    #[test]
    fn short_and_long_levels_keep_their_text_and_order() {
        let long = "c-level-longer-than-fourteen-bytes";
        for text in ["", "temp", "exactly-14-byte", "fifteen-bytes-x", long, "é€"] {
            assert_eq!(Level::new(text).as_str(), text);
        }
        assert!(matches!(Level::new(long), Level::Heap(_)));
        assert!(matches!(Level::new("fifteen-bytes-x"), Level::Heap(_)));
        assert!(matches!(Level::new("exactly-14-byt"), Level::Inline { .. }));
        assert!(Level::new("a") < Level::new("b") && Level::new("b") < Level::new(long));
        assert!(Level::new("exactly-14-byt") < Level::new("fifteen-bytes-x"));
        assert_eq!(std::mem::size_of::<Level>(), 16);
    }
}
