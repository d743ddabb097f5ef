//! A message's topic name as the broker keeps it: up to `INLINE_MAX` bytes inside the message itself, longer ones
//! in an allocation of their own. Most topics are short (`site/12/device/345/temp` is 23 bytes), and a `String`
//! would cost a 24-byte handle plus a 32-byte heap chunk for each of a million retained messages; inline, the
//! handle grows by 8 bytes and the chunk is gone (the `Arc<Message>` allocation keeps its malloc size).

use std::fmt;
use std::ops::Deref;

/// Longest topic kept inline: with the length byte and the tag the value is 32 bytes, and a `Message` stays 104
/// (its `Arc` allocation 120, a 128-byte malloc chunk; 8 bytes more would make it 144).
const INLINE_MAX: usize = 30;

#[derive(Clone)]
pub struct MessageTopic(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE_MAX] },
    Heap(Box<str>),
}

impl MessageTopic {
    pub fn new(topic: &str) -> MessageTopic {
        if topic.len() <= INLINE_MAX {
            let mut bytes = [0u8; INLINE_MAX];
            bytes[..topic.len()].copy_from_slice(topic.as_bytes());
            MessageTopic(Repr::Inline {
                len: topic.len() as u8,
                bytes,
            })
        } else {
            MessageTopic(Repr::Heap(topic.into()))
        }
    }

    /// Its length in bytes, without the UTF-8 check `as_str` makes of an inline topic.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Inline { len, .. } => usize::from(*len),
            Repr::Heap(topic) => topic.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Copied whole from a `str` in `new`, so always valid UTF-8.
            Repr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).expect("a topic is copied whole from a str")
            }
            Repr::Heap(topic) => topic,
        }
    }
}

impl Deref for MessageTopic {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for MessageTopic {
    fn from(topic: &str) -> Self {
        MessageTopic::new(topic)
    }
}

/// A long topic keeps the string's allocation (shrunk to fit); a short one is copied in and the string freed.
impl From<String> for MessageTopic {
    fn from(topic: String) -> Self {
        if topic.len() <= INLINE_MAX {
            MessageTopic::new(&topic)
        } else {
            MessageTopic(Repr::Heap(topic.into_boxed_str()))
        }
    }
}

impl PartialEq for MessageTopic {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for MessageTopic {}

impl PartialEq<str> for MessageTopic {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for MessageTopic {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for MessageTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MessageTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::MessageTopic;

    #[test]
    fn short_and_long_topics_keep_their_text() {
        let at_limit = "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/"; // 30 bytes
        assert_eq!(at_limit.len(), 30);
        let long = format!("{at_limit}t");
        for text in ["", "a", "site/12/device/345/temp", at_limit, &long, "é/€/😀"] {
            assert_eq!(MessageTopic::new(text).as_str(), text);
            assert_eq!(MessageTopic::from(text.to_string()).as_str(), text);
            assert_eq!(&*MessageTopic::from(text), text);
        }
        assert_ne!(MessageTopic::new(at_limit), MessageTopic::new(&long));
        assert_eq!(std::mem::size_of::<MessageTopic>(), 32);
    }
}
