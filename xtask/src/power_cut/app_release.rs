//! The app release on the box after a cut (update_software): which
//! release each of its files belongs to and whether its services run, read
//! once the agent has finished or rolled back the interrupted update (its
//! result is in), and the two checks on it: `release-whole` (every file
//! of one release, the one before or the one the command installs — the
//! one it installs if the central was told it succeeded) and
//! `app-services-run`.

use super::checks::Violation;
use super::qga::Qga;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The release's files (relative to the NEOPRO folder) and what each
/// holds for version `v` (as the image and the central's releases write
/// them).
const FILES: &[(&str, &str)] = &[
    ("VERSION", "{v}\n"),
    ("webapp/index.html", "<html>release {v}</html>\n"),
    ("server/app.js", "console.log(\"server {v}\")\n"),
    ("admin/app.js", "console.log(\"admin {v}\")\n"),
];

/// The release's services.
pub const UNITS: &[&str] = &["neopro-app.service", "neopro-admin.service"];

/// Printed by the guest: `file\t<rel>\t<base64>` (empty when missing) and
/// `unit\t<name>\t<is-active>`. Nothing in it comes from outside the rig.
const SCRIPT: &str = r#"N=/home/pi/neopro
for f in VERSION webapp/index.html server/app.js admin/app.js; do
  if [ -f "$N/$f" ]; then printf 'file\t%s\t%s\n' "$f" "$(head -c 4096 "$N/$f" | base64 -w0)"; else printf 'file\t%s\n' "$f"; fi
done
for u in neopro-app.service neopro-admin.service; do
  printf 'unit\t%s\t%s\n' "$u" "$(systemctl is-active "$u")"
done
true
"#;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct AppRelease {
    /// File → its bytes (`None`: missing).
    pub files: BTreeMap<String, Option<Vec<u8>>>,
    /// Unit → `systemctl is-active`.
    pub units: BTreeMap<String, String>,
}

