//! `system-test`: the scenarios of `cargo xtask system-test` (which builds
//! the packages and the cached root filesystem and starts this). A fresh
//! copy of the root filesystem is booted with systemd-nspawn, the agent's
//! `.deb` installed in it, and every scenario group run against a test
//! central on 127.0.0.1 (the container shares the host's network).
//!
//! Usage: system-test --arch A --deb D --next-deb D2 --rootfs CACHED
//!        --work DIR [--scenario NAME]... [--bundles DIR --old-agent DIR]
//! Logs: DIR/logs/ (report.txt, journal.txt, agent-journal.txt, nspawn.log).

mod container;
mod report;
mod scenarios;

use anyhow::{Context, bail};
use neopro_e2e::central::Central;
use scenarios::Ctx;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

struct Args {
    arch: String,
    deb: PathBuf,
    next_deb: PathBuf,
    rootfs: PathBuf,
    work: PathBuf,
    scenarios: Vec<String>,
    /// The migration bundles (for the box's architecture: `good.tar.gz`,
    /// `fixed.tar.gz`, `no-deb.tar.gz`, `other-arch.tar.gz`) and the
    /// Node.js agent stand-in they move the box from.
    bundles: Option<PathBuf>,
    old_agent: Option<PathBuf>,
    /// The package holds the dev build (`system-test --dev`).
    dev_build: bool,
}

fn parse() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let (mut arch, mut deb, mut next, mut rootfs, mut work) = (None, None, None, None, None);
    let mut scenarios = Vec::new();
    let (mut bundles, mut old_agent) = (None, None);
    let mut dev_build = false;
    while let Some(flag) = args.next() {
        if flag == "--dev-build" {
            dev_build = true;
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--arch" => arch = Some(value),
            "--deb" => deb = Some(PathBuf::from(value)),
            "--next-deb" => next = Some(PathBuf::from(value)),
            "--rootfs" => rootfs = Some(PathBuf::from(value)),
            "--work" => work = Some(PathBuf::from(value)),
            "--scenario" => scenarios.push(value),
            "--bundles" => bundles = Some(PathBuf::from(value)),
            "--old-agent" => old_agent = Some(PathBuf::from(value)),
            other => bail!("unknown option {other}"),
        }
    }
    for s in &scenarios {
        if s != "install" && !scenarios::GROUPS.contains(&s.as_str()) {
            bail!(
                "unknown scenario '{s}': install, {}",
                scenarios::GROUPS.join(", ")
            );
        }
    }
    Ok(Args {
        arch: arch.context("--arch")?,
        deb: deb.context("--deb")?,
        next_deb: next.context("--next-deb")?,
        rootfs: rootfs.context("--rootfs")?,
        work: work.context("--work")?,
        scenarios,
        bundles,
        old_agent,
        dev_build,
    })
}

/// What qemu-user cannot do for the agent's unit, reset by a drop-in in
/// the fresh copy (a Pi runs the unit as shipped): it cannot make an IPC
/// namespace (`PrivateIPC=`: 226/NAMESPACE, EIO), and seccomp would filter
/// qemu's own host system calls, not the guest's (`SystemCallFilter=` is
/// checked on amd64: the seccomp group).
fn qemu_user_dropin(rootfs: &std::path::Path) -> anyhow::Result<()> {
    let dir = rootfs.join("etc/systemd/system/neopro-runtime.service.d");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("qemu-user.conf"),
        "# system test under qemu-user only\n[Service]\nPrivateIPC=no\nSystemCallFilter=\n",
    )?;
    Ok(())
}

fn run_host(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// A fresh copy of the cached root filesystem (the cache is never booted).
fn fresh_copy(cached: &Path, to: &Path) -> anyhow::Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to).with_context(|| format!("removing {}", to.display()))?;
    }
    run_host(
        Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(cached)
            .arg(to),
    )
}

