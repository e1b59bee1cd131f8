//! The real agent binary killed with SIGKILL in the middle of a deployment:
//! no file under its final name, configuration.json intact; after a restart
//! the interrupted command is reported and a new deploy resumes the download.
// A broken fixture should stop the test loudly.
#![allow(clippy::expect_used)]

use neopro_e2e::Site;
use neopro_e2e::central::Central;
use neopro_e2e::http::{Fault, FileServer};
use neopro_e2e::process::{AgentProcess, agent_binary, wait_for};
use neopro_runtime::store::hash::sha256_hex;
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_deploy_leaves_no_partial_file_and_the_next_deploy_resumes() {
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    // ~64 KiB every 20 ms: about a second for the whole file.
    let server = FileServer::start(
        body.clone(),
        Fault::Slow {
            chunk: 65_536,
            pause_ms: 20,
        },
    );
    let central = Central::start(&[("site-1", "key-1")]).await;
    let site = Site::new();
    site.write("neopro/webapp/configuration.json", r#"{"categories":[]}"#);
    let conf = site.write_agent_conf(&central.url(), "site-1", "key-1");
    let mut text = std::fs::read_to_string(&conf).expect("conf");
    text.push_str("ALLOWED_COMMANDS=deploy_video\n");
    std::fs::write(&conf, text).expect("conf");

    let deploy = |id: &str| {
        json!({"id": id, "data": {
            "deploymentId": "dep-1", "videoId": "vid-1", "videoUrl": server.url("v.mp4"),
            "filename": "v.mp4", "originalName": "Clip.mp4", "category": "Match",
            "checksum": sha256_hex(&body)
        }})
    };
    let send = |command: Value| {
        central.send_command(
            command["id"].as_str().unwrap_or(""),
            "deploy_video",
            command["data"].clone(),
        )
    };
    let final_path = site.path("neopro/videos/Match/Clip.mp4");
    let partial = site.path("neopro/videos/Match/.Clip.mp4.partial");

    let agent = AgentProcess::start(&agent_binary(), &conf, Some("error"));
    central.nth("heartbeat", 1, WAIT).await;
    send(deploy("c-1"));
    wait_for("a partial download", WAIT, || {
        std::fs::metadata(&partial).is_ok_and(|m| m.len() > 200_000)
    })
    .await;
    agent.kill_hard();

    assert!(!final_path.exists(), "nothing under the final name");
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(site.path("neopro/webapp/configuration.json")).expect("config"),
    )
    .expect("configuration.json still valid JSON");
    assert_eq!(config, json!({"categories": []}));

    // Restart: the interrupted command is reported, never silently lost.
    let _agent = AgentProcess::start(&agent_binary(), &conf, Some("error"));
    let interrupted = central.result_of("c-1", WAIT).await;
    assert_eq!(interrupted["status"], json!("error"));
    assert_eq!(
        interrupted["error"],
        json!(neopro_runtime::journal::INTERRUPTED)
    );
    // The server sends the deployment again (new id): it resumes.
    send(deploy("c-2"));
    let done = central.result_of("c-2", WAIT).await;
    assert_eq!(done["status"], json!("success"), "{done}");
    assert_eq!(std::fs::read(&final_path).ok(), Some(body));
    let ranges = server.ranges();
    assert_eq!(ranges.len(), 2);
    assert!(
        ranges[1]
            .as_deref()
            .is_some_and(|r| r.starts_with("bytes=")),
        "the second download resumed: {ranges:?}"
    );
}
