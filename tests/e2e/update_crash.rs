//! update_software through the real agent: progress events on the wire, and
//! SIGKILL of the agent binary at each step of an update. After a restart
//! the update is either completed or rolled back, never left half done, and
//! the original command gets that final result.
#![allow(clippy::expect_used)]

use neopro_e2e::Site;
use neopro_e2e::central::Central;
use neopro_e2e::fake_systemctl::FakeSystemctl;
use neopro_e2e::http::{Fault, FileServer};
use neopro_e2e::process::{AgentProcess, agent_binary, wait_for};
use neopro_e2e::release::{Item, snapshot, tar_gz};
use neopro_runtime::store::hash::sha256_hex;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

struct Rig {
    central: Central,
    fake: FakeSystemctl,
    site: Site,
    conf: PathBuf,
}

async fn rig() -> Rig {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let fake = FakeSystemctl::temp();
    let site = Site::new();
    site.write("neopro/webapp/index.html", "v1 index");
    site.write("neopro/webapp/configuration.json", r#"{"categories":[]}"#);
    site.write("neopro/server/app.js", "v1 server");
    site.write("neopro/VERSION", "1.0.0\n");
    site.write("neopro/release.json", r#"{"version":"1.0.0"}"#);
    let conf = site.write_agent_conf(&central.url(), "site-1", "key-1");
    let mut text = std::fs::read_to_string(&conf).expect("conf");
    text.push_str(&format!(
        "{}\nALLOWED_COMMANDS=update_software\nLOCAL_APP_URL=http://127.0.0.1:9\n",
        fake.conf_line()
    ));
    std::fs::write(&conf, text).expect("conf");
    Rig {
        central,
        fake,
        site,
        conf,
    }
}

fn release() -> Vec<u8> {
    tar_gz(&[
        Item::File("webapp/index.html", b"v2 index"),
        Item::File("server/app.js", b"v2 server"),
    ])
}

/// An update marked critical: it runs at once, whatever the hour.
fn send_update(rig: &Rig, server: &FileServer, archive: &[u8], id: &str) {
    send_update_critical(rig, server, archive, id, true);
}

fn send_update_critical(rig: &Rig, server: &FileServer, archive: &[u8], id: &str, critical: bool) {
    rig.central.send_command(
        id,
        "update_software",
        json!({
            "deploymentId": "dep-1", "version": "2.0.0",
            "updateUrl": server.url("u.tar.gz"),
            "packageSize": archive.len().to_string(),
            "checksum": sha256_hex(archive),
            "isCritical": critical,
        }),
    );
}

/// The installed release: what an update may change. The agent's own files
/// (its log, its daily configuration backups in data/) grow by themselves
/// while it runs and are not part of a release.
fn installed(site: &Site) -> std::collections::BTreeMap<String, Vec<u8>> {
    snapshot(&site.path("neopro"), &["backups", "logs", "data"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_whole_monotonic_and_ends_at_100() {
    let rig = rig().await;
    // Incompressible content, so the download lasts about a second.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..400_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let archive = tar_gz(&[
        Item::File("webapp/index.html", b"v2 index"),
        Item::File("webapp/big.bin", &noise),
    ]);
    let server = FileServer::start(
        archive.clone(),
        Fault::Slow {
            chunk: 16_384,
            pause_ms: 40,
        },
    );
    let agent = rig.site.start_agent();
    rig.central.nth("heartbeat", 1, WAIT).await;
    send_update(&rig, &server, &archive, "u-1");
    let result = rig.central.result_of("u-1", WAIT).await;
    assert_eq!(result["status"], json!("success"), "{result}");
    // The last milestone is sent before the result but may be recorded
    // after it (see below): wait for it rather than read too early.
    let healthy = rig
        .central
        .find("update_progress", |e| e["stage"] == json!("healthy"), WAIT)
        .await;
    assert!(healthy.is_some(), "no 'healthy' milestone");
    let mut events = rig.central.all("update_progress");
    // socketioxide runs each event's handler in its own task, so milestones
    // sent milliseconds apart may be recorded out of order (the real Node
    // server handles them in order): order them by percentage.
    events.sort_by_key(|e| e["progress"].as_u64());
    let values: Vec<u64> = events
        .iter()
        .map(|e| e["progress"].as_u64().expect("whole number"))
        .collect();
    // A milestone may repeat the last percentage, never go back.
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
    // Issue 18.5: every stage's milestone despite the 4/s rate limit, and
    // `status` on every event.
    let stages: Vec<&str> = events.iter().filter_map(|e| e["stage"].as_str()).collect();
    assert_eq!(
        stages,
        [
            "downloaded",
            "backed_up",
            "stopped",
            "installed",
            "started",
            "healthy"
        ],
        "{events:?}"
    );
    let statuses: Vec<&str> = events
        .iter()
        .map(|e| e["status"].as_str().expect("status on every event"))
        .collect();
    assert_eq!(statuses.last(), Some(&"completed"));
    assert!(
        statuses[..statuses.len() - 1]
            .iter()
            .all(|s| *s == "in_progress"),
        "{statuses:?}"
    );
    assert_eq!(values.first(), Some(&2));
    assert_eq!(values.last(), Some(&100));
    assert!(
        values.iter().any(|v| (6..35).contains(v)),
        "real download fractions between 5 and 35: {values:?}"
    );
    for e in &events {
        assert_eq!(e["version"], json!("2.0.0"));
        assert_eq!(e["deploymentId"], json!("dep-1"));
        assert!(e.get("progressRange").is_none());
    }
    agent.stop().await;
}

/// Kills the agent while `systemctl <action> <unit>` hangs, restarts it,
/// and returns the original command's final result.
async fn kill_during(rig: &Rig, action: &str, unit: &str) -> Value {
    kill_during_with(rig, release(), action, unit).await
}

async fn kill_during_with(rig: &Rig, archive: Vec<u8>, action: &str, unit: &str) -> Value {
    let server = FileServer::start(archive.clone(), Fault::None);
    rig.fake.hang_once(action, unit);
    let agent = AgentProcess::start(&agent_binary(), &rig.conf, Some("error"));
    rig.central.nth("heartbeat", 1, WAIT).await;
    send_update(rig, &server, &archive, "u-1");
    wait_for("the hanging systemctl call", WAIT, || rig.fake.hanging()).await;
    agent.kill_hard();
    let _agent = AgentProcess::start(&agent_binary(), &rig.conf, Some("error"));
    rig.central.result_of("u-1", WAIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_swap_the_update_is_completed_at_restart() {
    let rig = rig().await;
    let result = kill_during(&rig, "start", "neopro-app").await;
    assert_eq!(result["status"], json!("success"), "{result}");
    assert_eq!(result["result"]["version"], json!("2.0.0"));
    assert_eq!(result["result"]["previousVersion"], json!("1.0.0"));
    let site = &rig.site;
    assert_eq!(
        std::fs::read_to_string(site.path("neopro/webapp/index.html"))
            .ok()
            .as_deref(),
        Some("v2 index")
    );
    assert_eq!(
        std::fs::read_to_string(site.path("neopro/VERSION"))
            .ok()
            .as_deref(),
        Some("2.0.0\n")
    );
    assert_eq!(
        std::fs::read_to_string(site.path("neopro/webapp/configuration.json"))
            .ok()
            .as_deref(),
        Some(r#"{"categories":[]}"#)
    );
    assert!(!site.path("neopro/.neopro-update").exists());
    assert!(!site.path("state/staging/update").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_stopping_the_services_the_update_is_rolled_back_at_restart() {
    let rig = rig().await;
    let before = installed(&rig.site);
    let result = kill_during(&rig, "stop", "neopro-app").await;
    assert_eq!(result["status"], json!("error"), "{result}");
    let error = result["error"].as_str().unwrap_or("");
    assert!(
        error.starts_with("the update to 2.0.0 was interrupted (the agent stopped) and was not completed. Rollback: restored backup backup-"),
        "{error}"
    );
    assert_eq!(installed(&rig.site), before, "byte-identical");
    assert!(
        rig.fake.calls().ends_with(&[
            "start neopro-app".to_owned(),
            "start neopro-admin".to_owned(),
            "is-active neopro-app".to_owned(),
            "is-active neopro-admin".to_owned(),
        ]),
        "services started again: {:?}",
        rig.fake.calls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_downloading_nothing_changes() {
    let rig = rig().await;
    let before = installed(&rig.site);
    let body: Vec<u8> = release();
    let mut big = body.clone();
    big.extend(std::iter::repeat_n(0u8, 2_000_000));
    let server = FileServer::start(
        big.clone(),
        Fault::Slow {
            chunk: 65_536,
            pause_ms: 20,
        },
    );
    let agent = AgentProcess::start(&agent_binary(), &rig.conf, Some("error"));
    rig.central.nth("heartbeat", 1, WAIT).await;
    send_update(&rig, &server, &big, "u-1");
    let partial = rig
        .site
        .path("state/staging/update/.package.tar.gz.partial");
    wait_for("a partial download", WAIT, || {
        std::fs::metadata(&partial).is_ok_and(|m| m.len() > 100_000)
    })
    .await;
    agent.kill_hard();
    let _agent = AgentProcess::start(&agent_binary(), &rig.conf, Some("error"));
    let result = rig.central.result_of("u-1", WAIT).await;
    assert_eq!(result["status"], json!("error"), "{result}");
    assert_eq!(
        result["error"],
        json!(
            "the update to 2.0.0 was interrupted (the agent stopped) and was not completed. Rollback: nothing had been changed"
        )
    );
    assert_eq!(installed(&rig.site), before);
    assert!(!rig.fake.calls().iter().any(|c| c.starts_with("stop")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_swap_of_a_broken_release_it_is_rolled_back_at_restart() {
    let rig = rig().await;
    let before = installed(&rig.site);
    rig.fake
        .failed_while("neopro-app", &rig.site.path("neopro/webapp/BROKEN"));
    let archive = tar_gz(&[
        Item::File("webapp/index.html", b"v2 index"),
        Item::File("webapp/BROKEN", b"does not start"),
    ]);
    let result = kill_during_with(&rig, archive, "start", "neopro-app").await;
    assert_eq!(result["status"], json!("error"), "{result}");
    let error = result["error"].as_str().unwrap_or("");
    assert!(
        error.starts_with(
            "Service neopro-app is not active after restart (state: failed) (after the agent restarted mid-update). Rollback: restored backup backup-"
        ) && error.ends_with("(version 1.0.0), services active"),
        "{error}"
    );
    assert_eq!(installed(&rig.site), before, "byte-identical");
}

/// The rollback puts back the originals the swap moved aside; it does not
/// need the backup (gone here: a full card, a user cleaning up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_needs_no_backup_to_restore_byte_for_byte() {
    let rig = rig().await;
    let before = installed(&rig.site);
    rig.fake
        .failed_while("neopro-app", &rig.site.path("neopro/webapp/BROKEN"));
    let archive = tar_gz(&[
        Item::File("webapp/index.html", b"v2 index"),
        Item::File("webapp/BROKEN", b"does not start"),
        Item::File("server/app.js", b"v2 server"),
    ]);
    let server = FileServer::start(archive.clone(), Fault::None);
    rig.fake.hang_once("start", "neopro-app");
    let agent = AgentProcess::start(&agent_binary(), &rig.conf, Some("error"));
    rig.central.nth("heartbeat", 1, WAIT).await;
    send_update(&rig, &server, &archive, "u-1");
    wait_for("the hanging systemctl call", WAIT, || rig.fake.hanging()).await;
    agent.kill_hard();
    std::fs::remove_dir_all(rig.site.path("neopro/backups")).expect("remove the backups");
    let _agent = AgentProcess::start(&agent_binary(), &rig.conf, Some("error"));
    let result = rig.central.result_of("u-1", WAIT).await;
    assert_eq!(result["status"], json!("error"), "{result}");
    let error = result["error"].as_str().unwrap_or("");
    assert!(
        error.ends_with("(version 1.0.0), services active"),
        "{error}"
    );
    assert_eq!(installed(&rig.site), before, "byte-identical");
}

/// A rollback that cannot put everything back keeps the work folder (it
/// may hold the only good copy) and the journal, and no later update starts
/// over them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incomplete_rollback_keeps_the_originals_and_blocks_new_updates() {
    let rig = rig().await;
    let archive = release();
    let server = FileServer::start(archive.clone(), Fault::None);
    rig.fake.hang_once("start", "neopro-app");
    let agent = AgentProcess::start(&agent_binary(), &rig.conf, Some("error"));
    rig.central.nth("heartbeat", 1, WAIT).await;
    send_update(&rig, &server, &archive, "u-1");
    wait_for("the hanging systemctl call", WAIT, || rig.fake.hanging()).await;
    agent.kill_hard();
    // VERSION can come back neither from the work folder nor the backup.
    std::fs::remove_dir_all(rig.site.path("neopro/backups")).expect("remove the backups");
    std::fs::remove_file(rig.site.path("neopro/.neopro-update/old/VERSION")).expect("old VERSION");
    // The release is broken: the resume rolls back.
    rig.fake
        .failed_while("neopro-app", &rig.site.path("neopro/webapp/index.html"));
    let _agent = AgentProcess::start(&agent_binary(), &rig.conf, Some("error"));
    let result = rig.central.result_of("u-1", WAIT).await;
    assert_eq!(result["status"], json!("error"), "{result}");
    let error = result["error"].as_str().unwrap_or("");
    assert!(
        error.contains(" with problems: VERSION: ")
            && error.ends_with("; the original files stay in .neopro-update/old"),
        "{error}"
    );
    assert!(rig.site.path("neopro/.neopro-update").is_dir());
    assert!(rig.site.path("state/staging/update/state.json").is_file());

    send_update(&rig, &server, &archive, "u-2");
    let result = rig.central.result_of("u-2", WAIT).await;
    let error = result["error"].as_str().unwrap_or("");
    assert!(
        error.starts_with(
            "not installing 2.0.0: the interrupted update of 2.0.0 could not be rolled back"
        ),
        "{result}"
    );
    assert!(rig.site.path("neopro/.neopro-update").is_dir());
}

fn append_conf(rig: &Rig, line: &str) {
    let mut text = std::fs::read_to_string(&rig.conf).expect("conf");
    text.push_str(line);
    text.push('\n');
    std::fs::write(&rig.conf, text).expect("conf");
}

/// The hour of AUTO_UPDATE_HOUR: the window closed now, or open now.
fn set_window(rig: &Rig, open: bool) {
    use neopro_runtime::agent::maintenance_window::local_hour;
    let hour = local_hour().expect("local hour");
    append_conf(
        rig,
        &format!(
            "AUTO_UPDATE_HOUR={}",
            if open { hour } else { (hour + 12) % 24 }
        ),
    );
}

/// No `command_result` for `id` so far: a later command's result (here
/// the refusal of a command this box does not allow) comes back first.
async fn no_result_yet(rig: &Rig, id: &str, probe: &str) {
    rig.central.send_command(probe, "get_config", json!({}));
    rig.central.result_of(probe, WAIT).await;
    assert!(
        !rig.central
            .all("command_result")
            .iter()
            .any(|r| r["commandId"] == json!(id)),
        "no result for {id} before it has run: {:?}",
        rig.central.all("command_result")
    );
}

/// Kept entries (`<id>.json`; the folder also remembers deployments that
/// ran, as `.settled` files).
fn scheduled_files(rig: &Rig) -> usize {
    std::fs::read_dir(rig.site.path("state/scheduled")).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .count()
    })
}

/// The scheduled answer the server would have taken as "installed".
async fn schedule_update(rig: &Rig, server: &FileServer, archive: &[u8]) -> Value {
    send_update_critical(rig, server, archive, "u-1", false);
    let progress = rig.central.next("update_progress", WAIT).await;
    assert_eq!(progress["deploymentId"], json!("dep-1"), "{progress}");
    assert_eq!(progress["version"], json!("2.0.0"));
    assert_eq!(progress["progress"], json!(0));
    assert_eq!(progress["status"], json!("scheduled"));
    let when = progress["scheduledFor"].as_str().unwrap_or_default();
    assert!(
        when.len() == 24 && when.ends_with(".000Z"),
        "an ISO time: {progress}"
    );
    progress
}

/// A box whose window is closed, an update sent and answered "scheduled":
/// the rig, the release, its server and the running agent.
async fn scheduled_outside_the_window() -> (Rig, Vec<u8>, FileServer, AgentProcess) {
    let rig = rig().await;
    let archive = release();
    let server = FileServer::start(archive.clone(), Fault::None);
    set_window(&rig, false);
    let agent = AgentProcess::start(&agent_binary(), &rig.conf, Some("error"));
    rig.central.nth("heartbeat", 1, WAIT).await;
    schedule_update(&rig, &server, &archive).await;
    (rig, archive, server, agent)
}

/// Entries kept by agents that did not record the command type: the
/// window runs the one command the manifests list under
/// `maintenance-window` (the agent names no command itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_kept_without_its_command_type_runs_in_the_window() {
    let (rig, _archive, _server, agent) = scheduled_outside_the_window().await;
    agent.kill_hard();
    // As an older agent wrote it.
    let dir = rig.site.path("state/scheduled");
    let mut rewritten = 0;
    for entry in std::fs::read_dir(&dir).expect("the scheduled folder") {
        let path = entry.expect("an entry").path();
        let mut kept: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("the entry")).expect("JSON");
        let removed = kept.as_object_mut().and_then(|o| o.remove("commandType"));
        assert_eq!(removed, Some(json!("update_software")), "{kept}");
        std::fs::write(&path, kept.to_string()).expect("rewritten");
        rewritten += 1;
    }
    assert_eq!(rewritten, 1);

    set_window(&rig, true);
    let _agent = AgentProcess::start(&agent_binary(), &rig.conf, Some("error"));
    let result = rig.central.result_of("u-1", WAIT).await;
    assert_eq!(result["status"], json!("success"), "{result}");
    assert_eq!(read_version(&rig), "2.0.0\n");
    wait_for("the schedule forgotten", WAIT, || {
        scheduled_files(&rig) == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_update_is_never_shown_installed_before_it_ran() {
    let (rig, archive, server, agent) = scheduled_outside_the_window().await;
    no_result_yet(&rig, "u-1", "probe-1").await;
    assert_eq!(
        rig.central.update_deployment("dep-1").map(|d| d.status),
        Some("in_progress".to_owned()),
        "the dashboard shows the update in progress, not installed"
    );
    assert_eq!(read_version(&rig), "1.0.0\n");
    assert!(server.ranges().is_empty(), "nothing downloaded yet");

    // Killed while it waits: the restart keeps it, reports nothing for it
    // (no "interrupted"), and tells the dashboard again that it waits.
    agent.kill_hard();
    let agent = AgentProcess::start(&agent_binary(), &rig.conf, Some("error"));
    let again = rig.central.nth("update_progress", 2, WAIT).await;
    assert_eq!(again["status"], json!("scheduled"));
    no_result_yet(&rig, "u-1", "probe-2").await;
    // The server re-sends the command: still one scheduled update.
    send_update_critical(&rig, &server, &archive, "u-1", false);
    rig.central.nth("update_progress", 3, WAIT).await;
    assert_eq!(scheduled_files(&rig), 1);
    agent.kill_hard();

    // The window opens: installed, and the original id gets the one result.
    set_window(&rig, true);
    let _agent = AgentProcess::start(&agent_binary(), &rig.conf, Some("error"));
    let result = rig.central.result_of("u-1", WAIT).await;
    assert_eq!(result["status"], json!("success"), "{result}");
    assert!(result["result"]["report"].is_object(), "{result}");
    assert_eq!(read_version(&rig), "2.0.0\n");
    assert_eq!(
        rig.central.update_deployment("dep-1"),
        Some(neopro_e2e::central::UpdateDeployment {
            status: "completed".to_owned(),
            progress: 100
        })
    );
    wait_for("the schedule forgotten", WAIT, || {
        scheduled_files(&rig) == 0
    })
    .await;
    let results: Vec<Value> = rig
        .central
        .all("command_result")
        .into_iter()
        .filter(|r| r["commandId"] == json!("u-1"))
        .collect();
    assert!(
        results.iter().all(|r| r["status"] == json!("success")),
        "one outcome for one id: {results:?}"
    );
}

fn read_version(rig: &Rig) -> String {
    std::fs::read_to_string(rig.site.path("neopro/VERSION")).unwrap_or_default()
}

/// Schedules u-1, then opens the window with `systemctl <action> <unit>`
/// hanging, kills the agent there and restarts it: the original command's
/// final result.
async fn kill_scheduled_run_during(rig: &Rig, archive: Vec<u8>, action: &str, unit: &str) -> Value {
    let server = FileServer::start(archive.clone(), Fault::None);
    set_window(rig, false);
    let agent = AgentProcess::start(&agent_binary(), &rig.conf, Some("error"));
    rig.central.nth("heartbeat", 1, WAIT).await;
    schedule_update(rig, &server, &archive).await;
    agent.kill_hard();
    set_window(rig, true);
    rig.fake.hang_once(action, unit);
    let agent = AgentProcess::start(&agent_binary(), &rig.conf, Some("error"));
    wait_for("the hanging systemctl call", WAIT, || rig.fake.hanging()).await;
    assert_eq!(scheduled_files(rig), 1, "kept while it runs");
    agent.kill_hard();
    let _agent = AgentProcess::start(&agent_binary(), &rig.conf, Some("error"));
    let result = rig.central.result_of("u-1", WAIT).await;
    wait_for("the schedule forgotten", WAIT, || scheduled_files(rig) == 0).await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_update_killed_after_its_swap_completes_under_its_id() {
    let rig = rig().await;
    let result = kill_scheduled_run_during(&rig, release(), "start", "neopro-app").await;
    assert_eq!(result["status"], json!("success"), "{result}");
    assert_eq!(result["result"]["version"], json!("2.0.0"));
    assert_eq!(read_version(&rig), "2.0.0\n");
    assert_eq!(
        rig.central.update_deployment("dep-1").map(|d| d.status),
        Some("completed".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_update_killed_before_its_swap_rolls_back_under_its_id() {
    let rig = rig().await;
    let before = installed(&rig.site);
    let result = kill_scheduled_run_during(&rig, release(), "stop", "neopro-app").await;
    assert_eq!(result["status"], json!("error"), "{result}");
    let error = result["error"].as_str().unwrap_or("");
    assert!(
        error.starts_with("the update to 2.0.0 was interrupted (the agent stopped) and was not completed. Rollback: restored backup backup-"),
        "{error}"
    );
    assert_eq!(installed(&rig.site), before, "byte-identical");
    assert_eq!(
        rig.central.update_deployment("dep-1").map(|d| d.status),
        Some("failed".to_owned())
    );
}

/// Issue 18.12: what can be checked is checked before scheduling, with the
/// message the update would get if it ran at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_update_is_refused_at_once_with_the_immediate_message() {
    let rig = rig().await;
    set_window(&rig, false);
    let agent = AgentProcess::start(&agent_binary(), &rig.conf, Some("error"));
    rig.central.nth("heartbeat", 1, WAIT).await;
    let bad = [
        (
            json!({"version": "../../x", "updateUrl": "https://example.org/u.tar.gz", "checksum": "zz"}),
            "version '../../x' must be 1-64 letters, digits, '.', '_', '+' or '-'",
        ),
        (
            json!({"version": "2.0.0", "updateUrl": "https://example.org/u.tar.gz", "checksum": "zz"}),
            "'zz' is not a sha256 checksum (64 hex digits)",
        ),
        (
            json!({"version": "2.0.0", "updateUrl": "ftp://example.org/u.tar.gz"}),
            "only http:// and https:// downloads are allowed, not 'ftp://example.org/u.tar.gz'",
        ),
        (
            json!({"version": "2.0.0", "updateUrl": "https://example.org/u.tar.gz", "packageSize": "900000000000000000"}),
            "Espace disque insuffisant: ",
        ),
        (
            json!({"version": "0.0.9", "updateUrl": "https://example.org/u.tar.gz"}),
            // ... and the running agent's own version (0.x).
            "refusing to install 0.0.9: it is older than both the installed release 1.0.0 and the running agent 0.",
        ),
    ];
    for (n, (data, message)) in bad.iter().enumerate() {
        for critical in [false, true] {
            let id = format!("bad-{n}-{critical}");
            let mut data = data.clone();
            data["isCritical"] = json!(critical);
            data["deploymentId"] = json!("dep-bad");
            rig.central.send_command(&id, "update_software", data);
            let result = rig.central.result_of(&id, WAIT).await;
            assert_eq!(result["status"], json!("error"), "{result}");
            let error = result["error"].as_str().unwrap_or_default();
            assert!(error.starts_with(message), "{id}: {error}");
        }
    }
    assert_eq!(scheduled_files(&rig), 0, "nothing scheduled");
    assert_eq!(rig.central.count("update_progress"), 0);
    agent.kill_hard();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_updates_are_refused_even_critical_ones() {
    let rig = rig().await;
    let archive = release();
    let server = FileServer::start(archive.clone(), Fault::None);
    append_conf(&rig, "AUTO_UPDATE_ENABLED=false");
    let agent = rig.site.start_agent();
    rig.central.nth("heartbeat", 1, WAIT).await;
    rig.central.send_command(
        "u-1",
        "update_software",
        json!({"version": "2.0.0", "updateUrl": server.url("u.tar.gz"), "isCritical": true}),
    );
    let result = rig.central.result_of("u-1", WAIT).await;
    assert_eq!(
        result,
        json!({"commandId": "u-1", "status": "error", "error": neopro_runtime::agent::maintenance_window::DISABLED})
    );
    assert!(server.ranges().is_empty());
    agent.stop().await;
}
