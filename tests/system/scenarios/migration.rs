//! Moving a box from the Node.js agent (issue 15, part B): a stand-in of the
//! upstream sync agent, laid out and run exactly as on the boxes
//! (`tests/system/old-agent/`: unit `neopro-sync-agent`, User=pi, sudo
//! without a password, its update_software), installs the migration bundle
//! through its own update_software; its self-restart starts the handover;
//! the box then runs neopro-runtime with the same site and content. Then the
//! same with a neopro-runtime that cannot reach the central: the Node agent
//! comes back by itself and its log says why. Runs after `package`, which
//! leaves neopro-runtime installed: it is purged first, as on a box that
//! never had it.
//!
//! Every case runs where `every_case` says (the host's architecture and
//! armhf, `scenarios::MIGRATION_EVERY_CASE`); elsewhere only what depends on
//! the architecture: the takeover with that architecture's `.deb` and Node.js
//! build, and the refusal of a bundle for another architecture. The power
//! cut, the bundle without its `.deb` and the deadline are the handover's
//! own logic, the same on every architecture.

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
/// The handover's root-owned record folder.
const RECORD: &str = "var/lib/neopro-handover";
const OLD_UNIT_FILE: &str = "etc/systemd/system/neopro-sync-agent.service";

/// A bundle the Node agent downloads: its bytes and the server holding them.
struct Bundle {
    archive: Vec<u8>,
    server: FileServer,
}

impl Bundle {
    fn load(dir: &Path, name: &str) -> anyhow::Result<Bundle> {
        let path = dir.join(format!("{name}.tar.gz"));
        let archive =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Bundle {
            server: FileServer::start(archive.clone(), Fault::None),
            archive,
        })
    }
}

