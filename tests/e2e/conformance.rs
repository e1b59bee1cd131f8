//! Issue 28: the agent against peers on the real socket.io 4 library
//! (`tests/conformance/`, npm packages pinned by a lockfile), behaving as
//! upstream's central server and the box's web app do. Each test asserts
//! what the real-library peer received or wrote to its books.
// A broken fixture should stop the test loudly.
#![allow(clippy::expect_used)]

use neopro_e2e::Site;
use neopro_e2e::conformance::{CentralTimings, ConfCentral, ConfWebApp};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
/// The first run of a component compiles it.
const FIRST_RUN: Duration = Duration::from_secs(180);

fn site() -> Site {
    Site::with_webapp("{\"categories\":[],\"version\":\"2.0\"}")
}

async fn central() -> ConfCentral {
    ConfCentral::start(&[("site-1", "key-1")], &CentralTimings::fast(), 0).await
}

/// Writes the site's agent configuration for `central` (plus `extra`
/// lines), starts the agent and waits until the server has it connected.
async fn start_connected(
    central: &ConfCentral,
    site: &Site,
    extra: &str,
) -> neopro_e2e::RunningAgent {
    site.write_agent_conf(&central.url(), "site-1", "key-1");
    site.append_conf(extra);
    let agent = site.start_agent();
    central.wait_connected("site-1", WAIT).await;
    agent
}

/// An agent connected to `central` whose next `restart_service` of
/// neopro-app hangs 10 s, and that command sent: the agent, the fake
/// systemctl (kept alive with it) and the command's id.
async fn hanging_restart(
    central: &ConfCentral,
    site: &Site,
) -> (
    neopro_e2e::RunningAgent,
    neopro_e2e::fake_systemctl::FakeSystemctl,
    String,
) {
    let fake = neopro_e2e::fake_systemctl::FakeSystemctl::temp();
    let agent = start_connected(
        central,
        site,
        &format!("{}\nALLOWED_COMMANDS=restart_service\n", fake.conf_line()),
    )
    .await;
    fake.hang_once("restart", "neopro-app");
    let id = central
        .command(
            "site-1",
            "restart_service",
            json!({"service": "neopro-app"}),
        )
        .await
        .expect("sent");
    (agent, fake, id)
}

/// The server's exact refusals, each answered by a later retry (never an
/// exit), and a socket that never authenticates is kicked by the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_errors_are_upstreams() {
    let central = central().await;
    for (site_id, key, expected) in [
        (
            "site-1",
            "wrong",
            "Authentification échouée: Clé API invalide",
        ),
        (
            "site-9",
            "key-1",
            "Authentification échouée: Site non trouvé: site-9",
        ),
    ] {
        let site = site();
        site.write_agent_conf(&central.url(), site_id, key);
        let agent = site.start_agent();
        let before = central.sent("auth_error").len();
        // Refused twice: the agent retried after the first refusal.
        let error = central
            .peer
            .nth("emit", "auth_error", before + 2, WAIT)
            .await;
        assert_eq!(error, json!({"message": expected}));
        agent.stop().await;
    }
    assert!(central.sent("authenticated").is_empty());
}

/// Authentication, heartbeat, `ping_check` → `pong_check`, and a command
/// result landing in `remote_commands`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_agent_beats_answers_ping_check_and_commands() {
    let central = central().await;
    let site = site();
    site.write_agent_conf(&central.url(), "site-1", "key-1");
    let agent = site.start_agent();
    let auth = central.peer.nth("event", "authenticate", 1, WAIT).await;
    assert_eq!(auth, json!({"siteId": "site-1", "apiKey": "key-1"}));
    central.wait_connected("site-1", WAIT).await;
    let beat = central.peer.nth("event", "heartbeat", 1, WAIT).await;
    assert_eq!(beat["siteId"], "site-1");
    assert!(beat["metrics"]["uptime"].is_number(), "{beat}");
    // What the dashboard shows of it: a `metrics` row as upstream writes it
    // and the site's version (the app's, from NEOPRO_ROOT/VERSION).
    let metrics = wait_row(&central, "metrics", "1", |_| true).await;
    assert_eq!(metrics["cpu_usage"], beat["metrics"]["cpu"], "{metrics}");
    assert_eq!(metrics["memory_usage"], beat["metrics"]["memory"]);
    assert_eq!(metrics["disk_usage"], beat["metrics"]["disk"]);
    let uptime = beat["metrics"]["uptime"].as_f64().expect("uptime");
    assert_eq!(metrics["uptime"], json!(uptime.floor() as u64));
    let row = wait_row(&central, "sites", "site-1", |r| {
        r["software_version"].is_string()
    })
    .await;
    assert_eq!(row["software_version"], "2.1.3", "{row}");
    assert_eq!(row["status"], "online");
    assert_eq!(row["local_ip"], beat["metrics"]["localIp"]);
    assert!(central.peer.kind("heartbeat_error").is_empty());
    let state = central.peer.nth("event", "sync_local_state", 1, WAIT).await;
    assert_eq!(state["config"], json!({"categories": [], "version": "2.0"}));
    central.peer.nth("event", "pong_check", 2, WAIT).await;

    let id = central
        .command("site-1", "get_config", json!({}))
        .await
        .expect("sent");
    let result = central.result_of(&id, FIRST_RUN).await;
    assert_eq!(result["status"], "success", "{result}");
    assert_eq!(
        result["result"]["configuration"],
        json!({"categories": [], "version": "2.0"})
    );
    let row = wait_row(&central, "remote_commands", &id, |r| {
        r["status"] != "pending" && r["status"] != "executing"
    })
    .await;
    assert_eq!(row["status"], "completed", "{row}");
    agent.stop().await;
    // No socket was kicked for not authenticating in time.
    assert!(central.peer.kind("kicked").is_empty());
}