impl AppRelease {
    /// Reads the release; waits up to `settle` for its services to be
    /// active (they start with the boot, and the agent's rollback or
    /// finish restarts them).
    pub fn take(qga: &mut Qga, settle: Duration) -> anyhow::Result<AppRelease> {
        let end = Instant::now() + settle;
        loop {
            let out = qga
                .exec(&["/bin/sh", "-c", SCRIPT], None, Duration::from_secs(60))?
                .ok("the release script")?;
            let release = parse(&out);
            if release.units.values().all(|s| s == "active") || Instant::now() > end {
                return Ok(release);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// The one version every file is of, if there is one.
    pub fn version(&self) -> Option<String> {
        let text = String::from_utf8_lossy(self.files.get("VERSION")?.as_deref()?).into_owned();
        let v = text.trim();
        (!v.is_empty() && self.is_wholly(v)).then(|| v.to_owned())
    }

    fn is_wholly(&self, v: &str) -> bool {
        FILES.iter().all(|(rel, shape)| {
            self.files
                .get(*rel)
                .and_then(|b| b.as_deref())
                .is_some_and(|b| b == shape.replace("{v}", v).as_bytes())
        })
    }

    /// The files, shortened, for a violation's text.
    fn describe(&self) -> String {
        self.files
            .iter()
            .map(|(rel, bytes)| match bytes {
                None => format!("{rel}: missing"),
                Some(b) => format!(
                    "{rel}: {:?}",
                    String::from_utf8_lossy(b)
                        .trim()
                        .chars()
                        .take(60)
                        .collect::<String>()
                ),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn parse(out: &str) -> AppRelease {
    let mut release = AppRelease::default();
    for line in out.lines() {
        match line.split('\t').collect::<Vec<_>>().as_slice() {
            ["file", rel, data] => {
                release
                    .files
                    .insert((*rel).to_owned(), Some(super::qga::base64_decode(data)));
            }
            ["file", rel] => {
                release.files.insert((*rel).to_owned(), None);
            }
            ["unit", name, state] => {
                release
                    .units
                    .insert((*name).to_owned(), (*state).to_owned());
            }
            _ => {}
        }
    }
    release
}

/// `release-whole` and `app-services-run`. `before`: the release the box
/// had before the command; `installing`: the release the command in
/// flight installs; `success_reported`: the central was told it did.
pub fn check(
    now: &AppRelease,
    before: &str,
    installing: Option<&str>,
    success_reported: bool,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let allowed: Vec<&str> = match (installing, success_reported) {
        (Some(new), true) => vec![new],
        (Some(new), false) => vec![before, new],
        (None, _) => vec![before],
    };
    match now.version() {
        Some(v) if allowed.contains(&v.as_str()) => {}
        Some(v) => out.push(Violation {
            check: "release-whole",
            detail: format!(
                "release {v} is installed, expected {} ({})",
                allowed.join(" or "),
                if success_reported {
                    "the central was told the update succeeded"
                } else {
                    "the release before or after the command"
                }
            ),
        }),
        None => out.push(Violation {
            check: "release-whole",
            detail: format!("a mix of releases or damaged files: {}", now.describe()),
        }),
    }
    for unit in UNITS {
        let state = now
            .units
            .get(*unit)
            .map(String::as_str)
            .unwrap_or("unknown");
        if state != "active" {
            out.push(Violation {
                check: "app-services-run",
                detail: format!("{unit} is {state}"),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(versions: [&str; 4], units: [&str; 2]) -> AppRelease {
        let mut r = AppRelease::default();
        for ((rel, shape), v) in FILES.iter().zip(versions) {
            r.files.insert(
                (*rel).to_owned(),
                (!v.is_empty()).then(|| shape.replace("{v}", v).into_bytes()),
            );
        }
        for (u, s) in UNITS.iter().zip(units) {
            r.units.insert((*u).to_owned(), s.to_owned());
        }
        r
    }

    #[test]
    fn a_release_is_wholly_the_one_before_or_after() {
        let up = ["active", "active"];
        let old = release(["1.0.0"; 4], up);
        let new = release(["1.2.0"; 4], up);
        assert_eq!(old.version().as_deref(), Some("1.0.0"));
        assert!(check(&old, "1.0.0", Some("1.2.0"), false).is_empty());
        assert!(check(&new, "1.0.0", Some("1.2.0"), false).is_empty());
        assert!(check(&new, "1.0.0", Some("1.2.0"), true).is_empty());
        // Success reported, old release back: not durable.
        let v = check(&old, "1.0.0", Some("1.2.0"), true);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].check, "release-whole");
        // A mix: new webapp, old server.
        let mix = release(["1.0.0", "1.2.0", "1.0.0", "1.0.0"], up);
        assert_eq!(mix.version(), None);
        let v = check(&mix, "1.0.0", Some("1.2.0"), false);
        assert!(v[0].detail.contains("a mix"), "{v:?}");
        // A missing file.
        let gone = release(["1.2.0", "1.2.0", "", "1.2.0"], up);
        assert_eq!(check(&gone, "1.0.0", Some("1.2.0"), false).len(), 1);
        // No command: the release must not change.
        assert_eq!(check(&new, "1.0.0", None, false).len(), 1);
    }

    #[test]
    fn its_services_must_run() {
        let r = release(["1.0.0"; 4], ["active", "failed"]);
        let v = check(&r, "1.0.0", None, false);
        assert_eq!(
            v,
            [Violation {
                check: "app-services-run",
                detail: "neopro-admin.service is failed".to_owned()
            }]
        );
    }

    #[test]
    fn the_script_output_is_read_back() {
        let r = parse(
            "file\tVERSION\tMS4wLjAK\nfile\tserver/app.js\nunit\tneopro-app.service\tactive\n",
        );
        assert_eq!(r.files["VERSION"].as_deref(), Some(&b"1.0.0\n"[..]));
        assert_eq!(r.files["server/app.js"], None);
        assert_eq!(r.units["neopro-app.service"], "active");
    }
}
