//! Folders opened by path one component at a time from `/`, following a
//! symbolic link only where nobody but root or the agent could have put it.
//!
//! Why: the web app's user owns the NEOPRO folder (`/home/pi/neopro`), and
//! that user is reachable from the club's hotspot. Opening a file there with
//! `O_NOFOLLOW` guards only its last component: swap a folder on the way for
//! a link (`logs` → `/etc`, `videos` → the agent's state) and the kernel
//! follows it, so the agent would read or write outside. Here each folder is
//! opened with `openat(O_NOFOLLOW|O_DIRECTORY)` from the one before it; a
//! link is followed only when the folder holding it belongs to root or the
//! agent and no one else can write it (a link such as `/var/run` → `/run`,
//! or a `/home` moved to another disk, keeps working). What is returned is
//! a descriptor, so the folder cannot be swapped after the check either: a
//! later rename of a folder on the way leaves the agent in the folder it
//! checked.
//!
//! An operator who wants a folder elsewhere (videos on a USB disk) names it
//! in site.conf (root's file) instead of linking it from the web app's folder.

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

/// Most links followed on one path (the kernel's own limit).
const MAX_LINKS: u32 = 40;

/// Why a folder was not opened.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error(
        "{path} is a symbolic link in {folder}, a folder that other users than the agent can change (owner uid {owner}, mode {mode:04o}); links are not followed there"
    )]
    Link {
        path: PathBuf,
        folder: PathBuf,
        owner: u32,
        mode: u32,
    },
    #[error("{path} is a {kind}, not a folder")]
    NotFolder { path: PathBuf, kind: &'static str },
    #[error("{0} does not exist")]
    NotFound(PathBuf),
    #[error("{0}: more than {MAX_LINKS} symbolic links on the way")]
    TooManyLinks(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<FolderError> for std::io::Error {
    fn from(e: FolderError) -> Self {
        let kind = match &e {
            FolderError::NotFound(_) => std::io::ErrorKind::NotFound,
            FolderError::Io { source, .. } => source.kind(),
            _ => std::io::ErrorKind::PermissionDenied,
        };
        std::io::Error::new(kind, e)
    }
}

/// The agent's effective uid.
pub fn agent_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Whether a folder with this owner and mode can be changed only by root or
/// the agent (so a link in it was put there by one of them).
pub fn only_agent_or_root_writes(owner: u32, mode: u32) -> bool {
    (owner == 0 || owner == agent_uid()) && mode & 0o022 == 0
}

/// The name a file type is shown by in messages.
pub fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "regular file",
        FileType::Directory => "folder",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Symlink => "symbolic link",
        _ => "special file",
    }
}

/// Opens the folder `path` (an `O_PATH` descriptor: usable with the `*at`
/// calls and as a cap-std `Dir`), see the module.
pub fn open(path: &Path) -> Result<OwnedFd, FolderError> {
    walk(path, None)
}

/// [`open`], creating missing folders on the way with `mode` (less the
/// umask); never through a link it would not follow.
pub fn create(path: &Path, mode: u32) -> Result<OwnedFd, FolderError> {
    walk(path, Some(mode))
}

/// [`open`] as a cap-std capability.
pub fn open_dir(path: &Path) -> Result<cap_std::fs::Dir, FolderError> {
    open(path).map(cap_std::fs::Dir::from)
}

const FOLDER: OFlags = OFlags::PATH
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

fn parts(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn start(absolute: bool) -> Result<(OwnedFd, PathBuf), FolderError> {
    let (from, shown) = if absolute { ("/", "/") } else { (".", "") };
    let fd = rustix::fs::openat(rustix::fs::CWD, from, FOLDER, Mode::empty()).map_err(|e| {
        FolderError::Io {
            path: PathBuf::from(from),
            source: e.into(),
        }
    })?;
    Ok((fd, PathBuf::from(shown)))
}

fn walk(path: &Path, create: Option<u32>) -> Result<OwnedFd, FolderError> {
    let (mut cur, mut shown) = start(path.is_absolute())?;
    let mut pending = parts(path);
    let mut links = 0;
    let io = |path: &Path, e: Errno| FolderError::Io {
        path: path.to_owned(),
        source: e.into(),
    };
    while let Some(name) = pending.pop_front() {
        let here = if name == ".." {
            let mut up = shown.clone();
            up.pop();
            up
        } else {
            shown.join(&name)
        };
        let opened = match rustix::fs::openat(&cur, &name, FOLDER, Mode::empty()) {
            Err(Errno::NOENT) if name != ".." && create.is_some() => {
                let mode = Mode::from_raw_mode(create.unwrap_or(0o700));
                match rustix::fs::mkdirat(&cur, &name, mode) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(io(&here, e)),
                }
                rustix::fs::openat(&cur, &name, FOLDER, Mode::empty())
            }
            other => other,
        };
        match opened {
            Ok(fd) => {
                cur = fd;
                shown = here;
            }
            Err(Errno::NOENT) => return Err(FolderError::NotFound(here)),
            // O_PATH|O_NOFOLLOW on a link gives ENOTDIR; ELOOP elsewhere.
            Err(e @ (Errno::NOTDIR | Errno::LOOP)) => {
                let st = rustix::fs::statat(&cur, &name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|_| io(&here, e))?;
                let kind = FileType::from_raw_mode(st.st_mode);
                if kind != FileType::Symlink {
                    return Err(FolderError::NotFolder {
                        path: here,
                        kind: kind_name(kind),
                    });
                }
                let folder = rustix::fs::fstat(&cur).map_err(|e| io(&shown, e))?;
                if !only_agent_or_root_writes(folder.st_uid, folder.st_mode) {
                    return Err(FolderError::Link {
                        path: here,
                        folder: shown,
                        owner: folder.st_uid,
                        mode: folder.st_mode & 0o7777,
                    });
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(FolderError::TooManyLinks(path.to_owned()));
                }
                let target =
                    rustix::fs::readlinkat(&cur, &name, Vec::new()).map_err(|e| io(&here, e))?;
                let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
                let mut then = parts(&target);
                then.extend(pending);
                pending = then;
                if target.is_absolute() {
                    (cur, shown) = start(true)?;
                }
            }
            Err(e) => return Err(io(&here, e)),
        }
    }
    Ok(cur)
}

/// For tests: a folder laid out like the NEOPRO folder, which the web app's
/// user (its group) can write, so links in it are not followed.
#[cfg(test)]
pub fn shared_test_folder() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o775))?;
    Ok(dir)
}

#[cfg(test)]
mod tests;
