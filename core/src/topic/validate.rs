//! Topic Name and Topic Filter rules (MQTT 5.0 section 4.7, 3.1.1 section 4.7) and the shared subscription syntax
//! `$share/{ShareName}/{filter}` (MQTT 5.0 section 4.8.2).

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

/// Strings are at most 65,535 bytes on the wire [MQTT-1.5.4].
const MAX_LEN: usize = 65_535;
const SHARE_PREFIX: &str = "$share/";

fn check_common(text: &str) -> Result<(), TopicError> {
    // [MQTT-4.7.3-1]: at least one character.
    if text.is_empty() {
        return Err(TopicError::Empty);
    }
    if text.len() > MAX_LEN {
        return Err(TopicError::TooLong);
    }
    // [MQTT-4.7.3-2]
    if text.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// A Topic Name as used in PUBLISH: non-empty, no wildcards [MQTT-3.3.2-2], no U+0000.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    check_common(topic)?;
    if topic.contains(['+', '#']) {
        return Err(TopicError::WildcardInTopicName);
    }
    Ok(())
}

/// A plain (non-shared) filter: `#` only as the whole last level [MQTT-4.7.1-1], `+` only as a whole level
/// [MQTT-4.7.1-2].
fn validate_plain_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        match level {
            "#" if is_last => {}
            "+" => {}
            _ if level.contains(['+', '#']) => return Err(TopicError::MisplacedWildcard),
            _ => {}
        }
    }
    Ok(())
}

/// A Topic Filter as used in SUBSCRIBE/UNSUBSCRIBE, including the `$share/` form.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    match parse_shared_subscription(filter)? {
        Some(shared) => validate_plain_filter(shared.filter),
        None => validate_plain_filter(filter),
    }
}

/// `Ok(Some(..))` for a valid shared subscription, `Ok(None)` for a filter that is not one,
/// `Err` for a malformed `$share/...`: the ShareName must be non-empty without `/`, `+` or `#`
/// [MQTT-4.8.2-1], [MQTT-4.8.2-2], and a filter must follow.
pub fn parse_shared_subscription(filter: &str) -> Result<Option<SharedFilter<'_>>, TopicError> {
    let Some(rest) = filter.strip_prefix(SHARE_PREFIX) else {
        return Ok(None);
    };
    let Some((group, inner)) = rest.split_once('/') else {
        return Err(TopicError::InvalidSharedSubscription);
    };
    if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
        return Err(TopicError::InvalidSharedSubscription);
    }
    Ok(Some(SharedFilter { group, filter: inner }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_reject_wildcards_mqtt_3_3_2_2() {
        assert_eq!(validate_topic_name("a/+"), Err(TopicError::WildcardInTopicName));
        assert_eq!(validate_topic_name("a/#"), Err(TopicError::WildcardInTopicName));
        assert_eq!(validate_topic_name("a/b"), Ok(()));
    }

    #[test]
    fn empty_topic_and_filter_are_invalid_mqtt_4_7_3_1() {
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert_eq!(validate_topic_filter(""), Err(TopicError::Empty));
    }

    #[test]
    fn null_character_is_invalid_mqtt_4_7_3_2() {
        assert_eq!(validate_topic_name("a\0b"), Err(TopicError::NullCharacter));
    }

    #[test]
    fn empty_levels_and_leading_slash_are_valid() {
        assert_eq!(validate_topic_name("/"), Ok(()));
        assert_eq!(validate_topic_name("a//b"), Ok(()));
        assert_eq!(validate_topic_filter("/+/"), Ok(()));
    }

    #[test]
    fn multi_level_wildcard_must_be_last_and_alone_mqtt_4_7_1_1() {
        assert_eq!(validate_topic_filter("#"), Ok(()));
        assert_eq!(validate_topic_filter("sport/#"), Ok(()));
        assert_eq!(
            validate_topic_filter("sport/tennis#"),
            Err(TopicError::MisplacedWildcard)
        );
        assert_eq!(
            validate_topic_filter("sport/#/ranking"),
            Err(TopicError::MisplacedWildcard)
        );
    }

    #[test]
    fn single_level_wildcard_must_fill_its_level_mqtt_4_7_1_2() {
        assert_eq!(validate_topic_filter("+"), Ok(()));
        assert_eq!(validate_topic_filter("+/tennis/#"), Ok(()));
        assert_eq!(validate_topic_filter("sport+"), Err(TopicError::MisplacedWildcard));
    }

    #[test]
    fn shared_subscription_syntax_mqtt_4_8_2_1_and_2() {
        assert_eq!(
            parse_shared_subscription("$share/g/a/+"),
            Ok(Some(SharedFilter {
                group: "g",
                filter: "a/+"
            }))
        );
        assert_eq!(parse_shared_subscription("a/b"), Ok(None));
        assert_eq!(
            parse_shared_subscription("$share/g"),
            Err(TopicError::InvalidSharedSubscription)
        );
        assert_eq!(
            parse_shared_subscription("$share//a"),
            Err(TopicError::InvalidSharedSubscription)
        );
        assert_eq!(
            parse_shared_subscription("$share/g+/a"),
            Err(TopicError::InvalidSharedSubscription)
        );
        assert_eq!(
            parse_shared_subscription("$share/g/"),
            Err(TopicError::InvalidSharedSubscription)
        );
        assert_eq!(
            validate_topic_filter("$share/g/a/#/b"),
            Err(TopicError::MisplacedWildcard)
        );
    }

    #[test]
    fn overlong_topic_is_invalid() {
        assert_eq!(validate_topic_name(&"a".repeat(65_536)), Err(TopicError::TooLong));
    }
}