/// Waits until the row `id` of `table` satisfies `done`; the row.
async fn wait_row(
    central: &ConfCentral,
    table: &str,
    id: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    central
        .peer
        .wait(&format!("{table} {id}"), WAIT, |lines| {
            lines
                .iter()
                .rev()
                .find(|l| l["kind"] == "applied" && l["table"] == table && l["id"] == json!(id))
                .map(|l| l["row"].clone())
                .filter(|r| done(r))
        })
        .await
}

/// Point 1: every content change reaches the TV as a reload; the web app
/// is the real library, which drops an event read together with the
/// namespace disconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_content_change_reloads_the_tv() {
    const CHANGES: usize = 8;
    let central = central().await;
    let site = site();
    let app = ConfWebApp::start(site.dir.path()).await;
    let agent = start_connected(
        &central,
        &site,
        &format!(
            "ALLOWED_COMMANDS=update_config\nLOCAL_APP_URL={}\n",
            app.url()
        ),
    )
    .await;
    for i in 1..=CHANGES {
        let configuration = json!({"categories": [], "version": format!("3.{i}")});
        let id = central
            .command(
                "site-1",
                "update_config",
                json!({"configuration": configuration, "mode": "replace"}),
            )
            .await
            .expect("sent");
        let result = central.result_of(&id, FIRST_RUN).await;
        assert_eq!(result["status"], "success", "{result}");
        let reload = app.nth_reload(i, WAIT).await;
        assert_eq!(reload["version"], json!(format!("3.{i}")));
    }
    assert_eq!(app.tv_reloads().len(), CHANGES);
    assert_eq!(app.peer.of("handled", "config_updated").len(), CHANGES);
    agent.stop().await;
}

/// Point 2: results over the server's 1,000,000-byte `maxPayload` (the
/// real library closes the websocket on such a frame) never leave the box:
/// `get_logs` sends its newest lines, `get_config` an error naming size and
/// limit, `sync_local_state` is skipped; the link stays up throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_results_never_take_the_box_offline() {
    let central = central().await;
    let site = site();
    // 10,000 lines of 200 bytes: a 2 MB agent log.
    let log: String = (0..10_000)
        .map(|i| format!("{i:05} {}\n", "x".repeat(194)))
        .collect();
    site.write("neopro/logs/sync-agent.log", &log);
    // A configuration.json of 1.2 MB.
    let big = json!({"categories": [], "version": "2.0", "notes": "n".repeat(1_200_000)});
    site.write("neopro/webapp/configuration.json", &big.to_string());
    let agent = start_connected(&central, &site, "ALLOWED_COMMANDS=get_config,get_logs\n").await;

    let logs = central
        .command(
            "site-1",
            "get_logs",
            json!({"service": "sync-agent", "lines": 10000}),
        )
        .await
        .expect("sent");
    let result = central.result_of(&logs, FIRST_RUN).await;
    assert_eq!(result["status"], "success", "{}", short(&result));
    assert_eq!(result["result"]["truncated"], json!(true));
    let text = result["result"]["logs"].as_str().expect("logs");
    assert!(text.ends_with(&format!("09999 {}\n", "x".repeat(194))));
    let kept = result["result"]["lines"].as_u64().expect("lines");
    assert_eq!(kept as usize, text.lines().count());
    assert!((4_000..5_000).contains(&kept), "{kept} lines kept");
    assert!(result.to_string().len() < 1_000_000);

    let config = central
        .command("site-1", "get_config", json!({}))
        .await
        .expect("sent");
    let result = central.result_of(&config, FIRST_RUN).await;
    assert_eq!(result["status"], "error", "{}", short(&result));
    let error = result["error"].as_str().expect("error");
    assert!(
        error.contains("more than the 1000000 bytes the central server accepts"),
        "{error}"
    );

    // Still the first connection: nothing closed it, and it still works.
    let again = central
        .command(
            "site-1",
            "get_logs",
            json!({"service": "sync-agent", "lines": 5}),
        )
        .await
        .expect("sent");
    assert_eq!(central.result_of(&again, WAIT).await["status"], "success");
    assert!(
        central.disconnects().is_empty(),
        "{:?}",
        central.disconnects()
    );
    assert_eq!(central.received("authenticate").len(), 1);
    assert!(central.received("sync_local_state").is_empty());
    agent.stop().await;
}

