//! Moving a box from the Node.js agent (issue 15, part B): a stand-in of the
//! upstream sync agent, laid out and run exactly as on the boxes
//! (`tests/system/old-agent/`: unit `neopro-sync-agent`, User=pi, sudo
//! without a password, its update_software), installs the migration bundle
//! through its own update_software; its self-restart starts the handover;
//! the box then runs neopro-runtime with the same site and content. Then the
//! same with a neopro-runtime that cannot reach the central: the Node agent
//! comes back by itself and its log says why. Host architecture only (Node
//! under qemu-user would only be slow). Runs after `package`, which leaves
//! neopro-runtime installed: it is purged first, as on a box that never had it.

use super::{AGENT, Ctx, success};
use crate::report::Report;
use anyhow::{Context, bail};
use neopro_e2e::http::{Fault, FileServer};
use neopro_runtime::store::hash::sha256_hex;
use serde_json::{Value, json};
use std::path::Path;

const OLD: &str = "neopro-sync-agent.service";
const SITE_CONF: &str = "etc/neopro/site.conf";
const SYNC: &str = "home/pi/neopro/sync-agent";
const DROPIN_DIR: &str = "etc/systemd/system/neopro-runtime.service.d";

pub async fn run(ctx: &Ctx, report: &Report, bundle: Option<&Path>, old_agent: &Path) {
    let Some(bundle) = bundle else {
        report.section("migration: skipped (runs on the host's architecture only)");
        return;
    };
    report.section("migration: from the Node.js agent");
    let archive = match std::fs::read(bundle) {
        Ok(bytes) => bytes,
        Err(e) => {
            let shown = format!("cannot read {}: {e}", bundle.display());
            report
                .check("migration bundle", async { bail!(shown) })
                .await;
            return;
        }
    };
    let ready = report
        .check(
            "a box on the Node.js agent: neopro-runtime purged, neopro-sync-agent authenticated",
            old_box(ctx, old_agent, None),
        )
        .await;
    if !ready {
        return;
    }
    let server = FileServer::start(archive.clone(), Fault::None);
    let moved = report
        .check(
            "the Node agent installs the bundle: neopro-runtime takes over (same site, same content)",
            take_over(ctx, &server, &archive),
        )
        .await;
    if !moved {
        return;
    }
    let ready = report
        .check("again on the Node.js agent", old_box(ctx, old_agent, None))
        .await;
    if ready {
        report
            .check(
                "power cut during the handover, then a boot: the Node agent hands over again, to the end",
                power_cut(ctx, &server, &archive),
            )
            .await;
    }
    let ready = report
        .check(
            "again on the Node.js agent, neopro-runtime pointed at a dead central, deadline 20 s",
            old_box(ctx, old_agent, Some(20)),
        )
        .await;
    if ready {
        report
            .check(
                "no authentication within the deadline: the Node agent comes back, its log says why",
                give_back(ctx, &server, &archive),
            )
            .await;
    }
    let _ = ctx
        .ok(&["rm", "-rf", &format!("/{DROPIN_DIR}/dead-central.conf")])
        .await;
}

