//! The invariants checked after every cut, each a named check (issue 29):
//! pure functions of what the box holds after the boot that followed the
//! cut ([`Snapshot`]), what the rig knew before it (the configuration, the
//! command in flight and what it must change), and what the central
//! received.

use super::central::Event;
use super::snapshot::{CONFIG, NEOPRO, STATE, Snapshot};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Every check, in report order.
pub const CHECKS: &[(&str, &str)] = &[
    (
        "config-whole",
        "configuration.json parses and is the state before or after the interrupted command",
    ),
    (
        "config-durable",
        "a command the central was told succeeded is in configuration.json",
    ),
    (
        "backups-whole",
        "configuration backups parse and each is a state the configuration had",
    ),
    (
        "videos-complete",
        "every video the configuration names is there, complete (size and sha256)",
    ),
    (
        "no-partial-final",
        "no partial or foreign file under a video's final name",
    ),
    (
        "no-orphans",
        "no temporary file left after the agent started",
    ),
    (
        "one-final-result",
        "every command admitted or seen gets exactly one final result",
    ),
    (
        "ack-not-resent",
        "a result the central had acknowledged is not sent again",
    ),
    (
        "release-whole",
        "the app release is wholly the one before or after the interrupted update",
    ),
    (
        "app-services-run",
        "the app release's services run after the boot",
    ),
    ("state-readable", "every state file of the agent parses"),
    (
        "agent-starts",
        "the agent runs and authenticates after the boot",
    ),
    ("fs-clean", "the kernel reports no filesystem error"),
    (
        "agent-slot",
        "the agent's slot state names binaries that exist, and the packaged agent is there",
    ),
    (
        "agent-version",
        "the agent running is the one before its update or the release installed, the new one once its success was sent",
    ),
    (
        "analytics-kept",
        "every play the web app buffered reaches the central or stays on the box",
    ),
    (
        "logs-whole",
        "LOG_PATH and its rotated copies are the agent's, in their numbered places",
    ),
    (
        "expired-gone",
        "once the start-up expiry ran, an expired video is neither named nor on the card",
    ),
    (
        "components-whole",
        "the pushed component is wholly the state before or after the command, signed, and runs",
    ),
];

#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub check: &'static str,
    pub detail: String,
}

fn violation(check: &'static str, detail: impl Into<String>) -> Violation {
    Violation {
        check,
        detail: detail.into(),
    }
}

/// What the command in flight changes in configuration.json.
#[derive(Debug, Clone)]
pub enum Expect {
    /// Nothing (no command, or one that changes no configuration).
    Unchanged,
    /// The whole document replaced by this one.
    Replaced(Value),
    /// One video entry with this path (`videos/…`) added.
    Added(String),
    /// Every entry with this path removed.
    Removed(String),
}

/// The command in flight when the power went.
#[derive(Debug, Clone)]
pub struct InFlight {
    pub id: String,
    pub kind: String,
    pub expect: Expect,
    /// The app release it installs (update_software).
    pub release: Option<String>,
}

/// The video entries of a configuration (categories, their
/// subcategories, sponsors), as (path, checksum).
pub fn video_entries(config: &Value) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    let mut take = |list: &Value| {
        for v in list.as_array().into_iter().flatten() {
            if let Some(path) = v.get("path").and_then(Value::as_str) {
                let sum = v.get("checksum").and_then(Value::as_str).map(str::to_owned);
                found.push((path.to_owned(), sum));
            }
        }
    };
    for category in config["categories"].as_array().into_iter().flatten() {
        take(&category["videos"]);
        for sub in category["subCategories"].as_array().into_iter().flatten() {
            take(&sub["videos"]);
        }
    }
    take(&config["sponsors"]);
    found
}

/// `config` without the entries whose path is `path`.
pub fn without(config: &Value, path: &str) -> Value {
    let mut out = config.clone();
    let keep = |list: &mut Value| {
        if let Some(items) = list.as_array_mut() {
            items.retain(|v| v.get("path").and_then(Value::as_str) != Some(path));
        }
    };
    if let Some(categories) = out.get_mut("categories").and_then(Value::as_array_mut) {
        for category in categories {
            if let Some(videos) = category.get_mut("videos") {
                keep(videos);
            }
            if let Some(subs) = category
                .get_mut("subCategories")
                .and_then(Value::as_array_mut)
            {
                for sub in subs {
                    if let Some(videos) = sub.get_mut("videos") {
                        keep(videos);
                    }
                }
            }
        }
    }
    if let Some(sponsors) = out.get_mut("sponsors") {
        keep(sponsors);
    }
    out
}

