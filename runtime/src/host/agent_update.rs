//! The `agent-update` interface: the update_software component hands the
//! agent a downloaded release (`stage-agent-release`); when it is an agent
//! release the host checks it ([`crate::selfupdate::release`]), stages it in
//! a slot ([`crate::selfupdate::slot`]) and writes the trial, then registers
//! the restart into it as the command's follow-up
//! ([`crate::follow_up::Action::IntoRelease`]): it runs when the command
//! succeeds, and the new agent sends the command's result.
//! `rollback-agent-release` schedules the way back, with the same follow-up. Components built against 0.1 reach the same code through
//! `archive` ([`super::since_v0_1`]).

use super::bindings::neopro::agent::agent_update::Host;
use super::roots::io_error;
use super::{HostState, WitError, WitRoot};
use crate::host::grants::Grant;
use crate::manifest::{Access, RootName};
use crate::selfupdate::release::{self, Policy, ReleaseError};
use crate::selfupdate::rollback::RollbackError;
use crate::selfupdate::slot::{self, SlotError};
use crate::selfupdate::state::{AgentState, Trial};
use crate::signing::manifest::ManifestError;
use crate::signing::releases::SignatureError;
use crate::store::extract::{ArchiveError, Limits};
use std::io::{Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

/// The self-update capability's state.
#[derive(Debug)]
pub struct AgentUpdateHost {
    /// `STATE_PATH/agent`.
    pub agent_dir: PathBuf,
    /// AGENT_UPDATE_DEADLINE_SECS.
    pub deadline: Duration,
    /// UPDATE_ALLOW_DOWNGRADE.
    pub allow_downgrade: bool,
}

impl AgentUpdateHost {
    pub fn from_config(config: &crate::config::SiteConfig) -> Self {
        AgentUpdateHost {
            agent_dir: crate::selfupdate::agent_dir(&config.state_path),
            deadline: config.agent_update_deadline,
            allow_downgrade: config.update_allow_downgrade,
        }
    }
}

impl HostState {
    /// Registers the restart into the new release as this command's
    /// follow-up: when the command succeeds the agent restarts into it
    /// at once, and the new agent sends the result.
    fn restart_into_release_after_command(&self) -> Result<(), WitError> {
        let unit = self.call.services.services.agent_unit.clone();
        self.call
            .services
            .follow_ups
            .add(
                &self.call.command_id,
                crate::follow_up::Action::IntoRelease(unit),
                Duration::ZERO,
            )
            .map_err(|e| WitError::Io(e.to_string()))
    }
}

impl From<SlotError> for WitError {
    fn from(e: SlotError) -> Self {
        match &e {
            SlotError::Release(r) => release_error(r, e.to_string()),
            // What the signed manifest refuses is a trust matter, as a bad
            // signature is.
            SlotError::Archive {
                source: ArchiveError::Manifest(m),
                ..
            } if !matches!(m, ManifestError::Invalid(_) | ManifestError::TooLarge) => {
                WitError::NotPermitted(e.to_string())
            }
            SlotError::Archive { .. }
            | SlotError::NoBinary { .. }
            | SlotError::BadVersion { .. } => WitError::InvalidInput(e.to_string()),
            SlotError::Io { .. } => WitError::Io(e.to_string()),
        }
    }
}

fn release_error(e: &ReleaseError, message: String) -> WitError {
    match e {
        ReleaseError::Signature {
            source: SignatureError::Malformed,
            ..
        }
        | ReleaseError::Manifest { .. } => WitError::InvalidInput(message),
        _ => WitError::NotPermitted(message),
    }
}

impl Host for HostState {
    fn rollback_agent_release(&mut self, version: String) -> Result<Option<String>, WitError> {
        self.call.check(Grant::AgentUpdate)?;
        let host = &self.call.services.agent_update;
        let to =
            crate::selfupdate::rollback::schedule(&host.agent_dir, &self.call.command_id, &version)
                .map_err(|e| match e {
                    RollbackError::NoRecord { .. } => WitError::NotFound(e.to_string()),
                    RollbackError::State(_) => WitError::Io(e.to_string()),
                })?;
        if to.is_some() {
            self.restart_into_release_after_command()?;
        }
        Ok(to)
    }

    fn stage_agent_release(
        &mut self,
        root: WitRoot,
        path: String,
        version: String,
        signature: Option<String>,
        deployment_id: Option<String>,
    ) -> Result<Option<String>, WitError> {
        let root = RootName::from(root);
        self.call.check(Grant::AgentUpdate)?;
        self.call.check(Grant::Root(root, Access::ReadOnly))?;
        let mut file = self.open_agent_only(root, &path)?;
        let rewind = |file: &mut std::fs::File| {
            file.seek(SeekFrom::Start(0))
                .map(|_| ())
                .map_err(|e| io_error(root, &path, &e))
        };
        if !release::is_agent_release(std::io::BufReader::new(&file)) {
            return Ok(None);
        }
        rewind(&mut file)?;
        let services = &self.call.services;
        let host = &services.agent_update;
        let own = crate::selfupdate::own_version();
        let policy = Policy {
            keys: services.archive.update_keys.clone(),
            own_version: own.clone(),
            floor_version: crate::selfupdate::floor_version(),
            own_arch: crate::selfupdate::own_arch().to_owned(),
            allow_downgrade: host.allow_downgrade,
        };
        let hashed = file.try_clone().map_err(|e| io_error(root, &path, &e))?;
        let sha = super::archive::sha256_of(hashed, root, &path)?;
        release::check_signed(&policy, &version, &sha, signature.as_deref(), &mut file)
            .map_err(|e| release_error(&e, e.to_string()))?;
        rewind(&mut file)?;
        let previous = match AgentState::load(&host.agent_dir) {
            Ok(state) => state.unwrap_or_default(),
            Err(e) => {
                tracing::warn!("{e}; starting a new one");
                AgentState::default()
            }
        };
        if !host.allow_downgrade
            && let Some(highest) = previous.highest_committed()
            && crate::version_order::is_older(&version, highest)
        {
            let e = ReleaseError::BelowHighWater {
                version: version.clone(),
                highest: highest.to_owned(),
            };
            return Err(release_error(&e, e.to_string()));
        }
        if let Some(trial) = &previous.trial {
            return Err(WitError::Failed(format!(
                "agent release {version} refused: the agent update to {} (command {}) has not finished yet",
                trial.version, trial.command_id
            )));
        }
        let limits = Limits {
            max_bytes: services.archive.max_extract_bytes,
            deadline: Some(self.call.deadline),
            ..Limits::default()
        };
        let reader = std::io::BufReader::with_capacity(256 << 10, file);
        let slot_path = slot::stage(&host.agent_dir, &version, reader, &policy, limits)?;
        let state = AgentState {
            trial: Some(Trial {
                version: version.clone(),
                previous_version: own,
                command_id: self.call.command_id.clone(),
                deployment_id,
                attempts: 0,
                started_at_ms: crate::platform::clock::unix_millis(std::time::SystemTime::now()),
                deadline_secs: host.deadline.as_secs(),
                last_error: None,
                first_start: None,
            }),
            failed: None,
            ..previous
        };
        if let Err(e) = state.save(&host.agent_dir) {
            let _ = std::fs::remove_dir_all(&slot_path);
            return Err(WitError::Io(e.to_string()));
        }
        self.restart_into_release_after_command()?;
        tracing::warn!(
            "agent release {version} staged in {}; the agent switches to it when command {} ends",
            slot_path.display(),
            self.call.command_id
        );
        Ok(Some(version))
    }
}
