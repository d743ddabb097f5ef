//! The literal children of one tree node.
//!
//! Most nodes have one or two children (`devices/{id}` has just `telemetry`), and an empty-ish hash table costs
//! about 100 bytes before holding anything. So up to `FEW_MAX` children live in a small Vec searched linearly (as
//! fast as hashing a short level), and wider nodes switch to a hash map with the broker's secret keys (levels are client-chosen), keeping lookups O(1) for
//! levels like `devices/{id}` with 100k ids. Neither form is iterated when matching, so order never leaks out.

use super::Node;
use crate::hash::{HashKeys, KeyedHashMap};

/// Above this many children a node switches to a hash map.
const FEW_MAX: usize = 8;

pub(super) enum Children<K> {
    Few(Vec<(Box<str>, Box<Node<K>>)>),
    Many(KeyedHashMap<Box<str>, Box<Node<K>>>),
}

impl<K> Default for Children<K> {
    fn default() -> Self {
        Children::Few(Vec::new())
    }
}

impl<K> Children<K> {
    pub(super) fn len(&self) -> usize {
        match self {
            Children::Few(v) => v.len(),
            Children::Many(m) => m.len(),
        }
    }

    pub(super) fn get(&self, level: &str) -> Option<&Node<K>> {
        match self {
            Children::Few(v) => v.iter().find(|(l, _)| **l == *level).map(|(_, n)| &**n),
            Children::Many(m) => m.get(level).map(|n| &**n),
        }
    }

    pub(super) fn get_mut(&mut self, level: &str) -> Option<&mut Node<K>> {
        match self {
            Children::Few(v) => v.iter_mut().find(|(l, _)| **l == *level).map(|(_, n)| &mut **n),
            Children::Many(m) => m.get_mut(level).map(|n| &mut **n),
        }
    }

    pub(super) fn get_or_insert(&mut self, level: &str, hash_keys: HashKeys) -> &mut Node<K> {
        if let Children::Few(v) = self {
            if v.len() >= FEW_MAX && !v.iter().any(|(l, _)| **l == *level) {
                let mut m = KeyedHashMap::with_capacity_and_hasher(v.len() + 1, hash_keys);
                m.extend(v.drain(..));
                *self = Children::Many(m);
            }
        }
        match self {
            Children::Few(v) => {
                let i = match v.iter().position(|(l, _)| **l == *level) {
                    Some(i) => i,
                    None => {
                        // Grow one slot at a time: the default first capacity of 4 would triple the size of the
                        // typical one-child node, and with at most FEW_MAX entries the copying is negligible.
                        v.reserve_exact(1);
                        v.push((level.into(), Box::default()));
                        v.len() - 1
                    }
                };
                &mut v[i].1
            }
            Children::Many(m) => m.entry_ref(level).or_insert_with(Box::default),
        }
    }

    pub(super) fn remove(&mut self, level: &str) {
        match self {
            Children::Few(v) => {
                v.retain(|(l, _)| **l != *level);
                if v.is_empty() {
                    *v = Vec::new();
                }
            }
            Children::Many(m) => {
                m.remove(level);
                // Hysteresis: back to a Vec only well below the threshold, so a node hovering around it does not
                // convert on every call. Until then, hash tables never shrink on their own: after many
                // unsubscribes a node that once had 100k children would keep the whole table, so shrink once it
                // is mostly empty (a quarter full keeps this amortised).
                if m.len() < FEW_MAX / 2 {
                    *self = Children::Few(m.drain().collect());
                } else if m.len() * 4 < m.capacity() {
                    m.shrink_to_fit();
                }
            }
        }
    }

    /// Moves every child into `work` (for the iterative drop).
    pub(super) fn drain_into(&mut self, work: &mut Vec<Node<K>>) {
        match self {
            Children::Few(v) => work.extend(v.drain(..).map(|(_, n)| *n)),
            Children::Many(m) => work.extend(m.drain().map(|(_, n)| *n)),
        }
    }

    pub(super) fn nodes(&self) -> Vec<&Node<K>> {
        match self {
            Children::Few(v) => v.iter().map(|(_, n)| &**n).collect(),
            Children::Many(m) => m.values().map(|n| &**n).collect(),
        }
    }
}
