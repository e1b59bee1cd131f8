//! What the root-only tasks (`system-test`, `power-cut`) share on their
//! command line: flags that stand alone or take the next argument, and the
//! check that they run as root (they boot a Debian as root).

use anyhow::{Context, bail};

/// `args` as `(flag, value)`: a flag in `switches` stands alone (`None`),
/// every other takes the next argument. A flag missing its value is an
/// error that shows `usage`.
pub fn flags<'a>(
    args: &'a [String],
    switches: &[&str],
    usage: &str,
) -> anyhow::Result<Vec<(&'a str, Option<&'a str>)>> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if switches.contains(&flag.as_str()) {
            out.push((flag.as_str(), None));
            continue;
        }
        let value = it.next().with_context(|| usage.to_owned())?;
        out.push((flag.as_str(), Some(value.as_str())));
    }
    Ok(out)
}

/// Fails unless this process runs as root; `why` says what needs it.
pub fn require_root(task: &str, why: &str) -> anyhow::Result<()> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|u| u.split_whitespace().next().map(str::to_owned))
        });
    if uid.as_deref() != Some("0") {
        bail!("{task} must run as root ({why})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_stand_alone_and_other_flags_take_a_value() -> anyhow::Result<()> {
        let args: Vec<String> = ["--dev", "--cuts", "5", "--x", "--dev"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            flags(&args, &["--dev"], "usage")?,
            [
                ("--dev", None),
                ("--cuts", Some("5")),
                ("--x", Some("--dev"))
            ]
        );
        let err = flags(&args[..2], &["--dev"], "usage: here")
            .err()
            .map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("usage: here"));
        Ok(())
    }
}
