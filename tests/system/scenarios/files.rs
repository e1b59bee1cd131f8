//! The NEOPRO files from the agent's side and the web app's: config sync,
//! expiration and the file log work (the agent can enter /home/pi/neopro);
//! get_logs reads the real journal; what the agent writes — also into
//! folders the app made later with its own umask — the app can read; the
//! agent's state stays private.

use super::{AGENT, Ctx, NEOPRO, success};
use crate::report::Report;
use anyhow::{Context, bail};
use neopro_e2e::http::{Fault, FileServer};
use neopro_runtime::store::hash::sha256_hex;
use serde_json::{Value, json};

pub async fn run(ctx: &Ctx, report: &Report) {
    report.section("files: config sync, expiration, logs, app-readable writes");
    report
        .check("config sync sends configuration.json", config_sync(ctx))
        .await;
    report
        .check("expiration removes the expired video", expiration(ctx))
        .await;
    report
        .check("file log written to LOG_PATH", file_log(ctx))
        .await;
    report
        .check(
            "get_logs neopro-app returns real journal lines",
            get_logs_app(ctx),
        )
        .await;
    report
        .check(
            "get_logs of the agent's unit, also as neopro-sync-agent",
            get_logs_agent(ctx),
        )
        .await;
    report
        .check(
            "deploy_video into a folder the app created later (umask 022), readable by pi",
            deploy_into_later_folder(ctx),
        )
        .await;
    report
        .check(
            "update_config: pi can still read and write configuration.json",
            update_config(ctx),
        )
        .await;
    report
        .check(
            "the agent's state is private to the agent",
            state_private(ctx),
        )
        .await;
    report
        .check(
            "no Permission denied in the agent's journal",
            no_permission_denied(ctx),
        )
        .await;
}

async fn config_sync(ctx: &Ctx) -> anyhow::Result<String> {
    let sync = ctx
        .central
        .find(
            "sync_local_state",
            |s| s["config"]["categories"].is_array(),
            ctx.t(30),
        )
        .await
        .context("no sync_local_state carrying configuration.json")?;
    Ok(format!("configHash {}", sync["configHash"]))
}

