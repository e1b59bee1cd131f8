//! A misbehaving guest costs one error result, never the agent.
// Test fixtures failing to set up should stop the test loudly.
#![allow(clippy::expect_used)]

use neopro_e2e::{Site, error_of, run_loaded};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn an_endless_loop_times_out_at_its_deadline_and_the_host_carries_on() {
    let site = Site::new();
    site.write("neopro/webapp/configuration.json", "{\"ok\":true}");
    let sandbox = site.sandbox();
    let looping = site.load(&sandbox, "loop-forever");
    let started = Instant::now();
    let (kind, message) = error_of(run_loaded(&sandbox, &looping, json!({})));
    let elapsed = started.elapsed();
    assert_eq!(kind, "timeout");
    assert_eq!(
        message,
        "component 'loop-forever' did not finish within its time limit of 1 s"
    );
    assert!(
        elapsed >= Duration::from_secs(1),
        "stopped early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "deadline overshot: {elapsed:?}"
    );

    // Same sandbox, next command: fine.
    let config = site.load(&sandbox, "get-config");
    assert_eq!(
        run_loaded(&sandbox, &config, json!({})).ok(),
        Some(json!({"success": true, "configuration": {"ok": true}}))
    );
}

#[test]
fn unbounded_allocation_hits_the_memory_cap() {
    let site = Site::new();
    let (kind, message) = error_of(site.run("memory-bomb", json!({})));
    assert_eq!(kind, "too-large");
    assert_eq!(
        message,
        "component 'memory-bomb' ran out of memory: it tried to use more than its limit of 16 MiB"
    );
}

#[test]
fn a_panic_becomes_an_error_carrying_its_message() {
    let site = Site::new();
    let (kind, message) = error_of(site.run("panic", json!({})));
    assert_eq!(kind, "failed");
    assert!(
        message.starts_with("component 'panic' panicked: the video index is corrupt (at "),
        "{message}"
    );
}

#[test]
fn a_crashed_instance_is_not_reused() {
    let site = Site::new();
    let sandbox = site.sandbox();
    let panicking = site.load(&sandbox, "panic");
    for _ in 0..3 {
        let (kind, _) = error_of(run_loaded(&sandbox, &panicking, json!({})));
        assert_eq!(kind, "failed");
    }
}

/// Peak resident memory of this process (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn a_guest_asking_to_read_everything_gets_at_most_its_memory_budget() {
    let site = Site::new();
    // 8 GiB, sparse: costs no disk, and would cost 8 GiB of RAM if read.
    let file = std::fs::File::create(site.path("neopro/videos/huge.mp4")).expect("create");
    file.set_len(8 << 30).expect("sparse file");
    let before = peak_rss_kib();
    let sandbox = site.sandbox();
    let escape = site.load(&sandbox, "escape");
    let (kind, message) = error_of(run_loaded(
        &sandbox,
        &escape,
        json!({"op": "read-max", "path": "huge.mp4"}),
    ));
    assert_eq!(kind, "too-large");
    assert!(
        message.starts_with("videos/huge.mp4 is 8589934592 bytes, more than the ")
            && message.ends_with(" bytes left of this component's memory limit of 32 MiB"),
        "{message}"
    );
    let grew_mib = peak_rss_kib().saturating_sub(before) / 1024;
    assert!(grew_mib < 200, "the host's peak RSS grew by {grew_mib} MiB");

    // The agent carries on, and a file that fits is read whole.
    std::fs::write(site.path("neopro/videos/small.mp4"), vec![1u8; 1 << 20]).expect("write");
    assert_eq!(
        run_loaded(
            &sandbox,
            &escape,
            json!({"op": "read-max", "path": "small.mp4"})
        )
        .ok(),
        Some(json!({"bytes": 1 << 20}))
    );
}

#[test]
fn a_fifo_is_refused_instead_of_blocking_the_command() {
    let site = Site::new();
    let fifo = site.path("neopro/videos/pipe.mp4");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    for op in ["read-max", "sha256"] {
        let started = Instant::now();
        let (kind, message) = error_of(site.run("escape", json!({"op": op, "path": "pipe.mp4"})));
        assert_eq!(kind, "invalid-input", "{op}");
        assert_eq!(
            message,
            "videos/pipe.mp4 is not a regular file (a device, FIFO or socket); only files can be read"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{op} blocked");
    }
}

#[test]
fn a_guest_printing_a_megabyte_gets_its_result() {
    let site = Site::new();
    assert_eq!(
        site.run("escape", json!({"op": "print", "bytes": 1 << 20}))
            .ok(),
        Some(json!({"printed": 1 << 20}))
    );
}

#[test]
fn hashing_past_the_deadline_times_out_and_returns() {
    let site = Site::new();
    // 64 GiB, sparse: a minute of hashing at least, far beyond the 1 s limit.
    let file = std::fs::File::create(site.path("neopro/videos/huge.mp4")).expect("create");
    file.set_len(64 << 30).expect("sparse file");
    let sandbox = site.sandbox();
    let spec = neopro_e2e::component("escape");
    let text = std::fs::read_to_string(spec.wasm_path.with_extension("toml")).expect("manifest");
    let manifest = neopro_runtime::manifest::Manifest::parse(
        "escape.toml",
        &text.replace("timeout-secs = 10", "timeout-secs = 1"),
    )
    .expect("manifest parses");
    let escape = sandbox
        .load_file(&spec.wasm_path, manifest)
        .expect("component loads");
    let started = Instant::now();
    let (kind, message) = error_of(run_loaded(
        &sandbox,
        &escape,
        json!({"op": "sha256", "path": "huge.mp4"}),
    ));
    let elapsed = started.elapsed();
    assert_eq!(kind, "timeout");
    // The host call's own error, or the epoch trap the guest meets as soon
    // as it runs again: the same words either way.
    assert!(
        message.starts_with("component 'escape' did not finish within its time limit of 1 s"),
        "{message}"
    );
    // The host call returned at the deadline: whatever lock the command
    // held (videos) is released with it.
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
}
