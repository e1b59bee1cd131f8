//! ed25519 signatures over a component: who built it, and that neither its
//! code nor its manifest changed on the way.
//!
//! What is signed is the text
//! `neopro-component-signature/1\n<sha256 of the wasm>\n<sha256 of the manifest>\n`.
//! The manifest is hashed as the TOML text the author wrote (line endings
//! normalised to `\n`), not re-serialised: a re-serialisation would tie every
//! signature to this agent version's idea of a manifest, and a newer agent
//! with one more optional field would reject every bundle signed before it.
//!
//! Text forms (all lower-case hex, no new encoding dependency):
//! - public key: `ed25519:<64 hex>`, listed in `TRUSTED_COMPONENT_KEYS`;
//! - key id: the first 16 hex digits of the key's sha256, shown in messages;
//! - signature: `ed25519:<key id>:<128 hex>`, so an unknown signer and a bad
//!   signature are told apart;
//! - secret key file: `neopro-ed25519-secret-key:<hex of the PKCS#8 document>`.

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

const SIGNED_HEADER: &str = "neopro-component-signature/1";
const KEY_PREFIX: &str = "ed25519:";
const SECRET_PREFIX: &str = "neopro-ed25519-secret-key:";

/// A key or signature that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningError {
    #[error("'{0}' is not an ed25519 public key (expected ed25519:<64 hex digits>)")]
    BadPublicKey(String),
    #[error("the signature is not in the expected form ed25519:<key id>:<128 hex digits>: '{0}'")]
    BadSignatureText(String),
    #[error("this is not a neopro-runtime secret key file")]
    BadSecretKey,
    #[error("cannot generate a key: the system random source failed")]
    Random,
    #[error(
        "the component is signed by key {0}, which is not trusted on this box (TRUSTED_COMPONENT_KEYS in site.conf)"
    )]
    UnknownKey(String),
    #[error(
        "bad signature: the component or its manifest is not what key {0} signed (altered on the way, or signed for another build)"
    )]
    Invalid(String),
}

/// An ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Parses `ed25519:<64 hex>`.
    pub fn parse(text: &str) -> Result<Self, SigningError> {
        let bad = || SigningError::BadPublicKey(text.to_owned());
        let hex_part = text.trim().strip_prefix(KEY_PREFIX).ok_or_else(bad)?;
        let bytes = hex::decode(hex_part).map_err(|_| bad())?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        Ok(PublicKey(bytes))
    }

    /// Short, stable name of the key for messages and signatures.
    pub fn id(&self) -> String {
        hex::encode(&Sha256::digest(self.0)[..8])
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{KEY_PREFIX}{}", hex::encode(self.0))
    }
}

/// A signing key (operators only: it never lives on a box).
pub struct SecretKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, SigningError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| SigningError::Random)?;
        Self::from_pkcs8(document.as_ref().to_vec())
    }

    fn from_pkcs8(pkcs8: Vec<u8>) -> Result<Self, SigningError> {
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| SigningError::BadSecretKey)?;
        Ok(SecretKey { pair, pkcs8 })
    }

    /// Reads the text written by [`SecretKey::to_text`].
    pub fn parse(text: &str) -> Result<Self, SigningError> {
        let hex_part = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SigningError::BadSecretKey)?;
        let pkcs8 = hex::decode(hex_part).map_err(|_| SigningError::BadSecretKey)?;
        Self::from_pkcs8(pkcs8)
    }

    /// The secret key file's contents.
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}\n", hex::encode(&self.pkcs8))
    }

    pub fn public_key(&self) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(bytes)
    }

    /// Signs a software release for `update_software`: 128 hex digits over
    /// [`crate::signing::releases::signed_text`].
    pub fn sign_release(&self, version: &str, archive_sha256: &str) -> String {
        let text = crate::signing::releases::signed_text(version, archive_sha256);
        hex::encode(self.pair.sign(text.as_bytes()).as_ref())
    }

    /// Rewrites `archive` with a signed manifest of its entries first
    /// ([`crate::signing::embed`]).
    pub fn seal_release(
        &self,
        archive: &std::path::Path,
        version: &str,
        kind: &str,
    ) -> Result<(), crate::signing::embed::EmbedError> {
        crate::signing::embed::seal(archive, archive, version, kind, &self.pair)
    }

    /// Signs a component: its wasm bytes' sha256 and its manifest text.
    pub fn sign(&self, wasm_sha256: &str, manifest_text: &str) -> String {
        let signature = self.pair.sign(&signed_message(wasm_sha256, manifest_text));
        format!(
            "{KEY_PREFIX}{}:{}",
            self.public_key().id(),
            hex::encode(signature.as_ref())
        )
    }
}