async fn expiration(ctx: &Ctx) -> anyhow::Result<String> {
    // The fixture's video "But" expired in 2020; the job runs at start.
    let path = format!("{NEOPRO}/webapp/configuration.json");
    let deadline = tokio::time::Instant::now() + ctx.t(30);
    loop {
        let config = ctx.ok(&["cat", &path]).await?;
        if !config.contains("\"But\"") {
            return Ok("the expired video left configuration.json".to_owned());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("configuration.json still lists the expired video:\n{config}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

async fn file_log(ctx: &Ctx) -> anyhow::Result<String> {
    let path = format!("{NEOPRO}/logs/sync-agent.log");
    let out = ctx.exec(&["stat", "-c", "%U:%G %a %s", &path]).await?;
    if out.code != 0 {
        bail!("{path}: {}", out.text());
    }
    let lines = ctx.ok(&["wc", "-l", &path]).await?;
    let n: u64 = lines
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if n == 0 {
        bail!("{path} is empty");
    }
    Ok(format!("{path}: {} , {n} lines", out.stdout.trim()))
}

fn log_lines(result: &Value) -> Vec<String> {
    match &result["logs"] {
        Value::Array(a) => a
            .iter()
            .map(|l| {
                l.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| l.to_string())
            })
            .collect(),
        Value::String(s) => s.lines().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

async fn get_logs_app(ctx: &Ctx) -> anyhow::Result<String> {
    let result = ctx
        .command(
            "get_logs",
            json!({"service": "neopro-app", "lines": 20}),
            ctx.t(30),
        )
        .await?;
    let lines = log_lines(success(&result)?);
    if !lines.iter().any(|l| l.contains("NEOPRO web app")) {
        bail!("no journal line of neopro-app: {lines:?}");
    }
    Ok(format!(
        "{} lines, e.g. {}",
        lines.len(),
        lines.last().cloned().unwrap_or_default()
    ))
}

async fn get_logs_agent(ctx: &Ctx) -> anyhow::Result<String> {
    let mut shown = Vec::new();
    for service in ["neopro-runtime", "neopro-sync-agent"] {
        let result = ctx
            .command(
                "get_logs",
                json!({"service": service, "lines": 50}),
                ctx.t(30),
            )
            .await?;
        let lines = log_lines(success(&result)?);
        if lines.is_empty() {
            bail!("get_logs {service} returned no line: {result}");
        }
        shown.push(format!("{service}: {} lines", lines.len()));
    }
    Ok(shown.join(", "))
}

async fn deploy_into_later_folder(ctx: &Ctx) -> anyhow::Result<String> {
    // The web app (user pi, umask 022) makes a category folder after install.
    let made = ctx
        .as_user(
            "pi",
            &[
                "sh",
                "-c",
                "umask 022 && mkdir -p /home/pi/neopro/videos/Later",
            ],
        )
        .await?;
    if made.code != 0 {
        bail!("pi cannot make the folder: {}", made.text());
    }
    let body = b"a video deployed after the app made its folder".to_vec();
    let server = FileServer::start(body.clone(), Fault::None);
    let result = ctx
        .command(
            "deploy_video",
            json!({
                "deploymentId": "dep-sys", "videoId": "vid-sys",
                "videoUrl": server.url("later.mp4"), "filename": "later.mp4",
                "originalName": "Later.mp4", "category": "Later", "subcategory": null,
                "checksum": sha256_hex(&body),
            }),
            ctx.t(60),
        )
        .await?;
    let answer = success(&result)?;
    let rel = answer["path"]
        .as_str()
        .with_context(|| format!("no path in {answer}"))?;
    if !rel.starts_with("videos/Later/") {
        bail!("deployed to {rel}, not into videos/Later/");
    }
    let file = format!("{NEOPRO}/{rel}");
    let read = ctx.as_user("pi", &["cat", &file]).await?;
    if read.code != 0 || read.stdout.as_bytes() != body.as_slice() {
        bail!("pi cannot read {file}: {}", read.text());
    }
    let stat = ctx.ok(&["stat", "-c", "%U:%G %a", &file]).await?;
    Ok(format!("{file} {}", stat.trim()))
}

async fn update_config(ctx: &Ctx) -> anyhow::Result<String> {
    let path = format!("{NEOPRO}/webapp/configuration.json");
    let mut config: Value = serde_json::from_str(&ctx.ok(&["cat", &path]).await?)?;
    config["remote"]["title"] = json!("Télécommande mise à jour");
    let result = ctx
        .command(
            "update_config",
            json!({"mode": "replace", "configuration": config}),
            ctx.t(30),
        )
        .await?;
    success(&result)?;
    let read = ctx.as_user("pi", &["cat", &path]).await?;
    if read.code != 0 || !read.stdout.contains("Télécommande mise à jour") {
        bail!("pi cannot read the new {path}: {}", read.text());
    }
    // The web app writes this file too.
    let write = ctx
        .as_user(
            "pi",
            &[
                "sh",
                "-c",
                "test -w /home/pi/neopro/webapp/configuration.json",
            ],
        )
        .await?;
    if write.code != 0 {
        bail!("pi can no longer write {path}");
    }
    let stat = ctx.ok(&["stat", "-c", "%U:%G %a", &path]).await?;
    Ok(format!("{path} {}", stat.trim()))
}

async fn state_private(ctx: &Ctx) -> anyhow::Result<String> {
    let state = "/var/lib/neopro-runtime";
    let listing = ctx.as_user("pi", &["ls", state]).await?;
    if listing.code == 0 {
        bail!("pi can list {state}: {}", listing.stdout.trim());
    }
    let own = ctx.as_user("neopro", &["ls", state]).await?;
    if own.code != 0 {
        bail!("the agent cannot list its own state: {}", own.text());
    }
    let stat = ctx.ok(&["stat", "-c", "%U:%G %a", state]).await?;
    Ok(format!("{state} {}; pi: {}", stat.trim(), listing.text()))
}

async fn no_permission_denied(ctx: &Ctx) -> anyhow::Result<String> {
    let journal = ctx.journal(AGENT).await?;
    let denied: Vec<&str> = journal
        .lines()
        .filter(|l| l.contains("Permission denied") || l.contains("No local configuration"))
        .collect();
    if !denied.is_empty() {
        bail!("{}", denied.join("\n"));
    }
    Ok(format!("{} journal lines checked", journal.lines().count()))
}
