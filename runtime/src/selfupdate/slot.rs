//! The slot folders `STATE_PATH/agent/<version>/`: a release is extracted
//! into `.incoming-<version>`, checked, flushed to disk and only then renamed
//! into place, so a slot either is complete or does not exist (a crash
//! midway leaves an `.incoming-` folder the next staging or prune removes).

use super::release::{self, Policy, ReleaseError};
use super::state::is_plain_version;
use crate::store::extract::{self, ArchiveError, Limits};
use crate::store::{atomic, tree};
use cap_std::fs::Dir;
use std::io::Read;
use std::path::{Path, PathBuf};

const INCOMING: &str = ".incoming-";

/// Why a release could not be put in its slot. Nothing else changed.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error("agent release {version} refused: {source}")]
    Archive {
        version: String,
        source: ArchiveError,
    },
    #[error(
        "agent release {version} refused: it holds no executable {}",
        release::BINARY
    )]
    NoBinary { version: String },
    #[error("agent release {version} refused: '{version}' is not a plain version")]
    BadVersion { version: String },
    #[error("cannot stage agent release {version} in {path}: {source}")]
    Io {
        version: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Extracts `archive` into the slot of `version` under `agent_dir` and
/// returns the slot's path. The manifest is checked against `policy` before
/// the slot exists; any failure removes what this call wrote.
pub fn stage(
    agent_dir: &Path,
    version: &str,
    archive: impl Read,
    policy: &Policy,
    limits: Limits,
) -> Result<PathBuf, SlotError> {
    if !is_plain_version(version) {
        return Err(SlotError::BadVersion {
            version: version.to_owned(),
        });
    }
    let io = |source| SlotError::Io {
        version: version.to_owned(),
        path: agent_dir.to_owned(),
        source,
    };
    let dir = atomic::open_state_dir(agent_dir).map_err(io)?;
    let incoming = format!("{INCOMING}{version}");
    let _ = tree::remove_tree(&dir, Path::new(&incoming));
    dir.create_dir(&incoming).map_err(io)?;
    let result = fill(&agent_dir.join(&incoming), version, archive, policy, limits);
    if result.is_err() {
        let _ = tree::remove_tree(&dir, Path::new(&incoming));
        return result.map(|()| PathBuf::new());
    }
    // A slot of this version left by an earlier staging that never
    // committed: replaced (the running agent is never that version).
    let _ = tree::remove_tree(&dir, Path::new(version));
    let renamed = dir
        .rename(&incoming, &dir, version)
        .and_then(|()| std::fs::File::open(agent_dir)?.sync_all());
    if let Err(e) = renamed {
        let _ = tree::remove_tree(&dir, Path::new(&incoming));
        return Err(io(e));
    }
    Ok(agent_dir.join(version))
}

fn fill(
    incoming: &Path,
    version: &str,
    archive: impl Read,
    policy: &Policy,
    limits: Limits,
) -> Result<(), SlotError> {
    let io = |source| SlotError::Io {
        version: version.to_owned(),
        path: incoming.to_owned(),
        source,
    };
    let target = Dir::open_ambient_dir(incoming, cap_std::ambient_authority()).map_err(io)?;
    extract::extract_release(archive, &target, &[], limits, &policy.keys).map_err(|source| {
        SlotError::Archive {
            version: version.to_owned(),
            source,
        }
    })?;
    let manifest = target
        .open(release::MANIFEST)
        .map_err(|_| ReleaseError::Manifest {
            version: version.to_owned(),
            problem: "is missing".to_owned(),
        })?;
    release::check_manifest(policy, version, manifest)?;
    if !target
        .symlink_metadata(release::BINARY)
        .is_ok_and(|m| m.is_file())
    {
        return Err(SlotError::NoBinary {
            version: version.to_owned(),
        });
    }
    // The unit's UMask=0002 made every extracted folder 0775; the slot's
    // precompiled components are loaded only from folders nobody but the
    // agent can write (issue 24, point 10).
    close_folders(incoming).map_err(io)?;
    // Checked a regular file above, in a folder only the agent writes.
    std::fs::set_permissions(
        incoming.join(release::BINARY),
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .map_err(io)?;
    // Every file of the slot on disk before the rename makes it visible.
    // (A std File: cap-std opens folders O_PATH, on which syncfs fails.)
    let folder = std::fs::File::open(incoming).map_err(io)?;
    rustix::fs::syncfs(&folder).map_err(|e| io(e.into()))?;
    atomic::count_fsync();
    Ok(())
}

/// Takes group and other write off `dir` and every folder below it (links
/// are not followed: the slot is inside the agent's 0700 folder, and the
/// extraction refused links leaving it).
fn close_folders(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & !0o022))?;
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            close_folders(&entry.path())?;
        }
    }
    Ok(())
}

