//! Interfaces declared in the WIT contract whose host side comes with later
//! work (archive). Until then each
//! call is checked against its grant like any other, and then fails with a
//! clear `failed` error instead of trapping the guest.

use super::bindings::neopro::agent::archive;
use super::{HostState, WitError, WitRoot};

fn not_available(what: &str) -> WitError {
    WitError::Failed(format!(
        "{what} is not available in this version of neopro-runtime"
    ))
}

impl archive::Host for HostState {
    fn extract_tar_gz(
        &mut self,
        src_root: WitRoot,
        _src_path: String,
        dest_root: WitRoot,
        _dest_path: String,
        _skip: Vec<String>,
    ) -> Result<archive::Report, WitError> {
        use crate::manifest::{Access, RootName};
        self.call
            .require_root(RootName::from(src_root), Access::ReadOnly)?;
        self.call
            .require_root(RootName::from(dest_root), Access::ReadWrite)?;
        Err(not_available("archive extraction"))
    }
}
