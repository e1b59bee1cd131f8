//! Backups under BACKUP_PATH: `backup-<timestamp>-<version>` folders, each
//! with a marker file so that retention only ever removes backups this agent
//! made (upstream removed any folder beyond the 5 newest).

use neopro_guest_sdk::serde_json::json;
use neopro_guest_sdk::{Error, Root, files, time};

/// Marks a complete backup made by the agent; written last.
pub const MARKER: &str = ".neopro-runtime-backup";
/// Backups kept.
pub const KEEP: usize = 5;

/// Copies `items` (top-level names of NEOPRO_ROOT) into a new backup;
/// returns its folder name. A failed backup is removed.
pub fn create(version: &str, previous: &str, items: &[String]) -> Result<String, Error> {
    let stamp = time::iso8601(time::now_ms()).replace([':', '.'], "-");
    let mut name = format!("backup-{stamp}-{version}");
    let mut n = 1;
    while files::exists(Root::Backups, &name)? {
        n += 1;
        name = format!("backup-{stamp}-{version}-{n}");
    }
    files::mkdir(Root::Backups, &name)?;
    let copied = (|| {
        for item in items {
            files::copy_tree(
                Root::NeoproRoot,
                item,
                Root::Backups,
                &format!("{name}/{item}"),
            )?;
        }
        files::write_json(
            Root::Backups,
            &format!("{name}/{MARKER}"),
            &json!({"previousVersion": previous, "items": items, "for": version}),
        )
    })();
    match copied {
        Ok(()) => Ok(name),
        Err(e) => {
            let _ = files::remove_tree_if_exists(Root::Backups, &name);
            Err(Error::failed(format!(
                "backup failed, nothing was changed: {}",
                e.message()
            )))
        }
    }
}

/// Keeps `current` (the backup this update just made) and the [`KEEP`]` - 1`
/// newest other backups the agent made; never touches others. `current` is
/// kept by name, not by age: a Pi has no RTC and its clock can be behind
/// the stamps of older backups, which would make the new one sort oldest.
pub fn prune(current: &str) {
    let Ok(entries) = files::list(Root::Backups, "") else {
        return;
    };
    let mut ours: Vec<String> = entries
        .into_iter()
        .filter(|e| e.name.starts_with("backup-") && e.name != current)
        .filter(|e| files::exists(Root::Backups, &format!("{}/{MARKER}", e.name)).unwrap_or(false))
        .map(|e| e.name)
        .collect();
    // Names start with an ISO timestamp: name order is age order.
    ours.sort();
    let excess = ours.len().saturating_sub(KEEP - 1);
    for old in ours.into_iter().take(excess) {
        if let Err(e) = files::remove_tree(Root::Backups, &old) {
            neopro_guest_sdk::warn!("cannot remove old backup {old}: {}", e.message());
        }
    }
}
