//! Topic Name and Topic Filter rules (MQTT 5.0 section 4.7, 3.1.1 section 4.7) and the shared subscription syntax
//! `$share/{ShareName}/{filter}` (MQTT 5.0 section 4.8.2).
//!
//! CONTRACT (owned by the codec work): keep these signatures.

/// Why a topic name or filter is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicError {
    Empty,
    TooLong,
    NullCharacter,
    WildcardInTopicName,
    MisplacedWildcard,
    InvalidSharedSubscription,
}

/// A parsed `$share/{group}/{filter}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    pub group: &'a str,
    pub filter: &'a str,
}

/// A Topic Name as used in PUBLISH: non-empty, no wildcards, no U+0000 [MQTT-4.7.3-1], [MQTT-4.7.1-1].
pub fn validate_topic_name(_topic: &str) -> Result<(), TopicError> {
    todo!("codec work fills this in")
}

/// A Topic Filter as used in SUBSCRIBE/UNSUBSCRIBE, including the `$share/` form.
pub fn validate_topic_filter(_filter: &str) -> Result<(), TopicError> {
    todo!("codec work fills this in")
}

/// `Ok(Some(..))` for a valid shared subscription, `Ok(None)` for a filter that is not one,
/// `Err` for a malformed `$share/...`.
pub fn parse_shared_subscription(_filter: &str) -> Result<Option<SharedFilter<'_>>, TopicError> {
    todo!("codec work fills this in")
}
