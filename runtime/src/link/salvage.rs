//! What can still be read from an event the decoder refused, so that it is
//! logged with its name and a preview and, for a command, answered with an
//! error result instead of vanishing (issue 18.12).
//!
//! The usual cause is a lone UTF-16 surrogate (`"\ud800"`): JavaScript's
//! `JSON.stringify` emits one for a string cut in the middle of an emoji,
//! and strict JSON parsers (ours) refuse it. Re-reading the text with each
//! lone surrogate replaced by U+FFFD recovers the event name and the
//! command id; the payload itself is never used.

use serde_json::Value;

/// How many characters of the raw event the log shows.
const PREVIEW_CHARS: usize = 160;

/// The readable parts of an undecodable event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvaged {
    pub name: Option<String>,
    /// `id` of the first argument, when it is a string (a command's id).
    pub id: Option<String>,
    /// The start of the raw text, for the log.
    pub preview: String,
}

/// `text` is the Socket.IO packet after its type, namespace and ack id (the
/// JSON array of an event).
pub fn salvage(text: &str) -> Salvaged {
    let preview = preview(text);
    let parsed: Option<Vec<Value>> = serde_json::from_str(&replace_lone_surrogates(text)).ok();
    let mut items = parsed.unwrap_or_default().into_iter();
    let name = items.next().and_then(|v| v.as_str().map(str::to_owned));
    let id = items
        .next()
        .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned))
        .filter(|id| !id.is_empty());
    Salvaged { name, id, preview }
}

/// At most [`PREVIEW_CHARS`] characters, on a character boundary.
fn preview(text: &str) -> String {
    let mut out: String = text.chars().take(PREVIEW_CHARS).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// Rewrites `\uD800`–`\uDFFF` escapes that are not a high + low pair as
/// `\uFFFD`; every other byte stays as it was.
fn replace_lone_surrogates(json: &str) -> String {
    let bytes = json.as_bytes();
    let hex_at = |i: usize| -> Option<u32> {
        let digits = json.get(i..i + 4)?;
        u32::from_str_radix(digits, 16).ok()
    };
    let unicode_escape_at = |i: usize| -> Option<u32> {
        (bytes.get(i) == Some(&b'\\') && bytes.get(i + 1) == Some(&b'u'))
            .then(|| hex_at(i + 2))
            .flatten()
    };
    let mut out = String::with_capacity(json.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        match unicode_escape_at(i) {
            Some(0xD800..=0xDBFF) => {
                if matches!(unicode_escape_at(i + 6), Some(0xDC00..=0xDFFF)) {
                    i += 12;
                } else {
                    out.push_str(&json[copied..i]);
                    out.push_str("\\ufffd");
                    i += 6;
                    copied = i;
                }
            }
            Some(0xDC00..=0xDFFF) => {
                out.push_str(&json[copied..i]);
                out.push_str("\\ufffd");
                i += 6;
                copied = i;
            }
            // Any other escape: skip the backslash and the escaped byte
            // (so `\\u` is not read as an escape).
            _ => i += 2,
        }
    }
    out.push_str(json.get(copied..).unwrap_or(""));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_surrogate_leaves_the_name_and_id_readable() {
        let raw =
            r#"["command",{"id":"c-1","type":"update_config","data":{"name":"Club \ud800"}}]"#;
        assert!(
            serde_json::from_str::<Value>(raw).is_err(),
            "strict JSON refuses it"
        );
        let s = salvage(raw);
        assert_eq!(s.name.as_deref(), Some("command"));
        assert_eq!(s.id.as_deref(), Some("c-1"));
        assert_eq!(s.preview, raw);
    }

    #[test]
    fn pairs_and_escaped_backslashes_are_kept() {
        assert_eq!(
            replace_lone_surrogates(r#""\ud83d\ude00 \\ud800 \udc00x\ud800""#),
            r#""\ud83d\ude00 \\ud800 \ufffdx\ufffd""#
        );
    }

    #[test]
    fn garbage_gives_a_bounded_preview_and_nothing_else() {
        let raw = format!("[\"command\",{{\"id\":{}", "9".repeat(1000));
        let s = salvage(&raw);
        assert_eq!(s.name, None);
        assert_eq!(s.id, None);
        assert_eq!(s.preview.chars().count(), PREVIEW_CHARS + 1);
    }
}
