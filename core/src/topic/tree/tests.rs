//! Tests of the subscription tree against MQTT 5.0 section 4.7 / 4.8.2 and against a naive reference matcher.

use super::*;
use crate::packet::QoS;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

fn test_keys() -> crate::hash::HashKeys {
    crate::hash::HashKeys::draw(&mut ChaCha8Rng::seed_from_u64(99))
}

fn sub(id: u32) -> Subscription {
    Subscription {
        options: SubscriptionOptions::default(),
        identifier: Some(id),
    }
}

fn keys(tree: &mut SubscriptionTree<u32>, topic: &str) -> Vec<u32> {
    let mut out = Vec::new();
    tree.match_topic(topic, |_| true, &mut out);
    let mut k: Vec<u32> = out.iter().map(|m| m.key).collect();
    k.sort_unstable();
    k
}

fn matches(filter: &str, topic: &str) -> bool {
    let mut t = SubscriptionTree::new(test_keys());
    t.insert(filter, None, 1u32, sub(1));
    !keys(&mut t, topic).is_empty()
}

/// Nodes reachable from the root, root included (iterative, like the tree itself).
fn node_count<K>(tree: &SubscriptionTree<K>) -> usize {
    let mut n = 0;
    let mut work = vec![&tree.root];
    while let Some(node) = work.pop() {
        n += 1 + usize::from(node.hash.is_some());
        work.extend(node.children.nodes());
        work.extend(node.plus.as_deref());
    }
    n
}

#[test]
fn multi_level_wildcard_matches_parent_and_descendants_4_7_1_2() {
    // MQTT 5.0 section 4.7.1.2 examples.
    for topic in [
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "sport/tennis/player1/score/wimbledon",
    ] {
        assert!(matches("sport/tennis/player1/#", topic), "{topic}");
    }
    assert!(matches("sport/#", "sport"));
    assert!(matches("sport/#", "sport/"));
    assert!(matches("sport/#", "sport/a/b"));
    assert!(!matches("sport/tennis/player1/#", "sport/tennis"));
    assert!(!matches("sport/#", "sports"));
}

#[test]
fn single_level_wildcard_matches_exactly_one_level_4_7_1_3() {
    // MQTT 5.0 section 4.7.1.3 examples.
    assert!(matches("sport/tennis/+", "sport/tennis/player1"));
    assert!(matches("sport/tennis/+", "sport/tennis/player2"));
    assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
    assert!(!matches("sport/+", "sport"));
    assert!(!matches("sport/+", "sport/tennis/player1"));
    assert!(matches("sport/+", "sport/"));
    assert!(matches("+/+", "/finance"));
    assert!(matches("/+", "/finance"));
    assert!(!matches("+", "/finance"));
    assert!(matches("+/tennis/#", "sport/tennis/player1"));
}

#[test]
fn empty_levels_are_real_levels() {
    assert!(matches("a//b", "a//b"));
    assert!(matches("a/+/b", "a//b"));
    assert!(!matches("a/b", "a//b"));
    assert!(!matches("a//b", "a/b"));
    assert!(matches("/a", "/a"));
    assert!(!matches("a", "/a"));
    assert!(matches("+", ""));
    assert!(matches("#", "/"));
}

#[test]
fn wildcards_at_first_level_do_not_match_dollar_topics_mqtt_4_7_2_1() {
    // [MQTT-4.7.2-1] and the examples of MQTT 5.0 section 4.7.2.
    assert!(!matches("#", "$SYS/monitor/Clients"));
    assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
    assert!(!matches("+", "$SYS"));
    assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
    assert!(matches("$SYS/#", "$SYS/x"));
    assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
    // Only the first level is special.
    assert!(matches("a/+", "a/$x"));
    assert!(matches("#", "a/$x"));
}

#[test]
fn literal_wildcard_characters_inside_a_level_are_not_wildcards() {
    // Invalid filters must not panic; they just match nothing unexpected.
    assert!(!matches("a+", "ab"));
    assert!(!matches("a/#/b", "a/x/b"));
    assert!(!matches("a#", "a/b"));
}

