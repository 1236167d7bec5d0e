//! Channelstream's request signatures: itsdangerous `TimestampSigner`
//! tokens, checked exactly as Channelstream 0.7.1 checks them.
//!
//! A token is `value.timestamp.signature`: `timestamp` is the Unix time in
//! seconds as big-endian bytes with leading zero bytes dropped, and
//! `signature` the HMAC-SHA1 of `value.timestamp` under the key
//! `SHA1("itsdangerous.Signer" + "signer" + secret)`; both in URL-safe
//! base64 without padding. Channelstream ignores the signed value (any is
//! accepted: applications sign `"channelstream"` or the path), decodes the
//! base64 parts leniently (the official JS signer leaves `+`, `/` and `=`
//! in), rejects tokens older than the maximum age and accepts future ones.
//! Sans-IO: the caller passes the time.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};

/// Why a token was refused (all are answered alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadToken {
    /// Not `value.timestamp.signature`, or a part does not decode.
    Malformed,
    /// The signature does not match.
    Signature,
    /// Older than the maximum age.
    Expired,
}

/// The HMAC key itsdangerous derives from `secret` (`django-concat`).
fn derived_key(secret: &str) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(b"itsdangerous.Signer");
    h.update(b"signer");
    h.update(secret.as_bytes());
    h.finalize().into()
}

/// Decodes base64 as itsdangerous does: non-ASCII dropped, `-`/`_` read as
/// `+`/`/`, characters outside the alphabet skipped, padding added.
fn lenient_b64(s: &[u8]) -> Option<Vec<u8>> {
    let mut clean: Vec<u8> = s
        .iter()
        .filter(|b| b.is_ascii())
        .map(|&b| match b {
            b'-' => b'+',
            b'_' => b'/',
            b => b,
        })
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        .collect();
    while !clean.len().is_multiple_of(4) {
        clean.push(b'=');
    }
    base64::engine::general_purpose::STANDARD
        .decode(&clean)
        .ok()
}

/// Checks `token` against `secret` at time `now_secs`: `Ok` when it is
/// signed with the secret and at most `max_age_secs` old (`None`: any age).
///
/// # Errors
/// [`BadToken`].
pub fn verify(
    secret: &str,
    token: &[u8],
    now_secs: u64,
    max_age_secs: Option<u64>,
) -> Result<(), BadToken> {
    let dot = token
        .iter()
        .rposition(|&b| b == b'.')
        .ok_or(BadToken::Malformed)?;
    let (signed, sig) = (&token[..dot], &token[dot + 1..]);
    let sig = lenient_b64(sig).ok_or(BadToken::Malformed)?;
    let mut mac =
        Hmac::<Sha1>::new_from_slice(&derived_key(secret)).map_err(|_| BadToken::Malformed)?;
    mac.update(signed);
    mac.verify_slice(&sig).map_err(|_| BadToken::Signature)?;
    let dot = signed
        .iter()
        .rposition(|&b| b == b'.')
        .ok_or(BadToken::Malformed)?;
    let ts = lenient_b64(&signed[dot + 1..]).ok_or(BadToken::Malformed)?;
    if ts.len() > 8 {
        return Err(BadToken::Malformed);
    }
    let ts = ts.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    match max_age_secs {
        Some(max) if now_secs.saturating_sub(ts) > max => Err(BadToken::Expired),
        _ => Ok(()),
    }
}

/// A token for `value` at `ts_secs`, as itsdangerous makes it (for tests and
/// for clients of the API).
pub fn sign(secret: &str, value: &str, ts_secs: u64) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let ts = ts_secs.to_be_bytes();
    let first = ts.iter().position(|&b| b != 0).unwrap_or(7);
    let signed = format!("{value}.{}", b64.encode(&ts[first..]));
    let mut mac = Hmac::<Sha1>::new_from_slice(&derived_key(secret)).expect("any key length");
    mac.update(signed.as_bytes());
    format!("{signed}.{}", b64.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: u64 = 1_600_000_000;

    #[test]
    fn tokens_match_itsdangerous() {
        assert_eq!(
            sign("secret", "channelstream", TS),
            "channelstream.X14QAA.QLT3kgcJYg14C3PAy4wtyg5uGgI"
        );
        assert_eq!(
            sign("secret", "/connect", TS),
            "/connect.X14QAA.SPM6sHtinEBU8MmBZnatiO-Vq0A"
        );
    }

    #[test]
    fn verification_follows_channelstream() {
        let t = sign("secret", "channelstream", TS);
        let ok = |tok: &str, now: u64| verify("secret", tok.as_bytes(), now, Some(60));
        assert_eq!(ok(&t, TS), Ok(()));
        assert_eq!(ok(&t, TS + 60), Ok(()), "60 s old is still fresh");
        assert_eq!(ok(&t, TS + 61), Err(BadToken::Expired));
        assert_eq!(
            ok(&t, TS - 100_000),
            Ok(()),
            "future timestamps are accepted"
        );
        assert_eq!(verify("secret", t.as_bytes(), TS + 1_000_000, None), Ok(()));
        assert_eq!(
            verify("other", t.as_bytes(), TS, Some(60)),
            Err(BadToken::Signature)
        );
        // Any signed value passes; the standard alphabet and padding too.
        assert_eq!(ok(&sign("secret", "a.b.c", TS), TS), Ok(()));
        let std_sig = t.replace("-", "+").replace("_", "/") + "=";
        assert_eq!(ok(&std_sig, TS), Ok(()));
        assert_eq!(ok(&(t.clone() + "!!"), TS), Ok(()));
        assert_eq!(ok("nodots", TS), Err(BadToken::Malformed));
        assert!(ok("channelstream.X14QAA==.QLT3kgcJYg14C3PAy4wtyg5uGgI", TS).is_err());
        // A token without a timestamp (a plain Signer's) is refused.
        assert!(ok("QLT3kgcJYg14C3PAy4wtyg5uGgI", TS).is_err());
    }
}
