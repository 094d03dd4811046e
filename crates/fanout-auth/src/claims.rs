//! The JSON document inside a token: rendering it like Python, parsing it like anyone.
//!
//! Rendering follows the official Python library's `json.dumps(dict)`: keys in the
//! order `TLS.ver`, `TLS.identifier`, `TLS.sdkappid`, `TLS.expire`, `TLS.time`,
//! `[TLS.userbuf]`, `TLS.sig`, separators `", "` and `": "`, ASCII-only strings.
//!
//! Parsing accepts what other libraries emit: any key order and whitespace, `\/`
//! and `\uXXXX` escapes, unknown extra keys (ignored, and not covered by the
//! signature), and `TLS.sdkappid` / `TLS.expire` / `TLS.time` as JSON numbers or as
//! canonical decimal strings (`"1700000000"`, no sign, no leading zeros).
//! `"TLS.userbuf": null` means "no userbuf". It rejects: a document that is not an
//! object, a repeated `TLS.*` key (ambiguous — no library emits one), `TLS.ver`
//! other than `"2.0"`, missing or mistyped fields, negative or fractional numbers,
//! `TLS.sdkappid` above `u32::MAX`, `TLS.time` or `TLS.expire` above `i64::MAX`,
//! and `TLS.userbuf` / `TLS.sig` that are not canonical padded standard base64.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::error::AuthError;
use crate::pyjson::push_str_literal;

/// The claims of a syntactically valid token. Nothing here is verified yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claims {
    pub identifier: String,
    pub sdk_app_id: u32,
    pub expire: u64,
    pub time: u64,
    /// `TLS.userbuf` exactly as written (canonical base64, so also as signed).
    pub userbuf_b64: Option<String>,
    /// `TLS.userbuf` decoded.
    pub userbuf: Option<Vec<u8>>,
    /// `TLS.sig` decoded (32 bytes for a genuine token, but not checked here).
    pub sig: Vec<u8>,
}

/// Renders the token JSON byte-identically to the official Python library.
pub(crate) fn render(
    identifier: &str,
    sdk_app_id: u32,
    expire: u64,
    time: u64,
    userbuf_b64: Option<&str>,
    sig_b64: &str,
) -> String {
    let mut s = String::with_capacity(192 + identifier.len() + userbuf_b64.map_or(0, str::len));
    s.push_str("{\"TLS.ver\": \"2.0\", \"TLS.identifier\": ");
    push_str_literal(&mut s, identifier);
    s.push_str(&format!(
        ", \"TLS.sdkappid\": {sdk_app_id}, \"TLS.expire\": {expire}, \"TLS.time\": {time}"
    ));
    if let Some(buf) = userbuf_b64 {
        s.push_str(", \"TLS.userbuf\": ");
        push_str_literal(&mut s, buf);
    }
    s.push_str(", \"TLS.sig\": ");
    push_str_literal(&mut s, sig_b64);
    s.push('}');
    s
}

/// Parses (but does not verify) a token's JSON document.
pub(crate) fn parse(json: &[u8]) -> Result<Claims, AuthError> {
    // Check the top-level shape ourselves so that serde never has to describe an
    // unexpected value (its messages would quote token bytes).
    let first = json
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(AuthError::malformed("JSON document is not an object"));
    }
    let fields: RawFields = serde_json::from_slice(json).map_err(|e| {
        AuthError::malformed(match e.classify() {
            serde_json::error::Category::Data => format!("{e}"), // only our own messages
            _ => format!("invalid JSON at line {} column {}", e.line(), e.column()),
        })
    })?;

    match fields.ver {
        Some(Value::String(v)) if v == "2.0" => {}
        None => return Err(AuthError::malformed("TLS.ver missing")),
        Some(_) => return Err(AuthError::malformed("unsupported TLS.ver (want \"2.0\")")),
    }
    let identifier = match fields.identifier {
        Some(Value::String(id)) => id,
        None => return Err(AuthError::malformed("TLS.identifier missing")),
        Some(_) => return Err(AuthError::malformed("TLS.identifier is not a string")),
    };
    let sdk_app_id = u32::try_from(integer(fields.sdkappid, "TLS.sdkappid")?)
        .map_err(|_| AuthError::malformed("TLS.sdkappid out of range"))?;
    let expire = bounded(integer(fields.expire, "TLS.expire")?, "TLS.expire")?;
    let time = bounded(integer(fields.time, "TLS.time")?, "TLS.time")?;
    let (userbuf_b64, userbuf) = match fields.userbuf {
        None | Some(Value::Null) => (None, None),
        Some(Value::String(b64)) => {
            let bytes = STANDARD
                .decode(&b64)
                .map_err(|_| AuthError::malformed("TLS.userbuf is not base64"))?;
            (Some(b64), Some(bytes))
        }
        Some(_) => return Err(AuthError::malformed("TLS.userbuf is not a string")),
    };
    let sig = match fields.sig {
        Some(Value::String(b64)) => STANDARD
            .decode(&b64)
            .map_err(|_| AuthError::malformed("TLS.sig is not base64"))?,
        None => return Err(AuthError::malformed("TLS.sig missing")),
        Some(_) => return Err(AuthError::malformed("TLS.sig is not a string")),
    };
    Ok(Claims {
        identifier,
        sdk_app_id,
        expire,
        time,
        userbuf_b64,
        userbuf,
        sig,
    })
}

