//! The signed release manifest: a release that carries its own signature.
//!
//! The upstream server's Updates page sends `update_software` with no
//! `signature` field (its database has no column for one), so a release it
//! delivers must vouch for itself. Such a release opens with the entry
//! [`NAME`], the envelope `{"manifest": "<payload JSON text>", "key": "<64
//! hex>", "signature": "<128 hex>"}`; the payload
//! `{"format": 1, "kind", "version", "entries": [...]}` lists every other
//! entry of the archive, in order: `{"path", "type": "file", "size",
//! "sha256"}`, `{"path", "type": "dir"}`, `{"path", "type": "symlink" |
//! "hardlink", "target"}`. The signature is ed25519 over
//! `neopro-release-manifest:` followed by the payload text exactly as it
//! stands in the envelope (no re-serialisation, so nothing depends on how a
//! JSON writer orders keys), by a key of UPDATE_TRUSTED_KEYS.
//!
//! The box checks it while extracting (`store::extract`): the manifest
//! before anything is written, each entry against its line before it is
//! written, each file's sha256 as it is written, and at the end that no
//! listed entry is missing. This is the one verifier of embedded
//! signatures; the app path (`host::archive`) and the agent path
//! (`selfupdate::slot`) both extract through it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path};

/// The manifest's entry name: the archive's first entry.
pub const NAME: &str = "neopro-release-manifest.json";
/// What the signature covers: this prefix, then the payload text.
const SIGNED_PREFIX: &str = "neopro-release-manifest:";
/// The payload format this agent reads.
pub const FORMAT: u32 = 1;
/// `kind` of an agent release; anything else is an app release.
pub const AGENT_KIND: &str = "agent-release";
/// `kind` of a NEOPRO app release.
pub const APP_KIND: &str = "app-release";
/// Bound on the envelope (about 60,000 entries).
pub const MAX_BYTES: u64 = 16 << 20;

/// Why a release's embedded manifest refuses it. Messages name the entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("the release manifest {NAME} is not valid: {0}")]
    Invalid(String),
    #[error("the release manifest {NAME} is larger than {MAX_BYTES} bytes")]
    TooLarge,
    #[error(
        "the release manifest {NAME} is entry {position} of the archive; it must be the first entry"
    )]
    NotFirst { position: u64 },
    #[error(
        "the release manifest is signed by key {key_id}, which is not one of UPDATE_TRUSTED_KEYS in site.conf"
    )]
    UnknownKey { key_id: String },
    #[error(
        "the release manifest's signature is not valid for key {key_id}: the manifest was altered after it was signed"
    )]
    BadSignature { key_id: String },
    #[error("the release manifest is for version {signed}, the update command says {version}")]
    Version { signed: String, version: String },
    #[error("the archive entry '{entry}' is not in the signed release manifest")]
    Unlisted { entry: String },
    #[error("the archive entry '{entry}' appears twice; the signed release manifest lists it once")]
    Twice { entry: String },
    #[error("the archive entry '{entry}' is a {found}, the signed release manifest says {signed}")]
    Kind {
        entry: String,
        found: String,
        signed: String,
    },
    #[error(
        "the archive entry '{entry}' has {found} bytes, the signed release manifest says {signed}"
    )]
    Size {
        entry: String,
        found: u64,
        signed: u64,
    },
    #[error(
        "the archive entry '{entry}' is not what was signed: sha256 {found}, the signed release manifest says {signed}"
    )]
    Hash {
        entry: String,
        found: String,
        signed: String,
    },
    #[error(
        "the archive entry '{entry}' links to '{found}', the signed release manifest says '{signed}'"
    )]
    Target {
        entry: String,
        found: String,
        signed: String,
    },
    #[error(
        "the archive lacks '{entry}', which the signed release manifest lists (entries missing: {count})"
    )]
    Missing { entry: String, count: usize },
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "folder",
            Kind::Symlink => "symbolic link",
            Kind::Hardlink => "hard link",
        }
    }
}

/// One line of the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// What the signature covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    pub format: u32,
    pub kind: String,
    pub version: String,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    manifest: String,
    key: String,
    signature: String,
}

