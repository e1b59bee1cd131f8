//! The emulated box and its disk: qemu (TCG: this machine's `/dev/kvm`
//! cannot boot a stock kernel) booting the image's kernel directly, its
//! disk served by nbdkit through the cache filter — a volatile write cache
//! that keeps every write until the guest flushes, as an SD card's
//! controller does. A power cut freezes qemu, kills nbdkit (whatever it
//! had not written to the disk file is gone) and kills qemu (the guest's
//! RAM and page cache are gone).
//!
//! The must-fail control serves the disk with `cache=unsafe`: flushes are
//! acknowledged and ignored, a card that lies. Nothing the guest wrote in
//! a boot survives a cut then, and the checks must say so.

use super::image::Image;
use super::qga::Qga;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the disk treats the guest's flushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disk {
    /// Writes are durable once flushed (an honest card).
    Volatile,
    /// Flushes are ignored (the must-fail control).
    Lying,
}

pub struct Machine {
    dir: PathBuf,
    kernel: PathBuf,
    initrd: PathBuf,
    disk_file: PathBuf,
    pub disk: Disk,
    qemu: Option<Child>,
    nbd: Option<Child>,
    boots: u32,
    /// Boots that hung in the emulator and were started again.
    pub hung_boots: u32,
}

impl Machine {
    pub fn new(image: &Image, disk_file: &Path, dir: &Path, disk: Disk) -> anyhow::Result<Machine> {
        std::fs::create_dir_all(dir)?;
        Ok(Machine {
            dir: dir.to_owned(),
            kernel: image.kernel.clone(),
            initrd: image.initrd.clone(),
            disk_file: disk_file.to_owned(),
            disk,
            qemu: None,
            nbd: None,
            boots: 0,
            hung_boots: 0,
        })
    }

    fn nbd_socket(&self) -> PathBuf {
        self.dir.join("nbd.sock")
    }

    fn qga_socket(&self) -> PathBuf {
        self.dir.join("qga.sock")
    }

    /// The serial console of the current boot.
    pub fn console(&self) -> PathBuf {
        self.dir.join(format!("console-{}.log", self.boots))
    }

