//! Sandbox benchmark: prints JIT compile time, precompiled-cache load time,
//! fresh instance + trivial execute latency (p50/p99 over many runs) and the
//! process's peak RSS.
//!
//! Run with `cargo xtask bench` (it builds the guest components first).
#![allow(clippy::expect_used)]

use neopro_runtime::config::SiteConfig;
use neopro_runtime::host::HostServices;
use neopro_runtime::sandbox::registry::spec_for_wasm;
use neopro_runtime::sandbox::{CommandRequest, LoadOrigin, Sandbox};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUNS: usize = 2000;

fn components_dir() -> PathBuf {
    std::env::var_os("NEOPRO_TEST_COMPONENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/components/test"))
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!(
        "NEOPRO_ROOT={}\nSTATE_PATH={}\n",
        dir.path().join("neopro").display(),
        dir.path().join("state").display()
    );
    let config = SiteConfig::from_sources(Some((Path::new("bench.conf"), &text)), &|_| None)
        .expect("config");
    let services = Arc::new(HostServices::from_config(&config));

    for name in ["noop", "get-system-info"] {
        let spec = spec_for_wasm(&components_dir().join(format!("{name}.wasm")))
            .expect("run `cargo xtask bench` so the components are built");
        let wasm_size = std::fs::metadata(&spec.wasm_path)
            .map(|m| m.len())
            .unwrap_or(0);

        let cold = Sandbox::new(services.clone(), Some(&config.cache_dir())).expect("sandbox");
        let t = Instant::now();
        let loaded = cold
            .load_file(&spec.wasm_path, spec.manifest.clone())
            .expect("load");
        let compile = t.elapsed();
        assert_eq!(loaded.origin(), LoadOrigin::Compiled);

        let warm = Sandbox::new(services.clone(), Some(&config.cache_dir())).expect("sandbox");
        let t = Instant::now();
        let loaded = warm
            .load_file(&spec.wasm_path, spec.manifest.clone())
            .expect("load");
        let cached = t.elapsed();
        assert_eq!(loaded.origin(), LoadOrigin::Cache);

        println!("component {name} ({wasm_size} bytes of wasm)");
        println!(
            "  JIT compile + link:        {:>10.1} ms",
            compile.as_secs_f64() * 1e3
        );
        println!(
            "  load from cache + link:    {:>10.2} ms",
            cached.as_secs_f64() * 1e3
        );

        if name == "noop" {
            let request = CommandRequest {
                id: "bench".to_owned(),
                command_type: "test_noop".to_owned(),
                data: "{}".to_owned(),
            };
            for _ in 0..100 {
                warm.execute(&loaded, &request, None).expect("warm-up run");
            }
            let mut samples = Vec::with_capacity(RUNS);
            for _ in 0..RUNS {
                let t = Instant::now();
                warm.execute(&loaded, &request, None).expect("run");
                samples.push(t.elapsed());
            }
            samples.sort();
            let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
            println!(
                "  fresh instance + execute:  p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs ({RUNS} runs)",
                micros(pick(0.50)),
                micros(pick(0.99)),
                micros(pick(1.0))
            );
        }
    }
    println!("peak RSS: {:.1} MiB", peak_rss_kib() as f64 / 1024.0);
}
