//! `reboot` for real: the result reaches the central first, then the
//! container reboots (nspawn exits 133); booted again, the enabled unit
//! comes up, authenticates and logs that the reboot happened.

use super::{AGENT, Ctx, success};
use crate::report::Report;
use anyhow::bail;
use serde_json::json;

pub async fn run(ctx: &Ctx, report: &Report) {
    report.section("reboot");
    let id = ctx.id("reboot");
    let rebooted = report
        .check(
            "reboot: result delivered, then nspawn exits 133",
            reboot(ctx, &id),
        )
        .await;
    if !rebooted {
        return;
    }
    report
        .check(
            "booted again: agent enabled, active, re-authenticated",
            boot_again(ctx),
        )
        .await;
    report
        .check("the agent logs the reboot outcome", outcome(ctx, &id))
        .await;
}

async fn reboot(ctx: &Ctx, id: &str) -> anyhow::Result<String> {
    ctx.send(id, "reboot", json!({})).await?;
    let result = ctx.result(id, ctx.t(30)).await?;
    let answer = success(&result)?.clone();
    let code = ctx.container.wait_exit(ctx.t(120)).await?;
    if code != 133 {
        bail!("nspawn exited {code}, not 133 (reboot)");
    }
    Ok(format!("{answer}; nspawn exit 133"))
}

async fn boot_again(ctx: &Ctx) -> anyhow::Result<String> {
    let auths = ctx.central.count("authenticate");
    let state = ctx.container.boot().await?;
    ctx.wait_active(AGENT, ctx.t(60)).await?;
    if !ctx
        .central
        .wait_more_than("authenticate", auths, ctx.t(60))
        .await
    {
        bail!("the agent did not authenticate after the boot");
    }
    Ok(format!("boot: {state}"))
}

async fn outcome(ctx: &Ctx, id: &str) -> anyhow::Result<String> {
    // The shipped unit as it is: the kernel's boot id stays the same across
    // a container's reboot, so this proves the /run marker decides.
    let journal = ctx.journal(AGENT).await?;
    let Some(line) = journal.lines().find(|l| l.contains(id)) else {
        bail!("no log line about the reboot {id} in this boot's journal");
    };
    if !line.contains("completed") {
        bail!("{line}");
    }
    // The systemctl that asked for the reboot dies in the shutdown: not an error.
    let before = ctx
        .ok(&[
            "journalctl",
            "-b",
            "-1",
            "-u",
            AGENT,
            "--no-pager",
            "-o",
            "cat",
        ])
        .await?;
    if let Some(error) = before
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("reboot"))
    {
        bail!("the boot before logged: {error}");
    }
    Ok(line.to_owned())
}
