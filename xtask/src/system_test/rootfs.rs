//! The cached Debian bookworm root filesystem the system tests boot: built
//! once per architecture with mmdebstrap, shaped like a Raspberry Pi OS box,
//! kept outside the clone (`/var/cache/neopro-ci/`, or `NEOPRO_CI_CACHE`) and
//! rebuilt when missing or when this recipe changes (its hash is in the
//! folder name).

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Debian release the boxes run (Raspberry Pi OS 12 is bookworm).
pub(crate) const SUITE: &str = "bookworm";

/// What a Pi box has that the tests need: systemd as PID 1 with journald,
/// dbus and polkitd (the agent's restarts and reboots go through them), ACL
/// tools (the package depends on them), and nothing else.
pub(crate) const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "polkitd",
    "libpam-systemd",
    "acl",
];

/// For the migration scenario, on every architecture (32- and 64-bit boxes
/// alike run the upstream Node.js agent): Node.js from Debian, as those
/// boxes have it, and sudo.
const MIGRATION_PACKAGES: &[&str] = &["nodejs", "sudo"];

/// Raspberry Pi OS lets `pi` use sudo without a password
/// (`/etc/sudoers.d/010_pi-nopasswd`): the upstream agent relies on it.
const MIGRATION_SHAPE: &str = r#"set -eu
R="$1"
printf 'pi ALL=(ALL) NOPASSWD: ALL\n' > "$R/etc/sudoers.d/010_pi-nopasswd"
chmod 0440 "$R/etc/sudoers.d/010_pi-nopasswd"
"#;

/// Shapes the bare system like a Pi box. Run by mmdebstrap on the host with
/// the root filesystem as `$1`; `chroot` runs foreign binaries through
/// binfmt_misc (qemu-user-static, F flag).
pub(crate) const SHAPE: &str = r#"set -eu
R="$1"
echo neopro-box > "$R/etc/hostname"
# A minbase system has no /etc/hosts: localhost would not resolve.
printf '127.0.0.1 localhost\n127.0.1.1 neopro-box\n::1 localhost ip6-localhost ip6-loopback\n' > "$R/etc/hosts"
# Empty: systemd makes a new one at each boot of a fresh copy.
rm -f "$R/etc/machine-id"; : > "$R/etc/machine-id"
# Persistent journal, read from the host with journalctl -D.
mkdir -p "$R/var/log/journal"
# The club's user, home 0700 as Debian 12 and Raspberry Pi OS make it.
chroot "$R" useradd --create-home --uid 1000 --user-group --shell /bin/bash pi
chmod 0700 "$R/home/pi"
N="$R/home/pi/neopro"
mkdir -p "$N/videos/Match" "$N/videos/Sponsors" "$N/webapp" "$N/backups" "$N/logs" "$N/data" "$N/server" "$N/admin"
printf 'match video\n' > "$N/videos/Match/but.mp4"
printf 'sponsor video\n' > "$N/videos/Sponsors/logo.mp4"
cat > "$N/webapp/configuration.json" <<'JSON'
{
  "remote": {
    "title": "Télécommande Neopro - Club de test"
  },
  "auth": {
    "password": "club-password",
    "clubName": "Club de test",
    "sessionDuration": 28800000
  },
  "sync": {
    "enabled": true,
    "serverUrl": "http://127.0.0.1",
    "siteName": "Club de test"
  },
  "sponsors": [
    {
      "name": "Boulangerie",
      "path": "videos/Sponsors/logo.mp4",
      "type": "video/mp4"
    }
  ],
  "categories": [
    {
      "id": "match",
      "name": "Match",
      "locked": false,
      "videos": [
        {
          "name": "But",
          "path": "videos/Match/but.mp4",
          "type": "video/mp4",
          "expires_at": "2020-01-01T00:00:00.000Z"
        }
      ]
    }
  ]
}
JSON
printf '<html>release 1.0.0</html>\n' > "$N/webapp/index.html"
printf 'console.log("server 1.0.0")\n' > "$N/server/app.js"
printf 'console.log("admin 1.0.0")\n' > "$N/admin/app.js"
printf '1.0.0\n' > "$N/VERSION"
printf '{"version":"1.0.0"}\n' > "$N/release.json"
chown -R 1000:1000 "$N"

