//! Message uuids the server assigns.
//!
//! Every message has a uuid. A publisher may give one (it is stored in the
//! record and indexed in the `.keys` sidecar); otherwise the server assigns
//! one that it does not store: the uuid is a keyed permutation of the
//! channel's server-wide id and the message id, shaped as an RFC 9562
//! version 4 uuid. So assigning costs nothing per message on disk or in
//! memory, distinct messages always get distinct uuids (the permutation is a
//! bijection and the pair is unique on the server), the uuids look random to
//! anyone without the key, and the server finds the message a uuid names in
//! O(1) by inverting the permutation. The key is 32 random bytes made at the
//! first start and kept in `meta/uuid.key` with the rest of the data
//! directory (a directory restored without it gives messages new uuids).
//!
//! The permutation is a 4-round balanced Feistel network over the 122 bits
//! a version 4 uuid leaves free: two halves of 61 bits, round function a
//! keyed 64-bit mixer (SplitMix64's finaliser). It is not a cipher meant to
//! resist analysis — uuids are identifiers, not secrets — only a cheap
//! bijection whose outputs do not reveal their order.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::storage::{meta, StorageError};

/// Bits of the message id inside the permuted value (ids below 2^58).
const ID_BITS: u32 = 58;
const HALF_BITS: u32 = 61;
const HALF_MASK: u128 = (1 << HALF_BITS) - 1;
const ROUNDS: usize = 4;

/// The round keys of the permutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UuidKey {
    rounds: [u64; ROUNDS],
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl UuidKey {
    /// A key from explicit round keys (tests).
    pub fn from_rounds(rounds: [u64; ROUNDS]) -> UuidKey {
        UuidKey { rounds }
    }

    /// Loads the key of the data directory `d`, making it at the first start.
    ///
    /// # Errors
    /// I/O errors, or no randomness from the OS.
    pub fn load_or_create(d: &Path) -> Result<UuidKey, StorageError> {
        let path = d.join("meta/uuid.key");
        if let Some(k) = meta::read_snapshot::<UuidKey>(&path)? {
            return Ok(k);
        }
        let mut raw = [0u8; 8 * ROUNDS];
        getrandom::fill(&mut raw)
            .map_err(|e| StorageError::Io(std::io::Error::other(format!("no randomness: {e}"))))?;
        let mut rounds = [0u64; ROUNDS];
        for (r, chunk) in rounds.iter_mut().zip(raw.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *r = u64::from_le_bytes(b);
        }
        let k = UuidKey { rounds };
        meta::write_snapshot(&path, &k)?;
        Ok(k)
    }

    fn round(&self, i: usize, half: u128) -> u128 {
        // `half` < 2^61 fits a u64; the mixer's output is cut to 61 bits.
        u128::from(mix((half as u64) ^ self.rounds[i])) & HALF_MASK
    }

    fn permute(&self, x: u128) -> u128 {
        let (mut l, mut r) = (x >> HALF_BITS, x & HALF_MASK);
        for i in 0..ROUNDS {
            (l, r) = (r, l ^ self.round(i, r));
        }
        (l << HALF_BITS) | r
    }

    fn unpermute(&self, y: u128) -> u128 {
        let (mut l, mut r) = (y >> HALF_BITS, y & HALF_MASK);
        for i in (0..ROUNDS).rev() {
            (l, r) = (r ^ self.round(i, l), l);
        }
        (l << HALF_BITS) | r
    }

    /// The uuid the server assigns to message `id` of channel `channel`
    /// (its server-wide id), or `None` for an id of 2^58 or more.
    pub fn assign(&self, channel: u64, id: u64) -> Option<[u8; 16]> {
        if id >> ID_BITS != 0 {
            return None;
        }
        let x = (u128::from(channel) << ID_BITS) | u128::from(id);
        let y = self.permute(x);
        // 122 bits around the version (bits 76..80 = 4) and variant (bits
        // 62..64 = 0b10) of an RFC 9562 uuid.
        let u = ((y >> 74) << 80)
            | (0x4 << 76)
            | (((y >> 62) & 0xfff) << 64)
            | (0b10 << 62)
            | (y & ((1 << 62) - 1));
        Some(u.to_be_bytes())
    }

    /// The message id of channel `channel` that the server assigned `uuid`,
    /// if it assigned it (a uuid a publisher gave is looked up elsewhere).
    pub fn resolve(&self, channel: u64, uuid: &[u8; 16]) -> Option<u64> {
        let u = u128::from_be_bytes(*uuid);
        if (u >> 76) & 0xf != 0x4 || (u >> 62) & 0b11 != 0b10 {
            return None;
        }
        let y = ((u >> 80) << 74) | (((u >> 64) & 0xfff) << 62) | (u & ((1 << 62) - 1));
        let x = self.unpermute(y);
        let id = (x & ((1 << ID_BITS) - 1)) as u64;
        ((x >> ID_BITS) as u64 == channel && id > 0).then_some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigned_uuids_invert_are_v4_and_distinct() {
        let k = UuidKey::from_rounds([1, 2, 3, 4]);
        let mut seen = std::collections::HashSet::new();
        for channel in [0u64, 1, (7 << 32) | 3, u64::MAX] {
            for id in [1u64, 2, 3, 1000, (1 << 58) - 1] {
                let u = k.assign(channel, id).unwrap();
                assert_eq!(u[6] >> 4, 4, "version 4");
                assert_eq!(u[8] >> 6, 0b10, "RFC variant");
                assert_eq!(k.resolve(channel, &u), Some(id));
                assert_eq!(k.resolve(channel ^ 1, &u), None);
                assert!(seen.insert(u));
            }
        }
        assert_eq!(k.assign(1, 1 << 58), None);
        // Another key gives other uuids.
        let other = UuidKey::from_rounds([5, 6, 7, 8]);
        assert_ne!(other.assign(1, 1), k.assign(1, 1));
        assert_eq!(other.resolve(1, &k.assign(1, 1).unwrap()), None);
    }
}
