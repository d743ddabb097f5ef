//! The subscription tree: one node per topic level, so that matching a topic costs O(depth), not O(subscriptions).
//!
//! CONTRACT (owned by the topic-tree work): keep these signatures.
//!
//! Layout: every node has its literal children keyed by level string (a small Vec, or a deterministic hash map once
//! there are more than a few: see `children.rs`), plus separate
//! slots for the `+` child and the `#` child, so a topic walks one literal edge per level and only branches where a
//! wildcard was subscribed. Matching, insertion, removal and dropping are all iterative: a filter or topic may have
//! tens of thousands of levels (65,535 bytes of `/`), and recursion that deep would overflow the stack.

use crate::hash::HashKeys;
use crate::packet::SubscriptionOptions;
use children::Children;
use std::collections::BTreeMap;
use std::hash::Hash;

mod children;
#[cfg(test)]
mod tests;

/// What one session subscribed with on one filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    pub options: SubscriptionOptions,
    /// MQTT 5.0 Subscription Identifier, if the SUBSCRIBE carried one.
    pub identifier: Option<u32>,
}

/// One subscription that matched a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicMatch<K> {
    pub key: K,
    pub subscription: Subscription,
    /// True when this match came from a shared subscription (one member picked from the group).
    pub shared: bool,
}

/// Subscriptions keyed by `K` (the broker's session key).
pub struct SubscriptionTree<K> {
    root: Node<K>,
    len: usize,
    /// Secret keys for the wide nodes' hash maps (topic levels are client-chosen).
    hash_keys: HashKeys,
}

/// Above this many subscribers on one filter the sorted Vec turns into a BTreeMap, so that thousands of sessions
/// subscribing to the same filter cost O(log n) each instead of an O(n) shift.
const SMALL_MAX: usize = 32;

/// Non-shared subscribers of one filter, ordered by key so that match output is deterministic.
enum SubList<K> {
    /// Sorted by key. Small and allocation-light: most filters have a handful of subscribers.
    Small(Vec<(K, Subscription)>),
    Large(BTreeMap<K, Subscription>),
}

impl<K: Copy + Ord> SubList<K> {
    fn len(&self) -> usize {
        match self {
            SubList::Small(v) => v.len(),
            SubList::Large(m) => m.len(),
        }
    }

    fn insert(&mut self, key: K, sub: Subscription) -> Option<Subscription> {
        match self {
            SubList::Small(v) => match v.binary_search_by(|(k, _)| k.cmp(&key)) {
                Ok(i) => v.get_mut(i).map(|slot| std::mem::replace(&mut slot.1, sub)),
                Err(i) if v.len() < SMALL_MAX => {
                    // Most filters have one subscriber: start exact instead of at the default capacity of 4.
                    if v.len() < 4 {
                        v.reserve_exact(1);
                    }
                    v.insert(i, (key, sub));
                    None
                }
                Err(_) => {
                    let mut m: BTreeMap<K, Subscription> = v.drain(..).collect();
                    m.insert(key, sub);
                    *self = SubList::Large(m);
                    None
                }
            },
            SubList::Large(m) => m.insert(key, sub),
        }
    }

    fn remove(&mut self, key: K) -> Option<Subscription> {
        match self {
            SubList::Small(v) => {
                let i = v.binary_search_by(|(k, _)| k.cmp(&key)).ok()?;
                let old = v.remove(i).1;
                if v.is_empty() {
                    // Give the buffer back: an empty filter keeps no memory.
                    *v = Vec::new();
                }
                Some(old)
            }
            SubList::Large(m) => {
                let old = m.remove(&key)?;
                // Hysteresis (half of SMALL_MAX) so alternating insert/remove at the boundary does not convert
                // back and forth on every call.
                if m.len() < SMALL_MAX / 2 {
                    let v: Vec<(K, Subscription)> = std::mem::take(m).into_iter().collect();
                    *self = SubList::Small(v);
                }
                Some(old)
            }
        }
    }

    fn emit(&self, out: &mut Vec<TopicMatch<K>>) {
        let push = |(key, subscription): (K, Subscription)| TopicMatch {
            key,
            subscription,
            shared: false,
        };
        match self {
            SubList::Small(v) => out.extend(v.iter().copied().map(push)),
            SubList::Large(m) => out.extend(m.iter().map(|(k, s)| push((*k, *s)))),
        }
    }
}

