//! Setting up the box every run starts from: the package written into a
//! copy of the image, installed, registered with the central, the agent
//! authenticated, a clean power-off.

use super::campaign::{AUTH_LIMIT, BOOT_LIMIT};
use super::central::{self, Central};
use super::image::Image;
use super::machine::{Disk, Machine};
use anyhow::{Context, bail};
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
/// central, powers off cleanly: the disk every run starts from.
pub fn prepare(
    image: &Image,
    disk: &Path,
    dir: &Path,
    central: &mut Central,
) -> anyhow::Result<()> {
    let mut machine = Machine::new(image, disk, dir, Disk::Volatile)?;
    let started = Instant::now();
    machine.start()?;
    let mut qga = machine.connect(BOOT_LIMIT)?;
    eprintln!(
        "power-cut: first boot in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let long = Duration::from_secs(600);
    qga.exec(&["dpkg", "-i", "/root/neopro-runtime.deb"], None, long)?
        .ok("dpkg -i")?;
    let conf = format!(
        "# written by the power-cut rig before `register`\nCENTRAL_SERVER_ENABLED=true\n\
         CENTRAL_SERVER_URL={}\nHEARTBEAT_INTERVAL=2000\n",
        central.url_from_guest()
    );
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
    let url = central.url_from_guest();
    qga.exec(
        &[
            "neopro-runtime",
            "register",
            "--server",
            &url,
            "--email",
            central::ADMIN_EMAIL,
            "--password-stdin",
            "--site-name",
            "Power cut box",
            "--club-name",
            "Power cut club",
            "--city",
            "Lyon",
            "--region",
            "Auvergne-Rhône-Alpes",
            "--country",
            "France",
            "--sports",
            "handball",
            "--non-interactive",
        ],
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
    // Its first start compiled the components into the artifact cache;
    // a clean power-off keeps them (and everything else) on the disk.
    qga.exec(&["sync"], None, long)?;
    machine.power_off(Some(&mut qga))?;
    eprintln!(
        "power-cut: installed and registered in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