pub async fn run(
    ctx: &Ctx,
    report: &Report,
    bundles: Option<&Path>,
    old_agent: &Path,
    every_case: bool,
) {
    let Some(dir) = bundles else {
        report.section("migration: skipped (runs on the host's architecture only)");
        return;
    };
    report.section("migration: from the Node.js agent");
    let loaded = ["good", "fixed", "no-deb", "other-arch"].map(|n| Bundle::load(dir, n));
    let [Ok(good), Ok(fixed), Ok(no_deb), Ok(other_arch)] = loaded else {
        let shown = loaded
            .iter()
            .filter_map(|b| b.as_ref().err().map(|e| format!("{e:#}")))
            .collect::<Vec<_>>()
            .join("; ");
        report
            .check("migration bundles", async { bail!(shown) })
            .await;
        return;
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
    let moved = report
        .check(
            "the Node agent installs the bundle: neopro-runtime takes over (same site, same content)",
            take_over(ctx, &good),
        )
        .await;
    if !moved {
        return;
    }
    report
        .check(
            "after the move, `systemctl restart neopro-sync-agent` (upstream's scripts) leaves it inactive: masked",
            restart_refused(ctx),
        )
        .await;
    if every_case && again_on_node(ctx, report, old_agent).await {
        report
            .check(
                "power cut during the handover, then a boot: the Node agent hands over again, to the end",
                power_cut(ctx, &good),
            )
            .await;
    }
    if again_on_node(ctx, report, old_agent).await {
        if every_case {
            report
                .check(
                    "a bundle without its .deb: the Node agent, waiting in the shim, heartbeats again",
                    early_give_back(ctx, &no_deb, "no neopro-runtime_"),
                )
                .await;
        }
        let other = if ctx.arch == "armhf" {
            "arm64"
        } else {
            "armhf"
        };
        report
            .check(
                "a bundle for another architecture: the Node agent heartbeats again",
                early_give_back(
                    ctx,
                    &other_arch,
                    &format!("the bundle is for {other}, this box is {}", ctx.arch),
                ),
            )
            .await;
    }
    if !every_case {
        println!(
            "== migration on {}: the power cut, the bundle without its .deb and the deadline \
             not run (the handover's own logic, run on the host's architecture and armhf)",
            ctx.arch
        );
        return;
    }
    let ready = report
        .check(
            "again on the Node.js agent, neopro-runtime pointed at a dead central, deadline 20 s",
            old_box(ctx, old_agent, Some(20)),
        )
        .await;
    if ready
        && report
            .check(
                "no authentication within the deadline: the Node agent comes back, the journal says why",
                give_back(ctx, &good),
            )
            .await
    {
        report
            .check(
                "the central reachable again: the same bundle is not tried again, a fixed one takes over",
                retry_fixed(ctx, &good, &fixed),
            )
            .await;
    }
    let _ = ctx
        .ok(&["rm", "-rf", &format!("/{DROPIN_DIR}/dead-central.conf")])
        .await;
}

/// Puts the box back on the Node.js agent before the next case (reported);
/// whether it is.
async fn again_on_node(ctx: &Ctx, report: &Report, old_agent: &Path) -> bool {
    report
        .check("again on the Node.js agent", old_box(ctx, old_agent, None))
        .await
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
    // A box that never migrated: no record, the old unit not masked.
    ctx.ok(&["rm", "-rf", &format!("/{RECORD}")]).await?;
    let _ = std::fs::remove_file(root.join(OLD_UNIT_FILE));
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
        root.join(OLD_UNIT_FILE),
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

fn update(bundle: &Bundle) -> Value {
    json!({
        "deploymentId": "dep-migration", "version": "1.0.0",
        "updateUrl": bundle.server.url("neopro-migration.tar.gz"),
        "packageSize": bundle.archive.len().to_string(),
        "checksum": sha256_hex(&bundle.archive),
        "isCritical": true,
    })
}

async fn take_over(ctx: &Ctx, bundle: &Bundle) -> anyhow::Result<String> {
    let root = ctx.container.root().to_owned();
    let site_before = std::fs::read_to_string(root.join(SITE_CONF))?;
    let video = root.join("home/pi/neopro/videos/Sponsors/logo.mp4");
    let video_before = std::fs::read(&video)?;
    let beats = ctx.central.count("heartbeat");
    let result = ctx
        .command("update_software", update(bundle), ctx.t(120))
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
    if old_enabled.trim() != "masked" || old_active != "inactive" {
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
        "neopro-runtime active as {user}; tookOverFrom {took_over}; {OLD} masked, inactive; \
         site.conf, videos and configuration.json kept"
    ))
}

/// A power cut in the middle of the handover (the script, dpkg and both
/// agents killed at once), then the box boots: the Node agent, still
/// enabled, starts the handover again, which finishes the move.
async fn power_cut(ctx: &Ctx, bundle: &Bundle) -> anyhow::Result<String> {
    let stamp = ctx.container.root().join(RECORD).join("handover-started");
    let result = ctx
        .command("update_software", update(bundle), ctx.t(120))
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
    if old_enabled.trim() != "masked" || old_active != "inactive" {
        bail!("{OLD}: {} / {old_active}", old_enabled.trim());
    }
    let runs = handover_journal(ctx)
        .await
        .matches("taking the box over from the Node.js agent")
        .count();
    Ok(format!(
        "cut during dpkg -i; after the boot the handover ran again (handover starts logged: {runs}) and took over; {OLD} masked"
    ))
}

async fn give_back(ctx: &Ctx, bundle: &Bundle) -> anyhow::Result<String> {
    let root = ctx.container.root().to_owned();
    let beats = ctx.central.count("heartbeat");
    let result = ctx
        .command("update_software", update(bundle), ctx.t(120))
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
    let journal = handover_journal(ctx).await;
    let Some(line) = journal
        .lines()
        .rev()
        .find(|l| l.contains("did not authenticate within 20 s"))
    else {
        bail!("no reason in the handover's journal:\n{journal}");
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
    let enabled = ctx.exec(&["systemctl", "is-enabled", OLD]).await?.stdout;
    if enabled.trim() != "enabled" {
        bail!("{OLD} is {} after the rollback", enabled.trim());
    }
    Ok(format!(
        "given back after {:.0} s; {OLD} enabled, heartbeating; journal: {}",
        started.elapsed().as_secs_f64(),
        line.trim()
    ))
}

/// A handover that fails before it stopped the Node agent (issue 24, point
/// 1): the agent, waiting in the shim, runs again within a bounded time,
/// and nothing was installed.
async fn early_give_back(ctx: &Ctx, bundle: &Bundle, reason: &str) -> anyhow::Result<String> {
    let record = ctx.container.root().join(RECORD).join("handover-done");
    let before = std::fs::read_to_string(&record).unwrap_or_default();
    let result = ctx
        .command("update_software", update(bundle), ctx.t(120))
        .await?;
    success(&result).context("the Node agent's update_software")?;
    // The record changes when this handover gives the box back.
    let deadline = tokio::time::Instant::now() + ctx.t(120);
    let outcome = loop {
        let now = std::fs::read_to_string(&record).unwrap_or_default();
        if !now.is_empty() && now != before {
            break now;
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the handover recorded nothing; its journal:\n{}",
                handover_journal(ctx).await
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    let first = outcome.lines().next().unwrap_or_default();
    if !first.starts_with("rolled back: ") || !first.contains(reason) {
        bail!("the handover recorded: {outcome}");
    }
    let given_back = std::time::Instant::now();
    let beats = ctx.central.count("heartbeat");
    old_agent_heartbeat(ctx, beats).await?;
    let waited = given_back.elapsed();
    if waited > ctx.t(30) {
        bail!("the Node agent heartbeated only {waited:?} after the rollback");
    }
    if ctx.exec(&["dpkg", "-s", "neopro-runtime"]).await?.code == 0 {
        bail!("neopro-runtime was installed");
    }
    if ctx
        .container
        .root()
        .join(SYNC)
        .join("src/commands.js")
        .exists()
    {
        bail!("the shim is still in src/commands.js");
    }
    Ok(format!(
        "{first}; the Node agent heartbeated {:.1} s later; nothing installed, the shim removed",
        waited.as_secs_f64()
    ))
}

/// `systemctl restart neopro-sync-agent`, as upstream's deploy-remote.sh,
/// setup-new-club.sh and setup-remote-club.sh run it whenever the unit
/// exists (issue 24, point 3): refused, the Node agent stays inactive.
async fn restart_refused(ctx: &Ctx) -> anyhow::Result<String> {
    let out = ctx
        .exec(&["systemctl", "restart", "neopro-sync-agent"])
        .await?;
    if out.code == 0 {
        bail!("systemctl restart neopro-sync-agent succeeded");
    }
    let active = ctx.is_active(OLD).await?;
    if active != "inactive" {
        bail!("{OLD} is {active}");
    }
    ctx.wait_active(AGENT, ctx.t(10)).await?;
    Ok(format!(
        "refused ({}); {OLD} {active}, neopro-runtime active",
        out.text()
    ))
}

/// After a rollback (issue 24, point 2): the same bundle deployed again is
/// not tried again (the Node agent says why and runs on); a bundle with
/// another package runs the handover, which takes over.
async fn retry_fixed(ctx: &Ctx, same: &Bundle, fixed: &Bundle) -> anyhow::Result<String> {
    let root = ctx.container.root().to_owned();
    std::fs::remove_file(root.join(DROPIN_DIR).join("dead-central.conf"))?;
    let conf_path = root.join(SITE_CONF);
    let conf: String = std::fs::read_to_string(&conf_path)?
        .lines()
        .filter(|l| !l.starts_with("MIGRATION_DEADLINE_SECS="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&conf_path, conf)?;
    ctx.ok(&["systemctl", "daemon-reload"]).await?;
    let record = root.join(RECORD).join("handover-done");
    let before = std::fs::read_to_string(&record)?;
    let runs = |j: &str| j.matches("taking the box over").count();
    let handovers = runs(&handover_journal(ctx).await);
    let says = "neopro-runtime handover: rolled back: neopro-runtime did not authenticate";
    let said_before = ctx.journal(OLD).await?.matches(says).count();

    let result = ctx
        .command("update_software", update(same), ctx.t(120))
        .await?;
    success(&result).context("the Node agent's update_software")?;
    // The restarted Node agent loads the shim, which finds the rollback of
    // this package and runs on: said in its journal.
    let deadline = tokio::time::Instant::now() + ctx.t(60);
    let said = loop {
        let journal = ctx.journal(OLD).await?;
        if journal.matches(says).count() > said_before
            && let Some(line) = journal.lines().rev().find(|l| l.contains(says))
        {
            break line.to_owned();
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("the Node agent never said it runs on:\n{journal}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    let beats = ctx.central.count("heartbeat");
    old_agent_heartbeat(ctx, beats).await?;
    if std::fs::read_to_string(&record)? != before {
        bail!("the record changed: {}", std::fs::read_to_string(&record)?);
    }
    if runs(&handover_journal(ctx).await) != handovers {
        bail!("the handover ran again for the same package");
    }

    take_over(ctx, fixed).await?;
    Ok(format!(
        "same bundle: not run again, the Node agent said \"{}\"; the fixed bundle took over",
        said.trim()
    ))
}

/// Waits until the handover's record starts with `want` (a record left by
/// an earlier handover may be there first). The handover is a shell script
/// with no event to await: its file is polled, 2 min at most.
async fn handover_done(ctx: &Ctx, want: &str) -> anyhow::Result<()> {
    let path = ctx.container.root().join(RECORD).join("handover-done");
    let deadline = tokio::time::Instant::now() + ctx.t(120);
    loop {
        let done = std::fs::read_to_string(&path).unwrap_or_default();
        if done.starts_with(want) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let journal = handover_journal(ctx).await;
            bail!(
                "the handover did not record '{want}' (its record: {:?}); its journal:\n{journal}",
                done.trim()
            )
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
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
