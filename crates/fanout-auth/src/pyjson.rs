//! JSON string literals exactly as Python's `json.dumps` writes them by default.
//!
//! Python's default is `ensure_ascii=True`: printable ASCII (space through `~`) is
//! written as is, except `"` and `\`; `\n`, `\r`, `\t`, `\b` and `\f` use their short
//! escapes; everything else becomes `\uXXXX` with lowercase hex, characters outside
//! the Basic Multilingual Plane as a UTF-16 surrogate pair. Note that `/` is *not*
//! escaped. Only generation needs this; verification parses with `serde_json`.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` to `out` as a quoted JSON string, byte-identical to `json.dumps(s)`.
pub(crate) fn push_str_literal(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for &unit in c.encode_utf16(&mut units).iter() {
                    out.push_str("\\u");
                    for shift in [12u16, 8, 4, 0] {
                        out.push(char::from(HEX[usize::from((unit >> shift) & 0xf)]));
                    }
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::push_str_literal;

    fn lit(s: &str) -> String {
        let mut out = String::new();
        push_str_literal(&mut out, s);
        out
    }

    #[test]
    fn matches_python_json_dumps() {
        // Expected values produced by CPython 3: json.dumps(s)
        assert_eq!(lit("xiaojun"), r#""xiaojun""#);
        assert_eq!(lit("a/b"), r#""a/b""#);
        assert_eq!(lit("q\"b\\s"), r#""q\"b\\s""#);
        assert_eq!(lit("\n\r\t\u{8}\u{c}"), r#""\n\r\t\b\f""#);
        assert_eq!(lit("\u{0}\u{1f}\u{7f}"), r#""\u0000\u001f\u007f""#);
        assert_eq!(lit("é用"), r#""\u00e9\u7528""#);
        assert_eq!(lit("😀"), r#""\ud83d\ude00""#);
    }

    #[test]
    fn output_parses_back() {
        let s = "mixed é 😀 \"quoted\" \\ / \u{0} \u{7f} end";
        let parsed: String = serde_json::from_str(&lit(s)).unwrap_or_default();
        assert_eq!(parsed, s);
    }
}