/// Removes slot folders other than `keep`, and unfinished `.incoming-`
/// ones. Problems are logged: a stale slot only costs space.
pub fn prune(agent_dir: &Path, keep: &[&str]) {
    let Ok(dir) = Dir::open_ambient_dir(agent_dir, cap_std::ambient_authority()) else {
        return;
    };
    let Ok(entries) = dir.entries() else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let stale = is_dir
            && (name.starts_with(INCOMING)
                || (is_plain_version(&name) && !keep.contains(&name.as_str())));
        if stale && let Err(e) = tree::remove_tree(&dir, Path::new(&name)) {
            tracing::warn!("cannot remove the old agent slot {name}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::release::tests::policy;
    use super::*;

    fn archive(manifest: &str, binary: bool) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let mut add = |name: &str, body: &[u8], mode: u32| {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(mode);
            header.set_cksum();
            tar.append_data(&mut header, name, body)
        };
        add(release::MANIFEST, manifest.as_bytes(), 0o644)?;
        if binary {
            add(release::BINARY, b"#!/bin/sh\nexit 0\n", 0o644)?;
        }
        Ok(tar.into_inner()?.finish()?)
    }

    use crate::store::tree::sorted_names as listing;

    #[test]
    fn a_good_release_becomes_a_complete_slot_with_an_executable_binary()
    -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let agent = tmp.path().join("agent");
        let p = policy(vec![]);
        let bytes = archive(
            r#"{"kind":"agent-release","arch":"amd64","version":"1.3.0"}"#,
            true,
        )?;
        let slot = stage(&agent, "1.3.0", &bytes[..], &p, Limits::default())?;
        assert_eq!(slot, agent.join("1.3.0"));
        assert!(super::super::launcher::is_executable(
            &slot.join(release::BINARY)
        ));
        assert_eq!(listing(&agent), vec!["1.3.0".to_owned()]);
        Ok(())
    }

    #[test]
    fn a_refused_release_leaves_nothing_behind() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let agent = tmp.path().join("agent");
        std::fs::create_dir_all(agent.join("1.2.0"))?;
        let p = policy(vec![]);
        let arm = archive(
            r#"{"kind":"agent-release","arch":"armhf","version":"1.3.0"}"#,
            true,
        )?;
        let err = stage(&agent, "1.3.0", &arm[..], &p, Limits::default()).err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("agent release 1.3.0 refused: it is built for armhf, this box is amd64")
        );
        let no_bin = archive(
            r#"{"kind":"agent-release","arch":"amd64","version":"1.3.0"}"#,
            false,
        )?;
        let err = stage(&agent, "1.3.0", &no_bin[..], &p, Limits::default()).err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("agent release 1.3.0 refused: it holds no executable bin/neopro-runtime")
        );
        assert!(stage(&agent, "../x", &no_bin[..], &p, Limits::default()).is_err());
        assert_eq!(listing(&agent), vec!["1.2.0".to_owned()]);
        Ok(())
    }

    /// Set by [`the_slot_tests_pass_under_the_units_umask`] for the child
    /// run under umask 0002.
    const UNDER_UNIT_UMASK: &str = "NEOPRO_TEST_UNDER_UMASK_0002";

    /// The unit runs with `UMask=0002`, the tests with the shell's 0022:
    /// these tests run again in a child process under 0002 (umask is
    /// per process: setting it here would change every parallel test).
    #[test]
    fn the_slot_tests_pass_under_the_units_umask() -> Result<(), Box<dyn std::error::Error>> {
        if std::env::var_os(UNDER_UNIT_UMASK).is_some() {
            return Ok(());
        }
        let out = std::process::Command::new("sh")
            .args(["-c", "umask 0002 && exec \"$0\" \"$@\""])
            .arg(std::env::current_exe()?)
            .args(["selfupdate::slot::tests::", "--test-threads=1"])
            .env(UNDER_UNIT_UMASK, "1")
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("a_slots_folders_are_closed_to_others_whatever_the_umask ... ok"),
            "{text}"
        );
        Ok(())
    }

    /// A release's precompiled components are usable from its slot: the
    /// folders are not group-writable even under the unit's umask.
    #[test]
    fn a_slots_folders_are_closed_to_others_whatever_the_umask()
    -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt;
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let mut add = |name: &str, body: &[u8], kind: tar::EntryType, mode: u32| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(body.len() as u64);
            header.set_mode(mode);
            header.set_cksum();
            tar.append_data(&mut header, name, body)
        };
        let manifest = br#"{"kind":"agent-release","arch":"amd64","version":"1.3.0"}"#;
        add(release::MANIFEST, manifest, tar::EntryType::Regular, 0o644)?;
        add(
            release::BINARY,
            b"#!/bin/sh\n",
            tar::EntryType::Regular,
            0o755,
        )?;
        add("components/", b"", tar::EntryType::Directory, 0o775)?;
        add(
            "components/precompiled/",
            b"",
            tar::EntryType::Directory,
            0o777,
        )?;
        add(
            "components/precompiled/x.cwasm",
            b"code",
            tar::EntryType::Regular,
            0o644,
        )?;
        let bytes = tar.into_inner()?.finish()?;
        let tmp = tempfile::tempdir()?;
        let agent = tmp.path().join("agent");
        let slot = stage(
            &agent,
            "1.3.0",
            &bytes[..],
            &policy(vec![]),
            Limits::default(),
        )?;
        crate::store::private_dir::check_private(&slot.join("components/precompiled"))?;
        for dir in [
            slot.clone(),
            slot.join("bin"),
            slot.join("components"),
            slot.join("components/precompiled"),
        ] {
            let mode = std::fs::metadata(&dir)?.permissions().mode() & 0o7777;
            assert_eq!(mode & 0o022, 0, "{} is {mode:04o}", dir.display());
        }
        Ok(())
    }

    #[test]
    fn prune_keeps_the_named_slots_and_files() -> std::io::Result<()> {
        let tmp = tempfile::tempdir()?;
        for d in ["1.0.0", "1.1.0", ".incoming-1.2.0"] {
            std::fs::create_dir_all(tmp.path().join(d))?;
        }
        std::fs::write(tmp.path().join("state.json"), "{}")?;
        prune(tmp.path(), &["1.1.0"]);
        assert_eq!(
            listing(tmp.path()),
            vec!["1.1.0".to_owned(), "state.json".to_owned()]
        );
        Ok(())
    }
}
