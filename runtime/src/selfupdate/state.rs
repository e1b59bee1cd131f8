//! `STATE_PATH/agent/state.json`: which slot is committed and which one is
//! on trial. Written atomically (fsync'd) at every change; read as untrusted
//! input: anything unexpected is an error the launcher answers with the
//! packaged floor binary.

use crate::store::atomic;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The file's name in the agent folder.
pub const FILE: &str = "state.json";
/// Larger than any state this agent writes: a bigger file is not ours.
const MAX_BYTES: u64 = 64 << 10;

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
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
    pub started_at_ms: u64,
    /// How long the trial may take to authenticate, from `started_at_ms`.
    pub deadline_secs: u64,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// A trial that failed, kept until the agent that came back has reported
/// it under the update's command id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Failed {
    pub version: String,
    pub command_id: String,
    #[serde(default)]
    pub deployment_id: Option<String>,
    pub error: String,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentState {
    /// The slot version that runs when no trial does (`None`: the packaged
    /// binary).
    #[serde(default)]
    pub committed: Option<String>,
    #[serde(default)]
    pub trial: Option<Trial>,
    #[serde(default)]
    pub failed: Option<Failed>,
}

/// How many times a trial binary is started before the launcher gives up.
pub const MAX_ATTEMPTS: u32 = 2;

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
            .chain(state.failed.as_ref().map(|f| &f.version));
        for v in versions {
            if !is_plain_version(v) {
                return Err(StateError::Invalid {
                    path,
                    reason: format!("version '{v}' is not a plain version"),
                });
            }
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
        atomic::write_private(&dir, Path::new(FILE), &bytes).map_err(write_error)
    }
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
        }
    }

    #[test]
    fn the_state_reads_back_and_a_missing_file_is_none() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("agent");
        assert_eq!(AgentState::load(&dir)?, None);
        let state = AgentState {
            committed: Some("0.1.5".into()),
            trial: Some(trial()),
            failed: None,
        };
        state.save(&dir)?;
        assert_eq!(AgentState::load(&dir)?, Some(state));
        Ok(())
    }

    #[test]
    fn a_damaged_or_hostile_file_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        for bad in [
            "{not json",
            r#"{"committed": "../../usr/bin"}"#,
            r#"{"committed": "1.0", "extra": true}"#,
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
        Ok(())
    }
}
