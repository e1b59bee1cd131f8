//! The phases a cut can land in: what the rig sends to the box, what the
//! command must change, and the window in which the cut falls (uniform,
//! from the moment the command is sent).

use super::central::Release;
use super::checks::{Expect, video_entries};
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// No command: heartbeats, `ping_check`, link status, logs.
    Idle,
    /// Download, hash, move into place, configuration.json.
    DeployVideo,
    /// The file, then its entries in configuration.json.
    DeleteVideo,
    /// configuration.json replaced (and its backup written).
    UpdateConfig,
    /// A NEOPRO release installed: download into staging, extraction,
    /// backup, services stopped, swap, services started, health gate,
    /// version files (or the rollback); at the next start the agent
    /// finishes or rolls back what was interrupted.
    UpdateSoftware,
    /// During the boot that follows a cut: journal replay, the agent's
    /// start (journal recovery, sweeps, the expiry run, re-sent results).
    Restart,
    /// The analytics forwarder: plays the web app buffered
    /// (`data/analytics_buffer.json`) renamed aside, sent, deleted — run at
    /// the agent's start, which the rig triggers by restarting the unit.
    Analytics,
    /// The daily configuration backup (`data/backups/config-*.json`, the
    /// oldest beyond seven deleted): run at the start that follows a
    /// configuration change.
    ConfigBackup,
    /// Log rotation: `LOG_PATH` brought near its 10 MiB limit, then the
    /// start's log lines rotate it (`.1` → `.2` …, the oldest deleted).
    LogRotation,
    /// The expiry (the built-in `expire_videos`, run at the agent's start
    /// and hourly): a video whose `expires_at` has passed loses its file,
    /// then its entries in configuration.json. The rig deploys one
    /// already expired, then restarts the unit.
    ExpireVideos,
    /// A signed component pushed by the server: download into
    /// `.incoming`, checks, precompilation into the artifact cache, the
    /// version folder built as `.staging-<version>` and renamed, then
    /// `state.json` (the switch).
    InstallComponent,
    /// A pushed component removed: its folder renamed aside, then deleted.
    RemoveComponent,
    /// The agent's own update (a signed agent release through
    /// `update_software`): download, signature, the slot staged and
    /// `agent/state.json` naming it on trial, the unit restarted into it,
    /// the trial's self-check and commit, the success sent by the new
    /// agent; or, for a release that fails at start, the trial's starts
    /// counted and the previous agent back (the rollback).
    AgentUpdate,
}

pub const ALL: &[Phase] = &[
    Phase::DeployVideo,
    Phase::UpdateConfig,
    Phase::DeleteVideo,
    Phase::UpdateSoftware,
    Phase::Idle,
    Phase::Restart,
    Phase::Analytics,
    Phase::ConfigBackup,
    Phase::LogRotation,
    Phase::ExpireVideos,
    Phase::InstallComponent,
    Phase::RemoveComponent,
    Phase::AgentUpdate,
];

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::DeployVideo => "deploy_video",
            Phase::DeleteVideo => "delete_video",
            Phase::UpdateConfig => "update_config",
            Phase::UpdateSoftware => "update_software",
            Phase::Restart => "restart",
            Phase::Analytics => "analytics",
            Phase::ConfigBackup => "config_backup",
            Phase::LogRotation => "log_rotation",
            Phase::ExpireVideos => "expire_videos",
            Phase::InstallComponent => "install_component",
            Phase::RemoveComponent => "remove_component",
            Phase::AgentUpdate => "agent_update",
        }
    }

    pub fn parse(name: &str) -> anyhow::Result<Phase> {
        ALL.iter()
            .copied()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown phase '{name}': {}",
                    ALL.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
                )
            })
    }

    /// The first guess at how long the phase writes, under emulation
    /// (widened by what the campaign observes).
    pub fn window(self) -> Duration {
        match self {
            Phase::Idle => Duration::from_secs(15),
            Phase::DeployVideo => Duration::from_secs(8),
            Phase::DeleteVideo | Phase::UpdateConfig => Duration::from_secs(4),
            Phase::UpdateSoftware => Duration::from_secs(15),
            Phase::Restart => Duration::from_secs(35),
            // From `systemctl restart`: the old agent's stop, the new one's
            // start and its first jobs (under emulation).
            Phase::Analytics | Phase::ConfigBackup | Phase::LogRotation | Phase::ExpireVideos => {
                Duration::from_secs(15)
            }
            // The download, the checks, the precompilation (seconds under
            // emulation), the store.
            Phase::InstallComponent => Duration::from_secs(30),
            Phase::RemoveComponent => Duration::from_secs(4),
            // The download and staging, the restart, the new agent's
            // start, authentication and commit (or, for a release that
            // fails, two starts 5 s apart and the previous agent's).
            Phase::AgentUpdate => Duration::from_secs(45),
        }
    }

    /// Phases whose writes are a job of the agent's start: the rig
    /// prepares what the job works on, then restarts the unit.
    pub fn restarts_agent(self) -> bool {
        matches!(
            self,
            Phase::Analytics | Phase::ConfigBackup | Phase::LogRotation | Phase::ExpireVideos
        )
    }
}

