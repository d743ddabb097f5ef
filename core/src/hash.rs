//! Hash maps.
//!
//! Maps keyed by strings that clients choose (topic levels, client identifiers) use SipHash-1-3 with keys drawn
//! from the broker's seed ([`HashKeys`]): with fixed keys an attacker could precompute colliding names and turn
//! every lookup into a linear scan. Keys come from the seed, not from a random source of the core's own, so the
//! simulator stays deterministic; the production seed comes from the operating system's randomness and is never
//! logged, so the keys cannot be guessed.
//!
//! Small maps whose keys are bounded integers (packet identifiers, alias numbers) keep fixed keys ([`HashMap`]):
//! there is nothing to collide with beyond their bound, and they cost nothing to construct.

use rand::RngCore;
use siphasher::sip::SipHasher13;
use std::collections::hash_map::DefaultHasher;
use std::hash::{BuildHasher, BuildHasherDefault};

/// SipHash with fixed zero keys: the same hashes in every process. Only for keys a client cannot choose freely.
pub type FixedState = BuildHasherDefault<DefaultHasher>;

pub type HashMap<K, V> = hashbrown::HashMap<K, V, FixedState>;
pub type HashSet<K> = hashbrown::HashSet<K, FixedState>;

/// A set of the packet identifiers the broker itself allocates (a session's inflight ids), looked up three times
/// per delivery: no client chooses them, so there is nothing to attack, and SipHash would cost more than the rest
/// of the lookup (issue #18 profiles).
pub type PacketIdSet = hashbrown::HashSet<u16, BuildHasherDefault<PacketIdHasher>>;

/// Fibonacci hashing of a `u16`: odd-constant multiplication is a bijection on the low bits, so consecutive ids
/// (as the broker allocates them) land in distinct buckets, and the high bits hashbrown also uses are well mixed.
#[derive(Default)]
pub struct PacketIdHasher(u64);

const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

impl std::hash::Hasher for PacketIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(FIBONACCI);
        }
    }

    fn write_u16(&mut self, id: u16) {
        self.0 = (self.0 ^ u64::from(id)).wrapping_mul(FIBONACCI);
    }
}

/// A map keyed by client-chosen values, hashed with secret keys.
pub type KeyedHashMap<K, V> = hashbrown::HashMap<K, V, HashKeys>;

/// The secret SipHash-1-3 keys of one broker. Deliberately without `Default`: a map with all-zero keys would be
/// silently precomputable, so every keyed map must be handed its broker's keys.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HashKeys {
    k0: u64,
    k1: u64,
}

impl HashKeys {
    /// Draws fresh keys (from the broker's seeded generator).
    pub fn draw(rng: &mut impl RngCore) -> HashKeys {
        HashKeys {
            k0: rng.next_u64(),
            k1: rng.next_u64(),
        }
    }
}

impl std::fmt::Debug for HashKeys {
    // The keys are a secret: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKeys(..)")
    }
}

impl BuildHasher for HashKeys {
    type Hasher = SipHasher13;

    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.k0, self.k1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn packet_id_sets_hold_every_id_apart() {
        let mut ids = PacketIdSet::default();
        for id in 1..=u16::MAX {
            assert!(ids.insert(id));
        }
        assert!(ids.remove(&1) && !ids.contains(&1) && ids.contains(&u16::MAX));
        assert_eq!(ids.len(), usize::from(u16::MAX) - 1);
    }

    #[test]
    fn keys_from_different_seeds_hash_differently() {
        let a = HashKeys::draw(&mut ChaCha8Rng::seed_from_u64(1));
        let b = HashKeys::draw(&mut ChaCha8Rng::seed_from_u64(2));
        let fixed = FixedState::default();
        let name = "devices/0042";
        assert_ne!(a.hash_one(name), b.hash_one(name));
        assert_ne!(
            a.hash_one(name),
            fixed.hash_one(name),
            "keyed hashes must not be the fixed ones"
        );
        // The same seed gives the same keys: determinism for the simulator.
        let a_again = HashKeys::draw(&mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(a.hash_one(name), a_again.hash_one(name));
    }

    #[test]
    fn keys_are_not_printed() {
        let keys = HashKeys::draw(&mut ChaCha8Rng::seed_from_u64(7));
        assert_eq!(format!("{keys:?}"), "HashKeys(..)");
    }
}
