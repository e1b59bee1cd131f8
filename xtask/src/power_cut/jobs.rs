//! The phases of the agent's own jobs (the analytics forwarder, log
//! rotation), what the rig prepares for them on the box, and their checks:
//! `analytics-kept` (no play the web app buffered is lost) and
//! `logs-whole` (the log and its rotated copies are the agent's files, in
//! their numbered places). The configuration backup needs nothing of its
//! own: an `update_config` before the restart, then the checks every cut
//! runs (`backups-whole`, `no-orphans`).

use super::central::{Central, Event};
use super::checks::Violation;
use super::qga::{Qga, base64_decode};
use super::snapshot::{NEOPRO, Snapshot};
use anyhow::Context;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The web app's buffer of video plays (the forwarder's `VideoPlays`).
pub const PLAYS: &str = "/home/pi/neopro/data/analytics_buffer.json";
/// Where the test central records the batches it accepted.
pub const PLAYS_ROUTE: &str = "/api/analytics/video-plays";
/// `LOG_PATH` on the box (the default, under the NEOPRO folder).
pub const LOG: &str = "/home/pi/neopro/logs/sync-agent.log";
/// The agent's rotation limit (`logging::MAX_FILE_BYTES`) and files kept.
const LOG_LIMIT: u64 = 10 * 1024 * 1024;
const LOG_FILES: u32 = 5;
/// Plays in one buffer the rig writes.
const PLAYS_PER_BUFFER: u64 = 5;
/// How long the plays still on the box may take to reach the central
/// after the boot (the forwarder runs at start).
const FORWARD_LIMIT: Duration = Duration::from_secs(90);

/// The plays of buffer `n`: each names a file of its own, the marker the
/// check looks for.
pub fn plays(n: u64) -> Vec<Value> {
    (0..PLAYS_PER_BUFFER)
        .map(|k| {
            json!({
                "video_filename": format!("pc-play-{n}-{k}.mp4"),
                "category": "Match",
                "played_at": "2026-12-07T20:00:00.000Z",
                "duration_played": 12,
                "trigger_type": "auto",
            })
        })
        .collect()
}

/// The marker of every play in a buffer file or a batch.
fn markers(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["video_filename"].as_str().map(str::to_owned))
        .collect()
}

/// Writes the plays as the web app leaves a buffer (owned by its user),
/// flushed: what the rig wrote must be on the card before the cut, so
/// that only the agent can lose it. The buffer is left as it is when the
/// web app already has one (a previous cut's, not forwarded yet): its
/// plays are the rig's too. Returns whether the plays were written.
pub fn buffer_plays(qga: &mut Qga, plays: &[Value]) -> anyhow::Result<bool> {
    let text = serde_json::to_vec(plays)?;
    // A fixed script; the contents come on standard input.
    let script = format!(
        "f={PLAYS}; [ -e \"$f\" ] && {{ echo kept; exit 0; }}; \
         cat > \"$f.pc-new\" && chown 1000:1000 \"$f.pc-new\" && chmod 0664 \"$f.pc-new\" \
         && sync \"$f.pc-new\" && mv \"$f.pc-new\" \"$f\" && sync && echo written"
    );
    let out = qga
        .exec(
            &["/bin/sh", "-c", &script],
            Some(&text),
            Duration::from_secs(60),
        )?
        .ok("writing the web app's plays buffer")?;
    Ok(out.trim() == "written")
}

/// Brings `LOG_PATH` within a few hundred bytes of its rotation limit
/// (appending, so the file stays the agent's own), flushed.
pub fn fill_log(qga: &mut Qga) -> anyhow::Result<()> {
    let script = format!(
        "f={LOG}; [ -f \"$f\" ] || exit 0; s=$(stat -c %s \"$f\"); n=$(({LOG_LIMIT} - s - 300)); \
         [ \"$n\" -gt 0 ] && yes 'power-cut rig: filler bringing the log near its rotation limit' \
         | head -c \"$n\" >> \"$f\"; sync"
    );
    qga.exec(&["/bin/sh", "-c", &script], None, Duration::from_secs(120))?
        .ok("filling LOG_PATH")?;
    Ok(())
}

