//! The retained-message store, itself a tree by topic level so that a wildcard SUBSCRIBE visits only the branches
//! its filter can match.
//!
//! CONTRACT (owned by the topic-tree work): keep these signatures.
//!
//! Children are kept in level order (a sorted slice for a few, a BTreeMap for many) so that delivery order is
//! lexicographic by level and identical in every run, and so that a walk can resume after any topic
//! ([`RetainedTree::for_each_match_after`]): a wide SUBSCRIBE is answered in slices as the subscriber makes room.
//! Every walk is iterative: a topic may have tens of thousands of (empty) levels and recursion that deep would
//! overflow the stack.
//!
//! Memory (issue #18: a million retained messages): a node is 24 bytes plus its children; a level of up to 14 bytes
//! is stored inline ([`Level`]), so a child costs 40 bytes; a node with at most `FEW_MAX` children holds them in
//! one exact-size allocation, with at most `SORTED_MAX` in a sorted `Vec`, beyond that in a BTreeMap.

mod level;

use level::Level;
use std::collections::BTreeMap;
use std::ops::Bound;

#[cfg(test)]
mod tests;

pub struct RetainedTree<V> {
    root: Node<V>,
    len: usize,
}

struct Node<V> {
    /// The retained message whose topic ends at this node. The root never holds one: every topic has a level.
    value: Option<V>,
    children: Children<V>,
}

/// Up to this many children a node holds them in one exact-size sorted slice (most nodes of a fleet-shaped tree,
/// `site/S/device/D/temp`, have one child); an insertion copies them all, which is cheap at this size.
const FEW_MAX: usize = 8;

/// Up to this many, a sorted `Vec` with spare room: 40 bytes a child against ~100 in a BTreeMap (whose leaves are
/// half to two-thirds full), at the price of moving up to this many entries on an insertion (tens of
/// microseconds at most). Above it a BTreeMap keeps insertion logarithmic for flat namespaces of millions.
const SORTED_MAX: usize = 2048;

/// One child: its level and its node, kept sorted by level.
type Entry<V> = (Level, Node<V>);

enum Children<V> {
    Few(Box<[Entry<V>]>),
    // Boxed on purpose: with one pointer beside the slice the enum stays 16 bytes (the slice pointer's null niche
    // tells the two apart), and only the few wide nodes pay the extra allocation.
    Wide(Box<Wide<V>>),
}

enum Wide<V> {
    Sorted(Vec<Entry<V>>),
    Many(BTreeMap<Level, Node<V>>),
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            value: None,
            children: Children::Few(Box::default()),
        }
    }
}

/// Where `level` is (`Ok`) or would go (`Err`) in a sorted run of children.
fn search<V>(entries: &[Entry<V>], level: &str) -> Result<usize, usize> {
    entries.binary_search_by(|(l, _)| l.as_bytes().cmp(level.as_bytes()))
}

impl<V> Children<V> {
    /// The children as a sorted slice, unless they are in a BTreeMap.
    fn sorted(&self) -> Option<&[Entry<V>]> {
        match self {
            Children::Few(few) => Some(few),
            Children::Wide(wide) => match &**wide {
                Wide::Sorted(sorted) => Some(sorted),
                Wide::Many(_) => None,
            },
        }
    }

    fn many(&self) -> Option<&BTreeMap<Level, Node<V>>> {
        match self {
            Children::Wide(wide) => match &**wide {
                Wide::Many(many) => Some(many),
                Wide::Sorted(_) => None,
            },
            Children::Few(_) => None,
        }
    }

