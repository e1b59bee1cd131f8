//! Setting up the box a run starts from: the package written into a copy
//! of the image, installed, registered with the central, the agent
//! authenticated, the disk flushed.

use super::campaign::{AUTH_LIMIT, BOOT_LIMIT};
use super::central::{self, Central};
use super::checks::video_entries;
use super::image::Image;
use super::machine::{Disk, Machine};
use super::qga::Qga;
use super::snapshot::Snapshot;
use crate::box_register;
use anyhow::{Context, bail};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A sparse copy of a disk.
pub fn copy_disk(from: &Path, to: &Path) -> anyhow::Result<()> {
    crate::run(Command::new("cp").arg("--sparse=always").arg(from).arg(to))
}

/// Puts a host file into `/root/<name>` of an unmounted ext4 disk.
pub fn inject(disk: &Path, file: &Path, name: &str) -> anyhow::Result<()> {
    let script = disk.with_extension("debugfs");
    std::fs::write(
        &script,
        format!("cd /root\nwrite {} {name}\n", file.display()),
    )?;
    let out = Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&script)
        .arg(disk)
        .output()
        .context("debugfs (apt-get install e2fsprogs)")?;
    let text = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || text.contains("rror") {
        bail!("debugfs could not write {}: {text}", file.display());
    }
    Ok(())
}

/// Installs the package as a club would, registers the box with the
/// central and flushes: the box the campaign starts cutting, still running
/// (its agent authenticated), and the guest agent to it.
pub fn prepare(
    image: &Image,
    disk: &Path,
    dir: &Path,
    central: &mut Central,
) -> anyhow::Result<(Machine, Qga)> {
    let mut machine = Machine::new(image, disk, dir, Disk::Volatile)?;
    let started = Instant::now();
    let mut qga = machine.boot(BOOT_LIMIT)?;
    eprintln!(
        "power-cut: first boot in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let long = Duration::from_secs(600);
    qga.exec(&["dpkg", "-i", "/root/neopro-runtime.deb"], None, long)?
        .ok("dpkg -i")?;
    let url = central.url_from_guest();
    let conf = box_register::site_conf("the power-cut rig", &url);
    qga.exec(
        &[
            "/bin/sh",
            "-c",
            "mkdir -p /etc/neopro && cat > /etc/neopro/site.conf",
        ],
        Some(conf.as_bytes()),
        long,
    )?
    .ok("writing site.conf")?;
    let args = box_register::register_args(
        &url,
        central::ADMIN_EMAIL,
        "Power cut box",
        "Power cut club",
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    qga.exec(
        &args,
        Some(format!("{}\n", central::ADMIN_PASSWORD).as_bytes()),
        long,
    )?
    .ok("neopro-runtime register")?;
    let installed = Instant::now();
    qga.exec(&["neopro-runtime", "install-service"], None, long)?
        .ok("neopro-runtime install-service")?;
    central
        .wait_for(AUTH_LIMIT, |e| e.name == "authenticate" && e.at > installed)
        .context("the installed agent never authenticated")?;
    settle(&mut qga)?;
    // Everything the install wrote is on the disk before the first cut.
    qga.exec(&["sync"], None, long)?;
    eprintln!(
        "power-cut: installed and registered in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok((machine, qga))
}

/// The image's configuration names one video whose expiry date has passed
/// (`videos/Match/but.mp4`, 2020: the shaping script's, for the expiry
/// tests). The agent's first start removes it (the expiry runs at start),
/// possibly after it authenticated: waits for that, so that the first
/// cut's "before" is a settled configuration and not one the expiry is
/// about to change.
fn settle(qga: &mut Qga) -> anyhow::Result<()> {
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let snap = Snapshot::take(qga)?;
        let config: Value = serde_json::from_slice(
            snap.config_text()
                .context("no configuration.json on the box")?,
        )
        .context("configuration.json after the install")?;
        if !video_entries(&config).iter().any(|(p, _)| p == EXPIRED) {
            return Ok(());
        }
        if Instant::now() > end {
            bail!("the agent's start-up expiry did not remove {EXPIRED} within 120 s");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The image's expired video.
const EXPIRED: &str = "videos/Match/but.mp4";
