//! The agent updates itself (issue #15 part A): an agent release goes
//! through `update_software` like any release, is refused by name when it
//! is unsigned, for another architecture or older; a good one is staged,
//! the real binary's launcher runs it on trial, and the new agent sends the
//! update's result under the original command id once authenticated. A
//! new agent that crashes at start is dropped after two attempts and the
//! previous agent reports the failure. SIGKILL at each step of the switch
//! ends in a committed agent or the previous one, with the true result;
//! a committed agent that crashes at every start gives way to the packaged
//! one; `rollback_update` brings back the agent an update replaced.
// A broken fixture should stop the test loudly.
#![allow(clippy::expect_used)]

use neopro_e2e::Site;
use neopro_e2e::central::Central;
use neopro_e2e::fake_systemctl::FakeSystemctl;
use neopro_e2e::http::{Fault, FileServer};
use neopro_e2e::process::{AgentProcess, agent_binary, wait_for};
use neopro_e2e::release::{Item, names_in, snapshot, tar_gz};
use neopro_runtime::selfupdate::{own_arch, state::AgentState};
use neopro_runtime::store::hash::sha256_hex;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
pub(crate) const NEW: &str = "9.9.9";

fn key() -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[21u8; 32]).expect("key")
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn key_line() -> String {
    format!(
        "UPDATE_TRUSTED_KEYS={}",
        hex_of(key().public_key().as_ref())
    )
}

pub(crate) fn agent_release(version: &str, arch: &str, binary: &str) -> Vec<u8> {
    let manifest = json!({"kind": "agent-release", "arch": arch, "version": version}).to_string();
    tar_gz(&[
        Item::File("agent-release.json", manifest.as_bytes()),
        Item::Dir("bin"),
        Item::File("bin/neopro-runtime", binary.as_bytes()),
    ])
}

pub(crate) fn sign(version: &str, archive: &[u8]) -> String {
    let text = neopro_runtime::signing::releases::signed_text(version, &sha256_hex(archive));
    hex_of(key().sign(text.as_bytes()).as_ref())
}

fn update_data(server: &FileServer, archive: &[u8], version: &str, signed: bool) -> Value {
    let mut data = json!({
        "deploymentId": "dep-9", "updateId": "upd-9", "version": version,
        "updateUrl": server.url("agent.tar.gz"),
        "packageSize": archive.len().to_string(),
        "checksum": format!("sha256:{}", sha256_hex(archive)),
        // Critical: at once, not in the maintenance window.
        "isCritical": true,
    });
    if signed {
        data["signature"] = json!(sign(version, archive));
    }
    data
}

pub(crate) fn agent_state(site: &Site) -> Option<AgentState> {
    AgentState::load(&site.path("state/agent")).expect("readable agent state")
}

fn refusal(site: &Site, data: Value) -> String {
    let (kind, message) = neopro_e2e::error_of(site.run("update-software", data));
    format!("{kind}: {message}")
}

