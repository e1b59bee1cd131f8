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
    let events = rig.central.all("update_progress");
    let values: Vec<u64> = events
        .iter()
        .map(|e| e["progress"].as_u64().expect("whole number"))
        .collect();
    assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_outside_the_window_is_scheduled_then_installed_in_it() {
    use neopro_runtime::agent::maintenance_window::local_hour;
    let rig = rig().await;
    let archive = release();
    let server = FileServer::start(archive.clone(), Fault::None);
    let hour = local_hour().expect("local hour");
    append_conf(&rig, &format!("AUTO_UPDATE_HOUR={}", (hour + 12) % 24));
    let agent = rig.site.start_agent();
    rig.central.nth("heartbeat", 1, WAIT).await;
    send_update_critical(&rig, &server, &archive, "u-1", false);
    let result = rig.central.result_of("u-1", WAIT).await;
    assert_eq!(result["status"], json!("success"), "{result}");
    assert_eq!(result["result"]["scheduled"], json!(true));
    assert_eq!(result["result"]["version"], json!("2.0.0"));
    assert_eq!(
        std::fs::read_to_string(rig.site.path("neopro/VERSION"))
            .ok()
            .as_deref(),
        Some("1.0.0\n"),
        "not installed yet"
    );
    assert!(server.ranges().is_empty(), "nothing downloaded yet");
    agent.stop().await;

    // The window opens (the box restarted meanwhile): installed, and the
    // same command id gets its final result.
    append_conf(
        &rig,
        &format!("AUTO_UPDATE_HOUR={}", local_hour().expect("hour")),
    );
    let agent = rig.site.start_agent();
    wait_for("the final result", WAIT, || {
        rig.central
            .all("command_result")
            .iter()
            .any(|r| r["commandId"] == json!("u-1") && r["result"]["report"].is_object())
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(rig.site.path("neopro/VERSION"))
            .ok()
            .as_deref(),
        Some("2.0.0\n")
    );
    agent.stop().await;
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