/// Purges neopro-runtime, puts the Node agent and its site.conf in place
/// (`deadline`: MIGRATION_DEADLINE_SECS, and neopro-runtime's central made
/// unreachable by a drop-in), and waits for the Node agent's heartbeat.
async fn old_box(ctx: &Ctx, old_agent: &Path, deadline: Option<u32>) -> anyhow::Result<String> {
    let root = ctx.container.root().to_owned();
    let conf_path = root.join(SITE_CONF);
    let mut conf = std::fs::read_to_string(&conf_path).context("reading site.conf")?;
    let _ = ctx.exec(&["systemctl", "stop", OLD]).await;
    ctx.ok(&["dpkg", "-P", "neopro-runtime"]).await?;
    conf.retain(|c| c != '\r');
    let mut conf: String = conf
        .lines()
        .filter(|l| !l.starts_with("MIGRATION_DEADLINE_SECS="))
        .map(|l| format!("{l}\n"))
        .collect();
    if let Some(secs) = deadline {
        conf.push_str(&format!("MIGRATION_DEADLINE_SECS={secs}\n"));
        let dropin = root.join(DROPIN_DIR);
        std::fs::create_dir_all(&dropin)?;
        std::fs::write(
            dropin.join("dead-central.conf"),
            "[Service]\nEnvironment=CENTRAL_SERVER_URL=http://127.0.0.1:9\n",
        )?;
    }
    std::fs::create_dir_all(conf_path.parent().context("site.conf folder")?)?;
    std::fs::write(&conf_path, conf)?;
    // The old agent's files, as its installer left them (owned by pi).
    let sync = root.join(SYNC);
    if sync.exists() {
        std::fs::remove_dir_all(&sync)?;
    }
    std::fs::create_dir_all(&sync)?;
    for part in ["src", "node_modules", "package.json"] {
        copy_tree(&old_agent.join(part), &sync.join(part))?;
    }
    std::fs::copy(
        old_agent.join("neopro-sync-agent.service"),
        root.join("etc/systemd/system/neopro-sync-agent.service"),
    )?;
    ctx.ok(&["chown", "-R", "pi:pi", &format!("/{SYNC}")])
        .await?;
    ctx.ok(&["chmod", "0644", &format!("/{SITE_CONF}")]).await?;
    ctx.ok(&["systemctl", "daemon-reload"]).await?;
    let beats = ctx.central.count("heartbeat");
    ctx.ok(&["systemctl", "enable", "--now", OLD]).await?;
    old_agent_heartbeat(ctx, beats).await?;
    Ok(format!(
        "node {}; {} active",
        ctx.ok(&["node", "--version"]).await?.trim(),
        OLD
    ))
}

/// Waits for a heartbeat of the Node agent after the `after`-th one.
async fn old_agent_heartbeat(ctx: &Ctx, after: usize) -> anyhow::Result<Value> {
    heartbeat_after(ctx, after, |h| {
        h["versionInfo"]["agent"] == json!("node-sync-agent")
    })
    .await
    .context("no heartbeat from the Node.js agent")
}

/// The first heartbeat after the `after`-th one that `wanted` accepts.
async fn heartbeat_after(
    ctx: &Ctx,
    after: usize,
    wanted: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + ctx.t(120);
    loop {
        let beats = ctx.central.all("heartbeat");
        if let Some(hb) = beats.iter().skip(after).find(|h| wanted(h)) {
            return Ok(hb.clone());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("none within {:?}", ctx.t(120));
        }
        ctx.central
            .wait_more_than("heartbeat", beats.len(), ctx.t(5))
            .await;
    }
}

/// The handover's journal, for a failure's message.
async fn handover_journal(ctx: &Ctx) -> String {
    ctx.ok(&[
        "journalctl",
        "-u",
        "neopro-handover",
        "--no-pager",
        "-o",
        "cat",
    ])
    .await
    .unwrap_or_default()
}

fn update(server: &FileServer, archive: &[u8]) -> Value {
    json!({
        "deploymentId": "dep-migration", "version": "1.0.0",
        "updateUrl": server.url("neopro-migration.tar.gz"),
        "packageSize": archive.len().to_string(),
        "checksum": sha256_hex(archive),
        "isCritical": true,
    })
}

