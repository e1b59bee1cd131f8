use super::*;
use proptest::prelude::*;
use std::io::Write;

/// One raw tar entry; names are written byte for byte (the `tar` crate's
/// own builder refuses `..`, which is exactly what we need to send).
#[derive(Debug, Clone)]
struct Raw {
    kind: tar::EntryType,
    name: Vec<u8>,
    link: Vec<u8>,
    data: Vec<u8>,
}

fn raw(kind: tar::EntryType, name: &str, link: &str, data: &[u8]) -> Raw {
    Raw {
        kind,
        name: name.as_bytes().to_vec(),
        link: link.as_bytes().to_vec(),
        data: data.to_vec(),
    }
}

fn tar_gz(entries: &[Raw]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut header = tar::Header::new_old();
        {
            let old = header.as_old_mut();
            let n = e.name.len().min(99);
            old.name[..n].copy_from_slice(&e.name[..n]);
            let l = e.link.len().min(99);
            old.linkname[..l].copy_from_slice(&e.link[..l]);
        }
        header.set_entry_type(e.kind);
        header.set_size(e.data.len() as u64);
        header.set_mode(0o4777);
        header.set_cksum();
        builder.append(&header, e.data.as_slice())?;
    }
    let tar = builder.into_inner()?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar)?;
    gz.finish()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    stage: PathBuf,
    outside: PathBuf,
    dir: Dir,
}

fn fixture() -> std::io::Result<Fixture> {
    let tmp = tempfile::tempdir()?;
    let stage = tmp.path().join("root/stage");
    let outside = tmp.path().join("root");
    std::fs::create_dir_all(&stage)?;
    std::fs::write(outside.join("canary"), "keep")?;
    let dir = Dir::open_ambient_dir(&stage, cap_std::ambient_authority())?;
    Ok(Fixture {
        _tmp: tmp,
        stage,
        outside,
        dir,
    })
}

