//! Successful password verifications, remembered so that a reconnect storm costs one keyed digest per CONNECT
//! instead of one Argon2 run. An entry is the user's PHC hash (so a changed password invalidates it) and a
//! BLAKE2b digest of the password keyed with a per-process random key (so the cache holds nothing an offline
//! guesser could use without also having that key).

use blake2::{Blake2b512, Digest};
use std::collections::HashMap;

/// Entries kept at most; past this the cache starts over, bounding memory whatever the number of users.
const MAX_ENTRIES: usize = 10_000;

pub struct VerifiedCache {
    key: [u8; 32],
    entries: HashMap<String, (String, [u8; 64])>,
}

impl VerifiedCache {
    pub fn new(key: [u8; 32]) -> VerifiedCache {
        VerifiedCache {
            key,
            entries: HashMap::new(),
        }
    }

    /// Was `password` verified for `user` against this same `phc` before?
    pub fn contains(&self, user: &str, phc: &str, password: &[u8]) -> bool {
        match self.entries.get(user) {
            Some((cached_phc, digest)) if cached_phc == phc => equal(digest, &self.digest(user, password)),
            _ => false,
        }
    }

    pub fn insert(&mut self, user: &str, phc: &str, password: &[u8]) {
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(user) {
            self.entries.clear();
        }
        let digest = self.digest(user, password);
        self.entries.insert(user.to_string(), (phc.to_string(), digest));
    }

    fn digest(&self, user: &str, password: &[u8]) -> [u8; 64] {
        // Length-prefixed fields, so (user, password) pairs cannot collide by shifting bytes between them.
        let out = Blake2b512::new()
            .chain_update(self.key)
            .chain_update((user.len() as u64).to_le_bytes())
            .chain_update(user.as_bytes())
            .chain_update(password)
            .finalize();
        out.into()
    }
}

/// Comparison whose time does not depend on where the digests differ.
fn equal(a: &[u8; 64], b: &[u8; 64]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_only_the_verified_password_for_the_same_hash() {
        let mut cache = VerifiedCache::new([7; 32]);
        assert!(!cache.contains("alice", "H1", b"pw"));
        cache.insert("alice", "H1", b"pw");
        assert!(cache.contains("alice", "H1", b"pw"));
        assert!(!cache.contains("alice", "H1", b"pW"));
        assert!(
            !cache.contains("alice", "H2", b"pw"),
            "a changed hash invalidates the entry"
        );
        assert!(!cache.contains("bob", "H1", b"pw"));
    }

    #[test]
    fn is_bounded() {
        let mut cache = VerifiedCache::new([0; 32]);
        for i in 0..(MAX_ENTRIES + 5) {
            cache.insert(&format!("u{i}"), "H", b"pw");
        }
        assert!(cache.entries.len() <= MAX_ENTRIES);
    }
}
