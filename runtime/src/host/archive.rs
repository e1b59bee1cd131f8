//! `archive`: extraction of update archives into a fresh folder of a
//! granted root, through the checks of [`crate::store::extract`]. A refused or
//! broken archive leaves no folder behind.

use super::bindings::neopro::agent::archive::{Host, Report};
use super::roots::{io_error, relative_file};
use super::{HostState, WitError, WitRoot};
use crate::host::grants::Grant;
use crate::manifest::{Access, RootName};
use crate::signing::manifest::ManifestError;
use crate::store::extract::{ArchiveError, Limits};

/// The `archive` capability's state.
#[derive(Debug)]
pub struct ArchiveHost {
    /// UPDATE_TRUSTED_KEYS.
    pub update_keys: Vec<[u8; 32]>,
    /// Most bytes one extraction may write: a release unpacks to at most
    /// four times the largest download allowed (MAX_DOWNLOAD_SIZE).
    pub max_extract_bytes: u64,
    /// UPDATE_ALLOW_DOWNGRADE.
    pub allow_downgrade: bool,
}

impl ArchiveHost {
    pub fn from_config(config: &crate::config::SiteConfig) -> Self {
        ArchiveHost {
            update_keys: config.update_keys.clone(),
            max_extract_bytes: config.max_download_size.saturating_mul(4),
            allow_downgrade: config.update_allow_downgrade,
        }
    }
}

impl From<ArchiveError> for WitError {
    fn from(e: ArchiveError) -> Self {
        match e {
            ArchiveError::Corrupt(_) | ArchiveError::BadName(_) => {
                WitError::InvalidInput(e.to_string())
            }
            ArchiveError::Absolute(_)
            | ArchiveError::ParentDir(_)
            | ArchiveError::LinkOut { .. }
            | ArchiveError::ThroughLink { .. }
            | ArchiveError::Special { .. } => WitError::NotPermitted(e.to_string()),
            ArchiveError::TooLarge { .. }
            | ArchiveError::TooManyEntries { .. }
            | ArchiveError::DiskFull { .. } => WitError::TooLarge(e.to_string()),
            ArchiveError::Write { .. } => WitError::Io(e.to_string()),
            ArchiveError::PastDeadline => WitError::Timeout(e.to_string()),
            ArchiveError::Manifest(ManifestError::Invalid(_) | ManifestError::TooLarge) => {
                WitError::InvalidInput(e.to_string())
            }
            ArchiveError::Manifest(_) => WitError::NotPermitted(e.to_string()),
        }
    }
}

impl From<crate::signing::releases::SignatureError> for WitError {
    fn from(e: crate::signing::releases::SignatureError) -> Self {
        use crate::signing::releases::SignatureError;
        match e {
            SignatureError::Malformed => WitError::InvalidInput(e.to_string()),
            SignatureError::Manifest(ManifestError::Invalid(_) | ManifestError::TooLarge) => {
                WitError::InvalidInput(e.to_string())
            }
            SignatureError::Missing | SignatureError::Mismatch | SignatureError::Manifest(_) => {
                WitError::NotPermitted(e.to_string())
            }
        }
    }
}

impl HostState {
    /// Opens an archive only the agent can write: its root folder (and the
    /// folder above) writable by nobody else, the file itself the agent's
    /// and not group- or world-writable. Otherwise the web app's user could
    /// swap the archive between its signature check and its extraction.
    pub(super) fn open_agent_only(
        &self,
        root: RootName,
        path: &str,
    ) -> Result<std::fs::File, WitError> {
        let roots = &self.call.services.roots;
        let refuse = |detail: String| {
            WitError::NotPermitted(format!(
                "{root}/{path}: an archive is only verified and extracted from a file only the agent can write; {detail}"
            ))
        };
        crate::store::private_dir::check_private(roots.path(root))
            .map_err(|e| refuse(e.to_string()))?;
        let dir = roots.open(root, false)?;
        let rel = relative_file(path)?;
        let file = dir
            .open(&rel)
            .map_err(|e| io_error(root, path, &e))?
            .into_std();
        let meta = file.metadata().map_err(|e| io_error(root, path, &e))?;
        if !crate::store::private_dir::file_is_private(&meta) {
            use std::os::unix::fs::MetadataExt;
            return Err(refuse(format!(
                "this one has mode {:04o} and owner uid {}",
                meta.mode() & 0o7777,
                meta.uid()
            )));
        }
        Ok(file)
    }
}