/// The Rust test central enforces the same limit (a frame over its
/// announced `maxPayload` closes the connection); the agent stays under it
/// there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_test_central_gets_results_that_fit_too() {
    let central = neopro_e2e::central::Central::start(&[("site-1", "key-1")]).await;
    let site = site();
    let log: String = (0..10_000)
        .map(|i| format!("{i:05} {}\n", "y".repeat(194)))
        .collect();
    site.write("neopro/logs/sync-agent.log", &log);
    site.write_agent_conf(&central.url(), "site-1", "key-1");
    let agent = site.start_agent();
    central.wait_booked("site-1", WAIT).await;
    central.send_command(
        "logs-1",
        "get_logs",
        json!({"service": "sync-agent", "lines": 10000}),
    );
    let result = central.result_of("logs-1", FIRST_RUN).await;
    assert_eq!(
        result["result"]["truncated"],
        json!(true),
        "{}",
        short(&result)
    );
    assert_eq!(central.oversized(), 0);
    assert_eq!(central.count("authenticate"), 1);
    agent.stop().await;
}

/// A value for a failure message, cut short.
fn short(v: &Value) -> String {
    v.to_string().chars().take(300).collect()
}

/// A box at release 1.0.0 whose systemctl is a recording double, talking
/// to `central`, allowed to update.
fn updatable_site(central: &ConfCentral, fake: &neopro_e2e::fake_systemctl::FakeSystemctl) -> Site {
    let site = Site::new();
    site.write("neopro/webapp/index.html", "v1 index");
    site.write("neopro/webapp/configuration.json", r#"{"categories":[]}"#);
    site.write("neopro/server/app.js", "v1 server");
    site.write("neopro/VERSION", "1.0.0\n");
    site.write_agent_conf(&central.url(), "site-1", "key-1");
    site.append_conf(&format!(
        "{}\nALLOWED_COMMANDS=update_software,rollback_update\nLOCAL_APP_URL=http://127.0.0.1:9\n",
        fake.conf_line()
    ));
    site
}

/// Release 2.0.0's archive, and a file server holding it.
fn serve_release_2() -> (Vec<u8>, neopro_e2e::http::FileServer) {
    use neopro_e2e::release::{Item, tar_gz};
    let archive = tar_gz(&[
        Item::Dir("./"),
        Item::Dir("./webapp/"),
        Item::File("./webapp/index.html", b"v2 index"),
        Item::File("./server/app.js", b"v2 server"),
    ]);
    let server =
        neopro_e2e::http::FileServer::start(archive.clone(), neopro_e2e::http::Fault::None);
    (archive, server)
}

/// The Updates page's deployment of `archive` as `version` (upstream's
/// fields: no signature, `packageSize` a string, bare hex checksum).
fn add_update(
    server: &neopro_e2e::http::FileServer,
    archive: &[u8],
    deployment: &str,
    version: &str,
    critical: bool,
) -> Value {
    json!({
        "op": "add_update", "siteId": "site-1", "deploymentId": deployment,
        "softwareUpdateId": format!("su-{version}"), "version": version,
        "packageUrl": server.url("update.tar.gz"), "packageSize": archive.len(),
        "checksum": neopro_runtime::store::hash::sha256_hex(archive),
        "isCritical": critical, "description": "release", "changelog": null,
    })
}

/// Point 6: the canary's `rollback_update` names the software update's id
/// while the update came with the deployment's id as `updateId`; the
/// rollback still puts back the release that update replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canarys_rollback_ids_are_understood() {
    let central = central().await;
    let fake = neopro_e2e::fake_systemctl::FakeSystemctl::temp();
    let site = updatable_site(&central, &fake);
    let (archive, server) = serve_release_2();
    let agent = site.start_agent();
    central.wait_connected("site-1", WAIT).await;
    central
        .push(add_update(&server, &archive, "dep-1", "2.0.0", true))
        .await;
    let sent = central.peer.nth("emit", "command", 1, WAIT).await;
    assert_eq!(sent["data"]["updateId"], "dep-1", "upstream's shadowed id");
    let id = sent["id"].as_str().expect("id").to_owned();
    let result = central.result_of(&id, FIRST_RUN).await;
    assert_eq!(result["status"], "success", "{}", short(&result));
    assert_eq!(
        std::fs::read_to_string(site.path("neopro/VERSION")).expect("VERSION"),
        "2.0.0\n"
    );

    let reply = central
        .peer
        .control(json!({"op": "canary_rollback", "siteId": "site-1",
            "canaryDeploymentId": "canary-1", "softwareUpdateId": "su-2.0.0"}))
        .await;
    let rollback = reply["id"].as_str().expect("id").to_owned();
    let result = central.result_of(&rollback, WAIT).await;
    assert_eq!(result["status"], "success", "{}", short(&result));
    assert_eq!(result["result"]["version"], "1.0.0");
    assert_eq!(
        std::fs::read_to_string(site.path("neopro/webapp/index.html")).expect("index"),
        "v1 index"
    );
    agent.stop().await;
}

