//! Update archives for the tests: `.tar.gz` files built entry by entry
//! (names written byte for byte, so hostile archives can be made too), and
//! snapshots of a folder tree to prove "byte-identical" after a rollback.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// One entry of a test archive.
pub enum Item<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
}

/// A gzip-compressed tar of `items`.
pub fn tar_gz(items: &[Item]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let mut header = tar::Header::new_old();
        let (name, kind, link, data): (&str, tar::EntryType, &str, &[u8]) = match item {
            Item::File(n, d) => (n, tar::EntryType::Regular, "", d),
            Item::Dir(n) => (n, tar::EntryType::Directory, "", b""),
            Item::Symlink(n, l) => (n, tar::EntryType::Symlink, l, b""),
        };
        {
            let old = header.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_cksum();
        builder.append(&header, data).expect("tar entry");
    }
    let tar = builder.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip");
    gz.finish().expect("gzip")
}

/// The names in a folder (none when it is missing): the agent's slots and
/// state files under `STATE_PATH/agent`, say.
pub fn names_in(folder: &Path) -> Vec<String> {
    std::fs::read_dir(folder)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every path under `root` (except the top-level names in `except`) with its
/// content: file bytes, `-> target` for links, `<dir>` for folders.
pub fn snapshot(root: &Path, except: &[&str]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            if except
                .iter()
                .any(|e| rel == *e || rel.starts_with(&format!("{e}/")))
            {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).expect("link");
                out.insert(rel, format!("-> {}", target.display()).into_bytes());
            } else if meta.is_dir() {
                out.insert(rel, b"<dir>".to_vec());
                stack.push(path);
            } else {
                out.insert(rel, std::fs::read(&path).expect("file"));
            }
        }
    }
    out
}

/// `plain` sealed by `pair` as `cargo xtask package` and `component
/// sign-release --embed` do: the signed manifest of its entries first.
pub fn sealed(
    plain: &[u8],
    version: &str,
    kind: &str,
    pair: &ring::signature::Ed25519KeyPair,
) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("release.tar.gz");
    std::fs::write(&path, plain).expect("archive");
    neopro_runtime::signing::embed::seal(&path, &path, version, kind, pair).expect("sealed");
    std::fs::read(&path).expect("sealed archive")
}

/// The bytes of an archive's first entry (a sealed release's manifest), to
/// put in front of other entries.
pub fn first_entry(archive: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let mut entries = tar.entries().expect("tar");
    let mut first = entries.next().expect("an entry").expect("readable");
    let mut bytes = Vec::new();
    first.read_to_end(&mut bytes).expect("first entry");
    bytes
}
