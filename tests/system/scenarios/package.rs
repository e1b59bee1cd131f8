//! Debian conventions, last (they remove the agent): an upgrade restarts the
//! agent on the new binary and keeps its configuration and state; `remove`
//! stops and disables it and keeps site.conf and the state; `purge` removes
//! what the package and install-service created and leaves the club's files.

use super::{AGENT, Ctx, NEOPRO};
use crate::report::Report;
use anyhow::bail;

pub async fn run(ctx: &Ctx, report: &Report) {
    report.section("package: upgrade, remove, purge");
    report
        .check(
            "upgrade to the next .deb restarts the agent, keeps config and state",
            upgrade(ctx),
        )
        .await;
    report
        .check(
            "remove stops and disables the agent, keeps site.conf and state",
            remove(ctx),
        )
        .await;
    let site_conf = std::fs::read_to_string(ctx.container.root().join("etc/neopro/site.conf"));
    report
        .check(
            "purge removes what the package created, leaves the club's files",
            purge(ctx),
        )
        .await;
    report
        .check(
            "dpkg -i on a registered box: postinst runs install-service, the agent connects",
            install_on_registered_box(ctx, site_conf.ok()),
        )
        .await;
}

async fn install_on_registered_box(ctx: &Ctx, site_conf: Option<String>) -> anyhow::Result<String> {
    let Some(text) = site_conf else {
        bail!("site.conf could not be saved before the purge");
    };
    let conf = ctx.container.root().join("etc/neopro/site.conf");
    if let Some(dir) = conf.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&conf, text)?;
    let auths = ctx.central.count("authenticate");
    let out = ctx
        .container
        .exec_timeout(&["dpkg", "-i", &ctx.deb], ctx.t(180))
        .await?;
    if out.code != 0 {
        bail!("dpkg -i failed: {}", out.text());
    }
    ctx.wait_active(AGENT, ctx.t(60)).await?;
    if !ctx
        .central
        .wait_more_than("authenticate", auths, ctx.t(60))
        .await
    {
        bail!("the agent did not authenticate");
    }
    let user = ctx.prop(AGENT, "User").await?;
    Ok(format!(
        "active as {user}, authenticated, without a separate install-service"
    ))
}

async fn digest(ctx: &Ctx, path: &str) -> anyhow::Result<String> {
    ctx.ok(&["sha256sum", path]).await
}

async fn upgrade(ctx: &Ctx) -> anyhow::Result<String> {
    ctx.wait_active(AGENT, ctx.t(30)).await?;
    let before = ctx.prop(AGENT, "InvocationID").await?;
    let conf = digest(ctx, "/etc/neopro/site.conf").await?;
    let auths = ctx.central.count("authenticate");
    let out = ctx
        .container
        .exec_timeout(&["dpkg", "-i", &ctx.next_deb], ctx.t(180))
        .await?;
    if out.code != 0 {
        bail!("dpkg -i of the next version failed: {}", out.text());
    }
    ctx.wait_active(AGENT, ctx.t(60)).await?;
    let after = ctx.prop(AGENT, "InvocationID").await?;
    if before == after {
        bail!("the agent was not restarted by the upgrade");
    }
    let pid = super::install::main_pid(ctx).await?;
    let exe = ctx.ok(&["readlink", &format!("/proc/{pid}/exe")]).await?;
    if exe.contains("(deleted)") {
        bail!("the agent still runs the old binary: {exe}");
    }
    if digest(ctx, "/etc/neopro/site.conf").await? != conf {
        bail!("the upgrade changed site.conf");
    }
    ctx.ok(&["test", "-d", "/var/lib/neopro-runtime/journal"])
        .await?;
    if !ctx
        .central
        .wait_more_than("authenticate", auths, ctx.t(60))
        .await
    {
        bail!("the upgraded agent did not authenticate");
    }
    let version = ctx
        .ok(&["dpkg-query", "-W", "-f", "${Version}", "neopro-runtime"])
        .await?;
    Ok(format!("now {version}, running {}", exe.trim()))
}

/// Whether any process named neopro-runtime runs in the box.
async fn agent_processes(ctx: &Ctx) -> anyhow::Result<String> {
    Ok(ctx
        .sh("for p in /proc/[0-9]*; do c=$(cat $p/comm 2>/dev/null) && [ \"$c\" = neopro-runtime ] && echo ${p#/proc/}; done; true")
        .await?
        .stdout
        .trim()
        .to_owned())
}

async fn remove(ctx: &Ctx) -> anyhow::Result<String> {
    let out = ctx
        .container
        .exec_timeout(&["dpkg", "-r", "neopro-runtime"], ctx.t(120))
        .await?;
    if out.code != 0 {
        bail!("dpkg -r failed: {}", out.text());
    }
    let state = ctx.is_active(AGENT).await?;
    let enabled = ctx
        .exec(&["systemctl", "is-enabled", AGENT])
        .await?
        .stdout
        .trim()
        .to_owned();
    let running = agent_processes(ctx).await?;
    if state == "active" || enabled == "enabled" || !running.is_empty() {
        bail!("after remove: {state}, {enabled}, processes [{running}]");
    }
    ctx.ok(&["test", "-s", "/etc/neopro/site.conf"]).await?;
    ctx.ok(&["test", "-d", "/var/lib/neopro-runtime/journal"])
        .await?;
    Ok(format!("{state}, {enabled}; site.conf and state kept"))
}

async fn purge(ctx: &Ctx) -> anyhow::Result<String> {
    let out = ctx
        .container
        .exec_timeout(&["dpkg", "-P", "neopro-runtime"], ctx.t(120))
        .await?;
    let text = out.text();
    if out.code != 0 {
        bail!("dpkg -P failed: {text}");
    }
    if !text.contains(NEOPRO) {
        bail!("purge did not say what it leaves: {text}");
    }
    let mut left = Vec::new();
    for path in [
        "/etc/neopro/site.conf",
        "/etc/systemd/system/neopro-runtime.service",
        "/etc/polkit-1/rules.d/50-neopro-runtime.rules",
        "/var/lib/neopro-runtime",
    ] {
        if ctx.exec(&["test", "-e", path]).await?.code == 0 {
            left.push(path);
        }
    }
    if ctx.exec(&["getent", "passwd", "neopro"]).await?.code == 0 {
        left.push("user neopro");
    }
    if !left.is_empty() {
        bail!("purge left {left:?}");
    }
    ctx.ok(&["test", "-s", &format!("{NEOPRO}/videos/Sponsors/logo.mp4")])
        .await?;
    ctx.ok(&["test", "-s", &format!("{NEOPRO}/webapp/configuration.json")])
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.contains("left") || l.contains("kept"))
        .collect::<Vec<_>>()
        .join("\n"))
}
