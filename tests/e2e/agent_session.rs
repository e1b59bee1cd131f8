//! The agent against a test central server: authentication, heartbeat,
//! commands, results, and staying connected through failures.
// A broken fixture should stop the test loudly.
#![allow(clippy::expect_used)]

use neopro_e2e::Site;
use neopro_e2e::central::Central;
use neopro_e2e::proxy::Proxy;
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

fn site_with_config() -> Site {
    let site =
        Site::with_webapp("{\"categories\":[{\"name\":\"Match\",\"videos\":[]}],\"version\":2.0}");
    site.write("neopro/logs/sync-agent.log", "one\ntwo\nthree\n");
    site
}

/// Waits until the agent has accepted a command: accepted commands are
/// journaled (their id appended to `admitted.log`) before they run.
async fn wait_accepted(site: &Site, id: &str) {
    let log = site.path("state/journal/admitted.log");
    let accepted = || std::fs::read_to_string(&log).is_ok_and(|text| text.lines().any(|l| l == id));
    let deadline = tokio::time::Instant::now() + WAIT;
    while !accepted() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "command {id} never accepted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn is_number(v: &Value) -> bool {
    v.is_number()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticates_heartbeats_syncs_and_answers_commands() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let site = site_with_config();
    site.write_agent_conf(&central.url(), "site-1", "key-1");
    let agent = site.start_agent();

    assert_eq!(
        central.next("authenticate", WAIT).await,
        json!({"siteId": "site-1", "apiKey": "key-1"})
    );

    let hb = central.next("heartbeat", WAIT).await;
    assert_eq!(hb["siteId"], json!("site-1"));
    assert!(is_number(&hb["timestamp"]));
    for key in [
        "cpu",
        "memory",
        "temperature",
        "disk",
        "uptime",
        "timestamp",
    ] {
        assert!(is_number(&hb["metrics"][key]), "metrics.{key} in {hb}");
    }
    assert!(hb["metrics"]["uptime"].is_u64(), "uptime in whole seconds");
    assert!(hb["metrics"]["localIp"].is_string() || hb["metrics"]["localIp"].is_null());
    assert_eq!(hb["softwareVersion"], json!("2.1.3"));
    assert_eq!(
        hb["versionInfo"],
        json!({"version": "2.1.3", "commit": null, "buildDate": null, "source": "VERSION",
               "agentVersion": env!("CARGO_PKG_VERSION")})
    );
    // The next one comes HEARTBEAT_INTERVAL (1 s) later.
    let second = central.next("heartbeat", WAIT).await;
    assert!(second["timestamp"].as_u64() >= hb["timestamp"].as_u64().map(|t| t + 900));

    let sync = central.next("sync_local_state", WAIT).await;
    assert_eq!(sync["siteId"], json!("site-1"));
    assert_eq!(
        sync["config"],
        json!({"categories": [{"name": "Match", "videos": []}], "version": 2.0})
    );
    // JSON.stringify prints 2.0 as 2: the hash must be computed on that.
    let expected = neopro_runtime::agent::session::local_state::config_hash(&sync["config"]);
    assert_eq!(sync["configHash"], json!(expected));
    assert_eq!(
        neopro_runtime::agent::session::local_state::js_stringify(&sync["config"]),
        "{\"categories\":[{\"name\":\"Match\",\"videos\":[]}],\"version\":2}"
    );
    assert!(
        sync["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.len() == 24)
    );

    central.send_command("c-config", "get_config", json!({}));
    assert_eq!(
        central.result_of("c-config", WAIT).await,
        json!({"commandId": "c-config", "status": "success", "result": {
            "success": true,
            "configuration": {"categories": [{"name": "Match", "videos": []}], "version": 2.0}
        }})
    );
    central.send_command(
        "c-logs",
        "get_logs",
        json!({"service": "sync-agent", "lines": 2}),
    );
    assert_eq!(
        central.result_of("c-logs", WAIT).await,
        json!({"commandId": "c-logs", "status": "success", "result": {"success": true, "logs": "two\nthree\n"}})
    );
    central.send_command("c-info", "get_system_info", json!({}));
    let info = central.result_of("c-info", WAIT).await;
    assert_eq!(info["status"], json!("success"));
    assert!(info["result"]["systemInfo"]["hostname"].is_string());
    assert!(is_number(&info["result"]["metrics"]["uptime"]));

    central.send_command(
        "c-bad",
        "get_logs",
        json!({"service": "neopro-app; touch x"}),
    );
    assert_eq!(
        central.result_of("c-bad", WAIT).await,
        json!({"commandId": "c-bad", "status": "error",
               "error": "'neopro-app; touch x' is not a valid service name (letters, digits and :-_.@ only)"})
    );
    central.send_command("c-settings", "update_settings", json!({}));
    assert_eq!(
        central.result_of("c-settings", WAIT).await,
        json!({"commandId": "c-settings", "status": "error", "error": "Command type 'update_settings' is not allowed"})
    );
    // Allowed by site.conf, but no component handles it.
    central.send_command("c-unhandled", "unhandled_command", json!({}));
    assert_eq!(
        central.result_of("c-unhandled", WAIT).await,
        json!({"commandId": "c-unhandled", "status": "error", "error": "Unknown command type: unhandled_command"})
    );

    // Liveness probe and broadcasts meant for dashboards.
    central.broadcast(
        "command_completed",
        json!({"siteId": "x", "commandId": "y", "status": "success"}),
    );
    central.broadcast("ping_check", json!({"timestamp": 1}));
    central.next("pong_check", WAIT).await;

    agent.stop().await;
    central.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_are_mirrored_to_the_server() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let site = site_with_config();
    site.write_agent_conf(&central.url(), "site-1", "key-1");
    let agent = site.start_agent();
    let first = central.next("sync_local_state", WAIT).await;
    site.write(
        "neopro/webapp/configuration.json",
        "{\"categories\":[],\"changed\":true}",
    );
    let second = central.next("sync_local_state", WAIT).await;
    assert_eq!(second["config"], json!({"categories": [], "changed": true}));
    assert_ne!(first["configHash"], second["configHash"]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_authentication_is_retried_slowly_until_site_conf_is_fixed() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let site = site_with_config();
    for (id, key) in [("site-1", ""), ("site-9", "key-1"), ("site-1", "wrong")] {
        site.write_agent_conf(&central.url(), id, key);
        let before = central.count("authenticate");
        let agent = site.start_agent();
        let attempt = central.nth("authenticate", before + 1, WAIT).await;
        assert_eq!(attempt, json!({"siteId": id, "apiKey": key}));
        // Over 1 s the retry wait (400 ms, doubling) allows at most 3
        // attempts; the connection backoff alone would allow ~10.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let attempts = central.count("authenticate") - before;
        assert!(
            (1..=3).contains(&attempts),
            "{attempts} attempts for ({id}, {key})"
        );
        assert_eq!(central.count("heartbeat"), 0);
        agent.stop().await;
    }
    // Fixing site.conf is enough: no restart.
    let before = central.count("authenticate");
    let agent = site.start_agent();
    central.nth("authenticate", before + 1, WAIT).await;
    site.write_agent_conf(&central.url(), "site-1", "key-1");
    let hb = central.next("heartbeat", WAIT).await;
    assert_eq!(hb["siteId"], json!("site-1"));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_produced_while_the_server_is_down_arrive_after_its_restart() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let site = site_with_config();
    site.write_agent_conf(&central.url(), "site-1", "key-1");
    let agent = site.start_agent();
    central.next("heartbeat", WAIT).await;

    // A command that ends (by its 1 s deadline) while the server is down.
    central.send_command("c-slow", "test_loop", json!({}));
    wait_accepted(&site, "c-slow").await;
    let port = central.stop().await;
    let central = Central::start_on(port, &[("site-1", "key-1")]).await;
    central.next("authenticate", WAIT).await;
    assert_eq!(
        central.result_of("c-slow", WAIT).await,
        json!({"commandId": "c-slow", "status": "error",
               "error": "component 'loop-forever' did not finish within its time limit of 1 s"})
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_side_disconnect_is_followed_by_a_new_session() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let site = site_with_config();
    site.write_agent_conf(&central.url(), "site-1", "key-1");
    let agent = site.start_agent();
    central.next("authenticate", WAIT).await;
    central.next("heartbeat", WAIT).await;
    central.disconnect_all();
    central.next("authenticate", WAIT).await;
    central.next("heartbeat", WAIT).await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_link_is_detected_and_the_agent_comes_back() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let proxy = Proxy::start(central.addr).await;
    let site = site_with_config();
    site.write_agent_conf(&proxy.url(), "site-1", "key-1");
    let agent = site.start_agent();
    central.next("heartbeat", WAIT).await;

    proxy.freeze();
    let frozen_at = proxy.accepted();
    // Detection takes pingInterval + pingTimeout (0.6 s), then a new
    // attempt; new attempts hit the connect timeout (1 s) while frozen.
    let deadline = tokio::time::Instant::now() + WAIT;
    while proxy.accepted() == frozen_at {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead link never detected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.thaw();
    let auths = central.count("authenticate");
    let deadline = tokio::time::Instant::now() + WAIT;
    while central.count("authenticate") == auths {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never re-authenticated"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_keeps_connect_attempts_within_the_backoff_bound() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let proxy = Proxy::start(central.addr).await;
    let site = site_with_config();
    site.write_agent_conf(&proxy.url(), "site-1", "key-1");
    let agent = site.start_agent();
    central.next("heartbeat", WAIT).await;
    let port = central.stop().await;

    let before = proxy.accepted();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attempts = proxy.accepted() - before;
    // Full jitter over windows of 50, 100, 200, 400, 400… ms: ~17 in 3 s
    // on average; a spinning retry would make thousands.
    assert!((4..=40).contains(&attempts), "{attempts} attempts in 3 s");

    let central = Central::start_on(port, &[("site-1", "key-1")]).await;
    central.next("heartbeat", WAIT).await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_delivered_twice_runs_once() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let site = site_with_config();
    site.write_agent_conf(&central.url(), "site-1", "key-1");
    let agent = site.start_agent();
    central.next("heartbeat", WAIT).await;
    let data = json!({"op": "append", "path": "runs.txt", "contents": "ran"});
    central.send_command("c-dup", "test_escape", data.clone());
    let first = central.result_of("c-dup", WAIT).await;
    central.send_command("c-dup", "test_escape", data);
    let second = central.result_of("c-dup", WAIT).await;
    assert_eq!(first, second);
    assert_eq!(
        std::fs::read_to_string(site.path("neopro/videos/runs.txt"))
            .ok()
            .as_deref(),
        Some("ran\n"),
        "the component ran exactly once"
    );
    agent.stop().await;

    // Even across a restart of the agent.
    let agent = site.start_agent();
    central.next("heartbeat", WAIT).await;
    central.send_command(
        "c-dup",
        "test_escape",
        json!({"op": "append", "path": "runs.txt", "contents": "ran"}),
    );
    assert_eq!(central.result_of("c-dup", WAIT).await, first);
    assert_eq!(
        std::fs::read_to_string(site.path("neopro/videos/runs.txt"))
            .ok()
            .as_deref(),
        Some("ran\n")
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_request_lets_the_running_command_finish_and_report() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let site = site_with_config();
    site.write_agent_conf(&central.url(), "site-1", "key-1");
    let agent = site.start_agent();
    central.next("heartbeat", WAIT).await;
    central.send_command("c-running", "test_loop", json!({}));
    wait_accepted(&site, "c-running").await;
    // Stop while it runs (it ends by its 1 s deadline): the agent waits for
    // it, sends its result, then leaves.
    let stopping = tokio::spawn(agent.stop());
    assert_eq!(
        central.result_of("c-running", WAIT).await["status"],
        json!("error")
    );
    stopping.await.expect("agent stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_authenticate_leads_to_a_new_connection() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    central.ignore_next_authenticates(1);
    let site = site_with_config();
    site.write_agent_conf(&central.url(), "site-1", "key-1");
    let agent = site.start_agent();
    central.nth("authenticate", 1, WAIT).await;
    // After the 2 s answer timeout: a new connection, a new authenticate.
    central.nth("authenticate", 2, WAIT).await;
    central.next("heartbeat", WAIT).await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_command_gets_a_clear_error_and_the_next_one_runs() {
    // Production ping timings: moving 10 MiB on a loaded test machine must
    // not look like a dead link.
    let central = Central::start_production(&[("site-1", "key-1")]).await;
    let site = site_with_config();
    site.write_agent_conf(&central.url(), "site-1", "key-1");
    let agent = site.start_agent();
    central.next("heartbeat", WAIT).await;
    // 10 MiB: far over the test central's maxPayload (socket.io's 1,000,000 bytes).
    let blob = "x".repeat(10 << 20);
    central.send_command("c-huge", "update_config", json!({"blob": blob}));
    let result = central.result_of("c-huge", WAIT).await;
    assert_eq!(result["status"], json!("error"));
    let error = result["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("Command too large: its message is 104858")
            && error.ends_with(
                " bytes, more than the 1065536 bytes this box accepts (the server's maxPayload plus a margin); it was not run"
            ),
        "{error}"
    );
    // The same link carries on.
    central.send_command("c-after", "get_config", json!({}));
    assert_eq!(
        central.result_of("c-after", WAIT).await["status"],
        json!("success")
    );
    agent.stop().await;
}