#[test]
fn subscribing_again_replaces_and_returns_the_old_subscription_mqtt_3_8_4_3() {
    let mut t = SubscriptionTree::new(test_keys());
    assert_eq!(t.insert("a/+", None, 7u32, sub(1)), None);
    let mut s2 = sub(2);
    s2.options.qos = QoS::ExactlyOnce;
    assert_eq!(t.insert("a/+", None, 7, s2), Some(sub(1)));
    assert_eq!(t.len(), 1);
    let mut out = Vec::new();
    t.match_topic("a/b", |_| true, &mut out);
    assert_eq!(
        out,
        vec![TopicMatch {
            key: 7,
            subscription: s2,
            shared: false
        }]
    );
    // Same in a shared group.
    assert_eq!(t.insert("a/+", Some("g"), 7, sub(3)), None);
    assert_eq!(t.insert("a/+", Some("g"), 7, sub(4)), Some(sub(3)));
    assert_eq!(t.len(), 2);
}

#[test]
fn a_key_matched_by_several_filters_appears_once_per_filter() {
    let mut t = SubscriptionTree::new(test_keys());
    for f in ["a/b", "a/+", "a/#", "#", "+/b"] {
        t.insert(f, None, 1u32, sub(0));
    }
    t.insert("c", None, 2, sub(0));
    assert_eq!(keys(&mut t, "a/b"), vec![1; 5]);
    assert_eq!(t.len(), 6);
}

#[test]
fn remove_returns_the_subscription_and_prunes_empty_nodes() {
    let mut t = SubscriptionTree::new(test_keys());
    let filters = ["a/b/c", "a/b", "a/+/c", "a/#", "#", "+", "a//", "x/y/z/#", "$SYS/+"];
    for (i, f) in filters.iter().enumerate() {
        t.insert(f, None, i as u32, sub(0));
        t.insert(f, Some("g"), i as u32, sub(0));
    }
    assert_eq!(t.len(), 2 * filters.len());
    assert!(node_count(&t) > 1);
    for (i, f) in filters.iter().enumerate() {
        assert_eq!(t.remove(f, Some("g"), i as u32), Some(sub(0)));
        assert_eq!(t.remove(f, None, i as u32), Some(sub(0)));
        assert_eq!(t.remove(f, None, i as u32), None, "second removal of {f}");
    }
    assert!(t.is_empty());
    assert_eq!(node_count(&t), 1, "only the root is left");
    assert!(keys(&mut t, "a/b/c").is_empty());
}

#[test]
fn remove_keeps_nodes_other_filters_still_use() {
    let mut t = SubscriptionTree::new(test_keys());
    t.insert("a/b/c", None, 1u32, sub(0));
    t.insert("a/b", None, 2, sub(0));
    t.insert("a/b/#", None, 3, sub(0));
    assert_eq!(t.remove("a/b/c", None, 1), Some(sub(0)));
    assert_eq!(keys(&mut t, "a/b"), vec![2, 3]);
    assert_eq!(t.remove("a/b", None, 2), Some(sub(0)));
    assert_eq!(keys(&mut t, "a/b/x"), vec![3]);
    // root, a, b and the `#` slot.
    assert_eq!(node_count(&t), 4);
    assert_eq!(t.remove("a/b/#", None, 3), Some(sub(0)));
    assert_eq!(node_count(&t), 1);
}

#[test]
fn removing_unknown_subscriptions_is_a_no_op() {
    let mut t = SubscriptionTree::new(test_keys());
    t.insert("a/b", None, 1u32, sub(0));
    assert_eq!(t.remove("a/b", None, 2), None);
    assert_eq!(t.remove("a/b", Some("g"), 1), None);
    assert_eq!(t.remove("a/b/c", None, 1), None);
    assert_eq!(t.remove("a/#", None, 1), None);
    assert_eq!(t.remove("+", None, 1), None);
    assert_eq!(t.len(), 1);
    assert_eq!(node_count(&t), 3);
}

#[test]
fn many_subscribers_on_one_filter_survive_the_switch_to_a_map_and_back() {
    let mut t = SubscriptionTree::new(test_keys());
    // Descending keys: the worst order for a sorted Vec.
    for k in (0..1000u32).rev() {
        t.insert("devices/+/status", None, k, sub(k));
    }
    assert_eq!(keys(&mut t, "devices/1/status"), (0..1000).collect::<Vec<_>>());
    for k in 10..1000u32 {
        assert_eq!(t.remove("devices/+/status", None, k), Some(sub(k)));
    }
    assert_eq!(keys(&mut t, "devices/1/status"), (0..10).collect::<Vec<_>>());
    assert_eq!(t.len(), 10);
}