    fn len(&self) -> usize {
        match (self.sorted(), self.many()) {
            (Some(entries), _) => entries.len(),
            (None, Some(many)) => many.len(),
            (None, None) => 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, level: &str) -> Option<(&Level, &Node<V>)> {
        match (self.sorted(), self.many()) {
            (Some(entries), _) => search(entries, level).ok().map(|i| (&entries[i].0, &entries[i].1)),
            (None, Some(many)) => many.get_key_value(level.as_bytes()),
            (None, None) => None,
        }
    }

    fn get_mut(&mut self, level: &str) -> Option<&mut Node<V>> {
        let entries: &mut [Entry<V>] = match self {
            Children::Few(few) => few,
            Children::Wide(wide) => match &mut **wide {
                Wide::Sorted(sorted) => sorted,
                Wide::Many(many) => return many.get_mut(level.as_bytes()),
            },
        };
        search(entries, level).ok().map(|i| &mut entries[i].1)
    }

    fn get_or_insert(&mut self, level: &str) -> &mut Node<V> {
        let missing = match (self.sorted(), self.many()) {
            (Some(entries), _) => search(entries, level).err(),
            (None, Some(many)) => (!many.contains_key(level.as_bytes())).then_some(0),
            (None, None) => None,
        };
        if let Some(at) = missing {
            self.insert_new(at, level);
        }
        self.get_mut(level).expect("present or inserted above")
    }

    /// Inserts an empty child for `level`, which is not there; `at` is its place in a sorted run.
    fn insert_new(&mut self, at: usize, level: &str) {
        let entry = (Level::new(level), Node::default());
        match self {
            Children::Few(few) if few.len() < FEW_MAX => {
                // Exact size: a slice grows one element at a time, copying at most FEW_MAX entries.
                let mut grown: Vec<Entry<V>> = std::mem::take(few).into_vec();
                grown.reserve_exact(1);
                grown.insert(at, entry);
                *few = grown.into_boxed_slice();
            }
            Children::Few(few) => {
                let mut sorted: Vec<Entry<V>> = std::mem::take(few).into_vec();
                sorted.insert(at, entry);
                *self = Children::Wide(Box::new(Wide::Sorted(sorted)));
            }
            Children::Wide(wide) => match &mut **wide {
                Wide::Sorted(sorted) if sorted.len() < SORTED_MAX => sorted.insert(at, entry),
                Wide::Sorted(sorted) => {
                    let mut many: BTreeMap<Level, Node<V>> = std::mem::take(sorted).into_iter().collect();
                    many.insert(entry.0, entry.1);
                    **wide = Wide::Many(many);
                }
                Wide::Many(many) => {
                    many.insert(entry.0, entry.1);
                }
            },
        }
    }

    fn remove(&mut self, level: &str) {
        match self {
            Children::Few(few) => {
                if let Ok(at) = search(few, level) {
                    let mut shrunk = std::mem::take(few).into_vec();
                    shrunk.remove(at);
                    *few = shrunk.into_boxed_slice();
                }
            }
            Children::Wide(wide) => match &mut **wide {
                Wide::Sorted(sorted) => {
                    if let Ok(at) = search(sorted, level) {
                        sorted.remove(at);
                    }
                    // Back to a smaller form well below each threshold, so a node hovering around one does not
                    // convert each time; the room of a shrinking `Vec` goes back too.
                    if sorted.len() < FEW_MAX / 2 {
                        *self = Children::Few(std::mem::take(sorted).into_boxed_slice());
                    } else if sorted.len() < sorted.capacity() / 4 {
                        sorted.shrink_to(sorted.len() * 2);
                    }
                }
                Wide::Many(many) => {
                    many.remove(level.as_bytes());
                    if many.len() < SORTED_MAX / 2 {
                        **wide = Wide::Sorted(std::mem::take(many).into_iter().collect());
                    }
                }
            },
        }
    }

    /// The children whose level sorts after `after` (all of them for `None`), in ascending order.
    fn after<'a>(&'a self, after: Option<&str>) -> Box<dyn DoubleEndedIterator<Item = (&'a Level, &'a Node<V>)> + 'a> {
        match (self.sorted(), self.many()) {
            (Some(entries), _) => {
                let start = after.map_or(0, |a| entries.partition_point(|(l, _)| l.as_bytes() <= a.as_bytes()));
                Box::new(entries[start..].iter().map(|(l, n)| (l, n)))
            }
            (None, Some(many)) => match after {
                Some(a) => Box::new(many.range::<[u8], _>((Bound::Excluded(a.as_bytes()), Bound::Unbounded))),
                None => Box::new(many.iter()),
            },
            (None, None) => Box::new(std::iter::empty()),
        }
    }

    fn nodes(&self) -> Box<dyn Iterator<Item = &Node<V>> + '_> {
        match (self.sorted(), self.many()) {
            (Some(entries), _) => Box::new(entries.iter().map(|(_, n)| n)),
            (None, Some(many)) => Box::new(many.values()),
            (None, None) => Box::new(std::iter::empty()),
        }
    }

    fn nodes_mut(&mut self) -> Box<dyn Iterator<Item = &mut Node<V>> + '_> {
        match self {
            Children::Few(few) => Box::new(few.iter_mut().map(|(_, n)| n)),
            Children::Wide(wide) => match &mut **wide {
                Wide::Sorted(sorted) => Box::new(sorted.iter_mut().map(|(_, n)| n)),
                Wide::Many(many) => Box::new(many.values_mut()),
            },
        }
    }

    /// Moves every child into `work` (for the iterative drop).
    fn drain_into(&mut self, work: &mut Vec<Node<V>>) {
        match std::mem::replace(self, Children::Few(Box::default())) {
            Children::Few(few) => work.extend(few.into_vec().into_iter().map(|(_, n)| n)),
            Children::Wide(wide) => match *wide {
                Wide::Sorted(sorted) => work.extend(sorted.into_iter().map(|(_, n)| n)),
                Wide::Many(many) => work.extend(many.into_values()),
            },
        }
    }
}

