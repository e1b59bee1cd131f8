//! `STATE_PATH/agent/state.json`: which slot is committed and which one is
//! on trial. Written atomically (fsync'd) at every change; read as untrusted
//! input: anything unexpected is an error the launcher answers with the
//! packaged floor binary. Fields this version does not know are ignored, so
//! an older packaged agent still reads what a newer trial wrote.

use crate::store::atomic;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The file's name in the agent folder.
pub const FILE: &str = "state.json";
/// Larger than any state this agent writes: a bigger file is not ours.
const MAX_BYTES: u64 = 64 << 10;
/// The newest agent ever committed, also kept in a file of its own beside
/// `state.json`: an older packaged agent (after a fallback, or a `.deb`
/// installed by hand) rewrites `state.json` without the `highest` field it
/// does not know, but never touches this file.
pub const HIGHEST_FILE: &str = "highest";

/// Why the state cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the agent update state {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the agent update state {path} is not valid ({reason}); running the packaged agent")]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot write the agent update state {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A new agent version on trial: it must authenticate and pass its
/// self-check before its deadline, within [`MAX_ATTEMPTS`] starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trial {
    pub version: String,
    /// The version that staged it (reported as `previousVersion`).
    pub previous_version: String,
    /// The `update_software` command whose result the trial sends.
    pub command_id: String,
    #[serde(default)]
    pub deployment_id: Option<String>,
    /// Starts of the trial binary so far (the launcher counts them before
    /// the exec, so a crash still counts).
    pub attempts: u32,
    /// Wall-clock time of the staging, for the operator; the deadline is
    /// counted on the boot clock from `first_start`.
    pub started_at_ms: u64,
    /// How long the trial may take to authenticate, from its first start.
    pub deadline_secs: u64,
    #[serde(default)]
    pub last_error: Option<String>,
    /// The trial's first start in this boot (set by the launcher).
    #[serde(default)]
    pub first_start: Option<BootInstant>,
}

#[cfg(test)]
impl Trial {
    /// A trial of `version` just staged by command `command_id`, for tests.
    pub(crate) fn staged_by(command_id: &str, version: &str, previous_version: &str) -> Trial {
        Trial {
            version: version.to_owned(),
            previous_version: previous_version.to_owned(),
            command_id: command_id.to_owned(),
            deployment_id: None,
            attempts: 1,
            started_at_ms: 0,
            deadline_secs: 600,
            last_error: None,
            first_start: None,
        }
    }
}

/// A moment on this boot's clock: the kernel's boot id and the time since
/// boot (`/proc/uptime`). A Pi has no battery-backed clock: its wall clock
/// starts at boot from the last saved time and jumps when NTP answers, so
/// a deadline on it could end at once or never. Time since boot only moves
/// forward, and only means something within one boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootInstant {
    pub boot_id: String,
    pub uptime_ms: u64,
}

impl BootInstant {
    /// Now, or `None` where the kernel does not say (no `/proc`).
    pub fn now() -> Option<BootInstant> {
        Some(BootInstant {
            boot_id: crate::follow_up::boot_id()?,
            uptime_ms: crate::platform::clock::uptime_ms()?,
        })
    }

    /// Time from `self` to `now`; `None` when they are not of the same boot.
    pub fn elapsed_ms(&self, now: &BootInstant) -> Option<u64> {
        (self.boot_id == now.boot_id).then(|| now.uptime_ms.saturating_sub(self.uptime_ms))
    }
}

/// Time the trial has used of its deadline, when it can be known: on the
/// boot clock since its first start in this boot, or, only where no boot
/// clock exists, on the wall clock since its staging.
pub fn trial_elapsed_ms(trial: &Trial, now: Option<&BootInstant>, now_ms: u64) -> Option<u64> {
    match (&trial.first_start, now) {
        (Some(start), Some(now)) => start.elapsed_ms(now),
        (None, None) => Some(now_ms.saturating_sub(trial.started_at_ms)),
        _ => None,
    }
}

