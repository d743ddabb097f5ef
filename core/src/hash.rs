//! Deterministic hash maps. A randomly seeded hasher would make iteration order (and so the order in which the
//! broker does things) differ between runs, which breaks the simulator's same-seed-same-trace guarantee.

use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasherDefault;

/// SipHash with fixed zero keys: the same hashes in every process.
pub type FixedState = BuildHasherDefault<DefaultHasher>;

pub type HashMap<K, V> = hashbrown::HashMap<K, V, FixedState>;
pub type HashSet<K> = hashbrown::HashSet<K, FixedState>;
