//! ed25519 signatures of software releases. The signed text binds the
//! version to the archive's content, so a signed archive cannot be replayed
//! under another version number.

/// Why a release is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error(
        "this box only installs signed updates (UPDATE_TRUSTED_KEYS in site.conf) and this update has no signature"
    )]
    Missing,
    #[error("the update signature must be 128 hex digits (ed25519)")]
    Malformed,
    #[error("the update signature does not match any key of UPDATE_TRUSTED_KEYS")]
    Mismatch,
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
