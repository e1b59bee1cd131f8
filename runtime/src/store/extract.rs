//! Safe `.tar.gz` extraction for software updates. Every entry is checked
//! before anything is written for it: no absolute paths, no `..`, no
//! symlink or hard link leading outside the destination, nothing placed
//! under a link an earlier entry made, no devices, FIFOs or sparse files;
//! all writes go through a cap-std `Dir`. Link targets are checked lexically
//! as they come, and once more at the end through the links the archive
//! made (`x/y -> ..` then `x/z -> y/..` only leaves through both). The total size
//! is bounded by a limit and by the free disk space (with a 5 % reserve),
//! checked before each file is written.
//!
//! An archive that opens with a signed release manifest
//! ([`crate::signing::manifest`]) is checked against it while it streams:
//! the manifest itself (signed by a trusted key, when keys are given) before
//! anything is written, every later entry against its line, every file's
//! sha256 as it is written, and that no listed entry is missing. The
//! manifest is not written out.
//!
//! The caller extracts into a fresh folder and removes it on error, so a
//! refused archive leaves nothing behind.

use crate::signing::manifest::{self, Checker, ManifestError, Seen, Signed};
use cap_std::fs::Dir;
use std::collections::HashSet;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Share of the filesystem kept free, as for downloads.
const RESERVE_PERCENT: u64 = 5;
/// Most entries names kept in a report's `skipped` list.
const MAX_SKIPPED_LISTED: usize = 200;
/// Links followed while resolving one link, as the kernel allows.
const MAX_LINK_HOPS: usize = 40;

/// Why an archive was refused or could not be extracted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArchiveError {
    #[error("the archive is not a valid .tar.gz: {0}")]
    Corrupt(String),
    #[error("the archive entry '{0}' has an absolute path; update archives must be relative")]
    Absolute(String),
    #[error("the archive entry '{0}' contains '..'; it would be written outside the update")]
    ParentDir(String),
    #[error("the archive entry '{entry}' is a link to '{target}', which leads outside the update")]
    LinkOut { entry: String, target: String },
    #[error(
        "the archive entry '{entry}' lies under '{link}', a link made by an earlier entry; entries go into real folders only"
    )]
    ThroughLink { entry: String, link: String },
    #[error("the archive entry '{entry}' is a {kind}; only files, folders and links are allowed")]
    Special { entry: String, kind: &'static str },
    #[error("the archive entry name {0:?} is not valid UTF-8")]
    BadName(String),
    #[error("the archive holds more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the archive holds more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error(
        "not enough disk space to extract the update: {needed} bytes plus a reserve of 5 % of the disk, only {free} free"
    )]
    DiskFull { needed: u64, free: u64 },
    #[error("cannot write '{entry}': {detail}")]
    Write { entry: String, detail: String },
    #[error(
        "the extraction was stopped: {}",
        crate::store::deadline::PAST_DEADLINE
    )]
    PastDeadline,
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// Bounds for one extraction.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_entries: u64,
    /// The command's deadline: reading the archive stops there.
    pub deadline: Option<std::time::Instant>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 4 << 30,
            max_entries: 200_000,
            deadline: None,
        }
    }
}

/// What an extraction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub files: u64,
    pub bytes: u64,
    pub skipped: Vec<String>,
}

/// A checked entry path: relative, without `.`/`..`, as a string.
fn clean_path(raw: &str) -> Result<Option<PathBuf>, ArchiveError> {
    let mut clean = PathBuf::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(ArchiveError::ParentDir(raw.to_owned())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(ArchiveError::Absolute(raw.to_owned()));
            }
        }
    }
    Ok((!clean.as_os_str().is_empty()).then_some(clean))
}

/// Whether `target`, a symlink's content at `entry`, stays inside the
/// destination when resolved lexically from the link's folder.
fn link_stays_inside(entry: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = entry.components().count() as i64 - 1;
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// One step of a link target once `.` is dropped.
enum Part {
    Up,
    Name(OsString),
}

/// `target`'s steps; None when it is absolute.
fn parts(target: &Path) -> Option<Vec<Part>> {
    target
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(Some(Part::Name(name.to_owned()))),
            Component::ParentDir => Some(Some(Part::Up)),
            Component::CurDir => None,
            Component::RootDir | Component::Prefix(_) => Some(None),
        })
        .collect()
}