#[test]
fn wide_nodes_switch_to_a_hash_map_and_back_without_losing_children() {
    let mut t = SubscriptionTree::new(test_keys());
    for id in 0..1000u32 {
        t.insert(&format!("devices/{id}/telemetry"), None, id, sub(id));
    }
    t.insert("devices/+/telemetry", None, 5000, sub(0));
    for id in (0..1000u32).step_by(97) {
        assert_eq!(keys(&mut t, &format!("devices/{id}/telemetry")), vec![id, 5000]);
    }
    // Remove down through the hash-map-to-Vec threshold, checking the survivors each step of the way.
    for id in 0..998u32 {
        assert_eq!(t.remove(&format!("devices/{id}/telemetry"), None, id), Some(sub(id)));
        if id % 111 == 0 || id > 990 {
            assert_eq!(keys(&mut t, "devices/999/telemetry"), vec![999, 5000]);
            assert_eq!(keys(&mut t, &format!("devices/{id}/telemetry")), vec![5000]);
        }
    }
    // root, devices, `+`, its telemetry, and 998/999 with their telemetry nodes.
    assert_eq!(node_count(&t), 8);
    for id in 998..1000u32 {
        t.remove(&format!("devices/{id}/telemetry"), None, id);
    }
    t.remove("devices/+/telemetry", None, 5000);
    assert_eq!(node_count(&t), 1);
}

#[test]
fn shared_group_round_robin_is_fair_4_8_2() {
    let mut t = SubscriptionTree::new(test_keys());
    for k in [30u32, 10, 20] {
        t.insert("jobs/+", Some("workers"), k, sub(k));
    }
    let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
    let mut order = Vec::new();
    for i in 0..300 {
        let mut out = Vec::new();
        t.match_topic(&format!("jobs/{i}"), |_| true, &mut out);
        assert_eq!(out.len(), 1, "exactly one member per message");
        assert!(out[0].shared);
        *counts.entry(out[0].key).or_default() += 1;
        order.push(out[0].key);
    }
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![100, 100, 100]);
    // Insertion order is the rotation order.
    assert_eq!(&order[..6], &[30, 10, 20, 30, 10, 20]);
}

#[test]
fn shared_group_skips_unavailable_members() {
    let mut t = SubscriptionTree::new(test_keys());
    for k in 1..=3u32 {
        t.insert("q", Some("g"), k, sub(k));
    }
    let mut picked = Vec::new();
    for _ in 0..6 {
        let mut out = Vec::new();
        t.match_topic("q", |k| k != 2, &mut out);
        picked.push(out[0].key);
    }
    assert_eq!(picked, vec![1, 3, 1, 3, 1, 3]);
}

#[test]
fn shared_group_with_no_available_member_still_rotates_over_all() {
    let mut t = SubscriptionTree::new(test_keys());
    for k in 1..=3u32 {
        t.insert("q", Some("g"), k, sub(k));
    }
    let mut picked = Vec::new();
    for _ in 0..6 {
        let mut out = Vec::new();
        t.match_topic("q", |_| false, &mut out);
        assert_eq!(out.len(), 1);
        picked.push(out[0].key);
    }
    assert_eq!(picked, vec![1, 2, 3, 1, 2, 3]);
}

#[test]
fn shared_group_rotation_continues_after_a_member_leaves() {
    let mut t = SubscriptionTree::new(test_keys());
    for k in 1..=4u32 {
        t.insert("q", Some("g"), k, sub(k));
    }
    let next = |t: &mut SubscriptionTree<u32>| {
        let mut out = Vec::new();
        t.match_topic("q", |_| true, &mut out);
        out[0].key
    };
    assert_eq!(next(&mut t), 1);
    assert_eq!(next(&mut t), 2);
    // 3 is next; removing 1 (before the cursor) must not skip 3.
    t.remove("q", Some("g"), 1);
    assert_eq!(next(&mut t), 3);
    // Removing the member under the cursor moves on to the following one.
    t.remove("q", Some("g"), 4);
    assert_eq!(next(&mut t), 2);
    assert_eq!(next(&mut t), 3);
}