/// Whether `now` is the state after `expect` applied to `before`.
pub fn is_after(before: &Value, now: &Value, expect: &Expect) -> bool {
    match expect {
        Expect::Unchanged => now == before,
        Expect::Replaced(doc) => now == doc,
        Expect::Added(path) => {
            let added = video_entries(now).iter().filter(|(p, _)| p == path).count();
            added >= 1 && without(now, path) == without(before, path)
        }
        Expect::Removed(path) => now == &without(before, path),
    }
}

fn short(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let nuls = bytes.iter().filter(|b| **b == 0).count();
    let head: String = text.chars().take(120).collect();
    format!("{} bytes, {nuls} NUL: {head:?}", bytes.len())
}

/// `config-whole` and `config-durable`; returns the configuration read.
pub fn configuration(
    snap: &Snapshot,
    before: &Value,
    in_flight: Option<&InFlight>,
    success_reported: bool,
) -> (Option<Value>, Vec<Violation>) {
    let mut out = Vec::new();
    let Some(bytes) = snap.config_text() else {
        out.push(violation("config-whole", format!("{CONFIG} is missing")));
        return (None, out);
    };
    let now: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            out.push(violation(
                "config-whole",
                format!("{CONFIG} does not parse ({e}): {}", short(bytes)),
            ));
            return (None, out);
        }
    };
    let expect = in_flight.map(|c| &c.expect).unwrap_or(&Expect::Unchanged);
    let after = is_after(before, &now, expect);
    if now != *before && !after {
        out.push(violation(
            "config-whole",
            format!(
                "{CONFIG} is neither the state before nor after {}: {}",
                in_flight.map(|c| c.id.as_str()).unwrap_or("(no command)"),
                short(bytes)
            ),
        ));
    } else if success_reported && !after && !matches!(expect, Expect::Unchanged) {
        out.push(violation(
            "config-durable",
            format!(
                "the central got success for {} but {CONFIG} is the state before it",
                in_flight.map(|c| c.id.as_str()).unwrap_or("?")
            ),
        ));
    }
    (Some(now), out)
}

/// `backups-whole`: `<name>.backup.json` and the daily `config-*.json`.
pub fn backups(snap: &Snapshot, known: &[Value]) -> Vec<Violation> {
    let mut out = Vec::new();
    for (path, bytes) in &snap.files {
        let is_backup = path.starts_with(&format!("{NEOPRO}/webapp/"))
            && path.ends_with(".backup.json")
            || path.starts_with(&format!("{NEOPRO}/data/backups/config-"));
        if !is_backup {
            continue;
        }
        match serde_json::from_slice::<Value>(bytes) {
            Err(e) => out.push(violation(
                "backups-whole",
                format!("{path} does not parse ({e}): {}", short(bytes)),
            )),
            Ok(v) if !known.contains(&v) => out.push(violation(
                "backups-whole",
                format!("{path} is no state the configuration had: {}", short(bytes)),
            )),
            Ok(_) => {}
        }
    }
    out
}

fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

fn is_partial(name: &str) -> bool {
    name.starts_with('.') && (name.ends_with(".partial") || name.ends_with(".partial.source"))
}

/// `videos-complete` and `no-partial-final`. `known` holds the sha256 of
/// every file that may sit under a final name (the served video, the
/// box's own).
pub fn videos(snap: &Snapshot, config: &Value, known: &BTreeSet<String>) -> Vec<Violation> {
    let mut out = Vec::new();
    for (rel, checksum) in video_entries(config) {
        if !rel.starts_with("videos/") {
            continue;
        }
        let path = format!("{NEOPRO}/{rel}");
        match snap.shas.get(&path) {
            None => out.push(violation(
                "videos-complete",
                format!("{path} is named but missing"),
            )),
            Some(sha) => {
                let wanted = checksum
                    .as_ref()
                    .map(|c| c == sha)
                    .unwrap_or(known.contains(sha));
                if !wanted {
                    let size = snap
                        .entries
                        .iter()
                        .find(|e| e.path == path)
                        .map(|e| e.size)
                        .unwrap_or(0);
                    out.push(violation(
                        "videos-complete",
                        format!("{path} ({size} bytes) has sha256 {sha}, not the video's"),
                    ));
                }
            }
        }
    }
    for (path, sha) in &snap.shas {
        let name = path.rsplit('/').next().unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if !known.contains(sha) {
            out.push(violation(
                "no-partial-final",
                format!("{path} has sha256 {sha}: no complete video"),
            ));
        }
    }
    out
}

/// `no-orphans`: temporary files of atomic writes (`.<name>.tmp-<pid>-<n>`)
/// under the NEOPRO and state folders once the agent has started. An
/// interrupted download (`.<name>.partial`) is kept on purpose, to be
/// resumed, and swept after a week.
pub fn orphans(snap: &Snapshot) -> Vec<Violation> {
    snap.entries
        .iter()
        .filter(|e| {
            let name = e.path.rsplit('/').next().unwrap_or_default();
            e.kind == 'f' && is_temporary(name) && !is_partial(name)
        })
        .map(|e| violation("no-orphans", format!("{} ({} bytes)", e.path, e.size)))
        .collect()
}

