//! The `expire_videos` phase: the built-in expiry (run at the agent's
//! start and hourly) removes a video whose `expires_at` has passed — its
//! file first, then its entries in configuration.json (on purpose,
//! `docs/power-cuts.md`: a cut between leaves entries whose file is gone,
//! which the next run removes; entries first would leave a file no run
//! would ever find again). Its check, `expired-gone`: once the agent's
//! start-up expiry ran, the expired video is neither named nor on the card.

use super::central::Event;
use super::checks::{Violation, video_entries};
use super::snapshot::{CONFIG, NEOPRO, Snapshot};
use serde_json::Value;
use std::time::{Duration, Instant};

/// How long the start-up expiry may take to remove the expired entries
/// once the agent authenticated (under emulation).
pub const LIMIT: Duration = Duration::from_secs(120);

/// Whether the box's configuration names `path` (`None`: it does not parse).
pub fn names(snap: &Snapshot, path: &str) -> Option<bool> {
    let config: Value = serde_json::from_slice(snap.config_text()?).ok()?;
    Some(video_entries(&config).iter().any(|(p, _)| p == path))
}

/// `expired-gone` for the expired video `path` (`videos/…`), on what the
/// box holds once the start-up expiry had [`LIMIT`] to run.
pub fn gone(snap: &Snapshot, path: &str) -> Vec<Violation> {
    let file = format!("{NEOPRO}/{path}");
    let on_card = snap.entries.iter().any(|e| e.path == file);
    let detail = match names(snap, path) {
        // config-whole says why.
        None => return Vec::new(),
        Some(true) => format!(
            "{path} expired in 2020 and {CONFIG} still names it {} s after the agent authenticated",
            LIMIT.as_secs()
        ),
        Some(false) if on_card => {
            format!("{file} is on the card but no entry names it: no expiry run will remove it")
        }
        Some(false) => return Vec::new(),
    };
    vec![Violation {
        check: "expired-gone",
        detail,
    }]
}

/// When the expiry's configuration write reached the central (the agent
/// mirrors a changed configuration.json within 2 s: `sync_local_state`
/// without `path`), after `from` and before `until`.
pub fn done_at(events: &[Event], path: &str, from: Instant, until: Instant) -> Option<Instant> {
    events
        .iter()
        .filter(|e| e.name == "sync_local_state" && e.at > from && e.at < until)
        .find(|e| {
            !e.data["config"].is_null()
                && !video_entries(&e.data["config"])
                    .iter()
                    .any(|(p, _)| p == path)
        })
        .map(|e| e.at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::power_cut::snapshot::Entry;
    use serde_json::json;

    const PATH: &str = "videos/Match/pc-4.mp4";

    fn snap(named: bool, on_card: bool) -> Snapshot {
        let videos: Vec<Value> = if named {
            vec![json!({"path": PATH, "expires_at": "2020-01-01T00:00:00.000Z"})]
        } else {
            vec![]
        };
        let mut snap = Snapshot::default();
        snap.files.insert(
            CONFIG.to_owned(),
            json!({"categories": [{"name": "Match", "videos": videos}]})
                .to_string()
                .into_bytes(),
        );
        if on_card {
            snap.entries.push(Entry {
                kind: 'f',
                size: 9,
                path: format!("{NEOPRO}/{PATH}"),
            });
        }
        snap
    }

    #[test]
    fn an_expired_video_must_go_entries_and_file() {
        assert!(gone(&snap(false, false), PATH).is_empty());
        // Files then entries: an entry whose file went is the next run's.
        let still = gone(&snap(true, false), PATH);
        assert!(still[0].detail.contains("still names it"), "{still:?}");
        assert!(
            gone(&snap(true, true), PATH)[0]
                .detail
                .contains("still names it")
        );
        let orphan = gone(&snap(false, true), PATH);
        assert!(orphan[0].detail.contains("no entry names it"), "{orphan:?}");
        let t0 = Instant::now();
        let sync = |at: Instant, videos: Value| Event {
            at,
            name: "sync_local_state".into(),
            socket: String::new(),
            data: json!({"config": {"categories": [{"name": "Match", "videos": videos}]}}),
        };
        let events = vec![
            sync(t0 + Duration::from_secs(1), json!([{"path": PATH}])),
            sync(t0 + Duration::from_secs(3), json!([])),
        ];
        assert_eq!(
            done_at(&events, PATH, t0, t0 + Duration::from_secs(9)),
            Some(t0 + Duration::from_secs(3))
        );
        assert_eq!(
            done_at(&events, PATH, t0, t0 + Duration::from_secs(2)),
            None
        );
    }
}
