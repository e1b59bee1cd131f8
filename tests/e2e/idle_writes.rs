//! Issue 29.5: an idle agent writes nothing to the SD card. Its link status
//! (rewritten at every `ping_check`) lives in the runtime folder, a tmpfs
//! on a box; the state folder and the NEOPRO folder stay untouched through
//! ping cycles, heartbeats and `ping_check`s.
#![allow(clippy::expect_used)]

use neopro_e2e::Site;
use neopro_e2e::central::Central;
use neopro_e2e::process::wait_for;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// What identifies a file's content and its last write: a rewrite in
/// place moves the size or the modification time, a temp file + rename
/// the inode.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    kind: &'static str,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
}

/// Every entry under `roots`, by path; links are not followed.
fn snapshot(roots: &[PathBuf]) -> BTreeMap<PathBuf, Seen> {
    let mut seen = BTreeMap::new();
    let mut todo: Vec<PathBuf> = roots.to_vec();
    while let Some(path) = todo.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let kind = if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                todo.extend(entries.flatten().map(|e| e.path()));
            }
            "folder"
        } else if meta.is_file() {
            "file"
        } else {
            "other"
        };
        let ns = |secs: i64, nsec: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsec);
        seen.insert(
            path,
            Seen {
                kind,
                // A folder's size and times move when an entry is added,
                // removed or renamed in it.
                len: meta.len(),
                mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
                ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
                ino: meta.ino(),
            },
        );
    }
    seen
}

fn changes(before: &BTreeMap<PathBuf, Seen>, after: &BTreeMap<PathBuf, Seen>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, was) in before {
        match after.get(path) {
            None => out.push(format!("removed {}", path.display())),
            Some(now) if now != was => {
                out.push(format!("changed {}: {was:?} -> {now:?}", path.display()))
            }
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        out.push(format!("created {}", path.display()));
    }
    out
}

/// Files in `dir` whose name ends with `suffix`.
fn count(dir: &Path, suffix: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
            .count()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_agent_writes_nothing_under_the_state_and_neopro_folders() {
    // The test central's clocks: a ping_check every 250 ms, Engine.IO pings
    // every 300 ms; the agent's heartbeat every second. A dozen idle cycles
    // in a few seconds, each of them what the real server does every 30 s.
    let central = Central::start(&[("site-1", "key-1")]).await;
    let site = Site::new();
    site.write(
        "neopro/webapp/configuration.json",
        "{\"categories\":[{\"name\":\"Match\",\"videos\":[]}],\"version\":2.0}",
    );
    site.write("neopro/videos/Match/goal.mp4", "video");
    site.write("neopro/logs/sync-agent.log", "one\ntwo\n");
    site.write_agent_conf(&central.url(), "site-1", "key-1");
    let runtime = site.path("run");
    assert!(
        !runtime.starts_with(site.path("state")) && !runtime.starts_with(site.path("neopro")),
        "the test's runtime folder is apart from what it watches"
    );
    let agent = site.start_agent();

    // Start-up writes (a box writes them once per start, not while idle):
    // the daily configuration.json backup and the hourly expiry's compiled
    // component, both at start. They send no event: their files are the
    // sign they are done (an artifact's checksum is written after it).
    central.next("authenticate", WAIT).await;
    wait_for("the start-up configuration backup", WAIT, || {
        count(&site.path("neopro/data/backups"), ".json") == 1
    })
    .await;
    wait_for("the expiry component's artifact", WAIT, || {
        count(&site.path("state/cache"), ".sha256") >= 1
    })
    .await;
    let pongs = central.count("pong_check");
    central.nth("pong_check", pongs + 2, WAIT).await;

    let watched = [site.path("state"), site.path("neopro")];
    let before = snapshot(&watched);
    let (pongs, heartbeats) = (central.count("pong_check"), central.count("heartbeat"));
    central.nth("pong_check", pongs + 12, WAIT).await;
    central.nth("heartbeat", heartbeats + 3, WAIT).await;
    let after = snapshot(&watched);

    // Still kept, where diagnose looks: in the runtime folder.
    let status = neopro_runtime::agent::session::link_status::read(&runtime)
        .expect("link status readable")
        .expect("link status kept in the runtime folder");
    assert_eq!(status.state, "authenticated");
    assert!(status.last_ping_check.is_some(), "{status:?}");
    agent.stop().await;

    assert_eq!(
        changes(&before, &after),
        Vec::<String>::new(),
        "an idle agent wrote under the state or NEOPRO folder through 12 ping_checks and 3 heartbeats"
    );
    assert!(
        before.len() > 10,
        "the snapshot saw the folders: {:?}",
        before.keys().collect::<Vec<_>>()
    );
}
