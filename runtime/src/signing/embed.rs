//! Writes a release that carries its own signature: the archive again,
//! with the signed manifest of [`super::manifest`] as its first entry
//! (`neopro-runtime component sign-release --embed`, used by `cargo xtask
//! package`). Operators' tool, never run on a box.

use super::manifest::{self, Entry, Kind, Payload};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// Why an archive cannot be sealed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path}: the entry '{entry}' is a {kind:?}; a release holds only files, folders and links"
    )]
    Special {
        path: String,
        entry: String,
        kind: tar::EntryType,
    },
    #[error("{path}: the entry '{entry}' has a name that is not valid UTF-8 or leaves the archive")]
    BadName { path: String, entry: String },
    #[error("{path}: the entry '{entry}' appears twice")]
    Twice { path: String, entry: String },
    #[error("cannot write the manifest: {0}")]
    Json(#[from] serde_json::Error),
}

/// The entries of `archive` other than a manifest it already opens with
/// (re-sealing replaces it), as the box will check them.
fn entries_of(archive: &Path) -> Result<Vec<Entry>, EmbedError> {
    let path = archive.display().to_string();
    let read = |source| EmbedError::Read {
        path: path.clone(),
        source,
    };
    let mut tar = open_archive(archive).map_err(read)?;
    let mut out: Vec<Entry> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for entry in tar.entries().map_err(read)? {
        let mut entry = entry.map_err(read)?;
        let Some(kind) = release_entry_type(&entry) else {
            continue;
        };
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(name) = manifest::entry_name(&raw) else {
            if raw.trim_start_matches("./").is_empty() || raw == "." {
                continue; // the archive's root
            }
            return Err(EmbedError::BadName { path, entry: raw });
        };
        if name == manifest::NAME && out.is_empty() && names.is_empty() {
            names.insert(name);
            continue;
        }
        if !names.insert(name.clone()) {
            return Err(EmbedError::Twice { path, entry: name });
        }
        let link = |entry: &tar::Entry<_>| -> Option<String> {
            entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        let line = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut hasher = Sha256::new();
                let mut buf = vec![0u8; 64 << 10];
                let mut size = 0u64;
                loop {
                    let n = entry.read(&mut buf).map_err(read)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    size += n as u64;
                }
                Entry {
                    path: name,
                    kind: Kind::File,
                    size: Some(size),
                    sha256: Some(hex::encode(hasher.finalize())),
                    target: None,
                }
            }
            tar::EntryType::Directory => Entry {
                path: name,
                kind: Kind::Dir,
                size: None,
                sha256: None,
                target: None,
            },
            tar::EntryType::Symlink => Entry {
                target: link(&entry),
                path: name,
                kind: Kind::Symlink,
                size: None,
                sha256: None,
            },
            tar::EntryType::Link => Entry {
                // As the box compares it: the cleaned name of the file.
                target: link(&entry).map(|t| manifest::entry_name(&t).unwrap_or(t)),
                path: name,
                kind: Kind::Hardlink,
                size: None,
                sha256: None,
            },
            other => {
                return Err(EmbedError::Special {
                    path,
                    entry: name,
                    kind: other,
                });
            }
        };
        out.push(line);
    }
    Ok(out)
}

/// Writes `output`: the signed manifest of `input` (for `version`, of
/// `kind`), then every entry of `input` in its order. `input` and `output`
/// may be the same path (written to a temporary file, then renamed).
pub fn seal(
    input: &Path,
    output: &Path,
    version: &str,
    kind: &str,
    pair: &ring::signature::Ed25519KeyPair,
) -> Result<(), EmbedError> {
    let entries = entries_of(input)?;
    let payload = Payload {
        format: manifest::FORMAT,
        kind: kind.to_owned(),
        version: version.to_owned(),
        entries,
    };
    let sealed = manifest::seal(&payload, pair)?;
    let in_path = input.display().to_string();
    let out_path = output.display().to_string();
    let read = |source| EmbedError::Read {
        path: in_path.clone(),
        source,
    };
    let write = |source| EmbedError::Write {
        path: out_path.clone(),
        source,
    };
    let temp = output.with_extension("sealing");
    let file = std::fs::File::create(&temp).map_err(write)?;
    let gz = flate2::write::GzEncoder::new(
        std::io::BufWriter::new(file),
        flate2::Compression::default(),
    );
    let mut builder = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(sealed.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    builder
        .append_data(&mut header, manifest::NAME, sealed.as_slice())
        .map_err(write)?;
    let mut tar = open_archive(input).map_err(read)?;
    let mut first = true;
    for entry in tar.entries().map_err(read)? {
        let mut entry = entry.map_err(read)?;
        let Some(kind) = release_entry_type(&entry) else {
            continue;
        };
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(name) = manifest::entry_name(&raw) else {
            continue;
        };
        let was_first = std::mem::replace(&mut first, false);
        if was_first && name == manifest::NAME {
            continue;
        }
        let mut header = entry.header().clone();
        match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                builder
                    .append_link(&mut header, &name, &target)
                    .map_err(write)?;
            }
            _ => builder
                .append_data(&mut header, &name, &mut entry)
                .map_err(write)?,
        }
    }
    let gz = builder.into_inner().map_err(write)?;
    let mut inner = gz.finish().map_err(write)?;
    std::io::Write::flush(&mut inner).map_err(write)?;
    let file = inner.into_inner().map_err(|e| write(e.into_error()))?;
    file.sync_all().map_err(write)?;
    drop(file);
    std::fs::rename(&temp, output).map_err(write)?;
    Ok(())
}

/// A `.tar.gz` release opened for reading, entry by entry.
type Archive = tar::Archive<flate2::read::GzDecoder<std::io::BufReader<std::fs::File>>>;

fn open_archive(path: &Path) -> std::io::Result<Archive> {
    let file = std::fs::File::open(path)?;
    Ok(tar::Archive::new(flate2::read::GzDecoder::new(
        std::io::BufReader::new(file),
    )))
}

/// An entry's type, or `None` for a pax header: it describes the next
/// entry and is not part of the release.
fn release_entry_type<R: std::io::Read>(entry: &tar::Entry<'_, R>) -> Option<tar::EntryType> {
    let kind = entry.header().entry_type();
    (!matches!(
        kind,
        tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
    ))
    .then_some(kind)
}
