//! The bounds-checked cursor every decoder reads peer bytes through, and
//! the little-endian writers every encoder uses.
#![warn(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use crate::limits;
use crate::wire::{ErrorCode, WireError};

pub(super) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(super) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(super) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Writes a `str` (u16 length, UTF-8 bytes), cut to fit the u16 length.
pub(super) fn put_str(out: &mut Vec<u8>, s: &str) {
    let s = clip(s, usize::from(u16::MAX));
    put_u16(out, u16::try_from(s.len()).unwrap_or(u16::MAX));
    out.extend_from_slice(s.as_bytes());
}

/// `s` cut to at most `max` bytes at a character boundary.
pub(super) fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let end = (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    s.get(..end).unwrap_or_default()
}

/// A bounds-checked cursor over peer bytes; every error names the field and
/// carries the code of the direction being decoded.
pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    code: ErrorCode,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8], code: ErrorCode) -> Reader<'a> {
        Reader { buf, pos: 0, code }
    }

    pub(super) fn err(&self, message: String) -> WireError {
        WireError::new(self.code, message)
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(super) fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], WireError> {
        let bytes = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or_else(|| self.err(format!("body ends inside {field}")))?;
        self.pos = self.pos.saturating_add(n);
        Ok(bytes)
    }

    pub(super) fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], WireError> {
        let bytes = self.take(N, field)?;
        <[u8; N]>::try_from(bytes).map_err(|_| self.err(format!("body ends inside {field}")))
    }

    pub(super) fn u8(&mut self, field: &str) -> Result<u8, WireError> {
        Ok(u8::from_le_bytes(self.array(field)?))
    }

    pub(super) fn u16(&mut self, field: &str) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub(super) fn u32(&mut self, field: &str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(super) fn u64(&mut self, field: &str) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A `str`: u16 length (checked against `max` before the bytes are
    /// touched), then that many bytes of UTF-8.
    pub(super) fn str(&mut self, max: usize, field: &str) -> Result<&'a str, WireError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(self.err(format!("{field} is {len} bytes, over {max}")));
        }
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes).map_err(|_| self.err(format!("{field} is not UTF-8")))
    }

    pub(super) fn error_code(&mut self) -> Result<ErrorCode, WireError> {
        let code = self.u16("code")?;
        ErrorCode::from_u16(code).ok_or_else(|| self.err(format!("unknown error code {code}")))
    }

    /// Everything left in the body.
    pub(super) fn rest(&mut self) -> &'a [u8] {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        rest
    }

    pub(super) fn rest_max(&mut self, max: usize, field: &str) -> Result<&'a [u8], WireError> {
        if self.remaining() > max {
            return Err(self.err(format!("{field} is over {max} bytes")));
        }
        Ok(self.rest())
    }

    /// A JSON object filling the rest of the body (1..=ADMIN_JSON_LEN_MAX
    /// bytes); the broker parses it.
    pub(super) fn json(&mut self, field: &str) -> Result<&'a [u8], WireError> {
        if self.remaining() == 0 {
            return Err(self.err(format!("{field} is empty")));
        }
        self.rest_max(limits::ADMIN_JSON_LEN_MAX, field)
    }

    pub(super) fn finish(&self) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.err(format!("{n} trailing bytes after the last field"))),
        }
    }
}
