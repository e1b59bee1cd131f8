//! A daily copy of the web app's configuration.json, so a bad edit (from
//! the dashboard or by hand) can be undone locally: files
//! `config-<time>.json` (upstream's names) in `NEOPRO_ROOT/data/backups`,
//! the 7 newest kept. A copy identical to the newest backup is not made
//! again, so the 7 kept are 7 different versions.
//!
//! The backups folder is the web app's: it is opened once without following
//! a link its user could have placed, and the listing, the comparison, the
//! write and the deletions all happen inside that open folder.

use cap_std::fs::Dir;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub const KEEP: usize = 7;
pub const INTERVAL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("configuration not backed up: {0}")]
    Read(crate::store::untrusted_file::UntrustedFileError),
    #[error("cannot write the configuration backup in {dir}: {source}")]
    Write {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Names of the backups in `dir`, oldest first (the names sort by time).
fn backups(dir: &Dir) -> Vec<String> {
    let mut found: Vec<String> = dir
        .entries()
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("config-") && n.ends_with(".json"))
        .collect();
    found.sort();
    found
}

/// Copies `config_path` into `dir` unless unchanged since the newest
/// backup, then keeps the [`KEEP`] newest. Returns the new file, if any.
pub fn backup_once(
    config_path: &Path,
    dir: &Path,
    now: SystemTime,
) -> Result<Option<PathBuf>, BackupError> {
    use crate::store::untrusted_file::{UntrustedFileError, read_bounded, read_bounded_in};
    // The web app's folder: never through a link, never a FIFO, bounded.
    let max = crate::host::config_store::MAX_DOCUMENT_BYTES;
    let contents = match read_bounded(config_path, max) {
        Ok(c) => c,
        Err(UntrustedFileError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(BackupError::Read(e)),
    };
    let write_err = |source| BackupError::Write {
        dir: dir.to_owned(),
        source,
    };
    let folder = crate::store::atomic::open_state_dir(dir).map_err(write_err)?;
    if let Some(newest) = backups(&folder).last()
        && read_bounded_in(&folder, Path::new(newest), &dir.join(newest), max)
            .is_ok_and(|old| old == contents)
    {
        return Ok(None);
    }
    let name = format!(
        "config-{}.json",
        crate::platform::clock::iso8601(now).replace([':', '.'], "-")
    );
    crate::store::atomic::write(&folder, Path::new(&name), &contents).map_err(write_err)?;
    // Names sort by time only while the clock is right: a Pi that booted
    // in the past names its copy before the others, so the one just made
    // is never a candidate; it and the KEEP - 1 newest others stay.
    let others: Vec<String> = backups(&folder)
        .into_iter()
        .filter(|n| *n != name)
        .collect();
    for old in &others[..others.len().saturating_sub(KEEP - 1)] {
        let _ = folder.remove_file(old);
    }
    Ok(Some(dir.join(name)))
}

/// The agent's loop: a backup at start, then every 24 hours.
pub async fn run(config_path: PathBuf, dir: PathBuf) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (c, d) = (config_path.clone(), dir.clone());
        match tokio::task::spawn_blocking(move || backup_once(&c, &d, SystemTime::now())).await {
            Ok(Ok(Some(file))) => tracing::info!("configuration backed up to {}", file.display()),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!("{e}"),
            Err(e) => tracing::warn!("configuration backup stopped: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    /// The backups in `dir`, oldest first.
    fn kept_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        let folder = Dir::open_ambient_dir(dir, cap_std::ambient_authority())?;
        Ok(backups(&folder).iter().map(|n| dir.join(n)).collect())
    }

    #[test]
    fn one_backup_per_change_and_seven_kept() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("configuration.json");
        let backups_dir = dir.path().join("data/backups");
        assert_eq!(backup_once(&config, &backups_dir, SystemTime::now())?, None);
        let day = |n: u64| UNIX_EPOCH + Duration::from_secs(1_790_000_000 + n * 86_400);
        std::fs::write(&config, "{\"v\":0}")?;
        let first = backup_once(&config, &backups_dir, day(0))?.ok_or("first backup")?;
        assert_eq!(
            first.file_name().and_then(|n| n.to_str()),
            Some("config-2026-09-21T14-13-20-000Z.json")
        );
        // Unchanged: no second copy.
        assert_eq!(backup_once(&config, &backups_dir, day(1))?, None);
        for n in 1..=9 {
            std::fs::write(&config, format!("{{\"v\":{n}}}"))?;
            assert!(backup_once(&config, &backups_dir, day(n + 1))?.is_some());
        }
        let kept = kept_in(&backups_dir)?;
        assert_eq!(kept.len(), KEEP);
        assert_eq!(std::fs::read_to_string(&kept[0])?, "{\"v\":3}");
        assert_eq!(std::fs::read_to_string(&kept[6])?, "{\"v\":9}");

        // The clock went back (a Pi without network): the new copy sorts
        // first by name but is kept; the oldest of the others goes.
        std::fs::write(&config, "{\"v\":10}")?;
        let behind = backup_once(&config, &backups_dir, day(0) - Duration::from_secs(86_400))?
            .ok_or("backup with the clock behind")?;
        assert_eq!(std::fs::read_to_string(&behind)?, "{\"v\":10}");
        let kept = kept_in(&backups_dir)?;
        assert_eq!(kept.len(), KEEP);
        assert_eq!(kept[0], behind);
        assert_eq!(std::fs::read_to_string(&kept[1])?, "{\"v\":4}");
        assert_eq!(std::fs::read_to_string(&kept[6])?, "{\"v\":9}");
        Ok(())
    }

    #[test]
    fn a_backups_folder_swapped_for_a_link_gets_nothing_written_behind_it()
    -> Result<(), Box<dyn std::error::Error>> {
        let neopro = crate::store::safe_folder::shared_test_folder()?;
        let config = neopro.path().join("configuration.json");
        std::fs::write(&config, "{\"v\":1}")?;
        let state = tempfile::tempdir()?;
        std::fs::write(state.path().join("config-0.json"), "agent state")?;
        std::os::unix::fs::symlink(state.path(), neopro.path().join("data"))?;
        let err = backup_once(
            &config,
            &neopro.path().join("data/backups"),
            SystemTime::now(),
        )
        .err()
        .ok_or("backed up through the link")?;
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "{} is a symbolic link in",
                neopro.path().join("data").display()
            )),
            "{text}"
        );
        let mut left: Vec<_> = std::fs::read_dir(state.path())?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        left.sort();
        assert_eq!(left, ["config-0.json"]);
        assert_eq!(
            std::fs::read_to_string(state.path().join("config-0.json"))?,
            "agent state"
        );
        Ok(())
    }
}
