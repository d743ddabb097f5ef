//! Which rule a message crossing the bridge falls under, and the topic it gets on the other side.

use super::config::Rule;
use crate::packet::QoS;

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Local,
    Remote,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Local => Side::Remote,
            Side::Remote => Side::Local,
        }
    }
}

/// The topic and the highest QoS a message published to `topic` on `from` gets on the other side: the first rule
/// (in configuration order) whose direction leaves `from` and whose filter there matches. `None`: no rule forwards
/// it (a subscription the bridge made before a configuration change, say).
pub fn map_topic(rules: &[Rule], from: Side, topic: &str) -> Option<(String, QoS)> {
    rules.iter().find_map(|rule| {
        let (allowed, prefix, other_prefix) = match from {
            Side::Local => (rule.direction.outbound(), &rule.local_prefix, &rule.remote_prefix),
            Side::Remote => (rule.direction.inbound(), &rule.remote_prefix, &rule.local_prefix),
        };
        let rest = topic.strip_prefix(prefix.as_str())?;
        if !allowed || !filter_matches(&rule.pattern, rest) {
            return None;
        }
        Some((format!("{other_prefix}{rest}"), rule.qos))
    })
}

/// Whether topic filter `filter` matches topic name `topic` (MQTT 5.0 section 4.7). A filter starting with a
/// wildcard does not match a topic starting with `$` [MQTT-4.7.2-1].
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut levels = topic.split('/');
    for part in filter.split('/') {
        match part {
            // '#' matches the parent level too: "a/#" matches "a" [MQTT-4.7.1-2].
            "#" => return true,
            "+" => {
                if levels.next().is_none() {
                    return false;
                }
            }
            _ => {
                if levels.next() != Some(part) {
                    return false;
                }
            }
        }
    }
    levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::config::Direction;

    fn rule(pattern: &str, direction: Direction, local: &str, remote: &str) -> Rule {
        Rule {
            pattern: pattern.into(),
            direction,
            qos: QoS::AtLeastOnce,
            local_prefix: local.into(),
            remote_prefix: remote.into(),
        }
    }

    #[test]
    fn filters_match_like_the_spec() {
        assert!(filter_matches("a/#", "a"));
        assert!(filter_matches("a/#", "a/b/c"));
        assert!(filter_matches("a/+/c", "a/b/c"));
        assert!(!filter_matches("a/+/c", "a/b"));
        assert!(!filter_matches("a/b", "a/b/c"));
        assert!(filter_matches("+", ""));
        assert!(!filter_matches("#", "$SYS/x"));
        assert!(filter_matches("$SYS/#", "$SYS/x"));
    }

    #[test]
    fn prefixes_are_traded_and_direction_is_respected() {
        let rules = [
            rule("sensors/#", Direction::Out, "site/", "cloud/site1/"),
            rule("cmd/#", Direction::In, "", "cloud/site1/"),
        ];
        assert_eq!(
            map_topic(&rules, Side::Local, "site/sensors/t1"),
            Some(("cloud/site1/sensors/t1".into(), QoS::AtLeastOnce))
        );
        assert_eq!(map_topic(&rules, Side::Remote, "cloud/site1/sensors/t1"), None);
        assert_eq!(
            map_topic(&rules, Side::Remote, "cloud/site1/cmd/reboot"),
            Some(("cmd/reboot".into(), QoS::AtLeastOnce))
        );
        assert_eq!(map_topic(&rules, Side::Local, "cmd/reboot"), None);
    }
}
