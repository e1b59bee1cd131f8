//! Copying folder trees between roots, for software backups and restores.
//! Symlinks are copied as links (their text verbatim), never followed, so a
//! backup is an exact image of what it saved and a link cannot make the copy
//! read or write outside its roots; devices and FIFOs are refused.

use crate::store::deadline::{self, DeadlineReader};
use cap_std::fs::Dir;
use std::io;
use std::path::Path;
use std::time::Instant;

/// Copies `from` (a file, link or folder) under `src` to `to` under `dst`,
/// which must not exist. Returns the bytes of file content copied. Stops
/// with a `TimedOut` error once `deadline` has passed.
pub fn copy_tree(
    src: &Dir,
    from: &Path,
    dst: &Dir,
    to: &Path,
    deadline: Option<Instant>,
) -> io::Result<u64> {
    deadline::check(deadline)?;
    let meta = src.symlink_metadata(from)?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = src.read_link_contents(from)?;
        dst.symlink_contents(target, to)?;
        Ok(0)
    } else if kind.is_file() {
        if dst.symlink_metadata(to).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already exists", to.display()),
            ));
        }
        copy_file(src, from, dst, to, &meta, deadline)
    } else if kind.is_dir() {
        dst.create_dir(to)?;
        let mut bytes = 0u64;
        let mut names: Vec<_> = src
            .read_dir(from)?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        for name in names {
            bytes = bytes.saturating_add(copy_tree(
                src,
                &from.join(&name),
                dst,
                &to.join(&name),
                deadline,
            )?);
        }
        dst.set_permissions(to, meta.permissions())?;
        Ok(bytes)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is neither a file, a folder nor a link", from.display()),
        ))
    }
}

/// One file's content and permissions, read through the deadline (a single
/// video can take minutes on an SD card).
fn copy_file(
    src: &Dir,
    from: &Path,
    dst: &Dir,
    to: &Path,
    meta: &cap_std::fs::Metadata,
    deadline: Option<Instant>,
) -> io::Result<u64> {
    let input = src.open(from)?;
    let mut output = dst.create(to)?;
    let mut reader = DeadlineReader::new(io::BufReader::with_capacity(256 << 10, input), deadline);
    let bytes = io::copy(&mut reader, &mut output)?;
    output.set_permissions(meta.permissions())?;
    Ok(bytes)
}

/// Calls `found` with every regular file under `dir`, `depth` folders
/// deep. Links are never followed (neither to folders nor to files), and
/// unreadable folders are skipped: the sweeps that use it only remove what
/// they can see is theirs.
pub fn each_regular_file(dir: &Path, depth: usize, found: &mut dyn FnMut(&std::fs::DirEntry)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if depth > 0 {
                each_regular_file(&entry.path(), depth - 1, found);
            }
        } else if kind.is_file() {
            found(&entry);
        }
    }
}

/// The names in `dir`, sorted (none when it cannot be read): what tests
/// compare a folder's content with.
#[cfg(test)]
pub fn sorted_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Removes a file, link or folder tree at `path`, never following links.
pub fn remove_tree(dir: &Dir, path: &Path) -> io::Result<()> {
    let meta = dir.symlink_metadata(path)?;
    if meta.is_dir() {
        dir.remove_dir_all(path)
    } else {
        dir.remove_file(path)
    }
}

/// Bytes of file content under `path` (links not followed).
pub fn tree_size(dir: &Dir, path: &Path, deadline: Option<Instant>) -> io::Result<u64> {
    deadline::check(deadline)?;
    let meta = dir.symlink_metadata(path)?;
    if meta.is_dir() {
        let mut total = 0u64;
        for entry in dir.read_dir(path)? {
            let entry = entry?;
            total = total.saturating_add(tree_size(dir, &path.join(entry.file_name()), deadline)?);
        }
        Ok(total)
    } else if meta.is_file() {
        Ok(meta.len())
    } else {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_tree_is_copied_exactly_and_removed_without_following_links() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let a = tmp.path().join("a");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(a.join("webapp/sub"))?;
        std::fs::create_dir_all(&outside)?;
        std::fs::write(outside.join("keep"), "keep")?;
        std::fs::write(a.join("webapp/index.html"), "<html>")?;
        std::fs::write(a.join("webapp/sub/run"), "#!")?;
        std::fs::set_permissions(
            a.join("webapp/sub/run"),
            std::fs::Permissions::from_mode(0o755),
        )?;
        std::os::unix::fs::symlink(&outside, a.join("webapp/out"))?;
        std::os::unix::fs::symlink("sub/run", a.join("webapp/in"))?;
        let b = tmp.path().join("b");
        std::fs::create_dir_all(&b)?;
        let src = Dir::open_ambient_dir(&a, cap_std::ambient_authority())?;
        let dst = Dir::open_ambient_dir(&b, cap_std::ambient_authority())?;

        assert_eq!(
            copy_tree(&src, Path::new("webapp"), &dst, Path::new("copy"), None)?,
            8
        );
        assert_eq!(std::fs::read(b.join("copy/index.html"))?, b"<html>");
        assert_eq!(
            std::fs::metadata(b.join("copy/sub/run"))?
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
        assert_eq!(std::fs::read_link(b.join("copy/out"))?, outside);
        assert_eq!(std::fs::read_link(b.join("copy/in"))?, Path::new("sub/run"));
        assert!(copy_tree(&src, Path::new("webapp"), &dst, Path::new("copy"), None).is_err());

        remove_tree(&dst, Path::new("copy"))?;
        assert!(!b.join("copy").exists());
        assert_eq!(
            std::fs::read(outside.join("keep"))?,
            b"keep",
            "link not followed"
        );
        assert_eq!(tree_size(&src, Path::new("webapp"), None)?, 8);
        Ok(())
    }

    #[test]
    fn a_copy_stops_at_the_deadline() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        std::fs::create_dir(tmp.path().join("a"))?;
        std::fs::write(tmp.path().join("a/f"), b"data")?;
        let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority())?;
        let past = Some(Instant::now());
        let err = copy_tree(&dir, Path::new("a"), &dir, Path::new("b"), past).err();
        assert!(
            err.as_ref().is_some_and(deadline::is_past_deadline),
            "{err:?}"
        );
        assert!(tree_size(&dir, Path::new("a"), past).is_err());
        Ok(())
    }
}
