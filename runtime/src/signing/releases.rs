//! ed25519 signatures of software releases, and which one vouches for a
//! release ([`check_release`]): the `signature` field of the update
//! command, over the text binding the version to the archive's sha256 (so a
//! signed archive cannot be replayed under another version number), or the
//! signed manifest the archive opens with ([`super::manifest`]), which is
//! what a release delivered by the upstream Updates page must carry.

use super::manifest::{self, ManifestError, Signed};
use std::io::{Read, Seek, SeekFrom};

/// Why a release is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error(
        "this box only installs signed updates (UPDATE_TRUSTED_KEYS in site.conf) and this update has no signature: neither a signature field in the command nor a signed manifest ({}) as the archive's first entry",
        manifest::NAME
    )]
    Missing,
    #[error("the update signature must be 128 hex digits (ed25519)")]
    Malformed,
    #[error("the update signature does not match any key of UPDATE_TRUSTED_KEYS")]
    Mismatch,
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// The text a release signature covers.
pub fn signed_text(version: &str, sha256_hex: &str) -> String {
    format!("neopro-update:{version}:{sha256_hex}")
}

/// `Ok` when no keys are trusted, or when `signature` is valid for one.
pub fn check(
    keys: &[[u8; 32]],
    version: &str,
    sha256_hex: &str,
    signature: Option<&str>,
) -> Result<(), SignatureError> {
    if keys.is_empty() {
        return Ok(());
    }
    let signature = signature
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(SignatureError::Missing)?;
    let bytes = hex::decode(signature)
        .ok()
        .filter(|b| b.len() == 64)
        .ok_or(SignatureError::Malformed)?;
    let text = signed_text(version, sha256_hex);
    let valid = keys.iter().any(|key| {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
            .verify(text.as_bytes(), &bytes)
            .is_ok()
    });
    if valid {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Whether the release in `archive` (whose sha256 is `sha256_hex`) may be
/// installed as `version`. With a `signature` field, that signature is
/// checked ([`check`]). Without one, a signed manifest as the archive's
/// first entry vouches for it: signed by a trusted key, for this version
/// (its entries are checked while the archive is extracted, by
/// `store::extract`). Without keys nothing is required, but an embedded
/// manifest must still name this version. Leaves `archive` at its start.
pub fn check_release<R: Read + Seek>(
    keys: &[[u8; 32]],
    version: &str,
    sha256_hex: &str,
    signature: Option<&str>,
    archive: &mut R,
) -> Result<(), SignatureError> {
    let rewind = |archive: &mut R| {
        archive
            .seek(SeekFrom::Start(0))
            .map(|_| ())
            .map_err(|e| ManifestError::Invalid(format!("cannot be read: {e}")))
    };
    rewind(archive)?;
    let embedded = manifest::read_first(std::io::BufReader::new(&mut *archive))?;
    rewind(archive)?;
    let given = signature.map(str::trim).filter(|s| !s.is_empty());
    if let Some(signed) = &embedded {
        check_embedded(keys, version, signed)?;
    }
    match (given, embedded) {
        (Some(_), _) => check(keys, version, sha256_hex, given),
        (None, Some(_)) => Ok(()),
        (None, None) if keys.is_empty() => Ok(()),
        (None, None) => {
            let later = manifest::find_later(std::io::BufReader::new(&mut *archive));
            rewind(archive)?;
            Err(match later {
                Some(position) => ManifestError::NotFirst { position }.into(),
                None => SignatureError::Missing,
            })
        }
    }
}

fn check_embedded(keys: &[[u8; 32]], version: &str, signed: &Signed) -> Result<(), ManifestError> {
    if !keys.is_empty() {
        signed.verify(keys)?;
    }
    signed.check_version(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    #[test]
    fn only_a_trusted_key_over_this_version_and_content_passes()
    -> Result<(), Box<dyn std::error::Error>> {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).map_err(|e| e.to_string())?;
        let other = Ed25519KeyPair::from_seed_unchecked(&[8u8; 32]).map_err(|e| e.to_string())?;
        let key: [u8; 32] = pair.public_key().as_ref().try_into()?;
        let sha = "ab".repeat(32);
        let sig = hex::encode(pair.sign(signed_text("2.0.0", &sha).as_bytes()));
        assert_eq!(check(&[], "2.0.0", &sha, None), Ok(()));
        assert_eq!(check(&[key], "2.0.0", &sha, Some(&sig)), Ok(()));
        assert_eq!(
            check(&[key], "2.0.0", &sha, None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            check(&[key], "2.0.0", &sha, Some("zz")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            check(&[key], "2.0.1", &sha, Some(&sig)),
            Err(SignatureError::Mismatch)
        );
        let forged = hex::encode(other.sign(signed_text("2.0.0", &sha).as_bytes()));
        assert_eq!(
            check(&[key], "2.0.0", &sha, Some(&forged)),
            Err(SignatureError::Mismatch)
        );
        Ok(())
    }
}
