//! File and folder names (protocol notes §3.3).

use neopro_guest_sdk::Error;

/// A category or subcategory: one plain folder name.
pub fn plain<'a>(value: &'a str, what: &str) -> Result<&'a str, Error> {
    let bad = value.trim().is_empty()
        || value == "."
        || value == ".."
        || value.contains(['/', '\\', '\0']);
    if bad {
        Err(Error::invalid_input(format!(
            "{what} '{value}' is not a plain name (no '/', '..' or empty names)"
        )))
    } else {
        Ok(value)
    }
}

/// `(stem, ".ext")`; the extension is what follows the last dot (none → "").
pub fn split_ext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

/// Upstream's `sanitizeFilename`: directory parts dropped, reserved
/// characters replaced by `-`, runs collapsed, extension cleaned and
/// lower-cased (`.mp4` when missing).
pub fn sanitize_filename(name: Option<&str>) -> String {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return "video.mp4".to_owned();
    };
    let base_name = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let (stem, ext) = split_ext(base_name);
    let ext: String = ext
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect::<String>()
        .to_ascii_lowercase();
    let ext = if ext.len() <= 1 {
        ".mp4".to_owned()
    } else {
        ext
    };
    let mut base = String::new();
    for c in stem.chars() {
        let c = if "<>:\"/\\|?*".contains(c) || (c as u32) < 0x20 {
            '-'
        } else {
            c
        };
        let last = base.chars().last();
        if (c.is_whitespace() && last.is_some_and(char::is_whitespace))
            || (c == '-' && last == Some('-'))
        {
            continue;
        }
        base.push(if c.is_whitespace() { ' ' } else { c });
    }
    let base = base.trim();
    let base = if base.is_empty() || base == "." || base == ".." {
        "video"
    } else {
        base
    };
    format!("{base}{ext}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_examples() {
        assert_eq!(
            sanitize_filename(Some("Vidéo Spéciale (2024).mp4")),
            "Vidéo Spéciale (2024).mp4"
        );
        assert_eq!(sanitize_filename(Some("Test Video.MP4")), "Test Video.mp4");
        assert_eq!(sanitize_filename(Some("a:b?.mp4")), "a-b-.mp4");
        assert_eq!(sanitize_filename(Some("Promo été")), "Promo été.mp4");
        assert_eq!(sanitize_filename(Some("Match 2.0")), "Match 2.0");
        assert_eq!(sanitize_filename(None), "video.mp4");
        assert_eq!(sanitize_filename(Some("../../etc/passwd")), "passwd.mp4");
        assert_eq!(sanitize_filename(Some("..")), "video.mp4");
    }

    #[test]
    fn names_must_be_plain() {
        assert!(plain("Match", "category").is_ok());
        for bad in ["..", ".", "", "a/b", "../x", "a\\b"] {
            assert!(plain(bad, "category").is_err(), "{bad}");
        }
    }
}
