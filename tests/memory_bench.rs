//! Memory benchmark of the release agent on loopback, and the journal's
//! fsyncs per command. `cargo xtask bench-memory [soak-minutes]` runs it as
//! `memory-bench <neopro-runtime> [soak-minutes] [--soak-only]`.
//!
//! Prints RSS and peak (VmHWM) at 60 s after start for: a warm component
//! cache, idle; an empty state folder (first start: every component is
//! compiled) plus one of each built-in command; after 1,000 commands; after
//! a 1 GiB deploy; after a 300-command backlog, as soon as it is answered
//! and 60 s later. With a soak duration (≥ 30 minutes to mean
//! anything) it then sends a command every 3 s, drops the link every
//! 3 minutes, and prints the first and last 5-minute mean RSS.
#![allow(clippy::expect_used)]

use neopro_e2e::central::Central;
use neopro_e2e::http::{Fault, FileServer};
use neopro_e2e::process::{AgentProcess, status_kib};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn write_conf(dir: &Path, url: &str, components: &Path) -> PathBuf {
    let neopro = dir.join("neopro");
    for sub in ["webapp", "videos", "logs", "backups"] {
        std::fs::create_dir_all(neopro.join(sub)).expect("folders");
    }
    std::fs::write(
        neopro.join("webapp/configuration.json"),
        r#"{"categories":[{"name":"Match","videos":[]}]}"#,
    )
    .expect("config");
    std::fs::write(neopro.join("logs/sync-agent.log"), "one\ntwo\n").expect("log");
    let conf = dir.join("site.conf");
    std::fs::write(
        &conf,
        format!(
            "CENTRAL_SERVER_ENABLED=true\nCENTRAL_SERVER_URL={url}\nSITE_ID=bench\nSITE_API_KEY=key\n\
             NEOPRO_ROOT={}\nSTATE_PATH={}\nCOMPONENTS_PATH={}\nHEARTBEAT_INTERVAL=30000\n\
             MAX_DOWNLOAD_SIZE=1073741824\nLOCAL_APP_URL=http://127.0.0.1:9\n\
             JOURNALCTL_PATH=/bin/true\nSYSTEMCTL_PATH=/bin/false\nHOSTAPD_CONF={}\n",
            neopro.display(),
            dir.join("state").display(),
            components.display(),
            dir.join("hostapd.conf").display(),
        ),
    )
    .expect("site.conf");
    conf
}

/// One of each built-in command, with data that keeps the box as it is
/// (or fails harmlessly): each component is loaded, compiled on a fresh state.
fn every_builtin() -> Vec<(&'static str, Value)> {
    vec![
        ("get_system_info", json!({})),
        ("get_config", json!({})),
        ("get_logs", json!({"service": "neopro-app", "lines": 50})),
        (
            "update_config",
            json!({"configuration": {"categories": [{"name": "Match", "videos": []}]}}),
        ),
        ("update_settings", json!({})),
        (
            "delete_video",
            json!({"filename": "none.mp4", "category": "Match"}),
        ),
        ("deploy_video", json!({})),
        ("restart_service", json!({"service": "neopro-app"})),
        ("update_software", json!({})),
        ("get_hotspot_config", json!({})),
        ("network_diagnostics", json!({})),
    ]
}

fn mib(pid: u32, key: &str) -> f64 {
    status_kib(pid, key) as f64 / 1024.0
}

/// Resident KiB of the agent's file mappings: its own binary, compiled
/// component artifacts (`.cwasm`), every other file (libc, ...).
fn file_backed_kib(pid: u32) -> (u64, u64, u64) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    let (mut binary, mut artifacts, mut other) = (0, 0, 0);
    let mut path = String::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            // A mapping's header: address perms offset dev inode [path].
            path = fields.nth(4).unwrap_or("").to_owned();
        } else if first == "Rss:" && path.starts_with('/') {
            let kib: u64 = fields.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            if std::path::Path::new(&path) == exe {
                binary += kib;
            } else if path.ends_with(".cwasm") {
                artifacts += kib;
            } else {
                other += kib;
            }
        }
    }
    (binary, artifacts, other)
}