async fn take_over(ctx: &Ctx, server: &FileServer, archive: &[u8]) -> anyhow::Result<String> {
    let root = ctx.container.root().to_owned();
    let site_before = std::fs::read_to_string(root.join(SITE_CONF))?;
    let video = root.join("home/pi/neopro/videos/Sponsors/logo.mp4");
    let video_before = std::fs::read(&video)?;
    let beats = ctx.central.count("heartbeat");
    let result = ctx
        .command("update_software", update(server, archive), ctx.t(120))
        .await?;
    success(&result).context("the Node agent's update_software")?;
    // The handover's first heartbeat of neopro-runtime says where it came from.
    let took_over = match heartbeat_after(ctx, beats, |h| {
        h["versionInfo"].get("tookOverFrom").is_some()
    })
    .await
    {
        Ok(hb) => hb["versionInfo"]["tookOverFrom"].clone(),
        Err(_) => bail!(
            "no heartbeat with versionInfo.tookOverFrom; handover:\n{}",
            handover_journal(ctx).await
        ),
    };
    if took_over["agent"] != json!("neopro-sync-agent") {
        bail!("tookOverFrom: {took_over}");
    }
    handover_done(ctx, "took over").await?;
    ctx.wait_active(AGENT, ctx.t(30)).await?;
    let user = ctx.prop(AGENT, "User").await?;
    let old_enabled = ctx.exec(&["systemctl", "is-enabled", OLD]).await?.stdout;
    let old_active = ctx.is_active(OLD).await?;
    if old_enabled.trim() != "disabled" || old_active != "inactive" {
        bail!("{OLD}: {} / {old_active}", old_enabled.trim());
    }
    let site_after = std::fs::read_to_string(root.join(SITE_CONF))?;
    let identity = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("SITE_ID=") || l.starts_with("SITE_API_KEY="))
            .map(str::to_owned)
            .collect()
    };
    if identity(&site_before).len() != 2 || identity(&site_before) != identity(&site_after) {
        bail!("site.conf changed its site or key:\n{site_after}");
    }
    if std::fs::read(&video)? != video_before {
        bail!("{} changed", video.display());
    }
    let config = std::fs::read_to_string(root.join("home/pi/neopro/webapp/configuration.json"))?;
    serde_json::from_str::<Value>(&config).context("configuration.json after the move")?;
    let sync = root.join(SYNC);
    if sync.join("src/commands.js").exists() {
        bail!("the shim is still in src/commands.js");
    }
    if !sync.join("src/agent.js").exists() {
        bail!("the Node agent's own files were removed");
    }
    Ok(format!(
        "neopro-runtime active as {user}; tookOverFrom {took_over}; {OLD} disabled, inactive; \
         site.conf, videos and configuration.json kept"
    ))
}

