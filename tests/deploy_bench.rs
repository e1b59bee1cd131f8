//! deploy_video time against the slowest of its three parts done alone on
//! the same file from the same loopback server (fetch: `curl -o`; hash:
//! `openssl sha256`; write: `cp` + `sync`), page cache dropped before each
//! when run as root, and the agent's peak RSS meanwhile.
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

    // The three parts alone on the same file, each from a cold page cache:
    // the fetch (`curl -o`), the hash (`openssl sha256`), the write (`cp` +
    // `sync`). A pipelined deploy can at best match the slowest of them.
    let out = dir.path().join("curl.bin");
    let copy = dir.path().join("copy.bin");
    let cold = drop_caches();
    let fetch = timed(Command::new("curl").args(["-s", "-o"]).arg(&out).arg(&url));
    drop_caches();
    let hash = timed(Command::new("openssl").arg("sha256").arg(&out));
    drop_caches();
    let write = timed(Command::new("cp").arg(&out).arg(&copy))
        .and_then(|cp| timed(&mut Command::new("sync")).map(|sync| cp + sync));
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&copy);

    // The agent: deploy_video through the whole stack.
    let central = Central::start_production(&[("bench", "key")]).await;
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
    drop_caches();
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
    let line = |label: &str, took: Option<Duration>| match took {
        Some(t) => println!(
            "{label}: {:.2} s, {:.0} MB/s",
            t.as_secs_f64(),
            mb / t.as_secs_f64()
        ),
        None => println!("{label}: not measured (the tool is missing or failed)"),
    };
    println!(
        "page cache: {}",
        if cold {
            "dropped before each step (cold)"
        } else {
            "NOT dropped (not root?): figures are warm-cache"
        }
    );
    line("fetch alone (curl -o)", fetch);
    line("sha256 alone (openssl sha256)", hash);
    line("write alone (cp + sync)", write);
    line(
        "deploy_video (download + sha256 + fsync + config)",
        Some(deploy),
    );
    if let Some(slowest) = [fetch, hash, write].into_iter().flatten().max() {
        println!(
            "deploy time / slowest part alone: {:.2}x (1.00x = fully overlapped; goal <= 1.11x, i.e. >= 0.9x the speed)",
            deploy.as_secs_f64() / slowest.as_secs_f64()
        );
    }
    println!("agent peak RSS during the deploy: {rss:.1} MiB");
}

/// Runs a reference tool to completion; its wall time if it succeeded.
fn timed(command: &mut Command) -> Option<Duration> {
    let started = Instant::now();
    let ok = command
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| started.elapsed())
}

/// Writes dirty pages out and empties the page cache (root only): the
/// figures then include reading from and writing to the disk itself.
fn drop_caches() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}