    /// Powers on: the disk server, then the emulator.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.qemu.is_some() {
            bail!("the machine is already running");
        }
        self.boots += 1;
        for socket in [self.nbd_socket(), self.qga_socket()] {
            let _ = std::fs::remove_file(socket);
        }
        let cache = match self.disk {
            Disk::Volatile => "cache=writeback",
            Disk::Lying => "cache=unsafe",
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("nbdkit.log"))?;
        let nbd = Command::new("nice")
            .args(["-n", &niceness(), "nbdkit", "--foreground", "--unix"])
            .arg(self.nbd_socket())
            .args(["--filter=cache", "file"])
            .arg(&self.disk_file)
            .arg(cache)
            // The filter's cache file: beside the run, not in /tmp (tmpfs).
            .env("TMPDIR", &self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start nbdkit (apt-get install nbdkit)")?;
        self.nbd = Some(nbd);
        let ready = Instant::now() + Duration::from_secs(30);
        while !self.nbd_socket().exists() {
            if Instant::now() > ready {
                bail!(
                    "nbdkit made no socket within 30 s (see {}/nbdkit.log)",
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = std::fs::File::create(self.dir.join(format!("qemu-{}.log", self.boots)))?;
        let drive = format!(
            "file=nbd+unix:///?socket={},if=none,id=d0,format=raw,cache=writeback",
            self.nbd_socket().display()
        );
        let qemu = Command::new("nice")
            .args(["-n", &niceness(), "qemu-system-x86_64", "-machine", "q35"])
            .args([
                "-accel",
                "tcg,thread=multi",
                "-cpu",
                "max",
                "-m",
                "1024",
                "-smp",
                "2",
            ])
            .args(["-display", "none", "-nodefaults", "-no-reboot"])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            // `no_timer_check`: on a loaded host the emulated IO-APIC timer
            // can miss the kernel's early check, which then panics ("IO-APIC
            // + timer doesn't work", seen beside a CI run at load 10).
            .args([
                "-append",
                "root=/dev/vda rw console=ttyS0 quiet no_timer_check",
            ])
            .args(["-drive", &drive, "-device", "virtio-blk-pci,drive=d0"])
            .args([
                "-netdev",
                "user,id=n0",
                "-device",
                "virtio-net-pci,netdev=n0",
            ])
            .arg("-serial")
            .arg(format!("file:{}", self.console().display()))
            .args(["-device", "virtio-serial-pci,id=vser0"])
            .arg("-chardev")
            .arg(format!(
                "socket,id=qga0,path={},server=on,wait=off",
                self.qga_socket().display()
            ))
            .args([
                "-device",
                "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0",
            ])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("cannot start qemu-system-x86_64 (apt-get install qemu-system-x86)")?;
        self.qemu = Some(qemu);
        Ok(())
    }

    /// Powers on and waits for the guest agent (the boot reached
    /// multi-user). A boot whose kernel hangs in the emulator (its timer
    /// interrupts stop under TCG on a loaded host: the console shows RCU
    /// stall reports, nothing else moves) is cut and started again, at
    /// most [`HUNG_RETRIES`] times — for the box, one more power cut
    /// during a boot; counted in `hung_boots`.
    pub fn boot(&mut self, limit: Duration) -> anyhow::Result<Qga> {
        let mut attempt = 0;
        loop {
            self.start()?;
            match self.connect(limit) {
                Ok(qga) => return Ok(qga),
                Err(_) if attempt < HUNG_RETRIES && self.hung() => {
                    attempt += 1;
                    self.hung_boots += 1;
                    eprintln!(
                        "power-cut: boot {} hung in the emulator's kernel ({}); cut and booted again",
                        self.boots,
                        self.console().display()
                    );
                    self.cut()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits for the guest agent; gives up early when the boot hung.
    fn connect(&mut self, limit: Duration) -> anyhow::Result<Qga> {
        let socket = self.qga_socket();
        let deadline = Instant::now() + limit;
        let pid = self.qemu.as_ref().map(Child::id).context("not running")?;
        let console = self.console();
        let alive = move || {
            Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) && !hung_at(&console)
        };
        Qga::connect(&socket, deadline, &alive).with_context(|| {
            format!(
                "boot {} (console: {})",
                self.boots,
                self.console().display()
            )
        })
    }

    /// The current boot's kernel reported a stall twice (≈ 40 s stuck), or panicked.
    fn hung(&self) -> bool {
        hung_at(&self.console())
    }

    /// The power cut: the guest frozen at one instant, the disk's
    /// unflushed writes dropped, the guest's memory dropped.
    pub fn cut(&mut self) -> anyhow::Result<()> {
        if let Some(qemu) = &self.qemu {
            signal(qemu.id(), "STOP")?;
        }
        if let Some(mut nbd) = self.nbd.take() {
            nbd.kill()?;
            nbd.wait()?;
        }
        if let Some(mut qemu) = self.qemu.take() {
            qemu.kill()?;
            qemu.wait()?;
        }
        Ok(())
    }

    /// A clean power-off: the guest syncs and powers off, then the disk
    /// server ends (having written what the guest flushed).
    pub fn power_off(&mut self, qga: Option<&mut Qga>) -> anyhow::Result<()> {
        if let Some(qga) = qga {
            let _ = qga.spawn(&["/bin/systemctl", "poweroff", "--force"]);
        }
        if let Some(mut qemu) = self.qemu.take() {
            let end = Instant::now() + Duration::from_secs(120);
            while matches!(qemu.try_wait(), Ok(None)) {
                if Instant::now() > end {
                    let _ = qemu.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = qemu.wait();
        }
        if let Some(mut nbd) = self.nbd.take() {
            signal(nbd.id(), "TERM")?;
            nbd.wait()?;
        }
        Ok(())
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        for child in [self.qemu.take(), self.nbd.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How often a hung boot is started again before the run gives up.
const HUNG_RETRIES: u32 = 3;

/// Whether the console shows the kernel stuck: two RCU stall reports
/// (the kernel prints one every 21 s while no timer interrupt comes).
fn hung_at(console: &Path) -> bool {
    std::fs::read_to_string(console)
        .map(|text| {
            text.matches("rcu_preempt detected stalls").count() >= 2
                || text.contains("Kernel panic - not syncing")
        })
        .unwrap_or(false)
}

/// How much the emulator and the disk server yield to other work:
/// `NEOPRO_POWER_CUT_NICE` (default 19, so a developer's machine stays
/// usable; 0 to measure what CI, alone on its machine, would see).
fn niceness() -> String {
    std::env::var("NEOPRO_POWER_CUT_NICE")
        .ok()
        .filter(|n| n.parse::<i32>().is_ok_and(|n| (-20..=19).contains(&n)))
        .unwrap_or_else(|| "19".to_owned())
}

fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .context("kill")?;
    if !status.success() {
        bail!("kill -s {name} {pid}: {status}");
    }
    Ok(())
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boot_is_hung_after_two_stall_reports() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let console = dir.path().join("console-1.log");
        assert!(!hung_at(&console), "no console yet");
        let stall = "[   22.247994] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\n";
        std::fs::write(&console, format!("[    1.0] booting\n{stall}"))?;
        assert!(!hung_at(&console), "one report may be a slow host");
        std::fs::write(&console, format!("{stall}[   30.1] x\n{stall}"))?;
        assert!(hung_at(&console));
        // A kernel that panicked in the emulator never boots either.
        std::fs::write(
            &console,
            "[    0.064000] ---[ end Kernel panic - not syncing: IO-APIC + timer doesn't work! ]---\n",
        )?;
        assert!(hung_at(&console));
        Ok(())
    }
}
