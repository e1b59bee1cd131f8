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
    let site = Site::new();
    site.write(
        "neopro/webapp/configuration.json",
        "{\"categories\":[],\"version\":\"2.0\"}",
    );
    site.write("neopro/VERSION", "2.1.3\n");
    site
}

async fn central() -> ConfCentral {
    ConfCentral::start(&[("site-1", "key-1")], &CentralTimings::fast(), 0).await
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
    site.write_agent_conf(&central.url(), "site-1", "key-1");
    site.append_conf(&format!(
        "ALLOWED_COMMANDS=update_config\nLOCAL_APP_URL={}\n",
        app.url()
    ));
    let agent = site.start_agent();
    central.wait_connected("site-1", WAIT).await;
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
