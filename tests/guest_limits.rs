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
