//! Health and identity of the box, read from /proc, /sys and NEOPRO_ROOT.
//!
//! The same numbers feed the heartbeat and the `system` host interface.
//! Memory use is computed from MemAvailable: upstream used MemTotal − MemFree,
//! which counts the page cache as used and makes a healthy Pi look full.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Live health numbers, rounded to one decimal like upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub cpu: f64,
    pub memory: f64,
    pub temperature: f64,
    pub disk: f64,
    pub uptime: u64,
    pub local_ip: Option<String>,
}

/// One network interface.
#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    pub name: String,
    pub ip4: Option<String>,
    pub ip6: Option<String>,
    pub mac: Option<String>,
    /// `wired`, `wireless`, `loopback` or `virtual`.
    pub kind: &'static str,
}

/// Static description of the box.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemInfo {
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub kernel: Option<String>,
    pub architecture: String,
    pub cpu_model: Option<String>,
    pub cpu_cores: Option<u32>,
    pub cpu_speed_mhz: Option<u64>,
    pub total_memory: Option<u64>,
    pub interfaces: Vec<Interface>,
    pub active_connections: Option<u32>,
    pub raspberry_revision: Option<String>,
    pub raspberry_serial: Option<String>,
    pub model: Option<String>,
}

/// The installed NEOPRO version (§7.3 of the protocol notes).
#[derive(Debug, Clone, PartialEq)]
pub struct VersionInfo {
    pub version: String,
    pub commit: Option<String>,
    pub build_date: Option<String>,
    pub source: String,
}

#[derive(Debug, Clone, Copy)]
struct CpuSample {
    busy: u64,
    total: u64,
}

/// Reads the box's state. Keeps the previous CPU sample so that each reading
/// covers the time since the last one (the heartbeat interval).
#[derive(Debug)]
pub struct SystemProbe {
    proc_root: PathBuf,
    sys_root: PathBuf,
    disk_mount: PathBuf,
    last_cpu: Mutex<Option<CpuSample>>,
}

impl Default for SystemProbe {
    fn default() -> Self {
        Self::new(Path::new("/proc"), Path::new("/sys"), Path::new("/"))
    }
}

fn round1(x: f64) -> f64 {
    if x.is_finite() {
        (x * 10.0).round() / 10.0
    } else {
        0.0
    }
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        round1(part / whole * 100.0)
    } else {
        0.0
    }
}

/// Value of a `Key: value` line of /proc/cpuinfo or /proc/meminfo.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

fn meminfo_kib(text: &str, key: &str) -> Option<u64> {
    field(text, key)?.split_whitespace().next()?.parse().ok()
}

fn parse_cpu(stat: &str) -> Option<CpuSample> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    if values.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values[3] + values.get(4).copied().unwrap_or(0);
    Some(CpuSample {
        busy: total.saturating_sub(idle),
        total,
    })
}

/// Interface kind from its name, the way the dashboard groups them.
fn kind_of(name: &str) -> &'static str {
    if name == "lo" {
        "loopback"
    } else if name.starts_with("eth") || name.starts_with("en") {
        "wired"
    } else if name.starts_with("wlan") || name.starts_with("wl") {
        "wireless"
    } else {
        "virtual"
    }
}

/// Wired IPv4 first, then Wi-Fi, then any non-loopback IPv4 (upstream order).
pub fn primary_ipv4(interfaces: &[Interface]) -> Option<String> {
    let with_ip4 = |kind: Option<&str>| {
        interfaces
            .iter()
            .filter(|i| i.kind != "loopback")
            .filter(|i| kind.is_none_or(|k| i.kind == k))
            .find_map(|i| i.ip4.clone())
    };
    with_ip4(Some("wired"))
        .or_else(|| with_ip4(Some("wireless")))
        .or_else(|| with_ip4(None))
}

impl SystemProbe {
    /// A probe over other roots than `/proc`, `/sys` and `/` (tests).
    pub fn new(proc_root: &Path, sys_root: &Path, disk_mount: &Path) -> Self {
        SystemProbe {
            proc_root: proc_root.to_owned(),
            sys_root: sys_root.to_owned(),
            disk_mount: disk_mount.to_owned(),
            last_cpu: Mutex::new(None),
        }
    }

