//! The retained-message store, itself a tree by topic level so that a wildcard SUBSCRIBE visits only the branches
//! its filter can match.
//!
//! CONTRACT (owned by the topic-tree work): keep these signatures.
//!
//! Children live in a BTreeMap so that delivery order is lexicographic by level and identical in every run. Every
//! walk is iterative: a topic may have tens of thousands of (empty) levels and recursion that deep would overflow
//! the stack.

use std::collections::BTreeMap;

#[cfg(test)]
mod tests;

pub struct RetainedTree<V> {
    root: Node<V>,
    len: usize,
}

struct Node<V> {
    /// The retained message whose topic ends at this node. The root never holds one: every topic has a level.
    value: Option<V>,
    children: BTreeMap<Box<str>, Node<V>>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            value: None,
            children: BTreeMap::new(),
        }
    }
}

/// What remains of the filter below a node.
#[derive(Clone, Copy)]
enum Rest<'f> {
    /// Remaining filter levels; `None` once the filter is used up.
    Filter(Option<&'f str>),
    /// Under a `#`: every descendant matches.
    All,
}

/// One pending node of a depth-first walk: the node, the length of its parent's topic in the shared buffer, its
/// own level, and what it still has to match.
struct Frame<'t, 'f, V> {
    node: &'t Node<V>,
    parent_len: usize,
    first: bool,
    level: &'t str,
    rest: Rest<'f>,
}

/// Schedules every child of `node` (but `$` ones at the first level [MQTT-4.7.2-1]), reversed so that popping
/// visits them in ascending order.
fn push_children<'t, 'f, V>(
    stack: &mut Vec<Frame<'t, 'f, V>>,
    node: &'t Node<V>,
    rest: Rest<'f>,
    first: bool,
    parent_len: usize,
) {
    for (level, child) in node.children.iter().rev() {
        if first && level.starts_with('$') {
            continue;
        }
        stack.push(Frame {
            node: child,
            parent_len,
            first,
            level,
            rest,
        });
    }
}

/// Splits off the first level: `None` means nothing follows.
fn next_level(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('/') {
        Some((level, after)) => (level, Some(after)),
        None => (rest, None),
    }
}

impl<V> Default for RetainedTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> RetainedTree<V> {
    pub fn new() -> Self {
        RetainedTree {
            root: Node::default(),
            len: 0,
        }
    }

    /// Stores `value` as the retained message of `topic` (a valid topic name); returns the one it replaced.
    pub fn insert(&mut self, topic: &str, value: V) -> Option<V> {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        // Only one retained message per topic: a new one replaces the old [MQTT-3.3.1-5].
        let old = node.value.replace(value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, topic: &str) -> Option<V> {
        let (old, dead) = {
            let node = self.find_mut(topic)?;
            let old = node.value.take()?;
            (old, node.children.is_empty())
        };
        self.len -= 1;
        if dead {
            self.prune(topic);
        }
        Some(old)
    }

    pub fn get(&self, topic: &str) -> Option<&V> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.value.as_ref()
    }

    /// Calls `f(topic, value)` for every retained message whose topic matches `filter` (a valid, non-shared filter),
    /// honouring the rule that wildcards at the first level do not match `$` topics [MQTT-4.7.2-1].
    /// Order is deterministic (lexicographic by level).
    pub fn for_each_match(&self, filter: &str, mut f: impl FnMut(&str, &V)) {
        let mut topic = String::new();
        let mut stack: Vec<Frame<'_, '_, V>> = Vec::new();
        // The root stands for "before the first level": expand it by hand with the `$` rule, which applies to the
        // first level only (`a/+` does match `a/$x`).
        let (first, after) = next_level(filter);
        match first {
            "#" if after.is_none() => push_children(&mut stack, &self.root, Rest::All, true, 0),
            "+" => push_children(&mut stack, &self.root, Rest::Filter(after), true, 0),
            literal => {
                if let Some((level, child)) = self.root.children.get_key_value(literal) {
                    stack.push(Frame {
                        node: child,
                        parent_len: 0,
                        first: true,
                        level,
                        rest: Rest::Filter(after),
                    });
                }
            }
        }
        while let Some(frame) = stack.pop() {
            topic.truncate(frame.parent_len);
            if !frame.first {
                topic.push('/');
            }
            topic.push_str(frame.level);
            let here = topic.len();
            let node = frame.node;
            match frame.rest {
                Rest::All | Rest::Filter(None) => {
                    if let Some(v) = &node.value {
                        f(&topic, v);
                    }
                    if matches!(frame.rest, Rest::All) {
                        push_children(&mut stack, node, Rest::All, false, here);
                    }
                }
                Rest::Filter(Some(rest)) => match next_level(rest) {
                    // `#` also matches the parent level: `sport/#` matches `sport` (MQTT 5.0 section 4.7.1.2).
                    ("#", None) => {
                        if let Some(v) = &node.value {
                            f(&topic, v);
                        }
                        push_children(&mut stack, node, Rest::All, false, here);
                    }
                    // `+` matches exactly one level, the empty one included (MQTT 5.0 section 4.7.1.3).
                    ("+", after) => push_children(&mut stack, node, Rest::Filter(after), false, here),
                    (literal, after) => {
                        if let Some((level, child)) = node.children.get_key_value(literal) {
                            stack.push(Frame {
                                node: child,
                                parent_len: here,
                                first: false,
                                level,
                                rest: Rest::Filter(after),
                            });
                        }
                    }
                },
            }
        }
    }