/// A power cut in the middle of the handover (the script, dpkg and both
/// agents killed at once), then the box boots: the Node agent, still
/// enabled, starts the handover again, which finishes the move.
async fn power_cut(ctx: &Ctx, server: &FileServer, archive: &[u8]) -> anyhow::Result<String> {
    let stamp = ctx
        .container
        .root()
        .join(SYNC)
        .join("neopro-runtime/handover-started");
    let result = ctx
        .command("update_software", update(server, archive), ctx.t(120))
        .await?;
    success(&result).context("the Node agent's update_software")?;
    // The handover has no event to await: its stamp (written just before
    // dpkg -i) is polled.
    let deadline = tokio::time::Instant::now() + ctx.t(120);
    while !stamp.exists() {
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the handover did not reach dpkg -i; its journal:\n{}",
                handover_journal(ctx).await
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Everything at once, as a power cut: the handover (and the dpkg it
    // runs), then whichever agent is loaded by now.
    ctx.ok(&[
        "systemctl",
        "kill",
        "--signal=KILL",
        "neopro-handover.service",
    ])
    .await?;
    for unit in [AGENT, OLD] {
        let _ = ctx
            .exec(&["systemctl", "kill", "--signal=KILL", unit])
            .await;
    }
    ctx.ok(&["systemctl", "reboot", "--no-block"]).await?;
    let code = ctx.container.wait_exit(ctx.t(120)).await?;
    if code != 133 {
        bail!("nspawn exited {code}, not 133 (reboot)");
    }
    let beats = ctx.central.count("heartbeat");
    ctx.container.boot().await?;
    handover_done(ctx, "took over").await?;
    ctx.wait_active(AGENT, ctx.t(60)).await?;
    heartbeat_after(ctx, beats, |h| {
        h["versionInfo"].get("tookOverFrom").is_some()
    })
    .await
    .context("no heartbeat of neopro-runtime after the boot")?;
    let old_enabled = ctx.exec(&["systemctl", "is-enabled", OLD]).await?.stdout;
    let old_active = ctx.is_active(OLD).await?;
    if old_enabled.trim() != "disabled" || old_active != "inactive" {
        bail!("{OLD}: {} / {old_active}", old_enabled.trim());
    }
    let runs = handover_journal(ctx)
        .await
        .matches("taking the box over from the Node.js agent")
        .count();
    Ok(format!(
        "cut during dpkg -i; after the boot the handover ran again (handover starts logged: {runs}) and took over; {OLD} disabled"
    ))
}

async fn give_back(ctx: &Ctx, server: &FileServer, archive: &[u8]) -> anyhow::Result<String> {
    let root = ctx.container.root().to_owned();
    let beats = ctx.central.count("heartbeat");
    let result = ctx
        .command("update_software", update(server, archive), ctx.t(120))
        .await?;
    success(&result).context("the Node agent's update_software")?;
    // The handover waits 20 s for an authentication that cannot come.
    let started = std::time::Instant::now();
    handover_done(ctx, "rolled back").await?;
    old_agent_heartbeat(ctx, beats).await?;
    let ours = ctx.is_active(AGENT).await?;
    let ours_enabled = ctx.exec(&["systemctl", "is-enabled", AGENT]).await?.stdout;
    if ours != "inactive" || ours_enabled.trim() != "disabled" {
        bail!("neopro-runtime: {ours} / {}", ours_enabled.trim());
    }
    let log = std::fs::read_to_string(root.join("home/pi/neopro/logs/sync-agent.log"))
        .context("the Node agent's log")?;
    let Some(line) = log
        .lines()
        .rev()
        .find(|l| l.contains("did not authenticate within 20 s"))
    else {
        bail!("no reason in sync-agent.log:\n{log}");
    };
    if root.join(SYNC).join("src/commands.js").exists() {
        bail!("the shim is still in src/commands.js");
    }
    let mode = ctx
        .ok(&["stat", "-c", "%U %a", &format!("/{SITE_CONF}")])
        .await?;
    if mode.trim() != "root 644" {
        bail!(
            "site.conf is {} after the rollback (was root 644)",
            mode.trim()
        );
    }
    Ok(format!(
        "given back after {:.0} s; {OLD} heartbeating; log: {}",
        started.elapsed().as_secs_f64(),
        line.trim()
    ))
}

/// Waits until the handover has written its outcome, starting with `want`.
/// The handover is a shell script with no event to await: its file is
/// polled, 2 min at most.
async fn handover_done(ctx: &Ctx, want: &str) -> anyhow::Result<()> {
    let path = ctx
        .container
        .root()
        .join(SYNC)
        .join("neopro-runtime/handover-done");
    let deadline = tokio::time::Instant::now() + ctx.t(120);
    loop {
        match std::fs::read_to_string(&path) {
            Ok(done) if done.starts_with(want) => return Ok(()),
            Ok(done) => bail!("the handover ended otherwise: {}", done.trim()),
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(_) => {
                let journal = handover_journal(ctx).await;
                bail!("the handover did not finish; its journal:\n{journal}")
            }
        }
    }
}

/// Copies a file or a tree (no links followed out: the stand-in's
/// node_modules holds plain files).
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(from).with_context(|| {
        format!(
            "{} is missing (npm ci --prefix tests/system/old-agent)",
            from.display()
        )
    })?;
    if meta.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if meta.is_file() {
        std::fs::copy(from, to)?;
    }
    Ok(())
}
