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

/// ProtectProc= gives the agent a private procfs, where the boot id is the
/// kernel's: on a Pi that changes at every reboot, but a container reboot
/// keeps the host's kernel (nspawn fakes a boot id only in the container's
/// own /proc). For this group only, the agent sees the container's /proc.
const DROPIN_DIR: &str = "/etc/systemd/system/neopro-runtime.service.d";
const DROPIN: &str = "/etc/systemd/system/neopro-runtime.service.d/system-test-boot-id.conf";

async fn reboot(ctx: &Ctx, id: &str) -> anyhow::Result<String> {
    ctx.ok(&["mkdir", "-p", DROPIN_DIR]).await?;
    ctx.container
        .exec_full(
            &["tee", DROPIN],
            Some("[Service]\nProtectProc=default\n"),
            ctx.t(10),
        )
        .await?
        .ok("writing the drop-in")?;
    ctx.ok(&["systemctl", "daemon-reload"]).await?;
    let auths = ctx.central.count("authenticate");
    ctx.ok(&["systemctl", "restart", AGENT]).await?;
    if !ctx
        .central
        .wait_more_than("authenticate", auths, ctx.t(30))
        .await
    {
        bail!("the agent did not authenticate after the drop-in");
    }
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
    let journal = ctx.journal(AGENT).await?;
    let Some(line) = journal.lines().find(|l| l.contains(id)) else {
        bail!("no log line about the reboot {id} in this boot's journal");
    };
    ctx.ok(&["rm", "-rf", DROPIN_DIR]).await?;
    ctx.ok(&["systemctl", "daemon-reload"]).await?;
    if !line.contains("completed") {
        bail!("{line}");
    }
    Ok(line.to_owned())
}