/// The plays the central accepted so far.
fn at_central(events: &[Event]) -> BTreeSet<String> {
    events
        .iter()
        .filter(|e| e.name == format!("http:{PLAYS_ROUTE}"))
        .flat_map(|e| markers(&e.data["plays"]))
        .collect()
}

/// The plays on the box (the buffer, the batch being sent, refused
/// batches), read in one pass, and the files among them that do not parse.
fn on_box(qga: &mut Qga) -> anyhow::Result<(BTreeSet<String>, Vec<Violation>)> {
    let script = format!(
        "for f in {PLAYS}*; do \
         [ -f \"$f\" ] && printf '%s\\t%s\\n' \"$f\" \"$(base64 -w0 < \"$f\")\"; done; true"
    );
    let out = qga
        .exec(&["/bin/sh", "-c", &script], None, Duration::from_secs(60))?
        .ok("reading the plays buffers")?;
    let mut found = BTreeSet::new();
    let mut bad = Vec::new();
    for line in out.lines() {
        let (path, data) = line.split_once('\t').unwrap_or((line, ""));
        let bytes = base64_decode(data);
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(list) => found.extend(markers(&list)),
            Err(e) => bad.push(Violation {
                check: "analytics-kept",
                detail: format!(
                    "{path} does not parse ({e}); {} bytes, the plays in it are lost",
                    bytes.len()
                ),
            }),
        }
    }
    Ok((found, bad))
}

/// `analytics-kept`: every play the rig buffered reaches the central after
/// the boot, or is still on the box (a batch the central refused waits for
/// the next pass). A play sent twice is allowed (the forwarder's
/// documented worst case); a play gone from both is lost.
pub fn analytics_kept(
    central: &Central,
    qga: &mut Qga,
    buffered: &BTreeSet<String>,
) -> anyhow::Result<Vec<Violation>> {
    if buffered.is_empty() {
        return Ok(Vec::new());
    }
    let end = Instant::now() + FORWARD_LIMIT;
    let mut missing: BTreeSet<String> = buffered.clone();
    while !missing.is_empty() && Instant::now() < end {
        let sent = at_central(&central.events());
        missing.retain(|m| !sent.contains(m));
        std::thread::sleep(Duration::from_millis(500));
    }
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let (kept, mut out) = on_box(qga).context("the plays left on the box")?;
    // Sent meanwhile?
    out.extend(lost(&missing, &at_central(&central.events()), &kept));
    Ok(out)
}

/// The plays of `buffered` neither `sent` nor `kept`, as a violation.
fn lost(
    buffered: &BTreeSet<String>,
    sent: &BTreeSet<String>,
    kept: &BTreeSet<String>,
) -> Option<Violation> {
    let gone: Vec<String> = buffered
        .iter()
        .filter(|m| !sent.contains(*m) && !kept.contains(*m))
        .cloned()
        .collect();
    (!gone.is_empty()).then(|| Violation {
        check: "analytics-kept",
        detail: format!(
            "{} buffered play(s) neither at the central nor on the box: {}",
            gone.len(),
            gone.join(", ")
        ),
    })
}

