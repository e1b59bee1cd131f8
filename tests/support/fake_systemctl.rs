//! A systemctl double for the tests: records every argument vector (one call
//! per line in `calls.log`), keeps unit states in files, and can be told to
//! fail a unit's start or to leave it `failed` while some file exists (a
//! release that does not come up).
#![allow(clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The double and its folder.
pub struct FakeSystemctl {
    pub dir: PathBuf,
    _owned: Option<tempfile::TempDir>,
}

impl FakeSystemctl {
    /// The double in a temporary folder of its own.
    pub fn temp() -> FakeSystemctl {
        let owned = tempfile::tempdir().expect("temp dir");
        let mut fake = FakeSystemctl::new(owned.path());
        fake._owned = Some(owned);
        fake
    }

    /// Creates the double in `dir` (created if needed).
    pub fn new(dir: &Path) -> FakeSystemctl {
        std::fs::create_dir_all(dir.join("units")).expect("fake systemctl folder");
        std::fs::create_dir_all(dir.join("fail-start")).expect("fake systemctl folder");
        std::fs::create_dir_all(dir.join("failed-while")).expect("fake systemctl folder");
        std::fs::create_dir_all(dir.join("hang")).expect("fake systemctl folder");
        std::fs::create_dir_all(dir.join("crash-while")).expect("fake systemctl folder");
        let d = dir.display();
        let script = format!(
            r#"#!/bin/sh
echo "$*" >> '{d}/calls.log'
unit="$2"
[ "$unit" = --no-block ] && unit="$3"
if [ -e '{d}/hang/'"$1-$unit" ]; then
  rm -f '{d}/hang/'"$1-$unit"; echo "$1 $unit" > '{d}/hanging'; sleep 10
fi
case "$1" in
  start|restart)
    if [ -e '{d}/fail-start/'"$unit" ]; then
      echo "Job for $unit.service failed because the control process exited with error code." >&2
      echo failed > '{d}/units/'"$unit"; exit 1
    fi
    if [ -e '{d}/failed-while/'"$unit" ] && [ -e "$(cat '{d}/failed-while/'"$unit")" ]; then
      echo failed > '{d}/units/'"$unit"; exit 0
    fi
    rm -f '{d}/crash-count-'"$unit"
    echo active > '{d}/units/'"$unit";;
  stop) echo inactive > '{d}/units/'"$unit";;
  is-active)
    if [ -e '{d}/crash-while/'"$unit" ] && [ -e "$(head -n 1 '{d}/crash-while/'"$unit")" ]; then
      n=$(cat '{d}/crash-count-'"$unit" 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{d}/crash-count-'"$unit"
      [ "$n" -gt "$(tail -n 1 '{d}/crash-while/'"$unit")" ] && echo failed > '{d}/units/'"$unit"
    fi
    state=$(cat '{d}/units/'"$unit" 2>/dev/null || echo active)
    echo "$state"; [ "$state" = active ] || exit 3;;
  reboot) date +%s%N > '{d}/reboot-at';;
esac
exit 0
"#
        );
        let path = dir.join("systemctl");
        std::fs::write(&path, script).expect("fake systemctl");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        FakeSystemctl {
            dir: dir.to_owned(),
            _owned: None,
        }
    }

    /// The site.conf line pointing the agent at the double.
    pub fn conf_line(&self) -> String {
        format!("SYSTEMCTL_PATH={}", self.dir.join("systemctl").display())
    }

    /// Every call so far, one argument vector per line.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `systemctl start/restart unit` will fail.
    pub fn fail_start(&self, unit: &str) {
        std::fs::write(self.dir.join("fail-start").join(unit), "").expect("fake state");
    }

    /// `unit` comes up `failed` while `path` exists.
    pub fn failed_while(&self, unit: &str, path: &Path) {
        std::fs::write(
            self.dir.join("failed-while").join(unit),
            path.display().to_string(),
        )
        .expect("fake state");
    }

    /// While `path` exists, `unit` starts `active` and reads `failed` after
    /// `checks` status queries: an app that crashes seconds after starting.
    pub fn crashes_while(&self, unit: &str, path: &Path, checks: u32) {
        std::fs::write(
            self.dir.join("crash-while").join(unit),
            format!("{}\n{checks}\n", path.display()),
        )
        .expect("fake state");
    }

    /// The next `systemctl <action> <unit>` hangs for 10 s (a box losing
    /// power at that moment, once the test kills the agent).
    pub fn hang_once(&self, action: &str, unit: &str) {
        std::fs::write(self.dir.join("hang").join(format!("{action}-{unit}")), "")
            .expect("fake state");
    }

    /// Whether a call is hanging now.
    pub fn hanging(&self) -> bool {
        self.dir.join("hanging").exists()
    }

    /// When the reboot was asked, in ns since the epoch.
    pub fn reboot_at_ns(&self) -> Option<u128> {
        std::fs::read_to_string(self.dir.join("reboot-at"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}