/// A trial that failed, kept until the agent that came back has reported
/// it under the update's command id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failed {
    pub version: String,
    pub command_id: String,
    #[serde(default)]
    pub deployment_id: Option<String>,
    pub error: String,
}

/// A trial that committed, kept until its success is in the journal (a
/// crash between the two must not turn a good update into "interrupted").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Succeeded {
    pub version: String,
    pub previous_version: String,
    pub command_id: String,
    #[serde(default)]
    pub deployment_id: Option<String>,
}

/// What the committed slot replaced: where `rollback_update` goes back to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Replaced {
    /// The committed version this record is about.
    pub by: String,
    /// The agent version that ran before it.
    pub version: String,
    /// Whether that version ran from a slot (kept until a later update) or
    /// was the packaged agent.
    pub from_slot: bool,
}

/// An agent rollback asked by `rollback_update`, reported by the agent
/// that comes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolledBack {
    pub command_id: String,
    /// The version rolled back from.
    pub from: String,
    /// The version that must come back.
    pub to: String,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentState {
    /// The slot version that runs when no trial does (`None`: the packaged
    /// binary).
    #[serde(default)]
    pub committed: Option<String>,
    #[serde(default)]
    pub trial: Option<Trial>,
    #[serde(default)]
    pub failed: Option<Failed>,
    #[serde(default)]
    pub succeeded: Option<Succeeded>,
    /// Starts of the committed slot since it last proved healthy
    /// (authenticated, or up for [`STABLE_AFTER`]); counted by the launcher
    /// before the exec.
    #[serde(default)]
    pub committed_starts: u32,
    #[serde(default)]
    pub replaced: Option<Replaced>,
    #[serde(default)]
    pub rolled_back: Option<RolledBack>,
    /// The newest agent version this box ever committed. Kept when the
    /// launcher falls back to the packaged agent or a rollback goes back:
    /// without it, any signed release above the packaged one would be taken
    /// again, even one older than an agent the box already ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest: Option<String>,
    /// The `deploymentId` the committed slot was installed under, so that
    /// the server's re-delivery of that deployment is answered "already
    /// installed" ([`super::reinstall`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_deployment: Option<String>,
}

impl AgentState {
    /// The newest version ever committed: [`AgentState::highest`], or the
    /// committed slot (a state written before `highest` was kept).
    pub fn highest_committed(&self) -> Option<&str> {
        match (self.highest.as_deref(), self.committed.as_deref()) {
            (Some(h), Some(c)) if crate::version_order::is_older(h, c) => Some(c),
            (Some(h), _) => Some(h),
            (None, c) => c,
        }
    }

    /// Records `version` as committed, raising [`AgentState::highest`].
    pub fn commit(&mut self, version: &str) {
        let top = match self.highest_committed() {
            Some(top) if !crate::version_order::is_older(top, version) => top.to_owned(),
            _ => version.to_owned(),
        };
        self.committed = Some(version.to_owned());
        self.highest = Some(top);
    }
}

/// How many times a trial binary is started before the launcher gives up.
pub const MAX_ATTEMPTS: u32 = 2;

/// How many starts in a row the committed slot gets without proving
/// healthy before the launcher runs the packaged agent instead: a slot
/// that crashes at every start must not keep the box offline for ever
/// (the unit restarts without limit).
pub const MAX_COMMITTED_STARTS: u32 = 3;

/// Up this long, a committed agent counts as healthy even offline (a
/// crash loop dies well before; the watchdog kills a hung agent at 60 s).
pub const STABLE_AFTER: std::time::Duration = std::time::Duration::from_secs(120);

/// A version as a slot folder name: plain characters only (the file is
/// untrusted; a version must never walk out of the agent folder).
pub fn is_plain_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

impl AgentState {
    /// The slots this state still needs: the committed one, the trial, and
    /// the one the committed slot replaced (where `rollback_update` goes).
    pub fn slots_in_use(&self) -> Vec<&str> {
        let replaced = self
            .replaced
            .as_ref()
            .filter(|r| r.from_slot)
            .map(|r| r.version.as_str());
        self.committed
            .iter()
            .map(String::as_str)
            .chain(self.trial.as_ref().map(|t| t.version.as_str()))
            .chain(replaced)
            .collect()
    }

