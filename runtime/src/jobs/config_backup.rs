//! A daily copy of the web app's configuration.json, so a bad edit (from
//! the dashboard or by hand) can be undone locally: files
//! `config-<time>.json` (upstream's names) in `NEOPRO_ROOT/data/backups`,
//! the 7 newest kept. A copy identical to the newest backup is not made
//! again, so the 7 kept are 7 different versions.

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

/// Backups in `dir`, oldest first (the names sort by time).
fn backups(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("config-") && n.ends_with(".json"))
        })
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
    use crate::store::untrusted_file::{UntrustedFileError, read_bounded};
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
    let existing = backups(dir);
    if let Some(newest) = existing.last()
        && std::fs::read(newest).is_ok_and(|old| old == contents)
    {
        return Ok(None);
    }
    let name = format!(
        "config-{}.json",
        crate::platform::clock::iso8601(now).replace([':', '.'], "-")
    );
    let folder = crate::store::atomic::open_state_dir(dir).map_err(write_err)?;
    crate::store::atomic::write(&folder, Path::new(&name), &contents).map_err(write_err)?;
    let written = dir.join(name);
    // Names sort by time only while the clock is right: a Pi that booted
    // in the past names its copy before the others, so the one just made
    // is never a candidate; it and the KEEP - 1 newest others stay.
    let others: Vec<PathBuf> = backups(dir).into_iter().filter(|p| *p != written).collect();
    for old in &others[..others.len().saturating_sub(KEEP - 1)] {
        let _ = std::fs::remove_file(old);
    }
    Ok(Some(written))
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
        let kept = backups(&backups_dir);
        assert_eq!(kept.len(), KEEP);
        assert_eq!(std::fs::read_to_string(&kept[0])?, "{\"v\":3}");
        assert_eq!(std::fs::read_to_string(&kept[6])?, "{\"v\":9}");

        // The clock went back (a Pi without network): the new copy sorts
        // first by name but is kept; the oldest of the others goes.
        std::fs::write(&config, "{\"v\":10}")?;
        let behind = backup_once(&config, &backups_dir, day(0) - Duration::from_secs(86_400))?
            .ok_or("backup with the clock behind")?;
        assert_eq!(std::fs::read_to_string(&behind)?, "{\"v\":10}");
        let kept = backups(&backups_dir);
        assert_eq!(kept.len(), KEEP);
        assert_eq!(kept[0], behind);
        assert_eq!(std::fs::read_to_string(&kept[1])?, "{\"v\":4}");
        assert_eq!(std::fs::read_to_string(&kept[6])?, "{\"v\":9}");
        Ok(())
    }
}
