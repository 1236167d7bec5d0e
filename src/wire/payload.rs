//! The promise a message body's content type makes about its payload,
//! checked when a message is published (`protocol.md`, section "Message
//! body"): JSON payloads are one JSON text, text payloads are UTF-8, bytes
//! are anything.
#![warn(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use serde::de::IgnoredAny;

use crate::storage::record::ContentType;
use crate::wire::{ErrorCode, WireError};

/// Offset of the content-type byte in a message body.
const CONTENT_TYPE_OFFSET: usize = 1;

/// Checks the payload of a message body that `record::check_body` accepted,
/// whose last `payload_len` bytes are the payload.
///
/// JSON is walked with `serde_json` into [`IgnoredAny`], which skips
/// values without recursion and keeps nothing.
///
/// # Errors
/// `BadRequest` naming what is wrong (the caller adds the message index).
pub fn check_payload(body: &[u8], payload_len: usize) -> Result<(), WireError> {
    let content_type = body
        .get(CONTENT_TYPE_OFFSET)
        .copied()
        .and_then(ContentType::from_u8);
    let payload = body
        .get(body.len().saturating_sub(payload_len)..)
        .unwrap_or_default();
    let bad = |m: String| WireError::new(ErrorCode::BadRequest, m);
    match content_type {
        Some(ContentType::Json) => serde_json::from_slice::<IgnoredAny>(payload)
            .map(drop)
            .map_err(|e| bad(format!("payload of content type json is not JSON: {e}"))),
        Some(ContentType::Text) => std::str::from_utf8(payload)
            .map(drop)
            .map_err(|e| bad(format!("payload of content type text is not UTF-8: {e}"))),
        Some(ContentType::Bytes) | None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(content_type: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0, content_type, 0, 0];
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn payloads_keep_the_promise_of_their_content_type() {
        let ok: &[(u8, &[u8])] = &[
            (0, b"\xff\x00"),
            (1, b"{\"a\":[1,2]}"),
            (1, b" 42 "),
            (1, b"\"s\""),
            (2, "h\u{e9}llo".as_bytes()),
            (2, b""),
        ];
        for (ct, p) in ok {
            let b = body(*ct, p);
            assert!(check_payload(&b, p.len()).is_ok(), "{ct} {p:?}");
        }
        let bad: &[(u8, &[u8])] = &[(1, b"{\"a\":"), (1, b""), (1, b"{} {}"), (2, b"\xff")];
        for (ct, p) in bad {
            let b = body(*ct, p);
            let e = check_payload(&b, p.len()).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{ct} {p:?}");
        }
        // Deep nesting is walked without recursion, so it is only JSON.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let b = body(1, deep.as_bytes());
        assert!(check_payload(&b, deep.len()).is_ok());
    }
}
