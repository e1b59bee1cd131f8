//! What an agent release is and what it must pass before it is staged.
//!
//! An agent release is an ordinary NEOPRO release archive (`.tar.gz`) whose
//! first entry is `agent-release.json`:
//! `{"kind": "agent-release", "arch": "<Debian arch>", "version": "<v>"}`,
//! followed by `bin/neopro-runtime`, the built-in components and the unit —
//! or, for a release that carries its own signature, whose first entry is
//! the signed manifest (`crate::signing::manifest`, kind `agent-release`)
//! and whose second is `agent-release.json`.
//! Unlike an app release it is always signed (by the command's `signature`
//! or by its embedded manifest): with no UPDATE_TRUSTED_KEYS it is refused,
//! so no unsigned binary ever replaces the agent.

use crate::signing::manifest;
use crate::signing::releases::{self, SignatureError};
use crate::version_order;
use serde::Deserialize;
use std::cmp::Ordering;
use std::io::Read;

/// The marker at the top of an agent release.
pub const MANIFEST: &str = "agent-release.json";
/// The agent binary inside the release.
pub const BINARY: &str = "bin/neopro-runtime";
/// `kind` in the manifest.
pub const KIND: &str = "agent-release";
/// Larger than any manifest we write.
const MAX_MANIFEST_BYTES: u64 = 4096;

/// Why an agent release is refused. Nothing on the box changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReleaseError {
    #[error(
        "agent release {version} refused: this box installs an agent release only when it is signed, and no UPDATE_TRUSTED_KEYS are set in site.conf"
    )]
    NoKeys { version: String },
    #[error("agent release {version} refused: {source}")]
    Signature {
        version: String,
        source: SignatureError,
    },
    #[error("agent release {version} refused: this box runs agent {own} already")]
    Same { version: String, own: String },
    #[error(
        "agent release {version} refused: it is older than the running agent {own} (set UPDATE_ALLOW_DOWNGRADE=true in site.conf to allow a downgrade)"
    )]
    Downgrade { version: String, own: String },
    #[error(
        "agent release {version} refused: this box already committed agent {highest}, which is newer (set UPDATE_ALLOW_DOWNGRADE=true in site.conf to allow a downgrade)"
    )]
    BelowHighWater { version: String, highest: String },
    #[error(
        "agent release {version} refused: it is not newer than the packaged agent {floor} (/usr/bin/neopro-runtime), which always wins; install an older .deb instead"
    )]
    BelowFloor { version: String, floor: String },
    #[error("agent release {version} refused: the versions {version} and {own} cannot be ordered")]
    Unordered { version: String, own: String },
    #[error("agent release {version} refused: it is built for {theirs}, this box is {ours}")]
    Arch {
        version: String,
        theirs: String,
        ours: String,
    },
    #[error("agent release {version} refused: {MANIFEST} {problem}")]
    Manifest { version: String, problem: String },
}

/// What the box accepts.
#[derive(Debug, Clone)]
pub struct Policy {
    /// UPDATE_TRUSTED_KEYS.
    pub keys: Vec<[u8; 32]>,
    /// The running agent's version.
    pub own_version: String,
    /// The packaged binary's version (the floor).
    pub floor_version: String,
    pub own_arch: String,
    /// UPDATE_ALLOW_DOWNGRADE.
    pub allow_downgrade: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    kind: String,
    arch: String,
    version: String,
}

/// Whether the `.tar.gz` read from `archive` is an agent release: its first
/// entry is [`MANIFEST`], or a signed manifest of kind `agent-release`
/// (not verified here: staging does). Anything unreadable is not one (the
/// app path then refuses it with its own, precise error).
pub fn is_agent_release(mut archive: impl Read + std::io::Seek) -> bool {
    if let Ok(Some(signed)) = manifest::read_first(&mut archive) {
        return signed.is_agent_release();
    }
    if archive.seek(std::io::SeekFrom::Start(0)).is_err() {
        return false;
    }
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let Ok(mut entries) = tar.entries() else {
        return false;
    };
    let Some(Ok(first)) = entries.next() else {
        return false;
    };
    first.path().is_ok_and(|p| {
        let p = p.strip_prefix("./").unwrap_or(&p);
        p == std::path::Path::new(MANIFEST)
    })
}

