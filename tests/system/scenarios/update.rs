//! update_software (critical, runs now) against the real units: a good
//! release stops and starts neopro-app / neopro-admin and swaps the files; a
//! release whose app cannot start, or crashes seconds after starting, is
//! rolled back byte for byte; an agent killed mid-update finishes or rolls
//! back after systemd restarts it, and reports under the original id.

use super::{AGENT, Ctx, NEOPRO, failure, success};
use crate::report::Report;
use anyhow::bail;
use neopro_e2e::http::{Fault, FileServer};
use neopro_e2e::release::{Item, tar_gz};
use neopro_runtime::store::hash::sha256_hex;
use serde_json::{Value, json};

pub async fn run(ctx: &Ctx, report: &Report) {
    report.section("update: update_software with the real units");
    report.check("a good release is installed", good(ctx)).await;
    report
        .check(
            "a release whose app cannot start is rolled back byte-identical",
            bad(ctx, "fail-start", "3.0.0"),
        )
        .await;
    report
        .check(
            "a release whose app crashes 2 s after start is rolled back",
            bad(ctx, "crash-after-start", "4.0.0"),
        )
        .await;
    report
        .check(
            "agent killed (SIGKILL) mid-update: result under the original id",
            killed_mid_update(ctx),
        )
        .await;
}

/// The installed release (everything but the club's and the agent's own
/// files), one line per file with its sha256, then the folders.
const SNAPSHOT: &str = "cd /home/pi/neopro && \
    find . \\( -path ./backups -o -path ./logs -o -path ./data -o -path ./videos \\) -prune \
    -o -type f -print0 | sort -z | xargs -0 sha256sum && \
    find . \\( -path ./backups -o -path ./logs -o -path ./data -o -path ./videos \\) -prune \
    -o -type d -print | sort";

async fn snapshot(ctx: &Ctx) -> anyhow::Result<String> {
    ctx.sh(SNAPSHOT).await?.ok("snapshot of the NEOPRO root")
}

fn release(version: &str, marker: Option<&str>, filler: usize) -> Vec<u8> {
    let index = format!("<html>release {version}</html>\n");
    let server = format!("console.log(\"server {version}\")\n");
    let admin = format!("console.log(\"admin {version}\")\n");
    // Incompressible filler to make the download take a while when wanted.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let noise: Vec<u8> = (0..filler)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let mut items = vec![
        Item::Dir("./"),
        Item::Dir("./webapp/"),
        Item::File("./webapp/index.html", index.as_bytes()),
        Item::Dir("./server/"),
        Item::File("./server/app.js", server.as_bytes()),
        Item::Dir("./admin/"),
        Item::File("./admin/app.js", admin.as_bytes()),
    ];
    if let Some(m) = marker {
        items.push(Item::File(
            match m {
                "fail-start" => "./webapp/fail-start",
                _ => "./webapp/crash-after-start",
            },
            b"system-test hook",
        ));
    }
    if filler > 0 {
        items.push(Item::File("./webapp/assets.bin", &noise));
    }
    tar_gz(&items)
}

fn update_data(server: &FileServer, archive: &[u8], version: &str) -> Value {
    json!({
        "deploymentId": format!("dep-{version}"), "version": version,
        "updateUrl": server.url("release.tar.gz"),
        "packageSize": archive.len().to_string(),
        "checksum": sha256_hex(archive),
        "isCritical": true,
    })
}

async fn version(ctx: &Ctx) -> anyhow::Result<String> {
    Ok(ctx
        .ok(&["cat", &format!("{NEOPRO}/VERSION")])
        .await?
        .trim()
        .to_owned())
}

async fn units_active(ctx: &Ctx) -> anyhow::Result<()> {
    for unit in ["neopro-app.service", "neopro-admin.service"] {
        ctx.wait_active(unit, ctx.t(30)).await?;
    }
    Ok(())
}

