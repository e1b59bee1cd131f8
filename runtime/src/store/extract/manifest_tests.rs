//! The signed release manifest (`signing::manifest`) through the real
//! extractor: what `embed::seal` writes passes, and every kind of tampering
//! is refused by name.

use super::{ArchiveError, Limits, extract_release};
use crate::signing::manifest::*;
use ring::signature::{Ed25519KeyPair, KeyPair};
use sha2::{Digest, Sha256};
use std::io::Write;

type Res = Result<(), Box<dyn std::error::Error>>;

fn pair(seed: u8) -> Result<Ed25519KeyPair, Box<dyn std::error::Error>> {
    Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).map_err(|e| e.to_string().into())
}

fn public(pair: &Ed25519KeyPair) -> Result<[u8; 32], Box<dyn std::error::Error>> {
    Ok(pair.public_key().as_ref().try_into()?)
}

/// (name, kind, link target, body) in archive order.
type Item<'a> = (&'a str, tar::EntryType, &'a str, &'a [u8]);

fn tar_gz(items: &[Item]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, link, body) in items {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_size(body.len() as u64);
        header.set_mode(if *kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        if link.is_empty() {
            builder.append_data(&mut header, name, *body)?;
        } else {
            builder.append_link(&mut header, name, link)?;
        }
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&builder.into_inner()?)?;
    gz.finish()
}

const F: tar::EntryType = tar::EntryType::Regular;
const D: tar::EntryType = tar::EntryType::Directory;

fn release() -> Vec<Item<'static>> {
    vec![
        ("VERSION", F, "", b"2.4.0\n"),
        ("webapp", D, "", b""),
        ("webapp/index.html", F, "", b"<h1>2.4.0</h1>"),
        ("webapp/latest", tar::EntryType::Symlink, "index.html", b""),
        (
            "webapp/copy.html",
            tar::EntryType::Link,
            "webapp/index.html",
            b"",
        ),
        ("videos/demo.mp4", F, "", b"not installed"),
    ]
}

/// `items` sealed by `key` with `embed::seal`; returns the archive and the
/// manifest entry's bytes.
fn sealed(
    items: &[Item],
    key: &Ed25519KeyPair,
) -> Result<(Vec<u8>, Vec<u8>), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let plain = tmp.path().join("plain.tar.gz");
    std::fs::write(&plain, tar_gz(items)?)?;
    let out = tmp.path().join("sealed.tar.gz");
    crate::signing::embed::seal(&plain, &out, "2.4.0", APP_KIND, key)?;
    let bytes = std::fs::read(&out)?;
    let manifest = read_first(bytes.as_slice())?.ok_or("no manifest first")?;
    assert_eq!(manifest.payload.entries.len(), items.len());
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
    let mut first = tar.entries()?.next().ok_or("empty")??;
    let mut envelope = Vec::new();
    std::io::Read::read_to_end(&mut first, &mut envelope)?;
    Ok((bytes, envelope))
}

fn extract(archive: &[u8], keys: &[[u8; 32]]) -> Result<Vec<String>, ArchiveError> {
    let tmp = tempfile::tempdir().map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
    let dir = cap_std::fs::Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority())
        .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
    extract_release(archive, &dir, &["videos".into()], Limits::default(), keys)?;
    let mut names: Vec<String> = walk(tmp.path(), tmp.path());
    names.sort();
    Ok(names)
}

fn walk(root: &std::path::Path, dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let rel = path.strip_prefix(root).map(|p| p.display().to_string());
        out.push(rel.unwrap_or_default());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(root, &path));
        }
    }
    out
}

fn with_manifest(envelope: &[u8], items: &[Item]) -> std::io::Result<Vec<u8>> {
    let mut all: Vec<Item> = vec![(NAME, F, "", envelope)];
    all.extend_from_slice(items);
    tar_gz(&all)
}

