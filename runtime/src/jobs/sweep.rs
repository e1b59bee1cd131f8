//! Abandoned downloads: a `.<name>.partial` (and its `.source` record) is
//! kept so that a re-sent deployment resumes where it stopped — the server
//! re-sends in-progress deployments on every reconnect. One nobody resumed
//! for a week is only lost space on the SD card, and a full card stops every
//! later deployment and update: it is deleted, and said in the log.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// How long an interrupted download is kept for a retry.
pub const KEEP_PARTIAL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Folder depth searched below each root (videos/<category>/<subcategory>).
const DEPTH: usize = 3;

/// At start, then daily: the videos root and the pushed components'
/// download folder.
pub async fn run(roots: Vec<PathBuf>) {
    let mut daily = tokio::time::interval(Duration::from_secs(24 * 3600));
    loop {
        daily.tick().await;
        let roots = roots.clone();
        let _ = tokio::task::spawn_blocking(move || sweep(&roots, KEEP_PARTIAL, SystemTime::now()))
            .await;
    }
}

fn is_leftover(name: &str) -> bool {
    name.starts_with('.') && (name.ends_with(".partial") || name.ends_with(".partial.source"))
}

/// Deletes leftovers older than `keep` under `roots` (not following links);
/// returns what was deleted.
pub fn sweep(roots: &[PathBuf], keep: Duration, now: SystemTime) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for root in roots {
        crate::store::tree::each_regular_file(root, DEPTH, &mut |entry| {
            if !is_leftover(&entry.file_name().to_string_lossy()) {
                return;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .is_some_and(|age| age > keep);
            let path = entry.path();
            if old && std::fs::remove_file(&path).is_ok() {
                removed.push(path);
            }
        });
    }
    for path in &removed {
        tracing::info!(
            "deleted {}: an interrupted download nobody resumed for {} days",
            path.display(),
            keep.as_secs() / 86_400
        );
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn touch(path: &Path, age: Duration) -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, b"x")?;
        let file = std::fs::File::options().write(true).open(path)?;
        file.set_modified(SystemTime::now() - age)
    }

    #[test]
    fn only_old_leftovers_are_deleted() -> std::io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().join("videos");
        let day = Duration::from_secs(86_400);
        let old = root.join("Match/.but.mp4.partial");
        let old_record = root.join("Match/.but.mp4.partial.source");
        let young = root.join("Match/.arret.mp4.partial");
        let video = root.join("Match/old-video.mp4");
        let hidden = root.join("Match/.hidden-but-not-a-download");
        for (path, age) in [
            (&old, 8 * day),
            (&old_record, 8 * day),
            (&young, day),
            (&video, 30 * day),
            (&hidden, 30 * day),
        ] {
            touch(path, age)?;
        }
        let mut removed = sweep(
            &[root, tmp.path().join("absent")],
            KEEP_PARTIAL,
            SystemTime::now(),
        );
        removed.sort();
        assert_eq!(removed, vec![old.clone(), old_record.clone()]);
        assert!(!old.exists() && !old_record.exists());
        assert!(young.exists() && video.exists() && hidden.exists());
        Ok(())
    }
}
