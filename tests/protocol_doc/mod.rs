//! Reading `protocol.md` from tests: the document and its hex examples.

/// The text of `protocol.md`.
pub fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol.md");
    std::fs::read_to_string(path).expect("protocol.md at the crate root")
}

/// The bytes of every ```hex block, in document order (text after `#` on a
/// line is a comment).
pub fn hex_blocks(doc: &str) -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in doc.lines() {
        match (&mut current, line.trim()) {
            (None, "```hex") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(bytes), l) => {
                let data = l.split('#').next().unwrap_or_default();
                for pair in data.split_whitespace() {
                    bytes.push(u8::from_str_radix(pair, 16).expect("hex byte"));
                }
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "unterminated hex block");
    blocks
}