    /// Reads `agent_dir/state.json`; `Ok(None)` when there is none.
    pub fn load(agent_dir: &Path) -> Result<Option<AgentState>, StateError> {
        let path = agent_dir.join(FILE);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        let mut bytes = Vec::new();
        file.take(MAX_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| StateError::Read {
                path: path.clone(),
                source,
            })?;
        if bytes.len() as u64 > MAX_BYTES {
            return Err(StateError::Invalid {
                path,
                reason: format!("larger than {MAX_BYTES} bytes"),
            });
        }
        let state: AgentState =
            serde_json::from_slice(&bytes).map_err(|e| StateError::Invalid {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let versions = state
            .committed
            .iter()
            .chain(state.trial.as_ref().map(|t| &t.version))
            .chain(state.failed.as_ref().map(|f| &f.version))
            .chain(state.succeeded.as_ref().map(|s| &s.version))
            .chain(state.replaced.iter().flat_map(|r| [&r.by, &r.version]))
            .chain(state.rolled_back.iter().flat_map(|r| [&r.from, &r.to]));
        for v in versions {
            if !is_plain_version(v) {
                return Err(StateError::Invalid {
                    path,
                    reason: format!("version '{v}' is not a plain version"),
                });
            }
        }
        let mut state = state;
        if let Some(kept) = read_highest(agent_dir)
            && state
                .highest_committed()
                .is_none_or(|h| crate::version_order::is_older(h, &kept))
        {
            state.highest = Some(kept);
        }
        Ok(Some(state))
    }

    /// Writes the state atomically (temp file, fsync, rename, fsync of the
    /// folder), creating the agent folder if needed.
    pub fn save(&self, agent_dir: &Path) -> Result<(), StateError> {
        let path = agent_dir.join(FILE);
        let write_error = |source| StateError::Write {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| write_error(e.into()))?;
        let dir = atomic::open_state_dir(agent_dir).map_err(write_error)?;
        if let Some(top) = self.highest_committed()
            && read_highest(agent_dir).is_none_or(|kept| crate::version_order::is_older(&kept, top))
        {
            atomic::write_private(&dir, Path::new(HIGHEST_FILE), format!("{top}\n").as_bytes())
                .map_err(|source| StateError::Write {
                    path: agent_dir.join(HIGHEST_FILE),
                    source,
                })?;
        }
        atomic::write_private(&dir, Path::new(FILE), &bytes).map_err(write_error)
    }
}

/// The version in [`HIGHEST_FILE`], if it holds a plain one (the file is
/// state, but read as untrusted: a version never walks out of a folder).
fn read_highest(agent_dir: &Path) -> Option<String> {
    let mut text = Vec::new();
    std::fs::File::open(agent_dir.join(HIGHEST_FILE))
        .ok()?
        .take(128)
        .read_to_end(&mut text)
        .ok()?;
    let version = String::from_utf8(text).ok()?.trim().to_owned();
    is_plain_version(&version).then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial() -> Trial {
        Trial {
            version: "0.2.0".into(),
            previous_version: "0.1.0".into(),
            command_id: "cmd-1".into(),
            deployment_id: None,
            attempts: 0,
            started_at_ms: 1,
            deadline_secs: 600,
            last_error: None,
            first_start: None,
        }
    }

    #[test]
    fn the_trials_time_is_counted_on_the_boot_clock() {
        let at = |boot: &str, uptime_ms| BootInstant {
            boot_id: boot.into(),
            uptime_ms,
        };
        let mut t = trial();
        t.started_at_ms = 5_000_000;
        t.first_start = Some(at("b1", 10_000));
        // The wall clock jumping (NTP after a boot without RTC) changes nothing.
        assert_eq!(
            trial_elapsed_ms(&t, Some(&at("b1", 70_000)), 99_999_999_999),
            Some(60_000)
        );
        assert_eq!(
            trial_elapsed_ms(&t, Some(&at("b1", 70_000)), 0),
            Some(60_000)
        );
        // Another boot: unknown (the launcher starts the count again).
        assert_eq!(trial_elapsed_ms(&t, Some(&at("b2", 5)), 0), None);
        // No boot clock anywhere: the wall clock is all there is.
        t.first_start = None;
        assert_eq!(trial_elapsed_ms(&t, None, 5_004_000), Some(4_000));
    }

    #[test]
    fn the_state_reads_back_and_a_missing_file_is_none() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("agent");
        assert_eq!(AgentState::load(&dir)?, None);
        let state = AgentState {
            committed: Some("0.1.5".into()),
            trial: Some(trial()),
            ..AgentState::default()
        };
        state.save(&dir)?;
        assert_eq!(AgentState::load(&dir)?, Some(state));
        Ok(())
    }

    #[test]
    fn the_highest_committed_version_only_rises_and_outlives_a_fallback() {
        let mut state = AgentState::default();
        assert_eq!(state.highest_committed(), None);
        state.commit("1.3.0");
        // A downgrade allowed by the site commits 1.2.0; 1.3.0 stays highest.
        state.commit("1.2.0");
        assert_eq!(state.committed.as_deref(), Some("1.2.0"));
        assert_eq!(state.highest_committed(), Some("1.3.0"));
        // The launcher falls back to the packaged agent.
        state.committed = None;
        assert_eq!(state.highest_committed(), Some("1.3.0"));
        // A state written before `highest` was kept: the committed slot.
        let old = AgentState {
            committed: Some("1.4.0".into()),
            ..AgentState::default()
        };
        assert_eq!(old.highest_committed(), Some("1.4.0"));
    }

    /// An older packaged agent (the launcher fell back to it, or its `.deb`
    /// was installed by hand) reads state.json and writes it back without
    /// the `highest` field it does not know: the high-water mark survives.
    #[test]
    fn an_older_agent_rewriting_the_state_keeps_the_high_water_mark()
    -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let mut state = AgentState::default();
        state.commit("1.4.0");
        state.save(tmp.path())?;
        // What an agent from before `highest` writes after its fallback: its
        // own fields only, nothing committed.
        std::fs::write(
            tmp.path().join(FILE),
            r#"{"committed":null,"trial":null,"failed":null,"succeeded":null,"committedStarts":0}"#,
        )?;
        let read = AgentState::load(tmp.path())?.unwrap_or_default();
        assert_eq!(read.highest_committed(), Some("1.4.0"));
        // It only rises.
        let mut newer = read;
        newer.commit("1.5.0");
        newer.save(tmp.path())?;
        let mut lower = AgentState::default();
        lower.commit("1.1.0");
        lower.save(tmp.path())?;
        assert_eq!(
            std::fs::read_to_string(tmp.path().join(HIGHEST_FILE))?,
            "1.5.0\n"
        );
        // A hostile file is ignored, never a path.
        std::fs::write(tmp.path().join(HIGHEST_FILE), "../../etc\n")?;
        let read = AgentState::load(tmp.path())?.unwrap_or_default();
        assert_eq!(read.highest_committed(), Some("1.1.0"));
        Ok(())
    }

    #[test]
    fn a_damaged_or_hostile_file_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        for bad in [
            "{not json",
            r#"{"committed": "../../usr/bin"}"#,
            r#"{"replaced": {"by": "1.0", "version": "../x", "fromSlot": true}}"#,
        ] {
            std::fs::write(tmp.path().join(FILE), bad)?;
            let err = AgentState::load(tmp.path()).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.contains("is not valid") && e.contains("packaged agent")),
                "{bad}: {err:?}"
            );
        }
        std::fs::write(tmp.path().join(FILE), vec![b' '; 70 << 10])?;
        assert!(AgentState::load(tmp.path()).is_err());
        // A field from a newer agent is not a reason to distrust the file.
        std::fs::write(
            tmp.path().join(FILE),
            r#"{"committed": "1.0", "fromTheFuture": true}"#,
        )?;
        let state = AgentState::load(tmp.path())?;
        assert_eq!(state.and_then(|s| s.committed).as_deref(), Some("1.0"));
        Ok(())
    }
}
