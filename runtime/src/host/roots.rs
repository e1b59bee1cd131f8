//! The sandboxed path resolver: every path a component (or the network)
//! names is relative to a named root and opened through cap-std, so `..`,
//! absolute paths and symlinks cannot lead outside the root. The root
//! folder itself is reached through [`crate::store::safe_folder`]: a root
//! the web app's user swapped for a link (`videos` → `/etc`) is refused.

use crate::config::SiteConfig;
use crate::manifest::RootName;
use crate::store::safe_folder::{self, FolderError};
use cap_std::fs::Dir;
use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Why a path was refused or could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RootError {
    #[error("path '{0}' is absolute; paths are relative to their root")]
    Absolute(String),
    #[error("path '{0}' leaves its root ('..' is not allowed)")]
    ParentDir(String),
    #[error("path '{0}' contains a NUL byte")]
    Nul(String),
    #[error("an empty path names the root itself, which cannot be used here")]
    Empty,
    #[error("the {root} folder {path} does not exist")]
    MissingRoot { root: RootName, path: String },
    #[error("the {root} folder is refused: {detail}")]
    Refused { root: RootName, detail: String },
    #[error("cannot open the {root} folder {path}: {detail}")]
    Open {
        root: RootName,
        path: String,
        detail: String,
    },
}

/// Checks a guest path and returns it as a clean relative path (`.` for
/// the root itself). This is a first, explicit line of defence; cap-std is
/// the second (it also catches symlinks).
pub fn relative(path: &str) -> Result<PathBuf, RootError> {
    if path.contains('\0') {
        return Err(RootError::Nul(path.to_owned()));
    }
    let p = Path::new(path);
    let mut clean = PathBuf::new();
    for component in p.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(RootError::ParentDir(path.to_owned())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(RootError::Absolute(path.to_owned()));
            }
        }
    }
    if clean.as_os_str().is_empty() {
        clean.push(".");
    }
    Ok(clean)
}

/// Like [`relative`] but refuses the root itself (file operations).
pub fn relative_file(path: &str) -> Result<PathBuf, RootError> {
    let clean = relative(path)?;
    if clean == Path::new(".") {
        return Err(RootError::Empty);
    }
    Ok(clean)
}

/// Where each named root lives on this box.
#[derive(Debug, Clone)]
pub struct Roots {
    paths: BTreeMap<RootName, PathBuf>,
}

impl Roots {
    /// Maps the roots to site.conf's folders.
    pub fn from_config(config: &SiteConfig) -> Self {
        let parent = |p: &Path| {
            p.parent()
                .map(Path::to_owned)
                .unwrap_or_else(|| PathBuf::from("/"))
        };
        let paths = BTreeMap::from([
            (RootName::Videos, config.videos_path.clone()),
            (RootName::Config, parent(&config.config_path)),
            (RootName::Backups, config.backup_path.clone()),
            (RootName::NeoproRoot, config.neopro_root.clone()),
            (RootName::Staging, config.staging_dir()),
            (RootName::Logs, parent(&config.log_path)),
            (RootName::Hostapd, parent(&config.hostapd_conf)),
        ]);
        Roots { paths }
    }

    /// Host path of a root.
    pub fn path(&self, root: RootName) -> &Path {
        self.paths
            .get(&root)
            .map(PathBuf::as_path)
            .unwrap_or(Path::new("/nonexistent"))
    }

    /// Opens a root as a capability. With `create`, a missing root folder is
    /// created first (a component granted `rw` may be the first to write).
    pub fn open(&self, root: RootName, create: bool) -> Result<Dir, RootError> {
        let path = self.path(root);
        // The staging root holds what the agent trusts at restart (the
        // update journal, the package it verified): its own, 0700.
        let opened = match (create, root.is_private()) {
            (true, true) => crate::store::private_dir::open_created(path),
            (true, false) => safe_folder::create(path, 0o777),
            (false, _) => safe_folder::open(path),
        };
        let shown = path.display().to_string();
        match opened {
            Ok(fd) => Ok(Dir::from(fd)),
            Err(FolderError::NotFound(_)) => Err(RootError::MissingRoot { root, path: shown }),
            Err(e @ (FolderError::Link { .. } | FolderError::NotFolder { .. })) => {
                Err(RootError::Refused {
                    root,
                    detail: e.to_string(),
                })
            }
            Err(e) => Err(RootError::Open {
                root,
                path: shown,
                detail: e.to_string(),
            }),
        }
    }
}

