//! Topic filter relations the ACL needs: does a filter match a topic, can two filters match a common topic, does
//! one filter match everything another does. Levels are split on `/`; `+` is one level, `#` the rest (including
//! none); wildcards in the first level never match `$` topics [MQTT-4.7.2-1].

fn levels(s: &str) -> Vec<&str> {
    s.split('/').collect()
}

fn dollar_guard(wild: &[&str], literal: &[&str]) -> bool {
    let wild_first = matches!(wild.first(), Some(&"+") | Some(&"#"));
    let dollar = literal.first().is_some_and(|l| l.starts_with('$'));
    wild_first && dollar
}

/// Does `filter` match the topic name `topic`?
pub fn matches(filter: &str, topic: &str) -> bool {
    let (f, t) = (levels(filter), levels(topic));
    !dollar_guard(&f, &t) && covers_levels(&f, &t)
}

/// Is there a topic name that both filters match?
pub fn overlaps(a: &str, b: &str) -> bool {
    let (a, b) = (levels(a), levels(b));
    if dollar_guard(&a, &b) || dollar_guard(&b, &a) {
        return false;
    }
    overlaps_levels(&a, &b)
}

/// Does `outer` match every topic name that `inner` matches?
pub fn covers(outer: &str, inner: &str) -> bool {
    let (o, i) = (levels(outer), levels(inner));
    !dollar_guard(&o, &i) && covers_levels(&o, &i)
}

fn overlaps_levels(a: &[&str], b: &[&str]) -> bool {
    match (a.split_first(), b.split_first()) {
        (Some((&"#", _)), _) | (_, Some((&"#", _))) => true,
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some((x, a_rest)), Some((y, b_rest))) => (*x == "+" || *y == "+" || x == y) && overlaps_levels(a_rest, b_rest),
    }
}

/// With `inner` a topic name this is plain matching; with wildcards in `inner` it asks for containment.
fn covers_levels(outer: &[&str], inner: &[&str]) -> bool {
    match (outer.split_first(), inner.split_first()) {
        (Some((&"#", _)), _) => true,
        (None, None) => true,
        (_, Some((&"#", _))) | (None, Some(_)) | (Some(_), None) => false,
        (Some((x, o_rest)), Some((y, i_rest))) => {
            let level_ok = if *x == "+" { true } else { *y != "+" && x == y };
            level_ok && covers_levels(o_rest, i_rest)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_follows_mqtt_wildcard_rules() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("#", "x/y"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("a/b", "a/c"));
        assert!(!matches("#", "$SYS/broker/uptime"));
        assert!(!matches("+/broker/uptime", "$SYS/broker/uptime"));
        assert!(matches("$SYS/#", "$SYS/broker/uptime"));
    }

    #[test]
    fn overlap_finds_a_common_topic_when_there_is_one() {
        assert!(overlaps("#", "secret/x"));
        assert!(overlaps("a/+/c", "a/b/+"));
        assert!(overlaps("a/#", "a"));
        assert!(!overlaps("a/+", "b/#"));
        assert!(!overlaps("a/b", "a/b/c"));
        assert!(!overlaps("#", "$SYS/#"));
    }

    #[test]
    fn cover_means_every_matched_topic_is_matched() {
        assert!(covers("secret/#", "secret/+/x"));
        assert!(covers("a/+", "a/b"));
        assert!(covers("a/+", "a/+"));
        assert!(covers("#", "a/#"));
        assert!(!covers("a/b", "a/+"));
        assert!(!covers("a/+", "a/#"));
        assert!(!covers("#", "$SYS/x"));
    }
}