/// A parsed manifest, its signature not yet checked.
#[derive(Debug, Clone)]
pub struct Signed {
    pub payload: Payload,
    text: String,
    key: [u8; 32],
    signature: Vec<u8>,
}

/// The name an archive path has in a manifest: its normal components
/// joined by `/` (`./bin/` is `bin`). None for the archive's root or a path
/// the extractor refuses anyway (absolute, `..`).
pub fn entry_name(raw: &str) -> Option<String> {
    let mut parts = Vec::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn key_id(key: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(key)[..8])
}

impl Signed {
    /// Parses the envelope and its payload (bounded by [`MAX_BYTES`]).
    pub fn parse(bytes: &[u8]) -> Result<Signed, ManifestError> {
        if bytes.len() as u64 > MAX_BYTES {
            return Err(ManifestError::TooLarge);
        }
        let invalid = |what: String| ManifestError::Invalid(what);
        let envelope: Envelope =
            serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        let key: [u8; 32] = hex::decode(envelope.key.trim())
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| invalid("\"key\" must be 64 hex digits (ed25519)".into()))?;
        let signature = hex::decode(envelope.signature.trim())
            .ok()
            .filter(|s| s.len() == 64)
            .ok_or_else(|| invalid("\"signature\" must be 128 hex digits (ed25519)".into()))?;
        let payload: Payload = serde_json::from_str(&envelope.manifest)
            .map_err(|e| invalid(format!("its \"manifest\" text: {e}")))?;
        if payload.format != FORMAT {
            return Err(invalid(format!(
                "format {} (this agent reads format {FORMAT})",
                payload.format
            )));
        }
        Ok(Signed {
            payload,
            text: envelope.manifest,
            key,
            signature,
        })
    }

    /// Reads the manifest from the archive's first entry.
    pub fn read(entry: impl Read) -> Result<Signed, ManifestError> {
        let mut bytes = Vec::new();
        entry
            .take(MAX_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ManifestError::Invalid(format!("cannot be read: {e}")))?;
        Self::parse(&bytes)
    }

    /// The signature, by one of `keys`.
    pub fn verify(&self, keys: &[[u8; 32]]) -> Result<(), ManifestError> {
        let key_id = key_id(&self.key);
        if !keys.contains(&self.key) {
            return Err(ManifestError::UnknownKey { key_id });
        }
        let message = signed_message(&self.text);
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &self.key)
            .verify(&message, &self.signature)
            .map_err(|_| ManifestError::BadSignature { key_id })
    }

    /// The version the update command names is the signed one.
    pub fn check_version(&self, version: &str) -> Result<(), ManifestError> {
        if self.payload.version == version {
            Ok(())
        } else {
            Err(ManifestError::Version {
                signed: self.payload.version.clone(),
                version: version.to_owned(),
            })
        }
    }

    pub fn is_agent_release(&self) -> bool {
        self.payload.kind == AGENT_KIND
    }
}

fn signed_message(text: &str) -> Vec<u8> {
    let mut message = SIGNED_PREFIX.as_bytes().to_vec();
    message.extend_from_slice(text.as_bytes());
    message
}

/// Signs `payload` into the envelope's bytes (operators: `component
/// sign-release --embed`).
pub fn seal(
    payload: &Payload,
    pair: &ring::signature::Ed25519KeyPair,
) -> Result<Vec<u8>, serde_json::Error> {
    use ring::signature::KeyPair;
    let text = serde_json::to_string(payload)?;
    let signature = pair.sign(&signed_message(&text));
    serde_json::to_vec_pretty(&Envelope {
        manifest: text,
        key: hex::encode(pair.public_key().as_ref()),
        signature: hex::encode(signature.as_ref()),
    })
}

/// The manifest of an archive's first entry, if it is one; nothing else of
/// the archive is read. Its signature is not checked here.
pub fn read_first(archive: impl Read) -> Result<Option<Signed>, ManifestError> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let Ok(entries) = tar.entries() else {
        return Ok(None);
    };
    for entry in entries {
        let Ok(entry) = entry else { return Ok(None) };
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        return if entry_name(&name).as_deref() == Some(NAME) {
            Signed::read(entry).map(Some)
        } else {
            Ok(None)
        };
    }
    Ok(None)
}

