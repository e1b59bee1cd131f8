//! `SystemCallFilter=@system-service` in the unit: after the artifact cache
//! is emptied (so every component is JIT-compiled afresh), every built-in
//! command runs with no SIGSYS and no restart of the agent; then, idle, it
//! unloads them and pages its code out (`madvise`) under the same filter. Only on the
//! host's architecture: under qemu-user, seccomp filters qemu's own host
//! syscalls, not the guest's, so a pass there would prove nothing.

use super::{AGENT, Ctx};
use crate::report::Report;
use anyhow::bail;
use serde_json::{Value, json};

pub async fn run(ctx: &Ctx, report: &Report, native: bool) {
    report.section("seccomp: SystemCallFilter=@system-service");
    if !native {
        println!(
            "     (not checked on {}: under qemu-user seccomp filters qemu's host syscalls)",
            ctx.arch
        );
        return;
    }
    report
        .check(
            "the unit carries SystemCallFilter=@system-service",
            filter(ctx),
        )
        .await;
    report
        .check(
            "fresh JIT compile + every built-in command: no SIGSYS, no restart",
            every_command(ctx),
        )
        .await;
    report
        .check(
            "idle 30 s: components unloaded, code paged out (madvise), no SIGSYS, no restart",
            goes_idle(ctx),
        )
        .await;
}

/// Resident file-backed KiB of a process.
async fn rss_file_kib(ctx: &Ctx, pid: &str) -> anyhow::Result<u64> {
    let status = ctx.ok(&["cat", &format!("/proc/{pid}/status")]).await?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssFile:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no RssFile in /proc/{pid}/status"))
}

/// Right after the commands, the agent holds their components and the
/// code they ran; 30 s later it lets both go and says so in its journal
/// (read once a second: journald gives no event to wait on here).
async fn goes_idle(ctx: &Ctx) -> anyhow::Result<String> {
    const IDLE: &str = "idle: components unloaded, code pages handed back to the kernel";
    let pid = super::install::main_pid(ctx).await?;
    let restarts = ctx.prop(AGENT, "NRestarts").await?;
    let busy = rss_file_kib(ctx, &pid).await?;
    let seen = ctx.journal(AGENT).await?.matches(IDLE).count();
    let deadline = tokio::time::Instant::now() + ctx.t(90);
    while ctx.journal(AGENT).await?.matches(IDLE).count() == seen {
        if tokio::time::Instant::now() > deadline {
            bail!("no '{IDLE}' in the agent's journal after 90 s idle");
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let idle = rss_file_kib(ctx, &pid).await?;
    let journal = ctx.journal(AGENT).await?;
    if let Some(line) = journal.lines().find(|l| {
        l.contains("SIGSYS") || l.contains("status=31/SYS") || l.contains("Bad system call")
    }) {
        bail!("{line}");
    }
    if ctx.prop(AGENT, "NRestarts").await? != restarts
        || super::install::main_pid(ctx).await? != pid
    {
        bail!("the agent restarted while going idle");
    }
    Ok(format!(
        "file-backed RSS {busy} KiB busy, {idle} KiB once idle; pid {pid} kept"
    ))
}

async fn filter(ctx: &Ctx) -> anyhow::Result<String> {
    let filter = ctx.prop(AGENT, "SystemCallFilter").await?;
    if filter.is_empty() || filter.starts_with('~') && filter.len() < 3 {
        bail!("no system call filter: '{filter}'");
    }
    Ok(format!(
        "{} system calls allowed",
        filter.split_whitespace().count()
    ))
}

/// Each built-in command type with harmless data (errors are fine: the
/// component ran); reboot and update_software have their own scenarios.
fn commands() -> Vec<(&'static str, Value)> {
    vec![
        ("get_system_info", json!({})),
        ("get_config", json!({})),
        ("get_logs", json!({"service": "neopro-app", "lines": 5})),
        ("get_logs", json!({"service": "sync-agent", "lines": 5})),
        (
            "update_config",
            json!({"configuration": {"remote": {"title": "seccomp"}}}),
        ),
        ("update_settings", json!({"settings": {}})),
        (
            "delete_video",
            json!({"videoPath": "videos/Nothing/none.mp4"}),
        ),
        ("get_hotspot_config", json!({})),
        ("update_hotspot", json!({"ssid": "NEOPRO-test"})),
        ("restart_service", json!({"service": "neopro-admin"})),
        ("network_diagnostics", json!({})),
    ]
}

async fn every_command(ctx: &Ctx) -> anyhow::Result<String> {
    // Empty the artifact cache: the restart compiles every component again.
    let auths = ctx.central.count("authenticate");
    ctx.ok(&[
        "sh",
        "-c",
        "rm -rf /var/lib/neopro-runtime/cache && systemctl restart neopro-runtime.service",
    ])
    .await?;
    if !ctx
        .central
        .wait_more_than("authenticate", auths, ctx.t(60))
        .await
    {
        bail!("the restarted agent did not authenticate");
    }
    let restarts = ctx.prop(AGENT, "NRestarts").await?;
    let pid = super::install::main_pid(ctx).await?;
    let mut ran = Vec::new();
    for (kind, data) in commands() {
        let result = ctx.command(kind, data, ctx.t(60)).await?;
        ran.push(format!(
            "{kind}: {}",
            result["status"].as_str().unwrap_or("?")
        ));
    }
    let journal = ctx.journal(AGENT).await?;
    if let Some(line) = journal.lines().find(|l| {
        l.contains("SIGSYS") || l.contains("status=31/SYS") || l.contains("Bad system call")
    }) {
        bail!("{line}");
    }
    let after = ctx.prop(AGENT, "NRestarts").await?;
    let pid_after = super::install::main_pid(ctx).await?;
    if after != restarts || pid != pid_after {
        bail!("the agent restarted while running the commands (NRestarts {restarts} -> {after})");
    }
    let cached = ctx
        .ok(&[
            "sh",
            "-c",
            "ls /var/lib/neopro-runtime/cache | grep -c cwasm || true",
        ])
        .await?;
    Ok(format!(
        "{} artifacts compiled afresh; {}",
        cached.trim(),
        ran.join(", ")
    ))
}