/// Point 5: the server applies progress events on pooled connections, in
/// no fixed order. A deployment that fails at once sends no 0 % start
/// before its failure, and the failure goes out once more a little later,
/// so the deployment reads failed, never in progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deployment_ends_failed_whatever_the_servers_order() {
    let central = central().await;
    let site = site();
    let agent = start_connected(
        &central,
        &site,
        "ALLOWED_COMMANDS=deploy_video\nLOCAL_APP_URL=http://127.0.0.1:9\n",
    )
    .await;
    for n in 1..=3 {
        let deployment = format!("dep-fail-{n}");
        central
            .add_clip(
                &deployment,
                &format!("vid-{n}"),
                "http://127.0.0.1:9/clip.mp4",
                &"0".repeat(64),
            )
            .await;
        // The failure, then its re-send.
        central
            .peer
            .wait(
                &format!("two failures of {deployment}"),
                FIRST_RUN,
                |lines| {
                    let failures = lines
                        .iter()
                        .filter(|l| {
                            l["kind"] == "applied"
                                && l["id"] == json!(deployment)
                                && l["row"]["status"] == "failed"
                        })
                        .count();
                    (failures >= 2).then_some(())
                },
            )
            .await;
        let events: Vec<Value> = central
            .received("deploy_progress")
            .into_iter()
            .filter(|p| p["deploymentId"] == json!(deployment))
            .collect();
        assert!(
            events.iter().all(|p| !p["error"].is_null()),
            "only failures were sent: {events:?}"
        );
        let books = central.books().await;
        assert_eq!(
            books["content_deployments"][&deployment]["status"], "failed",
            "{}",
            books["content_deployments"][&deployment]
        );
    }
    // A download that starts (its first chunk reads 0 %) and fails at its
    // end (wrong checksum): the 0 % start is held back and dropped, so
    // nothing can land after the failure and put the row back in progress.
    let body: Vec<u8> = (0..1_000_000).map(|i| (i % 251) as u8).collect();
    let server = neopro_e2e::http::FileServer::start(
        body,
        neopro_e2e::http::Fault::Slow {
            chunk: 4_000,
            pause_ms: 1,
        },
    );
    central
        .add_clip(
            "dep-fail-late",
            "vid-late",
            &server.url("clip.mp4"),
            &"1".repeat(64),
        )
        .await;
    wait_row(&central, "content_deployments", "dep-fail-late", |r| {
        r["status"] == "failed"
    })
    .await;
    let events: Vec<Value> = central
        .received("deploy_progress")
        .into_iter()
        .filter(|p| p["deploymentId"] == "dep-fail-late")
        .collect();
    assert!(
        events.iter().any(|p| !p["error"].is_null()),
        "the failure was sent: {events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|p| p["error"].is_null() && p["progress"] == json!(0)),
        "a 0 % start went out: {events:?}"
    );
    agent.stop().await;
}

/// The box's local hour, as the agent reads it.
fn local_hour() -> u8 {
    let out = std::process::Command::new("date")
        .arg("+%H")
        .output()
        .expect("date runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("an hour")
}

/// Point 4: the server re-sends an in-progress update deployment under a
/// new command id at every authentication. The box keeps one scheduled
/// update for it, and when the window opens it runs once and every
/// command id gets the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_update_is_scheduled_and_run_once() {
    let central = central().await;
    let fake = neopro_e2e::fake_systemctl::FakeSystemctl::temp();
    let site = updatable_site(&central, &fake);
    site.append_conf(&format!("AUTO_UPDATE_HOUR={}\n", (local_hour() + 12) % 24));
    let (archive, server) = serve_release_2();
    let agent = site.start_agent();
    central.wait_connected("site-1", WAIT).await;
    central
        .push(add_update(&server, &archive, "dep-1", "2.0.0", false))
        .await;
    for n in 2..=5 {
        // Scheduled (or joined) before the next authentication.
        central
            .peer
            .nth("event", "update_progress", n - 1, FIRST_RUN)
            .await;
        central
            .peer
            .control(json!({"op": "kick", "siteId": "site-1"}))
            .await;
        central.peer.nth("emit", "command", n, WAIT).await;
    }
    let scheduled = neopro_runtime::agent::maintenance_window::Scheduled::new(&site.path("state"));
    let deadline = tokio::time::Instant::now() + WAIT;
    while scheduled.list().first().map_or(0, |u| u.also.len()) < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            scheduled.list()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(scheduled.list().len(), 1, "one entry for the deployment");
    assert!(central.received("command_result").is_empty());
    agent.stop().await;

    // The window opens: the entry runs at start, and the server re-sends
    // the deployment at the authentication that follows (a sixth id, seen
    // on the real server running a second install). One run, six results,
    // all the run's own (none a second run's "already installed").
    site.append_conf(&format!("AUTO_UPDATE_HOUR={}\n", local_hour()));
    let agent = site.start_agent();
    central.peer.nth("emit", "command", 6, WAIT).await;
    let ids: Vec<String> = central
        .sent("command")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 6);
    for id in &ids {
        let result = central.result_of(id, FIRST_RUN).await;
        assert_eq!(result["status"], "success", "{}", short(&result));
        assert_ne!(
            result["result"]["message"],
            "already installed",
            "{id} ran a second time: {}",
            short(&result)
        );
    }
    let installs = fake
        .calls()
        .iter()
        .filter(|c| c.starts_with("stop neopro-app"))
        .count();
    assert_eq!(installs, 1, "{:?}", fake.calls());
    // The peer applies progress and results in a random order (a connection
    // pool): a late 0-100 % event can land after the result, and the
    // agent's closing event, sent again 2 s later, puts the row right. So
    // the row must read completed within a few seconds, the agent still up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let books = central.books().await;
        let status = books["update_deployments"]["dep-1"]["status"].clone();
        if status == "completed" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deployment still reads {status} 10 s after its results: {books}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.stop().await;
    assert!(
        central
            .received("command_result")
            .iter()
            .all(|r| r["status"] == "success"),
        "no interrupted or refused copy"
    );
}

