//! The retained-message store, itself a tree by topic level so that a wildcard SUBSCRIBE visits only the branches
//! its filter can match.
//!
//! CONTRACT (owned by the topic-tree work): keep these signatures.

use std::marker::PhantomData;

pub struct RetainedTree<V> {
    _v: PhantomData<V>,
}

impl<V> Default for RetainedTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> RetainedTree<V> {
    pub fn new() -> Self {
        RetainedTree { _v: PhantomData }
    }

    /// Stores `value` as the retained message of `topic` (a valid topic name); returns the one it replaced.
    pub fn insert(&mut self, _topic: &str, _value: V) -> Option<V> {
        todo!()
    }

    pub fn remove(&mut self, _topic: &str) -> Option<V> {
        todo!()
    }

    pub fn get(&self, _topic: &str) -> Option<&V> {
        todo!()
    }

    /// Calls `f(topic, value)` for every retained message whose topic matches `filter` (a valid, non-shared filter),
    /// honouring the rule that wildcards at the first level do not match `$` topics [MQTT-4.7.2-1].
    /// Order is deterministic (lexicographic by level).
    pub fn for_each_match(&self, _filter: &str, _f: impl FnMut(&str, &V)) {
        todo!()
    }

    /// Keeps only the messages for which `keep` returns true (used to purge expired messages).
    pub fn retain(&mut self, _keep: impl FnMut(&str, &V) -> bool) {
        todo!()
    }

    pub fn len(&self) -> usize {
        todo!()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
