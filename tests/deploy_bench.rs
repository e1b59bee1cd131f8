//! deploy_video throughput against `curl -o` + `sha256sum` of the same file
//! from the same loopback server, and the agent's peak RSS meanwhile.
//!
//! `cargo xtask bench` runs it as `deploy-bench <neopro-runtime> [MiB]`
//! (default 1024).
#![allow(clippy::expect_used)]

use neopro_e2e::central::Central;
use neopro_e2e::http::{Fault, FileServer};
use neopro_e2e::process::{AgentProcess, status_kib};
use neopro_runtime::store::hash::sha256_hex;
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn peak_rss_mib(pid: u32) -> f64 {
    status_kib(pid, "VmHWM:") as f64 / 1024.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin = PathBuf::from(
        args.get(1)
            .expect("usage: deploy-bench <neopro-runtime> [MiB]"),
    )
    .canonicalize()
    .expect("agent binary");
    let mib: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let size = mib << 20;
    let components = bin
        .parent()
        .map(|d| d.join("components"))
        .expect("components");
    let dir = tempfile::tempdir_in(std::env::current_dir().expect("cwd")).expect("temp dir");

    println!("preparing a {mib} MiB file…");
    let body: Vec<u8> = (0..size)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let checksum = sha256_hex(&body);
    let server = FileServer::start(body, Fault::None);
    let url = server.url("video.mp4");

    // Reference: curl to disk, then sha256sum.
    let out = dir.path().join("curl.bin");
    let started = Instant::now();
    let curl = Command::new("curl")
        .args(["-s", "-o"])
        .arg(&out)
        .arg(&url)
        .status();
    let sum = Command::new("sha256sum").arg(&out).output();
    let reference = started.elapsed();
    let curl_ok = curl.is_ok_and(|s| s.success())
        && sum.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with(&checksum));
    let _ = std::fs::remove_file(&out);

    // The agent: deploy_video through the whole stack.
    let central = Central::start_with(
        0,
        &[("bench", "key")],
        Duration::from_secs(25),
        Duration::from_secs(60),
    )
    .await;
    let neopro = dir.path().join("neopro");
    std::fs::create_dir_all(neopro.join("webapp")).expect("webapp");
    let conf = dir.path().join("site.conf");
    std::fs::write(
        &conf,
        format!(
            "CENTRAL_SERVER_ENABLED=true\nCENTRAL_SERVER_URL={}\nSITE_ID=bench\nSITE_API_KEY=key\n\
             NEOPRO_ROOT={}\nSTATE_PATH={}\nCOMPONENTS_PATH={}\nMAX_DOWNLOAD_SIZE={}\nLOCAL_APP_URL=http://127.0.0.1:9\n",
            central.url(),
            neopro.display(),
            dir.path().join("state").display(),
            components.display(),
            size.max(1 << 30)
        ),
    )
    .expect("site.conf");
    let start_agent = || AgentProcess::start(&bin, &conf, Some("error"));
    // Warm-up in a first process: a tiny deploy compiles the component into
    // the artifact cache, as on a box where it ran before.
    {
        let _warm = start_agent();
        central.nth("heartbeat", 1, Duration::from_secs(20)).await;
        let tiny = FileServer::start(vec![1u8; 1024], Fault::None);
        central.send_command(
            "warm-up",
            "deploy_video",
            json!({"videoUrl": tiny.url("t.mp4"), "filename": "t.mp4", "category": "Bench",
                   "checksum": sha256_hex(&[1u8; 1024])}),
        );
        central.result_of("warm-up", Duration::from_secs(60)).await;
    }
    let agent = start_agent();
    central.nth("heartbeat", 2, Duration::from_secs(20)).await;
    let started = Instant::now();
    central.send_command(
        "bench-deploy",
        "deploy_video",
        json!({"videoUrl": url, "filename": "video.mp4", "category": "Bench", "checksum": checksum}),
    );
    let result = central
        .result_of("bench-deploy", Duration::from_secs(1800))
        .await;
    let deploy = started.elapsed();
    assert_eq!(result["status"], json!("success"), "{result}");
    let rss = peak_rss_mib(agent.pid());
    drop(agent);

    let mb = size as f64 / 1e6;
    let curl_rate = mb / reference.as_secs_f64();
    let agent_rate = mb / deploy.as_secs_f64();
    println!(
        "curl -o + sha256sum: {:.2} s, {curl_rate:.0} MB/s{}",
        reference.as_secs_f64(),
        if curl_ok {
            ""
        } else {
            " (curl or sha256sum missing/failed)"
        }
    );
    println!(
        "deploy_video (download + sha256 + fsync + config): {:.2} s, {agent_rate:.0} MB/s",
        deploy.as_secs_f64()
    );
    println!("ratio agent/curl: {:.2}x", agent_rate / curl_rate);
    println!("agent peak RSS during the deploy: {rss:.1} MiB");
}
