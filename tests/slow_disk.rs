//! A slow SD card must not hold up the link: while every fsync takes
//! 400 ms and state-changing commands keep the journal busy, the agent
//! still answers the server's `ping_check` at once and stays connected.
//!
//! The agent runs on a runtime shaped like production's (one async worker),
//! on its own thread, so time the session spends waiting for the disk shows
//! up as pong latency at the test central.
#![allow(clippy::expect_used)]

use neopro_e2e::Site;
use neopro_e2e::central::Central;
use neopro_runtime::config::SiteConfig;
use serde_json::json;
use std::time::{Duration, Instant};

/// What one fsync costs on the simulated card (a worn SD card under load
/// takes tens to hundreds of milliseconds).
const SLOW_FSYNC: Duration = Duration::from_millis(400);
/// The pong latency allowed: loopback answers take a few milliseconds; one
/// fsync waited for on the session's path would exceed this by far.
const PONG_BOUND: Duration = Duration::from_millis(200);
/// State-changing commands sent at once: their journal admissions alone
/// keep the disk busy for COMMANDS × SLOW_FSYNC (≈ 13 ping_checks).
const COMMANDS: usize = 8;

/// Runs the agent as `neopro-runtime run` does (multi-thread runtime, one
/// worker) on a thread of its own; dropping the sender stops it.
fn start_agent_thread(
    site: &Site,
) -> (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let conf = site.path("site.conf");
    let config = SiteConfig::load(Some(&conf)).expect("site.conf loads");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("agent runtime");
        let result = runtime.block_on(neopro_runtime::agent::run(
            config,
            Some(conf),
            neopro_e2e::fast_options(),
            async move {
                let _ = stopped.await;
            },
        ));
        result.expect("agent ran");
    });
    (stop, thread)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pongs_stay_prompt_while_every_fsync_is_slow() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let site = Site::new();
    site.write_agent_conf(&central.url(), "site-1", "key-1");
    site.append_conf("ALLOWED_COMMANDS=update_config\nLOCAL_APP_URL=http://127.0.0.1:9\n");
    let (stop, agent) = start_agent_thread(&site);
    central.nth("heartbeat", 1, Duration::from_secs(30)).await;
    let configuration = json!({"configuration": {"categories": [{"name": "Match", "videos": []}]}});
    // Compiled and cached before the disk turns slow.
    central.send_command("warm", "update_config", configuration.clone());
    let warm = central.result_of("warm", Duration::from_secs(120)).await;
    assert_eq!(warm["status"], json!("success"), "{warm}");

    neopro_runtime::store::atomic::simulate_slow_fsync(SLOW_FSYNC);
    let slow_since = Instant::now();
    let authenticated = central.count("authenticate");
    for i in 0..COMMANDS {
        central.send_command(&format!("slow-{i}"), "update_config", configuration.clone());
    }
    for i in 0..COMMANDS {
        let result = central
            .result_of(&format!("slow-{i}"), Duration::from_secs(120))
            .await;
        assert_eq!(result["status"], json!("success"), "{result}");
    }
    neopro_runtime::store::atomic::simulate_slow_fsync(Duration::ZERO);
    let busy_for = slow_since.elapsed();

    // A ping_check never answered counts as the time since it was sent.
    let during: Vec<Duration> = central
        .pong_delays()
        .into_iter()
        .filter(|(sent, _)| *sent >= slow_since && *sent < slow_since + busy_for)
        .map(|(sent, delay)| delay.unwrap_or_else(|| sent.elapsed()))
        .collect();
    assert!(
        busy_for >= SLOW_FSYNC * COMMANDS as u32,
        "the disk was slow for only {busy_for:?}: the journal did not wait for it"
    );
    assert!(
        during.len() >= 8,
        "only {} ping_checks answered in the {busy_for:?} the disk was busy",
        during.len()
    );
    let worst = during.iter().max().copied().unwrap_or_default();
    assert!(
        worst < PONG_BOUND,
        "a pong_check took {worst:?} while the disk was slow (bound {PONG_BOUND:?}); all: {during:?}"
    );
    assert_eq!(
        central.count("authenticate"),
        authenticated,
        "the link dropped while the disk was slow"
    );
    let _ = stop.send(());
    tokio::task::spawn_blocking(move || agent.join())
        .await
        .expect("join task")
        .expect("agent thread");
}

/// A backlog the server sends at once (300 commands, as after a long
/// outage) is answered in full through the journal queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_sent_at_once_is_answered_in_full() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let site = Site::new();
    site.write("neopro/webapp/configuration.json", r#"{"categories":[]}"#);
    site.write_agent_conf(&central.url(), "site-1", "key-1");
    let (stop, agent) = start_agent_thread(&site);
    central.nth("heartbeat", 1, Duration::from_secs(30)).await;
    central.send_command("warm", "get_config", json!({}));
    central.result_of("warm", Duration::from_secs(120)).await;
    let before = central.count("command_result");
    for i in 0..300 {
        central.send_command(&format!("b-{i}"), "get_config", json!({}));
    }
    let all = central
        .wait_more_than("command_result", before + 299, Duration::from_secs(120))
        .await;
    let answered: std::collections::HashSet<String> = central
        .all("command_result")
        .iter()
        .filter_map(|r| r["commandId"].as_str().map(str::to_owned))
        .filter(|id| id.starts_with("b-"))
        .collect();
    assert!(
        all && answered.len() == 300,
        "{} of 300 answered",
        answered.len()
    );
    let _ = stop.send(());
    tokio::task::spawn_blocking(move || agent.join())
        .await
        .expect("join task")
        .expect("agent thread");
}