/// Every path under `root`, with what it is (symlinks not followed).
fn listing(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {
                    out.push((rel, "dir".to_owned()));
                    stack.push(path);
                }
                Ok(m) if m.file_type().is_symlink() => {
                    let target = std::fs::read_link(&path).unwrap_or_default();
                    out.push((rel, format!("-> {}", target.display())));
                }
                Ok(_) => out.push((
                    rel,
                    std::fs::read(&path)
                        .map(|b| format!("{} bytes", b.len()))
                        .unwrap_or_default(),
                )),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

fn skip() -> Vec<String> {
    ["videos", "logs", "backups", "webapp/configuration.json"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

#[test]
fn a_release_is_extracted_with_its_links_and_skips() -> Result<(), Box<dyn std::error::Error>> {
    use tar::EntryType::*;
    let f = fixture()?;
    let gz = tar_gz(&[
        raw(Directory, "./", "", b""),
        raw(Directory, "./webapp/", "", b""),
        raw(Regular, "./webapp/index.html", "", b"<html>"),
        raw(Regular, "webapp/configuration.json", "", b"{}"),
        raw(Regular, "videos/a.mp4", "", b"video"),
        raw(Regular, "server/bin/start", "", b"#!/bin/sh"),
        raw(
            Symlink,
            "server/node_modules/.bin/x",
            "../../bin/start",
            b"",
        ),
        raw(Link, "server/copy", "server/bin/start", b""),
    ])?;
    let report = extract_tar_gz(gz.as_slice(), &f.dir, &skip(), Limits::default())?;
    assert_eq!(
        report,
        Report {
            files: 3,
            bytes: 15,
            skipped: vec!["webapp/configuration.json".into(), "videos/a.mp4".into()],
        }
    );
    assert_eq!(std::fs::read(f.stage.join("webapp/index.html"))?, b"<html>");
    assert!(!f.stage.join("webapp/configuration.json").exists());
    assert!(!f.stage.join("videos").exists());
    assert_eq!(
        std::fs::read(f.stage.join("server/node_modules/.bin/x"))?,
        b"#!/bin/sh"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(f.stage.join("server/bin/start"))?
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755, "no setuid, no group/other write");
    Ok(())
}

#[test]
fn tar_slip_archives_are_refused() -> Result<(), Box<dyn std::error::Error>> {
    use tar::EntryType::*;
    let cases = [
        (
            raw(Regular, "../evil", "", b"x"),
            ArchiveError::ParentDir("../evil".into()),
        ),
        (
            raw(Regular, "webapp/../../evil", "", b"x"),
            ArchiveError::ParentDir("webapp/../../evil".into()),
        ),
        (
            raw(Regular, "/etc/evil", "", b"x"),
            ArchiveError::Absolute("/etc/evil".into()),
        ),
        (
            raw(Symlink, "webapp/etc", "/etc", b""),
            ArchiveError::LinkOut {
                entry: "webapp/etc".into(),
                target: "/etc".into(),
            },
        ),
        (
            raw(Symlink, "webapp/up", "../..", b""),
            ArchiveError::LinkOut {
                entry: "webapp/up".into(),
                target: "../..".into(),
            },
        ),
        (
            raw(Link, "webapp/passwd", "/etc/passwd", b""),
            ArchiveError::LinkOut {
                entry: "webapp/passwd".into(),
                target: "/etc/passwd".into(),
            },
        ),
        (
            raw(Char, "webapp/null", "", b""),
            ArchiveError::Special {
                entry: "webapp/null".into(),
                kind: "device",
            },
        ),
        (
            raw(Fifo, "webapp/pipe", "", b""),
            ArchiveError::Special {
                entry: "webapp/pipe".into(),
                kind: "FIFO",
            },
        ),
    ];
    for (entry, expected) in cases {
        let f = fixture()?;
        let before = listing(&f.outside);
        let gz = tar_gz(&[entry])?;
        assert_eq!(
            extract_tar_gz(gz.as_slice(), &f.dir, &skip(), Limits::default()),
            Err(expected)
        );
        assert_eq!(listing(&f.outside), before, "nothing written");
    }
    Ok(())
}

#[test]
fn a_link_planted_by_one_entry_cannot_carry_a_later_write_out()
-> Result<(), Box<dyn std::error::Error>> {
    use tar::EntryType::*;
    let f = fixture()?;
    // `a` is a legitimate link inside; writing "a" again must replace the
    // link, not write through it.
    let gz = tar_gz(&[
        raw(Regular, "target", "", b"original"),
        raw(Symlink, "a", "target", b""),
        raw(Regular, "a", "", b"new"),
    ])?;
    extract_tar_gz(gz.as_slice(), &f.dir, &[], Limits::default())?;
    assert_eq!(std::fs::read(f.stage.join("target"))?, b"original");
    assert_eq!(std::fs::read(f.stage.join("a"))?, b"new");
    Ok(())
}

#[test]
fn nothing_goes_under_a_link_an_earlier_entry_made() -> Result<(), Box<dyn std::error::Error>> {
    use tar::EntryType::*;
    // Lexically `a/b -> ..` is the destination itself; through `a -> .` it
    // is its parent.
    let cases = [
        vec![raw(Symlink, "a", ".", b""), raw(Symlink, "a/b", "..", b"")],
        vec![
            raw(Directory, "d/", "", b""),
            raw(Symlink, "d/a", ".", b""),
            raw(Regular, "d/a/file", "", b"x"),
        ],
    ];
    let expected = [
        ArchiveError::ThroughLink {
            entry: "a/b".into(),
            link: "a".into(),
        },
        ArchiveError::ThroughLink {
            entry: "d/a/file".into(),
            link: "d/a".into(),
        },
    ];
    for (entries, expected) in cases.iter().zip(expected) {
        let f = fixture()?;
        let outside = |f: &Fixture| {
            listing(&f.outside)
                .into_iter()
                .filter(|(p, _)| !p.starts_with("stage"))
                .collect::<Vec<_>>()
        };
        let before = outside(&f);
        let gz = tar_gz(entries)?;
        assert_eq!(
            extract_tar_gz(gz.as_slice(), &f.dir, &[], Limits::default()),
            Err(expected)
        );
        assert!(!f.stage.join("b").exists() && !f.stage.join("d/file").exists());
        assert_eq!(outside(&f), before, "nothing written outside");
    }
    Ok(())
}

#[test]
fn a_chain_of_links_leading_out_is_refused_in_any_order() -> Result<(), Box<dyn std::error::Error>>
{
    use tar::EntryType::*;
    // Each link alone stays inside; `x/z` leaves through `x/y`.
    let up = raw(Symlink, "x/y", "..", b"");
    let through = raw(Symlink, "x/z", "y/..", b"");
    let deeper = raw(Symlink, "x/w", "z/../etc", b"");
    for entries in [
        vec![up.clone(), through.clone()],
        vec![through.clone(), up.clone()],
        vec![up.clone(), deeper.clone(), through.clone()],
    ] {
        let f = fixture()?;
        let gz = tar_gz(&entries)?;
        assert!(
            matches!(
                extract_tar_gz(gz.as_slice(), &f.dir, &[], Limits::default()),
                Err(ArchiveError::LinkOut { entry, .. }) if entry == "x/z" || entry == "x/w"
            ),
            "{entries:?}"
        );
    }
    // Chains that stay inside are kept.
    let f = fixture()?;
    let gz = tar_gz(&[
        raw(Regular, "server/bin/start", "", b"go"),
        raw(Symlink, "server/lib", "bin", b""),
        raw(Symlink, "server/up", "..", b""),
        raw(
            Symlink,
            "webapp/start",
            "../server/up/server/lib/start",
            b"",
        ),
    ])?;
    extract_tar_gz(gz.as_slice(), &f.dir, &[], Limits::default())?;
    assert_eq!(std::fs::read(f.stage.join("webapp/start"))?, b"go");
    Ok(())
}

#[test]
fn corrupt_and_oversized_archives_are_refused() -> Result<(), Box<dyn std::error::Error>> {
    let f = fixture()?;
    assert!(matches!(
        extract_tar_gz(&b"not a gzip stream"[..], &f.dir, &[], Limits::default()),
        Err(ArchiveError::Corrupt(_))
    ));
    let mut gz = tar_gz(&[raw(tar::EntryType::Regular, "big", "", &[7u8; 4096])])?;
    assert_eq!(
        extract_tar_gz(
            gz.as_slice(),
            &f.dir,
            &[],
            Limits {
                max_bytes: 100,
                max_entries: 10,
                deadline: None,
            }
        ),
        Err(ArchiveError::TooLarge { limit: 100 })
    );
    // Truncated stream.
    gz.truncate(gz.len() / 2);
    assert!(extract_tar_gz(gz.as_slice(), &f.dir, &[], Limits::default()).is_err());
    Ok(())
}

#[test]
fn an_extraction_past_the_deadline_stops() -> std::io::Result<()> {
    let f = fixture()?;
    let gz = tar_gz(&[raw(tar::EntryType::Regular, "a", "", &[7u8; 4096])])?;
    assert_eq!(
        extract_tar_gz(
            gz.as_slice(),
            &f.dir,
            &[],
            Limits {
                deadline: Some(std::time::Instant::now()),
                ..Limits::default()
            }
        ),
        Err(ArchiveError::PastDeadline)
    );
    Ok(())
}

fn name_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![
            "a", "b", "..", ".", "", "/", "webapp", "videos", "x\u{e9}",
        ]),
        1..5,
    )
    .prop_map(|parts| parts.join("/").into_bytes())
}

