//! Files in a folder someone else can write (the web app's folder, its
//! `logs/`): opened without following a link (`O_NOFOLLOW`) and without
//! blocking on a FIFO (`O_NONBLOCK`, cleared once the file is known to be
//! regular), and accepted only when the open file is a regular file.
//!
//! Why: the web app's user owns these folders. A link planted there would
//! make the agent write its log into its own state or send `site.conf` to
//! the server; a FIFO would hang the agent before it is ready; a link to
//! `/dev/zero` would run it out of memory. The type is checked on the open
//! descriptor (`fstat`), so nothing can be swapped in between. The folders
//! on the way are opened one by one through [`crate::store::safe_folder`]:
//! a folder swapped for a link (`logs` → `/etc`) is refused too.

use crate::store::safe_folder::{self, FolderError, kind_name};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// Why such a file was not used.
#[derive(Debug, thiserror::Error)]
pub enum UntrustedFileError {
    #[error("{0} does not exist")]
    NotFound(PathBuf),
    #[error(
        "{0} is a symbolic link; links are not followed there (someone else can write that folder)"
    )]
    Link(PathBuf),
    #[error("{path} is a {kind}, not a regular file; it is not opened")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path} belongs to uid {owner}, not to the agent (uid {agent}); it is not used")]
    NotOwned {
        path: PathBuf,
        owner: u32,
        agent: u32,
    },
    #[error("{path} has {links} hard links; only a file of its own is used")]
    HardLinked { path: PathBuf, links: u64 },
    #[error("{path} is {size} bytes, more than the {max} bytes read from it")]
    TooBig { path: PathBuf, size: u64, max: u64 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A folder on the way was refused (a link someone else could place, a
    /// file where a folder should be): nothing there is touched.
    #[error("{0}")]
    Folder(FolderError),
}

impl UntrustedFileError {
    /// Whether the path holds something that must be set aside (a link, a
    /// FIFO, a device, a file of someone else) rather than a plain failure.
    pub fn is_foreign(&self) -> bool {
        matches!(
            self,
            UntrustedFileError::Link(_)
                | UntrustedFileError::NotRegular { .. }
                | UntrustedFileError::NotOwned { .. }
                | UntrustedFileError::HardLinked { .. }
        )
    }
}

/// Who must own the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Anyone (the web app's own files).
    Anyone,
    /// The agent's uid, and no second hard link (the agent's own log).
    Agent,
}

pub use crate::store::safe_folder::agent_uid;

fn open_error(path: &Path, e: Errno) -> UntrustedFileError {
    match e {
        Errno::NOENT => UntrustedFileError::NotFound(path.to_owned()),
        // O_NOFOLLOW on a link.
        Errno::LOOP => UntrustedFileError::Link(path.to_owned()),
        // O_WRONLY|O_NONBLOCK on a FIFO without a reader, or a socket.
        Errno::NXIO => UntrustedFileError::NotRegular {
            path: path.to_owned(),
            kind: "FIFO or socket",
        },
        Errno::ISDIR => UntrustedFileError::NotRegular {
            path: path.to_owned(),
            kind: "folder",
        },
        other => UntrustedFileError::Io {
            path: path.to_owned(),
            source: other.into(),
        },
    }
}

/// Opens `path` with `flags` plus `O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC`, its
/// folder reached through [`safe_folder::open`], and checks it as
/// [`open_in`] does.
pub fn open(
    path: &Path,
    flags: OFlags,
    mode: u32,
    owner: Owner,
) -> Result<File, UntrustedFileError> {
    let (folder, name) = split(path)?;
    let dir = safe_folder::open(folder).map_err(|e| match e {
        FolderError::NotFound(_) => UntrustedFileError::NotFound(path.to_owned()),
        e => UntrustedFileError::Folder(e),
    })?;
    open_in(&dir, name, path, flags, mode, owner)
}

/// The folder holding `path` and its name in it.
pub fn split(path: &Path) -> Result<(&Path, &Path), UntrustedFileError> {
    let name = path
        .file_name()
        .ok_or_else(|| UntrustedFileError::NotRegular {
            path: path.to_owned(),
            kind: "folder",
        })?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((folder, Path::new(name)))
}

/// Opens `name` in the open folder `dir` (`shown` names it in errors) with
/// `flags` plus `O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC`, checks the open file
/// (regular; for [`Owner::Agent`] the agent's and not hard-linked), then
/// clears `O_NONBLOCK`.
pub fn open_in(
    dir: impl AsFd,
    name: &Path,
    shown: &Path,
    flags: OFlags,
    mode: u32,
    owner: Owner,
) -> Result<File, UntrustedFileError> {
    let path = shown;
    let fd = rustix::fs::openat(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map_err(|e| open_error(path, e))?;
    let io = |e: Errno| UntrustedFileError::Io {
        path: path.to_owned(),
        source: e.into(),
    };
    let st = rustix::fs::fstat(&fd).map_err(io)?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        return Err(UntrustedFileError::NotRegular {
            path: path.to_owned(),
            kind: kind_name(kind),
        });
    }
    if owner == Owner::Agent {
        let agent = agent_uid();
        if st.st_uid != agent {
            return Err(UntrustedFileError::NotOwned {
                path: path.to_owned(),
                owner: st.st_uid,
                agent,
            });
        }
        #[allow(clippy::useless_conversion)] // nlink_t is u32 on some targets
        let links = u64::from(st.st_nlink);
        if links > 1 {
            return Err(UntrustedFileError::HardLinked {
                path: path.to_owned(),
                links,
            });
        }
    }
    let fl = rustix::fs::fcntl_getfl(&fd).map_err(io)?;
    rustix::fs::fcntl_setfl(&fd, fl - OFlags::NONBLOCK).map_err(io)?;
    Ok(File::from(fd))
}

/// Opens `path` to read it (see [`open`]).
pub fn open_read(path: &Path, owner: Owner) -> Result<File, UntrustedFileError> {
    open(path, OFlags::RDONLY, 0, owner)
}

/// Reads all of `path`, refusing one larger than `max` bytes (checked on
/// its size and again while reading: a file that grows is cut off).
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, UntrustedFileError> {
    read_from(open_read(path, Owner::Anyone)?, path, max)
}

/// [`read_bounded`] of `name` in the open folder `dir` (`shown` names it in
/// errors).
pub fn read_bounded_in(
    dir: impl AsFd,
    name: &Path,
    shown: &Path,
    max: u64,
) -> Result<Vec<u8>, UntrustedFileError> {
    let file = open_in(dir, name, shown, OFlags::RDONLY, 0, Owner::Anyone)?;
    read_from(file, shown, max)
}

fn read_from(file: File, path: &Path, max: u64) -> Result<Vec<u8>, UntrustedFileError> {
    let io = |source| UntrustedFileError::Io {
        path: path.to_owned(),
        source,
    };
    let size = file.metadata().map_err(io)?.len();
    let too_big = |size| UntrustedFileError::TooBig {
        path: path.to_owned(),
        size,
        max,
    };
    if size > max {
        return Err(too_big(size));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
