//! Tests of the retained store against MQTT 5.0 sections 3.3.1.3, 4.7 and a naive reference matcher.

use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn store(topics: &[&str]) -> RetainedTree<usize> {
    let mut t = RetainedTree::new();
    for (i, topic) in topics.iter().enumerate() {
        t.insert(topic, i);
    }
    t
}

fn matching(t: &RetainedTree<usize>, filter: &str) -> Vec<String> {
    let mut out = Vec::new();
    t.for_each_match(filter, |topic, _| out.push(topic.to_owned()));
    out
}

/// Nodes, the root included.
fn node_count<V>(t: &RetainedTree<V>) -> usize {
    t.node_count() + 1
}

const SPORT: [&str; 7] = [
    "sport",
    "sport/",
    "sport/tennis/player1",
    "sport/tennis/player1/ranking",
    "sport/tennis/player1/score/wimbledon",
    "sport/tennis/player2",
    "/finance",
];

#[test]
fn insert_replaces_the_previous_retained_message_of_a_topic_mqtt_3_3_1_5() {
    let mut t = RetainedTree::new();
    assert_eq!(t.insert("a/b", 1), None);
    assert_eq!(t.insert("a/b", 2), Some(1));
    assert_eq!(t.len(), 1);
    assert_eq!(t.get("a/b"), Some(&2));
    assert_eq!(t.get("a"), None);
    assert_eq!(t.get("a/b/c"), None);
}

#[test]
fn multi_level_wildcard_visits_parent_and_descendants_in_lexicographic_order_4_7_1_2() {
    let t = store(&SPORT);
    assert_eq!(
        matching(&t, "sport/tennis/player1/#"),
        [
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/score/wimbledon"
        ]
    );
    assert_eq!(
        matching(&t, "sport/#"),
        [
            "sport",
            "sport/",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/score/wimbledon",
            "sport/tennis/player2"
        ]
    );
    assert_eq!(matching(&t, "#").len(), SPORT.len());
}

#[test]
fn single_level_wildcard_matches_exactly_one_level_4_7_1_3() {
    let t = store(&SPORT);
    assert_eq!(
        matching(&t, "sport/tennis/+"),
        ["sport/tennis/player1", "sport/tennis/player2"]
    );
    assert_eq!(matching(&t, "sport/+"), ["sport/"]);
    assert_eq!(matching(&t, "+/+"), ["/finance", "sport/"]);
    assert_eq!(matching(&t, "/+"), ["/finance"]);
    assert_eq!(matching(&t, "+"), ["sport"]);
    assert_eq!(matching(&t, "+/tennis/#").len(), 4);
}

#[test]
fn wildcards_at_first_level_skip_dollar_topics_mqtt_4_7_2_1() {
    let t = store(&["$SYS/monitor/Clients", "$SYS", "a/$x", "b"]);
    assert_eq!(matching(&t, "#"), ["a/$x", "b"]);
    assert!(matching(&t, "+/monitor/Clients").is_empty());
    assert_eq!(matching(&t, "+"), ["b"]);
    assert_eq!(matching(&t, "$SYS/#"), ["$SYS", "$SYS/monitor/Clients"]);
    assert_eq!(matching(&t, "$SYS/monitor/+"), ["$SYS/monitor/Clients"]);
    assert_eq!(matching(&t, "a/+"), ["a/$x"]);
}

#[test]
fn exact_filters_and_empty_levels_match_only_their_topic() {
    let t = store(&["a//b", "a/b", "/a", "a", "a/x/b"]);
    assert_eq!(matching(&t, "a//b"), ["a//b"]);
    assert_eq!(matching(&t, "a/+/b"), ["a//b", "a/x/b"]);
    assert_eq!(matching(&t, "/a"), ["/a"]);
    assert!(matching(&t, "a/c").is_empty());
    assert!(
        matching(&t, "a/#/b").is_empty(),
        "a misplaced `#` is literal and matches nothing"
    );
}

#[test]
fn remove_returns_the_message_and_prunes_empty_nodes() {
    let topics = ["a/b/c", "a/b", "a", "a//", "x/y/z", "$SYS/x"];
    let mut t = store(&topics);
    assert!(node_count(&t) > 1);
    assert_eq!(t.remove("a/b/c/d"), None);
    assert_eq!(t.remove("a/b/c"), Some(0));
    assert_eq!(t.get("a/b"), Some(&1), "parents stay while they hold messages");
    assert_eq!(t.remove("a/b/c"), None);
    for (i, topic) in topics.iter().enumerate().skip(1) {
        assert_eq!(t.remove(topic), Some(i));
    }
    assert!(t.is_empty());
    assert_eq!(node_count(&t), 1, "only the root is left");
}

