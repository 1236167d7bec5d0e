//! Keys: random 160-bit tokens, stored only as SHA-256 hashes, compared in
//! constant time. Only admin keys exist so far.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::Clock;
use crate::storage::{meta, StorageError};

/// Who a connection authenticated as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// An admin (account) key with this id.
    Admin(u64),
}

impl Identity {
    /// The author recorded on messages this identity publishes.
    pub fn author(self) -> crate::storage::Author {
        match self {
            Identity::Admin(id) => crate::storage::Author::Admin(id),
        }
    }
    /// (kind, id) as sent in `AuthOk`.
    pub fn wire(self) -> (u8, u64) {
        match self {
            Identity::Admin(id) => (0, id),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyRecord {
    id: u64,
    sha256: [u8; 32],
    created_at_us: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeysSnapshot {
    next_id: u64,
    admin_keys: Vec<KeyRecord>,
}

/// The admin keys of this server.
#[derive(Debug)]
pub struct KeyStore {
    admin: Vec<KeyRecord>,
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A new random key: 20 bytes from the OS as 40 lower-case hex digits.
///
/// # Errors
/// When the OS has no randomness to give.
pub fn generate_key() -> Result<String, StorageError> {
    let mut raw = [0u8; 20];
    getrandom::fill(&mut raw)
        .map_err(|e| StorageError::Io(std::io::Error::other(format!("no randomness: {e}"))))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

impl KeyStore {
    /// Loads the key snapshot at `path`. A `bootstrap` key is added when it is
    /// not yet known; with none given and no key stored, one is generated and
    /// returned (to be shown once).
    ///
    /// # Errors
    /// Snapshot I/O or corruption.
    pub fn open(
        path: &Path,
        bootstrap: Option<&str>,
        clock: &dyn Clock,
    ) -> Result<(KeyStore, Option<String>), StorageError> {
        let mut snap: KeysSnapshot = meta::read_snapshot(path)?.unwrap_or_default();
        let mut generated = None;
        let wanted = match bootstrap {
            Some(k) => Some(k.to_string()),
            None if snap.admin_keys.is_empty() => {
                let k = generate_key()?;
                generated = Some(k.clone());
                Some(k)
            }
            None => None,
        };
        if let Some(key) = wanted {
            let h = hash(&key);
            if !snap
                .admin_keys
                .iter()
                .any(|r| bool::from(r.sha256.ct_eq(&h)))
            {
                snap.next_id = snap.next_id.max(1);
                snap.admin_keys.push(KeyRecord {
                    id: snap.next_id,
                    sha256: h,
                    created_at_us: clock.now_us(),
                });
                snap.next_id += 1;
                meta::write_snapshot(path, &snap)?;
            }
        }
        Ok((
            KeyStore {
                admin: snap.admin_keys,
            },
            generated,
        ))
    }

    /// The identity `key` proves, comparing every stored hash in constant time.
    pub fn check(&self, key: &str) -> Option<Identity> {
        let h = hash(key);
        let mut found = None;
        for r in &self.admin {
            if bool::from(r.sha256.ct_eq(&h)) {
                found = Some(Identity::Admin(r.id));
            }
        }
        found
    }
}