    fn read_proc(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.proc_root.join(name)).ok()
    }

    /// CPU busy percentage since the previous call (since boot on the first).
    fn cpu(&self) -> f64 {
        let Some(now) = self.read_proc("stat").as_deref().and_then(parse_cpu) else {
            return 0.0;
        };
        let mut last = match self.last_cpu.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let base = last.unwrap_or(CpuSample { busy: 0, total: 0 });
        *last = Some(now);
        let total = now.total.saturating_sub(base.total);
        let busy = now.busy.saturating_sub(base.busy);
        percent(busy as f64, total as f64)
    }

    fn memory(&self) -> f64 {
        let Some(text) = self.read_proc("meminfo") else {
            return 0.0;
        };
        match (
            meminfo_kib(&text, "MemTotal"),
            meminfo_kib(&text, "MemAvailable"),
        ) {
            (Some(total), Some(available)) => {
                percent(total.saturating_sub(available) as f64, total as f64)
            }
            _ => 0.0,
        }
    }

    fn temperature(&self) -> f64 {
        std::fs::read_to_string(self.sys_root.join("class/thermal/thermal_zone0/temp"))
            .ok()
            .and_then(|t| t.trim().parse::<f64>().ok())
            .map(|milli| round1(milli / 1000.0))
            .unwrap_or(0.0)
    }

    /// Use of the filesystem, as `df` computes it (reserved blocks excluded).
    fn disk(&self) -> f64 {
        match rustix::fs::statvfs(&self.disk_mount) {
            Ok(s) => {
                let used = s.f_blocks.saturating_sub(s.f_bfree);
                percent(used as f64, (used + s.f_bavail) as f64)
            }
            Err(_) => 0.0,
        }
    }

    fn uptime(&self) -> u64 {
        self.read_proc("uptime")
            .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
            .map(|secs| secs as u64)
            .unwrap_or(0)
    }

    /// Samples the live metrics; a source that cannot be read gives 0, like upstream.
    pub fn metrics(&self) -> Metrics {
        Metrics {
            cpu: self.cpu(),
            memory: self.memory(),
            temperature: self.temperature(),
            disk: self.disk(),
            uptime: self.uptime(),
            local_ip: primary_ipv4(&interfaces()),
        }
    }

    fn active_connections(&self) -> Option<u32> {
        let mut count = 0u32;
        let mut seen = false;
        for table in ["net/tcp", "net/tcp6"] {
            if let Some(text) = self.read_proc(table) {
                seen = true;
                let established = text
                    .lines()
                    .skip(1)
                    .filter(|l| l.split_whitespace().nth(3) == Some("01"))
                    .count();
                count = count.saturating_add(established as u32);
            }
        }
        seen.then_some(count)
    }

    fn os_release(&self) -> Option<String> {
        let text = std::fs::read_to_string("/etc/os-release").ok()?;
        let value = field_eq(&text, "PRETTY_NAME")?;
        Some(value.trim_matches('"').to_owned())
    }

    fn device_model(&self) -> Option<String> {
        let raw = std::fs::read(self.proc_root.join("device-tree/model")).ok()?;
        let text = String::from_utf8_lossy(&raw)
            .trim_end_matches('\0')
            .trim()
            .to_owned();
        (!text.is_empty()).then_some(text)
    }

    /// Describes the hardware, OS and network.
    pub fn info(&self) -> SystemInfo {
        use sysinfo::{CpuRefreshKind, RefreshKind, System};
        let system = System::new_with_specifics(
            RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing().with_frequency()),
        );
        let cpus = system.cpus();
        let cpuinfo = self.read_proc("cpuinfo").unwrap_or_default();
        let meminfo = self.read_proc("meminfo").unwrap_or_default();
        let cpu_model = cpus
            .first()
            .map(|c| c.brand().trim().to_owned())
            .filter(|b| !b.is_empty())
            .or_else(|| field(&cpuinfo, "model name").map(str::to_owned));
        let device_model = self.device_model();
        let on_raspberry = device_model
            .as_deref()
            .is_some_and(|m| m.starts_with("Raspberry Pi"));
        SystemInfo {
            hostname: System::host_name(),
            os: self.os_release().or_else(System::long_os_version),
            kernel: System::kernel_version(),
            architecture: std::env::consts::ARCH.to_owned(),
            cpu_model,
            cpu_cores: (!cpus.is_empty()).then_some(cpus.len() as u32),
            cpu_speed_mhz: cpus.first().map(|c| c.frequency()).filter(|f| *f > 0),
            total_memory: meminfo_kib(&meminfo, "MemTotal").map(|kib| kib * 1024),
            interfaces: interfaces(),
            active_connections: self.active_connections(),
            raspberry_revision: on_raspberry
                .then(|| field(&cpuinfo, "Revision").map(str::to_owned))
                .flatten(),
            raspberry_serial: on_raspberry
                .then(|| field(&cpuinfo, "Serial").map(str::to_owned))
                .flatten(),
            model: device_model,
        }
    }
}