#[test]
fn remove_keeps_branches_still_holding_messages() {
    let mut t = store(&["a/b/c", "a/b/d"]);
    assert_eq!(t.remove("a/b/c"), Some(0));
    // root, a, b, d.
    assert_eq!(node_count(&t), 4);
    assert_eq!(matching(&t, "#"), ["a/b/d"]);
}

#[test]
fn retain_purges_rejected_messages_including_dollar_topics() {
    let mut t = store(&["a", "a/b", "a/b/c", "$SYS/x", "b"]);
    t.retain(|topic, v| topic != "a/b" && *v != 3);
    assert_eq!(t.len(), 3);
    assert_eq!(matching(&t, "#"), ["a", "a/b/c", "b"]);
    assert_eq!(t.get("$SYS/x"), None);
    t.retain(|_, _| false);
    assert!(t.is_empty());
    assert_eq!(node_count(&t), 1);
}

#[test]
fn very_deep_topics_do_not_overflow_the_stack() {
    let deep = "/".repeat(65_535);
    let mut t = RetainedTree::new();
    t.insert(&deep, 1);
    t.insert(&format!("{deep}x"), 2);
    assert_eq!(t.get(&deep), Some(&1));
    let mut n = 0;
    t.for_each_match("#", |_, _| n += 1);
    assert_eq!(n, 2);
    assert_eq!(t.remove(&format!("{deep}x")), Some(2));
    t.retain(|_, _| true);
    assert_eq!(t.len(), 1);
    drop(t);
}

/// The reference matcher, straight from MQTT 5.0 section 4.7.
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

fn random_path(rng: &mut ChaCha8Rng, wildcards: bool) -> String {
    const LEVELS: [&str; 5] = ["a", "b", "c", "", "dd"];
    let depth = rng.gen_range(1..=5);
    let mut levels: Vec<&str> = (0..depth)
        .map(|i| {
            if i == 0 && rng.gen_ratio(1, 8) {
                "$SYS"
            } else if wildcards && rng.gen_ratio(1, 4) {
                "+"
            } else {
                LEVELS[rng.gen_range(0..LEVELS.len())]
            }
        })
        .collect();
    if wildcards && rng.gen_ratio(1, 4) {
        levels.push("#");
    }
    levels.join("/")
}

#[test]
fn random_filters_agree_with_a_naive_matcher_and_come_out_sorted_by_level() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5EED_0413);
    let mut t = RetainedTree::new();
    let mut model = std::collections::BTreeMap::new();
    for i in 0..2000usize {
        let topic = random_path(&mut rng, false);
        assert_eq!(t.insert(&topic, i), model.insert(topic, i));
        if rng.gen_ratio(1, 4) {
            let victim = random_path(&mut rng, false);
            assert_eq!(t.remove(&victim), model.remove(&victim));
        }
    }
    assert_eq!(t.len(), model.len());
    let mut total = 0;
    for _ in 0..2000 {
        let filter = random_path(&mut rng, true);
        let mut got: Vec<(String, usize)> = Vec::new();
        t.for_each_match(&filter, |topic, v| got.push((topic.to_owned(), *v)));
        // Lexicographic by level: compare level lists, not whole strings ("a/b" < "a//" by level, not by byte).
        let mut want: Vec<(String, usize)> = model
            .iter()
            .filter(|(k, _)| naive_match(&filter, k))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        want.sort_by(|(a, _), (b, _)| a.split('/').cmp(b.split('/')));
        assert_eq!(got, want, "filter {filter}");
        total += got.len();
    }
    assert!(total > 2000, "the comparison must not be vacuous: {total}");
}

/// A wide answer given in slices (each resuming after the last topic of the one before, as a wide SUBSCRIBE is
/// streamed) is the whole answer, in order, even when the topic a slice stopped at is removed before the next one,
/// and across nodes with many children (the BTreeMap form) and few (the slice form).
#[test]
fn a_walk_resumed_after_each_slice_gives_every_match_once_in_order() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5EED_0418);
    let mut t = RetainedTree::new();
    for i in 0..3000usize {
        let mut topic = random_path(&mut rng, false);
        if rng.gen_ratio(1, 2) {
            // Wide nodes: up to 40 children under one level.
            topic = format!("{topic}/{}", rng.gen_range(0..40));
        }
        t.insert(&topic, i);
    }
    let mut checked = 0;
    for round in 0..300 {
        let filter = if round % 10 == 0 {
            "#".to_string()
        } else {
            random_path(&mut rng, true)
        };
        let mut want: Vec<(String, usize)> = Vec::new();
        t.for_each_match(&filter, |topic, v| want.push((topic.to_owned(), *v)));
        let slice = rng.gen_range(1..=7);
        let mut got: Vec<(String, usize)> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut removed = Vec::new();
        loop {
            let mut taken = 0;
            let mut last = None;
            let done = t.for_each_match_after(&filter, cursor.as_deref(), |topic, v| {
                got.push((topic.to_owned(), *v));
                last = Some(topic.to_owned());
                taken += 1;
                taken < slice
            });
            cursor = last.or(cursor);
            if done {
                break;
            }
            // The place a slice stopped at may be gone by the next one (its retained message cleared).
            if rng.gen_ratio(1, 3) {
                let at = cursor.clone().expect("a stopped walk gave something");
                removed.push((at.clone(), t.remove(&at).expect("just given")));
            }
        }
        assert_eq!(got, want, "filter {filter} in slices of {slice}");
        checked += want.len();
        for (topic, v) in removed {
            t.insert(&topic, v);
        }
    }
    assert!(checked > 10_000, "the comparison must not be vacuous: {checked}");
}