#[test]
fn each_matching_group_and_filter_delivers_once_alongside_normal_subscribers() {
    let mut t = SubscriptionTree::new(test_keys());
    t.insert("a/b", None, 1u32, sub(0));
    t.insert("a/b", Some("g1"), 2, sub(0));
    t.insert("a/b", Some("g1"), 3, sub(0));
    t.insert("a/b", Some("g2"), 4, sub(0));
    t.insert("a/#", Some("g1"), 5, sub(0));
    let mut out = Vec::new();
    t.match_topic("a/b", |_| true, &mut out);
    let shared: Vec<u32> = out.iter().filter(|m| m.shared).map(|m| m.key).collect();
    let normal: Vec<u32> = out.iter().filter(|m| !m.shared).map(|m| m.key).collect();
    assert_eq!(normal, vec![1]);
    assert_eq!(shared.len(), 3, "g1 on a/b, g2 on a/b, g1 on a/#: {shared:?}");
    assert_eq!(t.len(), 5);
}

#[test]
fn match_order_is_deterministic_and_independent_of_insertion_order() {
    let filters = ["#", "a/#", "a/+", "+/b", "a/b", "+/+", "a/b/#"];
    let build = |order: &[usize]| {
        let mut t = SubscriptionTree::new(test_keys());
        for &i in order {
            for k in [5u32, 1, 9] {
                t.insert(filters[i], None, k * 10 + i as u32, sub(i as u32));
            }
        }
        let mut out = Vec::new();
        t.match_topic("a/b", |_| true, &mut out);
        out
    };
    let forward = build(&[0, 1, 2, 3, 4, 5, 6]);
    let backward = build(&[6, 5, 4, 3, 2, 1, 0]);
    assert_eq!(forward.len(), 21);
    assert_eq!(forward, backward);
    assert_eq!(forward, build(&[0, 1, 2, 3, 4, 5, 6]));
}

#[test]
fn very_deep_filters_do_not_overflow_the_stack() {
    // 65,535 bytes of `/` is a legal filter: 65,536 empty levels.
    let deep = "/".repeat(65_535);
    let deep_plus = ["+"; 30_000].join("/");
    let mut t = SubscriptionTree::new(test_keys());
    t.insert(&deep, None, 1u32, sub(0));
    t.insert(&format!("{deep}#"), None, 2, sub(0));
    t.insert(&deep_plus, None, 3, sub(0));
    assert_eq!(keys(&mut t, &deep), vec![1, 2]);
    assert_eq!(keys(&mut t, &"/".repeat(29_999)), vec![3]);
    assert_eq!(t.remove(&deep, None, 1), Some(sub(0)));
    // A deep tree is dropped without recursion.
    drop(t);
}

// ---- randomized comparison with a naive matcher -------------------------------------------------------------------

/// The reference: split both and compare level by level, straight from MQTT 5.0 section 4.7.
fn naive_match(filter: &str, topic: &str) -> bool {
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    if t[0].starts_with('$') && (f[0] == "+" || f[0] == "#") {
        return false;
    }
    let mut i = 0;
    loop {
        match (f.get(i), t.get(i)) {
            (Some(&"#"), _) if i + 1 == f.len() => return true,
            (None, None) => return true,
            (Some(fl), Some(tl)) if *fl == "+" || fl == tl => i += 1,
            _ => return false,
        }
    }
}

fn random_level(rng: &mut ChaCha8Rng, first: bool) -> &'static str {
    const LEVELS: [&str; 5] = ["a", "b", "c", "", "dd"];
    if first && rng.gen_ratio(1, 8) {
        "$SYS"
    } else {
        LEVELS[rng.gen_range(0..LEVELS.len())]
    }
}

fn random_topic(rng: &mut ChaCha8Rng) -> String {
    let depth = rng.gen_range(1..=5);
    (0..depth)
        .map(|i| random_level(rng, i == 0))
        .collect::<Vec<_>>()
        .join("/")
}

fn random_filter(rng: &mut ChaCha8Rng) -> String {
    let depth = rng.gen_range(1..=5);
    let mut levels: Vec<&str> = (0..depth)
        .map(|i| {
            if rng.gen_ratio(1, 4) {
                "+"
            } else {
                random_level(rng, i == 0)
            }
        })
        .collect();
    if rng.gen_ratio(1, 4) {
        levels.push("#");
    }
    if rng.gen_ratio(1, 50) {
        levels = vec!["#"];
    }
    levels.join("/")
}