impl From<RootError> for super::WitError {
    fn from(e: RootError) -> Self {
        match e {
            RootError::Absolute(_) | RootError::ParentDir(_) | RootError::Refused { .. } => {
                super::WitError::NotPermitted(e.to_string())
            }
            RootError::Nul(_) | RootError::Empty => super::WitError::InvalidInput(e.to_string()),
            RootError::MissingRoot { .. } => super::WitError::NotFound(e.to_string()),
            RootError::Open { .. } => super::WitError::Io(e.to_string()),
        }
    }
}

/// Maps an I/O error on `root/path` to the guest's error kinds. cap-std
/// reports an escape (e.g. a symlink to /etc) as PermissionDenied.
pub fn io_error(root: RootName, path: &str, e: &io::Error) -> super::WitError {
    let place = format!("{root}/{path}");
    match e.kind() {
        io::ErrorKind::NotFound => super::WitError::NotFound(format!("{place} does not exist")),
        io::ErrorKind::PermissionDenied => super::WitError::NotPermitted(format!(
            "{place}: access refused ({e}); paths may not leave their root"
        )),
        _ => super::WitError::Io(format!("{place}: {e}")),
    }
}

/// Opens a file to read it, refusing anything but a regular file. Opened
/// with `O_NONBLOCK`, so a FIFO planted in a root cannot hold the calling
/// command (and the lock it may hold) until a writer shows up; the type is
/// then checked on the open file, so nothing can swap it in between.
pub fn open_regular(
    dir: &Dir,
    root: RootName,
    path: &str,
) -> Result<cap_std::fs::File, super::WitError> {
    use cap_std::fs::OpenOptionsExt;
    let rel = relative_file(path)?;
    let file = dir
        .open_with(
            &rel,
            cap_std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32),
        )
        .map_err(|e| io_error(root, path, &e))?;
    let meta = file.metadata().map_err(|e| io_error(root, path, &e))?;
    if meta.is_dir() {
        return Err(super::WitError::InvalidInput(format!(
            "{root}/{path} is a directory, not a file"
        )));
    }
    if !meta.is_file() {
        return Err(super::WitError::InvalidInput(format!(
            "{root}/{path} is not a regular file (a device, FIFO or socket); only files can be read"
        )));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_cleaned_and_escapes_refused() {
        assert_eq!(relative("a/./b.mp4"), Ok(PathBuf::from("a/b.mp4")));
        assert_eq!(relative(""), Ok(PathBuf::from(".")));
        assert_eq!(
            relative("../etc/passwd"),
            Err(RootError::ParentDir("../etc/passwd".to_owned()))
        );
        assert_eq!(
            relative("a/../../b"),
            Err(RootError::ParentDir("a/../../b".to_owned()))
        );
        assert_eq!(
            relative("/etc/passwd"),
            Err(RootError::Absolute("/etc/passwd".to_owned()))
        );
        assert_eq!(relative_file("."), Err(RootError::Empty));
        assert_eq!(relative("a\0b"), Err(RootError::Nul("a\0b".to_owned())));
    }

    #[test]
    fn a_root_swapped_for_a_link_is_refused_and_nothing_is_made_behind_it()
    -> Result<(), Box<dyn std::error::Error>> {
        let neopro = safe_folder::shared_test_folder()?;
        let outside = tempfile::tempdir()?;
        let videos = neopro.path().join("videos");
        std::os::unix::fs::symlink(outside.path(), &videos)?;
        let roots = Roots {
            paths: BTreeMap::from([(RootName::Videos, videos.join("Match"))]),
        };
        for create in [false, true] {
            let err = roots
                .open(RootName::Videos, create)
                .err()
                .ok_or("opened through the link")?;
            let super::super::WitError::NotPermitted(message) = super::super::WitError::from(err)
            else {
                return Err("not refused as not permitted".into());
            };
            assert_eq!(
                message,
                format!(
                    "the videos folder is refused: {} is a symbolic link in {}, a folder that other users than the agent can change (owner uid {}, mode 0775); links are not followed there",
                    videos.display(),
                    neopro.path().display(),
                    crate::store::untrusted_file::agent_uid()
                )
            );
        }
        assert_eq!(std::fs::read_dir(outside.path())?.count(), 0);
        // Once the link is replaced by a real folder, the root opens.
        std::fs::remove_file(&videos)?;
        roots.open(RootName::Videos, true)?;
        assert!(videos.join("Match").is_dir());
        Ok(())
    }
}
