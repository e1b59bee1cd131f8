//! `cargo xtask system-test [--arch amd64|arm64|armhf]... [--scenario NAME]`:
//! the agent's `.deb` installed on a booted Debian bookworm (real systemd,
//! dbus, polkitd, journald) shaped like a Raspberry Pi box, under
//! systemd-nspawn, against a test central on the host's 127.0.0.1.
//!
//! This task builds the packages and the cached root filesystem; the boot,
//! the central and the scenarios are the `system-test` binary of the e2e
//! crate (`tests/system/`), which shares the test central with the other
//! end-to-end tests.
//!
//! Several `--arch` run side by side once their packages are built: each
//! box is its own container, cgroup, work folder and test central, and the
//! emulated ones mostly wait (on qemu-user, on the Node.js agent, on
//! deadlines), so two of them take little longer than the slower one. Each
//! runner's output goes to `WORK/runner.log`, printed whole when it ends.

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
    /// In the order given; the host's architecture when none is.
    archs: Vec<String>,
    scenarios: Vec<String>,
    /// Only build (or check) the cached root filesystem.
    rootfs_only: bool,
    /// Package the dev build (iterating) instead of the release build.
    dev: bool,
}

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let usage = "usage: cargo xtask system-test [--arch amd64|arm64|armhf]... [--scenario NAME]... \
                 [--rootfs-only] [--dev]";
    let host = super::package::deb_arch(&format!("{}-unknown-linux-gnu", std::env::consts::ARCH))?;
    let mut parsed = Args {
        archs: Vec::new(),
        scenarios: Vec::new(),
        rootfs_only: false,
        dev: false,
    };
    for (flag, value) in super::task_args::flags(args, &["--rootfs-only", "--dev"], usage)? {
        match (flag, value) {
            ("--rootfs-only", _) => parsed.rootfs_only = true,
            ("--dev", _) => parsed.dev = true,
            ("--arch", Some(v)) if !parsed.archs.iter().any(|a| a == v) => {
                parsed.archs.push(v.to_owned())
            }
            ("--arch", Some(v)) => bail!("--arch {v} given twice"),
            ("--scenario", Some(v)) => parsed.scenarios.push(v.to_owned()),
            _ => bail!("{usage}"),
        }
    }
    if parsed.archs.is_empty() {
        parsed.archs.push(host.to_owned());
    }
    for arch in &parsed.archs {
        triple_of(arch)?;
    }
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
    super::package::build_test_deb(&tree, &out)?;
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
    for arch in &args.archs {
        rootfs::check_host(arch, host)?;
    }
    if args.rootfs_only {
        for arch in &args.archs {
            rootfs::ensure(arch, host)?;
        }
        return Ok(());
    }
    // The stand-in of the Node.js agent with its socket.io client, for the
    // migration group: installed once, before any runner reads it.
    let old_agent = root.join("tests/system/old-agent");
    super::run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&old_agent),
    )?;
    let mut runners = Vec::new();
    for arch in &args.archs {
        runners.push(prepare(root, &args, arch, host, &old_agent)?);
    }
    match runners.as_mut_slice() {
        [one] => super::run(&mut one.cmd),
        _ => side_by_side(runners),
    }
}

/// One architecture's runner, ready to start.
struct Runner {
    arch: String,
    work: PathBuf,
    cmd: Command,
}

/// Builds the packages, the bundles and the root filesystem for `arch`; the
/// returned command runs its scenarios.
fn prepare(
    root: &Path,
    args: &Args,
    arch: &str,
    host: &str,
    old_agent: &Path,
) -> anyhow::Result<Runner> {
    let started = std::time::Instant::now();
    let triple = triple_of(arch)?;
    let profile = if args.dev {
        super::Profile::Dev
    } else {
        super::Profile::Release
    };
    let deb = super::build_package(root, (arch != host).then(|| triple.to_owned()), profile)?;
    let work = super::target_dir(root).join("system-test").join(arch);
    std::fs::create_dir_all(&work)?;
    let next = next_version_deb(&deb, &work)?;
    let cached = rootfs::ensure(arch, host)?;
    eprintln!(
        "{arch}: packages and root filesystem ready in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    // The runner is a binary of the e2e crate, built by `cargo test
    // --no-run` as `cargo xtask test` builds it (same features: nothing is
    // rebuilt after the test suite), then started directly.
    super::run(super::cargo().current_dir(root).args(["test", "--no-run"]))?;
    let mut cmd = Command::new(super::target_dir(root).join("debug/system-test"));
    cmd.current_dir(root)
        .arg("--arch")
        .arg(arch)
        .arg("--deb")
        .arg(&deb)
        .arg("--next-deb")
        .arg(&next)
        .arg("--rootfs")
        .arg(&cached)
        .arg("--work")
        .arg(&work);
    // The migration group: the bundles the Node.js agent installs.
    let bundles = migration_bundles(&work, &deb, &next, arch)?;
    cmd.arg("--bundles")
        .arg(&bundles)
        .arg("--old-agent")
        .arg(old_agent);
    if args.dev {
        cmd.arg("--dev-build");
    }
    for s in &args.scenarios {
        cmd.arg("--scenario").arg(s);
    }
    Ok(Runner {
        arch: arch.to_owned(),
        work,
        cmd,
    })
}

/// Starts every runner at once, each writing to `WORK/runner.log`; waits for
/// all, prints each log whole in the order given, and fails naming every
/// architecture whose runner failed.
fn side_by_side(runners: Vec<Runner>) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut running: Vec<(String, PathBuf, std::process::Child)> = Vec::new();
    for mut r in runners {
        let log_path = r.work.join("runner.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        r.cmd.stdout(log.try_clone()?).stderr(log);
        eprintln!("+ {:?} > {}", r.cmd, log_path.display());
        let child = match r.cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                // The runners already started would boot their boxes for
                // nothing and hold their containers: stopped first.
                for (_, _, mut started) in running {
                    let _ = started.kill();
                    let _ = started.wait();
                }
                return Err(e).with_context(|| format!("cannot start {:?}", r.cmd));
            }
        };
        running.push((r.arch, log_path, child));
    }
    let mut failed = Vec::new();
    for (arch, log_path, mut child) in running {
        let status = child.wait()?;
        let output = std::fs::read_to_string(&log_path)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", log_path.display()));
        eprintln!(
            "=== system test {arch}: {status}, ended {:.0} s after the start; its output:\n{output}",
            started.elapsed().as_secs_f64()
        );
        if !status.success() {
            failed.push(arch);
        }
    }
    if !failed.is_empty() {
        bail!("system test failed on {}", failed.join(", "));
    }
    Ok(())
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
        assert_eq!(a.archs, ["arm64"]);
        assert_eq!(a.scenarios, ["reboot"]);
        assert!(parse(&["--arch".into(), "sparc".into()]).is_err());
        let both = parse(&["--arch", "arm64", "--arch", "armhf"].map(String::from))?;
        assert_eq!(both.archs, ["arm64", "armhf"]);
        let twice = parse(&["--arch", "arm64", "--arch", "arm64"].map(String::from));
        assert!(twice.is_err_and(|e| e.to_string() == "--arch arm64 given twice"));
        assert_eq!(parse(&[])?.archs.len(), 1);
        assert!(parse(&["--arch".into()]).is_err());
        assert_eq!(triple_of("armhf")?, "armv7-unknown-linux-gnueabihf");
        Ok(())
    }
}