#[test]
fn unsigned_foreign_or_older_agent_releases_are_refused_by_name_and_change_nothing() {
    let fake = FakeSystemctl::temp();
    let site = Site::with_extra(&fake.conf_line());
    site.write("neopro/webapp/index.html", "v1 index");
    let good = agent_release(NEW, own_arch(), "#!/bin/sh\n");
    let server = FileServer::start(good.clone(), Fault::None);
    // No keys on the box: an agent release is never installed unsigned.
    assert_eq!(
        refusal(&site, update_data(&server, &good, NEW, true)),
        "not-permitted: agent release 9.9.9 refused: this box installs an agent release only when it is signed, and no UPDATE_TRUSTED_KEYS are set in site.conf"
    );

    assert_eq!(agent_state(&site), None, "no trial written");
    let site = Site::with_extra(&format!("{}\n{}", fake.conf_line(), key_line()));
    site.write("neopro/webapp/index.html", "v1 index");
    let before = snapshot(&site.path("neopro"), &[]);
    let mut forged = update_data(&server, &good, NEW, true);
    forged["signature"] = json!(sign("9.9.8", &good));
    assert_eq!(
        refusal(&site, forged),
        "not-permitted: agent release 9.9.9 refused: the update signature does not match any key of UPDATE_TRUSTED_KEYS"
    );
    assert_eq!(
        refusal(&site, update_data(&server, &good, NEW, false)),
        "not-permitted: agent release 9.9.9 refused: this box only installs signed updates (UPDATE_TRUSTED_KEYS in site.conf) and this update has no signature: neither a signature field in the command nor a signed manifest (neopro-release-manifest.json) as the archive's first entry"
    );
    let foreign_arch = if own_arch() == "armhf" {
        "arm64"
    } else {
        "armhf"
    };
    let foreign = agent_release(NEW, foreign_arch, "#!/bin/sh\n");
    let server_foreign = FileServer::start(foreign.clone(), Fault::None);
    assert_eq!(
        refusal(&site, update_data(&server_foreign, &foreign, NEW, true)),
        format!(
            "not-permitted: agent release 9.9.9 refused: it is built for {foreign_arch}, this box is {}",
            own_arch()
        )
    );
    let old = agent_release("0.0.1", own_arch(), "#!/bin/sh\n");
    let server_old = FileServer::start(old.clone(), Fault::None);
    assert_eq!(
        refusal(&site, update_data(&server_old, &old, "0.0.1", true)),
        format!(
            "not-permitted: agent release 0.0.1 refused: it is not newer than the packaged agent {v} (/usr/bin/neopro-runtime), which always wins; install an older .deb instead",
            v = env!("CARGO_PKG_VERSION")
        )
    );
    assert_eq!(snapshot(&site.path("neopro"), &[]), before, "app untouched");
    assert_eq!(agent_state(&site), None, "no trial written");
    let slots = names_in(&site.path("state/agent"));
    assert!(slots.is_empty(), "no slot left: {slots:?}");
    assert!(
        !site.path("state/staging/update").exists(),
        "no update journal left"
    );
}

/// A site for the real binary: the test central, the fake systemctl, the
/// trusted key, update_software allowed.
fn process_site(
    central: &Central,
    fake: &FakeSystemctl,
    extra: &str,
) -> (Site, std::path::PathBuf) {
    let site = Site::new();
    site.write("neopro/webapp/index.html", "v1 index");
    let conf = site.write_agent_conf(&central.url(), "site-1", "key-1");
    site.append_conf(&format!(
        "{}\n{}\nALLOWED_COMMANDS=update_software,rollback_update,get_system_info\nLOG_LEVEL=info\n{extra}\n",
        fake.conf_line(),
        key_line()
    ));
    (site, conf)
}