/// A command to send and what it changes.
pub struct Command {
    pub kind: &'static str,
    pub data: Value,
    pub expect: Expect,
    /// The app release it installs (update_software).
    pub release: Option<String>,
}

/// Where deployed videos go (a category the box's configuration has).
pub const CATEGORY: &str = "Match";

pub fn deploy(n: u64, url: &str, sha256: &str) -> Command {
    let filename = format!("pc-{n}.mp4");
    Command {
        kind: "deploy_video",
        data: json!({
            "deploymentId": format!("dep-pc-{n}"),
            "videoId": format!("vid-pc-{n}"),
            "videoUrl": url,
            "filename": filename,
            // The box names the file after it (upstream's rule).
            "originalName": filename,
            "category": CATEGORY,
            "subcategory": null,
            "checksum": sha256,
        }),
        expect: Expect::Added(format!("videos/{CATEGORY}/{filename}")),
        release: None,
    }
}

/// The file name of a video the rig deployed, if the configuration names one.
pub fn deployed(config: &Value, pick: u64) -> Option<String> {
    let ours: Vec<String> = video_entries(config)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.starts_with(&format!("videos/{CATEGORY}/pc-")))
        .collect();
    if ours.is_empty() {
        return None;
    }
    let i = (pick % ours.len() as u64) as usize;
    ours.get(i).cloned()
}

pub fn delete(path: &str) -> Command {
    let filename = path.rsplit('/').next().unwrap_or_default();
    Command {
        kind: "delete_video",
        data: json!({"filename": filename, "category": CATEGORY}),
        expect: Expect::Removed(path.to_owned()),
        release: None,
    }
}

/// The configuration replaced by itself with another remote title.
pub fn update_config(n: u64, before: &Value) -> Command {
    let mut doc = before.clone();
    if let Some(map) = doc.as_object_mut() {
        let remote = map.entry("remote").or_insert_with(|| json!({}));
        if let Some(remote) = remote.as_object_mut() {
            remote.insert("title".to_owned(), json!(format!("Power cut {n}")));
        }
    }
    Command {
        kind: "update_config",
        data: json!({"mode": "replace", "configuration": doc}),
        expect: Expect::Replaced(doc),
        release: None,
    }
}

/// When the rig's expired videos expired (long before any run).
pub const EXPIRED_AT: &str = "2020-01-01T00:00:00.000Z";

/// A deploy whose video has already expired (`expires_at` in the past):
/// the agent's next expiry run removes it.
pub fn deploy_expired(n: u64, url: &str, sha256: &str) -> Command {
    let mut cmd = deploy(n, url, sha256);
    if let Some(data) = cmd.data.as_object_mut() {
        data.insert("expires_at".to_owned(), json!(EXPIRED_AT));
    }
    cmd
}

/// The release version of the `n`-th command: always newer than any
/// before it (the box refuses nothing, but the order reads well).
pub fn release_version(n: u64) -> String {
    format!("1.{n}.0")
}

/// Installs `release` now (critical: no maintenance window).
pub fn update_software(n: u64, release: &Release) -> Command {
    Command {
        kind: "update_software",
        data: json!({
            "deploymentId": format!("dep-pc-{n}"),
            "version": release.version,
            "updateUrl": release.url,
            "packageSize": release.size.to_string(),
            "checksum": release.sha256,
            // Ignored by a box without UPDATE_TRUSTED_KEYS; required once
            // the agent-update phase gave it the central's key.
            "signature": release.signature,
            "isCritical": true,
        }),
        expect: Expect::Unchanged,
        release: Some(release.version.clone()),
    }
}

/// The agent release version of the `n`-th command: above the packaged
/// agent (0.1.x, the floor no slot goes below) and every earlier one.
pub fn agent_version(n: u64) -> String {
    format!("0.9.{n}")
}

/// Installs the agent release `release` now; the app release stays.
pub fn agent_update(n: u64, release: &Release) -> Command {
    let mut cmd = update_software(n, release);
    cmd.release = None;
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::power_cut::checks::is_after;

    #[test]
    fn names_round_trip_and_commands_say_what_they_change() -> anyhow::Result<()> {
        for p in ALL {
            assert_eq!(Phase::parse(p.name())?, *p);
        }
        assert!(Phase::parse("nap").is_err());
        let before = json!({"remote": {"title": "a"}, "categories": [{"name": "Match", "videos": [
            {"path": "videos/Match/pc-1.mp4"}]}]});
        let up = update_config(2, &before);
        assert!(matches!(&up.expect, Expect::Replaced(d) if d["remote"]["title"] == "Power cut 2"));
        assert_eq!(
            deployed(&before, 7).as_deref(),
            Some("videos/Match/pc-1.mp4")
        );
        let del = delete("videos/Match/pc-1.mp4");
        assert_eq!(del.data["filename"], "pc-1.mp4");
        let after =
            json!({"remote": {"title": "a"}, "categories": [{"name": "Match", "videos": []}]});
        assert!(is_after(&before, &after, &del.expect));
        Ok(())
    }
}