# Stand-ins for the web app and the admin app. Test hooks: a release whose
# webapp/ holds `fail-start` cannot start; one holding `crash-after-start`
# starts, then exits after 2 s (and is restarted, as the real unit would).
cat > "$R/etc/systemd/system/neopro-app.service" <<'UNIT'
[Unit]
Description=NEOPRO web app (system-test stand-in)
[Service]
User=pi
ExecStartPre=/bin/sh -c 'test ! -e /home/pi/neopro/webapp/fail-start'
ExecStart=/bin/sh -c 'if [ -e /home/pi/neopro/webapp/crash-after-start ]; then sleep 2; exit 1; fi; exec sleep infinity'
Restart=on-failure
RestartSec=1
[Install]
WantedBy=multi-user.target
UNIT
cat > "$R/etc/systemd/system/neopro-admin.service" <<'UNIT'
[Unit]
Description=NEOPRO admin app (system-test stand-in)
[Service]
User=pi
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
UNIT
# A unit the agent must never be able to control.
cat > "$R/etc/systemd/system/club-private.service" <<'UNIT'
[Unit]
Description=A unit the agent is not allowed to touch
[Service]
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
UNIT
chroot "$R" systemctl enable neopro-app.service neopro-admin.service club-private.service
"#;

/// Under qemu-user, units using `LoadCredential=` fail (243/CREDENTIALS):
/// reset it for the stock units of a foreign-architecture root filesystem.
const QEMU_USER_FIXUP: &str = r#"set -eu
R="$1"
for u in $(grep -l '^LoadCredential=' "$R"/lib/systemd/system/*.service); do
  mkdir -p "$R/etc/systemd/system/$(basename "$u").d"
  printf '[Service]\nLoadCredential=\n' > "$R/etc/systemd/system/$(basename "$u").d/no-credentials-under-qemu-user.conf"
done
"#;

/// Marker written last: a build that was interrupted is rebuilt.
const DONE: &str = ".neopro-rootfs-complete";

/// FNV-1a: a stable hash of the recipe for the cache folder's name (no
/// crypto needed, only "did the recipe change").
pub(crate) fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The folder holding the cached root filesystems.
pub fn cache_root() -> PathBuf {
    std::env::var_os("NEOPRO_CI_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/neopro-ci"))
}

/// `rootfs-<arch>-<hash of the recipe>`.
pub fn cache_dir(arch: &str, host_arch: &str) -> PathBuf {
    let fixup = if arch == host_arch {
        ""
    } else {
        QEMU_USER_FIXUP
    };
    let packages = PACKAGES.join(",");
    let migration = MIGRATION_PACKAGES.join(",") + MIGRATION_SHAPE;
    let hash = fnv1a(&[SUITE, &packages, SHAPE, fixup, &migration]);
    cache_root().join(format!("rootfs-{arch}-{hash:016x}"))
}

/// The mirror apt already uses on this machine (Debian's otherwise).
pub(crate) fn mirror() -> String {
    std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("URIs:").map(|u| u.trim().to_owned()))
        })
        .and_then(|u| u.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_owned())
}

/// Returns the cached root filesystem for `arch`, building it when missing.
pub fn ensure(arch: &str, host_arch: &str) -> anyhow::Result<PathBuf> {
    let dir = cache_dir(arch, host_arch);
    if dir.join(DONE).is_file() {
        eprintln!("root filesystem: cached {}", dir.display());
        return Ok(dir);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing the incomplete {}", dir.display()))?;
    }
    std::fs::create_dir_all(cache_root())?;
    let log = cache_root().join(format!("mmdebstrap-{arch}.log"));
    eprintln!(
        "root filesystem: building {} with mmdebstrap (amd64 ~1 min, arm64 ~4 min; log {})",
        dir.display(),
        log.display()
    );
    let started = std::time::Instant::now();
    let mut cmd = Command::new("mmdebstrap");
    let mut packages = PACKAGES.to_vec();
    packages.extend_from_slice(MIGRATION_PACKAGES);
    cmd.args(["--variant=minbase", &format!("--architectures={arch}")])
        .arg(format!("--include={}", packages.join(",")))
        .arg(format!("--customize-hook={SHAPE}"))
        .arg(format!("--customize-hook={MIGRATION_SHAPE}"));
    if arch != host_arch {
        cmd.arg(format!("--customize-hook={QEMU_USER_FIXUP}"));
    }
    cmd.arg(SUITE).arg(&dir).arg(mirror());
    let out = std::fs::File::create(&log)?;
    cmd.stdout(out.try_clone()?).stderr(out);
    let status = cmd
        .status()
        .context("cannot run mmdebstrap (apt-get install mmdebstrap)")?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        bail!("mmdebstrap failed ({status}); see {}", log.display());
    }
    std::fs::write(dir.join(DONE), "")?;
    eprintln!(
        "root filesystem: built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(dir)
}

/// Checks what booting a foreign architecture needs and says how to get it.
pub fn check_host(arch: &str, host_arch: &str) -> anyhow::Result<()> {
    for (tool, package) in [
        ("systemd-nspawn", "systemd-container"),
        ("mmdebstrap", "mmdebstrap"),
        ("nsenter", "util-linux"),
    ] {
        if !Path::new("/usr/bin").join(tool).exists() && !Path::new("/bin").join(tool).exists() {
            bail!("{tool} is missing: apt-get install {package}");
        }
    }
    if arch != host_arch {
        let entry = match arch {
            "arm64" => "qemu-aarch64",
            "armhf" => "qemu-arm",
            other => bail!("no qemu-user binfmt entry known for {other}"),
        };
        let path = Path::new("/proc/sys/fs/binfmt_misc").join(entry);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let has_f = text
            .lines()
            .any(|l| l.starts_with("flags:") && l.contains('F'));
        if !text.starts_with("enabled") || !has_f {
            bail!(
                "{} is missing, disabled or without the F flag: apt-get install \
                 qemu-user-static binfmt-support, then update-binfmts --enable {entry}",
                path.display()
            );
        }
        with_credentials(&path, &text)?;
    }
    Ok(())
}

/// The migration scenario's Node agent runs `sudo` (setuid root), which
/// under qemu-user gets root only when the binfmt entry has the C flag
/// (the kernel takes the credentials from the binary, not from qemu):
/// Debian registers qemu-user-static without it. Re-registers the entry
/// with it, same magic, mask and interpreter; this test machine then runs
/// setuid foreign binaries as their owner, as a Pi would.
fn with_credentials(path: &Path, text: &str) -> anyhow::Result<()> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .with_context(|| format!("{}: no '{key}' line", path.display()))
    };
    let flags = field("flags:")?;
    if flags.contains('C') {
        return Ok(());
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("binfmt entry name")?;
    let escaped = |hex: &str| -> String {
        hex.as_bytes()
            .chunks(2)
            .map(|pair| format!("\\x{}", String::from_utf8_lossy(pair)))
            .collect()
    };
    let rule = |flags: &str| -> anyhow::Result<String> {
        Ok(format!(
            ":{name}:M:{}:{}:{}:{}:{flags}",
            field("offset ")?,
            escaped(field("magic ")?),
            escaped(field("mask ")?),
            field("interpreter ")?,
        ))
    };
    let (with_c, before) = (rule(&format!("{flags}OC"))?, rule(flags)?);
    let register = "/proc/sys/fs/binfmt_misc/register";
    std::fs::write(path, "-1").with_context(|| format!("removing {}", path.display()))?;
    if let Err(e) = std::fs::write(register, &with_c) {
        // Put the entry back as it was rather than leave none.
        let _ = std::fs::write(register, &before);
        bail!("registering {with_c}: {e}");
    }
    eprintln!("binfmt: {name} registered again with the C flag (setuid binaries such as sudo)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_folder_changes_with_the_recipe_and_the_architecture() {
        let amd = cache_dir("amd64", "amd64");
        let arm = cache_dir("arm64", "amd64");
        assert_ne!(amd, arm);
        assert!(amd.to_string_lossy().contains("rootfs-amd64-"), "{amd:?}");
        assert_ne!(fnv1a(&[SHAPE]), fnv1a(&[SHAPE, "x"]));
        assert_eq!(fnv1a(&["a", "b"]), fnv1a(&["a", "b"]));
        assert_ne!(fnv1a(&["ab", ""]), fnv1a(&["a", "b"]));
    }
}
