//! `cargo xtask system-test [--arch amd64|arm64] [--scenario NAME]`: the
//! agent's `.deb` installed on a booted Debian bookworm (real systemd, dbus,
//! polkitd, journald) shaped like a Raspberry Pi box, under systemd-nspawn,
//! against a test central on the host's 127.0.0.1.
//!
//! This task builds the packages and the cached root filesystem; the boot,
//! the central and the scenarios are the `system-test` binary of the e2e
//! crate (`tests/system/`), which shares the test central with the other
//! end-to-end tests.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod rootfs;

/// Debian architecture → Rust target triple.
pub fn triple_of(arch: &str) -> anyhow::Result<&'static str> {
    Ok(match arch {
        "amd64" => "x86_64-unknown-linux-gnu",
        "arm64" => "aarch64-unknown-linux-gnu",
        "armhf" => "armv7-unknown-linux-gnueabihf",
        other => bail!("unknown architecture '{other}' (amd64, arm64 or armhf)"),
    })
}

struct Args {
    arch: String,
    scenarios: Vec<String>,
    /// Only build (or check) the cached root filesystem.
    rootfs_only: bool,
    /// Package the dev build (iterating) instead of the release build.
    dev: bool,
}

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let usage = "usage: cargo xtask system-test [--arch amd64|arm64|armhf] [--scenario NAME]... \
                 [--rootfs-only] [--dev]";
    let host = super::package::deb_arch(&format!("{}-unknown-linux-gnu", std::env::consts::ARCH))?;
    let mut parsed = Args {
        arch: host.to_owned(),
        scenarios: Vec::new(),
        rootfs_only: false,
        dev: false,
    };
    for (flag, value) in super::task_args::flags(args, &["--rootfs-only", "--dev"], usage)? {
        match (flag, value) {
            ("--rootfs-only", _) => parsed.rootfs_only = true,
            ("--dev", _) => parsed.dev = true,
            ("--arch", Some(v)) => parsed.arch = v.to_owned(),
            ("--scenario", Some(v)) => parsed.scenarios.push(v.to_owned()),
            _ => bail!("{usage}"),
        }
    }
    triple_of(&parsed.arch)?;
    Ok(parsed)
}

/// The same package under the next version, for the upgrade scenario
/// (`dpkg-deb -R`, control edited, rebuilt).
fn next_version_deb(deb: &Path, work: &Path) -> anyhow::Result<PathBuf> {
    rebuilt_deb(deb, work, |field, value| {
        (field == "Version").then(|| format!("{value}+systest1"))
    })
}

/// The same package for another architecture (the control file says so;
/// the binary is unchanged): a migration bundle the handover must refuse.
fn other_arch_deb(deb: &Path, work: &Path, arch: &str) -> anyhow::Result<PathBuf> {
    let other = if arch == "armhf" { "arm64" } else { "armhf" };
    rebuilt_deb(deb, work, |field, _| {
        (field == "Architecture").then(|| other.to_owned())
    })
}

/// `deb` unpacked, the control fields `edit` returns a new value for
/// changed, rebuilt under the name its control file gives.
fn rebuilt_deb(
    deb: &Path,
    work: &Path,
    edit: impl Fn(&str, &str) -> Option<String>,
) -> anyhow::Result<PathBuf> {
    let tree = work.join("rebuilt-deb");
    if tree.exists() {
        std::fs::remove_dir_all(&tree)?;
    }
    super::run(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&tree))?;
    let control_path = tree.join("DEBIAN/control");
    let control = std::fs::read_to_string(&control_path)?;
    let mut next = String::new();
    let (mut version, mut arch) = (None, None);
    for line in control.lines() {
        let Some((field, value)) = line.split_once(": ") else {
            next.push_str(line);
            next.push('\n');
            continue;
        };
        let value = edit(field, value).unwrap_or_else(|| value.to_owned());
        match field {
            "Version" => version = Some(value.clone()),
            "Architecture" => arch = Some(value.clone()),
            _ => {}
        }
        next.push_str(&format!("{field}: {value}\n"));
    }
    let version = version.context("the package has no Version field")?;
    let arch = arch.context("the package has no Architecture field")?;
    std::fs::write(&control_path, next)?;
    let out = work.join(format!("{}_{version}_{arch}.deb", super::package::PACKAGE));
    super::package::build_deb(&tree, &out)?;
    std::fs::remove_dir_all(&tree)?;
    Ok(out)
}

