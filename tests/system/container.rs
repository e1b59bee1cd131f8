//! A booted Debian under systemd-nspawn on a host whose PID 1 is not
//! systemd: no machined, so `--register=no --keep-unit`, and commands run
//! inside with `nsenter` into the container's PID 1 (the child of nspawn
//! whose name is `systemd`). The container shares the host's network.

use anyhow::{Context, bail};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Duration;

/// What a command inside printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout when the command succeeded, else an error with both streams.
    pub fn ok(self, what: &str) -> anyhow::Result<String> {
        if self.code == 0 {
            Ok(self.stdout)
        } else {
            bail!(
                "{what} exited {}: {} {}",
                self.code,
                self.stdout.trim(),
                self.stderr.trim()
            )
        }
    }

    /// stdout and stderr together, trimmed.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr).trim().to_owned()
    }
}

struct Running {
    nspawn: Child,
    leader: u32,
}

/// One container: a root filesystem and its boots.
pub struct Container {
    root: PathBuf,
    name: String,
    /// Host folder bound read-only at `/mnt/pkg`.
    packages: PathBuf,
    /// Our own cgroup in each hierarchy nspawn touches, so its `payload/`
    /// and `supervisor/` leftovers are ours to remove and parallel
    /// containers do not share them.
    cgroups: Vec<PathBuf>,
    log: PathBuf,
    /// Slowness factor for timeouts (qemu-user is several times slower).
    pub slow: u32,
    running: Mutex<Option<Running>>,
}

/// The hierarchies `systemd-nspawn --keep-unit` creates cgroups in on a
/// cgroup-v1 hybrid host.
const HIERARCHIES: &[&str] = &["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"];