/// Stages `archive` through the running floor agent: the restart of the
/// agent's unit is asked, no result is sent, the trial is on disk.
async fn stage(
    central: &Central,
    fake: &FakeSystemctl,
    site: &Site,
    conf: &std::path::Path,
    archive: &[u8],
) {
    let server = FileServer::start(archive.to_vec(), Fault::None);
    let agent = AgentProcess::start(&agent_binary(), conf, Some("error"));
    central.nth("heartbeat", 1, WAIT).await;
    central.send_command(
        "u-1",
        "update_software",
        update_data(&server, archive, NEW, true),
    );
    wait_for("the agent's own restart", WAIT, || {
        fake.calls()
            .iter()
            .any(|c| c.contains("restart") && c.contains("neopro-runtime"))
    })
    .await;
    let trial = agent_state(site)
        .and_then(|s| s.trial)
        .expect("trial written");
    assert_eq!(
        (trial.version.as_str(), trial.command_id.as_str()),
        (NEW, "u-1")
    );
    assert_eq!(trial.attempts, 0);
    assert!(
        !central
            .all("command_result")
            .iter()
            .any(|r| r["commandId"] == json!("u-1")),
        "the old agent does not send the result"
    );
    // systemd stops the old agent (its restart).
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_agent_runs_on_trial_commits_once_authenticated_and_reports_under_the_original_id()
{
    let central = Central::start(&[("site-1", "key-1")]).await;
    let fake = FakeSystemctl::temp();
    let (site, conf) = process_site(&central, &fake, "");
    let archive = agent_release(NEW, own_arch(), &reporting_new());
    stage(&central, &fake, &site, &conf, &archive).await;

    // systemd starts the packaged binary again: the launcher execs the trial.
    let _agent = AgentProcess::start(&agent_binary(), &conf, Some("error"));
    let result = central.result_of("u-1", WAIT).await;
    assert_eq!(result["status"], json!("success"), "{result}");
    assert_eq!(result["result"]["version"], json!(NEW));
    assert_eq!(
        result["result"]["previousVersion"],
        json!(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(result["result"]["agentUpdate"], json!(true));
    let closing = central
        .find(
            "update_progress",
            |p| p["deploymentId"] == json!("dep-9") && p["progress"] == json!(100),
            WAIT,
        )
        .await
        .expect("the deployment's closing progress event");
    assert_eq!(closing["status"], json!("completed"));
    assert_eq!(closing["version"], json!(NEW));
    assert!(
        heartbeat_of(&central, NEW).await,
        "the new version in the heartbeat"
    );
    let state = agent_state(&site).expect("state");
    assert_eq!(state.committed.as_deref(), Some(NEW));
    assert_eq!(state.committed_deployment.as_deref(), Some("dep-9"));
    assert_eq!((state.trial, state.failed), (None, None));
    assert!(site.path("state/agent/9.9.9/bin/neopro-runtime").is_file());

    // Issue 28.7: the real server re-sends the deployment, still in
    // progress when the new agent authenticated, under a new id. It is
    // answered "already installed" (it would complete the deployment),
    // nothing downloaded nor restarted again.
    let restarts = fake.calls().len();
    let server = FileServer::start(archive.clone(), Fault::None);
    central.send_command(
        "u-2",
        "update_software",
        update_data(&server, &archive, NEW, false),
    );
    let again = central.result_of("u-2", WAIT).await;
    assert_eq!(again["status"], json!("success"), "{again}");
    assert_eq!(again["result"]["message"], json!("already installed"));
    assert_eq!(again["result"]["deploymentId"], json!("dep-9"));
    assert!(server.ranges().is_empty(), "nothing downloaded");
    assert_eq!(fake.calls().len(), restarts, "{:?}", fake.calls());
    // Another deployment of the same version is checked as a new release.
    let mut other = update_data(&server, &archive, NEW, true);
    other["deploymentId"] = json!("dep-10");
    central.send_command("u-3", "update_software", other);
    let refused = central.result_of("u-3", WAIT).await;
    assert_eq!(refused["status"], json!("error"), "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("runs agent 9.9.9 already")),
        "{refused}"
    );
}

/// Issue 24 point 8: the box committed agent 9.9.9, then the launcher fell
/// back to the packaged agent (committed slot gone). A signed release above
/// the packaged one but older than 9.9.9 is refused.
#[test]
fn an_agent_release_older_than_one_the_box_committed_is_refused_after_a_fallback() {
    let fake = FakeSystemctl::temp();
    let site = Site::with_extra(&format!("{}\n{}", fake.conf_line(), key_line()));
    site.write("neopro/webapp/index.html", "v1 index");
    let fallen_back = AgentState {
        committed: None,
        highest: Some(NEW.to_owned()),
        ..AgentState::default()
    };
    fallen_back
        .save(&site.path("state/agent"))
        .expect("agent state");
    let older = agent_release("9.0.0", own_arch(), "#!/bin/sh\n");
    let server = FileServer::start(older.clone(), Fault::None);
    assert_eq!(
        refusal(&site, update_data(&server, &older, "9.0.0", true)),
        "not-permitted: agent release 9.0.0 refused: this box already committed agent 9.9.9, which is newer (set UPDATE_ALLOW_DOWNGRADE=true in site.conf to allow a downgrade)"
    );
    assert_eq!(agent_state(&site), Some(fallen_back), "no trial written");
    assert!(!site.path("state/agent/9.0.0").exists(), "no slot staged");
}

/// Issue 24 point 12: the restart into a staged agent fails (systemctl
/// refuses it). The trial is cancelled and its slot removed, the command
/// answers the error, and a later agent update is not refused as "not
/// finished".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_restart_into_the_staged_agent_cancels_the_trial_and_answers_the_error() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let fake = FakeSystemctl::temp();
    let (site, conf) = process_site(&central, &fake, "");
    fake.fail_start("neopro-runtime");
    let archive = agent_release(NEW, own_arch(), &reporting_new());
    let server = FileServer::start(archive.to_vec(), Fault::None);
    let _agent = AgentProcess::start(&agent_binary(), &conf, Some("error"));
    central.nth("heartbeat", 1, WAIT).await;
    let staged_but = "the agent release was staged but the agent could not restart into it: ";
    for id in ["u-1", "u-2"] {
        central.send_command(
            id,
            "update_software",
            update_data(&server, &archive, NEW, true),
        );
        let result = central.result_of(id, WAIT).await;
        assert_eq!(result["status"], json!("error"), "{result}");
        let error = result["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(staged_but), "{id}: {error}");
        let state = agent_state(&site).expect("agent state");
        assert_eq!(state.trial, None, "{id}: the trial is cancelled");
        assert!(
            !site.path("state/agent/9.9.9").exists(),
            "{id}: slot removed"
        );
    }
    let restarts = fake
        .calls()
        .iter()
        .filter(|c| c.contains("restart") && c.contains("neopro-runtime"))
        .count();
    assert_eq!(restarts, 2, "each staged update asked for its restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_agent_that_crashes_at_start_is_dropped_after_two_attempts_and_the_failure_reported()
{
    let central = Central::start(&[("site-1", "key-1")]).await;
    let fake = FakeSystemctl::temp();
    let (site, conf) = process_site(&central, &fake, "");
    let archive = agent_release(NEW, own_arch(), "#!/bin/sh\necho boom >&2\nexit 1\n");
    stage(&central, &fake, &site, &conf, &archive).await;

    // systemd restarts the unit after each crash (Restart=always).
    for attempt in 1..=2 {
        let code = run_to_exit(&conf).await;
        assert_eq!(code, Some(1), "attempt {attempt} ran the crashing release");
        let trial = agent_state(&site).and_then(|s| s.trial).expect("trial");
        assert_eq!(trial.attempts, attempt);
    }
    // The third start: the launcher gives up; the packaged agent reports.
    let _agent = AgentProcess::start(&agent_binary(), &conf, Some("error"));
    let result = central.result_of("u-1", WAIT).await;
    assert_eq!(result["status"], json!("error"), "{result}");
    assert_eq!(
        result["error"],
        json!(format!(
            "agent update to 9.9.9 failed and agent {} is back: the new agent 9.9.9 did not come up: started 2 times without authenticating (it crashed or hung before reporting an error)",
            env!("CARGO_PKG_VERSION")
        ))
    );
    let closing = central
        .find(
            "update_progress",
            |p| p["deploymentId"] == json!("dep-9") && p["status"] == json!("failed"),
            WAIT,
        )
        .await
        .expect("the deployment's closing progress event");
    assert_eq!(closing["error"], result["error"]);
    let state = agent_state(&site).expect("state");
    assert_eq!(
        state,
        AgentState::default(),
        "nothing on trial, nothing committed"
    );
    assert!(
        !site.path("state/agent/9.9.9").exists(),
        "the slot is removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_agent_that_cannot_authenticate_gives_up_at_its_deadline_and_the_previous_one_reports()
 {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let fake = FakeSystemctl::temp();
    let (site, conf) = process_site(&central, &fake, "AGENT_UPDATE_DEADLINE_SECS=4");
    let archive = agent_release(NEW, own_arch(), &reporting_new());
    stage(&central, &fake, &site, &conf, &archive).await;

    // The new agent gets no answer to `authenticate`.
    central.ignore_next_authenticates(1000);
    let code = run_to_exit(&conf).await;
    assert_eq!(code, Some(2), "the trial exits non-zero at its deadline");
    let trial = agent_state(&site).and_then(|s| s.trial).expect("trial");
    assert_eq!(
        trial.last_error.as_deref(),
        Some("the new agent 9.9.9 did not authenticate with the central server within 4 s")
    );

    central.ignore_next_authenticates(0);
    let _agent = AgentProcess::start(&agent_binary(), &conf, Some("error"));
    let result = central.result_of("u-1", WAIT).await;
    assert_eq!(result["status"], json!("error"), "{result}");
    assert_eq!(
        result["error"],
        json!(format!(
            "agent update to 9.9.9 failed and agent {} is back: the new agent 9.9.9 did not authenticate within 4 s (last error: the new agent 9.9.9 did not authenticate with the central server within 4 s)",
            env!("CARGO_PKG_VERSION")
        ))
    );
    assert_eq!(agent_state(&site), Some(AgentState::default()));
}

/// Runs `neopro-runtime --config CONF run` as systemd would start the unit,
/// to its exit; its exit code.
async fn run_to_exit(conf: &std::path::Path) -> Option<i32> {
    let conf = conf.to_owned();
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new(agent_binary())
            .arg("--config")
            .arg(&conf)
            .arg("run")
            .env("LOG_LEVEL", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
    })
    .await
    .expect("join")
    .expect("run");
    status.code()
}

/// The new release's binary: this same test binary reporting [`NEW`].
fn reporting_new() -> String {
    format!(
        "#!/bin/sh\nNEOPRO_RUNTIME_TEST_VERSION={NEW} exec '{}' \"$@\"\n",
        agent_binary().display()
    )
}

/// The heartbeat that reports `version` as the running agent.
async fn heartbeat_of(central: &Central, version: &str) -> bool {
    central
        .find(
            "heartbeat",
            |h| h["versionInfo"]["agentVersion"] == json!(version),
            WAIT,
        )
        .await
        .is_some()
}

/// A committed slot of `version` whose binary is `script`, as an earlier
/// agent update would have left it.
fn committed_slot(site: &Site, version: &str, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    let bin = site.path(&format!("state/agent/{version}/bin/neopro-runtime"));
    std::fs::create_dir_all(bin.parent().expect("slot folder")).expect("slot");
    std::fs::write(&bin, script).expect("slot binary");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("mode");
    let state = AgentState {
        committed: Some(version.to_owned()),
        ..AgentState::default()
    };
    state.save(&site.path("state/agent")).expect("state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_the_agent_release_downloads_nothing_is_staged_and_the_update_reported() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let fake = FakeSystemctl::temp();
    let (site, conf) = process_site(&central, &fake, "");
    let archive = agent_release(NEW, own_arch(), &reporting_new());
    let server = FileServer::start(
        archive.clone(),
        // A few hundred bytes: 32 at a time, for several seconds.
        Fault::Slow {
            chunk: 32,
            pause_ms: 150,
        },
    );
    let agent = AgentProcess::start(&agent_binary(), &conf, Some("error"));
    central.nth("heartbeat", 1, WAIT).await;
    central.send_command(
        "u-1",
        "update_software",
        update_data(&server, &archive, NEW, true),
    );
    let partial = site.path("state/staging/update/.package.tar.gz.partial");
    // Under way: the server answered and the partial file is open (its
    // bytes reach the disk a megabyte at a time, so a few hundred may
    // not be there yet).
    wait_for("a download under way", WAIT, || {
        partial.exists() && !server.ranges().is_empty()
    })
    .await;
    agent.kill_hard();
    let _agent = AgentProcess::start(&agent_binary(), &conf, Some("error"));
    let result = central.result_of("u-1", WAIT).await;
    assert_eq!(result["status"], json!("error"), "{result}");
    assert_eq!(
        result["error"],
        json!(format!(
            "the update to {NEW} was interrupted (the agent stopped) and was not completed. Rollback: nothing had been changed"
        ))
    );
    assert!(heartbeat_of(&central, env!("CARGO_PKG_VERSION")).await);
    assert_eq!(agent_state(&site), None, "no trial was written");
    assert!(!site.path(&format!("state/agent/{NEW}")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_staging_and_again_on_trial_the_new_agent_still_commits_under_the_original_id()
{
    let central = Central::start(&[("site-1", "key-1")]).await;
    let fake = FakeSystemctl::temp();
    let (site, conf) = process_site(&central, &fake, "");
    let archive = agent_release(NEW, own_arch(), &reporting_new());
    let server = FileServer::start(archive.clone(), Fault::None);
    // Power lost while the old agent asks systemd for its own restart.
    fake.hang_once("restart", "neopro-runtime");
    let agent = AgentProcess::start(&agent_binary(), &conf, Some("error"));
    central.nth("heartbeat", 1, WAIT).await;
    central.send_command(
        "u-1",
        "update_software",
        update_data(&server, &archive, NEW, true),
    );
    wait_for("the agent's own restart", WAIT, || fake.hanging()).await;
    agent.kill_hard();
    assert_eq!(
        agent_state(&site).and_then(|s| s.trial).map(|t| t.attempts),
        Some(0)
    );

    // The trial starts but the central does not answer: killed again.
    central.ignore_next_authenticates(1000);
    let trial = AgentProcess::start(&agent_binary(), &conf, Some("error"));
    wait_for("the trial's attempt counted", WAIT, || {
        agent_state(&site)
            .and_then(|s| s.trial)
            .is_some_and(|t| t.attempts == 1 && t.first_start.is_some())
    })
    .await;
    central.nth("authenticate", 2, WAIT).await;
    trial.kill_hard();

    // The second attempt gets its answer: committed, reported once.
    central.ignore_next_authenticates(0);
    let _agent = AgentProcess::start(&agent_binary(), &conf, Some("error"));
    let result = central.result_of("u-1", WAIT).await;
    assert_eq!(result["status"], json!("success"), "{result}");
    assert_eq!(result["result"]["version"], json!(NEW));
    assert!(heartbeat_of(&central, NEW).await);
    let state = agent_state(&site).expect("state");
    assert_eq!(state.committed.as_deref(), Some(NEW));
    assert_eq!(
        (state.trial, state.failed, state.succeeded),
        (None, None, None)
    );
    let results = central
        .all("command_result")
        .into_iter()
        .filter(|r| r["commandId"] == json!("u-1"))
        .count();
    assert_eq!(results, 1, "one result for the update");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_agent_that_crashes_at_every_start_gives_way_to_the_packaged_one() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let fake = FakeSystemctl::temp();
    let (site, conf) = process_site(&central, &fake, "");
    committed_slot(&site, NEW, "#!/bin/sh\necho boom >&2\nexit 3\n");
    for start in 1..=3 {
        assert_eq!(run_to_exit(&conf).await, Some(3), "start {start}");
        let state = agent_state(&site).expect("state");
        assert_eq!(state.committed_starts, start, "counted before the exec");
    }
    let _agent = AgentProcess::start(&agent_binary(), &conf, Some("error"));
    assert!(heartbeat_of(&central, env!("CARGO_PKG_VERSION")).await);
    let state = agent_state(&site).expect("state");
    assert_eq!((state.committed, state.committed_starts), (None, 0));
    wait_for("the dropped slot removed", WAIT, || {
        !site.path(&format!("state/agent/{NEW}")).exists()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_agent_that_authenticates_is_healthy_again() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let fake = FakeSystemctl::temp();
    let (site, conf) = process_site(&central, &fake, "");
    committed_slot(&site, NEW, &reporting_new());
    let mut state = agent_state(&site).expect("state");
    state.committed_starts = 2;
    state.save(&site.path("state/agent")).expect("state");
    let _agent = AgentProcess::start(&agent_binary(), &conf, Some("error"));
    assert!(heartbeat_of(&central, NEW).await);
    wait_for("the start count reset", WAIT, || {
        agent_state(&site).is_some_and(|s| s.committed_starts == 0)
    })
    .await;
    assert_eq!(
        agent_state(&site).and_then(|s| s.committed).as_deref(),
        Some(NEW)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_update_brings_back_the_agent_the_update_replaced() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let fake = FakeSystemctl::temp();
    let (site, conf) = process_site(&central, &fake, "");
    let archive = agent_release(NEW, own_arch(), &reporting_new());
    stage(&central, &fake, &site, &conf, &archive).await;
    let agent = AgentProcess::start(&agent_binary(), &conf, Some("error"));
    let result = central.result_of("u-1", WAIT).await;
    assert_eq!(result["status"], json!("success"), "{result}");
    let restarts = || {
        fake.calls()
            .iter()
            .filter(|c| c.contains("restart") && c.contains("neopro-runtime"))
            .count()
    };
    assert_eq!(restarts(), 1);

    // Another update's rollback is not this one's.
    central.send_command(
        "rb-0",
        "rollback_update",
        json!({"canaryDeploymentId": "dep-9", "updateId": "upd-other"}),
    );
    let refused = central.result_of("rb-0", WAIT).await;
    assert_eq!(refused["status"], json!("error"), "{refused}");
    assert_eq!(
        agent_state(&site).and_then(|s| s.committed).as_deref(),
        Some(NEW)
    );

    central.send_command(
        "rb-1",
        "rollback_update",
        json!({"canaryDeploymentId": "dep-9", "updateId": "upd-9"}),
    );
    wait_for("the agent's restart into the previous one", WAIT, || {
        restarts() == 2
    })
    .await;
    drop(agent);
    assert_eq!(agent_state(&site).and_then(|s| s.committed), None);

    let _agent = AgentProcess::start(&agent_binary(), &conf, Some("error"));
    let result = central.result_of("rb-1", WAIT).await;
    assert_eq!(result["status"], json!("success"), "{result}");
    assert_eq!(
        (
            &result["result"]["version"],
            &result["result"]["rolledBackVersion"]
        ),
        (&json!(env!("CARGO_PKG_VERSION")), &json!(NEW))
    );
    assert!(heartbeat_of(&central, env!("CARGO_PKG_VERSION")).await);
    let state = agent_state(&site).expect("state");
    // Nothing left to roll back; the newest agent ever committed is kept
    // (a later release older than it is a downgrade).
    assert_eq!(
        state,
        AgentState {
            highest: Some(NEW.to_owned()),
            ..AgentState::default()
        },
        "nothing left to roll back"
    );
    assert!(!site.path(&format!("state/agent/{NEW}")).exists());

    // Again: already done, nothing restarts.
    central.send_command(
        "rb-2",
        "rollback_update",
        json!({"canaryDeploymentId": "dep-9", "updateId": "upd-9"}),
    );
    let again = central.result_of("rb-2", WAIT).await;
    assert_eq!(again["result"]["alreadyRolledBack"], json!(true), "{again}");
    assert_eq!(restarts(), 2);
}