/// `logs-whole`: after the agent started, `LOG_PATH` is a regular file,
/// its rotated copies are `.1` … `.4` (none past the kept count, none
/// beyond the limit by more than a line), and nothing was moved aside as
/// not the agent's (`.refused-`: a cut must not make the agent distrust
/// its own log).
pub fn logs_whole(snap: &Snapshot) -> Vec<Violation> {
    let mut out = Vec::new();
    let folder = format!("{NEOPRO}/logs/");
    let name = LOG.rsplit('/').next().unwrap_or_default();
    let mut current = false;
    for e in snap.entries.iter().filter(|e| e.path.starts_with(&folder)) {
        let file = &e.path[folder.len()..];
        let Some(rest) = file.strip_prefix(name) else {
            continue;
        };
        let problem = match rest {
            "" if e.kind == 'f' => {
                current = true;
                None
            }
            "" => Some(format!("{} is not a regular file ({})", e.path, e.kind)),
            _ if rest.starts_with(".refused-") => {
                Some(format!("{} was moved aside as not the agent's log", e.path))
            }
            _ => match rest.strip_prefix('.').and_then(|n| n.parse::<u32>().ok()) {
                Some(n) if (1..LOG_FILES).contains(&n) => None,
                Some(n) => Some(format!(
                    "{} is past the {LOG_FILES} files kept (.{n})",
                    e.path
                )),
                None => None,
            },
        };
        let too_big = e.kind == 'f' && e.size > LOG_LIMIT + 64 * 1024;
        if let Some(detail) = problem {
            out.push(Violation {
                check: "logs-whole",
                detail,
            });
        } else if too_big {
            out.push(Violation {
                check: "logs-whole",
                detail: format!("{} is {} bytes, past the rotation limit", e.path, e.size),
            });
        }
    }
    if !current {
        out.push(Violation {
            check: "logs-whole",
            detail: format!("{LOG} is missing after the agent started"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::power_cut::snapshot::Entry;

    fn entry(kind: char, size: u64, name: &str) -> Entry {
        Entry {
            kind,
            size,
            path: format!("{NEOPRO}/logs/{name}"),
        }
    }

    #[test]
    fn a_rotated_log_is_whole_and_what_a_cut_could_leave_is_not() {
        let mut snap = Snapshot {
            entries: vec![
                entry('f', 300, "sync-agent.log"),
                entry('f', LOG_LIMIT, "sync-agent.log.1"),
                entry('f', LOG_LIMIT, "sync-agent.log.4"),
                entry('f', 10, "other.log"),
            ],
            ..Snapshot::default()
        };
        assert!(logs_whole(&snap).is_empty(), "{:?}", logs_whole(&snap));
        snap.entries[0] = entry('f', 300, "sync-agent.log.5");
        snap.entries
            .push(entry('f', 9, "sync-agent.log.refused-17-40"));
        let found: Vec<String> = logs_whole(&snap).into_iter().map(|v| v.detail).collect();
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("past the 5 files kept"));
        assert!(found[1].contains("moved aside"));
        assert!(found[2].contains("missing"));
    }

    #[test]
    fn plays_carry_their_markers() {
        let list = Value::Array(plays(3));
        assert_eq!(
            markers(&list),
            (0..PLAYS_PER_BUFFER)
                .map(|k| format!("pc-play-3-{k}.mp4"))
                .collect::<Vec<_>>()
        );
        let events = vec![Event {
            at: Instant::now(),
            name: format!("http:{PLAYS_ROUTE}"),
            socket: String::new(),
            data: json!({"site_id": "s", "plays": plays(3)}),
        }];
        let sent = at_central(&events);
        assert_eq!(sent.len(), PLAYS_PER_BUFFER as usize);
        // Buffer 4's plays: two still on the box, one sent, two lost.
        let buffered: BTreeSet<String> = markers(&Value::Array(plays(4))).into_iter().collect();
        let kept: BTreeSet<String> = ["pc-play-4-0.mp4", "pc-play-4-1.mp4"]
            .map(str::to_owned)
            .into();
        let sent: BTreeSet<String> = ["pc-play-4-2.mp4".to_owned()].into();
        let found = lost(&buffered, &sent, &kept).map(|v| v.detail);
        assert_eq!(
            found.as_deref(),
            Some(
                "2 buffered play(s) neither at the central nor on the box: pc-play-4-3.mp4, pc-play-4-4.mp4"
            )
        );
        assert!(lost(&buffered, &buffered, &BTreeSet::new()).is_none());
    }
}
