//! What the agent writes to the SD card (issue 29.5), counted two ways:
//! `strace` (every write, fsync, rename and unlink, by the file it touched)
//! and `/proc/<pid>/io` (`write_bytes`: what the agent sent towards the
//! block device, page by page; `syscw`: every write call, sockets
//! included).
//!
//! 1. Idle, at the real server's rates (Engine.IO ping every 25 s,
//!    `ping_check` every 30 s, the agent's heartbeat every 30 s), over
//!    `idle-seconds` after the first `ping_check`, from a warm component
//!    cache (the agent ran once before, as on a box).
//! 2. Per command, against a central at test rates (a result's delivery is
//!    proven by two Engine.IO pings: 0.6 s instead of 50 s), each command
//!    counted from its send to four `ping_check`s after its result.
//!
//! The folders are under the current directory (`cargo xtask card-writes`
//! runs it in target/, a real disk); the runtime folder on /dev/shm (a
//! tmpfs, as the unit's /run/neopro-runtime on a box). The log level is
//! the box's (info), LOG_PATH in the NEOPRO folder, stderr to a file (the
//! journal on a box: on the card too, but outside the two folders the goal
//! names; shown apart).
//!
//! `card-writes <neopro-runtime> [idle-seconds]` (default 300).
#![allow(clippy::expect_used)]

use neopro_e2e::central::{Central, Timings};
use neopro_e2e::fake_systemctl::FakeSystemctl;
use neopro_e2e::http::{Fault, FileServer};
use neopro_runtime::store::hash::sha256_hex;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(120);

/// The system calls that write or change what is on a disk.
const TRACED: &str = "trace=write,writev,pwrite64,pwritev,pwritev2,fsync,fdatasync,sync_file_range,\
rename,renameat,renameat2,unlink,unlinkat,ftruncate";

/// Where each written path belongs.
struct Folders {
    neopro: PathBuf,
    state: PathBuf,
    runtime: PathBuf,
    stderr: PathBuf,
}

impl Folders {
    fn category(&self, path: &str) -> &'static str {
        let p = Path::new(path);
        if p.starts_with(&self.neopro) {
            "NEOPRO folder"
        } else if p.starts_with(&self.state) {
            "state folder"
        } else if p.starts_with(&self.runtime) {
            "runtime folder (tmpfs)"
        } else if p == self.stderr {
            "stderr (the journal on a box)"
        } else if path.starts_with("socket:") || path.starts_with("TCP") || path.contains("->") {
            "network"
        } else {
            "other (pipes, eventfds)"
        }
    }
}

#[derive(Debug, Default)]
struct Tally {
    writes: u64,
    bytes: u64,
    fsyncs: u64,
    /// Renames and unlinks: each a metadata change (an ext4 journal commit).
    renames: u64,
    files: BTreeSet<String>,
}

/// One complete strace line: (time, call name, its text).
fn calls(log: &str) -> Vec<(f64, String, String)> {
    let mut pending: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for line in log.lines() {
        // `<pid> <time> <call>`; strace pads short pids with spaces.
        let Some((pid, tail)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Some((ts, rest)) = tail.trim_start().split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        let Ok(ts) = ts.parse::<f64>() else { continue };
        let text = if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            pending.insert(pid.to_owned(), head.to_owned());
            continue;
        } else if rest.starts_with("<... ") {
            let tail = rest.split_once("resumed>").map_or("", |(_, t)| t);
            match pending.remove(pid) {
                Some(head) => format!("{head}{tail}"),
                None => continue,
            }
        } else {
            rest.to_owned()
        };
        let Some((name, _)) = text.split_once('(') else {
            continue;
        };
        out.push((ts, name.to_owned(), text.clone()));
    }
    out
}

/// The `<path>` strace -y printed after the n-th file descriptor argument.
fn fd_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        // `<... resumed>` and `<unfinished ...>` were removed already.
        let Some(close) = after.find('>') else { break };
        out.push(after[..close].to_owned());
        rest = &after[close + 1..];
    }
    out
}