/// Where [`NAME`] is in the archive when it is not first (1 is the first
/// entry): for a clear error when a manifest was expected.
pub fn find_later(archive: impl Read) -> Option<u64> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let mut position = 0;
    for entry in tar.entries().ok()? {
        let entry = entry.ok()?;
        if matches!(
            entry.header().entry_type(),
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        position += 1;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if entry_name(&name).as_deref() == Some(NAME) {
            return (position > 1).then_some(position);
        }
    }
    None
}

/// An archive entry as the extractor sees it.
#[derive(Debug, Clone, Copy)]
pub enum Seen<'a> {
    File { size: u64 },
    Dir,
    Symlink { target: &'a str },
    Hardlink { target: &'a str },
}

/// Checks entries against a manifest as they stream by.
#[derive(Debug)]
pub struct Checker {
    /// Listed and not seen yet, with their order in the manifest.
    pending: HashMap<String, (usize, Entry)>,
    /// Seen already.
    seen: std::collections::HashSet<String>,
}

impl Checker {
    pub fn new(payload: &Payload) -> Checker {
        let pending = payload
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.path.clone(), (i, e.clone())))
            .collect();
        Checker {
            pending,
            seen: Default::default(),
        }
    }

    /// Checks an entry before anything is written for it; for a file,
    /// returns the sha256 its bytes must have.
    pub fn entry(&mut self, name: &str, seen: Seen) -> Result<Option<String>, ManifestError> {
        let Some((_, listed)) = self.pending.remove(name) else {
            return Err(if self.seen.contains(name) || name == NAME {
                ManifestError::Twice {
                    entry: name.to_owned(),
                }
            } else {
                ManifestError::Unlisted {
                    entry: name.to_owned(),
                }
            });
        };
        self.seen.insert(name.to_owned());
        let found = match seen {
            Seen::File { .. } => Kind::File,
            Seen::Dir => Kind::Dir,
            Seen::Symlink { .. } => Kind::Symlink,
            Seen::Hardlink { .. } => Kind::Hardlink,
        };
        if found != listed.kind {
            return Err(ManifestError::Kind {
                entry: name.to_owned(),
                found: found.name().to_owned(),
                signed: listed.kind.name().to_owned(),
            });
        }
        let target_is = |target: &str| {
            let signed = listed.target.clone().unwrap_or_default();
            if signed == target {
                Ok(None)
            } else {
                Err(ManifestError::Target {
                    entry: name.to_owned(),
                    found: target.to_owned(),
                    signed,
                })
            }
        };
        match seen {
            Seen::File { size } => {
                let signed = listed.size.unwrap_or(0);
                if signed != size {
                    return Err(ManifestError::Size {
                        entry: name.to_owned(),
                        found: size,
                        signed,
                    });
                }
                Ok(Some(listed.sha256.unwrap_or_default().to_ascii_lowercase()))
            }
            Seen::Dir => Ok(None),
            Seen::Symlink { target } | Seen::Hardlink { target } => target_is(target),
        }
    }

    /// A file's bytes were `found` (hex sha256), `signed` expected.
    pub fn file_hash(name: &str, found: String, signed: String) -> Result<(), ManifestError> {
        if found == signed {
            Ok(())
        } else {
            Err(ManifestError::Hash {
                entry: name.to_owned(),
                found,
                signed,
            })
        }
    }

    /// At the end of the archive: every listed entry was there.
    pub fn finish(self) -> Result<(), ManifestError> {
        let count = self.pending.len();
        match self.pending.into_values().min_by_key(|(i, _)| *i) {
            None => Ok(()),
            Some((_, entry)) => Err(ManifestError::Missing {
                entry: entry.path,
                count,
            }),
        }
    }
}

/// A writer that hashes what goes through it.
pub struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: std::io::Write> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
        }
    }

    pub fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

// Tested through the extractor that uses it: `store/extract/manifest_tests.rs`.
