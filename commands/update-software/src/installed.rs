//! The last software update this agent installed (`staging/installed.json`),
//! and `rollback_update`: the server sends it to every site of a failed
//! canary rollout (`{canaryDeploymentId, updateId}`) to put back the release
//! that update replaced, from the backup that update made.
//!
//! Idempotent: a second `rollback_update` answers "already rolled back".
//! Refused, changing nothing, when no update is on record, when the record
//! is for another `updateId`, when another release was installed since, or
//! while an update is in progress.

use super::journal::State;
use super::{RESTORE, SERVICES, VERSION_FILES, WORK, start_and_check};
use neopro_guest_sdk::serde_json::{Value, json};
use neopro_guest_sdk::{Error, Root, agent_update, files, services, system};
use serde::{Deserialize, Serialize};

/// Under the staging root, outside the update journal's folder.
const FILE: &str = "installed.json";
/// Inside `webapp/`: the club's configuration is never rolled back.
const CLUB_CONFIG: &str = "webapp/configuration.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Installed {
    pub command_id: String,
    pub update_id: Option<String>,
    /// The `deploymentId` the update came with (absent in older records).
    #[serde(default)]
    pub deployment_id: Option<String>,
    pub version: String,
    pub previous_version: String,
    /// Backup folder under BACKUP_PATH made by that update.
    pub backup: String,
    /// Top-level names saved in the backup.
    pub saved: Vec<String>,
    /// Top-level names the release replaced or added.
    pub replaced: Vec<String>,
    #[serde(default)]
    pub rolled_back: bool,
    /// An agent release: rolled back by the host (the agent it replaced
    /// comes back), not from a backup.
    #[serde(default)]
    pub agent: bool,
}

impl Installed {
    pub fn save(&self) -> Result<(), Error> {
        files::write_json(Root::Staging, FILE, self)
    }

    fn load() -> Result<Option<Installed>, Error> {
        if !files::exists(Root::Staging, FILE)? {
            return Ok(None);
        }
        files::read_json(Root::Staging, FILE).map(Some)
    }
}

impl Installed {
    /// Whether a `rollback_update` naming `update_id` / `version` means
    /// this install. Any of deployment id, update id or version matching
    /// does. The real server's `update_software` carries the deployment's
    /// id as `updateId` while the canary's rollback carries the software
    /// update's, which this box was never told: when the recorded
    /// `updateId` is the deployment's, an id cannot be checked, and a
    /// rollback without a matching version is taken as meaning this install.
    pub fn is_meant_by(&self, update_id: Option<&str>, version: Option<&str>) -> bool {
        let id_matches = update_id.is_some_and(|asked| {
            self.update_id.as_deref() == Some(asked) || self.deployment_id.as_deref() == Some(asked)
        });
        if let Some(version) = version {
            return version == self.version || id_matches;
        }
        if update_id.is_none() {
            return true;
        }
        let ids_unknown = self.update_id.is_none()
            || (self.deployment_id.is_some() && self.update_id == self.deployment_id);
        id_matches || ids_unknown
    }
}

/// `rollback_update {canaryDeploymentId, updateId}` (a `version`, when
/// given, may identify the install too).
pub fn rollback_update(update_id: Option<&str>, version: Option<&str>) -> Result<Value, Error> {
    if State::load()?.is_some() {
        return Err(Error::failed(
            "an update is in progress or was interrupted; rollback_update refused (the update's own rollback runs first)",
        ));
    }
    let Some(mut record) = Installed::load()? else {
        return Err(Error::not_found(
            "nothing to roll back: no software update installed by this agent is on record",
        ));
    };
    if !record.is_meant_by(update_id, version) {
        let asked = match (update_id, version) {
            (Some(id), Some(v)) => format!("update {id} (version {v})"),
            (Some(id), None) => format!("update {id}"),
            (None, Some(v)) => format!("version {v}"),
            (None, None) => "no update".to_owned(),
        };
        return Err(Error::invalid_input(format!(
            "nothing rolled back: the last update installed here is {} (update {}), not {asked}",
            record.version,
            record.update_id.as_deref().unwrap_or("without id")
        )));
    }
    if record.agent {
        return rollback_agent(&record);
    }
    if record.rolled_back {
        return Ok(json!({
            "success": true,
            "alreadyRolledBack": true,
            "version": record.previous_version,
            "rolledBackVersion": record.version,
        }));
    }
    let installed = system::version()?.version;
    if installed != record.version {
        return Err(Error::failed(format!(
            "nothing rolled back: version {installed} is installed, not {} which the last update installed",
            record.version
        )));
    }
    if !files::exists(Root::Backups, &record.backup)? {
        return Err(Error::not_found(format!(
            "nothing rolled back: the backup {} made by the update to {} is gone",
            record.backup, record.version
        )));
    }
    for service in SERVICES {
        if let Err(e) = services::stop(service) {
            neopro_guest_sdk::warn!("{}", e.message());
        }
    }
    let names: Vec<String> = record
        .replaced
        .iter()
        .cloned()
        .chain(VERSION_FILES.iter().map(|s| (*s).to_owned()))
        .collect();
    let mut problems = Vec::new();
    for name in &names {
        if let Err(e) = put_back(&record, name) {
            problems.push(format!("{name}: {}", e.message()));
        }
    }
    let _ = files::remove_tree_if_exists(Root::NeoproRoot, WORK);
    if problems.is_empty() {
        record.rolled_back = true;
        record.save()?;
    }
    let health = start_and_check(None);
    match (problems.is_empty(), health) {
        (true, Ok(())) => Ok(json!({
            "success": true,
            "version": record.previous_version,
            "rolledBackVersion": record.version,
            "backup": record.backup,
        })),
        (true, Err(e)) => Err(Error::failed(format!(
            "rolled back to {} from backup {}, but the services are not healthy: {}",
            record.previous_version,
            record.backup,
            e.message()
        ))),
        (false, health) => Err(Error::failed(format!(
            "the rollback to {} is incomplete: {}{}",
            record.previous_version,
            problems.join("; "),
            health
                .err()
                .map(|e| format!("; {}", e.message()))
                .unwrap_or_default()
        ))),
    }
}