/// The checks before anything is written: a signature (always required:
/// the command's over `version` and the archive's `sha256`, or the
/// archive's embedded manifest, see [`releases::check_release`]), then the
/// version order.
pub fn check_signed<R: Read + std::io::Seek>(
    policy: &Policy,
    version: &str,
    sha256: &str,
    signature: Option<&str>,
    archive: &mut R,
) -> Result<(), ReleaseError> {
    if policy.keys.is_empty() {
        return Err(ReleaseError::NoKeys {
            version: version.to_owned(),
        });
    }
    releases::check_release(&policy.keys, version, sha256, signature, archive).map_err(
        |source| ReleaseError::Signature {
            version: version.to_owned(),
            source,
        },
    )?;
    check_version(policy, version)
}

fn check_version(policy: &Policy, version: &str) -> Result<(), ReleaseError> {
    let v = version.to_owned();
    if version_order::compare(version, &policy.floor_version) != Some(Ordering::Greater) {
        return Err(ReleaseError::BelowFloor {
            version: v,
            floor: policy.floor_version.clone(),
        });
    }
    match version_order::compare(version, &policy.own_version) {
        Some(Ordering::Greater) => Ok(()),
        Some(Ordering::Equal) => Err(ReleaseError::Same {
            version: v,
            own: policy.own_version.clone(),
        }),
        Some(Ordering::Less) if policy.allow_downgrade => Ok(()),
        Some(Ordering::Less) => Err(ReleaseError::Downgrade {
            version: v,
            own: policy.own_version.clone(),
        }),
        None => Err(ReleaseError::Unordered {
            version: v,
            own: policy.own_version.clone(),
        }),
    }
}