/// `state-readable`: the agent's JSON state files parse; none is empty.
pub fn state_files(snap: &Snapshot) -> Vec<Violation> {
    let mut out = Vec::new();
    for (path, bytes) in &snap.files {
        if !path.starts_with(STATE) || !path.ends_with(".json") {
            continue;
        }
        let name = path.rsplit('/').next().unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if let Err(e) = serde_json::from_slice::<Value>(bytes) {
            out.push(violation(
                "state-readable",
                format!("{path} ({e}): {}", short(bytes)),
            ));
        }
    }
    out
}

/// `fs-clean`.
pub fn filesystem(snap: &Snapshot) -> Vec<Violation> {
    snap.dmesg
        .iter()
        .filter(|l| l.contains("EXT4-fs error") || l.contains("I/O error"))
        .map(|l| violation("fs-clean", l.clone()))
        .collect()
}

/// A final `command_result` (not a progress or a scheduled note).
fn final_results<'a>(events: &'a [Event], id: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.name == "command_result" && e.data["commandId"] == json!(id))
        .filter(|e| e.data["result"]["scheduled"] != json!(true))
        .collect()
}

/// How long after a result the agent counts it delivered: two Engine.IO
/// pings (one a second at the rig's central), with room.
pub const ACK_AFTER: Duration = Duration::from_millis(2500);

/// `one-final-result` and `ack-not-resent` for the commands `ids` (sent so
/// far), after the boot that followed the cut at `cut_at`. `admitted`:
/// what the box's journal lists. A result counts as acknowledged when the
/// same connection sent something else [`ACK_AFTER`] later, before the
/// cut: the agent was alive and had two pings by then.
pub fn results(
    events: &[Event],
    ids: &[String],
    admitted: &[String],
    cut_at: Instant,
) -> Vec<Violation> {
    let mut out = Vec::new();
    for id in ids {
        let finals = final_results(events, id);
        let seen = finals.len()
            + events
                .iter()
                .filter(|e| e.name != "sent" && e.data["commandId"] == json!(id))
                .count();
        let must = admitted.iter().any(|a| a == id) || seen > 0;
        if must && finals.is_empty() {
            out.push(violation(
                "one-final-result",
                format!("{id}: admitted, no result at the central"),
            ));
        }
        let distinct: BTreeSet<String> = finals
            .iter()
            .map(|e| {
                let mut d = e.data.clone();
                if let Some(obj) = d.as_object_mut() {
                    obj.remove("timestamp");
                }
                d.to_string()
            })
            .collect();
        if distinct.len() > 1 {
            out.push(violation(
                "one-final-result",
                format!(
                    "{id}: {} different final results: {}",
                    distinct.len(),
                    distinct
                        .iter()
                        .map(|d| d.chars().take(160).collect::<String>())
                        .collect::<Vec<_>>()
                        .join(" | ")
                ),
            ));
        }
        if let Some(first) = finals.first() {
            let acknowledged = first.at < cut_at
                && events.iter().any(|e| {
                    e.socket == first.socket
                        && e.name != "sent"
                        && e.at >= first.at + ACK_AFTER
                        && e.at < cut_at
                });
            let again = finals.iter().filter(|e| e.at > cut_at).count();
            if acknowledged && again > 0 {
                out.push(violation(
                    "ack-not-resent",
                    format!(
                        "{id}: acknowledged before the cut, received {again} more time(s) after it"
                    ),
                ));
            }
        }
    }
    out
}