/// One node grown through every form its children take (exact slice, sorted `Vec`, BTreeMap) and shrunk back:
/// at each size the walk is in level order, a walk resumed after any child continues with the next one, and
/// lookups find exactly the stored children.
#[test]
fn a_node_keeps_order_and_lookups_through_every_children_form() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5EED_1840);
    let mut t = RetainedTree::new();
    let mut model = std::collections::BTreeSet::new();
    let check = |t: &RetainedTree<usize>, model: &std::collections::BTreeSet<String>, rng: &mut ChaCha8Rng| {
        let got: Vec<String> = matching(t, "wide/+");
        let want: Vec<String> = model.iter().map(|l| format!("wide/{l}")).collect();
        assert_eq!(got, want, "{} children", model.len());
        if let Some(at) = model.iter().nth(rng.gen_range(0..model.len())) {
            let mut next = None;
            t.for_each_match_after("wide/+", Some(&format!("wide/{at}")), |topic, _| {
                next = Some(topic.to_owned());
                false
            });
            let want = model
                .range::<String, _>((Bound::Excluded(at.clone()), Bound::Unbounded))
                .next();
            assert_eq!(next, want.map(|l| format!("wide/{l}")));
            assert!(t.get(&format!("wide/{at}")).is_some());
        }
        assert_eq!(t.get("wide/not-stored"), None);
    };
    // Distinct levels in random order, short (inline) and long (behind a pointer).
    let mut levels: Vec<String> = (0..2600).map(|i| format!("{i}")).collect();
    levels.extend((0..400).map(|i| format!("a-level-longer-than-fourteen-bytes-{i}")));
    for i in (1..levels.len()).rev() {
        levels.swap(i, rng.gen_range(0..=i));
    }
    for (i, level) in levels.iter().enumerate() {
        assert_eq!(t.insert(&format!("wide/{level}"), i), None);
        model.insert(level.clone());
        if [1, 8, 9, 100, 2048, 2049, 2999].contains(&model.len()) {
            check(&t, &model, &mut rng);
        }
    }
    for level in &levels {
        assert!(t.remove(&format!("wide/{level}")).is_some());
        model.remove(level);
        if [2999, 2000, 1023, 1000, 5, 3, 1].contains(&model.len()) {
            check(&t, &model, &mut rng);
        }
    }
    assert_eq!(node_count(&t), 1, "only the root is left");
}

/// A child is a level and a node: 40 bytes for a pointer-sized value (issue #18, a million retained messages).
/// A fourth form of children, or a wider level, that breaks this costs every child of every node.
#[test]
fn a_child_of_the_tree_is_forty_bytes() {
    assert_eq!(std::mem::size_of::<Node<std::sync::Arc<()>>>(), 24);
    assert_eq!(std::mem::size_of::<Entry<std::sync::Arc<()>>>(), 40);
}

/// Recovery renumbers every message it inserted: the mutable walk must reach each value once, in every children
/// form (few, sorted, BTreeMap), and leave the topics where they were.
#[test]
fn the_mutable_walk_reaches_every_value_once() {
    let mut topics: Vec<String> = (0..3_000).map(|i| format!("wide/{i}")).collect();
    topics.extend((0..100).map(|i| format!("mid/{i}/leaf")));
    topics.extend(["a", "a/b", "a/b/c", "$SYS/x"].map(String::from));
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut t = store(&refs);
    let mut visits = 0;
    t.for_each_value_mut(|v| {
        *v += 1_000_000;
        visits += 1;
    });
    assert_eq!(visits, topics.len());
    for (i, topic) in topics.iter().enumerate() {
        assert_eq!(t.get(topic), Some(&(i + 1_000_000)), "{topic}");
    }
}
