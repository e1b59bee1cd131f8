//! Service control through polkit as the agent's user: a managed unit is
//! really restarted, with or without the `.service` suffix; an unmanaged one
//! is refused by the agent, and polkit refuses the user a direct attempt;
//! the agent restarts itself without logging an error.

use super::{AGENT, Ctx, failure, success};
use crate::report::Report;
use anyhow::bail;
use serde_json::json;

pub async fn run(ctx: &Ctx, report: &Report) {
    report.section("services: restart_service through polkit");
    report
        .check(
            "restart_service neopro-app: new InvocationID",
            restart(ctx, "neopro-app"),
        )
        .await;
    report
        .check(
            "restart_service neopro-admin.service (with the suffix)",
            restart(ctx, "neopro-admin.service"),
        )
        .await;
    report
        .check("an unmanaged unit is refused by the agent", unmanaged(ctx))
        .await;
    report
        .check(
            "polkit refuses the agent's user a direct attempt",
            polkit_refuses(ctx),
        )
        .await;
    report
        .check(
            "self-restart: restarted, re-authenticated, no error logged",
            self_restart(ctx),
        )
        .await;
}

async fn restart(ctx: &Ctx, service: &str) -> anyhow::Result<String> {
    let unit = if service.ends_with(".service") {
        service.to_owned()
    } else {
        format!("{service}.service")
    };
    let before = ctx.prop(&unit, "InvocationID").await?;
    let result = ctx
        .command("restart_service", json!({"service": service}), ctx.t(60))
        .await?;
    let answer = success(&result)?;
    let after = ctx.prop(&unit, "InvocationID").await?;
    let state = ctx.is_active(&unit).await?;
    if before == after || state != "active" {
        bail!("{unit}: InvocationID {before} -> {after}, {state}; answer {answer}");
    }
    Ok(format!(
        "{unit} {before:.8}… -> {after:.8}…, active; {answer}"
    ))
}

async fn unmanaged(ctx: &Ctx) -> anyhow::Result<String> {
    let before = ctx.prop("club-private.service", "InvocationID").await?;
    let result = ctx
        .command(
            "restart_service",
            json!({"service": "club-private"}),
            ctx.t(30),
        )
        .await?;
    let error = failure(&result)?;
    let after = ctx.prop("club-private.service", "InvocationID").await?;
    if before != after {
        bail!("club-private was restarted anyway ({error})");
    }
    Ok(error)
}

async fn polkit_refuses(ctx: &Ctx) -> anyhow::Result<String> {
    let out = ctx
        .as_user("neopro", &["systemctl", "restart", "club-private.service"])
        .await?;
    if out.code == 0 {
        bail!("the agent's user restarted club-private.service");
    }
    let text = out.text();
    if !text.contains("Interactive authentication required") && !text.contains("Access denied") {
        bail!("refused, but not by polkit: {text}");
    }
    // ... while a listed unit is allowed to the same user.
    let allowed = ctx
        .as_user("neopro", &["systemctl", "restart", "neopro-admin.service"])
        .await?;
    if allowed.code != 0 {
        bail!("polkit also refuses neopro-admin: {}", allowed.text());
    }
    Ok(format!("club-private: {text}; neopro-admin: allowed"))
}

async fn self_restart(ctx: &Ctx) -> anyhow::Result<String> {
    let before = ctx.prop(AGENT, "InvocationID").await?;
    let auths = ctx.central.count("authenticate");
    let result = ctx
        .command(
            "restart_service",
            json!({"service": "neopro-sync-agent"}),
            ctx.t(30),
        )
        .await?;
    let answer = success(&result)?.clone();
    if !ctx
        .central
        .wait_more_than("authenticate", auths, ctx.t(60))
        .await
    {
        bail!("the agent did not authenticate again after {answer}");
    }
    let after = ctx.prop(AGENT, "InvocationID").await?;
    if before == after {
        bail!("{AGENT} was not restarted (InvocationID unchanged)");
    }
    let journal = ctx.journal(AGENT).await?;
    if let Some(line) = journal
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("systemctl"))
    {
        bail!("an error was logged: {line}");
    }
    ctx.wait_connected(ctx.t(30)).await?;
    Ok(format!("{answer}; InvocationID changed, re-authenticated"))
}
