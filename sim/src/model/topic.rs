//! Topic names and filters as the specification defines them, written here independently of the core's
//! `topic` module so that a bug there is caught rather than mirrored: matching (section 4.7), shared
//! subscriptions (section 4.8.2), and the simulator's message ids.

use super::MsgId;

/// A shared subscription `$share/{ShareName}/{filter}` taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    pub group: &'a str,
    pub filter: &'a str,
}

/// `Some` for a shared subscription: `$share/`, then a ShareName of at least one character without `/`, `+` or
/// `#` [MQTT-4.8.2-1], then `/` and a topic filter [MQTT-4.8.2-2]. `None` for any other filter, a malformed
/// `$share/...` included (the simulated clients never send one; a broker must refuse it, so it never matches).
pub fn shared_filter(filter: &str) -> Option<SharedFilter<'_>> {
    let rest = filter.strip_prefix("$share/")?;
    let slash = rest.find('/')?;
    let (group, filter) = (&rest[..slash], &rest[slash + 1..]);
    let valid_group = !group.is_empty() && !group.contains(['+', '#']);
    (valid_group && !filter.is_empty()).then_some(SharedFilter { group, filter })
}

/// Topic filter matching per section 4.7, including the `$` rule [MQTT-4.7.2-1].
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match (level, topic_levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(t)) if f == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// The topic filter without a `$share/{group}/` prefix.
pub fn plain_filter(filter: &str) -> &str {
    shared_filter(filter).map_or(filter, |shared| shared.filter)
}

/// The message id at the start of a payload, if any.
pub fn message_id(payload: &[u8]) -> Option<MsgId> {
    let text = std::str::from_utf8(payload).ok()?;
    let id = text.split(' ').next()?;
    // Exactly `m{publisher}:{seq}` or `w{client}:{n}`: other payloads ($SYS values such as "mqtt-broker") are not
    // the simulator's messages.
    let (publisher, seq) = id.get(1..)?.split_once(':')?;
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let tagged = id.starts_with('m') || id.starts_with('w');
    (tagged && numeric(publisher) && numeric(seq)).then(|| MsgId::from(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_follows_section_4_7() {
        assert!(matches("a/+", "a/b"));
        assert!(!matches("a/+", "a/b/c"), "+ is one level [MQTT-4.7.1-3]");
        assert!(matches("a/#", "a"), "# includes the parent level [MQTT-4.7.1-2]");
        assert!(matches("#", "a/b/c"));
        assert!(!matches("#", "$SYS/x"), "[MQTT-4.7.2-1]");
        assert!(!matches("+/x", "$SYS/x"), "[MQTT-4.7.2-1]");
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(!matches("a/b", "a"));
    }

    #[test]
    fn message_ids_are_strict() {
        assert_eq!(message_id(b"m3:17 ppp").as_deref(), Some("m3:17"));
        assert_eq!(message_id(b"w2:1").as_deref(), Some("w2:1"));
        assert_eq!(message_id(b"mqtt-broker"), None);
        assert_eq!(message_id(b""), None);
    }

    #[test]
    fn shared_filters_follow_section_4_8_2() {
        assert_eq!(
            shared_filter("$share/g/a/+"),
            Some(SharedFilter {
                group: "g",
                filter: "a/+"
            })
        );
        assert_eq!(plain_filter("$share/g/a/+"), "a/+");
        assert_eq!(shared_filter("$share/g/#").map(|s| s.filter), Some("#"));
        assert_eq!(shared_filter("a/b"), None);
        assert_eq!(shared_filter("$shared/g/a"), None, "the prefix is exactly $share/");
        assert_eq!(
            shared_filter("$share//a"),
            None,
            "[MQTT-4.8.2-1]: a ShareName has one character at least"
        );
        assert_eq!(
            shared_filter("$share/g+/a"),
            None,
            "[MQTT-4.8.2-1]: no + in a ShareName"
        );
        assert_eq!(
            shared_filter("$share/g#/a"),
            None,
            "[MQTT-4.8.2-1]: no # in a ShareName"
        );
        assert_eq!(shared_filter("$share/g"), None, "[MQTT-4.8.2-2]: a filter follows");
        assert_eq!(shared_filter("$share/g/"), None, "[MQTT-4.8.2-2]: a filter follows");
        assert_eq!(plain_filter("$share/g"), "$share/g");
    }
}
