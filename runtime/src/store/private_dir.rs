//! The agent's own folders under `STATE_PATH` (journal, schedule, artifact
//! cache, pushed components, staging): mode 0700 and files 0600, whatever
//! the process umask.
//!
//! Why: the unit runs with the web app's group and `UMask=0002` so that the
//! files both write (videos, configuration.json) stay shared. Folders the
//! agent creates for itself would then be group-writable, and the web app's
//! user could plant a precompiled artifact (native code the agent maps and
//! runs) or swap an update archive between its signature check and its
//! extraction. So state folders are created 0700 explicitly, tightened when
//! an older agent left them wider, and a folder whose code the agent would
//! run is checked before anything in it is trusted.

use crate::store::safe_folder::{self, FolderError, agent_uid};
use rustix::fs::{Mode, OFlags};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Mode of the agent's own folders.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the agent's own files.
pub const FILE_MODE: u32 = 0o600;

/// A folder others could write, so what is in it cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    #[error(
        "{path} can be written by other users than the agent (mode {mode:04o}, owner uid {owner}, the agent runs as uid {agent}), so what is in it cannot be trusted. Fix: remove it (`sudo rm -rf {path}`); the agent recreates it for itself only (mode 0700)"
    )]
    Writable {
        path: PathBuf,
        mode: u32,
        owner: u32,
        agent: u32,
    },
    #[error("cannot prepare the agent's folder {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Creates `path` (and missing parents) with mode 0700. An existing folder
/// owned by the agent that is open to its group or others is tightened to
/// 0700 (older agents created them 0775 under `UMask=0002`).
pub fn create(path: &Path) -> std::io::Result<()> {
    open_created(path).map(drop).map_err(std::io::Error::from)
}

/// [`create`], returning the folder: reached without following a link
/// someone else could place ([`crate::store::safe_folder`]), so what the
/// caller writes lands in the folder that was checked.
pub fn open_created(path: &Path) -> Result<OwnedFd, FolderError> {
    let fd = safe_folder::create(path, DIR_MODE)?;
    let io = |e: rustix::io::Errno| FolderError::Io {
        path: path.to_owned(),
        source: e.into(),
    };
    let st = rustix::fs::fstat(&fd).map_err(io)?;
    if st.st_uid == agent_uid() && st.st_mode & 0o077 != 0 {
        // The walk's descriptor is O_PATH, on which fchmod fails.
        let readable = rustix::fs::openat(
            &fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io)?;
        rustix::fs::fchmod(&readable, Mode::from_raw_mode(DIR_MODE)).map_err(io)?;
    }
    Ok(fd)
}

/// Whether `meta` is something only the agent (or root) can change.
fn only_agent_writes(meta: &std::fs::Metadata) -> bool {
    crate::store::safe_folder::only_agent_or_root_writes(meta.uid(), meta.mode())
}

/// Checks that nobody but the agent (or root) can write `path` or the folder
/// holding it (whoever can write the parent can swap the folder itself).
pub fn check_private(path: &Path) -> Result<(), PrivateDirError> {
    let mut checked = vec![path.to_owned()];
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        checked.push(parent.to_owned());
    }
    for at in checked {
        let meta = std::fs::symlink_metadata(&at).map_err(|source| PrivateDirError::Io {
            path: at.clone(),
            source,
        })?;
        if !only_agent_writes(&meta) || meta.file_type().is_symlink() {
            return Err(PrivateDirError::Writable {
                path: at,
                mode: meta.mode() & 0o7777,
                owner: meta.uid(),
                agent: agent_uid(),
            });
        }
    }
    Ok(())
}

/// Creates `path` 0700 when missing, then checks it as [`check_private`].
pub fn ensure_private(path: &Path) -> Result<(), PrivateDirError> {
    if std::fs::symlink_metadata(path).is_err() {
        create(path).map_err(|source| PrivateDirError::Io {
            path: path.to_owned(),
            source,
        })?;
    }
    check_private(path)
}

/// Whether an open file is one only the agent can write: a regular file
/// owned by the agent (or root), not writable by group or others.
pub fn file_is_private(meta: &std::fs::Metadata) -> bool {
    meta.is_file() && only_agent_writes(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).map_or(0, |m| m.mode() & 0o7777)
    }

    #[test]
    fn folders_are_created_0700_whatever_the_umask() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let deep = dir.path().join("state/journal");
        // Under the test's umask (0022) a plain create_dir_all gives 0755;
        // under the unit's (0002), 0775.
        create(&deep)?;
        assert_eq!(mode(&deep), 0o700);
        assert_eq!(mode(&dir.path().join("state")), 0o700);
        Ok(())
    }

    #[test]
    fn a_folder_left_open_by_an_older_agent_is_tightened() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let old = dir.path().join("journal");
        std::fs::create_dir(&old)?;
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o775))?;
        create(&old)?;
        assert_eq!(mode(&old), 0o700);
        Ok(())
    }

    #[test]
    fn a_group_writable_folder_is_not_trusted_and_the_fix_is_named()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache)?;
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o770))?;
        let Err(e) = check_private(&cache) else {
            panic!("a group-writable cache must be refused");
        };
        let text = e.to_string();
        assert!(text.contains("mode 0770"), "{text}");
        assert!(
            text.contains(&format!(
                "Fix: remove it (`sudo rm -rf {}`)",
                cache.display()
            )),
            "{text}"
        );
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700))?;
        check_private(&cache)?;
        // A writable parent lets anyone swap the folder itself.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))?;
        assert!(check_private(&cache).is_err());
        Ok(())
    }
}