/// sha256 of an open file, streamed.
pub(super) fn sha256_of(
    mut file: std::fs::File,
    root: RootName,
    path: &str,
) -> Result<String, WitError> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut buf).map_err(|e| io_error(root, path, &e))?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

impl Host for HostState {
    fn verify_signature(
        &mut self,
        root: WitRoot,
        path: String,
        version: String,
        signature: Option<String>,
    ) -> Result<String, WitError> {
        let root = RootName::from(root);
        self.call.check(Grant::Root(root, Access::ReadOnly))?;
        let mut file = self.open_agent_only(root, &path)?;
        let hashed = file.try_clone().map_err(|e| io_error(root, &path, &e))?;
        let sha = sha256_of(hashed, root, &path)?;
        crate::signing::releases::check_release(
            &self.call.services.archive.update_keys,
            &version,
            &sha,
            signature.as_deref(),
            &mut file,
        )?;
        Ok(sha)
    }

    fn check_app_release(&mut self, version: String) -> Result<(), WitError> {
        self.call
            .check(Grant::Root(RootName::NeoproRoot, Access::ReadOnly))?;
        let root = self.call.services.roots.path(RootName::NeoproRoot);
        let installed = crate::platform::metrics::version_info(root).version;
        if !self.call.services.archive.allow_downgrade
            && crate::version_order::is_older(&version, &installed)
        {
            return Err(WitError::NotPermitted(
                crate::version_order::downgrade_refused(&version, &installed),
            ));
        }
        Ok(())
    }

    fn extract_tar_gz(
        &mut self,
        src_root: WitRoot,
        src_path: String,
        dest_root: WitRoot,
        dest_path: String,
        skip: Vec<String>,
    ) -> Result<Report, WitError> {
        let src_root = RootName::from(src_root);
        let dest_root = RootName::from(dest_root);
        self.call.check(Grant::Root(src_root, Access::ReadOnly))?;
        self.call.check(Grant::Root(dest_root, Access::ReadWrite))?;
        let file = self.open_agent_only(src_root, &src_path)?;
        let roots = &self.call.services.roots;
        let dest_dir = roots.open(dest_root, true)?;
        let dest_rel = relative_file(&dest_path)?;
        if dest_dir.symlink_metadata(&dest_rel).is_ok() {
            return Err(WitError::InvalidInput(format!(
                "{dest_root}/{dest_path} already exists; an archive is extracted into a new folder"
            )));
        }
        dest_dir
            .create_dir_all(&dest_rel)
            .map_err(|e| io_error(dest_root, &dest_path, &e))?;
        let target = dest_dir
            .open_dir(&dest_rel)
            .map_err(|e| io_error(dest_root, &dest_path, &e))?;
        let limits = Limits {
            max_bytes: self.call.services.archive.max_extract_bytes,
            deadline: Some(self.call.deadline),
            ..Limits::default()
        };
        let reader = std::io::BufReader::with_capacity(256 << 10, file);
        let keys = &self.call.services.archive.update_keys;
        match crate::store::extract::extract_release(reader, &target, &skip, limits, keys) {
            Ok(report) => Ok(Report {
                files: report.files,
                bytes: report.bytes,
                skipped: report.skipped,
            }),
            Err(e) => {
                drop(target);
                if let Err(clean) = dest_dir.remove_dir_all(&dest_rel) {
                    tracing::warn!(
                        "cannot remove {dest_root}/{dest_path} after a refused archive: {clean}"
                    );
                }
                Err(e.into())
            }
        }
    }
}