/// Point 8: `diagnose` reports the running agent's link only for the key
/// that agent uses; a file with another key fails the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_tells_which_key_the_running_agent_uses() {
    use neopro_ops::diagnose::{DiagnoseArgs, Status, diagnose};
    let central = central().await;
    let site = site();
    let conf = site.write_agent_conf(&central.url(), "site-1", "key-1");
    let agent = site.start_agent();
    central.wait_connected("site-1", WAIT).await;
    // The status file is written by its own thread: wait for the session's
    // authentication in it.
    site.wait_link_status("the authentication in the status file", WAIT, |s| {
        s.state == "authenticated"
    })
    .await;
    let args = DiagnoseArgs {
        timeout: 5,
        ..DiagnoseArgs::default()
    };
    let report = diagnose(&conf, &args).await;
    assert_eq!(
        report.check("agent").expect("agent check").status,
        Status::Ok,
        "{report:#?}"
    );

    let other = site.path("other.conf");
    let text = std::fs::read_to_string(&conf).expect("site.conf") + "SITE_API_KEY=revoked-key\n";
    std::fs::write(&other, text).expect("other.conf");
    let report = diagnose(&other, &args).await;
    let check = report.check("agent").expect("agent check");
    assert_eq!(check.status, Status::Fail, "{report:#?}");
    assert!(
        check.detail.contains("another API key than this file has"),
        "{}",
        check.detail
    );

    // After a reconnect, no ping_check older than the connection is shown.
    central
        .peer
        .control(json!({"op": "kick", "siteId": "site-1"}))
        .await;
    central.peer.nth("event", "authenticate", 2, WAIT).await;
    let status = neopro_runtime::agent::session::link_status::read(&site.config.runtime_path)
        .expect("readable")
        .expect("a status");
    if let (Some(ping), Some(since)) = (&status.last_ping_check, &status.connected_since) {
        assert!(ping >= since, "{status:?}");
    }
    agent.stop().await;
}

/// Point 2, the backstop: a result after which the server drops the link
/// again and again (a limit the agent does not know of) is replaced by an
/// error result after 3 drops; the link then stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_the_server_keeps_dropping_becomes_an_error() {
    let central = central().await;
    let site = site();
    let agent = start_connected(&central, &site, "").await;
    let id = "c-refused";
    central
        .peer
        .control(json!({"op": "drop_on_result", "commandId": id}))
        .await;
    central
        .push(json!({"op": "command", "siteId": "site-1", "type": "get_config", "data": {}, "id": id}))
        .await;
    let error = central.result_with_status(id, "error", FIRST_RUN).await["error"].clone();
    assert!(
        error
            .as_str()
            .is_some_and(|e| e.contains("closed the connection right after this result 3 times")),
        "{error}"
    );
    assert_eq!(central.peer.kind("kicked").len(), 3);
    let after = central
        .command("site-1", "get_config", json!({}))
        .await
        .expect("sent");
    assert_eq!(central.result_of(&after, WAIT).await["status"], "success");
    assert_eq!(central.peer.kind("kicked").len(), 3);
    agent.stop().await;
}

/// A second connection of the site (e.g. `diagnose --auth`) closing makes
/// the real server forget the site; the agent notices the missing
/// `ping_check` and authenticates again, and commands reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_of_the_site_does_not_strand_the_agent() {
    use neopro_runtime::link::{self, LinkConfig, LinkEvent};
    let central = central().await;
    let site = site();
    let agent = start_connected(&central, &site, "").await;

    let (handle, mut events) = link::spawn(LinkConfig::new(&central.url()));
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(LinkEvent::Connected)) => handle
                .emit(
                    "authenticate",
                    &[json!({"siteId": "site-1", "apiKey": "key-1"})],
                )
                .expect("emit"),
            Ok(Some(LinkEvent::Event { name, .. })) if name == "authenticated" => break,
            Ok(Some(_)) => {}
            other => panic!("second session did not authenticate: {other:?}"),
        }
    }
    handle.close().await;
    // Forgotten, then back: a third authentication (PING_CHECK_TIMEOUT is
    // 3 s in the test site.conf).
    central.peer.nth("event", "authenticate", 3, WAIT).await;
    central.wait_connected("site-1", WAIT).await;
    let id = central
        .command("site-1", "get_config", json!({}))
        .await
        .expect("sent");
    assert_eq!(central.result_of(&id, FIRST_RUN).await["status"], "success");
    agent.stop().await;
}

