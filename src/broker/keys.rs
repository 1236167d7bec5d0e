//! Keys: random 160-bit tokens, shown once when created, stored only as
//! SHA-256 hashes.
//!
//! A presented key is hashed and looked up by the first eight bytes of its
//! hash; the whole stored hash is then compared in constant time, so lookup
//! costs the same whatever the number of keys and never compares secrets
//! byte by byte. No secret is kept in memory after it was handed out once.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::storage::StorageError;

/// The SHA-256 of a key: all the server keeps of it.
pub type KeyHash = [u8; 32];

/// The stored hash of a key.
pub fn hash_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// A new random key: 20 bytes (160 bits) from the OS as 40 lower-case hex digits.
///
/// # Errors
/// When the OS has no randomness to give.
pub fn generate_key() -> Result<String, StorageError> {
    let mut raw = [0u8; 20];
    getrandom::fill(&mut raw)
        .map_err(|e| StorageError::Io(std::io::Error::other(format!("no randomness: {e}"))))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// What a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyOwner {
    /// An admin key: server-wide (`instance: None`) or of one instance.
    Admin {
        /// The admin key's id.
        id: u64,
        /// The instance it administers; `None`: every instance.
        instance: Option<u32>,
    },
    /// An API key of an instance.
    Api {
        /// The instance.
        instance: u32,
        /// The key's id in the instance.
        id: u64,
    },
    /// A user key of an instance.
    User {
        /// The instance.
        instance: u32,
        /// The user's id in the instance.
        id: u64,
    },
}

impl KeyOwner {
    /// The instance the key belongs to (`None`: a server-wide admin key).
    pub fn instance(self) -> Option<u32> {
        match self {
            KeyOwner::Admin { instance, .. } => instance,
            KeyOwner::Api { instance, .. } | KeyOwner::User { instance, .. } => Some(instance),
        }
    }
}

/// Every live key of the server, by hash.
#[derive(Debug, Default)]
pub struct KeyIndex {
    buckets: HashMap<u64, Vec<(KeyHash, KeyOwner)>>,
    len: usize,
}

fn bucket_of(hash: &KeyHash) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&hash[..8]);
    u64::from_le_bytes(b)
}

impl KeyIndex {
    /// Adds a key (its hash) for `owner`.
    pub fn insert(&mut self, hash: KeyHash, owner: KeyOwner) {
        self.buckets
            .entry(bucket_of(&hash))
            .or_default()
            .push((hash, owner));
        self.len += 1;
    }

    /// Removes the key of `owner` if it is there.
    pub fn remove(&mut self, hash: &KeyHash, owner: KeyOwner) {
        let bucket = bucket_of(hash);
        if let Some(v) = self.buckets.get_mut(&bucket) {
            let before = v.len();
            v.retain(|(h, o)| !(h == hash && *o == owner));
            self.len -= before - v.len();
            if v.is_empty() {
                self.buckets.remove(&bucket);
            }
        }
    }

    /// Removes every key of one instance.
    pub fn remove_instance(&mut self, instance: u32) {
        let mut removed = 0;
        self.buckets.retain(|_, v| {
            let before = v.len();
            v.retain(|(_, o)| o.instance() != Some(instance));
            removed += before - v.len();
            !v.is_empty()
        });
        self.len -= removed;
    }

    /// The owner of `key`, comparing stored hashes in constant time.
    pub fn find(&self, key: &str) -> Option<KeyOwner> {
        let hash = hash_key(key);
        let mut found = None;
        for (stored, owner) in self.buckets.get(&bucket_of(&hash))? {
            if bool::from(stored.ct_eq(&hash)) {
                found = Some(*owner);
            }
        }
        found
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_160_bit_hex_and_distinct() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_eq!(a.len(), 40);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn the_index_finds_only_exact_keys_and_forgets_removed_ones() {
        let mut idx = KeyIndex::default();
        let api = KeyOwner::Api { instance: 3, id: 1 };
        let admin = KeyOwner::Admin {
            id: 1,
            instance: None,
        };
        idx.insert(hash_key("alpha"), api);
        idx.insert(hash_key("beta"), admin);
        assert_eq!(idx.find("alpha"), Some(api));
        assert_eq!(idx.find("beta"), Some(admin));
        assert_eq!(idx.find("alph"), None);
        assert_eq!(idx.find(""), None);
        idx.remove(&hash_key("alpha"), api);
        assert_eq!(idx.find("alpha"), None);
        idx.insert(hash_key("gamma"), KeyOwner::User { instance: 3, id: 9 });
        idx.remove_instance(3);
        assert_eq!(idx.find("gamma"), None);
        assert_eq!(idx.find("beta"), Some(admin));
        assert_eq!(idx.len(), 1);
    }
}
