//! Issue 18: what the real central server, its dashboard and the box's web
//! app show must be true. The test central (`support/central.rs`) and the
//! web-app stand-in (`support/local_app.rs`) reproduce the real servers'
//! behaviour, so each test fails when the agent gets it wrong.
// A broken fixture should stop the test loudly.
#![allow(clippy::expect_used)]

use neopro_e2e::Site;
use neopro_e2e::central::Central;
use neopro_e2e::http::{Fault, FileServer};
use neopro_e2e::local_app::{Ended, LocalApp, RawServer};
use neopro_runtime::link::{self, LinkConfig, LinkEvent};
use neopro_runtime::store::hash::sha256_hex;
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

fn site() -> Site {
    Site::with_webapp("{\"categories\":[],\"version\":2.0}")
}

/// Opens a second session as `site_id` (what `diagnose --auth` does), waits
/// for the server's answer, then closes it.
async fn second_session(central: &Central, site_id: &str, key: &str) {
    let (handle, mut events) = link::spawn(LinkConfig::new(&central.url()));
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(LinkEvent::Connected)) => {
                handle
                    .emit("authenticate", &[json!({"siteId": site_id, "apiKey": key})])
                    .expect("emit");
            }
            Ok(Some(LinkEvent::Event { name, .. })) if name == "authenticated" => break,
            Ok(Some(_)) => {}
            other => panic!("second session did not authenticate: {other:?}"),
        }
    }
    handle.close().await;
}

/// 18.1: the real server forgets a site when any of its sockets closes and
/// stops sending it `ping_check`; the agent notices and authenticates again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_closing_does_not_leave_the_agent_forgotten() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let site = site();
    site.write_agent_conf(&central.url(), "site-1", "key-1");
    let agent = site.start_agent();
    central.next("authenticate", WAIT).await;
    central.wait_booked("site-1", WAIT).await;

    second_session(&central, "site-1", "key-1").await;
    central.next("authenticate", WAIT).await;
    // The second socket's close took the site out of the books.
    let deadline = tokio::time::Instant::now() + WAIT;
    while central.is_booked("site-1") {
        assert!(tokio::time::Instant::now() < deadline, "never forgotten");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(central.send_command("c-lost", "get_config", json!({})), 0);

    // PING_CHECK_TIMEOUT is 3 s in the test site.conf (75 s by default).
    let authenticate = central.next("authenticate", Duration::from_secs(10)).await;
    assert_eq!(authenticate["siteId"], "site-1");
    central.wait_booked("site-1", WAIT).await;
    assert_eq!(central.send_command("c-1", "get_config", json!({})), 1);
    let result = central.result_of("c-1", WAIT).await;
    assert_eq!(result["status"], "success", "{result}");
    agent.stop().await;
}

/// 18.1: `diagnose` reports the running agent's link from its status file
/// and does not open a second session unless asked with `--auth`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_reports_the_running_agents_link_without_a_second_session() {
    use neopro_ops::diagnose::{DiagnoseArgs, Status, diagnose};
    let central = Central::start(&[("site-1", "key-1")]).await;
    let site = site();
    let conf = site.write_agent_conf(&central.url(), "site-1", "key-1");
    let agent = site.start_agent();
    central.next("authenticate", WAIT).await;
    // The status file follows the session: wait for a ping_check in it.
    site.wait_link_status("a ping_check in the status file", WAIT, |s| {
        s.last_ping_check.is_some()
    })
    .await;
    let args = DiagnoseArgs {
        timeout: 5,
        ..DiagnoseArgs::default()
    };
    let report = diagnose(&conf, &args).await;
    let agent_check = report.check("agent").expect("agent check");
    assert_eq!(agent_check.status, Status::Ok, "{report:#?}");
    assert!(
        agent_check.detail.starts_with(&format!(
            "running (pid {}): authenticated",
            std::process::id()
        )),
        "{}",
        agent_check.detail
    );
    assert!(
        agent_check.detail.contains("last ping_check 20"),
        "{}",
        agent_check.detail
    );
    assert!(
        agent_check
            .detail
            .ends_with("0 result(s) waiting for delivery")
    );
    assert_eq!(
        report.check("authentication").map(|c| c.status),
        Some(Status::Skip)
    );
    assert_eq!(
        central.count("authenticate"),
        1,
        "diagnose opened a session"
    );
    assert!(central.is_booked("site-1"));

    // --auth: the full check, with the warning that it costs the session.
    let report = diagnose(&conf, &DiagnoseArgs { auth: true, ..args }).await;
    let session = report.check("agent session").expect("warning");
    assert_eq!(session.status, Status::Warn);
    assert_eq!(
        report
            .check("authentication")
            .map(|c| (c.status, c.detail.as_str())),
        Some((Status::Ok, "Authentification réussie"))
    );
    agent.stop().await;
}