fn report(label: &str, pid: u32) {
    let (binary, artifacts, other) = file_backed_kib(pid);
    let m = |kib: u64| kib as f64 / 1024.0;
    println!(
        "{label}: RSS {:.1} MiB, peak {:.1} MiB (anonymous {:.1} MiB; files: binary {:.1}, artifacts {:.1}, other {:.1} MiB)",
        mib(pid, "VmRSS:"),
        mib(pid, "VmHWM:"),
        mib(pid, "RssAnon:"),
        m(binary),
        m(artifacts),
        m(other),
    );
}

async fn until_60s(started: Instant) {
    let at = started + Duration::from_secs(60);
    tokio::time::sleep_until(at.into()).await;
}

async fn run_commands(central: &Central, prefix: &str, count: usize, at_once: bool) {
    if at_once {
        // Results arrive in any order: wait for as many as were sent.
        let before = central.count("command_result");
        for i in 0..count {
            central.send_command(&format!("{prefix}-{i}"), "get_config", json!({}));
        }
        if !central
            .wait_more_than("command_result", before + count - 1, WAIT)
            .await
        {
            println!(
                "only {} of the {count} results within {WAIT:?}",
                central.count("command_result") - before
            );
        }
    } else {
        for i in 0..count {
            let id = format!("{prefix}-{i}");
            central.send_command(&id, "get_config", json!({}));
            central.result_of(&id, WAIT).await;
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin = PathBuf::from(
        args.get(1)
            .expect("usage: memory-bench <neopro-runtime> [soak-minutes]"),
    )
    .canonicalize()
    .expect("agent binary exists");
    let soak_minutes: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    // `--soak-only`: skip the 60 s states (a soak started on its own).
    let states = !args.iter().any(|a| a == "--soak-only");
    let components = bin
        .parent()
        .map(|d| d.join("components"))
        .expect("components dir");
    let central = Central::start_production(&[("bench", "key")]).await;

    // First start: empty state folder, every component compiled.
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = write_conf(dir.path(), &central.url(), &components);
    if states {
        let started = Instant::now();
        let agent = AgentProcess::start(&bin, &conf, Some("warn"));
        central
            .nth("heartbeat", central.count("heartbeat") + 1, WAIT)
            .await;
        for (i, (command, data)) in every_builtin().into_iter().enumerate() {
            let id = format!("first-{i}");
            central.send_command(&id, command, data);
            central.result_of(&id, WAIT).await;
        }
        until_60s(started).await;
        report("empty state + one of each built-in, at 60 s", agent.pid());
    }
    // Warm cache, idle.
    if states {
        let started = Instant::now();
        let agent = AgentProcess::start(&bin, &conf, Some("warn"));
        central
            .nth("heartbeat", central.count("heartbeat") + 1, WAIT)
            .await;
        until_60s(started).await;
        report("warm cache, idle, at 60 s", agent.pid());
        // What going idle costs the next command: its component is loaded
        // again, the code it runs faults back in.
        let mut ms = Vec::new();
        for i in 0..2 {
            let id = format!("after-idle-{i}");
            let sent = Instant::now();
            central.send_command(&id, "get_config", json!({}));
            central.result_of(&id, WAIT).await;
            ms.push(sent.elapsed().as_secs_f64() * 1000.0);
        }
        println!(
            "get_config round trip after the idle minute: first {:.1} ms, the next {:.1} ms",
            ms[0], ms[1]
        );
    }
    // 1,000 commands one after the other, then a 300-command backlog.
    if states {
        let started = Instant::now();
        let agent = AgentProcess::start(&bin, &conf, Some("warn"));
        central
            .nth("heartbeat", central.count("heartbeat") + 1, WAIT)
            .await;
        run_commands(&central, "seq", 1000, false).await;
        until_60s(started).await;
        report("after 1,000 get_config", agent.pid());
        run_commands(&central, "backlog", 300, true).await;
        report("after a 300-command backlog", agent.pid());
        let answered = Instant::now();
        until_60s(answered).await;
        report("after a 300-command backlog, 60 s later", agent.pid());
    }
    // A 1 GiB deploy_video from a loopback file server, reported at 60 s.
    if states {
        let size = 1usize << 30;
        let body: Vec<u8> = (0..size)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let checksum = neopro_runtime::store::hash::sha256_hex(&body);
        let server = FileServer::start(body, Fault::None);
        let started = Instant::now();
        let agent = AgentProcess::start(&bin, &conf, Some("warn"));
        central
            .nth("heartbeat", central.count("heartbeat") + 1, WAIT)
            .await;
        central.send_command(
            "deploy-1g",
            "deploy_video",
            json!({"videoUrl": server.url("big.mp4"), "filename": "big.mp4",
                   "category": "Match", "checksum": checksum}),
        );
        let result = central
            .result_of("deploy-1g", Duration::from_secs(600))
            .await;
        if result["status"] != json!("success") {
            println!("the 1 GiB deploy failed: {result}");
        }
        until_60s(started).await;
        report("after a 1 GiB deploy, at 60 s", agent.pid());
        let _ = std::fs::remove_file(dir.path().join("neopro/videos/Match/big.mp4"));
    }
    if soak_minutes > 0 {
        if !states {
            // Warm the component cache first, as the states above do.
            let agent = AgentProcess::start(&bin, &conf, Some("warn"));
            central
                .nth("heartbeat", central.count("heartbeat") + 1, WAIT)
                .await;
            run_commands(&central, "soak-warm", 1, false).await;
            drop(agent);
        }
        let agent = AgentProcess::start(&bin, &conf, Some("warn"));
        central
            .nth("heartbeat", central.count("heartbeat") + 1, WAIT)
            .await;
        let started = Instant::now();
        let mut samples: Vec<(Duration, u64)> = Vec::new();
        let mut next_drop = Duration::from_secs(180);
        let mut n = 0u64;
        let mut lost = 0u64;
        while started.elapsed() < Duration::from_secs(soak_minutes * 60) {
            let id = format!("soak-{n}");
            n += 1;
            // A command sent while the link is down is lost (the test
            // central keeps no queue): counted, not waited for.
            if central.send_command(&id, "get_config", json!({})) == 0
                || central
                    .find(
                        "command_result",
                        |r| r["commandId"] == json!(id),
                        Duration::from_secs(10),
                    )
                    .await
                    .is_none()
            {
                lost += 1;
            }
            samples.push((started.elapsed(), status_kib(agent.pid(), "VmRSS:")));
            if started.elapsed() > next_drop {
                central.disconnect_all();
                next_drop += Duration::from_secs(180);
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let window = Duration::from_secs(300);
        let end = started.elapsed();
        let mean = |from: Duration, to: Duration| {
            let inside: Vec<u64> = samples
                .iter()
                .filter(|(t, _)| *t >= from && *t < to)
                .map(|(_, kib)| *kib)
                .collect();
            inside.iter().sum::<u64>() as f64 / inside.len().max(1) as f64 / 1024.0
        };
        println!(
            "soak {soak_minutes} min ({n} commands, {lost} sent while the link was down or unanswered in 10 s; link dropped every 3 min): mean RSS first 5 min {:.1} MiB, last 5 min {:.1} MiB, peak {:.1} MiB",
            mean(Duration::ZERO, window),
            mean(end.saturating_sub(window), end),
            mib(agent.pid(), "VmHWM:")
        );
    }
    fsyncs_per_command(&central, &components).await;
}

/// The journal's fsyncs per command, counted in-process (the same agent
/// code, run here so its counter can be read).
async fn fsyncs_per_command(central: &Central, components: &Path) {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = write_conf(dir.path(), &central.url(), components);
    let config = neopro_runtime::config::SiteConfig::load(Some(conf.as_path())).expect("site.conf");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(neopro_runtime::agent::run(
        config,
        Some(conf.clone()),
        neopro_runtime::agent::AgentOptions::default(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    central
        .nth("heartbeat", central.count("heartbeat") + 1, WAIT)
        .await;
    // Warm: compile and load both components first.
    for (i, command) in ["get_config", "restart_service"].iter().enumerate() {
        let id = format!("fs-warm-{i}");
        central.send_command(&id, command, json!({"service": "neopro-app"}));
        central.result_of(&id, WAIT).await;
    }
    for command in ["get_config", "restart_service"] {
        let before = neopro_runtime::store::atomic::fsync_count();
        for i in 0..20 {
            let id = format!("fs-{command}-{i}");
            central.send_command(&id, command, json!({"service": "neopro-app"}));
            central.result_of(&id, WAIT).await;
        }
        let used = neopro_runtime::store::atomic::fsync_count() - before;
        println!(
            "journal fsyncs: {command}: {used} for 20 commands = {:.2} per command",
            used as f64 / 20.0
        );
    }
    let _ = stop_tx.send(());
    let _ = agent.await;
}