async fn good(ctx: &Ctx) -> anyhow::Result<String> {
    let archive = release("2.0.0", None, 0);
    let server = FileServer::start(archive.clone(), Fault::None);
    let app = ctx.prop("neopro-app.service", "InvocationID").await?;
    let admin = ctx.prop("neopro-admin.service", "InvocationID").await?;
    let result = ctx
        .command(
            "update_software",
            update_data(&server, &archive, "2.0.0"),
            ctx.t(240),
        )
        .await?;
    let answer = success(&result)?;
    let index = ctx
        .ok(&["cat", &format!("{NEOPRO}/webapp/index.html")])
        .await?;
    if !index.contains("release 2.0.0") {
        bail!("webapp/index.html was not swapped: {index}");
    }
    let v = version(ctx).await?;
    if v != "2.0.0" {
        bail!("VERSION is {v}");
    }
    units_active(ctx).await?;
    let journal = ctx.journal("neopro-app.service").await?;
    let app_after = ctx.prop("neopro-app.service", "InvocationID").await?;
    let admin_after = ctx.prop("neopro-admin.service", "InvocationID").await?;
    if app == app_after || admin == admin_after || !journal.contains("Stopped") {
        bail!("the units were not really stopped and started");
    }
    Ok(format!("{answer}"))
}

async fn bad(ctx: &Ctx, marker: &str, version_to: &str) -> anyhow::Result<String> {
    units_active(ctx).await?;
    let before = snapshot(ctx).await?;
    let was = version(ctx).await?;
    let archive = release(version_to, Some(marker), 0);
    let server = FileServer::start(archive.clone(), Fault::None);
    let result = ctx
        .command(
            "update_software",
            update_data(&server, &archive, version_to),
            ctx.t(300),
        )
        .await?;
    let error = failure(&result)?;
    if !error.contains("Rollback") || error.contains("..") {
        bail!("error does not report a clean rollback: {error}");
    }
    units_active(ctx).await?;
    let after = snapshot(ctx).await?;
    if before != after {
        bail!(
            "the install is not byte-identical after the rollback:\nbefore:\n{before}\nafter:\n{after}"
        );
    }
    let v = version(ctx).await?;
    if v != was {
        bail!("VERSION is {v}, was {was}");
    }
    Ok(error)
}

async fn killed_mid_update(ctx: &Ctx) -> anyhow::Result<String> {
    units_active(ctx).await?;
    let before = snapshot(ctx).await?;
    let was = version(ctx).await?;
    let archive = release("5.0.0", None, 768 * 1024);
    let server = FileServer::start(
        archive.clone(),
        Fault::Slow {
            chunk: 16 * 1024,
            pause_ms: 100,
        },
    );
    let id = ctx.id("update-killed");
    let progress_seen = ctx.central.count("update_progress");
    ctx.send(
        &id,
        "update_software",
        update_data(&server, &archive, "5.0.0"),
    )
    .await?;
    // Kill once the download is under way.
    let deadline = tokio::time::Instant::now() + ctx.t(60);
    loop {
        let progress = ctx.central.all("update_progress");
        if progress.iter().skip(progress_seen).any(|p| {
            p["progress"].as_u64().is_some_and(|n| n >= 10) && p["version"] == json!("5.0.0")
        }) {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("no update_progress ≥ 10 % for 5.0.0");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let pid = super::install::main_pid(ctx).await?;
    ctx.ok(&["systemctl", "kill", "-s", "KILL", AGENT]).await?;
    let result = ctx.result(&id, ctx.t(300)).await?;
    let new_pid = super::install::main_pid(ctx).await?;
    if new_pid == pid {
        bail!("the agent was not restarted");
    }
    units_active(ctx).await?;
    let v = version(ctx).await?;
    let outcome = if result["status"] == json!("success") {
        if v != "5.0.0" {
            bail!("success reported but VERSION is {v}");
        }
        format!("completed: {}", result["result"])
    } else {
        let after = snapshot(ctx).await?;
        if after != before || v != was {
            bail!("rolled back ({}) but the install changed", result["error"]);
        }
        format!("rolled back: {}", result["error"])
    };
    let restarts = ctx.prop(AGENT, "NRestarts").await?;
    Ok(format!(
        "pid {pid} killed, now {new_pid} (NRestarts {restarts}); {outcome}"
    ))
}