/// Whether the link at `link` leads inside `dest` when every link on its
/// way is followed where it really is, as the kernel will.
fn resolves_inside(dest: &Dir, link: &Path) -> bool {
    let Ok(target) = dest.read_link(link) else {
        return false;
    };
    let Some(mut todo) = parts(&target) else {
        return false;
    };
    todo.reverse();
    // The real folder reached so far, never through a link.
    let mut real: Vec<OsString> = link
        .parent()
        .map(|p| p.iter().map(ToOwned::to_owned).collect())
        .unwrap_or_default();
    let mut hops = 0;
    while let Some(part) = todo.pop() {
        match part {
            Part::Up => {
                if real.pop().is_none() {
                    return false;
                }
            }
            Part::Name(name) => {
                real.push(name);
                let here: PathBuf = real.iter().collect();
                if dest
                    .symlink_metadata(&here)
                    .is_ok_and(|m| m.file_type().is_symlink())
                {
                    hops += 1;
                    real.pop();
                    let next = dest.read_link(&here).ok().and_then(|t| parts(&t));
                    match next {
                        Some(mut more) if hops <= MAX_LINK_HOPS => {
                            more.reverse();
                            todo.extend(more);
                        }
                        _ => return false,
                    }
                }
            }
        }
    }
    true
}

/// The first folder above `path` that is a link, if any. Real folders seen
/// are remembered: an entry never turns a folder into something else.
fn link_above(dest: &Dir, path: &Path, real_dirs: &mut HashSet<PathBuf>) -> Option<PathBuf> {
    let mut above: Vec<&Path> = path.ancestors().skip(1).collect();
    above.reverse();
    for dir in above.into_iter().filter(|d| !d.as_os_str().is_empty()) {
        if real_dirs.contains(dir) {
            continue;
        }
        match dest.symlink_metadata(dir) {
            Ok(meta) if meta.file_type().is_symlink() => return Some(dir.to_owned()),
            Ok(meta) if meta.is_dir() => {
                real_dirs.insert(dir.to_owned());
            }
            // Missing (created as a real folder) or a file (the write fails).
            _ => return None,
        }
    }
    None
}

/// `skip` entries match a path equal to them or under them (`videos`
/// matches `videos/a.mp4`).
fn is_skipped(path: &Path, skip: &[PathBuf]) -> bool {
    skip.iter().any(|s| path.starts_with(s))
}

fn utf8(bytes: &[u8]) -> Result<String, ArchiveError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ArchiveError::BadName(String::from_utf8_lossy(bytes).into_owned()))
}

fn write_error(entry: &str) -> impl Fn(std::io::Error) -> ArchiveError + '_ {
    move |e| ArchiveError::Write {
        entry: entry.to_owned(),
        detail: e.to_string(),
    }
}

/// Free bytes above the reserve where `dest` lives (None if unknown).
fn usable_space(dest: &Dir) -> Option<u64> {
    let s = rustix::fs::fstatvfs(dest).ok()?;
    let free = s.f_bavail.saturating_mul(s.f_frsize);
    let size = s.f_blocks.saturating_mul(s.f_frsize);
    Some(free.saturating_sub(size / 100 * RESERVE_PERCENT))
}

/// Removes whatever is at `path` unless it is a real directory, so a file
/// is never written through a link an earlier entry created.
fn clear_spot(dest: &Dir, path: &Path) -> std::io::Result<()> {
    match dest.symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "a folder of the same name is already there",
        )),
        Ok(_) => dest.remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn create_parent(dest: &Dir, path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => dest.create_dir_all(p),
        _ => Ok(()),
    }
}

/// A read of the archive failed: the deadline, or a damaged archive.
fn read_error(entry: Option<&str>, e: &std::io::Error) -> ArchiveError {
    if crate::store::deadline::is_past_deadline(e) {
        ArchiveError::PastDeadline
    } else {
        match entry {
            Some(name) => ArchiveError::Corrupt(format!("{name}: {e}")),
            None => ArchiveError::Corrupt(e.to_string()),
        }
    }
}

/// Extracts the gzip-compressed tar stream `src` into `dest`, leaving out
/// entries under `skip`. Stops at the first refused entry. An embedded
/// release manifest is checked for its entries only (no keys to check its
/// signature against): see [`extract_release`].
pub fn extract_tar_gz(
    src: impl Read,
    dest: &Dir,
    skip: &[String],
    limits: Limits,
) -> Result<Report, ArchiveError> {
    extract_release(src, dest, skip, limits, &[])
}

