//! configuration.json as the protocol sees it: JavaScript's `JSON.stringify`
//! form and the `configHash` computed on it (protocol notes §5.3).

use serde_json::Value;
use sha2::{Digest, Sha256};

/// `JSON.stringify` of a parsed document: compact, keys in file order (the
/// `preserve_order` feature), integral numbers without a fraction (`2`, not
/// `2.0`), as JavaScript prints them.
pub fn js_stringify(value: &Value) -> String {
    let mut out = String::new();
    write_js(value, &mut out);
    out
}

fn write_js(value: &Value, out: &mut String) {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e21 => {
                out.push_str(&format!("{f:.0}"));
            }
            _ => out.push_str(&n.to_string()),
        },
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_js(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_js(v, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// First 16 hex digits of sha256 — the digest upstream uses everywhere.
pub fn short_sha256(bytes: &[u8]) -> String {
    let mut hex = hex::encode(Sha256::digest(bytes));
    hex.truncate(16);
    hex
}

/// The `configHash` of a configuration.
pub fn config_hash(config: &Value) -> String {
    short_sha256(js_stringify(config).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha16(s: &str) -> String {
        short_sha256(s.as_bytes())
    }

    #[test]
    fn hashes_match_the_upstream_vectors() -> Result<(), serde_json::Error> {
        assert_eq!(config_hash(&serde_json::from_str("{}")?), sha16("{}"));
        assert_eq!(sha16("{}"), "44136fa355b3678a");
        assert_eq!(
            config_hash(&serde_json::from_str(r#"{ "categories": [] }"#)?),
            sha16(r#"{"categories":[]}"#)
        );
        assert_eq!(
            config_hash(&serde_json::from_str(
                r#"{"categories":[{"id":"test","name":"Test"}]}"#
            )?),
            sha16(r#"{"categories":[{"id":"test","name":"Test"}]}"#)
        );
        assert_ne!(
            config_hash(&serde_json::from_str(
                r#"{"categories":[{"id":"test1","name":"Test1"}]}"#
            )?),
            config_hash(&serde_json::from_str(
                r#"{"categories":[{"id":"test2","name":"Test2"}]}"#
            )?)
        );
        // File order kept, JS number formatting, raw non-ASCII.
        let v: Value = serde_json::from_str(r#"{"z":1,"a":2.0,"b":0.5,"é":"ü\n"}"#)?;
        assert_eq!(
            js_stringify(&v),
            "{\"z\":1,\"a\":2,\"b\":0.5,\"é\":\"ü\\n\"}"
        );
        Ok(())
    }
}
