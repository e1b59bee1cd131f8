//! What the box holds after a boot, read through the guest agent by one
//! fixed script (coreutils only: the box has no JSON tool) and judged on
//! the host: the configuration and its backups, every file under the
//! NEOPRO folder and the agent's state folder, the sha256 of every video,
//! the agent's state files, the kernel's filesystem complaints.

use super::qga::{Qga, base64_decode};
use anyhow::Context;
use std::collections::BTreeMap;
use std::time::Duration;

pub const NEOPRO: &str = "/home/pi/neopro";
pub const STATE: &str = "/var/lib/neopro-runtime";
pub const CONFIG: &str = "/home/pi/neopro/webapp/configuration.json";

/// Printed by the guest, one record per line, fields separated by tabs.
/// Nothing in it comes from outside the rig.
const SCRIPT: &str = r#"N=/home/pi/neopro; S=/var/lib/neopro-runtime
printf 'agent\t%s\n' "$(systemctl is-active neopro-runtime.service)"
printf 'status\t%s\n' "$(systemctl show -p ActiveState -p SubState -p Result -p NRestarts neopro-runtime.service | tr '\n' ' ')"
for f in "$N/webapp/configuration.json" "$N"/webapp/*.backup.json "$N"/data/backups/config-*.json; do
  [ -f "$f" ] && printf 'f64\t%s\t%s\n' "$f" "$(base64 -w0 < "$f")"
done
find "$S" -xdev -type f \( -name '*.json' -o -name '*.log' \) -size -256k | while read -r f; do
  printf 'f64\t%s\t%s\n' "$f" "$(base64 -w0 < "$f")"
done
find "$N" "$S" -xdev -printf 'entry\t%y\t%s\t%p\n'
find "$N/videos" -xdev -type f -exec sha256sum {} + | sed 's/^\([0-9a-f]*\)  /sha\t\1\t/'
[ -d "$S/components" ] && find "$S/components" -xdev -type f \( -name '*.wasm' -o -name '*.toml' \) -exec sha256sum {} + | sed 's/^\([0-9a-f]*\)  /csha\t\1\t/'
[ -f /usr/bin/neopro-runtime ] && [ -s /usr/bin/neopro-runtime ] && printf 'packaged\tyes\n'
dmesg | grep -E 'EXT4-fs (error|warning)|I/O error|JBD2' | sed 's/^/dmesg\t/'
true
"#;

/// One entry of `find -printf`.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `f` file, `d` folder, `l` link, …
    pub kind: char,
    pub size: u64,
    pub path: String,
}

#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// `systemctl is-active` of the agent's unit.
    pub agent: String,
    /// The unit's state in a line (`ActiveState=… SubState=… Result=… NRestarts=…`).
    pub status: String,
    /// Contents of the configuration, its backups and the state files.
    pub files: BTreeMap<String, Vec<u8>>,
    pub entries: Vec<Entry>,
    /// sha256 of every file under the videos folder.
    pub shas: BTreeMap<String, String>,
    /// sha256 of the pushed components' wasm and manifests.
    pub component_shas: BTreeMap<String, String>,
    pub dmesg: Vec<String>,
    /// The packaged agent (`/usr/bin/neopro-runtime`) is there, not empty.
    pub packaged_agent: bool,
}

impl Snapshot {
    pub fn take(qga: &mut Qga) -> anyhow::Result<Snapshot> {
        let out = qga
            .exec(&["/bin/sh", "-c", SCRIPT], None, Duration::from_secs(120))?
            .ok("the snapshot script")?;
        parse(&out)
    }

    pub fn config_text(&self) -> Option<&[u8]> {
        self.files.get(CONFIG).map(Vec::as_slice)
    }

    /// Ids listed in the journal's `admitted.log`.
    pub fn admitted(&self) -> Vec<String> {
        self.files
            .get(&format!("{STATE}/journal/admitted.log"))
            .map(|b| {
                String::from_utf8_lossy(b)
                    .lines()
                    .map(|l| l.trim_matches('\0').trim().to_owned())
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub fn parse(out: &str) -> anyhow::Result<Snapshot> {
    let mut snap = Snapshot::default();
    for line in out.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["agent", state] => snap.agent = (*state).to_owned(),
            ["status", state] => snap.status = (*state).trim().to_owned(),
            ["f64", path, data] => {
                snap.files.insert((*path).to_owned(), base64_decode(data));
            }
            ["f64", path] => {
                snap.files.insert((*path).to_owned(), Vec::new());
            }
            ["entry", kind, size, path] => snap.entries.push(Entry {
                kind: kind.chars().next().unwrap_or('?'),
                size: size.parse().with_context(|| format!("size in {line}"))?,
                path: (*path).to_owned(),
            }),
            ["sha", sha, path] => {
                snap.shas.insert((*path).to_owned(), (*sha).to_owned());
            }
            ["csha", sha, path] => {
                snap.component_shas
                    .insert((*path).to_owned(), (*sha).to_owned());
            }
            ["dmesg", rest @ ..] => snap.dmesg.push(rest.join(" ")),
            ["packaged", "yes"] => snap.packaged_agent = true,
            _ => {}
        }
    }
    if snap.agent.is_empty() {
        anyhow::bail!("the snapshot script printed no agent state:\n{out}");
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_output_is_read_back() -> anyhow::Result<()> {
        let out = "agent\tactive\n\
                   f64\t/home/pi/neopro/webapp/configuration.json\teyJhIjoxfQ==\n\
                   f64\t/var/lib/neopro-runtime/journal/admitted.log\tYQpiCg==\n\
                   entry\tf\t7\t/home/pi/neopro/videos/Match/x.mp4\n\
                   sha\tabc\t/home/pi/neopro/videos/Match/x.mp4\n\
                   dmesg\t[ 1.0] EXT4-fs error (device vda): bad\n";
        let snap = parse(out)?;
        assert_eq!(snap.agent, "active");
        assert_eq!(snap.config_text(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(snap.admitted(), ["a", "b"]);
        assert_eq!(snap.entries[0].size, 7);
        assert_eq!(snap.shas.len(), 1);
        assert_eq!(snap.dmesg.len(), 1);
        assert!(parse("nothing\n").is_err());
        Ok(())
    }
}
