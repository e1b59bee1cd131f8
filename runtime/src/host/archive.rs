//! `archive`: extraction of update archives into a fresh folder of a
//! granted root, through the checks of [`crate::store::extract`]. A refused or
//! broken archive leaves no folder behind.

use super::bindings::neopro::agent::archive::{Host, Report};
use super::roots::{io_error, open_regular, relative_file};
use super::{HostState, WitError, WitRoot};
use crate::sandbox::manifest::{Access, RootName};
use crate::store::extract::{ArchiveError, Limits};

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
        }
    }
}

impl From<crate::signing::releases::SignatureError> for WitError {
    fn from(e: crate::signing::releases::SignatureError) -> Self {
        use crate::signing::releases::SignatureError;
        match e {
            SignatureError::Malformed => WitError::InvalidInput(e.to_string()),
            SignatureError::Missing | SignatureError::Mismatch => {
                WitError::NotPermitted(e.to_string())
            }
        }
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
        let sha = super::bindings::neopro::agent::files::Host::sha256(self, root, path)?;
        crate::signing::releases::check(
            &self.call.services.update_keys,
            &version,
            &sha,
            signature.as_deref(),
        )?;
        Ok(sha)
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
        self.call.require_root(src_root, Access::ReadOnly)?;
        self.call.require_root(dest_root, Access::ReadWrite)?;
        let roots = &self.call.services.roots;
        let src_dir = roots.open(src_root, false)?;
        let file = open_regular(&src_dir, src_root, &src_path)?;
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
            max_bytes: self.call.services.max_download_size.saturating_mul(4),
            deadline: Some(self.call.deadline),
            ..Limits::default()
        };
        let reader = std::io::BufReader::with_capacity(256 << 10, file.into_std());
        match crate::store::extract::extract_tar_gz(reader, &target, &skip, limits) {
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