/// The quoted strings of a call (the names of a rename).
fn quoted(text: &str) -> Vec<String> {
    text.split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect()
}

fn result(text: &str) -> Option<i64> {
    text.rsplit_once(") = ")
        .and_then(|(_, r)| r.split_whitespace().next()?.parse().ok())
}

/// What was written in `[from, to)`, by folder.
fn tally(
    calls: &[(f64, String, String)],
    from: f64,
    to: f64,
    folders: &Folders,
) -> BTreeMap<&'static str, Tally> {
    let mut by = BTreeMap::<&'static str, Tally>::new();
    for (ts, name, text) in calls.iter().filter(|(ts, ..)| *ts >= from && *ts < to) {
        let _ = ts;
        let Some(ret) = result(text) else { continue };
        if ret < 0 {
            continue;
        }
        let fds = fd_paths(text);
        match name.as_str() {
            "write" | "writev" | "pwrite64" | "pwritev" | "pwritev2" => {
                let Some(path) = fds.first() else { continue };
                let t = by.entry(folders.category(path)).or_default();
                t.writes += 1;
                t.bytes += ret as u64;
                t.files.insert(short(path));
            }
            "fsync" | "fdatasync" | "sync_file_range" => {
                let Some(path) = fds.first() else { continue };
                let t = by.entry(folders.category(path)).or_default();
                t.fsyncs += 1;
                t.files.insert(short(path));
            }
            "rename" | "renameat" | "renameat2" | "unlink" | "unlinkat" | "ftruncate" => {
                // The last name, under its folder's descriptor when relative.
                let names = quoted(text);
                let Some(last) = names.last() else {
                    // ftruncate: its descriptor.
                    if let Some(path) = fds.first() {
                        let t = by.entry(folders.category(path)).or_default();
                        t.renames += 1;
                        t.files.insert(short(path));
                    }
                    continue;
                };
                let path = if last.starts_with('/') {
                    last.clone()
                } else {
                    let dir = fds.last().cloned().unwrap_or_default();
                    format!("{dir}/{last}")
                };
                let t = by.entry(folders.category(&path)).or_default();
                t.renames += 1;
                t.files.insert(short(&path));
            }
            _ => {}
        }
    }
    by
}

/// A path without the run's temporary prefix, and temp names folded.
fn short(path: &str) -> String {
    let name = path.rsplit_once("/card-writes-").map_or(path, |(_, rest)| {
        rest.split_once('/').map_or(rest, |(_, r)| r)
    });
    // Artifacts by their kind, not their 64-digit names.
    if let Some(rest) = name.strip_prefix("state/cache/") {
        let kind = [".verified", ".sha256", ".cwasm"]
            .iter()
            .find(|k| rest.contains(*k))
            .copied()
            .unwrap_or("");
        return format!("state/cache/<artifact>{kind}");
    }
    // `.x.tmp-1234-5` → `.x.tmp-*`
    match name.split_once(".tmp") {
        Some((head, _)) => format!("{head}.tmp*"),
        None => name.to_owned(),
    }
}

