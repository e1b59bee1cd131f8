//! Agent benchmark on loopback, with the release binary:
//! spawn → authenticated (warm component cache), RSS and CPU after an idle
//! minute at 30 s heartbeats, and the `get_config` round trip.
//!
//! `cargo xtask bench` runs it as `agent-bench <neopro-runtime> [idle seconds]`.
#![allow(clippy::expect_used)]

use neopro_e2e::central::Central;
use neopro_e2e::process::{AgentProcess, status_kib};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// utime + stime of a process, in milliseconds (100 ticks per second).
fn cpu_ms(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Fields 14 and 15 of /proc/pid/stat, counted after the command name.
    (ticks(11) + ticks(12)) * 10
}

fn write_conf(dir: &Path, url: &str, components: &Path, heartbeat_ms: u64) -> PathBuf {
    let neopro = dir.join("neopro");
    std::fs::create_dir_all(neopro.join("webapp")).expect("webapp");
    std::fs::write(
        neopro.join("webapp/configuration.json"),
        r#"{"categories":[]}"#,
    )
    .expect("config");
    let conf = dir.join("site.conf");
    std::fs::write(
        &conf,
        format!(
            "CENTRAL_SERVER_ENABLED=true\nCENTRAL_SERVER_URL={url}\nSITE_ID=bench\nSITE_API_KEY=key\n\
             NEOPRO_ROOT={}\nSTATE_PATH={}\nCOMPONENTS_PATH={}\nHEARTBEAT_INTERVAL={heartbeat_ms}\n",
            neopro.display(),
            dir.join("state").display(),
            components.display()
        ),
    )
    .expect("site.conf");
    conf
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin = PathBuf::from(
        args.get(1)
            .expect("usage: agent-bench <neopro-runtime> [idle seconds]"),
    )
    .canonicalize()
    .expect("agent binary exists");
    let idle_secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(60);
    let components = bin
        .parent()
        .map(|d| d.join("components"))
        .expect("components dir");
    let dir = tempfile::tempdir().expect("temp dir");
    // The production server's timings: pings every 25 s, ping_check every 30 s.
    let central = Central::start_production(&[("bench", "key")]).await;
    let conf = write_conf(dir.path(), &central.url(), &components, 30_000);

    // Warm the artifact cache once, as on a box where get_config ran before
    // (components are compiled on first use, then loaded from the cache).
    {
        let _agent = AgentProcess::start(&bin, &conf, Some("warn"));
        central.nth("heartbeat", 1, WAIT).await;
        central.send_command("warm-up", "get_config", json!({}));
        central.result_of("warm-up", WAIT).await;
    }

    let mut startups = Vec::new();
    for round in 0..5 {
        let started = Instant::now();
        let _agent = AgentProcess::start(&bin, &conf, Some("warn"));
        // The first heartbeat leaves right after `authenticated` arrives.
        central.nth("heartbeat", round + 2, WAIT).await;
        startups.push(started.elapsed());
    }
    startups.sort();
    println!(
        "spawn -> authenticated (warm cache): median {:.1} ms, max {:.1} ms (5 runs)",
        percentile(&startups, 0.5).as_secs_f64() * 1e3,
        startups[startups.len() - 1].as_secs_f64() * 1e3
    );

    let agent = AgentProcess::start(&bin, &conf, Some("warn"));
    let heartbeats = central.count("heartbeat");
    central.nth("heartbeat", heartbeats + 1, WAIT).await;
    let pid = agent.pid();

    // Idle first: the round trips below leave journal work behind (each
    // result is re-persisted as delivered two server pings later).
    let cpu_before = cpu_ms(pid);
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let cpu_used = cpu_ms(pid).saturating_sub(cpu_before);
    let mib = |key: &str| status_kib(pid, key) as f64 / 1024.0;
    println!(
        "after {idle_secs} s idle (30 s heartbeats): RSS {:.1} MiB (peak {:.1} MiB; anonymous {:.1} MiB, file-backed {:.1} MiB), CPU {} ms over the window = {:.1} ms per minute",
        mib("VmRSS:"),
        mib("VmHWM:"),
        mib("RssAnon:"),
        mib("RssFile:"),
        cpu_used,
        cpu_used as f64 * 60.0 / idle_secs as f64
    );
    let mut rtts = Vec::new();
    for i in 0..300 {
        let id = format!("rtt-{i}");
        let sent = Instant::now();
        central.send_command(&id, "get_config", json!({}));
        central.result_of(&id, WAIT).await;
        rtts.push(sent.elapsed());
    }
    rtts.sort();
    println!(
        "get_config round trip (command sent -> result received): p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms (300 runs)",
        percentile(&rtts, 0.5).as_secs_f64() * 1e3,
        percentile(&rtts, 0.95).as_secs_f64() * 1e3,
        percentile(&rtts, 0.99).as_secs_f64() * 1e3
    );

    drop(agent);
}