/// Every built-in command that stays on 127.0.0.1, sent through the
/// server's REST route: each result lands in `remote_commands` under its
/// id with the status upstream derives from it (`completed` for success,
/// `failed` with the error text otherwise), and the link never drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_built_in_command_lands_in_the_servers_books() {
    let central = central().await;
    let fake = neopro_e2e::fake_systemctl::FakeSystemctl::temp();
    let site = site();
    site.write(
        "hostapd/hostapd.conf",
        "interface=wlan0\nssid=Club\nchannel=6\nwpa_passphrase=oldsecret\n",
    );
    site.write("neopro/videos/Match/old.mp4", "old clip");
    site.write("neopro/logs/sync-agent.log", "line 1\nline 2\n");
    let agent = start_connected(&central, &site, &format!(
        "{}\nHOSTAPD_CONF={}\nAGENT_SERVICE=neopro-runtime\n\
         ALLOWED_COMMANDS=get_config,get_logs,get_system_info,get_hotspot_config,update_config,update_hotspot,restart_service,delete_video,reboot\n",
        fake.conf_line(),
        site.path("hostapd/hostapd.conf").display()
    )).await;
    let configuration = json!({"categories": [], "version": "5.0"});
    // (type, data, expected status); reboot last: it runs once delivered.
    let commands = [
        ("get_config", json!({}), "success"),
        (
            "get_logs",
            json!({"service": "sync-agent", "lines": 20}),
            "success",
        ),
        ("get_system_info", json!({}), "success"),
        ("get_hotspot_config", json!({}), "success"),
        (
            "update_config",
            json!({"configuration": configuration, "mode": "replace"}),
            "success",
        ),
        (
            "update_hotspot",
            json!({"ssid": "Club-2", "password": "newsecret123"}),
            "success",
        ),
        (
            "restart_service",
            json!({"service": "neopro-app"}),
            "success",
        ),
        (
            "delete_video",
            json!({"videoId": "v-old", "filename": "old.mp4", "category": "Match"}),
            "success",
        ),
        ("delete_video", json!({"filename": "../site.conf"}), "error"),
        ("reboot", json!({}), "success"),
    ];
    for (kind, data, expected) in commands {
        let id = central
            .command("site-1", kind, data.clone())
            .await
            .expect("sent");
        let result = central.result_of(&id, FIRST_RUN).await;
        assert_eq!(
            result["status"],
            expected,
            "{kind} {data}: {}",
            short(&result)
        );
        let row = wait_row(&central, "remote_commands", &id, |r| {
            r["status"] != "pending" && r["status"] != "executing"
        })
        .await;
        let status = if expected == "success" {
            "completed"
        } else {
            "failed"
        };
        assert_eq!(row["status"], status, "{kind}: {row}");
        if expected == "error" {
            assert_eq!(row["error_message"], result["error"], "{kind}: {row}");
        }
    }
    assert!(!site.path("neopro/videos/Match/old.mp4").exists());
    assert_eq!(
        std::fs::read_to_string(site.path("neopro/webapp/configuration.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok()),
        Some(configuration)
    );
    neopro_e2e::process::wait_for("the reboot after delivery", WAIT, || {
        fake.reboot_at_ns().is_some()
    })
    .await;
    assert!(
        central.disconnects().is_empty(),
        "{:?}",
        central.disconnects()
    );
    assert_eq!(central.received("authenticate").len(), 1);
    agent.stop().await;
}

/// A content deployment delivered again while its first copy downloads
/// (the site reconnected: the server re-sends it under a new id): one file,
/// both ids answered success, the deployment completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_deployment_delivered_again_completes_once() {
    use neopro_e2e::http::{Fault, FileServer};
    let central = central().await;
    let site = site();
    let agent = start_connected(&central, &site, "ALLOWED_COMMANDS=deploy_video\n").await;
    let body: Vec<u8> = (0..400_000).map(|i| (i % 251) as u8).collect();
    // About 2 s of download: the kick lands while it runs.
    let server = FileServer::start(
        body.clone(),
        Fault::Slow {
            chunk: 40_000,
            pause_ms: 200,
        },
    );
    central
        .add_clip(
            "dep-c",
            "vid-c",
            &server.url("clip.mp4"),
            &neopro_runtime::store::hash::sha256_hex(&body),
        )
        .await;
    central
        .peer
        .wait("the download under way", FIRST_RUN, |lines| {
            lines
                .iter()
                .any(|l| {
                    l["kind"] == "event"
                        && l["event"] == "deploy_progress"
                        && l["data"]["progress"].as_u64().is_some_and(|p| p > 0)
                })
                .then_some(())
        })
        .await;
    central
        .peer
        .control(json!({"op": "kick", "siteId": "site-1"}))
        .await;
    // Re-sent at the next authentication.
    central.peer.nth("emit", "command", 2, WAIT).await;
    let ids: Vec<String> = central
        .sent("command")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect();
    for id in &ids {
        let result = central.result_of(id, FIRST_RUN).await;
        assert_eq!(result["status"], "success", "{id}: {}", short(&result));
    }
    let row = wait_row(&central, "content_deployments", "dep-c", |r| {
        r["status"] == "completed"
    })
    .await;
    assert_eq!(row["progress"], 100);
    let videos: Vec<_> = std::fs::read_dir(site.path("neopro/videos/Match"))
        .expect("videos")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(videos.len(), 1, "{videos:?}");
    assert_eq!(std::fs::read(&videos[0]).expect("the clip"), body);
    agent.stop().await;
}