/// The extracted manifest: an agent release for this architecture, of the
/// version the (signed) command names.
pub fn check_manifest(
    policy: &Policy,
    version: &str,
    manifest: impl Read,
) -> Result<(), ReleaseError> {
    let problem = |problem: String| ReleaseError::Manifest {
        version: version.to_owned(),
        problem,
    };
    let mut bytes = Vec::new();
    manifest
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| problem(format!("cannot be read: {e}")))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(problem(format!(
            "is larger than {MAX_MANIFEST_BYTES} bytes"
        )));
    }
    let m: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| problem(format!("is not valid: {e}")))?;
    if m.kind != KIND {
        return Err(problem(format!("has kind '{}', not '{KIND}'", m.kind)));
    }
    if m.version != version {
        return Err(problem(format!(
            "says version {}, the update command says {version}",
            m.version
        )));
    }
    if m.arch != policy.own_arch {
        return Err(ReleaseError::Arch {
            version: version.to_owned(),
            theirs: m.arch,
            ours: policy.own_arch.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    pub fn key_pair() -> Result<Ed25519KeyPair, Box<dyn std::error::Error>> {
        Ed25519KeyPair::from_seed_unchecked(&[9u8; 32]).map_err(|e| e.to_string().into())
    }

    /// An archive with no embedded manifest (the command's signature vouches).
    fn empty() -> std::io::Cursor<Vec<u8>> {
        std::io::Cursor::new(Vec::new())
    }

    pub fn policy(keys: Vec<[u8; 32]>) -> Policy {
        Policy {
            keys,
            own_version: "1.2.0".into(),
            floor_version: "1.0.0".into(),
            own_arch: "amd64".into(),
            allow_downgrade: false,
        }
    }

    #[test]
    fn an_agent_release_needs_a_trusted_signature_and_a_newer_version()
    -> Result<(), Box<dyn std::error::Error>> {
        let pair = key_pair()?;
        let key: [u8; 32] = pair.public_key().as_ref().try_into()?;
        let sha = "cd".repeat(32);
        let sign = |v: &str| hex::encode(pair.sign(releases::signed_text(v, &sha).as_bytes()));
        let p = policy(vec![key]);
        assert_eq!(
            check_signed(&p, "1.3.0", &sha, Some(&sign("1.3.0")), &mut empty()),
            Ok(())
        );
        let refused = |r: Result<(), ReleaseError>| r.err().map(|e| e.to_string());
        assert_eq!(
            refused(check_signed(
                &policy(vec![]),
                "1.3.0",
                &sha,
                Some(&sign("1.3.0")),
                &mut empty()
            ))
            .as_deref(),
            Some(
                "agent release 1.3.0 refused: this box installs an agent release only when it is signed, and no UPDATE_TRUSTED_KEYS are set in site.conf"
            )
        );
        assert_eq!(
            refused(check_signed(
                &p,
                "1.3.0",
                &sha,
                Some(&sign("1.4.0")),
                &mut empty()
            ))
            .as_deref(),
            Some(
                "agent release 1.3.0 refused: the update signature does not match any key of UPDATE_TRUSTED_KEYS"
            )
        );
        assert_eq!(
            refused(check_signed(
                &p,
                "1.1.0",
                &sha,
                Some(&sign("1.1.0")),
                &mut empty()
            ))
            .as_deref(),
            Some(
                "agent release 1.1.0 refused: it is older than the running agent 1.2.0 (set UPDATE_ALLOW_DOWNGRADE=true in site.conf to allow a downgrade)"
            )
        );
        assert_eq!(
            refused(check_signed(
                &p,
                "1.2.0",
                &sha,
                Some(&sign("1.2.0")),
                &mut empty()
            ))
            .as_deref(),
            Some("agent release 1.2.0 refused: this box runs agent 1.2.0 already")
        );
        let lenient = Policy {
            allow_downgrade: true,
            ..p.clone()
        };
        assert_eq!(
            check_signed(&lenient, "1.1.0", &sha, Some(&sign("1.1.0")), &mut empty()),
            Ok(())
        );
        assert_eq!(
            refused(check_signed(
                &lenient,
                "0.9.0",
                &sha,
                Some(&sign("0.9.0")),
                &mut empty()
            ))
            .as_deref(),
            Some(
                "agent release 0.9.0 refused: it is not newer than the packaged agent 1.0.0 (/usr/bin/neopro-runtime), which always wins; install an older .deb instead"
            )
        );
        Ok(())
    }

    #[test]
    fn the_manifest_must_name_this_arch_and_the_signed_version() {
        let p = policy(vec![[0u8; 32]]);
        let ok = br#"{"kind":"agent-release","arch":"amd64","version":"1.3.0"}"#;
        assert_eq!(check_manifest(&p, "1.3.0", &ok[..]), Ok(()));
        let arm = br#"{"kind":"agent-release","arch":"armhf","version":"1.3.0"}"#;
        assert_eq!(
            check_manifest(&p, "1.3.0", &arm[..])
                .err()
                .map(|e| e.to_string()),
            Some("agent release 1.3.0 refused: it is built for armhf, this box is amd64".into())
        );
        assert!(
            check_manifest(&p, "1.4.0", &ok[..])
                .err()
                .is_some_and(|e| e.to_string().contains("says version 1.3.0"))
        );
        assert!(check_manifest(&p, "1.3.0", &b"{}"[..]).is_err());
    }

    #[test]
    fn only_an_archive_opening_with_the_manifest_is_an_agent_release()
    -> Result<(), Box<dyn std::error::Error>> {
        let build = |names: &[&str]| -> Result<Vec<u8>, Box<dyn std::error::Error>> {
            let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let mut tar = tar::Builder::new(gz);
            for name in names {
                let mut header = tar::Header::new_gnu();
                header.set_size(2);
                header.set_mode(0o644);
                header.set_cksum();
                tar.append_data(&mut header, name, &b"{}"[..])?;
            }
            Ok(tar.into_inner()?.finish()?)
        };
        assert!(is_agent_release(std::io::Cursor::new(build(&[
            MANIFEST, BINARY
        ])?)));
        assert!(is_agent_release(std::io::Cursor::new(build(&[
            "./agent-release.json"
        ])?)));
        assert!(!is_agent_release(std::io::Cursor::new(build(&[
            "webapp/index.html",
            MANIFEST
        ])?)));
        assert!(!is_agent_release(std::io::Cursor::new(b"not gzip")));
        Ok(())
    }
}
