//! The systemd watchdog: an agent that stops answering (SIGSTOP) is killed
//! and restarted within WatchdogSec plus slack, and authenticates again.
//! The test lowers WatchdogSec to 10 s with a runtime drop-in (60 s in the
//! shipped unit) and removes it afterwards.

use super::{AGENT, Ctx};
use crate::report::Report;
use anyhow::bail;
use std::time::{Duration, Instant};

const WATCHDOG_SECS: u64 = 10;

pub async fn run(ctx: &Ctx, report: &Report) {
    report.section("watchdog");
    report
        .check(
            "a stopped agent (SIGSTOP) is killed, restarted, re-authenticates",
            stopped_agent(ctx),
        )
        .await;
    report
        .check(
            "drop-in removed: the agent runs with the shipped unit",
            restore(ctx),
        )
        .await;
}

async fn stopped_agent(ctx: &Ctx) -> anyhow::Result<String> {
    ctx.ok(&[
        "mkdir",
        "-p",
        "/run/systemd/system/neopro-runtime.service.d",
    ])
    .await?;
    // /run is a tmpfs inside the container: written through nsenter.
    let text = format!("[Service]\nWatchdogSec={WATCHDOG_SECS}\n");
    ctx.container
        .exec_full(
            &[
                "tee",
                "/run/systemd/system/neopro-runtime.service.d/system-test-watchdog.conf",
            ],
            Some(&text),
            ctx.t(10),
        )
        .await?
        .ok("writing the drop-in")?;
    ctx.ok(&["systemctl", "daemon-reload"]).await?;
    ctx.ok(&["systemctl", "restart", AGENT]).await?;
    ctx.wait_connected(ctx.t(30)).await?;
    let pid = super::install::main_pid(ctx).await?;
    let auths = ctx.central.count("authenticate");
    let started = Instant::now();
    // minbase has no kill binary: the shell's builtin, the pid an argument.
    ctx.ok(&["sh", "-c", "kill -STOP \"$1\"", "sh", &pid])
        .await?;
    let limit = Duration::from_secs(WATCHDOG_SECS) + ctx.t(30);
    let deadline = tokio::time::Instant::now() + limit;
    let new_pid = loop {
        let now = ctx.prop(AGENT, "MainPID").await?;
        if now != pid && now != "0" && ctx.is_active(AGENT).await? == "active" {
            break now;
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{AGENT} not restarted within {limit:?} (MainPID {now})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let restarted_after = started.elapsed().as_secs_f64();
    let journal = ctx.journal(AGENT).await?;
    if !journal.contains("Watchdog timeout") && !journal.contains("'watchdog'") {
        bail!("restarted, but the journal shows no watchdog timeout");
    }
    if !ctx
        .central
        .wait_more_than("authenticate", auths, ctx.t(30))
        .await
    {
        bail!("no new authenticate after the restart");
    }
    Ok(format!(
        "pid {pid} stopped; watchdog kill, pid {new_pid} active {restarted_after:.1} s later \
         (WatchdogSec={WATCHDOG_SECS}), re-authenticated"
    ))
}

async fn restore(ctx: &Ctx) -> anyhow::Result<String> {
    ctx.ok(&["rm", "-rf", "/run/systemd/system/neopro-runtime.service.d"])
        .await?;
    ctx.ok(&["systemctl", "daemon-reload"]).await?;
    let auths = ctx.central.count("authenticate");
    ctx.ok(&["systemctl", "restart", AGENT]).await?;
    if !ctx
        .central
        .wait_more_than("authenticate", auths, ctx.t(30))
        .await
    {
        bail!("the restarted agent did not authenticate");
    }
    let wd = ctx.prop(AGENT, "WatchdogUSec").await?;
    if wd == format!("{WATCHDOG_SECS}s") {
        bail!("the test drop-in is still in effect");
    }
    Ok(format!("WatchdogUSec={wd}"))
}