/// sha256 of the manifest as signed: the text with `\r\n` read as `\n`.
pub fn manifest_sha256(manifest_text: &str) -> String {
    hex::encode(Sha256::digest(manifest_text.replace("\r\n", "\n")))
}

fn signed_message(wasm_sha256: &str, manifest_text: &str) -> Vec<u8> {
    format!(
        "{SIGNED_HEADER}\n{}\n{}\n",
        wasm_sha256.to_ascii_lowercase(),
        manifest_sha256(manifest_text)
    )
    .into_bytes()
}

/// Checks `signature` against the trusted keys; returns the signer's key id.
pub fn verify(
    trusted: &[PublicKey],
    wasm_sha256: &str,
    manifest_text: &str,
    signature: &str,
) -> Result<String, SigningError> {
    let bad = || SigningError::BadSignatureText(signature.to_owned());
    let rest = signature.trim().strip_prefix(KEY_PREFIX).ok_or_else(bad)?;
    let (key_id, sig_hex) = rest.split_once(':').ok_or_else(bad)?;
    let sig = hex::decode(sig_hex).map_err(|_| bad())?;
    if sig.len() != 64 {
        return Err(bad());
    }
    let key = trusted
        .iter()
        .find(|k| k.id() == key_id)
        .ok_or_else(|| SigningError::UnknownKey(key_id.to_owned()))?;
    if key.verify(&signed_message(wasm_sha256, manifest_text), &sig) {
        Ok(key_id.to_owned())
    } else {
        Err(SigningError::Invalid(key_id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WASM: &str = "aa00000000000000000000000000000000000000000000000000000000000000";
    const MANIFEST: &str = "name = \"hello\"\nversion = \"1.0.0\"\ncommands = [\"hello\"]\n";

    #[test]
    fn a_signature_verifies_with_its_key_only() -> Result<(), SigningError> {
        let key = SecretKey::generate()?;
        let other = SecretKey::generate()?;
        let signature = key.sign(WASM, MANIFEST);
        let trusted = [other.public_key(), key.public_key()];
        assert_eq!(
            verify(&trusted, WASM, MANIFEST, &signature)?,
            key.public_key().id()
        );
        // Windows line endings sign the same manifest.
        assert!(verify(&trusted, WASM, &MANIFEST.replace('\n', "\r\n"), &signature).is_ok());
        assert_eq!(
            verify(&[other.public_key()], WASM, MANIFEST, &signature),
            Err(SigningError::UnknownKey(key.public_key().id()))
        );
        let changed = MANIFEST.replace("1.0.0", "1.0.1");
        assert_eq!(
            verify(&trusted, WASM, &changed, &signature),
            Err(SigningError::Invalid(key.public_key().id()))
        );
        let other_wasm = WASM.replace("aa", "ab");
        assert!(matches!(
            verify(&trusted, &other_wasm, MANIFEST, &signature),
            Err(SigningError::Invalid(_))
        ));
        Ok(())
    }

    #[test]
    fn keys_round_trip_through_their_text_forms() -> Result<(), SigningError> {
        let key = SecretKey::generate()?;
        let again = SecretKey::parse(&key.to_text())?;
        assert_eq!(again.public_key(), key.public_key());
        let public = PublicKey::parse(&key.public_key().to_string())?;
        assert_eq!(public, key.public_key());
        assert_eq!(public.id().len(), 16);
        Ok(())
    }

    #[test]
    fn malformed_texts_are_named() {
        assert_eq!(
            PublicKey::parse("ed25519:abcd"),
            Err(SigningError::BadPublicKey("ed25519:abcd".to_owned()))
        );
        assert!(matches!(
            verify(&[], WASM, MANIFEST, "deadbeef"),
            Err(SigningError::BadSignatureText(_))
        ));
        assert!(matches!(
            verify(&[], WASM, MANIFEST, "ed25519:0011:00"),
            Err(SigningError::BadSignatureText(_))
        ));
        assert!(matches!(
            SecretKey::parse("ed25519:00"),
            Err(SigningError::BadSecretKey)
        ));
    }
}
