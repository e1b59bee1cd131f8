//! `cargo xtask migration-bundle [--target TRIPLE]`: a NEOPRO release that
//! the Node.js sync agent installs through its own `update_software` and
//! that moves the box to neopro-runtime (docs/migration.md).
//!
//! The Node agent extracts a release into NEOPRO_ROOT (`tar -xzf`, skipping
//! videos/, logs/, backups/ and webapp/configuration.json), then restarts
//! itself. The bundle holds only `sync-agent/`: a shim `src/commands.js`
//! (Node loads it before the agent's own `src/commands/` folder, so none of
//! the agent's files is replaced), the handover script, and the release
//! `.deb` (our signed binary and components). Nothing is downloaded or run
//! beyond these.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The handover, run as root by the shim (`config/migration/handover.sh`).
const HANDOVER: &str = include_str!("../../config/migration/handover.sh");
/// The shim the restarted Node agent loads (`config/migration/commands.js`).
const SHIM: &str = include_str!("../../config/migration/commands.js");

/// Parses `[--target TRIPLE]`.
pub fn parse(args: &[String]) -> anyhow::Result<Option<String>> {
    match args {
        [] => Ok(None),
        [flag, t] if flag == "--target" => Ok(Some(t.clone())),
        _ => bail!("usage: cargo xtask migration-bundle [--target <triple>]"),
    }
}

/// Writes `dist/neopro-migration-<version>-<arch>.tar.gz` holding `deb`;
/// returns its path.
pub fn write(root: &Path, deb: &Path, version: &str, arch: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(root.join("dist"))?;
    let out = root.join(format!("dist/neopro-migration-{version}-{arch}.tar.gz"));
    let stage = super::target_dir(root).join(format!("migration/{arch}"));
    write_to(&stage, &out, deb, Contents::Complete)?;
    Ok(out)
}

/// What a bundle holds besides the shim and the handover.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Contents {
    /// The package.
    Complete,
    /// Not the package (its name and sha256 are still in the handover): a
    /// broken bundle, for the system test.
    WithoutPackage,
}

/// Writes the bundle of `deb` to `out`, staged in `stage`. The package's
/// file name and sha256 are written into the handover and the shim: the
/// handover installs only that package, and a rollback is recorded for that
/// package only. The archive is reproducible (sorted, root-owned, fixed
/// times) so its sha256 only changes with its contents.
pub fn write_to(stage: &Path, out: &Path, deb: &Path, contents: Contents) -> anyhow::Result<()> {
    let deb_name = deb
        .file_name()
        .and_then(|n| n.to_str())
        .context("the package has no file name")?;
    if !deb_name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._+~-".contains(&b))
    {
        bail!("the package name {deb_name} has characters a shell script cannot quote plainly");
    }
    let deb_sha256 = sha256(deb)?;
    let fill = |text: &str| {
        text.replace("@DEB_NAME@", deb_name)
            .replace("@DEB_SHA256@", &deb_sha256)
    };
    if stage.exists() {
        std::fs::remove_dir_all(stage)?;
    }
    let ours = stage.join("sync-agent/neopro-runtime");
    std::fs::create_dir_all(&ours)?;
    std::fs::create_dir_all(stage.join("sync-agent/src"))?;
    write_file(
        &stage.join("sync-agent/src/commands.js"),
        &fill(SHIM),
        0o644,
    )?;
    write_file(&ours.join("handover.sh"), &fill(HANDOVER), 0o755)?;
    if contents == Contents::Complete {
        std::fs::copy(deb, ours.join(deb_name))
            .with_context(|| format!("copying {}", deb.display()))?;
        set_mode(&ours.join(deb_name), 0o644)?;
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    super::run(
        Command::new("tar")
            .args([
                "--sort=name",
                "--mtime=@0",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
            ])
            .arg("-czf")
            .arg(out)
            .arg("-C")
            .arg(stage)
            .arg("sync-agent"),
    )
}

fn write_file(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    set_mode(path, mode)
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

/// The sha256 of `path`, hex, as the dashboard's release form asks for it.
pub fn sha256(path: &Path) -> anyhow::Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("cannot run sha256sum")?;
    if !out.status.success() {
        bail!("sha256sum {} failed", path.display());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .map(str::to_owned)
        .context("sha256sum printed nothing")
}

#[cfg(test)]
mod handover_tests;
#[cfg(test)]
mod shim_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() -> anyhow::Result<()> {
        assert_eq!(parse(&[])?, None);
        assert_eq!(
            parse(&["--target".into(), "aarch64-unknown-linux-gnu".into()])?,
            Some("aarch64-unknown-linux-gnu".to_owned())
        );
        assert!(parse(&["--arch".into()]).is_err());
        Ok(())
    }

    #[test]
    fn the_bundle_holds_only_the_shim_the_handover_and_the_package() -> anyhow::Result<()> {
        let root = tempfile::tempdir()?;
        let deb = root.path().join("neopro-runtime_9.9.9_amd64.deb");
        std::fs::write(&deb, b"not really a package")?;
        let out = write(root.path(), &deb, "9.9.9", "amd64")?;
        let list = Command::new("tar").arg("-tvzf").arg(&out).output()?;
        let text = String::from_utf8_lossy(&list.stdout);
        let mut files: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with('-'))
            .filter_map(|l| l.split_whitespace().last())
            .collect();
        files.sort_unstable();
        assert_eq!(
            files,
            [
                "sync-agent/neopro-runtime/handover.sh",
                "sync-agent/neopro-runtime/neopro-runtime_9.9.9_amd64.deb",
                "sync-agent/src/commands.js",
            ]
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("-rwxr-xr-x 0/0") && l.ends_with("handover.sh")),
            "{text}"
        );
        // The package's name and sha256 are written into the handover and
        // the shim: what is installed is what the bundle was built with.
        let want = sha256(&deb)?;
        let stage = crate::target_dir(root.path()).join("migration/amd64/sync-agent");
        for file in ["neopro-runtime/handover.sh", "src/commands.js"] {
            let text = std::fs::read_to_string(stage.join(file))?;
            assert!(text.contains(&want), "{file}");
            assert!(!text.contains("@DEB_"), "{file}");
        }
        // Reproducible: the same inputs give the same bytes.
        let first = sha256(&out)?;
        let again = write(root.path(), &deb, "9.9.9", "amd64")?;
        assert_eq!(sha256(&again)?, first);
        Ok(())
    }
}
