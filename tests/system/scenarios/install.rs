//! Install as a new club would: the `.deb` on a box without the agent's
//! user, `register` against the central, `install-service`; the agent then
//! runs under systemd as its own user, authenticates and heartbeats.

use super::{ADMIN_EMAIL, ADMIN_PASSWORD, AGENT, Ctx};
use crate::report::Report;
use anyhow::{Context, bail};
use neopro_e2e::box_register;

pub async fn run(ctx: &Ctx, report: &Report) {
    report.section("install: .deb, register, install-service");
    report
        .check(
            "package declares what the unit and the rule need",
            depends(ctx),
        )
        .await;
    report
        .check(
            "dpkg -i on a box without the agent's user",
            dpkg_install(ctx),
        )
        .await;
    report
        .check(
            "register against the test central writes site.conf",
            register(ctx),
        )
        .await;
    report
        .check(
            "install-service checks the parent folders and starts the agent",
            install_service(ctx),
        )
        .await;
    report
        .check("unit active, Type=notify (READY=1 reached)", active(ctx))
        .await;
    report
        .check(
            "the agent runs as its own user, not root",
            runs_as_agent(ctx),
        )
        .await;
    report
        .check(
            "authenticates with the registered site and heartbeats",
            authenticates(ctx),
        )
        .await;
    report
        .check("systemd-analyze security exposure", exposure(ctx))
        .await;
}

async fn depends(ctx: &Ctx) -> anyhow::Result<String> {
    let out = std::process::Command::new("dpkg-deb")
        .arg("-f")
        .arg(&ctx.deb_on_host)
        .arg("Depends")
        .output()
        .context("dpkg-deb")?;
    let depends = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    for need in ["systemd", "dbus", "polkitd", "acl"] {
        if !depends.split([',', '|', ' ']).any(|d| d == need) {
            bail!("Depends: {depends} (no {need})");
        }
    }
    Ok(format!("Depends: {depends}"))
}

async fn dpkg_install(ctx: &Ctx) -> anyhow::Result<String> {
    let before = ctx.exec(&["getent", "passwd", "neopro"]).await?;
    if before.code == 0 {
        bail!(
            "the fresh box already has the user: {}",
            before.stdout.trim()
        );
    }
    let out = ctx
        .container
        .exec_timeout(&["dpkg", "-i", &ctx.deb], ctx.t(120))
        .await?;
    let text = out.text();
    if out.code != 0 {
        bail!("dpkg -i failed: {text}");
    }
    // No site.conf yet: the package says what to do next.
    if !text.contains("neopro-runtime register") {
        bail!("postinst did not say how to register the box: {text}");
    }
    let user = ctx.ok(&["getent", "passwd", "neopro"]).await?;
    Ok(format!("user: {}", user.trim()))
}

async fn register(ctx: &Ctx) -> anyhow::Result<String> {
    let conf = ctx.container.root().join("etc/neopro/site.conf");
    if let Some(dir) = conf.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &conf,
        box_register::site_conf("the system test", &ctx.central.url()),
    )?;
    let args = box_register::register_args(
        &ctx.central.url(),
        ADMIN_EMAIL,
        "Club de test",
        "Club de test",
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ctx
        .container
        .exec_full(&args, Some(&format!("{ADMIN_PASSWORD}\n")), ctx.t(60))
        .await?;
    if out.code != 0 {
        bail!("register failed: {}", out.text());
    }
    let text = std::fs::read_to_string(&conf)?;
    if !text.lines().any(|l| l.starts_with("SITE_ID=")) || !text.contains("SITE_API_KEY=") {
        bail!("site.conf has no SITE_ID / SITE_API_KEY:\n{text}");
    }
    Ok(out.stdout.lines().last().unwrap_or_default().to_owned())
}

/// The site id register wrote.
pub fn site_id(ctx: &Ctx) -> Option<String> {
    let text = std::fs::read_to_string(ctx.container.root().join("etc/neopro/site.conf")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("SITE_ID=").map(str::to_owned))
}

