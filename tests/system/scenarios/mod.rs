//! The scenario groups, in the order they run, and what they share: the
//! booted box, the test central, and small helpers over both.

use crate::container::{Container, Output};
use anyhow::{Context, bail};
use neopro_e2e::central::Central;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub mod files;
pub mod install;
pub mod migration;
pub mod package;
pub mod reboot;
pub mod seccomp;
pub mod selfupdate;
pub mod services;
pub mod update;
pub mod watchdog;

/// Scenario groups after `install` (always run first: the others need an
/// installed, registered agent). `package` and `migration` remove and
/// reinstall the agent: last.
pub const GROUPS: &[&str] = &[
    "files",
    "services",
    "update",
    "selfupdate",
    "watchdog",
    "seccomp",
    "reboot",
    "package",
    "migration",
];

/// The groups run by default on an architecture emulated with qemu-user:
/// what differs between architectures. `install` (the package and its
/// binary, always run), `files` (the built-in components compiled and run
/// by that architecture's engine: Cranelift on arm64, Pulley with the
/// package's precompiled artifacts on armhf) and `migration` (the bundle's
/// `.deb` chosen and checked for the box's architecture, Node.js there).
/// The others exercise systemd, polkit, dpkg's scripts and the agent's own
/// logic, the same on every architecture, and run natively on the host's;
/// under emulation they only cost CI time (`--scenario NAME` runs one).
pub const EMULATED: &[&str] = &["files", "migration"];

/// The emulated architectures where the migration group runs every case
/// (besides the host's): armhf, the 32-bit Raspberry Pi OS most club boxes
/// still run. On arm64 it runs what depends on the architecture (see
/// `migration.rs`), which saves CI about 135 s of qemu-user (arm64's checks: 258 → 123 s).
pub const MIGRATION_EVERY_CASE: &[&str] = &["armhf"];

/// The NEOPRO root of the box (Raspberry Pi OS layout).
pub const NEOPRO: &str = "/home/pi/neopro";
/// The agent's unit.
pub const AGENT: &str = "neopro-runtime.service";
/// The account the test central accepts for `register`.
pub const ADMIN_EMAIL: &str = "admin@neopro.test";
pub const ADMIN_PASSWORD: &str = "system-test-password";

pub struct Ctx {
    pub arch: String,
    pub container: Container,
    pub central: Arc<Central>,
    /// The package and the same package under the next version, as seen
    /// inside the box.
    pub deb: String,
    pub next_deb: String,
    /// The host path of the package (for `dpkg-deb -f`).
    pub deb_on_host: std::path::PathBuf,
    counter: AtomicU64,
}

impl Ctx {
    pub fn new(
        arch: &str,
        container: Container,
        central: Arc<Central>,
        deb_on_host: &std::path::Path,
        next_deb_on_host: &std::path::Path,
    ) -> Ctx {
        let inside = |p: &std::path::Path| {
            format!(
                "/mnt/pkg/{}",
                p.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            )
        };
        Ctx {
            arch: arch.to_owned(),
            deb: inside(deb_on_host),
            next_deb: inside(next_deb_on_host),
            deb_on_host: deb_on_host.to_owned(),
            container,
            central,
            counter: AtomicU64::new(0),
        }
    }

    /// `base` scaled by the container's slowness (qemu-user).
    pub fn t(&self, secs: u64) -> Duration {
        Duration::from_secs(secs * u64::from(self.container.slow))
    }

    pub async fn exec(&self, argv: &[&str]) -> anyhow::Result<Output> {
        self.container.exec(argv).await
    }

    /// Runs `argv` and returns its stdout, or fails with its output.
    pub async fn ok(&self, argv: &[&str]) -> anyhow::Result<String> {
        self.exec(argv).await?.ok(&argv.join(" "))
    }

    pub async fn sh(&self, script: &str) -> anyhow::Result<Output> {
        self.container.sh(script).await
    }

    /// Runs `argv` inside as `user` (runuser: no password, no session).
    pub async fn as_user(&self, user: &str, argv: &[&str]) -> anyhow::Result<Output> {
        let mut full = vec!["runuser", "-u", user, "--"];
        full.extend_from_slice(argv);
        self.exec(&full).await
    }

    /// `systemctl show -p <prop> --value <unit>`.
    pub async fn prop(&self, unit: &str, prop: &str) -> anyhow::Result<String> {
        Ok(self
            .ok(&["systemctl", "show", "-p", prop, "--value", unit])
            .await?
            .trim()
            .to_owned())
    }

    pub async fn is_active(&self, unit: &str) -> anyhow::Result<String> {
        Ok(self
            .exec(&["systemctl", "is-active", unit])
            .await?
            .stdout
            .trim()
            .to_owned())
    }

    /// Waits until `unit` is `active`; its last state otherwise.
    pub async fn wait_active(&self, unit: &str, limit: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let state = self.is_active(unit).await?;
            if state == "active" {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{unit} is {state} after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The journal of `unit` for this boot.
    pub async fn journal(&self, unit: &str) -> anyhow::Result<String> {
        self.ok(&["journalctl", "-b", "-u", unit, "--no-pager", "-o", "cat"])
            .await
    }

    /// A fresh command id.
    pub fn id(&self, what: &str) -> String {
        format!(
            "systest-{what}-{}",
            self.counter.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// Waits until an agent is authenticated and connected.
    pub async fn wait_connected(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        while self.central.authenticated_sockets() == 0 {
            if tokio::time::Instant::now() >= deadline {
                bail!("no agent authenticated within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Sends a command and returns its `command_result`.
    pub async fn command(
        &self,
        command_type: &str,
        data: Value,
        limit: Duration,
    ) -> anyhow::Result<Value> {
        let id = self.id(command_type);
        self.send(&id, command_type, data).await?;
        self.result(&id, limit).await
    }

    /// Sends a command with a chosen id (waits for a connected agent).
    pub async fn send(&self, id: &str, command_type: &str, data: Value) -> anyhow::Result<()> {
        self.wait_connected(self.t(30)).await?;
        if self.central.send_command(id, command_type, data) == 0 {
            bail!("the command {id} reached no agent");
        }
        Ok(())
    }

    /// The `command_result` of `id`.
    pub async fn result(&self, id: &str, limit: Duration) -> anyhow::Result<Value> {
        let want = json!(id);
        self.central
            .find("command_result", |r| r["commandId"] == want, limit)
            .await
            .with_context(|| format!("no command_result for {id} within {limit:?}"))
    }
}

/// `result.result` of a successful command, or its error.
pub fn success(result: &Value) -> anyhow::Result<&Value> {
    if result["status"] == json!("success") {
        Ok(&result["result"])
    } else {
        bail!("command failed: {result}")
    }
}

/// The error text of a failed command.
pub fn failure(result: &Value) -> anyhow::Result<String> {
    if result["status"] == json!("success") {
        bail!("expected an error, got {result}")
    }
    Ok(result["error"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| result.to_string()))
}