/// What remains of the filter once a node's level has been matched.
#[derive(Clone, Copy)]
enum Rest<'f> {
    /// Remaining filter levels; `None` once the filter is used up.
    Filter(Option<&'f str>),
    /// Under a `#`: every descendant matches.
    All,
}

impl<'f> Rest<'f> {
    /// Whether the node this applies to holds a match itself. `#` also matches the parent level: `sport/#` matches
    /// `sport` (MQTT 5.0 section 4.7.1.2).
    fn matches_here(self) -> bool {
        match self {
            Rest::All | Rest::Filter(None) => true,
            Rest::Filter(Some(rest)) => rest == "#",
        }
    }

    /// How the children of the node this applies to are chosen: `Err(rest)` for every child (a wildcard: `#`, or
    /// `+`, which matches exactly one level, the empty one included, MQTT 5.0 section 4.7.1.3), each then matched
    /// against `rest`; `Ok((literal, rest))` for the one child named `literal`; `None` for no child.
    #[allow(clippy::type_complexity)]
    fn children(self) -> Option<Result<(&'f str, Rest<'f>), Rest<'f>>> {
        match self {
            Rest::All => Some(Err(Rest::All)),
            Rest::Filter(None) => None,
            Rest::Filter(Some(rest)) => match next_level(rest) {
                ("#", None) => Some(Err(Rest::All)),
                ("+", after) => Some(Err(Rest::Filter(after))),
                (literal, after) => Some(Ok((literal, Rest::Filter(after)))),
            },
        }
    }
}

/// One pending node of a depth-first walk: the node, the length of its parent's topic in the shared buffer, whether
/// it is at the first level, its own level, and what remains of the filter below it.
struct Frame<'t, 'f, V> {
    node: &'t Node<V>,
    parent_len: usize,
    first: bool,
    level: &'t Level,
    rest: Rest<'f>,
}