/// The container's journal as text, read from the host.
fn save_journal(rootfs: &Path, logs: &Path) {
    let journal = rootfs.join("var/log/journal");
    for (file, extra) in [
        ("journal.txt", &[][..]),
        ("agent-journal.txt", &["-u", "neopro-runtime.service"][..]),
    ] {
        let out = Command::new("journalctl")
            .arg("-D")
            .arg(&journal)
            .args(["--no-pager", "-o", "short-monotonic"])
            .args(extra)
            .output();
        if let Ok(out) = out {
            let _ = std::fs::write(logs.join(file), out.stdout);
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("system-test: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run() -> anyhow::Result<bool> {
    let args = parse()?;
    let logs = args.work.join("logs");
    if logs.exists() {
        std::fs::remove_dir_all(&logs)?;
    }
    std::fs::create_dir_all(&logs)?;
    let report = report::Report::new(&logs.join("report.txt"));
    let rootfs = args.work.join("rootfs");
    let packages = args.work.join("pkg");
    std::fs::create_dir_all(&packages)?;
    let mut debs = Vec::new();
    for deb in [&args.deb, &args.next_deb] {
        let name = deb.file_name().context("package name")?;
        std::fs::copy(deb, packages.join(name))?;
        debs.push(packages.join(name));
    }
    let host_arch = if cfg!(target_arch = "x86_64") {
        "amd64"
    } else {
        "arm64"
    };
    // qemu-user runs the whole foreign system several times slower.
    let slow = if args.arch == host_arch { 1 } else { 4 };

    report.section(&format!(
        "system test on {} (Debian bookworm, systemd-nspawn)",
        args.arch
    ));
    let copied = report
        .check("fresh copy of the cached root filesystem", async {
            fresh_copy(&args.rootfs, &rootfs)?;
            Ok(format!("{} → {}", args.rootfs.display(), rootfs.display()))
        })
        .await;
    if !copied {
        return Ok(report.finish());
    }
    if args.arch != host_arch {
        qemu_user_dropin(&rootfs)?;
    }
    // Engine.IO pings with room: a box under qemu-user (and the Node agent
    // of the migration above all, whose update blocks its event loop in
    // child processes) can stall for a second, and the short test timings
    // would close its link with a result in flight. The real server allows
    // 25 s + 60 s.
    let central = Arc::new(
        Central::start_timed(
            0,
            &[],
            neopro_e2e::central::Timings {
                ping_interval: std::time::Duration::from_secs(2),
                ping_timeout: std::time::Duration::from_secs(10),
                ..neopro_e2e::central::Timings::TEST
            },
        )
        .await,
    );
    central.api.add_account(
        scenarios::ADMIN_EMAIL,
        scenarios::ADMIN_PASSWORD,
        "admin",
        None,
    );
    let container = container::Container::new(
        &rootfs,
        // One name (and cgroup) per run: two runs at once must not share
        // or remove each other's cgroups.
        &format!("neopro-systest-{}-{}", args.arch, std::process::id()),
        &packages,
        &logs.join("nspawn.log"),
        slow,
    );
    let ctx = Ctx::new(&args.arch, container, central, &debs[0], &debs[1]);
    let booted = report
        .check("boot: systemd reaches running (no failed unit)", async {
            let state = ctx.container.boot().await?;
            if state != "running" {
                bail!("is-system-running: {state}");
            }
            Ok(state)
        })
        .await;
    if booted {
        scenarios::install::run(&ctx, &report).await;
        let emulated = args.arch != host_arch;
        for group in scenarios::GROUPS {
            if !args.scenarios.is_empty() && !args.scenarios.iter().any(|s| s == group) {
                continue;
            }
            if args.scenarios.is_empty() && emulated && !scenarios::EMULATED.contains(group) {
                println!(
                    "== {group}: not run by default on {} (nothing in it depends on the \
                     architecture; the {host_arch} run has it; --scenario {group} runs it here)",
                    args.arch
                );
                continue;
            }
            match *group {
                "files" => scenarios::files::run(&ctx, &report).await,
                "services" => scenarios::services::run(&ctx, &report).await,
                "update" => scenarios::update::run(&ctx, &report).await,
                "selfupdate" if args.arch == host_arch => {
                    scenarios::selfupdate::run(&ctx, &report, args.dev_build).await
                }
                "selfupdate" => println!(
                    "== selfupdate: skipped on {} (runs on the host's architecture)",
                    args.arch
                ),
                "watchdog" => scenarios::watchdog::run(&ctx, &report).await,
                "seccomp" => scenarios::seccomp::run(&ctx, &report, args.arch == host_arch).await,
                "reboot" => scenarios::reboot::run(&ctx, &report).await,
                "package" => scenarios::package::run(&ctx, &report).await,
                "migration" => {
                    let old_agent = args
                        .old_agent
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("tests/system/old-agent"));
                    let every_case = args.arch == host_arch
                        || scenarios::MIGRATION_EVERY_CASE.contains(&args.arch.as_str());
                    scenarios::migration::run(
                        &ctx,
                        &report,
                        args.bundles.as_deref(),
                        &old_agent,
                        every_case,
                    )
                    .await
                }
                _ => {}
            }
        }
    }
    ctx.container.shutdown().await;
    save_journal(&rootfs, &logs);
    let passed = report.finish();
    println!(
        "logs: {} (report.txt, journal.txt, agent-journal.txt, nspawn.log); the booted tree stays in {} until the next run",
        logs.display(),
        rootfs.display()
    );
    Ok(passed)
}