/// 18.12: a command whose JSON holds a lone UTF-16 surrogate (as
/// JavaScript's JSON.stringify emits) gets an error result, not silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_command_gets_an_error_result() {
    let server = RawServer::start().await;
    let site = site();
    site.write_agent_conf(&server.url(), "site-1", "key-1");
    site.append_conf("PING_CHECK_TIMEOUT=0\n");
    let agent = site.start_agent();
    server.next("authenticate", WAIT).await;
    server.send_raw(
        r#"42["command",{"id":"c-bad","type":"get_config","data":{"name":"Club \ud800"}}]"#,
    );
    let result = server.next("command_result", WAIT).await;
    assert_eq!(result["commandId"], "c-bad");
    assert_eq!(result["status"], "error");
    let error = result["error"].as_str().expect("error text");
    assert!(
        error.starts_with(
            "the agent could not decode this command, so it did not run it: bad JSON in packet: "
        ),
        "{error}"
    );
    assert!(error.contains("lone UTF-16 surrogate"), "{error}");
    // The session goes on: a good command is answered.
    server.send_raw(r#"42["command",{"id":"c-good","type":"get_config","data":{}}]"#);
    let result = server.next("command_result", WAIT).await;
    assert_eq!(
        (result["commandId"].clone(), result["status"].clone()),
        (json!("c-good"), json!("success"))
    );
    agent.stop().await;
}

/// 18.11: the one-shot notification to the box's web app is heard even
/// though the app greets every socket with two events and acks nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_app_hears_config_updated_and_the_close_is_clean() {
    let app = LocalApp::start().await;
    link::notify_once(
        &app.url(),
        "config_updated",
        &[json!({"source": "test"})],
        Duration::from_secs(5),
    )
    .await
    .expect("notified");
    let (events, ended) = app.after_connections(1, WAIT).await;
    assert_eq!(
        events,
        vec![("config_updated".to_owned(), json!({"source": "test"}))]
    );
    assert_eq!(ended, vec![Ended::Clean]);
}

/// A site whose agent may deploy videos.
fn deploying_site(url: &str) -> Site {
    let site = site();
    site.write_agent_conf(url, "site-1", "key-1");
    site.append_conf("ALLOWED_COMMANDS=get_config,deploy_video\n");
    site
}

/// Starts a deploying site's agent, waits until the server books it and
/// sends it `deploy_video` `d-1` of `body` (deployment `dep-1`).
async fn start_and_deploy(
    central: &Central,
    server: &FileServer,
    body: &[u8],
) -> (Site, neopro_e2e::RunningAgent) {
    let site = deploying_site(&central.url());
    let agent = site.start_agent();
    central.wait_booked("site-1", WAIT).await;
    central.send_command(
        "d-1",
        "deploy_video",
        deploy_data(server, body, Some("dep-1")),
    );
    (site, agent)
}

fn deploy_data(server: &FileServer, body: &[u8], deployment: Option<&str>) -> Value {
    let mut data = json!({
        "videoId": "vid-1", "videoUrl": server.url("abc.mp4"), "filename": "abc.mp4",
        "category": "Match", "checksum": sha256_hex(body),
    });
    if let Some(id) = deployment {
        data["deploymentId"] = json!(id);
    }
    data
}

/// 18.3: a `deploy_video` sent from the REST API (no deploymentId) sends no
/// `deploy_progress`: the server would put every deployment of that video,
/// finished ones included, back to in progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_without_deployment_id_leaves_finished_deployments_alone() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    central.add_deployment("dep-1", "vid-1");
    let body: Vec<u8> = (0..200_000).map(|i| (i % 251) as u8).collect();
    let server = FileServer::start(body.clone(), Fault::None);
    let (_site, agent) = start_and_deploy(&central, &server, &body).await;
    assert_eq!(central.result_of("d-1", WAIT).await["status"], "success");
    // The closing deploy_progress goes out on its own task: it may land
    // just after the result.
    let completed = || {
        central
            .deployment("dep-1")
            .is_some_and(|d| (d.status.as_str(), d.progress) == ("completed", 100))
    };
    neopro_e2e::process::wait_for("dep-1 completed", WAIT, completed).await;

    // The same video again, from the REST API.
    central.send_command("d-2", "deploy_video", deploy_data(&server, &body, None));
    assert_eq!(central.result_of("d-2", WAIT).await["status"], "success");
    let after = central.deployment("dep-1").expect("deployment");
    assert_eq!((after.status.as_str(), after.progress), ("completed", 100));
    assert!(
        central
            .all("deploy_progress")
            .iter()
            .all(|p| p["deploymentId"] == "dep-1"),
        "{:?}",
        central.all("deploy_progress")
    );
    agent.stop().await;
}

/// 18.4: a deployment that finished while the server was away is completed
/// once the agent is back: its closing `deploy_progress` goes through the
/// outbox (the server ignores the re-sent command_result for deployments).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_finished_offline_is_completed_after_the_reconnect() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let body: Vec<u8> = (0..400_000).map(|i| (i % 251) as u8).collect();
    let server = FileServer::start(
        body.clone(),
        Fault::Slow {
            chunk: 32_768,
            pause_ms: 40,
        },
    );
    let (site, agent) = start_and_deploy(&central, &server, &body).await;
    central.next("deploy_progress", WAIT).await;
    let port = central.stop().await;

    // Wait until the deploy finished (its outcome is journaled) offline.
    let entry = site.path("state/journal/d-1.json");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        if text.contains("\"outcome\":{") {
            assert!(text.contains("\"finalProgress\""), "{text}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deploy never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let central = Central::start_on(port, &[("site-1", "key-1")]).await;
    central.add_deployment("dep-1", "vid-1");
    assert_eq!(central.result_of("d-1", WAIT).await["status"], "success");
    let progress = central.next("deploy_progress", WAIT).await;
    assert_eq!(
        (
            progress["deploymentId"].clone(),
            progress["completed"].clone(),
            progress["status"].clone()
        ),
        (json!("dep-1"), json!(true), json!("completed"))
    );
    let done = central.deployment("dep-1").expect("deployment");
    assert_eq!(done.status, "completed");
    agent.stop().await;
}