#[test]
fn random_filters_and_topics_agree_with_a_naive_matcher() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5EED_0407);
    let mut tree: SubscriptionTree<u32> = SubscriptionTree::new(test_keys());
    // id -> (filter, group, key); id is carried as the subscription identifier.
    let mut live: BTreeMap<u32, (String, Option<&'static str>, u32)> = BTreeMap::new();
    for id in 0..3000u32 {
        let filter = random_filter(&mut rng);
        let group = if rng.gen_ratio(1, 5) {
            Some(["g1", "g2"][rng.gen_range(0..2)])
        } else {
            None
        };
        let key = rng.gen_range(0..50);
        // The same key subscribing twice on one filter/group replaces; keep the model in step.
        let old = tree.insert(&filter, group, key, sub(id));
        if let Some(old) = old {
            let old_id = old.identifier.unwrap_or(u32::MAX);
            assert_eq!(live.remove(&old_id), Some((filter.clone(), group, key)));
        }
        live.insert(id, (filter, group, key));
    }
    assert_eq!(tree.len(), live.len());
    let check = |tree: &mut SubscriptionTree<u32>,
                 live: &BTreeMap<u32, (String, Option<&'static str>, u32)>,
                 rng: &mut ChaCha8Rng| {
        let (mut normal, mut shared) = (0, 0);
        for _ in 0..2000 {
            let topic = random_topic(rng);
            let mut out = Vec::new();
            tree.match_topic(&topic, |k| k % 3 != 0, &mut out);
            let got: BTreeSet<u32> = out
                .iter()
                .filter(|m| !m.shared)
                .filter_map(|m| m.subscription.identifier)
                .collect();
            let want: BTreeSet<u32> = live
                .iter()
                .filter(|(_, (f, g, _))| g.is_none() && naive_match(f, &topic))
                .map(|(id, _)| *id)
                .collect();
            assert_eq!(
                got.len(),
                out.iter().filter(|m| !m.shared).count(),
                "no duplicates for {topic}"
            );
            assert_eq!(got, want, "non-shared matches of {topic}");
            // Shared: exactly one pick per matching (filter, group).
            let mut picks: BTreeMap<(&str, &str), u32> = BTreeMap::new();
            for m in out.iter().filter(|m| m.shared) {
                let id = m.subscription.identifier.unwrap_or(u32::MAX);
                let (f, g, k) = live
                    .get(&id)
                    .map(|(f, g, k)| (f.as_str(), *g, *k))
                    .unwrap_or(("?", None, 0));
                assert_eq!(k, m.key);
                *picks.entry((f, g.unwrap_or("?"))).or_default() += 1;
            }
            let want_groups: BTreeSet<(&str, &str)> = live
                .values()
                .filter_map(|(f, g, _)| g.map(|g| (f.as_str(), g)))
                .filter(|(f, _)| naive_match(f, &topic))
                .collect();
            assert_eq!(
                picks.keys().copied().collect::<BTreeSet<_>>(),
                want_groups,
                "groups for {topic}"
            );
            assert!(picks.values().all(|&n| n == 1), "one member per group for {topic}");
            normal += got.len();
            shared += picks.len();
        }
        // Guard against a vacuous comparison: the random mix must actually produce matches of both kinds.
        assert!(
            normal > 2000 && shared > 200,
            "{normal} normal, {shared} shared matches"
        );
    };
    check(&mut tree, &live, &mut rng);
    // Remove about half, then compare again: removal and pruning must not disturb the rest.
    let ids: Vec<u32> = live.keys().copied().collect();
    for id in ids {
        if rng.gen_bool(0.5) {
            if let Some((f, g, k)) = live.remove(&id) {
                assert_eq!(tree.remove(&f, g, k), Some(sub(id)));
            }
        }
    }
    assert_eq!(tree.len(), live.len());
    check(&mut tree, &live, &mut rng);
    for (id, (f, g, k)) in std::mem::take(&mut live) {
        assert_eq!(tree.remove(&f, g, k), Some(sub(id)));
    }
    assert!(tree.is_empty());
    assert_eq!(node_count(&tree), 1);
}