/// Upstream's 30 s kick (1.5 s on the test clock) of a socket that never
/// authenticates: the server closes it; the agent's link reports it and
/// connects again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_authenticates_is_kicked_and_the_link_reconnects() {
    use neopro_runtime::link::{self, LinkConfig, LinkEvent};
    let central = central().await;
    let (handle, mut events) = link::spawn(LinkConfig::new(&central.url()));
    let mut connected = 0;
    let started = tokio::time::Instant::now();
    let mut kicked_after = None;
    while connected < 2 {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(LinkEvent::Connected)) => connected += 1,
            Ok(Some(LinkEvent::Disconnected(_))) if kicked_after.is_none() => {
                kicked_after = Some(started.elapsed());
            }
            Ok(Some(_)) => {}
            other => panic!("link ended: {other:?}"),
        }
    }
    let kicked = central.peer.kind("kicked");
    assert!(
        kicked.iter().all(|k| k["why"] == "auth timeout") && !kicked.is_empty(),
        "{kicked:?}"
    );
    let after = kicked_after.expect("a disconnect");
    assert!(
        after >= Duration::from_millis(1_400),
        "kicked after {after:?}, before the server's 1.5 s"
    );
    handle.close().await;
}

/// Upstream's command timeout (here `restart_service`'s 60 s times 0.02)
/// marks the row failed and broadcasts `command_timeout`; the agent's
/// result, coming later (the unit's restart hung 10 s), still lands and
/// overwrites it, as upstream's unguarded update does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_after_the_servers_timeout_still_lands() {
    let timings = CentralTimings {
        command_timeout_scale: 0.02,
        timeout_check_ms: 200,
        ..CentralTimings::fast()
    };
    let central = ConfCentral::start(&[("site-1", "key-1")], &timings, 0).await;
    let site = site();
    let (agent, _fake, id) = hanging_restart(&central, &site).await;
    let timed_out = wait_row(&central, "remote_commands", &id, |r| {
        r["status"] == "failed"
    })
    .await;
    assert!(
        timed_out["error_message"]
            .as_str()
            .is_some_and(|e| e.starts_with("Command timeout after ")),
        "{timed_out}"
    );
    let broadcast = central
        .peer
        .nth("broadcast", "command_timeout", 1, WAIT)
        .await;
    assert_eq!(broadcast["commandId"], json!(id));
    let result = central.result_of(&id, FIRST_RUN).await;
    let row = wait_row(&central, "remote_commands", &id, |r| {
        !r["error_message"]
            .as_str()
            .is_some_and(|e| e.starts_with("Command timeout"))
    })
    .await;
    let expected = if result["status"] == "success" {
        "completed"
    } else {
        "failed"
    };
    assert_eq!(row["status"], expected, "{row} after {}", short(&result));
    assert!(central.disconnects().is_empty());
    agent.stop().await;
}