/// Reads the manifest at the top of the archive: a regular file, signed by
/// one of `keys` when there are any.
fn open_manifest(
    entry: &mut tar::Entry<'_, impl Read>,
    keys: &[[u8; 32]],
) -> Result<Checker, ArchiveError> {
    if !matches!(
        entry.header().entry_type(),
        tar::EntryType::Regular | tar::EntryType::Continuous
    ) {
        return Err(ManifestError::Invalid("it is not a regular file".into()).into());
    }
    let signed = Signed::read(&mut *entry).map_err(|e| match e {
        ManifestError::Invalid(detail) if detail.starts_with("cannot be read") => {
            read_error(Some(manifest::NAME), &std::io::Error::other(detail))
        }
        other => other.into(),
    })?;
    if !keys.is_empty() {
        signed.verify(keys)?;
    }
    Ok(Checker::new(&signed.payload))
}

/// Reads a skipped file to its end, hashing it: it is still checked
/// against the manifest.
fn drain_hashed(entry: &mut impl Read, name: &str) -> Result<String, ArchiveError> {
    let mut sink = manifest::Hashing::new(std::io::sink());
    std::io::copy(entry, &mut sink).map_err(|e| read_error(Some(name), &e))?;
    Ok(sink.finish())
}

/// [`extract_tar_gz`], with the keys a signed release manifest at the top of
/// the archive must be signed by (UPDATE_TRUSTED_KEYS; with none, only its
/// entries are checked). Whether a manifest is *required* is the caller's
/// decision (`host::archive::verify_signature`,
/// `host::agent_update`), taken before extraction.
pub fn extract_release(
    src: impl Read,
    dest: &Dir,
    skip: &[String],
    limits: Limits,
    keys: &[[u8; 32]],
) -> Result<Report, ArchiveError> {
    let skip: Vec<PathBuf> = skip
        .iter()
        .filter_map(|s| clean_path(s).ok().flatten())
        .collect();
    let src = crate::store::deadline::DeadlineReader::new(src, limits.deadline);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(src));
    let mut report = Report::default();
    let mut entries_seen: u64 = 0;
    let mut free = usable_space(dest);
    let mut real_dirs = HashSet::new();
    let mut links: Vec<(PathBuf, String)> = Vec::new();
    let mut checker: Option<Checker> = None;
    let mut position: u64 = 0;
    let corrupt = |e: std::io::Error| read_error(None, &e);
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        entries_seen += 1;
        if entries_seen > limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let raw = utf8(&entry.path_bytes())?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        position += 1;
        let Some(path) = clean_path(&raw)? else {
            continue; // "./" itself
        };
        let name = path.to_string_lossy().into_owned();
        if name == manifest::NAME {
            if position > 1 {
                return Err(ManifestError::NotFirst { position }.into());
            }
            checker = Some(open_manifest(&mut entry, keys)?);
            continue;
        }
        // What the manifest says of this entry, checked before any write;
        // `signed_sha` is what a file's bytes must hash to.
        let mut signed_sha = None;
        if let Some(checker) = checker.as_mut() {
            let link_text = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let hard_target = clean_path(&link_text)
                .ok()
                .flatten()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|| link_text.clone());
            let seen = match kind {
                tar::EntryType::Directory => Some(Seen::Dir),
                tar::EntryType::Regular | tar::EntryType::Continuous => Some(Seen::File {
                    size: entry.header().size().map_err(corrupt)?,
                }),
                tar::EntryType::Symlink => Some(Seen::Symlink { target: &link_text }),
                tar::EntryType::Link => Some(Seen::Hardlink {
                    target: &hard_target,
                }),
                // Refused below with its own message.
                _ => None,
            };
            if let Some(seen) = seen {
                signed_sha = checker.entry(&name, seen)?;
            }
        }
        if is_skipped(&path, &skip) {
            if let Some(signed) = signed_sha {
                let found = drain_hashed(&mut entry, &name)?;
                Checker::file_hash(&name, found, signed)?;
            }
            if report.skipped.len() < MAX_SKIPPED_LISTED {
                report.skipped.push(name);
            }
            continue;
        }
        let special = |what| ArchiveError::Special {
            entry: name.clone(),
            kind: what,
        };
        if let Some(link) = link_above(dest, &path, &mut real_dirs) {
            return Err(ArchiveError::ThroughLink {
                entry: name,
                link: link.to_string_lossy().into_owned(),
            });
        }
        match kind {
            tar::EntryType::Directory => {
                dest.create_dir_all(&path).map_err(write_error(&name))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.header().size().map_err(corrupt)?;
                let total = report.bytes.saturating_add(size);
                if total > limits.max_bytes {
                    return Err(ArchiveError::TooLarge {
                        limit: limits.max_bytes,
                    });
                }
                if let Some(left) = free {
                    if size > left {
                        return Err(ArchiveError::DiskFull {
                            needed: total,
                            free: left.saturating_add(report.bytes),
                        });
                    }
                    free = Some(left - size);
                }
                create_parent(dest, &path).map_err(write_error(&name))?;
                clear_spot(dest, &path).map_err(write_error(&name))?;
                let mut file = dest.create(&path).map_err(write_error(&name))?;
                let mut body = (&mut entry).take(size);
                let copied = match signed_sha {
                    // Hashed only when there is something to compare with
                    // (sha256 costs a Pi 4 about 1 s per 100 MB).
                    Some(signed) => {
                        let mut hashing = manifest::Hashing::new(&mut file);
                        let copied = std::io::copy(&mut body, &mut hashing)
                            .map_err(|e| read_error(Some(&name), &e))?;
                        if copied == size {
                            Checker::file_hash(&name, hashing.finish(), signed)?;
                        }
                        copied
                    }
                    None => std::io::copy(&mut body, &mut file)
                        .map_err(|e| read_error(Some(&name), &e))?,
                };
                if copied != size {
                    return Err(ArchiveError::Corrupt(format!("{name} is truncated")));
                }
                // Keep the execute bits; never setuid/setgid/sticky or
                // group/other write.
                let mode = entry.header().mode().unwrap_or(0o644) & 0o755;
                let perms = cap_std::fs::Permissions::from_std(
                    std::os::unix::fs::PermissionsExt::from_mode(mode),
                );
                file.set_permissions(perms).map_err(write_error(&name))?;
                report.files += 1;
                report.bytes = total;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| utf8(&b))
                    .transpose()?
                    .unwrap_or_default();
                if target.is_empty() || !link_stays_inside(&path, Path::new(&target)) {
                    return Err(ArchiveError::LinkOut {
                        entry: name,
                        target,
                    });
                }
                create_parent(dest, &path).map_err(write_error(&name))?;
                clear_spot(dest, &path).map_err(write_error(&name))?;
                dest.symlink(&target, &path).map_err(write_error(&name))?;
                links.push((path, target));
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| utf8(&b))
                    .transpose()?
                    .unwrap_or_default();
                let link_out = || ArchiveError::LinkOut {
                    entry: name.clone(),
                    target: target.clone(),
                };
                let Some(target_path) = clean_path(&target).map_err(|_| link_out())? else {
                    return Err(link_out());
                };
                if link_above(dest, &target_path, &mut real_dirs).is_some() {
                    return Err(link_out());
                }
                // Only to a regular file this archive already wrote.
                match dest.symlink_metadata(&target_path) {
                    Ok(meta) if meta.is_file() => {}
                    _ => return Err(link_out()),
                }
                create_parent(dest, &path).map_err(write_error(&name))?;
                clear_spot(dest, &path).map_err(write_error(&name))?;
                dest.hard_link(&target_path, dest, &path)
                    .map_err(write_error(&name))?;
                report.files += 1;
            }
            tar::EntryType::Char | tar::EntryType::Block => return Err(special("device")),
            tar::EntryType::Fifo => return Err(special("FIFO")),
            tar::EntryType::GNUSparse => return Err(special("sparse file")),
            _ => return Err(special("special entry")),
        }
    }
    if let Some(checker) = checker {
        checker.finish()?;
    }
    // A later link can change where an earlier one leads.
    for (path, target) in links {
        let still_a_link = dest
            .symlink_metadata(&path)
            .is_ok_and(|m| m.file_type().is_symlink());
        if still_a_link && !resolves_inside(dest, &path) {
            return Err(ArchiveError::LinkOut {
                entry: path.to_string_lossy().into_owned(),
                target,
            });
        }
    }
    // One flush for the whole tree: the caller swaps it into place next, and
    // a power cut must not find half-written files there.
    crate::store::atomic::sync_filesystem(dest).map_err(|e| ArchiveError::Write {
        entry: ".".to_owned(),
        detail: format!("cannot flush the extracted files to disk: {e}"),
    })?;
    Ok(report)
}

#[cfg(test)]
mod manifest_tests;
#[cfg(test)]
mod tests;
