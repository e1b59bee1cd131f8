//! The agent release `cargo xtask package` writes next to the `.deb`:
//! `dist/neopro-runtime-<version>-<arch>.tar.gz`, an ordinary NEOPRO release
//! for the server's Updates page that the agent recognises and installs as
//! itself (runtime `selfupdate`). Layout, first entry first:
//!
//! - `agent-release.json` `{"kind": "agent-release", "arch", "version"}`;
//! - `bin/neopro-runtime` (the packaged binary, 0755);
//! - `bin/components/` the built-in components, manifests and precompiled
//!   artifacts, as in the `.deb` (found next to the binary when it runs
//!   from its slot);
//! - `neopro-runtime.service`, the unit it was built with (documentation:
//!   the agent never rewrites its own unit).
//!
//! Boxes install an agent release only when it is signed by a key of their
//! UPDATE_TRUSTED_KEYS: with `NEOPRO_RELEASE_KEY=<secret key file>` the
//! archive is sealed and signed (`neopro-runtime component sign-release
//! --embed`): rewritten with a signed manifest of every entry as its first
//! entry, so the upstream Updates page, whose `update_software` carries no
//! signature, can deliver it unchanged; the parameters for a command with a
//! `signature` field are written to `<archive>.json` too.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const MANIFEST: &str = "agent-release.json";
/// The signed manifest `--embed` puts first (runtime `signing::manifest`).
pub const SIGNED_MANIFEST: &str = "neopro-release-manifest.json";

/// What goes into an agent release: the packaged files.
pub struct Packaged<'a> {
    pub version: &'a str,
    /// Debian architecture.
    pub arch: &'a str,
    pub binary: &'a Path,
    /// The package's components folder (precompiled artifacts included).
    pub components: &'a Path,
    pub unit: &'a Path,
}

/// Copies the files of `from` into `to`, one folder level deep (the
/// components and their `precompiled/` folder); returns how many.
fn copy_components(from: &Path, to: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(to)?;
    let mut n = 0;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let path = entry?.path();
        let Some(name) = path.file_name() else {
            continue;
        };
        if path.is_dir() {
            n += copy_components(&path, &to.join(name))?;
        } else if path.is_file() {
            std::fs::copy(&path, to.join(name))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Lays out the release under `stage` (emptied first) from the packaged
/// files, then writes `out` with GNU tar, the manifest first (the agent
/// only looks at the first entry).
pub fn build(packaged: &Packaged, stage: &Path, out: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if stage.exists() {
        std::fs::remove_dir_all(stage)?;
    }
    std::fs::create_dir_all(stage.join("bin"))?;
    let manifest = serde_json::json!({
        "kind": "agent-release",
        "arch": packaged.arch,
        "version": packaged.version,
    });
    std::fs::write(
        stage.join(MANIFEST),
        serde_json::to_string_pretty(&manifest)?,
    )?;
    let bin = stage.join("bin/neopro-runtime");
    std::fs::copy(packaged.binary, &bin)
        .with_context(|| format!("copying {}", packaged.binary.display()))?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    if copy_components(packaged.components, &stage.join("bin/components"))? == 0 {
        bail!("no component in {}", packaged.components.display());
    }
    std::fs::copy(packaged.unit, stage.join("neopro-runtime.service"))?;
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let status = Command::new("tar")
        .arg("-czf")
        .arg(out)
        .args(["--owner=0", "--group=0", "--numeric-owner", "-C"])
        .arg(stage)
        .args([MANIFEST, "bin", "neopro-runtime.service"])
        .status()
        .context("running tar")?;
    if !status.success() {
        bail!("tar failed ({status}) writing {}", out.display());
    }
    // Checked like the .deb: the agent only recognises the manifest first.
    let names = list(out)?;
    if names.first().map(String::as_str) != Some(MANIFEST)
        || !names.iter().any(|n| n == "bin/neopro-runtime")
    {
        bail!(
            "{} is not laid out as an agent release: {names:?}",
            out.display()
        );
    }
    Ok(())
}

/// The names in `archive`, in order.
pub fn list(archive: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new("tar")
        .arg("-tzf")
        .arg(archive)
        .output()
        .context("running tar")?;
    if !out.status.success() {
        bail!("tar -t failed on {}", archive.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").to_owned())
        .collect())
}

/// Signs `archive` with the key file named by NEOPRO_RELEASE_KEY, if set:
/// writes `<archive>.json` (version, checksum, signature) and returns it.
pub fn sign(agent: &Path, archive: &Path, version: &str) -> anyhow::Result<Option<PathBuf>> {
    let Some(key) = std::env::var_os("NEOPRO_RELEASE_KEY") else {
        return Ok(None);
    };
    let out = Command::new(agent)
        .args(["component", "sign-release", "--embed"])
        .arg(archive)
        .args(["--version", version, "--key"])
        .arg(&key)
        .output()
        .context("running neopro-runtime component sign-release")?;
    if !out.status.success() {
        bail!(
            "signing {} failed: {}",
            archive.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let names = list(archive)?;
    if names.first().map(String::as_str) != Some(SIGNED_MANIFEST)
        || names.get(1).map(String::as_str) != Some(MANIFEST)
    {
        bail!(
            "{} is not laid out as a sealed agent release: {names:?}",
            archive.display()
        );
    }
    let params = PathBuf::from(format!("{}.json", archive.display()));
    std::fs::write(&params, &out.stdout)?;
    Ok(Some(params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_comes_first_and_the_binary_is_executable() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let components = dir.path().join("components");
        std::fs::create_dir_all(components.join("precompiled"))?;
        std::fs::write(components.join("precompiled/reboot.cwasm"), b"art")?;
        std::fs::write(components.join("reboot.wasm"), b"\0asm")?;
        std::fs::write(components.join("reboot.toml"), "name = \"reboot\"\n")?;
        let binary = dir.path().join("agent");
        std::fs::write(&binary, b"\x7fELF")?;
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(1)
            .map(Path::to_owned)
            .unwrap_or_default();
        let unit = root.join("config/neopro-runtime.service");
        let packaged = Packaged {
            version: "1.2.3",
            arch: "arm64",
            binary: &binary,
            components: &components,
            unit: &unit,
        };
        let out = dir.path().join("out/neopro-runtime-1.2.3-arm64.tar.gz");
        build(&packaged, &dir.path().join("stage"), &out)?;
        let names = list(&out)?;
        assert_eq!(names.first().map(String::as_str), Some(MANIFEST));
        for name in [
            "bin/neopro-runtime",
            "bin/components/reboot.wasm",
            "bin/components/reboot.toml",
            "bin/components/precompiled/reboot.cwasm",
            "neopro-runtime.service",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("stage").join(MANIFEST))?)?;
        assert_eq!(
            manifest,
            serde_json::json!({"kind": "agent-release", "arch": "arm64", "version": "1.2.3"})
        );
        Ok(())
    }
}