async fn install_service(ctx: &Ctx) -> anyhow::Result<String> {
    let out = ctx
        .container
        .exec_timeout(&["neopro-runtime", "install-service"], ctx.t(120))
        .await?;
    let text = out.text();
    if out.code != 0 {
        bail!("install-service failed: {text}");
    }
    // /home/pi is 0700 on Debian 12: the agent must be let through, and the
    // operator told.
    if !text.contains("/home/pi") {
        bail!("install-service said nothing about /home/pi (0700):\n{text}");
    }
    let notes: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("note:") || l.contains("/home/pi "))
        .collect();
    Ok(notes.join("\n"))
}

async fn active(ctx: &Ctx) -> anyhow::Result<String> {
    let kind = ctx.prop(AGENT, "Type").await?;
    let state = ctx.is_active(AGENT).await?;
    let enabled = ctx
        .exec(&["systemctl", "is-enabled", AGENT])
        .await?
        .stdout
        .trim()
        .to_owned();
    if kind != "notify" || state != "active" || enabled != "enabled" {
        bail!("Type={kind}, state {state}, {enabled}");
    }
    Ok(format!(
        "Type=notify, active, enabled, status \"{}\"",
        ctx.prop(AGENT, "StatusText").await?
    ))
}

/// The agent's main process id.
pub async fn main_pid(ctx: &Ctx) -> anyhow::Result<String> {
    let pid = ctx.prop(AGENT, "MainPID").await?;
    if pid == "0" || pid.is_empty() {
        bail!("{AGENT} has no main process");
    }
    Ok(pid)
}

async fn runs_as_agent(ctx: &Ctx) -> anyhow::Result<String> {
    let pid = main_pid(ctx).await?;
    let status = ctx.ok(&["cat", &format!("/proc/{pid}/status")]).await?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|u| u.split_whitespace().next())
        .unwrap_or_default()
        .to_owned();
    let want = ctx.ok(&["id", "-u", "neopro"]).await?;
    if uid != want.trim() || uid == "0" {
        bail!(
            "main process {pid} runs as uid {uid}, neopro is {}",
            want.trim()
        );
    }
    let groups = ctx.ok(&["id", "-nG", "neopro"]).await?;
    Ok(format!(
        "pid {pid}, uid {uid} (neopro; groups {})",
        groups.trim()
    ))
}

async fn authenticates(ctx: &Ctx) -> anyhow::Result<String> {
    let site = site_id(ctx).context("no SITE_ID in site.conf")?;
    let want = serde_json::json!(site);
    ctx.central
        .find("authenticate", |a| a["siteId"] == want, ctx.t(30))
        .await
        .with_context(|| format!("no authenticate for site {site}"))?;
    if !ctx.central.wait_more_than("heartbeat", 1, ctx.t(20)).await {
        bail!("fewer than 2 heartbeats");
    }
    let hb = ctx.central.all("heartbeat");
    Ok(format!(
        "site {site}; {} heartbeats, last: {}",
        hb.len(),
        hb.last()
            .map(|h| h.to_string())
            .unwrap_or_default()
            .chars()
            .take(160)
            .collect::<String>()
    ))
}

async fn exposure(ctx: &Ctx) -> anyhow::Result<String> {
    let out = ctx
        .container
        .exec_timeout(
            &["systemd-analyze", "security", "--no-pager", AGENT],
            ctx.t(60),
        )
        .await?;
    let text = out.text();
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .context("no exposure line from systemd-analyze security")?;
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("cannot read the score in: {line}"))?;
    // 3.0 before SystemCallFilter; anything above means hardening was lost.
    if score > 3.0 {
        bail!("{line}");
    }
    let open: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with('✗'))
        .take(8)
        .collect();
    Ok(format!("{}\nremaining:\n{}", line.trim(), open.join("\n")))
}
