//! The real `neopro-runtime run` as a child process, for the demo, the
//! benchmarks and the crash test, and what /proc says about it.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The agent binary `cargo test` built next to the running test
/// (`NEOPRO_RUNTIME_BIN` overrides it).
pub fn agent_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NEOPRO_RUNTIME_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join("neopro-runtime");
    assert!(
        bin.is_file(),
        "{} missing: run the tests with `cargo xtask test`",
        bin.display()
    );
    bin
}

/// Waits for something that sends no event (a file on disk, a call the
/// fake systemctl recorded) by looking every 10 ms; panics after `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A running agent; dropping it stops it with SIGTERM (clean shutdown).
pub struct AgentProcess(Option<Child>);

impl AgentProcess {
    /// Starts `bin --config conf run`. `log_level` sets LOG_LEVEL; `None`
    /// keeps the configuration's and shows the log, `Some` silences stdout.
    pub fn start(bin: &Path, conf: &Path, log_level: Option<&str>) -> AgentProcess {
        let mut command = Command::new(bin);
        command.arg("--config").arg(conf).arg("run");
        if let Some(level) = log_level {
            command.env("LOG_LEVEL", level).stdout(Stdio::null());
        }
        AgentProcess(Some(command.spawn().expect("start the agent")))
    }

    pub fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: the agent gets no chance to clean up (power-cut test).
    pub fn kill_hard(mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        // SIGTERM: the agent finishes, flushes and leaves cleanly.
        if let Some(mut child) = self.0.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// A `/proc/<pid>/status` value in KiB (`VmRSS:`, `VmHWM:`, ...), 0 if absent.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}