/// Tally of violations per check (for the report).
pub fn tally(violations: &[Violation]) -> BTreeMap<&'static str, usize> {
    let mut map = BTreeMap::new();
    for v in violations {
        *map.entry(v.check).or_insert(0) += 1;
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::power_cut::snapshot::parse;

    fn config(videos: &[&str]) -> Value {
        let list: Vec<Value> = videos
            .iter()
            .map(|p| json!({"name": p, "path": p}))
            .collect();
        json!({"categories": [{"name": "Match", "videos": list}], "sponsors": []})
    }

    fn snap_with_config(text: &[u8]) -> Snapshot {
        let mut snap = parse("agent\tactive\n").expect("parse");
        snap.files.insert(CONFIG.to_owned(), text.to_vec());
        snap
    }

    #[test]
    fn the_configuration_must_be_before_or_after_never_half() {
        let before = config(&["videos/Match/a.mp4"]);
        let after = config(&["videos/Match/a.mp4", "videos/Match/b.mp4"]);
        let deploy = InFlight {
            id: "c1".into(),
            kind: "deploy_video".into(),
            expect: Expect::Added("videos/Match/b.mp4".into()),
            release: None,
        };
        for (doc, reported, wanted) in [
            (before.to_string(), false, vec![]),
            (after.to_string(), true, vec![]),
            (before.to_string(), true, vec!["config-durable"]),
            (
                after.to_string()[..20].to_owned(),
                false,
                vec!["config-whole"],
            ),
            (String::new(), false, vec!["config-whole"]),
            ("\0\0\0\0".to_owned(), false, vec!["config-whole"]),
            (
                config(&["videos/Match/c.mp4"]).to_string(),
                false,
                vec!["config-whole"],
            ),
        ] {
            let (_, found) = configuration(
                &snap_with_config(doc.as_bytes()),
                &before,
                Some(&deploy),
                reported,
            );
            let names: Vec<&str> = found.iter().map(|v| v.check).collect();
            assert_eq!(names, wanted, "{doc:?}");
        }
        let (_, missing) = configuration(
            &parse("agent\tactive\n").expect("parse"),
            &before,
            None,
            false,
        );
        assert_eq!(missing[0].check, "config-whole");
    }

    #[test]
    fn replace_and_remove_are_recognised() {
        let before = config(&["videos/Match/a.mp4", "videos/Match/b.mp4"]);
        let removed = config(&["videos/Match/a.mp4"]);
        assert!(is_after(
            &before,
            &removed,
            &Expect::Removed("videos/Match/b.mp4".into())
        ));
        assert!(!is_after(
            &before,
            &before,
            &Expect::Removed("videos/Match/b.mp4".into())
        ));
        let doc = json!({"remote": {"title": "x"}});
        assert!(is_after(&before, &doc, &Expect::Replaced(doc.clone())));
        assert!(!is_after(&before, &removed, &Expect::Replaced(doc)));
    }

    #[test]
    fn videos_must_be_complete_under_their_final_names() {
        let cfg = json!({"categories": [{"name": "Match", "videos": [
            {"path": "videos/Match/a.mp4", "checksum": "good"},
            {"path": "videos/Match/gone.mp4"}
        ]}]});
        let out = format!(
            "agent\tactive\nsha\tgood\t{NEOPRO}/videos/Match/a.mp4\nsha\tbad\t{NEOPRO}/videos/Match/half.mp4\nsha\tbad\t{NEOPRO}/videos/Match/.half.mp4.partial\n"
        );
        let snap = parse(&out).expect("parse");
        let known: BTreeSet<String> = ["good".to_owned()].into();
        let found = videos(&snap, &cfg, &known);
        let names: Vec<&str> = found.iter().map(|v| v.check).collect();
        assert_eq!(names, ["videos-complete", "no-partial-final"], "{found:?}");
    }

    #[test]
    fn temporary_files_are_orphans_partials_are_not() {
        let out = format!(
            "agent\tactive\nentry\tf\t3\t{NEOPRO}/webapp/.configuration.json.tmp-12-0\nentry\tf\t3\t{NEOPRO}/videos/Match/.a.mp4.partial\nentry\tf\t3\t{STATE}/journal/x.json\n"
        );
        let found = orphans(&parse(&out).expect("parse"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].detail.contains("tmp-12-0"));
    }

    fn event(name: &str, at: Instant, data: Value) -> Event {
        Event {
            at,
            name: name.into(),
            socket: "s1".into(),
            data,
        }
    }

    #[test]
    fn results_once_and_acknowledged_ones_not_again() {
        let t0 = Instant::now();
        let ok = json!({"commandId": "c1", "status": "success", "result": {}});
        let cut = t0 + Duration::from_secs(10);
        let base = vec![
            event("command_result", t0, ok.clone()),
            event("heartbeat", t0 + Duration::from_secs(3), json!({})),
        ];
        let ids = vec!["c1".to_owned(), "c2".to_owned()];
        assert!(results(&base, &ids, &[], cut).is_empty());
        let mut again = base.clone();
        again.push(event(
            "command_result",
            cut + Duration::from_secs(1),
            ok.clone(),
        ));
        assert_eq!(results(&again, &ids, &[], cut)[0].check, "ack-not-resent");
        let mut other = base.clone();
        other.push(event(
            "command_result",
            cut + Duration::from_secs(1),
            json!({"commandId": "c1", "status": "error", "error": "interrupted"}),
        ));
        let names: Vec<&str> = results(&other, &ids, &[], cut)
            .iter()
            .map(|v| v.check)
            .collect();
        assert_eq!(names, ["one-final-result", "ack-not-resent"]);
        let lost = results(&base, &ids, &["c2".to_owned()], cut);
        assert_eq!(lost[0].check, "one-final-result");
        assert!(lost[0].detail.contains("c2"));
    }
}
