//! The power-cut rig's disk image: the system tests' box (the same
//! packages and the same shaping script: user `pi`, the NEOPRO folders, a
//! realistic configuration.json, stand-in `neopro-app` / `neopro-admin`
//! units) plus what a whole machine needs to boot in the emulator (a
//! kernel, its initramfs, DHCP on the virtual network card, the guest agent
//! the rig drives it through). A raw ext4 filesystem without partition
//! table (`root=/dev/vda`), made with `mkfs.ext4 -d` from the mmdebstrap
//! tree (no loop mount), and the kernel and initramfs beside it for a
//! direct boot.
//!
//! Cached outside the clone in `$NEOPRO_CI_CACHE/power-cut-<hash of this
//! recipe>` (`/var/cache/neopro-ci` by default), rebuilt when missing or
//! when the recipe changes; the agent's package is not part of it (it is
//! installed into a copy at every run).

use crate::system_test::rootfs;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the emulated machine needs beyond the box's packages.
const MACHINE_PACKAGES: &[&str] = &[
    "linux-image-amd64",
    "initramfs-tools",
    "zstd",
    "kmod",
    "udev",
    "qemu-guest-agent",
    "e2fsprogs",
    "util-linux",
    "iproute2",
    "procps",
];

/// The machine's own shaping, after the box's: the root filesystem from
/// the kernel's command line, DHCP from qemu's user network (the host's
/// 127.0.0.1 is 10.0.2.2 there), `noatime` as Raspberry Pi OS mounts its
/// card.
const MACHINE_SHAPE: &str = r#"set -eu
R="$1"
printf '/dev/vda / ext4 defaults,noatime 0 1\n' > "$R/etc/fstab"
mkdir -p "$R/etc/systemd/network"
printf '[Match]\nName=en* eth*\n[Network]\nDHCP=ipv4\n' > "$R/etc/systemd/network/20-wired.network"
chroot "$R" systemctl enable systemd-networkd.service
# Nothing waits for the network at boot (the agent retries by itself).
chroot "$R" systemctl mask systemd-networkd-wait-online.service
# A small initramfs: the virtual disk's driver and ext4, nothing else.
# Debian's (30 MB, every driver) took 6 s of each boot to unpack under
# emulation, and the rig boots after every cut.
printf 'MODULES=list\n' > "$R/etc/initramfs-tools/conf.d/neopro-power-cut.conf"
printf 'virtio_pci\nvirtio_blk\ncrc32c_generic\next4\n' >> "$R/etc/initramfs-tools/modules"
chroot "$R" update-initramfs -u -k all
"#;

/// Size of the (sparse) disk.
const DISK_SIZE: &str = "2G";

/// Written last: an interrupted build is started again.
const DONE: &str = ".neopro-power-cut-image-complete";

/// The cached image: a raw ext4 disk, the kernel and the initramfs.
pub struct Image {
    pub disk: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// `power-cut-<hash>`: the hash covers the box's recipe and the machine's.
pub fn cache_dir() -> PathBuf {
    let box_packages = rootfs::PACKAGES.join(",");
    let machine_packages = MACHINE_PACKAGES.join(",");
    let hash = rootfs::fnv1a(&[
        rootfs::SUITE,
        &box_packages,
        rootfs::SHAPE,
        &machine_packages,
        MACHINE_SHAPE,
        DISK_SIZE,
    ]);
    rootfs::cache_root().join(format!("power-cut-{hash:016x}"))
}

fn image_in(dir: &Path) -> Image {
    Image {
        disk: dir.join("rootfs.img"),
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
    }
}

/// The cached image, built first when missing.
pub fn ensure() -> anyhow::Result<Image> {
    let dir = cache_dir();
    if dir.join(DONE).is_file() {
        eprintln!("power-cut image: cached {}", dir.display());
        return Ok(image_in(&dir));
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing the incomplete {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let tree = dir.join("tree");
    let log = dir.join("build.log");
    eprintln!(
        "power-cut image: building {} (mmdebstrap, then mkfs.ext4 -d; log {})",
        dir.display(),
        log.display()
    );
    let started = std::time::Instant::now();
    let mut packages = rootfs::PACKAGES.to_vec();
    packages.extend_from_slice(MACHINE_PACKAGES);
    let out = std::fs::File::create(&log)?;
    let status = Command::new("nice")
        .args([
            "-n",
            "19",
            "mmdebstrap",
            "--variant=minbase",
            "--architectures=amd64",
        ])
        .arg(format!("--include={}", packages.join(",")))
        .arg("--aptopt=APT::Install-Recommends \"false\"")
        .arg("--dpkgopt=path-exclude=/usr/share/man/*")
        .arg("--dpkgopt=path-exclude=/usr/share/doc/*")
        .arg("--dpkgopt=path-exclude=/usr/share/locale/*")
        .arg(format!("--customize-hook={}", rootfs::SHAPE))
        .arg(format!("--customize-hook={MACHINE_SHAPE}"))
        .arg(rootfs::SUITE)
        .arg(&tree)
        .arg(rootfs::mirror())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .context("cannot run mmdebstrap (apt-get install mmdebstrap)")?;
    if !status.success() {
        bail!("mmdebstrap failed ({status}); see {}", log.display());
    }
    let image = image_in(&dir);
    copy_boot_file(&tree, "vmlinuz-", &image.kernel)?;
    copy_boot_file(&tree, "initrd.img-", &image.initrd)?;
    crate::run(
        Command::new("truncate")
            .args(["-s", DISK_SIZE])
            .arg(&image.disk),
    )?;
    crate::run(
        Command::new("nice")
            .args(["-n", "19", "mkfs.ext4", "-q", "-L", "root", "-d"])
            .arg(&tree)
            .arg(&image.disk),
    )?;
    std::fs::remove_dir_all(&tree)?;
    std::fs::write(dir.join(DONE), "")?;
    eprintln!(
        "power-cut image: built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(image)
}

/// `/boot/<prefix><version>` of the tree (there is one kernel).
fn copy_boot_file(tree: &Path, prefix: &str, to: &Path) -> anyhow::Result<()> {
    let found = std::fs::read_dir(tree.join("boot"))?
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .with_context(|| format!("no /boot/{prefix}* in the image"))?;
    std::fs::copy(found.path(), to)?;
    Ok(())
}

/// Checks the host tools the rig needs and says how to get them.
/// `image_only`: what building the image needs, not what booting it does.
pub fn check_host(image_only: bool) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    let mut tools = vec![("mmdebstrap", "mmdebstrap"), ("mkfs.ext4", "e2fsprogs")];
    if !image_only {
        tools.extend([
            ("qemu-system-x86_64", "qemu-system-x86"),
            ("nbdkit", "nbdkit"),
            ("debugfs", "e2fsprogs"),
        ]);
    }
    for (tool, package) in tools {
        let found = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(tool).exists());
        if !found {
            missing.push(package);
        }
    }
    if !missing.is_empty() {
        missing.dedup();
        bail!(
            "the power-cut rig needs {}: apt-get install {} (qemu from bookworm-backports when \
             the installed qemu-utils comes from there; docs/power-cuts.md)",
            missing.join(", "),
            missing.join(" ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_folder_is_keyed_by_the_recipe() {
        let dir = cache_dir();
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        assert!(
            name.as_deref()
                .is_some_and(|n| n.starts_with("power-cut-") && n.len() == 26),
            "{dir:?}"
        );
        assert_ne!(
            rootfs::fnv1a(&[MACHINE_SHAPE]),
            rootfs::fnv1a(&[MACHINE_SHAPE, "x"])
        );
    }
}
