//! `files`: reads and writes inside the granted roots. Writes are atomic
//! (temp file + fsync + rename + directory fsync), and so are renames (the
//! file or folder flushed, renamed, its folders flushed).

use super::bindings::neopro::agent::files::{DirEntry, EntryKind, Host, Metadata};
use super::roots::{io_error, open_regular, relative, relative_file};
use super::{HostState, WitError, WitRoot};
use crate::host::grants::Grant;
use crate::manifest::{Access, RootName};
use cap_std::fs::Dir;
use std::io::Read;
use std::time::UNIX_EPOCH;

/// What one directory entry costs in the guest's memory besides its name
/// (string pointer and length, kind, size).
const DIR_ENTRY_BYTES: u64 = 24;

fn kind_of(ft: cap_std::fs::FileType) -> EntryKind {
    if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_dir() {
        EntryKind::Directory
    } else if ft.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    }
}

impl HostState {
    fn open_root(&self, root: RootName, access: Access) -> Result<Dir, WitError> {
        self.call.check(Grant::Root(root, access))?;
        Ok(self
            .call
            .services
            .roots
            .open(root, access == Access::ReadWrite)?)
    }
}

impl Host for HostState {
    fn read(&mut self, root: WitRoot, path: String, max_bytes: u64) -> Result<Vec<u8>, WitError> {
        let root = RootName::from(root);
        let dir = self.open_root(root, Access::ReadOnly)?;
        let file = open_regular(&dir, root, &path)?;
        let meta = file.metadata().map_err(|e| io_error(root, &path, &e))?;
        if meta.len() > max_bytes {
            return Err(WitError::TooLarge(format!(
                "{root}/{path} is {} bytes, more than the {max_bytes} allowed",
                meta.len()
            )));
        }
        // The reply is copied into the guest's memory: never allocate more
        // than it could take, whatever `max-bytes` it asked for.
        let what = format!("{root}/{path}");
        self.memory.check_reply(&what, meta.len())?;
        let cap = max_bytes.min(self.memory.remaining());
        // A 32-bit box cannot hold more than its address space; refuse
        // instead of letting `as usize` wrap the length.
        let capacity =
            crate::platform::byte_len::in_memory(meta.len().min(cap)).ok_or_else(|| {
                WitError::TooLarge(format!(
                    "{root}/{path} is {} bytes, more than this machine can hold in memory",
                    meta.len()
                ))
            })?;
        let mut bytes = Vec::with_capacity(capacity);
        file.take(cap.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(root, &path, &e))?;
        if bytes.len() as u64 > cap {
            return Err(WitError::TooLarge(format!(
                "{root}/{path} grew past the {cap} bytes allowed while being read"
            )));
        }
        Ok(bytes)
    }

    fn write_atomic(
        &mut self,
        root: WitRoot,
        path: String,
        contents: Vec<u8>,
    ) -> Result<(), WitError> {
        let root = RootName::from(root);
        let dir = self.open_root(root, Access::ReadWrite)?;
        let rel = relative_file(&path)?;
        if let Ok(meta) = dir.symlink_metadata(&rel)
            && meta.is_dir()
        {
            return Err(WitError::InvalidInput(format!(
                "{root}/{path} is a directory, not a file"
            )));
        }
        let written = match root {
            _ if root.is_private() => crate::store::atomic::write_private(&dir, &rel, &contents),
            // hostapd.conf holds the Wi-Fi passphrase: a new file there (its
            // backup) is 0600 like it.
            RootName::Hostapd => crate::store::atomic::write_secret(&dir, &rel, &contents),
            _ => crate::store::atomic::write(&dir, &rel, &contents),
        };
        written.map_err(|e| io_error(root, &path, &e))
    }

    fn remove_file(&mut self, root: WitRoot, path: String) -> Result<(), WitError> {
        let root = RootName::from(root);
        let dir = self.open_root(root, Access::ReadWrite)?;
        let rel = relative_file(&path)?;
        let meta = dir
            .symlink_metadata(&rel)
            .map_err(|e| io_error(root, &path, &e))?;
        if meta.is_dir() {
            return Err(WitError::InvalidInput(format!(
                "{root}/{path} is a directory; only files can be removed"
            )));
        }
        dir.remove_file(&rel).map_err(|e| io_error(root, &path, &e))
    }

    fn rename(&mut self, root: WitRoot, from: String, to: String) -> Result<(), WitError> {
        let root = RootName::from(root);
        let dir = self.open_root(root, Access::ReadWrite)?;
        let from_rel = relative_file(&from)?;
        let to_rel = relative_file(&to)?;
        // Durable like every write here: the updater's swap is renames.
        crate::store::atomic::rename(&dir, &from_rel, &to_rel)
            .map_err(|e| io_error(root, &format!("{from} -> {to}"), &e))
    }