fn refused(r: Result<Vec<String>, ArchiveError>) -> String {
    match r {
        Ok(names) => format!("accepted: {names:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_sealed_release_extracts_without_its_manifest_and_with_every_entry() -> Res {
    let key = pair(1)?;
    let (archive, _) = sealed(&release(), &key)?;
    let names = extract(&archive, &[public(&key)?])?;
    assert_eq!(
        names,
        [
            "VERSION",
            "webapp",
            "webapp/copy.html",
            "webapp/index.html",
            "webapp/latest"
        ]
    );
    // No keys on the box: the entries are still checked, the signer is not.
    assert_eq!(extract(&archive, &[])?.len(), 5);
    Ok(())
}

#[test]
fn each_tampering_is_refused_by_name() -> Res {
    let key = pair(1)?;
    let keys = [public(&key)?];
    let (_, envelope) = sealed(&release(), &key)?;
    let mut items = release();

    items[2] = ("webapp/index.html", F, "", b"<h1>2.4.X</h1>");
    let found = hex::encode(Sha256::digest(b"<h1>2.4.X</h1>"));
    let signed = hex::encode(Sha256::digest(b"<h1>2.4.0</h1>"));
    assert_eq!(
        refused(extract(&with_manifest(&envelope, &items)?, &keys)),
        format!(
            "the archive entry 'webapp/index.html' is not what was signed: sha256 {found}, the signed release manifest says {signed}"
        )
    );
    items[2] = ("webapp/index.html", F, "", b"<h1>2.4.0</h1>!");
    assert_eq!(
        refused(extract(&with_manifest(&envelope, &items)?, &keys)),
        "the archive entry 'webapp/index.html' has 15 bytes, the signed release manifest says 14"
    );
    // A skipped folder is checked too.
    let mut items = release();
    items[5] = ("videos/demo.mp4", F, "", b"not Installed");
    assert!(
        refused(extract(&with_manifest(&envelope, &items)?, &keys))
            .starts_with("the archive entry 'videos/demo.mp4' is not what was signed")
    );

    let mut items = release();
    items.insert(3, ("webapp/extra.js", F, "", b"evil()"));
    assert_eq!(
        refused(extract(&with_manifest(&envelope, &items)?, &keys)),
        "the archive entry 'webapp/extra.js' is not in the signed release manifest"
    );
    let mut items = release();
    items[3] = ("webapp/latest", tar::EntryType::Symlink, "../VERSION", b"");
    assert_eq!(
        refused(extract(&with_manifest(&envelope, &items)?, &keys)),
        "the archive entry 'webapp/latest' links to '../VERSION', the signed release manifest says 'index.html'"
    );
    let mut items = release();
    items.remove(2);
    items.remove(3); // the hard link needs its target
    assert_eq!(
        refused(extract(&with_manifest(&envelope, &items)?, &keys)),
        "the archive lacks 'webapp/index.html', which the signed release manifest lists (entries missing: 2)"
    );
    let mut items = release();
    items.push(("VERSION", F, "", b"2.4.0\n"));
    assert_eq!(
        refused(extract(&with_manifest(&envelope, &items)?, &keys)),
        "the archive entry 'VERSION' appears twice; the signed release manifest lists it once"
    );
    let mut items = release();
    items.insert(1, (NAME, F, "", &envelope));
    let late: Vec<Item> = items.clone();
    assert_eq!(
        refused(extract(&tar_gz(&late)?, &keys)),
        format!(
            "the release manifest {NAME} is entry 2 of the archive; it must be the first entry"
        )
    );
    Ok(())
}

#[test]
fn only_a_trusted_unaltered_manifest_passes() -> Res {
    let key = pair(1)?;
    let other = pair(2)?;
    let (archive, envelope) = sealed(&release(), &other)?;
    let id = hex::encode(&Sha256::digest(public(&other)?)[..8]);
    assert_eq!(
        refused(extract(&archive, &[public(&key)?])),
        format!(
            "the release manifest is signed by key {id}, which is not one of UPDATE_TRUSTED_KEYS in site.conf"
        )
    );
    // The payload edited after signing (a file's hash replaced).
    let text = String::from_utf8(envelope)?;
    let forged_hash = hex::encode(Sha256::digest(b"<h1>2.4.X</h1>"));
    let signed_hash = hex::encode(Sha256::digest(b"<h1>2.4.0</h1>"));
    let forged = text.replace(&signed_hash, &forged_hash);
    assert_ne!(forged, text);
    let mut items = release();
    items[2] = ("webapp/index.html", F, "", b"<h1>2.4.X</h1>");
    assert_eq!(
        refused(extract(
            &with_manifest(forged.as_bytes(), &items)?,
            &[public(&other)?]
        )),
        format!(
            "the release manifest's signature is not valid for key {id}: the manifest was altered after it was signed"
        )
    );
    assert_eq!(
        refused(extract(&with_manifest(b"{\"manifest\": 1}", &items)?, &[])),
        format!(
            "the release manifest {NAME} is not valid: invalid type: integer `1`, expected a string at line 1 column 14"
        )
    );
    Ok(())
}

#[test]
fn the_command_signature_or_the_manifest_vouches_and_the_version_is_bound() -> Res {
    use crate::signing::releases::{SignatureError, check_release};
    let key = pair(1)?;
    let keys = [public(&key)?];
    let (archive, _) = sealed(&release(), &key)?;
    let check = |version: &str, archive: &[u8]| {
        check_release(
            &keys,
            version,
            "00",
            None,
            &mut std::io::Cursor::new(archive.to_vec()),
        )
    };
    assert_eq!(check("2.4.0", &archive), Ok(()));
    assert_eq!(
        check("2.5.0", &archive),
        Err(SignatureError::Manifest(ManifestError::Version {
            signed: "2.4.0".into(),
            version: "2.5.0".into()
        }))
    );
    let plain = tar_gz(&release())?;
    assert_eq!(check("2.4.0", &plain), Err(SignatureError::Missing));
    assert_eq!(
        check_release(&[], "2.4.0", "00", None, &mut std::io::Cursor::new(plain)),
        Ok(())
    );
    Ok(())
}
