//! deploy_video against the slowest of its three parts done alone on the
//! same bytes from the same loopback server, side by side in each round
//! (fetch: `curl -o file`; hash: `openssl sha256` of the file just fetched,
//! warm; write: `dd conv=fsync` of it), with the page cache as the agent
//! sees it (what arrives from the network is in memory), and the agent's
//! peak RSS meanwhile (issue 29.6; docs/card-and-deploy.md).
//!
//! `cargo xtask bench` runs it as `deploy-bench <neopro-runtime> [MiB]
//! [rounds]` (default 1024 MiB, 3 rounds).
#![allow(clippy::expect_used)]

use neopro_e2e::central::Central;
use neopro_e2e::http::{Fault, FileServer};
use neopro_e2e::process::{AgentProcess, status_kib};
use neopro_runtime::store::hash::sha256_hex;
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// One round: fetch, hash and write alone (when measured), the deploy.
type Round = (
    Option<Duration>,
    Option<Duration>,
    Option<Duration>,
    Duration,
);

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
    let rounds_wanted: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
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

    // The agent: a first process compiles the component into the artifact
    // cache (a tiny deploy), as on a box where it ran before.
    let central = Central::start_production(&[("bench", "key")]).await;
    let neopro = dir.path().join("neopro");
    std::fs::create_dir_all(neopro.join("webapp")).expect("webapp");
    let conf = dir.path().join("site.conf");
    std::fs::write(
        &conf,
        format!(
            "CENTRAL_SERVER_ENABLED=true\nCENTRAL_SERVER_URL={}\nSITE_ID=bench\nSITE_API_KEY=key\n\
             NEOPRO_ROOT={}\nSTATE_PATH={}\nRUNTIME_PATH={}\nCOMPONENTS_PATH={}\nMAX_DOWNLOAD_SIZE={}\nLOCAL_APP_URL=http://127.0.0.1:9\n",
            central.url(),
            neopro.display(),
            dir.path().join("state").display(),
            dir.path().join("run").display(),
            components.display(),
            size.max(1 << 30)
        ),
    )
    .expect("site.conf");
    let start_agent = || AgentProcess::start(&bin, &conf, Some("error"));
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

    // Rounds of: the three parts alone on the same bytes, then the agent.
    // The page cache as the agent sees it: what arrives from the network
    // is in memory (the hash reads the file just fetched, warm; the write
    // copies it), and nothing is dropped. Dirty pages of a step are
    // flushed (untimed) before the next.
    let fetched = dir.path().join("curl.bin");
    let copy = dir.path().join("copy.bin");
    let videos = neopro.join("videos/Bench");
    println!("load before: {}", load());
    let mut rounds: Vec<Round> = Vec::new();
    for round in 1..=rounds_wanted {
        sync();
        let network = timed(
            Command::new("curl")
                .args(["-s", "-o", "/dev/null"])
                .arg(&url),
        );
        sync();
        let fetch = timed(
            Command::new("curl")
                .args(["-s", "-o"])
                .arg(&fetched)
                .arg(&url),
        );
        sync();
        let hash = timed(Command::new("openssl").arg("sha256").arg(&fetched));
        let write = timed(
            Command::new("dd")
                .arg(format!("if={}", fetched.display()))
                .arg(format!("of={}", copy.display()))
                .args(["bs=4M", "conv=fsync", "status=none"]),
        );
        let _ = std::fs::remove_file(&copy);
        let _ = std::fs::remove_file(videos.join("video.mp4"));
        sync();
        let id = format!("bench-deploy-{round}");
        let started = Instant::now();
        central.send_command(
            &id,
            "deploy_video",
            json!({"videoUrl": url, "filename": "video.mp4", "category": "Bench", "checksum": checksum}),
        );
        let result = central.result_of(&id, Duration::from_secs(1800)).await;
        let deploy = started.elapsed();
        assert_eq!(result["status"], json!("success"), "{result}");
        let _ = std::fs::remove_file(&fetched);
        let slowest = [fetch, hash, write].into_iter().flatten().max();
        let secs =
            |t: Option<Duration>| t.map_or("-".to_owned(), |t| format!("{:.2} s", t.as_secs_f64()));
        println!(
            "round {round}: network only (curl -o /dev/null) {}, fetch (curl -o file) {}, sha256 (openssl, warm) {}, write + fsync (dd conv=fsync) {}; deploy_video {:.2} s = {} the slowest part's speed",
            secs(network),
            secs(fetch),
            secs(hash),
            secs(write),
            deploy.as_secs_f64(),
            slowest.map_or("-".to_owned(), |s| format!(
                "{:.2}x",
                s.as_secs_f64() / deploy.as_secs_f64()
            )),
        );
        rounds.push((fetch, hash, write, deploy));
    }
    println!("load after: {}", load());
    let rss = peak_rss_mib(agent.pid());
    drop(agent);

    let mb = size as f64 / 1e6;
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v.get(v.len() / 2).copied()
    };
    let pick = |f: fn(&Round) -> Option<Duration>| median(rounds.iter().filter_map(f).collect());
    let line = |label: &str, took: Option<Duration>| match took {
        Some(t) => println!(
            "{label}: {:.2} s, {:.0} MB/s",
            t.as_secs_f64(),
            mb / t.as_secs_f64()
        ),
        None => println!("{label}: not measured (the tool is missing or failed)"),
    };
    let (fetch, hash, write, deploy) = (
        pick(|r| r.0),
        pick(|r| r.1),
        pick(|r| r.2),
        pick(|r| Some(r.3)),
    );
    println!(
        "medians of {rounds_wanted} rounds, {mib} MiB, page cache warm (as the agent sees it):"
    );
    line("fetch alone (curl -o file)", fetch);
    line("sha256 alone (openssl sha256, warm)", hash);
    line("write + fsync alone (dd conv=fsync)", write);
    line(
        "deploy_video (download + sha256 + write + fsync + config)",
        deploy,
    );
    if let (Some(slowest), Some(deploy)) =
        ([fetch, hash, write].into_iter().flatten().max(), deploy)
    {
        println!(
            "deploy speed / slowest part's speed: {:.2}x (goal >= 0.9x)",
            slowest.as_secs_f64() / deploy.as_secs_f64()
        );
    }
    println!("agent peak RSS (VmHWM) over the rounds: {rss:.1} MiB (goal <= 24 MiB)");
}

/// `uptime`'s load averages.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Flushes what earlier steps left dirty (untimed), so no step pays for
/// another's write-back.
fn sync() {
    let _ = Command::new("sync").status();
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