impl Container {
    pub fn new(root: &Path, name: &str, packages: &Path, log: &Path, slow: u32) -> Container {
        let cgroups = HIERARCHIES
            .iter()
            .map(Path::new)
            .filter(|h| h.join("cgroup.procs").exists())
            .map(|h| h.join(format!("neopro-{name}")))
            .collect();
        Container {
            root: root.to_owned(),
            name: name.to_owned(),
            packages: packages.to_owned(),
            cgroups,
            log: log.to_owned(),
            slow,
            running: Mutex::new(None),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn leader(&self) -> anyhow::Result<u32> {
        self.running
            .lock()
            .map_err(|_| anyhow::anyhow!("container state lock poisoned"))?
            .as_ref()
            .map(|r| r.leader)
            .context("the container is not running")
    }

    /// Boots and waits for `systemctl is-system-running --wait`; returns
    /// that state (`running`, or `degraded` with the failed units).
    pub async fn boot(&self) -> anyhow::Result<String> {
        for cg in &self.cgroups {
            std::fs::create_dir_all(cg).with_context(|| format!("creating {}", cg.display()))?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        // The shell only moves itself into our cgroups, then becomes nspawn;
        // every path is an argument, never part of the script.
        let script =
            "for cg in $NEOPRO_CGROUPS; do echo $$ > \"$cg/cgroup.procs\"; done; exec \"$@\"";
        let cgroups: Vec<String> = self
            .cgroups
            .iter()
            .map(|c| c.display().to_string())
            .collect();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg("sh")
            .arg("systemd-nspawn")
            .arg("-D")
            .arg(&self.root)
            .args(["-M", &self.name, "-b", "--register=no", "--keep-unit"])
            .args(["--console=pipe"])
            .arg(format!("--bind-ro={}:/mnt/pkg", self.packages.display()))
            .env("NEOPRO_CGROUPS", cgroups.join(" "))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let nspawn = cmd.spawn().context("cannot start systemd-nspawn")?;
        let nspawn_pid = nspawn.id();
        let mut leader = None;
        for _ in 0..400 {
            leader = child_named(nspawn_pid, "systemd");
            if leader.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let Some(leader) = leader else {
            bail!(
                "systemd-nspawn did not start the container's systemd; see {}",
                self.log.display()
            );
        };
        *self
            .running
            .lock()
            .map_err(|_| anyhow::anyhow!("container state lock poisoned"))? =
            Some(Running { nspawn, leader });
        // Wait until the manager answers at all, then for the boot to end.
        for _ in 0..600 {
            let out = self.exec(&["systemctl", "is-system-running"]).await?;
            if !out.stdout.trim().is_empty() && !out.stdout.contains("offline") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let state = self
            .exec_timeout(
                &["systemctl", "is-system-running", "--wait"],
                Duration::from_secs(180),
            )
            .await?
            .stdout
            .trim()
            .to_owned();
        if state != "running" {
            let failed = self
                .exec(&["systemctl", "--failed", "--no-legend", "--plain"])
                .await?;
            return Ok(format!("{state} ({})", failed.stdout.trim()));
        }
        Ok(state)
    }

    /// Runs `argv` inside as root (30 s × slowness at most).
    pub async fn exec(&self, argv: &[&str]) -> anyhow::Result<Output> {
        self.exec_timeout(argv, Duration::from_secs(30 * u64::from(self.slow)))
            .await
    }

    pub async fn exec_timeout(&self, argv: &[&str], limit: Duration) -> anyhow::Result<Output> {
        self.exec_full(argv, None, limit).await
    }

    /// Runs `argv` inside with `stdin` fed to it; coreutils `timeout`
    /// bounds it (then kills it 5 s later).
    pub async fn exec_full(
        &self,
        argv: &[&str],
        stdin: Option<&str>,
        limit: Duration,
    ) -> anyhow::Result<Output> {
        let leader = self.leader()?.to_string();
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=5", &format!("{}", limit.as_secs().max(1))])
            .args(["nsenter", "-t", &leader, "-a", "--"])
            .args(argv)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C.UTF-8")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let input = stdin.map(str::to_owned);
        let shown = argv.join(" ");
        let out = tokio::task::spawn_blocking(move || -> std::io::Result<std::process::Output> {
            use std::io::Write;
            let mut child = cmd.spawn()?;
            if let (Some(text), Some(mut pipe)) = (input, child.stdin.take()) {
                pipe.write_all(text.as_bytes())?;
            }
            child.wait_with_output()
        })
        .await?
        .context("cannot run nsenter")?;
        if out.status.code() == Some(124) || out.status.code() == Some(137) {
            bail!("`{shown}` did not finish within {limit:?}");
        }
        Ok(Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// A fixed test script run by `sh -c` inside (never built from input).
    pub async fn sh(&self, script: &str) -> anyhow::Result<Output> {
        self.exec(&["sh", "-c", script]).await
    }

    /// Waits for nspawn to exit (the container rebooted or powered off);
    /// returns its exit code (133 = reboot).
    pub async fn wait_exit(&self, limit: Duration) -> anyhow::Result<i32> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            {
                let mut guard = self
                    .running
                    .lock()
                    .map_err(|_| anyhow::anyhow!("container state lock poisoned"))?;
                let Some(running) = guard.as_mut() else {
                    bail!("the container is not running");
                };
                if let Some(status) = running.nspawn.try_wait()? {
                    *guard = None;
                    return Ok(status.code().unwrap_or(-1));
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!(
                        "the container (PID 1 = {}) did not stop within {limit:?}",
                        running.leader
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Powers off (or kills, after 60 s) and removes our cgroups.
    pub async fn shutdown(&self) {
        if self.leader().is_ok() {
            let _ = self.exec(&["systemctl", "poweroff", "--no-block"]).await;
            if self.wait_exit(Duration::from_secs(60)).await.is_err() {
                let taken = self.running.lock().ok().and_then(|mut r| r.take());
                if let Some(mut r) = taken {
                    let _ = r.nspawn.kill();
                    let _ = r.nspawn.wait();
                }
            }
        }
        for cg in &self.cgroups {
            remove_cgroup_tree(cg);
        }
    }
}

impl Drop for Container {
    /// A run that stopped early must not leave a booted container behind.
    fn drop(&mut self) {
        if let Ok(mut guard) = self.running.lock()
            && let Some(mut r) = guard.take()
        {
            let _ = r.nspawn.kill();
            let _ = r.nspawn.wait();
        }
    }
}

/// The child of `parent` whose `comm` is `name`.
fn child_named(parent: u32, name: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if comm == name && ppid == Some(parent) {
            return Some(pid);
        }
    }
    None
}

/// Removes an (empty) cgroup folder tree, deepest first.
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
