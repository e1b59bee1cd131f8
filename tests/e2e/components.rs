//! The built-in components against real files on a temporary NEOPRO root.
// Test fixtures failing to set up should stop the test loudly.
#![allow(clippy::expect_used)]

use neopro_e2e::{Site, error_of};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

#[test]
fn get_config_returns_the_webapp_configuration() {
    let site = Site::new();
    site.write(
        "neopro/webapp/configuration.json",
        r#"{"categories":[{"name":"Match","videos":[]}],"sponsors":[]}"#,
    );
    let result = site.run("get-config", json!({}));
    assert_eq!(
        result.ok(),
        Some(json!({
            "success": true,
            "configuration": {"categories": [{"name": "Match", "videos": []}], "sponsors": []}
        }))
    );
}

#[test]
fn get_config_without_a_file_says_so() {
    let site = Site::new();
    assert_eq!(
        site.run("get-config", json!({})).ok(),
        Some(
            json!({"success": true, "configuration": null, "message": "No configuration file found"})
        )
    );
}

#[test]
fn get_config_with_broken_json_is_an_error_and_leaves_the_file() {
    let site = Site::new();
    site.write("neopro/webapp/configuration.json", "{\"categories\": [");
    let (kind, message) = error_of(site.run("get-config", json!({})));
    assert_eq!(kind, "invalid-input");
    assert!(
        message.ends_with("/neopro/webapp/configuration.json is not valid JSON (EOF while parsing a list at line 1 column 16); it was left untouched"),
        "{message}"
    );
    assert_eq!(
        std::fs::read_to_string(site.path("neopro/webapp/configuration.json")).ok(),
        Some("{\"categories\": [".to_owned())
    );
}

#[test]
fn get_logs_tails_the_agent_log() {
    let site = Site::new();
    let lines: String = (1..=20).map(|i| format!("line {i}\n")).collect();
    site.write("neopro/logs/sync-agent.log", &lines);
    let result = site.run("get-logs", json!({"service": "sync-agent", "lines": 3}));
    assert_eq!(
        result.ok(),
        Some(json!({"success": true, "logs": "line 18\nline 19\nline 20\n"}))
    );
}

/// A journalctl double that records its arguments, one per line.
fn fake_journalctl(site: &Site) -> String {
    let script = site.path("bin/journalctl");
    site.write(
        "bin/journalctl",
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\necho \"-- journal of $2 --\"\n",
            site.path("journal-args").display()
        ),
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    format!("JOURNALCTL_PATH={}", script.display())
}

#[test]
fn get_logs_runs_journalctl_with_an_argument_vector() {
    let probe = Site::new();
    let site = Site::with_extra(&fake_journalctl(&probe));
    let result = site.run("get-logs", json!({"service": "neopro-app", "lines": "50"}));
    assert_eq!(
        result.ok(),
        Some(json!({"success": true, "logs": "-- journal of neopro-app --\n"}))
    );
    assert_eq!(
        std::fs::read_to_string(probe.path("journal-args"))
            .ok()
            .as_deref(),
        Some("-u\nneopro-app\n-n\n50\n--no-pager\n")
    );
}

#[test]
fn get_logs_of_the_upstream_agent_name_reads_the_agents_unit() {
    let probe = Site::new();
    let site = Site::with_extra(&fake_journalctl(&probe));
    let result = site.run(
        "get-logs",
        json!({"service": "neopro-sync-agent", "lines": 5}),
    );
    assert_eq!(
        result.ok(),
        Some(json!({"success": true, "logs": "-- journal of neopro-runtime --\n"}))
    );
}

#[test]
fn get_logs_refuses_a_shell_injection_before_running_anything() {
    let probe = Site::new();
    let site = Site::with_extra(&fake_journalctl(&probe));
    let cwd_marker = std::path::Path::new("x");
    let existed = cwd_marker.exists();
    let (kind, message) = error_of(site.run("get-logs", json!({"service": "neopro-app; touch x"})));
    assert_eq!(kind, "invalid-input");
    assert_eq!(
        message,
        "'neopro-app; touch x' is not a valid service name (letters, digits and :-_.@ only)"
    );
    assert!(
        !probe.path("journal-args").exists(),
        "journalctl must not run"
    );
    assert_eq!(cwd_marker.exists(), existed, "no file x created");
    assert!(!site.path("x").exists() && !site.path("neopro/x").exists());
}

#[test]
fn get_logs_validates_lines() {
    let site = Site::new();
    for bad in [
        json!(0),
        json!(-5),
        json!("many"),
        json!(10_001),
        json!(2.5),
    ] {
        let (kind, message) =
            error_of(site.run("get-logs", json!({"service": "sync-agent", "lines": bad})));
        assert_eq!(kind, "invalid-input", "{bad}");
        assert!(
            message.starts_with("lines must be a whole number between 1 and 10000"),
            "{message}"
        );
    }
    let (kind, message) = error_of(site.run("get-logs", json!({"service": 5})));
    assert_eq!(kind, "invalid-input");
    assert!(
        message.starts_with("invalid data for command 'get_logs': "),
        "{message}"
    );
}

#[test]
fn get_logs_of_a_missing_agent_log_is_not_found() {
    let site = Site::new();
    let (kind, message) = error_of(site.run("get-logs", json!({"service": "sync-agent"})));
    assert_eq!(kind, "not-found");
    assert!(message.starts_with("the agent log ") && message.ends_with("does not exist yet"));
}

fn meminfo_total_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("MemTotal");
    kib * 1024
}

#[test]
fn get_system_info_reports_this_machine() {
    let site = Site::new();
    site.write("neopro/VERSION", "2.1.3\n");
    let result = site.run("get-system-info", json!({})).expect("system info");
    assert_eq!(result["success"], json!(true));
    let info = &result["systemInfo"];
    assert_eq!(info["total_memory"], json!(meminfo_total_bytes()));
    assert_eq!(info["architecture"], json!(std::env::consts::ARCH));
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    assert!(info["cpu_cores"].as_u64().unwrap_or(0) >= cores as u64);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(info["hostname"], json!(hostname.trim()));
    // Issue 28.7: the agent's version on the dashboard's "OS" line.
    let agent = env!("CARGO_PKG_VERSION");
    assert_eq!(info["agent_version"], json!(agent));
    let distro = info["os_details"]["distro"].as_str().expect("distro");
    assert_eq!(
        info["os"],
        json!(format!("{distro}, agent neopro-runtime {agent}"))
    );
    let metrics = &result["metrics"];
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .expect("uptime")
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("uptime value");
    let reported = metrics["uptime"].as_f64().expect("uptime number");
    assert!((reported - uptime).abs() < 60.0, "{reported} vs {uptime}");
    for key in ["cpu", "memory", "disk"] {
        let v = metrics[key].as_f64().expect(key);
        assert!((0.0..=100.0).contains(&v), "{key} = {v}");
    }
    assert!(metrics["memory"].as_f64() > Some(0.0));
    assert!(
        result["networkStatus"]["interfaces"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );
}