fn entry_strategy() -> impl Strategy<Value = Raw> {
    use tar::EntryType::*;
    (
        prop::sample::select(vec![
            Regular, Directory, Symlink, Link, Fifo, Char, Block, GNUSparse,
        ]),
        name_strategy(),
        name_strategy(),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(kind, name, link, data)| Raw {
            kind,
            name,
            link,
            data,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Any archive: no panic, nothing outside the staging folder changes,
    /// and every link left inside points inside.
    #[test]
    fn no_archive_writes_outside_staging(entries in prop::collection::vec(entry_strategy(), 1..8)) {
        let f = fixture().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let before = listing(&f.outside).into_iter()
            .filter(|(p, _)| !p.starts_with("stage"))
            .collect::<Vec<_>>();
        let gz = tar_gz(&entries).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let extracted = extract_tar_gz(gz.as_slice(), &f.dir, &skip(), Limits::default()).is_ok();
        let after = listing(&f.outside).into_iter()
            .filter(|(p, _)| !p.starts_with("stage"))
            .collect::<Vec<_>>();
        prop_assert_eq!(after, before);
        let stage = f.stage.canonicalize().map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (path, what) in listing(&f.stage) {
            if let Some(target) = what.strip_prefix("-> ") {
                prop_assert!(link_stays_inside(Path::new(&path), Path::new(target)), "{} {}", path, what);
                // Followed for real, an accepted tree's links stay inside.
                if let (true, Ok(real)) = (extracted, f.stage.join(&path).canonicalize()) {
                    prop_assert!(real.starts_with(&stage), "{} {} -> {}", path, what, real.display());
                }
            }
        }
    }

    /// Arbitrary bytes, gzipped or not: an error or a report, never a panic.
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), gzip in any::<bool>()) {
        let f = fixture().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let input = if gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            gz.finish().map_err(|e| TestCaseError::fail(e.to_string()))?
        } else {
            bytes
        };
        let _ = extract_tar_gz(input.as_slice(), &f.dir, &[], Limits::default());
        prop_assert_eq!(listing(&f.outside).into_iter().filter(|(p, _)| !p.starts_with("stage")).count(), 1);
    }
}