/// `KEY=value` lookup in an os-release style file.
fn field_eq<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// Network interfaces with their first IPv4 and IPv6 address, sorted by name.
/// The agent's own resident and anonymous memory, in KiB, from a
/// `/proc/<pid>/status` text. Logged hourly: slow growth over months is how
/// device agents fail in the field, and a log line is what an operator has.
pub fn own_memory_kib(status: &str) -> Option<(u64, u64)> {
    Some((
        status_field_kib(status, "VmRSS:")?,
        status_field_kib(status, "RssAnon:")?,
    ))
}

/// One `KEY: <n> kB` field of a `/proc/<pid>/status` text.
pub fn status_field_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
}

pub fn interfaces() -> Vec<Interface> {
    let networks = sysinfo::Networks::new_with_refreshed_list();
    let mut list: Vec<Interface> = networks
        .iter()
        .map(|(name, data)| {
            let addrs: Vec<IpAddr> = data.ip_networks().iter().map(|n| n.addr).collect();
            let mac = data.mac_address().to_string();
            Interface {
                name: name.clone(),
                ip4: addrs.iter().find(|a| a.is_ipv4()).map(|a| a.to_string()),
                ip6: addrs.iter().find(|a| a.is_ipv6()).map(|a| a.to_string()),
                mac: (mac != "00:00:00:00:00:00").then_some(mac),
                kind: kind_of(name),
            }
        })
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list
}

/// Most bytes read from one of the web app's version files (a real one is
/// well under 1 KiB; package.json a few KiB).
pub const MAX_VERSION_FILE_BYTES: u64 = 64 << 10;

/// The text of one of the web app's version files, or `None` when it is
/// missing, too big, not UTF-8, or not a regular file: the folder is the web
/// app user's, so a link or a FIFO there is skipped, never followed or
/// waited on (see [`crate::store::untrusted_file`]).
fn version_file(path: &Path) -> Option<String> {
    let bytes = crate::store::untrusted_file::read_bounded(path, MAX_VERSION_FILE_BYTES)
        .map_err(|e| {
            if !matches!(
                e,
                crate::store::untrusted_file::UntrustedFileError::NotFound(_)
            ) {
                tracing::debug!("version file skipped: {e}");
            }
        })
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The installed NEOPRO version: release.json, webapp/version.json, VERSION,
/// webapp/package.json; the first that names a version wins. Unreadable or
/// invalid files are skipped, as upstream; so are links, FIFOs and files
/// over [`MAX_VERSION_FILE_BYTES`].
pub fn version_info(neopro_root: &Path) -> VersionInfo {
    let mut info = VersionInfo {
        version: "unknown".to_owned(),
        commit: None,
        build_date: None,
        source: "unknown".to_owned(),
    };
    let json = |rel: &str| -> Option<serde_json::Value> {
        let text = version_file(&neopro_root.join(rel))?;
        serde_json::from_str(&text).ok()
    };
    let text_of = |v: &serde_json::Value, key: &str| -> Option<String> {
        v.get(key)?
            .as_str()
            .map(str::to_owned)
            .filter(|s| !s.is_empty())
    };
    if let Some(release) = json("release.json") {
        info.commit = text_of(&release, "commit");
        info.build_date = text_of(&release, "buildDate");
        info.source = text_of(&release, "source").unwrap_or_else(|| "release.json".to_owned());
        if let Some(v) = text_of(&release, "version") {
            info.version = v;
            return info;
        }
    }
    if let Some(webapp) = json("webapp/version.json")
        && let Some(v) = text_of(&webapp, "version")
    {
        info.version = v;
        info.commit = info.commit.or_else(|| text_of(&webapp, "commit"));
        info.build_date = info.build_date.or_else(|| text_of(&webapp, "buildDate"));
        info.source =
            text_of(&webapp, "source").unwrap_or_else(|| "webapp/version.json".to_owned());
        return info;
    }
    if let Some(text) = version_file(&neopro_root.join("VERSION")) {
        let v = text.trim();
        if !v.is_empty() {
            info.version = v.to_owned();
            info.source = "VERSION".to_owned();
            return info;
        }
    }
    if let Some(package) = json("webapp/package.json")
        && let Some(v) = text_of(&package, "version")
    {
        info.version = v;
        info.source = "webapp/package.json".to_owned();
    }
    info
}

#[cfg(test)]
mod tests;