    /// Keeps only the messages for which `keep` returns true (used to purge expired messages).
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &V) -> bool) {
        // First decide (read-only walk, reusing the matcher with `#` semantics minus the `$` rule), then remove by
        // topic so that pruning stays in one place. Purges are periodic, not per message.
        let mut doomed: Vec<String> = Vec::new();
        self.for_each_node(|topic, v| {
            if !keep(topic, v) {
                doomed.push(topic.to_owned());
            }
        });
        for topic in doomed {
            self.remove(&topic);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Nodes below the root: what must shrink back once retained messages are cleared.
    pub fn node_count(&self) -> usize {
        let mut count = 0;
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            count += node.children.len();
            stack.extend(node.children.values());
        }
        count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every stored message, `$` topics included, in lexicographic order.
    pub fn for_each(&self, f: impl FnMut(&str, &V)) {
        self.for_each_node(f);
    }

    /// Every stored message, `$` topics included, in lexicographic order.
    fn for_each_node(&self, mut f: impl FnMut(&str, &V)) {
        let mut topic = String::new();
        let mut stack: Vec<(&Node<V>, usize, bool, &str)> = Vec::new();
        for (level, child) in self.root.children.iter().rev() {
            stack.push((child, 0, true, level));
        }
        while let Some((node, parent_len, first, level)) = stack.pop() {
            topic.truncate(parent_len);
            if !first {
                topic.push('/');
            }
            topic.push_str(level);
            if let Some(v) = &node.value {
                f(&topic, v);
            }
            let here = topic.len();
            for (level, child) in node.children.iter().rev() {
                stack.push((child, here, false, level));
            }
        }
    }

    fn find_mut(&mut self, topic: &str) -> Option<&mut Node<V>> {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.get_mut(level)?;
        }
        Some(node)
    }

    /// Cuts the chain of nodes along `topic` that hold nothing any more, so memory goes back. Two passes instead of
    /// recursion: find the deepest node that must stay (it holds a message or other branches), then cut below it.
    fn prune(&mut self, topic: &str) {
        let mut keep = 0usize;
        {
            let mut node = &self.root;
            for (depth, level) in topic.split('/').enumerate() {
                if depth > 0 && (node.value.is_some() || node.children.len() > 1) {
                    keep = depth;
                }
                match node.children.get(level) {
                    Some(next) => node = next,
                    None => return,
                }
            }
            if node.value.is_some() || !node.children.is_empty() {
                return;
            }
        }
        let mut node = &mut self.root;
        for (depth, level) in topic.split('/').enumerate() {
            if depth == keep {
                node.children.remove(level);
                return;
            }
            match node.children.get_mut(level) {
                Some(next) => node = next,
                None => return,
            }
        }
    }
}

impl<V> Drop for RetainedTree<V> {
    /// Dismantles the tree iteratively: the default recursive drop of a very deep topic would overflow the stack.
    fn drop(&mut self) {
        let mut work: Vec<Node<V>> = std::mem::take(&mut self.root.children).into_values().collect();
        while let Some(mut node) = work.pop() {
            work.extend(std::mem::take(&mut node.children).into_values());
        }
    }
}
