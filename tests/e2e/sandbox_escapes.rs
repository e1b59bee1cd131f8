//! A component may touch only its granted roots, and only inside them.
// Test fixtures failing to set up should stop the test loudly.
#![allow(clippy::expect_used)]

use neopro_e2e::{Site, error_of};
use serde_json::{Value, json};

fn escape(site: &Site, data: Value) -> (String, String) {
    error_of(site.run("escape", data))
}

#[test]
fn reads_and_writes_inside_a_granted_root_work() {
    let site = Site::new();
    site.write("neopro/videos/Match/a.txt", "hello");
    assert_eq!(
        site.run("escape", json!({"op": "read", "path": "Match/a.txt"}))
            .ok(),
        Some(json!({"text": "hello"}))
    );
    assert!(
        site.run(
            "escape",
            json!({"op": "write", "path": "Match/b.txt", "contents": "new"})
        )
        .is_ok()
    );
    assert_eq!(
        std::fs::read_to_string(site.path("neopro/videos/Match/b.txt"))
            .ok()
            .as_deref(),
        Some("new")
    );
    // Atomic write leaves no temporary file behind.
    let names: Vec<String> = std::fs::read_dir(site.path("neopro/videos/Match"))
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(
        site.run("escape", json!({"op": "list", "path": "Match"}))
            .ok(),
        Some(json!({"entries": ["a.txt", "b.txt"]}))
    );
}

#[test]
fn dot_dot_is_refused_for_reads_and_writes() {
    let site = Site::new();
    site.write("neopro/secret.txt", "not yours");
    let (kind, message) = escape(&site, json!({"op": "read", "path": "../secret.txt"}));
    assert_eq!(kind, "not-permitted");
    assert_eq!(
        message,
        "path '../secret.txt' leaves its root ('..' is not allowed)"
    );

    let (kind, _) = escape(
        &site,
        json!({"op": "write", "path": "Match/../../planted.txt", "contents": "x"}),
    );
    assert_eq!(kind, "not-permitted");
    assert!(!site.path("neopro/planted.txt").exists());

    let (kind, _) = escape(
        &site,
        json!({"op": "rename", "path": "a", "to": "../moved"}),
    );
    assert_eq!(kind, "not-permitted");
}

#[test]
fn absolute_paths_are_refused() {
    let site = Site::new();
    let (kind, message) = escape(&site, json!({"op": "read", "path": "/etc/passwd"}));
    assert_eq!(kind, "not-permitted");
    assert_eq!(
        message,
        "path '/etc/passwd' is absolute; paths are relative to their root"
    );
    let target = site.path("planted-abs.txt");
    let (kind, _) = escape(
        &site,
        json!({"op": "write", "path": target.display().to_string(), "contents": "x"}),
    );
    assert_eq!(kind, "not-permitted");
    assert!(!target.exists());
}

#[test]
fn symlinks_out_of_the_root_are_refused() {
    let site = Site::new();
    std::os::unix::fs::symlink("/etc", site.path("neopro/videos/etc")).expect("symlink");
    let (kind, message) = escape(&site, json!({"op": "read", "path": "etc/passwd"}));
    assert_eq!(kind, "not-permitted", "{message}");
    assert!(
        message.starts_with("videos/etc/passwd: access refused"),
        "{message}"
    );

    // A symlinked folder pointing to another part of the box cannot be written through.
    std::fs::create_dir_all(site.path("outside")).expect("outside");
    std::os::unix::fs::symlink(site.path("outside"), site.path("neopro/videos/out"))
        .expect("symlink");
    let (kind, _) = escape(
        &site,
        json!({"op": "write", "path": "out/planted.txt", "contents": "x"}),
    );
    assert_eq!(kind, "not-permitted");
    assert!(!site.path("outside/planted.txt").exists());
    let (kind, _) = escape(&site, json!({"op": "list", "path": "out"}));
    assert_eq!(kind, "not-permitted");
}

#[test]
fn calls_outside_the_grants_name_the_missing_grant() {
    let site = Site::new();
    site.write("neopro/webapp/configuration.json", "{}");
    assert_eq!(
        escape(
            &site,
            json!({"op": "read", "root": "config", "path": "configuration.json"})
        ),
        (
            "not-permitted".to_owned(),
            "component 'escape' has no access to 'config' (missing grant files.config = \"ro\")"
                .to_owned()
        )
    );
    assert_eq!(
        escape(&site, json!({"op": "write", "root": "staging", "path": "f", "contents": "x"})),
        (
            "not-permitted".to_owned(),
            "component 'escape' has read-only access to 'staging' (grant files.staging = \"rw\" to write)"
                .to_owned()
        )
    );
    assert_eq!(
        escape(&site, json!({"op": "metrics"})),
        (
            "not-permitted".to_owned(),
            "component 'escape' lacks the grant system = true".to_owned()
        )
    );
    assert_eq!(
        escape(&site, json!({"op": "journal", "path": "neopro-app"})),
        (
            "not-permitted".to_owned(),
            "component 'escape' lacks the grant logs.units containing \"neopro-app\"".to_owned()
        )
    );
    assert!(!site.path("state/staging/f").exists());
}

#[test]
fn directories_are_never_removed() {
    let site = Site::new();
    site.write("neopro/videos/Match/a.mp4", "video");
    let (kind, message) = escape(&site, json!({"op": "remove", "path": "Match"}));
    assert_eq!(kind, "invalid-input");
    assert_eq!(
        message,
        "videos/Match is a directory; only files can be removed"
    );
    assert!(site.path("neopro/videos/Match/a.mp4").exists());
    assert!(
        site.run("escape", json!({"op": "remove", "path": "Match/a.mp4"}))
            .is_ok()
    );
    assert!(!site.path("neopro/videos/Match/a.mp4").exists());
}