/// A non-negative integer given as a JSON number or a canonical decimal string.
fn integer(value: Option<Value>, name: &'static str) -> Result<u64, AuthError> {
    match value {
        None => Err(AuthError::malformed(format!("{name} missing"))),
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| AuthError::malformed(format!("{name} is not a non-negative integer"))),
        Some(Value::String(s)) => {
            let canonical = !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0'));
            if !canonical {
                return Err(AuthError::malformed(format!(
                    "{name} is not a decimal integer"
                )));
            }
            s.parse::<u64>()
                .map_err(|_| AuthError::malformed(format!("{name} out of range")))
        }
        Some(_) => Err(AuthError::malformed(format!("{name} is not a number"))),
    }
}

/// Rejects absurd times and lifetimes (beyond `i64::MAX` seconds).
fn bounded(v: u64, name: &'static str) -> Result<u64, AuthError> {
    if i64::try_from(v).is_ok() {
        Ok(v)
    } else {
        Err(AuthError::malformed(format!("{name} out of range")))
    }
}

/// The `TLS.*` members of the top-level object, each seen at most once.
#[derive(Default)]
struct RawFields {
    ver: Option<Value>,
    identifier: Option<Value>,
    sdkappid: Option<Value>,
    expire: Option<Value>,
    time: Option<Value>,
    userbuf: Option<Value>,
    sig: Option<Value>,
}

impl<'de> Deserialize<'de> for RawFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RawFieldsVisitor)
    }
}

struct RawFieldsVisitor;

impl<'de> Visitor<'de> for RawFieldsVisitor {
    type Value = RawFields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TLS-Sig JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawFields, A::Error> {
        let mut fields = RawFields::default();
        while let Some(key) = map.next_key::<String>()? {
            let (slot, name) = match key.as_str() {
                "TLS.ver" => (&mut fields.ver, "TLS.ver"),
                "TLS.identifier" => (&mut fields.identifier, "TLS.identifier"),
                "TLS.sdkappid" => (&mut fields.sdkappid, "TLS.sdkappid"),
                "TLS.expire" => (&mut fields.expire, "TLS.expire"),
                "TLS.time" => (&mut fields.time, "TLS.time"),
                "TLS.userbuf" => (&mut fields.userbuf, "TLS.userbuf"),
                "TLS.sig" => (&mut fields.sig, "TLS.sig"),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(de::Error::custom(format_args!("duplicate key {name}")));
            }
            *slot = Some(map.next_value::<Value>()?);
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4=";

    #[test]
    fn render_parse_roundtrip() {
        let json = render("é/\"x", 7, 60, 100, Some("YWJj"), SIG);
        let c = parse(json.as_bytes()).map_err(|e| e.to_string());
        let c = c.as_ref().ok();
        assert_eq!(c.map(|c| c.identifier.as_str()), Some("é/\"x"));
        assert_eq!(c.and_then(|c| c.userbuf.clone()), Some(b"abc".to_vec()));
        assert_eq!(c.map(|c| c.sig.len()), Some(32));
    }

    #[test]
    fn duplicate_known_key_is_rejected_unknown_is_ignored() {
        let dup = format!(
            r#"{{"TLS.ver":"2.0","TLS.identifier":"a","TLS.identifier":"b","TLS.sdkappid":1,"TLS.expire":1,"TLS.time":1,"TLS.sig":"{SIG}"}}"#
        );
        assert!(matches!(
            parse(dup.as_bytes()),
            Err(AuthError::Malformed(_))
        ));
        let extra = format!(
            r#"{{"x":1,"x":[{{}}],"TLS.ver":"2.0","TLS.identifier":"a","TLS.sdkappid":1,"TLS.expire":1,"TLS.time":1,"TLS.sig":"{SIG}"}}"#
        );
        assert!(parse(extra.as_bytes()).is_ok());
    }

    #[test]
    fn numeric_strings_must_be_canonical() {
        for (s, ok) in [
            ("0", true),
            ("12", true),
            ("012", false),
            ("+1", false),
            ("", false),
            ("1.0", false),
            ("18446744073709551616", false),
        ] {
            assert_eq!(
                integer(Some(Value::String(s.into())), "n").is_ok(),
                ok,
                "{s:?}"
            );
        }
    }

    #[test]
    fn errors_do_not_quote_the_input() {
        for doc in [
            &b"\"secret-ish string\""[..],
            b"[\"secret-ish string\"]",
            b"{\"TLS.ver\": \"secret-ish string\"}",
        ] {
            match parse(doc) {
                Err(AuthError::Malformed(detail)) => {
                    assert!(!detail.contains("secret"), "{detail}")
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}
