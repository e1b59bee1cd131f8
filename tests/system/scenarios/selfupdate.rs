//! The agent updates itself under the real, hardened unit (issue #15 part
//! A): a signed agent release sent through `update_software` is staged in
//! `/var/lib/neopro-runtime/agent/`, systemd restarts the unit, the launcher
//! execs the new binary (same PID) and the new agent reports success under
//! the original id; a release whose binary crashes at start is dropped after
//! two starts (Restart=always) and the previous agent reports the failure;
//! `rollback_update` brings the packaged agent back through a restart; a
//! committed slot that crashes at every start gives way to the packaged
//! agent after 3 starts. The test adds UPDATE_TRUSTED_KEYS to site.conf and
//! removes it, and the slots, afterwards.
//!
//! The new release's binary is a wrapper around the packaged one that
//! reports another version (`NEOPRO_RUNTIME_TEST_VERSION`, honoured by dev
//! builds only): run with `--dev`.

use super::{AGENT, Ctx, failure, success};
use crate::report::Report;
use anyhow::{Context, bail};
use neopro_e2e::http::{Fault, FileServer};
use neopro_e2e::release::{Item, tar_gz};
use neopro_runtime::store::hash::sha256_hex;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

const STATE: &str = "/var/lib/neopro-runtime/agent/state.json";
// Below the box's app (1.0.0, then 2.0.0 after the update group), as agent
// releases are in the fleet (agent 0.x, app 2.x): the pre-check must not
// take them for app downgrades.
const GOOD: &str = "0.9.9";
const CRASHING: &str = "0.9.10";
const CRASH_LOOP: &str = "0.9.11";
/// Older than the packaged agent and the app alike.
const OLDER: &str = "0.0.1";

/// `dev_build`: the packaged agent is a dev build, which honours
/// `NEOPRO_RUNTIME_TEST_VERSION`; a release build never reports a version
/// other than its own, so there the good-release check cannot run (CI runs
/// this group once more with `--dev`).
pub async fn run(ctx: &Ctx, report: &Report, dev_build: bool) {
    report.section("selfupdate: the agent updates itself under systemd");
    let original = match std::fs::read_to_string(site_conf(ctx)) {
        Ok(text) => text,
        Err(e) => {
            let _ = report
                .check("site.conf readable", async { Err(anyhow::Error::from(e)) })
                .await;
            return;
        }
    };
    if !report
        .check(
            "UPDATE_TRUSTED_KEYS added to site.conf",
            trust_key(ctx, &original),
        )
        .await
    {
        let _ = report
            .check("site.conf restored", restore(ctx, &original))
            .await;
        return;
    }
    report
        .check(
            "unsigned, wrongly signed, foreign and older agent releases: refused by name, nothing staged",
            refusals(ctx),
        )
        .await;
    if dev_build {
        let committed = report
            .check(
                "a signed agent release: restarted into it, success under the original id",
                good(ctx),
            )
            .await;
        if committed {
            report
                .check(
                    "rollback_update: restarted into the packaged agent, which reports",
                    rollback(ctx),
                )
                .await;
        }
    } else {
        println!(
            "     (the good-release check needs a dev build: `cargo xtask system-test --dev --scenario selfupdate`)"
        );
    }
    report
        .check(
            "a release that crashes at start: dropped after 2 starts, failure reported",
            crashing(ctx),
        )
        .await;
    report
        .check(
            "a committed slot that crashes at every start: the packaged agent after 3 starts",
            crash_loop(ctx),
        )
        .await;
    report
        .check(
            "keys and slots removed: the packaged agent runs again",
            restore(ctx, &original),
        )
        .await;
}

