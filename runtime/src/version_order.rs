//! Which of two versions is newer, for the downgrade rule (components,
//! releases): semantic-version order on the numeric dotted core, a
//! pre-release (`-rc.1`) before its release, build metadata (`+…`) ignored.
//! Versions that are not of that shape are not ordered: nothing is refused
//! on a guess.

use std::cmp::Ordering;

fn core_and_pre(version: &str) -> (&str, Option<&str>) {
    let without_build = version.split('+').next().unwrap_or(version);
    match without_build.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (without_build, None),
    }
}

fn numbers(core: &str) -> Option<Vec<u64>> {
    core.split('.')
        .map(|part| {
            let part = part.strip_prefix('v').unwrap_or(part);
            (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse().ok())
                .flatten()
        })
        .collect()
}

fn compare_pre(a: &str, b: &str) -> Ordering {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// `a` compared to `b`, or `None` when either is not a dotted number
/// version.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a_core, a_pre) = core_and_pre(a.trim());
    let (b_core, b_pre) = core_and_pre(b.trim());
    let (mut x, mut y) = (numbers(a_core)?, numbers(b_core)?);
    let len = x.len().max(y.len());
    x.resize(len, 0);
    y.resize(len, 0);
    Some(x.cmp(&y).then_with(|| match (a_pre, b_pre) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(p), Some(q)) => compare_pre(p, q),
    }))
}

/// Whether `candidate` is strictly older than `installed`.
pub fn is_older(candidate: &str, installed: &str) -> bool {
    compare(candidate, installed) == Some(Ordering::Less)
}

/// The refusal of an app release older than the installed one (checked
/// after the download, by `archive.check-app-release`).
pub fn downgrade_refused(version: &str, installed: &str) -> String {
    format!(
        "refusing to install {version}: it is older than the installed {installed}. Downgrades are refused unless UPDATE_ALLOW_DOWNGRADE=true in site.conf"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_ordered_like_semver() {
        assert!(is_older("1.9.0", "1.10.0"));
        assert!(is_older("2.0.0-rc.1", "2.0.0"));
        assert!(is_older("2.0.0-rc.2", "2.0.0-rc.10"));
        assert!(is_older("1.2", "1.2.1"));
        assert!(!is_older("2.0.0", "2.0.0+build.5"));
        assert!(!is_older("2.0.0", "1.99.99"));
        assert!(!is_older("1.0.0", "1.0"));
        assert_eq!(compare("v2.1", "2.1.0"), Some(Ordering::Equal));
        // Not versions: never refused on a guess.
        assert_eq!(compare("latest", "2.0.0"), None);
        assert!(!is_older("nightly-2025", "2.0.0"));
    }
}
