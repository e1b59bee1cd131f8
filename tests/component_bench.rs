//! Rust vs TypeScript command components, side by side: the template's
//! `video_inventory` built from Rust (guest-sdk/template) and from
//! TypeScript on QuickJS (guest-sdk/template-ts), on the same files.
//!
//! `cargo run --release -p neopro-e2e --bin component-bench -- <components/test> <components/ts> [<sm>]`
//! (after `cargo xtask guests`; `<sm>`: the same template built with
//! `neopro-component build --engine spidermonkey --out <sm>`; docs/typescript-sdk.md,
//! "Write a command in TypeScript").
//!
//! Per component: wasm size; first load (JIT compile) time and the peak RSS
//! of a process doing only that; the artifact's size; a one-shot warm run
//! (load from cache + one command) time and peak RSS, both in a fresh child
//! process like `run-component`; then, inside one process as in the agent,
//! fresh instance + execute p50 / p99, RSS growth over those runs, and the
//! memory one instance adds at its peak.
#![allow(clippy::expect_used)]

use neopro_runtime::config::SiteConfig;
use neopro_runtime::host::HostServices;
use neopro_runtime::sandbox::registry::spec_for_wasm;
use neopro_runtime::sandbox::{CommandRequest, Sandbox};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUNS: usize = 300;

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// A box with a few videos; its site config.
fn site(dir: &Path) -> SiteConfig {
    for (path, bytes) in [
        ("Match/but.mp4", 10),
        ("Match/arret.mp4", 5),
        ("Sponsors/pub.mp4", 1),
        ("Focus/a.mp4", 3),
    ] {
        let file = dir.join("neopro/videos").join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("videos");
        std::fs::write(file, vec![b'x'; bytes]).expect("video");
    }
    std::fs::write(dir.join("neopro/VERSION"), "2.1.3\n").expect("VERSION");
    let text = format!(
        "NEOPRO_ROOT={}\nSTATE_PATH={}\n",
        dir.join("neopro").display(),
        dir.join("state").display()
    );
    SiteConfig::from_sources(Some((Path::new("bench.conf"), &text)), &|_| None).expect("config")
}

fn request() -> CommandRequest {
    CommandRequest {
        id: "bench".to_owned(),
        command_type: "video_inventory".to_owned(),
        data: "{}".to_owned(),
    }
}

/// Child mode: load `wasm` (compiling or from the cache of `dir`), run one
/// command when asked, print "<ms> <peak KiB>".
fn child(wasm: &Path, dir: &Path, execute: bool) {
    let t = Instant::now();
    let config = site(dir);
    let spec = spec_for_wasm(wasm).expect("component and manifest");
    let sandbox = Sandbox::new(
        Arc::new(HostServices::from_config(&config)),
        Some(&config.cache_dir()),
    )
    .expect("sandbox");
    let loaded = sandbox
        .load_file(&spec.wasm_path, spec.manifest)
        .expect("load");
    if execute {
        sandbox.execute(&loaded, &request(), None).expect("runs");
    }
    println!("{} {}", t.elapsed().as_millis(), status_kib("VmHWM:"));
}

fn in_child(wasm: &Path, dir: &Path, execute: bool) -> (u64, u64) {
    let out = std::process::Command::new(std::env::current_exe().expect("exe"))
        .arg(if execute { "--run" } else { "--load" })
        .arg(wasm)
        .arg(dir)
        .output()
        .expect("child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|n| n.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

fn bench(label: &str, wasm: &Path) {
    let dir = tempfile::tempdir().expect("temp dir");
    let size = std::fs::metadata(wasm).map(|m| m.len()).unwrap_or(0);
    let (compile_ms, compile_kib) = in_child(wasm, dir.path(), false);
    let artifact: u64 = std::fs::read_dir(dir.path().join("state/cache"))
        .expect("cache")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".cwasm"))
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .sum();
    let (warm_ms, warm_kib) = in_child(wasm, dir.path(), true);

    let config = site(dir.path());
    let spec = spec_for_wasm(wasm).expect("component");
    let sandbox = Sandbox::new(
        Arc::new(HostServices::from_config(&config)),
        Some(&config.cache_dir()),
    )
    .expect("sandbox");
    let loaded = sandbox
        .load_file(&spec.wasm_path, spec.manifest)
        .expect("load");
    let result = sandbox.execute(&loaded, &request(), None).expect("runs");
    let before = status_kib("VmRSS:");
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        sandbox.execute(&loaded, &request(), None).expect("runs");
        times.push(t.elapsed());
    }
    times.sort();
    let after = status_kib("VmRSS:");
    // What one instance adds while it runs: the peak is reset (writing 5
    // to clear_refs), then one command runs.
    let instance_kib = std::fs::write("/proc/self/clear_refs", "5").ok().map(|()| {
        let base = status_kib("VmRSS:");
        sandbox.execute(&loaded, &request(), None).expect("runs");
        status_kib("VmHWM:").saturating_sub(base)
    });
    println!("{label} ({size} bytes of wasm)");
    println!(
        "  first load (JIT compile):  {compile_ms:>7} ms, peak RSS {:.1} MiB",
        compile_kib as f64 / 1024.0
    );
    println!(
        "  cached artifact:           {:>7.1} MB",
        artifact as f64 / 1e6
    );
    println!(
        "  one-shot warm run:         {warm_ms:>7} ms, peak RSS {:.1} MiB",
        warm_kib as f64 / 1024.0
    );
    println!(
        "  fresh instance + execute:  p50 {:.2} ms, p99 {:.2} ms ({RUNS} runs in one process)",
        pct(&times, 0.5),
        pct(&times, 0.99)
    );
    println!(
        "  RSS growth over the runs:  {:.1} MiB (instances are dropped after each command)",
        after.saturating_sub(before) as f64 / 1024.0
    );
    match instance_kib {
        Some(kib) => println!("  one instance, at its peak:  {kib} KiB above the loaded component"),
        None => println!("  one instance, at its peak:  not measured (no /proc/self/clear_refs)"),
    }
    println!("  result: {result}");
}

fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    match args.as_slice() {
        [mode, wasm, dir] if mode.as_os_str() == "--load" => child(wasm, dir, false),
        [mode, wasm, dir] if mode.as_os_str() == "--run" => child(wasm, dir, true),
        [rust_dir, ts_dirs @ ..] if (1..=2).contains(&ts_dirs.len()) => {
            bench(
                "Rust video-inventory",
                &rust_dir.join("video-inventory.wasm"),
            );
            bench(
                "TypeScript (QuickJS) video-inventory",
                &ts_dirs[0].join("video-inventory.wasm"),
            );
            if let Some(sm_dir) = ts_dirs.get(1) {
                bench(
                    "TypeScript (SpiderMonkey) video-inventory",
                    &sm_dir.join("video-inventory.wasm"),
                );
            }
        }
        _ => {
            eprintln!(
                "usage: component-bench <target/components/test> <target/components/ts> \
                 [<SpiderMonkey build of guest-sdk/template-ts>]"
            );
            std::process::exit(2);
        }
    }
}
