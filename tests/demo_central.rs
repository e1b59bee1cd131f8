//! The demo: a local central server, the real agent binary connected to it,
//! a few commands, their results printed.
//!
//! `cargo xtask demo` runs it as `demo-central <agent binary> <work dir>`.
#![allow(clippy::expect_used)]

use neopro_e2e::central::Central;
use neopro_e2e::http::{Fault, FileServer};
use neopro_e2e::process::AgentProcess;
use neopro_runtime::signing::components::SecretKey;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Also the wait for the re-authentication after the server's disconnect:
/// its answer comes at once (the test central once lost it, see
/// `tests/e2e/reauth.rs`), so a missing one fails the demo.
const WAIT: Duration = Duration::from_secs(20);

fn demo_site(dir: &Path, url: &str, components: &Path, extra: &str) -> PathBuf {
    let neopro = dir.join("neopro");
    for sub in ["webapp", "logs", "videos"] {
        std::fs::create_dir_all(neopro.join(sub)).expect("demo folders");
    }
    std::fs::write(neopro.join("VERSION"), "2.1.3\n").expect("VERSION");
    std::fs::write(
        neopro.join("webapp/configuration.json"),
        "{\n  \"categories\": [\n    {\"name\": \"Match\", \"videos\": [{\"name\": \"But\", \"path\": \"videos/Match/but.mp4\"}]}\n  ],\n  \"sponsors\": []\n}\n",
    )
    .expect("configuration.json");
    let log: String = (1..=20)
        .map(|i| format!("2026-11-28T10:00:{i:02}Z info heartbeat sent ({i})\n"))
        .collect();
    std::fs::write(neopro.join("logs/sync-agent.log"), log).expect("log");
    let conf = dir.join("site.conf");
    std::fs::write(
        &conf,
        format!(
            "# demo site\nCENTRAL_SERVER_ENABLED=true\nCENTRAL_SERVER_URL={url}\nSITE_ID=demo-site\n\
             SITE_API_KEY=demo-key\nSITE_NAME=Demo club\nNEOPRO_ROOT={}\nSTATE_PATH={}\n\
             COMPONENTS_PATH={}\nHEARTBEAT_INTERVAL=2000\n{extra}",
            neopro.display(),
            dir.join("state").display(),
            components.display()
        ),
    )
    .expect("site.conf");
    conf
}

fn show(title: &str, value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    println!("\n=== {title}");
    for line in lines.iter().take(40) {
        println!("{line}");
    }
    if lines.len() > 40 {
        println!("  … ({} more lines)", lines.len() - 40);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(agent_bin), Some(work), Some(template)) = (args.get(1), args.get(2), args.get(3))
    else {
        eprintln!(
            "usage: demo-central <neopro-runtime binary> <work dir> <template component .wasm> [components dir]"
        );
        std::process::exit(2);
    };
    let agent_bin = PathBuf::from(agent_bin)
        .canonicalize()
        .expect("agent binary exists");
    let work = PathBuf::from(work);
    let _ = std::fs::remove_dir_all(&work);
    // The built-in components: the 4th argument, else `components/` next
    // to the binary (as in `dist/`).
    let components = match args.get(4) {
        Some(dir) => PathBuf::from(dir),
        None => agent_bin
            .parent()
            .map(|d| d.join("components"))
            .expect("components next to the binary"),
    };

    let central = Central::start(&[("demo-site", "demo-key")]).await;
    println!("local central server listening on {}", central.url());
    // The operator's signing key, trusted by the box, and a site policy
    // that lets pushed components read the videos.
    let key = SecretKey::generate().expect("signing key");
    std::fs::create_dir_all(&work).expect("work dir");
    let policy = work.join("component-policy.toml");
    std::fs::write(
        &policy,
        "extend-allowlist = true\n[grants]\nsystem = true\nfiles = { videos = \"ro\" }\n",
    )
    .expect("policy");
    let extra = format!(
        "COMPONENT_POLICY_PATH={}\nTRUSTED_COMPONENT_KEYS={}\n",
        policy.display(),
        key.public_key()
    );
    let conf = demo_site(&work, &central.url(), &components, &extra);
    let _agent = AgentProcess::start(&agent_bin, &conf, None);

    show("authenticate", &central.next("authenticate", WAIT).await);
    show("heartbeat", &central.next("heartbeat", WAIT).await);
    show(
        "sync_local_state",
        &central.next("sync_local_state", WAIT).await,
    );

    // A local file server for deploy_video (2 MB of bytes).
    let video_bytes: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let video = FileServer::start(video_bytes.clone(), Fault::None);
    // ... and one serving the template command, pushed as a signed component.
    let template_wasm = std::fs::read(template).expect("template component");
    let template_manifest =
        std::fs::read_to_string(Path::new(template).with_extension("toml")).expect("manifest");
    let template_sha = neopro_runtime::store::hash::sha256_hex(&template_wasm);
    let component = FileServer::start(template_wasm, Fault::None);

    let commands = [
        ("cmd-1", "get_system_info", json!({})),
        ("cmd-2", "get_config", json!({})),
        (
            "cmd-3",
            "get_logs",
            json!({"service": "sync-agent", "lines": 5}),
        ),
        (
            "cmd-4",
            "get_logs",
            json!({"service": "neopro-app; rm -rf /"}),
        ),
        ("cmd-5", "update_settings", json!({})),
        (
            "cmd-6",
            "deploy_video",
            json!({"videoUrl": video.url("x.mp4")}),
        ),
        (
            "cmd-10",
            "deploy_video",
            json!({
                "deploymentId": "dep-1", "videoId": "vid-1", "videoUrl": video.url("abc.mp4"),
                "filename": "abc.mp4", "originalName": "Entrée des joueurs.mp4",
                "category": "Match", "subcategory": null,
                "checksum": neopro_runtime::store::hash::sha256_hex(&video_bytes),
            }),
        ),
        (
            "cmd-7",
            "update_config",
            json!({"neoProContent": {"liveScoreEnabled": true}, "mode": "merge"}),
        ),
        (
            "cmd-8",
            "delete_video",
            json!({"filename": "but.mp4", "category": "Match"}),
        ),
        (
            "cmd-9",
            "delete_video",
            json!({"filename": "passwd", "category": "../../etc"}),
        ),
        (
            "cmd-11",
            "install_component",
            json!({
                "name": "video-inventory", "version": "1.0.0",
                "url": component.url("video-inventory.wasm"), "sha256": template_sha,
                "signature": key.sign(&template_sha, &template_manifest),
                "manifest": template_manifest,
            }),
        ),
        ("cmd-12", "video_inventory", json!({})),
        ("cmd-13", "list_components", json!({})),
    ];
    for (id, command_type, data) in commands {
        println!("\n>>> command {id}: {command_type} {data}");
        central.send_command(id, command_type, data);
        let result = central.result_of(id, WAIT).await;
        show(&format!("command_result {id}"), &result);
    }

    println!("\n>>> server-side disconnect: the agent reconnects and re-authenticates");
    let before = central.count("authenticate");
    central.disconnect_all();
    central.nth("authenticate", before + 1, WAIT).await;
    central
        .nth("heartbeat", central.count("heartbeat") + 1, WAIT)
        .await;
    println!("re-authenticated and heartbeating again");
    println!("\ndemo finished: stopping the agent (SIGTERM)");
}