/// Schedules the children of `node` that `rest` (what remains of the filter at `node`) selects and that sort after
/// `after`, reversed so that popping visits them in ascending order. Wildcards at the first level skip `$` levels
/// [MQTT-4.7.2-1].
fn push_children<'t, 'f, V>(
    stack: &mut Vec<Frame<'t, 'f, V>>,
    node: &'t Node<V>,
    rest: Rest<'f>,
    first: bool,
    parent_len: usize,
    after: Option<&str>,
) {
    match rest.children() {
        None => {}
        Some(Ok((literal, below))) => {
            if after.is_some_and(|a| literal.as_bytes() <= a.as_bytes()) {
                return;
            }
            if let Some((level, child)) = node.children.get(literal) {
                stack.push(Frame {
                    node: child,
                    parent_len,
                    first,
                    level,
                    rest: below,
                });
            }
        }
        Some(Err(below)) => {
            for (level, child) in node.children.after(after).rev() {
                if first && level.as_bytes().starts_with(b"$") {
                    continue;
                }
                stack.push(Frame {
                    node: child,
                    parent_len,
                    first,
                    level,
                    rest: below,
                });
            }
        }
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
            node = node.children.get_or_insert(level);
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
            node = node.children.get(level)?.1;
        }
        node.value.as_ref()
    }

    /// Calls `f(topic, value)` for every retained message whose topic matches `filter` (a valid, non-shared filter),
    /// honouring the rule that wildcards at the first level do not match `$` topics [MQTT-4.7.2-1].
    /// Order is deterministic (lexicographic by level).
    pub fn for_each_match(&self, filter: &str, mut f: impl FnMut(&str, &V)) {
        self.for_each_match_after(filter, None, |topic, v| {
            f(topic, v);
            true
        });
    }

    /// Like [`Self::for_each_match`], but only for the matches that come after the topic `after` in that order
    /// (all of them for `None`; `after` need not be stored any more), and only while `f` returns true. Returns
    /// whether the walk reached the end (false: `f` stopped it). Resuming costs a descent along `after`, so a
    /// large answer can be given in slices, each picking up after the last topic of the one before.
    pub fn for_each_match_after(&self, filter: &str, after: Option<&str>, mut f: impl FnMut(&str, &V) -> bool) -> bool {
        let mut topic = String::new();
        let mut stack: Vec<Frame<'_, '_, V>> = Vec::new();
        self.resume(filter, after, &mut stack, &mut topic);
        while let Some(frame) = stack.pop() {
            topic.truncate(frame.parent_len);
            if !frame.first {
                topic.push('/');
            }
            topic.push_str(frame.level.as_str());
            if frame.rest.matches_here() {
                if let Some(v) = &frame.node.value {
                    if !f(&topic, v) {
                        return false;
                    }
                }
            }
            let here = topic.len();
            push_children(&mut stack, frame.node, frame.rest, false, here, None);
        }
        true
    }

    /// Prepares the walk of `filter` to continue after the topic `after`: everything that comes after it in
    /// depth-first order is its own descendants, then at each level above it (deepest first) the siblings that sort
    /// after its level. Pushed shallowest first, so they pop in walk order. The root stands for "before the first
    /// level".
    fn resume<'t, 'f>(
        &'t self,
        filter: &'f str,
        after: Option<&str>,
        stack: &mut Vec<Frame<'t, 'f, V>>,
        topic: &mut String,
    ) {
        let Some(after) = after else {
            push_children(stack, &self.root, Rest::Filter(Some(filter)), true, 0, None);
            return;
        };
        let (mut node, mut rest, mut first) = (&self.root, Rest::Filter(Some(filter)), true);
        for level in after.split('/') {
            push_children(stack, node, rest, first, topic.len(), Some(level));
            // Descend to `level` if the walk would have: the filter selects it and it still exists.
            let below = match rest.children() {
                None => return,
                Some(Ok((literal, below))) if literal == level => below,
                Some(Ok(_)) => return,
                Some(Err(_)) if first && level.starts_with('$') => return,
                Some(Err(below)) => below,
            };
            let Some((_, child)) = node.children.get(level) else {
                return;
            };
            if !first {
                topic.push('/');
            }
            topic.push_str(level);
            (node, rest, first) = (child, below, false);
        }
        // `after` itself was given already: continue with its descendants.
        push_children(stack, node, rest, first, topic.len(), None);
    }

    /// Keeps only the messages for which `keep` returns true (used to purge expired messages).
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &V) -> bool) {
        // First decide (read-only walk), then remove by topic so that pruning stays in one place. Purges are
        // periodic, not per message.
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
            stack.extend(node.children.nodes());
        }
        count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every stored value, mutably, in no particular order (recovery renumbers the messages it inserted before it
    /// knew which ids were free).
    pub fn for_each_value_mut(&mut self, mut f: impl FnMut(&mut V)) {
        let mut stack = vec![&mut self.root];
        while let Some(node) = stack.pop() {
            if let Some(v) = &mut node.value {
                f(v);
            }
            stack.extend(node.children.nodes_mut());
        }
    }

    /// Every stored message, `$` topics included, in lexicographic order.
    pub fn for_each(&self, f: impl FnMut(&str, &V)) {
        self.for_each_node(f);
    }

    /// Every stored message, `$` topics included, in lexicographic order.
    fn for_each_node(&self, mut f: impl FnMut(&str, &V)) {
        let mut topic = String::new();
        let mut stack: Vec<(&Node<V>, usize, bool, &Level)> = Vec::new();
        for (level, child) in self.root.children.after(None).rev() {
            stack.push((child, 0, true, level));
        }
        while let Some((node, parent_len, first, level)) = stack.pop() {
            topic.truncate(parent_len);
            if !first {
                topic.push('/');
            }
            topic.push_str(level.as_str());
            if let Some(v) = &node.value {
                f(&topic, v);
            }
            let here = topic.len();
            for (level, child) in node.children.after(None).rev() {
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
                    Some((_, next)) => node = next,
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
        let mut work: Vec<Node<V>> = Vec::new();
        self.root.children.drain_into(&mut work);
        while let Some(mut node) = work.pop() {
            node.children.drain_into(&mut work);
        }
    }
}