/// One shared subscription `$share/{name}/{filter}` (MQTT 5.0 section 4.8.2): each message goes to one member.
struct SharedGroup<K> {
    name: Box<str>,
    /// In insertion order: the order round-robin walks.
    members: Vec<(K, Subscription)>,
    /// Index of the member to try first for the next message.
    cursor: usize,
}

impl<K: Copy + Eq> SharedGroup<K> {
    /// Picks one member, preferring available ones, and moves the cursor past it so consecutive messages rotate
    /// through the group.
    fn pick(&mut self, available: &mut impl FnMut(K) -> bool) -> Option<(K, Subscription)> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor % n;
        let chosen = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| self.members.get(i).is_some_and(|(k, _)| available(*k)))
            // Nobody is available (all offline, say): still deliver to someone rather than drop, the broker
            // queues it for that session.
            .unwrap_or(start);
        self.cursor = (chosen + 1) % n;
        self.members.get(chosen).copied()
    }

    fn remove(&mut self, key: K) -> Option<Subscription> {
        let i = self.members.iter().position(|(k, _)| *k == key)?;
        let (_, old) = self.members.remove(i);
        // Keep the cursor pointing at the same next member: removing someone before it shifts everyone left.
        if i < self.cursor {
            self.cursor -= 1;
        }
        if self.cursor >= self.members.len() {
            self.cursor = 0;
        }
        Some(old)
    }
}

/// Everything subscribed on exactly one filter (or one `#` slot).
struct Leaf<K> {
    subs: SubList<K>,
    /// Sorted by group name, for deterministic order and binary search.
    shared: Vec<SharedGroup<K>>,
}

impl<K> Default for Leaf<K> {
    fn default() -> Self {
        Leaf {
            subs: SubList::Small(Vec::new()),
            shared: Vec::new(),
        }
    }
}

impl<K: Copy + Ord> Leaf<K> {
    fn is_empty(&self) -> bool {
        self.subs.len() == 0 && self.shared.is_empty()
    }

    fn insert(&mut self, group: Option<&str>, key: K, sub: Subscription) -> Option<Subscription> {
        let Some(name) = group else {
            return self.subs.insert(key, sub);
        };
        let i = match self.shared.binary_search_by(|g| (*g.name).cmp(name)) {
            Ok(i) => i,
            Err(i) => {
                self.shared.insert(
                    i,
                    SharedGroup {
                        name: name.into(),
                        members: Vec::new(),
                        cursor: 0,
                    },
                );
                i
            }
        };
        let g = self.shared.get_mut(i)?;
        // Replacing keeps the member's place in the rotation [MQTT-3.8.4-3].
        if let Some(slot) = g.members.iter_mut().find(|(k, _)| *k == key) {
            return Some(std::mem::replace(&mut slot.1, sub));
        }
        g.members.push((key, sub));
        None
    }

    fn remove(&mut self, group: Option<&str>, key: K) -> Option<Subscription> {
        let Some(name) = group else {
            return self.subs.remove(key);
        };
        let i = self.shared.binary_search_by(|g| (*g.name).cmp(name)).ok()?;
        let g = self.shared.get_mut(i)?;
        let old = g.remove(key)?;
        if g.members.is_empty() {
            self.shared.remove(i);
        }
        Some(old)
    }

    fn emit(&mut self, available: &mut impl FnMut(K) -> bool, out: &mut Vec<TopicMatch<K>>) {
        self.subs.emit(out);
        for g in &mut self.shared {
            if let Some((key, subscription)) = g.pick(available) {
                out.push(TopicMatch {
                    key,
                    subscription,
                    shared: true,
                });
            }
        }
    }
}

struct Node<K> {
    /// Literal levels, including the empty level (`a//b`) and, for robustness, a `#` that is not last.
    children: Children<K>,
    /// The `+` child: matches exactly one level, whatever it is (empty included).
    plus: Option<Box<Node<K>>>,
    /// Subscriptions on `<this node>/#`. `#` is always the last level, so it needs no children.
    hash: Option<Box<Leaf<K>>>,
    /// Subscriptions whose filter ends at this node.
    leaf: Leaf<K>,
}

impl<K> Default for Node<K> {
    fn default() -> Self {
        Node {
            children: Children::default(),
            plus: None,
            hash: None,
            leaf: Leaf::default(),
        }
    }
}

impl<K> Node<K> {
    fn child_count(&self) -> usize {
        self.children.len() + usize::from(self.plus.is_some()) + usize::from(self.hash.is_some())
    }
}

