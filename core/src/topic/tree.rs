//! The subscription tree: one node per topic level, so that matching a topic costs O(depth), not O(subscriptions).
//!
//! CONTRACT (owned by the topic-tree work): keep these signatures.

use crate::packet::SubscriptionOptions;
use std::hash::Hash;
use std::marker::PhantomData;

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
    _k: PhantomData<K>,
}

impl<K: Copy + Ord + Hash> Default for SubscriptionTree<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Copy + Ord + Hash> SubscriptionTree<K> {
    pub fn new() -> Self {
        SubscriptionTree { _k: PhantomData }
    }

    /// Adds or replaces the subscription of `key` on `filter` (a plain filter, already stripped of `$share/{group}/`;
    /// `group` is `Some` for shared subscriptions). Returns the subscription it replaced, if any.
    pub fn insert(&mut self, _filter: &str, _group: Option<&str>, _key: K, _sub: Subscription) -> Option<Subscription> {
        todo!()
    }

    /// Removes the subscription of `key` on `filter`/`group`; returns it if it existed.
    pub fn remove(&mut self, _filter: &str, _group: Option<&str>, _key: K) -> Option<Subscription> {
        todo!()
    }

    /// Appends to `out` every non-shared subscription whose filter matches `topic`, and for every matching shared
    /// group exactly one member, chosen round-robin among members for which `available` is true (or among all
    /// members when none is). Order is deterministic.
    pub fn match_topic(&mut self, _topic: &str, _available: impl FnMut(K) -> bool, _out: &mut Vec<TopicMatch<K>>) {
        todo!()
    }

    /// Number of subscriptions (shared members count one each).
    pub fn len(&self) -> usize {
        todo!()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
