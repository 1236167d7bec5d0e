//! JSON as Channelstream writes it: pretty-printed with a 4-space indent and
//! every non-ASCII character escaped (`\uXXXX`, Python's `ensure_ascii`).

use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter};
use std::io::{self, Write};

/// A [`PrettyFormatter`] with a 4-space indent that escapes non-ASCII.
struct AsciiPretty<'a>(PrettyFormatter<'a>);

macro_rules! delegate {
    ($($name:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $(fn $name<W: ?Sized + Write>(&mut self, w: &mut W $(, $arg: $ty)*) -> io::Result<()> {
            self.0.$name(w $(, $arg)*)
        })*
    };
}

impl Formatter for AsciiPretty<'_> {
    delegate!(
        begin_array(),
        end_array(),
        begin_array_value(first: bool),
        end_array_value(),
        begin_object(),
        end_object(),
        begin_object_key(first: bool),
        begin_object_value(),
        end_object_value(),
    );

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    write!(w, "\\u{u:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// `value` as Channelstream's HTTP responses write it.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        AsciiPretty(PrettyFormatter::with_indent(b"    ")),
    );
    // Serializing a JSON value into a Vec cannot fail.
    let _ = value.serialize(&mut ser);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn four_spaces_and_ascii_only() {
        let out = String::from_utf8(to_vec(&json!({"a": ["é", 1], "b": {}}))).unwrap();
        assert_eq!(
            out,
            "{\n    \"a\": [\n        \"\\u00e9\",\n        1\n    ],\n    \"b\": {}\n}"
        );
        assert_eq!(
            String::from_utf8(to_vec(&json!("😀"))).unwrap(),
            "\"\\ud83d\\ude00\""
        );
    }
}
