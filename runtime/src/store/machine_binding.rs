//! The agent's state folder belongs to the machine it was written on.
//!
//! Why: a box is often made by cloning an SD card from another one (a
//! "golden image"). Upstream's `prepare-golden-image.sh` removes site.conf
//! but not this agent's state, so every clone would start with another
//! box's journal (results it would send as the new site), scheduled
//! updates, agent releases and `took-over.json`. The state records
//! `/etc/machine-id` (unique per installed system; Raspberry Pi OS makes a
//! new one on an image's first boot when it is empty) the first time the
//! agent starts; when the two differ the state was copied from another
//! machine: it is set aside whole in `cloned-state/` (one copy, the latest)
//! and the agent starts clean.

use crate::store::{atomic, tree};
use std::path::{Path, PathBuf};

/// The file under `STATE_PATH` holding the machine id the state belongs to.
pub const MACHINE_ID_FILE: &str = "machine-id";
/// Where the state of another machine is set aside, under `STATE_PATH`.
pub const SET_ASIDE: &str = "cloned-state";
/// This system's machine id.
pub const SYSTEM_MACHINE_ID: &str = "/etc/machine-id";

/// What the check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Binding {
    /// The state was written on this machine.
    Same,
    /// No record yet (a new box, or an agent from before this check): this
    /// machine's id is now recorded.
    Recorded,
    /// The state came from machine `from`; its `entries` were moved to
    /// `to`.
    SetAside {
        from: String,
        to: PathBuf,
        entries: usize,
    },
    /// This system has no machine id: nothing can be told, nothing changed.
    NoMachineId,
}

/// Why the check could not be made. The state is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum MachineBindingError {
    #[error("cannot check whether the state in {path} belongs to this machine: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A machine id as systemd writes it: 32 hex digits. Anything else
/// (missing, empty, `uninitialized`) is no id.
fn read_id(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(128)
        .read_to_end(&mut text)
        .ok()?;
    let id = String::from_utf8(text).ok()?.trim().to_owned();
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// Checks `state` against the machine id in `system_id` (normally
/// [`SYSTEM_MACHINE_ID`]) and sets another machine's state aside.
pub fn check(state: &Path, system_id: &Path) -> Result<Binding, MachineBindingError> {
    let io = |source| MachineBindingError::Io {
        path: state.to_owned(),
        source,
    };
    let Some(ours) = read_id(system_id) else {
        return Ok(Binding::NoMachineId);
    };
    let dir = atomic::open_state_dir(state).map_err(io)?;
    let recorded = read_id(&state.join(MACHINE_ID_FILE));
    let binding = match recorded {
        Some(id) if id == ours => return Ok(Binding::Same),
        None => Binding::Recorded,
        Some(from) => {
            let entries = set_aside(&dir).map_err(io)?;
            Binding::SetAside {
                from,
                to: state.join(SET_ASIDE),
                entries,
            }
        }
    };
    atomic::write_private(
        &dir,
        Path::new(MACHINE_ID_FILE),
        format!("{ours}\n").as_bytes(),
    )
    .map_err(io)?;
    Ok(binding)
}

/// Moves every entry of the state folder into a fresh `cloned-state/`
/// (an older one, from an earlier clone, is removed first: one copy only).
fn set_aside(dir: &cap_std::fs::Dir) -> std::io::Result<usize> {
    let aside = Path::new(SET_ASIDE);
    if dir.symlink_metadata(aside).is_ok() {
        tree::remove_tree(dir, aside)?;
    }
    dir.create_dir(aside)?;
    let mut moved = 0;
    for entry in dir.entries()? {
        let name = entry?.file_name();
        if name == SET_ASIDE {
            continue;
        }
        dir.rename(&name, dir, aside.join(&name))?;
        moved += 1;
    }
    atomic::sync_filesystem(dir)?;
    Ok(moved)
}

/// The check at the agent's start, logged. A failed check leaves the state
/// in place: the agent runs on it rather than not at all.
pub fn check_at_start(state: &Path) {
    match check(state, Path::new(SYSTEM_MACHINE_ID)) {
        Ok(Binding::SetAside { from, to, entries }) => tracing::warn!(
            "the state in {} was written on another machine (machine id {from}, this one is \
             {}): this SD card was cloned from another box. Its {entries} entries (command \
             journal, scheduled updates, agent releases, pushed components, took-over.json) are \
             set aside in {}; this box starts with a clean state. Run `neopro-runtime reset` in \
             a golden image before cloning it",
            state.display(),
            read_id(Path::new(SYSTEM_MACHINE_ID)).unwrap_or_default(),
            to.display()
        ),
        Ok(Binding::Recorded) => {
            tracing::debug!("state in {} recorded as this machine's", state.display())
        }
        Ok(Binding::Same | Binding::NoMachineId) => {}
        Err(e) => tracing::error!("{e}"),
    }
}

#[cfg(test)]
mod tests;
