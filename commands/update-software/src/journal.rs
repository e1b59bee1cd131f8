//! The update journal (`staging/update/state.json`), rewritten atomically at
//! every step so that an update cut short by a crash or a power cut can be
//! finished or rolled back at the next start.

use neopro_guest_sdk::{Error, Root, files};
use serde::{Deserialize, Serialize};

pub const DIR: &str = "update";
pub const FILE: &str = "update/state.json";
pub const PACKAGE: &str = "update/package.tar.gz";

/// How far an update got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Downloading and extracting; nothing installed changed.
    Preparing,
    /// The backup is complete; nothing installed changed yet.
    BackedUp,
    /// Services stopped; the swap may have started.
    Swapping,
    /// The new release is in place; the health gate decides.
    Swapped,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub command_id: String,
    pub version: String,
    pub previous_version: String,
    pub deployment_id: Option<String>,
    pub step: Step,
    /// Backup folder name under BACKUP_PATH, once complete.
    pub backup: Option<String>,
    /// Top-level names of NEOPRO_ROOT saved in the backup.
    pub saved: Vec<String>,
    /// Top-level names the release replaces or adds.
    pub replaced: Vec<String>,
}

impl State {
    pub fn save(&self) -> Result<(), Error> {
        files::mkdir(Root::Staging, DIR)?;
        files::write_json(Root::Staging, FILE, self)
    }

    pub fn load() -> Result<Option<State>, Error> {
        if !files::exists(Root::Staging, FILE)? {
            return Ok(None);
        }
        files::read_json(Root::Staging, FILE).map(Some)
    }

    /// Forgets the update (last: the package, then the journal).
    pub fn clear() {
        let _ = files::remove_tree_if_exists(Root::Staging, PACKAGE);
        let _ = files::remove_tree_if_exists(Root::Staging, DIR);
    }
}