/// `/proc/<pid>/io`: (write_bytes, syscw).
fn proc_io(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (get("write_bytes:"), get("syscw:"))
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The agent under `strace -f` (or alone when strace is missing).
struct Traced {
    child: Child,
    log: PathBuf,
    traced: bool,
}

impl Traced {
    fn start(bin: &Path, conf: &Path, log: &Path, stderr: &Path) -> Traced {
        let traced = Command::new("strace")
            .arg("-V")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let mut command = if traced {
            let mut c = Command::new("strace");
            c.args([
                "-f",
                "-ttt",
                "-y",
                "-qq",
                "-s",
                "0",
                "-e",
                TRACED,
                "-e",
                "signal=none",
                "-o",
            ])
            .arg(log)
            .arg(bin);
            c
        } else {
            Command::new(bin)
        };
        command
            .arg("--config")
            .arg(conf)
            .arg("run")
            .env("LOG_LEVEL", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(stderr).expect("stderr file"));
        Traced {
            child: command.spawn().expect("start the agent"),
            log: log.to_owned(),
            traced,
        }
    }

    /// The agent's pid (under strace, the one its link status names; strace
    /// may fork before it runs the agent).
    fn agent_pid(&self, runtime: &Path) -> u32 {
        if !self.traced {
            return self.child.id();
        }
        for _ in 0..6000 {
            if let Ok(Some(status)) = neopro_runtime::agent::session::link_status::read(runtime)
                && status.state != "stopped"
                && std::fs::read_link(format!("/proc/{}/exe", status.pid)).is_ok()
            {
                return status.pid;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the agent under strace wrote no link status in 60 s");
    }

    /// SIGTERM to the agent, then its calls.
    fn stop(mut self, pid: u32) -> Vec<(f64, String, String)> {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let _ = self.child.wait();
        if !self.traced {
            return Vec::new();
        }
        calls(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin = PathBuf::from(
        args.get(1)
            .expect("usage: card-writes <neopro-runtime> [idle-seconds]"),
    )
    .canonicalize()
    .expect("agent binary");
    let idle_secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(300);
    let components = bin
        .parent()
        .map(|d| d.join("components"))
        .expect("components");
    let dir = tempfile::Builder::new()
        .prefix("card-writes-")
        .tempdir_in(std::env::current_dir().expect("cwd"))
        .expect("temp dir");
    let runtime = tempfile::Builder::new()
        .prefix("card-writes-run-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("runtime dir");
    let neopro = dir.path().join("neopro");
    for sub in ["webapp", "videos/Match", "logs", "backups"] {
        std::fs::create_dir_all(neopro.join(sub)).expect("folders");
    }
    std::fs::write(neopro.join("videos/Match/goal.mp4"), vec![7u8; 4096]).expect("video");
    std::fs::write(
        neopro.join("webapp/configuration.json"),
        serde_json::to_vec_pretty(&json!({
            "remote": {"title": "Club"},
            "categories": [{"id": "match", "name": "Match", "videos": [
                {"name": "Goal", "filename": "goal.mp4", "path": "videos/Match/goal.mp4", "type": "video/mp4"}
            ]}],
            "version": "2.0"
        }))
        .expect("json"),
    )
    .expect("configuration");
    std::fs::write(
        dir.path().join("hostapd.conf"),
        "ssid=NEOPRO-club\nwpa_passphrase=secret123\n",
    )
    .expect("hostapd.conf");
    let systemctl = FakeSystemctl::new(&dir.path().join("systemctl"));
    let folders = Folders {
        neopro: neopro.clone(),
        state: dir.path().join("state"),
        runtime: runtime.path().to_owned(),
        stderr: dir.path().join("stderr.log"),
    };
    let conf = dir.path().join("site.conf");
    let write_conf = |url: &str| {
        std::fs::write(
            &conf,
            format!(
                "CENTRAL_SERVER_ENABLED=true\nCENTRAL_SERVER_URL={url}\nSITE_ID=card\nSITE_API_KEY=key\n\
                 NEOPRO_ROOT={}\nSTATE_PATH={}\nRUNTIME_PATH={}\nCOMPONENTS_PATH={}\n\
                 HOSTAPD_CONF={}\n{}\nLOCAL_APP_URL=http://127.0.0.1:9\nUPDATE_SETTLE_SECS=0\n\
                 ALLOWED_COMMANDS=get_system_info,get_config,get_logs,get_hotspot_config,update_config,\
                 restart_service,deploy_video,delete_video,expire_videos\n",
                neopro.display(),
                folders.state.display(),
                folders.runtime.display(),
                components.display(),
                dir.path().join("hostapd.conf").display(),
                systemctl.conf_line(),
            ),
        )
        .expect("site.conf")
    };
    let trace_log = dir.path().join("strace.log");

    // 0. A first start fills the component cache, as on a box that ran before.
    {
        let central = Central::start(&[("card", "key")]).await;
        write_conf(&central.url());
        let first = Traced::start(&bin, &conf, &trace_log, &folders.stderr);
        let pid = first.agent_pid(&folders.runtime);
        central.nth("pong_check", 1, WAIT).await;
        for ty in ["get_system_info", "get_config"] {
            central.send_command(&format!("warm-{ty}"), ty, json!({}));
            central.result_of(&format!("warm-{ty}"), WAIT).await;
        }
        // Their delivery marks too, or the next start sends them again.
        let pongs = central.count("pong_check");
        central.nth("pong_check", pongs + 4, WAIT).await;
        first.stop(pid);
    }

    // 1. Idle at the real server's rates.
    let central = Central::start_production(&[("card", "key")]).await;
    write_conf(&central.url());
    let agent = Traced::start(&bin, &conf, &trace_log, &folders.stderr);
    let pid = agent.agent_pid(&folders.runtime);
    let started = now();
    central.nth("pong_check", 1, Duration::from_secs(90)).await;
    let from = now();
    let io_from = proc_io(pid);
    println!(
        "idle window: {idle_secs} s after the first ping_check (real server's rates: Engine.IO ping 25 s, ping_check 30 s, heartbeat 30 s); strace: {}",
        if agent.traced {
            "yes"
        } else {
            "NOT AVAILABLE (only /proc counts)"
        }
    );
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let to = now();
    let io_to = proc_io(pid);
    let (pings, heartbeats) = (central.count("pong_check"), central.count("heartbeat"));
    let calls = agent.stop(pid);
    let start_up = tally(&calls, started - 1.0, from, &folders);
    let idle = tally(&calls, from, to, &folders);
    let per_day = |x: u64| x as f64 * 86_400.0 / (to - from);
    println!(
        "  {pings} ping_check answered, {heartbeats} heartbeats sent since start; /proc/{pid}/io over the window: write_bytes {} ({:.1} KiB/day), syscw {} ({:.0}/day, sockets included)",
        io_to.0 - io_from.0,
        per_day(io_to.0 - io_from.0) / 1024.0,
        io_to.1 - io_from.1,
        per_day(io_to.1 - io_from.1)
    );
    print_tally("  ", &idle, Some(&per_day));
    let card: u64 = ["NEOPRO folder", "state folder"]
        .iter()
        .filter_map(|k| idle.get(k))
        .map(|t| t.bytes)
        .sum();
    println!(
        "  idle, NEOPRO + state folders: {card} bytes in {:.0} s = {:.1} KiB/day (goal <= 64 KiB/day); block writes (write_bytes) {:.1} KiB/day",
        to - from,
        per_day(card) / 1024.0,
        per_day(io_to.0 - io_from.0) / 1024.0
    );
    println!("start-up of a warm agent (for scale, once per start):");
    print_tally("  ", &start_up, None);

    // 2. Per command.
    let central = Central::start_timed(0, &[("card", "key")], Timings::TEST).await;
    write_conf(&central.url());
    let video: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let video_sum = sha256_hex(&video);
    let server = FileServer::start(video, Fault::None);
    let agent = Traced::start(&bin, &conf, &trace_log, &folders.stderr);
    let pid = agent.agent_pid(&folders.runtime);
    central.nth("pong_check", 3, WAIT).await;
    // Each command twice: the first run loads its component (a box that
    // never ran it compiles it once into the cache, and stamps the artifact
    // as verified at its first load), the second is what it costs from then
    // on; only the second is counted.
    let commands = |pass: u32| -> Vec<(&str, Value)> {
        vec![
            ("get_system_info", json!({})),
            ("get_config", json!({})),
            ("get_logs", json!({"service": "sync-agent", "lines": 50})),
            ("get_hotspot_config", json!({})),
            (
                "update_config",
                json!({"configuration": {"remote": {"title": format!("Card {pass}")}}}),
            ),
            ("restart_service", json!({"service": "neopro-app"})),
            (
                "deploy_video",
                json!({"videoUrl": server.url(&format!("clip-{pass}.mp4")), "filename": format!("clip-{pass}.mp4"),
                       "category": "Match", "checksum": video_sum}),
            ),
            (
                "delete_video",
                json!({"filename": format!("clip-{pass}.mp4"), "category": "Match"}),
            ),
            ("expire_videos", json!({})),
        ]
    };
    let mut rows = Vec::new();
    for pass in 1..=2 {
        for (i, (ty, data)) in commands(pass).into_iter().enumerate() {
            let id = format!("card-{pass}-{i}");
            let (from, io_from) = (now(), proc_io(pid));
            central.send_command(&id, ty, data);
            let result = central.result_of(&id, WAIT).await;
            // Delivery is proven by two Engine.IO pings (300 ms each here):
            // four ping_checks later its mark is written.
            let pongs = central.count("pong_check");
            central.nth("pong_check", pongs + 4, WAIT).await;
            let (to, io_to) = (now(), proc_io(pid));
            let outcome = if result["status"] == json!("success") {
                "ok".to_owned()
            } else {
                let error = result["error"].as_str().unwrap_or("?").to_owned();
                format!("error: {}", error.chars().take(60).collect::<String>())
            };
            if pass == 2 {
                rows.push((ty, outcome, from, to, io_to.0 - io_from.0));
            }
        }
    }
    let calls = agent.stop(pid);
    println!(
        "per command, its second run (central at test rates; from the command to its delivery mark; LOG_PATH apart):"
    );
    println!(
        "  {:<20} {:>7} {:>9} {:>7} {:>8} {:>10} {:>12}  {:<10} files",
        "command", "writes", "bytes", "fsyncs", "renames", "log bytes", "write_bytes", "outcome"
    );
    for (ty, outcome, from, to, block) in rows {
        let t = tally(&calls, from, to, &folders);
        let mut sum = Tally::default();
        for key in ["NEOPRO folder", "state folder"] {
            if let Some(x) = t.get(key) {
                sum.writes += x.writes;
                sum.bytes += x.bytes;
                sum.fsyncs += x.fsyncs;
                sum.renames += x.renames;
                sum.files.extend(x.files.iter().cloned());
            }
        }
        let log = log_bytes(
            &calls,
            from,
            to,
            &folders.neopro.join("logs/sync-agent.log"),
        );
        sum.files.remove("neopro/logs/sync-agent.log");
        println!(
            "  {:<20} {:>7} {:>9} {:>7} {:>8} {:>10} {:>12}  {:<10} {}",
            ty,
            sum.writes.saturating_sub(log.0),
            sum.bytes.saturating_sub(log.1),
            sum.fsyncs,
            sum.renames,
            log.1,
            block,
            outcome,
            sum.files.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    println!(
        "  (writes, bytes, fsyncs, renames: NEOPRO + state folders but LOG_PATH, from strace; log bytes: the lines appended to LOG_PATH; write_bytes: /proc/<pid>/io, the whole agent, pages)"
    );
}

/// (write calls, bytes) appended to `log` in `[from, to)`.
fn log_bytes(calls: &[(f64, String, String)], from: f64, to: f64, log: &Path) -> (u64, u64) {
    let wanted = format!("<{}>", log.display());
    calls
        .iter()
        .filter(|(ts, name, text)| {
            *ts >= from && *ts < to && name == "write" && text.contains(&wanted)
        })
        .filter_map(|(_, _, text)| result(text))
        .filter(|n| *n > 0)
        .fold((0, 0), |(w, b), n| (w + 1, b + n as u64))
}

fn print_tally(
    indent: &str,
    by: &BTreeMap<&'static str, Tally>,
    per_day: Option<&dyn Fn(u64) -> f64>,
) {
    if by.is_empty() {
        println!("{indent}nothing written");
    }
    for (category, t) in by {
        let day = per_day
            .map(|f| {
                format!(
                    " ({:.0} writes, {} a day)",
                    f(t.writes),
                    kib(f(t.bytes) as u64)
                )
            })
            .unwrap_or_default();
        let files: Vec<&String> = t.files.iter().take(8).collect();
        println!(
            "{indent}{category}: {} writes, {} bytes, {} fsyncs, {} renames/unlinks{day}; {}",
            t.writes,
            t.bytes,
            t.fsyncs,
            t.renames,
            files
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
