//! The text form of uuids (`8-4-4-4-12` hex), shared by the server's JSON
//! views, the client and the CLI.

/// The canonical text form of a uuid (`8-4-4-4-12` lower-case hex).
pub fn format_uuid(u: &[u8; 16]) -> String {
    let hex: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Parses a uuid in its text form (hyphens optional, any case).
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let digits: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
    if digits.len() != 32 || s.len() > 36 {
        return None;
    }
    let mut out = [0u8; 16];
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *o = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let u = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef, 0x80, 1, 2, 3, 4, 5, 6, 7,
        ];
        let s = format_uuid(&u);
        assert_eq!(s, "12345678-9abc-4def-8001-020304050607");
        assert_eq!(parse_uuid(&s), Some(u));
        assert_eq!(parse_uuid(&s.replace('-', "").to_uppercase()), Some(u));
        assert_eq!(parse_uuid("not-a-uuid"), None);
        assert_eq!(parse_uuid(&s[..35]), None);
    }
}