/// The outbox across a server restart: a result finished while the
/// central is down reaches the central that comes back on the same port,
/// after the agent authenticates again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_finished_while_the_server_is_down_arrives_after_its_restart() {
    let central = central().await;
    let port = central.peer.port;
    let site = site();
    // The unit's restart hangs 10 s: the server goes down meanwhile.
    let (agent, fake, id) = hanging_restart(&central, &site).await;
    neopro_e2e::process::wait_for("the hanging restart", WAIT, || fake.hanging()).await;
    central.peer.stop();
    let again = ConfCentral::start(&[("site-1", "key-1")], &CentralTimings::fast(), port).await;
    let result = again.result_of(&id, WAIT).await;
    assert!(
        result["status"] == "success" || result["status"] == "error",
        "{result}"
    );
    let events: Vec<String> = again
        .peer
        .kind("event")
        .iter()
        .map(|l| l["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    let auth = events.iter().position(|e| e == "authenticate");
    let sent = events.iter().position(|e| e == "command_result");
    assert!(auth.is_some() && auth < sent, "{events:?}");
    agent.stop().await;
}

/// The statuses `update_deployments` row `id` went through in the peer's
/// books, repeats collapsed.
fn deployment_statuses(central: &ConfCentral, id: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in central.peer.lines() {
        if line["kind"] == "applied" && line["table"] == "update_deployments" && line["id"] == id {
            let status = line["row"]["status"].as_str().unwrap_or("?").to_owned();
            if out.last() != Some(&status) {
                out.push(status);
            }
        }
    }
    out
}

/// Point 7: an agent release sealed the real way (`component sign-release
/// --embed`, as `cargo xtask package` does) and deployed from the Updates
/// page — whose `update_software` carries no signature — is staged, run on
/// trial, committed once authenticated, and the deployment completes once:
/// the server's re-delivery at the new agent's authentication answers
/// "already installed" and never flips it to failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_agent_release_from_the_updates_page_installs_and_completes_once() {
    use neopro_e2e::process::{AgentProcess, agent_binary, wait_for};
    use neopro_e2e::release::{Item, tar_gz};
    const NEW: &str = "9.9.9";
    let central = central().await;
    let fake = neopro_e2e::fake_systemctl::FakeSystemctl::temp();
    let site = Site::new();
    site.write("neopro/webapp/index.html", "v1 index");
    site.write("neopro/VERSION", "1.0.0\n");

    // The operator's key and release, made with the agent's own CLI.
    let key_file = site.path("ops.key");
    let keygen = std::process::Command::new(agent_binary())
        .args(["component", "keygen", "--out"])
        .arg(&key_file)
        .output()
        .expect("keygen runs");
    assert!(keygen.status.success(), "{keygen:?}");
    let public = String::from_utf8_lossy(&keygen.stdout)
        .lines()
        .last()
        .expect("the public key line")
        .trim()
        .to_owned();
    let manifest = json!({"kind": "agent-release", "arch": neopro_runtime::selfupdate::own_arch(), "version": NEW})
        .to_string();
    let script = format!(
        "#!/bin/sh\nNEOPRO_RUNTIME_TEST_VERSION={NEW} exec '{}' \"$@\"\n",
        agent_binary().display()
    );
    let release_path = site.path("neopro-runtime-9.9.9.tar.gz");
    std::fs::write(
        &release_path,
        tar_gz(&[
            Item::File("agent-release.json", manifest.as_bytes()),
            Item::Dir("bin"),
            Item::File("bin/neopro-runtime", script.as_bytes()),
        ]),
    )
    .expect("release");
    let sealed = std::process::Command::new(agent_binary())
        .args([
            "component",
            "sign-release",
            "--embed",
            "--version",
            NEW,
            "--key",
        ])
        .arg(&key_file)
        .arg(&release_path)
        .output()
        .expect("sign-release runs");
    assert!(sealed.status.success(), "{sealed:?}");
    let archive = std::fs::read(&release_path).expect("sealed release");
    assert_eq!(
        neopro_e2e::release::first_entry(&archive)[..1],
        *b"{",
        "the signed manifest comes first"
    );

    let conf = site.write_agent_conf(&central.url(), "site-1", "key-1");
    site.append_conf(&format!(
        "{}\nUPDATE_TRUSTED_KEYS={public}\nALLOWED_COMMANDS=update_software,get_system_info\nLOCAL_APP_URL=http://127.0.0.1:9\n",
        fake.conf_line()
    ));
    let server =
        neopro_e2e::http::FileServer::start(archive.clone(), neopro_e2e::http::Fault::None);
    let agent = AgentProcess::start(&agent_binary(), &conf, Some("error"));
    central.wait_connected("site-1", WAIT).await;
    let reply = central
        .peer
        .control(add_update(&server, &archive, "dep-a", NEW, true))
        .await;
    assert_eq!(reply["sent"], json!(true), "{reply}");
    let first = central.peer.nth("emit", "command", 1, WAIT).await;
    assert!(first["data"].get("signature").is_none(), "{first}");
    let first = first["id"].as_str().expect("id").to_owned();
    wait_for("the agent's own restart", FIRST_RUN, || {
        fake.calls()
            .iter()
            .any(|c| c.contains("restart") && c.contains("neopro-runtime"))
    })
    .await;
    // systemd stops the old agent and starts the packaged binary again:
    // the launcher execs the staged one on trial.
    drop(agent);
    let agent = AgentProcess::start(&agent_binary(), &conf, Some("error"));
    let result = central.result_of(&first, WAIT).await;
    assert_eq!(result["status"], "success", "{}", short(&result));
    assert_eq!(result["result"]["agentUpdate"], json!(true));
    assert_eq!(result["result"]["version"], json!(NEW));
    // The server re-sent the deployment at the new agent's authentication.
    let again = central.peer.nth("emit", "command", 2, WAIT).await;
    assert_eq!(again["data"]["deploymentId"], "dep-a");
    let again = again["id"].as_str().expect("id").to_owned();
    let result = central.result_of(&again, WAIT).await;
    assert_eq!(result["status"], "success", "{}", short(&result));
    assert_eq!(result["result"]["message"], json!("already installed"));
    let state = neopro_runtime::selfupdate::state::AgentState::load(&site.path("state/agent"))
        .expect("state")
        .expect("an agent state");
    assert_eq!(state.committed.as_deref(), Some(NEW));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while central.books().await["update_deployments"]["dep-a"]["status"] != "completed" {
        assert!(tokio::time::Instant::now() < deadline, "not completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every progress event and result the server received is in its books
    // (each broadcast follows its pooled write).
    central
        .peer
        .wait("every write applied", WAIT, |lines| {
            let count = |kind: &str, event: &str| {
                lines
                    .iter()
                    .filter(|l| l["kind"] == kind && l["event"] == event)
                    .count()
            };
            (count("broadcast", "update_progress") == count("event", "update_progress")
                && count("broadcast", "command_completed") == count("event", "command_result"))
            .then_some(())
        })
        .await;
    // What the site page's "Infos système" shows (upstream's
    // `GET /sites/:id/system-info` answers `result.systemInfo`): the OS
    // line names the agent that now runs.
    let info = central
        .command("site-1", "get_system_info", json!({}))
        .await
        .expect("sent");
    let info = central.result_of(&info, FIRST_RUN).await;
    let os = info["result"]["systemInfo"]["os"]
        .as_str()
        .unwrap_or_default();
    assert!(
        os.ends_with(&format!(", agent neopro-runtime {NEW}"))
            || os == format!("agent neopro-runtime {NEW}"),
        "{}",
        short(&info)
    );
    drop(agent);
    assert_eq!(
        deployment_statuses(&central, "dep-a"),
        ["in_progress", "completed"],
        "completed once, never failed"
    );
    let books = central.books().await;
    for id in [&first, &again] {
        assert_eq!(books["remote_commands"][id]["status"], "completed", "{id}");
    }
    let restarts = fake
        .calls()
        .iter()
        .filter(|c| c.contains("restart") && c.contains("neopro-runtime"))
        .count();
    assert_eq!(restarts, 1, "one install: {:?}", fake.calls());
}