fn key() -> anyhow::Result<Ed25519KeyPair> {
    Ed25519KeyPair::from_seed_unchecked(&[33u8; 32]).map_err(|e| anyhow::anyhow!("key: {e}"))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn site_conf(ctx: &Ctx) -> std::path::PathBuf {
    ctx.container.root().join("etc/neopro/site.conf")
}

async fn restart_and_wait(ctx: &Ctx) -> anyhow::Result<()> {
    let auths = ctx.central.count("authenticate");
    ctx.ok(&["systemctl", "restart", AGENT]).await?;
    if !ctx
        .central
        .wait_more_than("authenticate", auths, ctx.t(60))
        .await
    {
        bail!("the restarted agent did not authenticate");
    }
    ctx.wait_connected(ctx.t(30)).await
}

async fn trust_key(ctx: &Ctx, original: &str) -> anyhow::Result<String> {
    let path = site_conf(ctx);
    let public = hex_of(key()?.public_key().as_ref());
    // rollback_update is not in the default list (upstream's): allowed here.
    let allowed = neopro_runtime::config::DEFAULT_ALLOWED_COMMANDS.join(",");
    std::fs::write(
        &path,
        format!(
            "{original}\nUPDATE_TRUSTED_KEYS={public}\nAGENT_UPDATE_DEADLINE_SECS=120\nALLOWED_COMMANDS={allowed},rollback_update\n"
        ),
    )?;
    restart_and_wait(ctx).await?;
    Ok(format!("UPDATE_TRUSTED_KEYS={public}"))
}

fn agent_release(arch: &str, version: &str, binary: &str) -> Vec<u8> {
    let manifest = json!({"kind": "agent-release", "arch": arch, "version": version}).to_string();
    tar_gz(&[
        Item::File("agent-release.json", manifest.as_bytes()),
        Item::Dir("bin/"),
        Item::File("bin/neopro-runtime", binary.as_bytes()),
    ])
}

fn signed_update(server: &FileServer, archive: &[u8], version: &str) -> anyhow::Result<Value> {
    let sha = sha256_hex(archive);
    let text = neopro_runtime::signing::releases::signed_text(version, &sha);
    Ok(json!({
        "deploymentId": format!("dep-agent-{version}"), "version": version,
        "updateId": format!("upd-agent-{version}"),
        "updateUrl": server.url("agent.tar.gz"),
        "packageSize": archive.len().to_string(),
        "checksum": sha,
        "signature": hex_of(key()?.sign(text.as_bytes()).as_ref()),
        "isCritical": true,
    }))
}

async fn agent_state(ctx: &Ctx) -> anyhow::Result<Value> {
    let text = ctx.ok(&["cat", STATE]).await?;
    serde_json::from_str(&text).with_context(|| format!("{STATE}: {text}"))
}

async fn good(ctx: &Ctx) -> anyhow::Result<String> {
    let wrapper = format!(
        "#!/bin/sh\nNEOPRO_RUNTIME_TEST_VERSION={GOOD} exec /usr/bin/neopro-runtime \"$@\"\n"
    );
    let archive = agent_release(&ctx.arch, GOOD, &wrapper);
    let server = FileServer::start(archive.clone(), Fault::None);
    let pid = super::install::main_pid(ctx).await?;
    let id = ctx.id("agent-update");
    ctx.send(
        &id,
        "update_software",
        signed_update(&server, &archive, GOOD)?,
    )
    .await?;
    let result = ctx.result(&id, ctx.t(180)).await?;
    let result = match success(&result) {
        Ok(r) => r.clone(),
        Err(e) if e.to_string().contains("reports version") => {
            bail!("{e} (the release binary must be a dev build: run with --dev)")
        }
        Err(e) => return Err(e),
    };
    if result["version"] != json!(GOOD) || result["agentUpdate"] != json!(true) {
        bail!("unexpected result {result}");
    }
    let new_pid = super::install::main_pid(ctx).await?;
    if new_pid == pid {
        bail!("the unit was not restarted (MainPID {pid})");
    }
    let state = agent_state(ctx).await?;
    if state["committed"] != json!(GOOD) || !state["trial"].is_null() {
        bail!("{STATE} after the commit: {state}");
    }
    heartbeat_reports(ctx, GOOD).await?;
    let exe = ctx
        .ok(&["readlink", &format!("/proc/{new_pid}/exe")])
        .await
        .unwrap_or_default();
    Ok(format!(
        "pid {pid} → {new_pid} ({}), committed {GOOD}, heartbeat agentVersion {GOOD}",
        exe.trim()
    ))
}

/// Four bad agent releases through the running agent: each refused with
/// its reason, no restart, no slot, no state.
async fn refusals(ctx: &Ctx) -> anyhow::Result<String> {
    let pid = super::install::main_pid(ctx).await?;
    let arch = ctx.arch.clone();
    let foreign = if arch == "armhf" { "arm64" } else { "armhf" };
    let good = agent_release(&arch, GOOD, "#!/bin/sh\nexit 1\n");
    let no_signature: fn(&mut Value) = |d| {
        if let Some(map) = d.as_object_mut() {
            map.remove("signature");
        }
    };
    let forged: fn(&mut Value) = |d| d["signature"] = json!("ab".repeat(64));
    let as_signed: fn(&mut Value) = |_| {};
    let packaged = packaged_version(ctx).await?;
    let app = ctx
        .ok(&["cat", &format!("{}/VERSION", super::NEOPRO)])
        .await?
        .trim()
        .to_owned();
    let cases = [
        (
            good.clone(),
            GOOD,
            no_signature,
            // Refused once downloaded: no signature field and no signed
            // manifest in the archive.
            format!(
                "agent release {GOOD} refused: this box only installs signed updates (UPDATE_TRUSTED_KEYS in site.conf) and this update has no signature: neither a signature field in the command nor a signed manifest (neopro-release-manifest.json) as the archive's first entry"
            ),
        ),
        (
            good,
            GOOD,
            forged,
            format!(
                "agent release {GOOD} refused: the update signature does not match any key of UPDATE_TRUSTED_KEYS"
            ),
        ),
        (
            agent_release(foreign, GOOD, "#!/bin/sh\nexit 1\n"),
            GOOD,
            as_signed,
            format!("agent release {GOOD} refused: it is built for {foreign}, this box is {arch}"),
        ),
        (
            agent_release(&arch, OLDER, "#!/bin/sh\nexit 1\n"),
            OLDER,
            as_signed,
            // Older than either kind of release installed: refused before
            // the download.
            format!(
                "refusing to install {OLDER}: it is older than both the installed release {app} and the running agent {packaged}. Downgrades are refused unless UPDATE_ALLOW_DOWNGRADE=true in site.conf"
            ),
        ),
    ];
    for (archive, version, edit, expected) in cases {
        let server = FileServer::start(archive.clone(), Fault::None);
        let mut data = signed_update(&server, &archive, version)?;
        edit(&mut data);
        let id = ctx.id("agent-refused");
        ctx.send(&id, "update_software", data).await?;
        let error = failure(&ctx.result(&id, ctx.t(60)).await?)?;
        if error != expected {
            bail!("error: {error}\nexpected: {expected}");
        }
    }
    if super::install::main_pid(ctx).await? != pid {
        bail!("the agent restarted");
    }
    let listing = ctx
        .exec(&["ls", "-A", "/var/lib/neopro-runtime/agent"])
        .await?;
    if !listing.stdout.trim().is_empty() {
        bail!("the agent folder holds: {}", listing.stdout.trim());
    }
    Ok(format!(
        "4 refusals by name, pid {pid} kept, nothing staged"
    ))
}

/// Waits for a heartbeat that reports `version` as the running agent.
async fn heartbeat_reports(ctx: &Ctx, version: &str) -> anyhow::Result<()> {
    let heartbeat = ctx
        .central
        .find(
            "heartbeat",
            |h| h["versionInfo"]["agentVersion"] == json!(version),
            ctx.t(30),
        )
        .await;
    if heartbeat.is_none() {
        bail!("no heartbeat with agentVersion {version}");
    }
    Ok(())
}

/// The packaged agent's version.
async fn packaged_version(ctx: &Ctx) -> anyhow::Result<String> {
    let packaged = ctx.ok(&["/usr/bin/neopro-runtime", "--version"]).await?;
    Ok(packaged.split_whitespace().last().unwrap_or("").to_owned())
}

/// After [`good`]: `rollback_update` of that update.
async fn rollback(ctx: &Ctx) -> anyhow::Result<String> {
    let packaged = packaged_version(ctx).await?;
    let pid = super::install::main_pid(ctx).await?;
    let id = ctx.id("agent-rollback");
    ctx.send(
        &id,
        "rollback_update",
        json!({"canaryDeploymentId": format!("dep-agent-{GOOD}"), "updateId": format!("upd-agent-{GOOD}")}),
    )
    .await?;
    let result = ctx.result(&id, ctx.t(120)).await?;
    let result = success(&result)?.clone();
    if result["version"] != json!(packaged) || result["rolledBackVersion"] != json!(GOOD) {
        bail!("unexpected result {result}");
    }
    let new_pid = super::install::main_pid(ctx).await?;
    if new_pid == pid {
        bail!("the unit was not restarted (MainPID {pid})");
    }
    let state = agent_state(ctx).await?;
    if !state["committed"].is_null() || !state["rolledBack"].is_null() {
        bail!("{STATE} after the rollback: {state}");
    }
    heartbeat_reports(ctx, &packaged).await?;
    Ok(format!("pid {pid} → {new_pid}, {GOOD} → {packaged}"))
}

/// A committed slot whose binary exits at once, as a bad release that
/// passed its trial could become (its file damaged later, say).
async fn crash_loop(ctx: &Ctx) -> anyhow::Result<String> {
    let packaged = packaged_version(ctx).await?;
    let slot = format!("/var/lib/neopro-runtime/agent/{CRASH_LOOP}/bin");
    ctx.ok(&["mkdir", "-p", &slot]).await?;
    std::fs::write(
        ctx.container
            .root()
            .join(slot.trim_start_matches('/'))
            .join("neopro-runtime"),
        "#!/bin/sh\necho crash-loop >&2\nexit 1\n",
    )?;
    let state = ctx.container.root().join(STATE.trim_start_matches('/'));
    std::fs::write(&state, json!({"committed": CRASH_LOOP}).to_string())?;
    ctx.ok(&["chmod", "0755", &format!("{slot}/neopro-runtime")])
        .await?;
    ctx.ok(&["chown", "-R", "neopro:pi", "/var/lib/neopro-runtime/agent"])
        .await?;
    let started = std::time::Instant::now();
    let auths = ctx.central.count("authenticate");
    // --no-block: the start job of a crashing binary fails, by design.
    ctx.ok(&["systemctl", "restart", "--no-block", AGENT])
        .await?;
    // Three starts 5 s apart (RestartSec), then the packaged agent.
    if !ctx
        .central
        .wait_more_than("authenticate", auths, ctx.t(90))
        .await
    {
        bail!("no agent authenticated after the crashing starts");
    }
    heartbeat_reports(ctx, &packaged).await?;
    let state = agent_state(ctx).await?;
    if !state["committed"].is_null() {
        bail!("{STATE} after the crash loop: {state}");
    }
    let journal = ctx.journal(AGENT).await?;
    let note = format!(
        "the committed agent {CRASH_LOOP} started 3 times in a row without staying up or authenticating: it is dropped, running the packaged agent {packaged}"
    );
    if !journal.contains(&note) {
        bail!("the journal does not say: {note}");
    }
    let crashes = journal.matches("crash-loop").count();
    if crashes != 3 {
        bail!("the crashing slot ran {crashes} times, not 3");
    }
    Ok(format!(
        "packaged agent {packaged} back after {:.0} s",
        started.elapsed().as_secs_f64()
    ))
}

/// The agent that comes back is the packaged one (any committed slot was
/// rolled back before).
async fn crashing(ctx: &Ctx) -> anyhow::Result<String> {
    let packaged = packaged_version(ctx).await?;
    let back = &packaged;
    let archive = agent_release(&ctx.arch, CRASHING, "#!/bin/sh\necho boom >&2\nexit 1\n");
    let server = FileServer::start(archive.clone(), Fault::None);
    let id = ctx.id("agent-update");
    let started = std::time::Instant::now();
    ctx.send(
        &id,
        "update_software",
        signed_update(&server, &archive, CRASHING)?,
    )
    .await?;
    // Two starts 5 s apart (RestartSec), then the previous agent.
    let result = ctx.result(&id, ctx.t(180)).await?;
    let error = failure(&result)?;
    let expected = format!(
        "agent update to {CRASHING} failed and agent {back} is back: the new agent {CRASHING} did not come up: started 2 times without authenticating"
    );
    if !error.starts_with(&expected) {
        bail!("error: {error}\nexpected it to start with: {expected}");
    }
    let state = agent_state(ctx).await?;
    if !state["committed"].is_null() || !state["trial"].is_null() || !state["failed"].is_null() {
        bail!("{STATE} after the failure: {state}");
    }
    let slot = ctx
        .exec(&[
            "test",
            "-e",
            &format!("/var/lib/neopro-runtime/agent/{CRASHING}"),
        ])
        .await?;
    if slot.code == 0 {
        bail!("the slot of {CRASHING} is still there");
    }
    Ok(format!(
        "reported after {:.0} s: {error}",
        started.elapsed().as_secs_f64()
    ))
}

async fn restore(ctx: &Ctx, original: &str) -> anyhow::Result<String> {
    std::fs::write(site_conf(ctx), original)?;
    ctx.ok(&["rm", "-rf", "/var/lib/neopro-runtime/agent"])
        .await?;
    restart_and_wait(ctx).await?;
    let version = packaged_version(ctx).await?;
    let heartbeats = ctx.central.count("heartbeat");
    let back = ctx
        .central
        .wait_more_than("heartbeat", heartbeats, ctx.t(30))
        .await;
    let last = ctx
        .central
        .all("heartbeat")
        .last()
        .cloned()
        .unwrap_or_default();
    if !back || last["versionInfo"]["agentVersion"] != json!(version) {
        bail!("the packaged agent {version} is not the one running: {last}");
    }
    Ok(format!("agentVersion {version}"))
}