/// The last update was an agent release: the host switches back to the
/// agent it replaced, and that agent sends this command's result once it
/// is up. Already undone (the update failed, or this ran before): said so.
fn rollback_agent(record: &Installed) -> Result<Value, Error> {
    match agent_update::rollback_agent_release(&record.version)? {
        Some(to) => Ok(json!({
            "success": true,
            "agentUpdate": true,
            "version": to,
            "rolledBackVersion": record.version,
        })),
        None => Ok(json!({
            "success": true,
            "agentUpdate": true,
            "alreadyRolledBack": true,
            "rolledBackVersion": record.version,
        })),
    }
}

/// Puts `name` back from the backup (staged first, so a failed copy leaves
/// what is installed alone); a name the release added is removed. The
/// club's configuration.json stays as it is now.
fn put_back(record: &Installed, name: &str) -> Result<(), Error> {
    if !record.saved.iter().any(|s| s == name) {
        return files::remove_tree_if_exists(Root::NeoproRoot, name);
    }
    let staged = format!("{RESTORE}/{name}");
    files::remove_tree_if_exists(Root::NeoproRoot, &staged)?;
    files::mkdir(Root::NeoproRoot, RESTORE)?;
    files::copy_tree(
        Root::Backups,
        &format!("{}/{name}", record.backup),
        Root::NeoproRoot,
        &staged,
    )?;
    if name == "webapp" && files::exists(Root::NeoproRoot, CLUB_CONFIG)? {
        let staged_config = format!("{RESTORE}/{CLUB_CONFIG}");
        files::remove_tree_if_exists(Root::NeoproRoot, &staged_config)?;
        files::copy_tree(
            Root::NeoproRoot,
            CLUB_CONFIG,
            Root::NeoproRoot,
            &staged_config,
        )?;
    }
    files::remove_tree_if_exists(Root::NeoproRoot, name)?;
    files::rename(Root::NeoproRoot, &staged, name)
}

#[cfg(test)]
mod tests {
    use super::Installed;

    fn record(update_id: Option<&str>, deployment_id: Option<&str>) -> Installed {
        Installed {
            command_id: "c-1".into(),
            update_id: update_id.map(str::to_owned),
            deployment_id: deployment_id.map(str::to_owned),
            version: "2.0.0".into(),
            previous_version: "1.0.0".into(),
            backup: "backup-1".into(),
            saved: Vec::new(),
            replaced: Vec::new(),
            rolled_back: false,
            agent: false,
        }
    }

    #[test]
    fn the_real_servers_ids_identify_the_install() {
        // Upstream: updateId = the deployment's id; the canary's rollback
        // names the software update, unknown here.
        let shadowed = record(Some("dep-1"), Some("dep-1"));
        assert!(shadowed.is_meant_by(Some("su-1"), None));
        assert!(shadowed.is_meant_by(Some("dep-1"), None));
        assert!(!shadowed.is_meant_by(Some("su-1"), Some("3.0.0")));
        // Distinct ids (a server that sends the software update's id).
        let distinct = record(Some("upd-1"), Some("dep-1"));
        assert!(distinct.is_meant_by(Some("upd-1"), None));
        assert!(distinct.is_meant_by(Some("dep-1"), None));
        assert!(!distinct.is_meant_by(Some("upd-other"), None));
        assert!(distinct.is_meant_by(Some("upd-other"), Some("2.0.0")));
        assert!(distinct.is_meant_by(None, None));
        assert!(!distinct.is_meant_by(None, Some("1.5.0")));
    }
}