/// How one filter level is stored.
#[derive(Clone, Copy)]
enum Edge<'a> {
    Literal(&'a str),
    Plus,
    /// Only for a `#` that is the last level, where it is valid [MQTT-4.7.1-2]; anywhere else it is taken literally
    /// (an invalid filter must not panic, and a literal `#` level can never match a valid topic name, which has no
    /// wildcards [MQTT-4.7.0-1]).
    Hash,
}

/// Splits `filter` into edges without allocating.
fn edges(filter: &str) -> impl Iterator<Item = Edge<'_>> {
    let mut levels = filter.split('/').peekable();
    std::iter::from_fn(move || {
        let level = levels.next()?;
        let last = levels.peek().is_none();
        Some(match level {
            "+" => Edge::Plus,
            "#" if last => Edge::Hash,
            other => Edge::Literal(other),
        })
    })
}

/// Splits off the first level of what remains of a topic: `None` means the topic is exhausted.
fn next_level(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('/') {
        Some((level, after)) => (level, Some(after)),
        None => (rest, None),
    }
}

/// Inline capacity of the match stack: topics deeper than this (with wildcards along the way) spill to the heap.
const INLINE_FRAMES: usize = 16;

/// A depth-first work stack that keeps its first frames inline, so typical matches do not allocate.
struct Stack<T> {
    inline: [Option<T>; INLINE_FRAMES],
    len: usize,
    spill: Vec<T>,
}

impl<T> Stack<T> {
    fn new() -> Self {
        Stack {
            inline: std::array::from_fn(|_| None),
            len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, item: T) {
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(item);
                self.len += 1;
            }
            None => self.spill.push(item),
        }
    }

    fn pop(&mut self) -> Option<T> {
        if let Some(item) = self.spill.pop() {
            return Some(item);
        }
        self.len = self.len.checked_sub(1)?;
        self.inline.get_mut(self.len).and_then(Option::take)
    }
}

impl<K: Copy + Ord + Hash> SubscriptionTree<K> {
    /// An empty tree whose wide nodes hash levels with `hash_keys` (the broker's, see `hash`).
    pub fn new(hash_keys: HashKeys) -> Self {
        SubscriptionTree {
            root: Node::default(),
            len: 0,
            hash_keys,
        }
    }