    fn list_dir(&mut self, root: WitRoot, path: String) -> Result<Vec<DirEntry>, WitError> {
        let root = RootName::from(root);
        let dir = self.open_root(root, Access::ReadOnly)?;
        let rel = relative(&path)?;
        let entries = dir.read_dir(&rel).map_err(|e| io_error(root, &path, &e))?;
        let mut list = Vec::new();
        // What the listing costs the guest: names plus a record each.
        let mut reply_bytes: u64 = 0;
        let budget = self.memory.remaining();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(root, &path, &e))?;
            reply_bytes = reply_bytes
                .saturating_add(entry.file_name().len() as u64)
                .saturating_add(DIR_ENTRY_BYTES);
            if reply_bytes > budget {
                return Err(self
                    .memory
                    .too_large(&format!("the listing of {root}/{path}"), reply_bytes));
            }
            let meta = entry.metadata().map_err(|e| io_error(root, &path, &e))?;
            let kind = kind_of(meta.file_type());
            list.push(DirEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                size: if kind == EntryKind::File {
                    meta.len()
                } else {
                    0
                },
                kind,
            });
        }
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    fn stat(&mut self, root: WitRoot, path: String) -> Result<Metadata, WitError> {
        let root = RootName::from(root);
        let dir = self.open_root(root, Access::ReadOnly)?;
        let rel = relative(&path)?;
        let meta = dir
            .symlink_metadata(&rel)
            .map_err(|e| io_error(root, &path, &e))?;
        let kind = kind_of(meta.file_type());
        let modified_secs = meta
            .modified()
            .ok()
            .and_then(|t| t.into_std().duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(Metadata {
            size: if kind == EntryKind::File {
                meta.len()
            } else {
                0
            },
            kind,
            modified_secs,
        })
    }

    fn sha256(&mut self, root: WitRoot, path: String) -> Result<String, WitError> {
        use sha2::{Digest, Sha256};
        let root = RootName::from(root);
        let dir = self.open_root(root, Access::ReadOnly)?;
        let mut file = open_regular(&dir, root, &path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 << 10];
        let deadline = Some(self.call.deadline);
        loop {
            crate::store::deadline::check(deadline)
                .map_err(|_| self.call.timed_out(&format!("hashing {root}/{path}")))?;
            let n = file.read(&mut buf).map_err(|e| io_error(root, &path, &e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hex::encode(hasher.finalize()))
    }

    fn mkdir(&mut self, root: WitRoot, path: String) -> Result<(), WitError> {
        let root = RootName::from(root);
        let dir = self.open_root(root, Access::ReadWrite)?;
        let rel = relative_file(&path)?;
        match dir.create_dir_all(&rel) {
            Ok(()) => Ok(()),
            // Something is there: fine if it is a directory inside the root
            // (a symlink is followed, but never out of the root).
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match dir.metadata(&rel) {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err(WitError::InvalidInput(format!(
                    "{root}/{path} exists and is not a directory"
                ))),
                Err(e) => Err(io_error(root, &path, &e)),
            },
            Err(e) => Err(io_error(root, &path, &e)),
        }
    }

    fn copy_tree(
        &mut self,
        from_root: WitRoot,
        from: String,
        to_root: WitRoot,
        to: String,
    ) -> Result<u64, WitError> {
        let from_root = RootName::from(from_root);
        let to_root = RootName::from(to_root);
        let src = self.open_root(from_root, Access::ReadOnly)?;
        let dst = self.open_root(to_root, Access::ReadWrite)?;
        let from_rel = relative_file(&from)?;
        let to_rel = relative_file(&to)?;
        if dst.symlink_metadata(&to_rel).is_ok() {
            return Err(WitError::InvalidInput(format!(
                "{to_root}/{to} already exists; copy-tree needs a new name"
            )));
        }
        let deadline = Some(self.call.deadline);
        let doing = format!("copying {from_root}/{from} to {to_root}/{to}");
        let size = crate::store::tree::tree_size(&src, &from_rel, deadline).map_err(|e| {
            if crate::store::deadline::is_past_deadline(&e) {
                self.call.timed_out(&doing)
            } else {
                io_error(from_root, &from, &e)
            }
        })?;
        if let Ok(s) = rustix::fs::fstatvfs(&dst) {
            let free = s.f_bavail.saturating_mul(s.f_frsize);
            let reserve = s.f_blocks.saturating_mul(s.f_frsize) / 20;
            if size.saturating_add(reserve) > free {
                return Err(WitError::TooLarge(format!(
                    "not enough disk space to copy {from_root}/{from}: {size} bytes plus a reserve of 5 % of the disk, only {free} free"
                )));
            }
        }
        match crate::store::tree::copy_tree(&src, &from_rel, &dst, &to_rel, deadline) {
            Ok(bytes) => {
                if let Err(e) = crate::store::atomic::sync_filesystem(&dst) {
                    tracing::warn!("cannot flush the copy of {from_root}/{from} to disk: {e}");
                }
                Ok(bytes)
            }
            Err(e) => {
                // Never leave half a copy behind.
                let _ = crate::store::tree::remove_tree(&dst, &to_rel);
                if crate::store::deadline::is_past_deadline(&e) {
                    return Err(self.call.timed_out(&doing));
                }
                Err(io_error(to_root, &format!("{from} -> {to}"), &e))
            }
        }
    }

    fn remove_tree(&mut self, root: WitRoot, path: String) -> Result<(), WitError> {
        let root = RootName::from(root);
        let dir = self.open_root(root, Access::ReadWrite)?;
        let rel = relative_file(&path)?;
        crate::store::tree::remove_tree(&dir, &rel).map_err(|e| io_error(root, &path, &e))
    }

    fn free_bytes(&mut self, root: WitRoot) -> Result<u64, WitError> {
        let root = RootName::from(root);
        let dir = self.open_root(root, Access::ReadOnly)?;
        let s = rustix::fs::fstatvfs(&dir)
            .map_err(|e| WitError::Io(format!("cannot read the free space of {root}: {e}")))?;
        Ok(s.f_bavail.saturating_mul(s.f_frsize))
    }
}