/// The migration group's bundles, in `work/bundles/`: `good` (the package
/// under test), `fixed` (the next version: another package, as an operator's
/// fixed bundle), `no-deb` (the package left out) and `other-arch` (a
/// package for another architecture).
fn migration_bundles(work: &Path, deb: &Path, next: &Path, arch: &str) -> anyhow::Result<PathBuf> {
    use super::migration_bundle::{Contents, write_to};
    let dir = work.join("bundles");
    std::fs::create_dir_all(&dir)?;
    let other = other_arch_deb(deb, work, arch)?;
    for (name, package, contents) in [
        ("good", deb, Contents::Complete),
        ("fixed", next, Contents::Complete),
        ("no-deb", deb, Contents::WithoutPackage),
        ("other-arch", other.as_path(), Contents::Complete),
    ] {
        write_to(
            &work.join("bundle-stage"),
            &dir.join(format!("{name}.tar.gz")),
            package,
            contents,
        )?;
    }
    std::fs::remove_file(&other)?;
    Ok(dir)
}

pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let args = parse(args)?;
    let host = super::package::deb_arch(&format!("{}-unknown-linux-gnu", std::env::consts::ARCH))?;
    super::task_args::require_root("system-test", "systemd-nspawn, nsenter, mmdebstrap")?;
    rootfs::check_host(&args.arch, host)?;
    if args.rootfs_only {
        return rootfs::ensure(&args.arch, host).map(|_| ());
    }
    let started = std::time::Instant::now();
    let triple = triple_of(&args.arch)?;
    let profile = if args.dev {
        super::Profile::Dev
    } else {
        super::Profile::Release
    };
    let deb = super::build_package(
        root,
        (args.arch != host).then(|| triple.to_owned()),
        profile,
    )?;
    let work = super::target_dir(root).join("system-test").join(&args.arch);
    std::fs::create_dir_all(&work)?;
    let next = next_version_deb(&deb, &work)?;
    let cached = rootfs::ensure(&args.arch, host)?;
    eprintln!(
        "packages and root filesystem ready in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    // The runner is a binary of the e2e crate, built by `cargo test
    // --no-run` as `cargo xtask test` builds it (same features: nothing is
    // rebuilt after the test suite), then started directly.
    super::run(super::cargo().current_dir(root).args(["test", "--no-run"]))?;
    let mut cmd = Command::new(super::target_dir(root).join("debug/system-test"));
    cmd.current_dir(root)
        .arg("--arch")
        .arg(&args.arch)
        .arg("--deb")
        .arg(&deb)
        .arg("--next-deb")
        .arg(&next)
        .arg("--rootfs")
        .arg(&cached)
        .arg("--work")
        .arg(&work);
    {
        // The migration group: the bundles the Node.js agent installs, and
        // the stand-in of that agent with its socket.io client.
        let bundles = migration_bundles(&work, &deb, &next, &args.arch)?;
        let old_agent = root.join("tests/system/old-agent");
        super::run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--prefix"])
                .arg(&old_agent),
        )?;
        cmd.arg("--bundles")
            .arg(&bundles)
            .arg("--old-agent")
            .arg(&old_agent);
    }
    if args.dev {
        cmd.arg("--dev-build");
    }
    for s in &args.scenarios {
        cmd.arg("--scenario").arg(s);
    }
    super::run(&mut cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() -> anyhow::Result<()> {
        let a = parse(&[
            "--arch".into(),
            "arm64".into(),
            "--scenario".into(),
            "reboot".into(),
        ])?;
        assert_eq!(a.arch, "arm64");
        assert_eq!(a.scenarios, ["reboot"]);
        assert!(parse(&["--arch".into(), "sparc".into()]).is_err());
        assert!(parse(&["--arch".into()]).is_err());
        assert_eq!(triple_of("armhf")?, "armv7-unknown-linux-gnueabihf");
        Ok(())
    }
}