    /// Adds or replaces the subscription of `key` on `filter` (a plain filter, already stripped of `$share/{group}/`;
    /// `group` is `Some` for shared subscriptions). Returns the subscription it replaced, if any.
    pub fn insert(&mut self, filter: &str, group: Option<&str>, key: K, sub: Subscription) -> Option<Subscription> {
        let mut node = &mut self.root;
        let mut leaf = None;
        for edge in edges(filter) {
            match edge {
                Edge::Literal(level) => {
                    node = node.children.get_or_insert(level, self.hash_keys);
                }
                Edge::Plus => node = node.plus.get_or_insert_with(Box::default),
                Edge::Hash => leaf = Some(node.hash.get_or_insert_with(Box::default)),
            }
        }
        let leaf: &mut Leaf<K> = match leaf {
            Some(l) => l,
            None => &mut node.leaf,
        };
        // A second SUBSCRIBE on the same filter replaces the first [MQTT-3.8.4-3].
        let old = leaf.insert(group, key, sub);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the subscription of `key` on `filter`/`group`; returns it if it existed.
    pub fn remove(&mut self, filter: &str, group: Option<&str>, key: K) -> Option<Subscription> {
        let (old, now_empty) = {
            let leaf = self.find_leaf_mut(filter)?;
            let old = leaf.remove(group, key)?;
            (old, leaf.is_empty())
        };
        self.len -= 1;
        if now_empty {
            self.prune(filter);
        }
        Some(old)
    }

    /// Appends to `out` every non-shared subscription whose filter matches `topic`, and for every matching shared
    /// group exactly one member, chosen round-robin among members for which `available` is true (or among all
    /// members when none is). Order is deterministic.
    pub fn match_topic(&mut self, topic: &str, mut available: impl FnMut(K) -> bool, out: &mut Vec<TopicMatch<K>>) {
        let root = &mut self.root;
        let (first, after) = next_level(topic);
        // Wildcards at the first level do not match topics starting with `$` [MQTT-4.7.2-1], so `#` and `+/...`
        // never see `$SYS/...`; a literal `$SYS` first level still does.
        let dollar = first.starts_with('$');
        let mut stack: Stack<(&mut Node<K>, Option<&str>)> = Stack::new();
        if !dollar {
            if let Some(h) = root.hash.as_deref_mut() {
                h.emit(&mut available, out);
            }
            if let Some(p) = root.plus.as_deref_mut() {
                stack.push((p, after));
            }
        }
        if let Some(c) = root.children.get_mut(first) {
            stack.push((c, after));
        }
        // Invariant: each frame is a node whose level matched the topic level just consumed, with what remains.
        while let Some((node, rest)) = stack.pop() {
            // `#` matches the parent level too, so `sport/#` matches `sport` as well as `sport/x/y` (MQTT 5.0
            // section 4.7.1.2).
            if let Some(h) = node.hash.as_deref_mut() {
                h.emit(&mut available, out);
            }
            let Some(rest) = rest else {
                node.leaf.emit(&mut available, out);
                continue;
            };
            let (level, after) = next_level(rest);
            // `+` matches exactly one level, including an empty one (MQTT 5.0 section 4.7.1.3). Pushed first so
            // the literal branch is visited first: any fixed order keeps output deterministic.
            if let Some(p) = node.plus.as_deref_mut() {
                stack.push((p, after));
            }
            if let Some(c) = node.children.get_mut(level) {
                stack.push((c, after));
            }
        }
    }

    /// Number of subscriptions (shared members count one each).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nodes below the root: what must shrink back once subscriptions are removed (see `prune`).
    pub fn node_count(&self) -> usize {
        let mut count = 0;
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            let children = node.children.nodes();
            count += children.len() + usize::from(node.plus.is_some());
            stack.extend(children);
            stack.extend(node.plus.as_deref());
        }
        count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn find_leaf_mut(&mut self, filter: &str) -> Option<&mut Leaf<K>> {
        let mut node = &mut self.root;
        for edge in edges(filter) {
            match edge {
                Edge::Literal(level) => node = node.children.get_mut(level)?,
                Edge::Plus => node = node.plus.as_deref_mut()?,
                Edge::Hash => return node.hash.as_deref_mut(),
            }
        }
        Some(&mut node.leaf)
    }

    /// Removes the chain of nodes along `filter` that no longer hold anything, so that memory goes back when
    /// subscriptions go away. Two passes instead of recursion: the first finds the deepest node that must stay (it
    /// holds subscriptions or other branches), the second cuts the edge below it.
    fn prune(&mut self, filter: &str) {
        // Depth of the deepest node that must stay; the root always stays.
        let mut keep = 0usize;
        let mut depth = 0usize;
        let mut target_dead = false;
        {
            let mut node = &self.root;
            let mut it = edges(filter).peekable();
            while let Some(edge) = it.next() {
                // Intermediate node: it stays if it holds subscriptions or more branches than the one on our path.
                if depth > 0 && (!node.leaf.is_empty() || node.child_count() > 1) {
                    keep = depth;
                }
                depth += 1;
                let next = match edge {
                    Edge::Literal(level) => node.children.get(level),
                    Edge::Plus => node.plus.as_deref(),
                    Edge::Hash => {
                        target_dead = node.hash.as_deref().is_some_and(Leaf::is_empty);
                        break;
                    }
                };
                let Some(next) = next else { return };
                node = next;
                if it.peek().is_none() {
                    target_dead = node.leaf.is_empty() && node.child_count() == 0;
                }
            }
        }
        if !target_dead {
            return;
        }
        // Walk to the node at depth `keep` and cut the edge that leads to the dead chain.
        let mut node = &mut self.root;
        for (d, edge) in edges(filter).enumerate() {
            if d == keep {
                match edge {
                    Edge::Literal(level) => {
                        node.children.remove(level);
                    }
                    Edge::Plus => node.plus = None,
                    Edge::Hash => node.hash = None,
                }
                return;
            }
            let next = match edge {
                Edge::Literal(level) => node.children.get_mut(level),
                Edge::Plus => node.plus.as_deref_mut(),
                Edge::Hash => None,
            };
            match next {
                Some(n) => node = n,
                None => return,
            }
        }
    }
}

impl<K> Drop for SubscriptionTree<K> {
    /// Dismantles the tree iteratively: the default recursive drop of a very deep filter would overflow the stack.
    fn drop(&mut self) {
        fn detach<K>(node: &mut Node<K>, work: &mut Vec<Node<K>>) {
            node.children.drain_into(work);
            work.extend(node.plus.take().map(|child| *child));
        }
        let mut work: Vec<Node<K>> = Vec::new();
        detach(&mut self.root, &mut work);
        while let Some(mut node) = work.pop() {
            detach(&mut node, &mut work);
        }
    }
}
