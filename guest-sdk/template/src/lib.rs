//! Template command: `video_inventory` answers how many videos each category
//! folder holds, and their total size. Copy this crate, rename it, change
//! `run`, and keep the manifest's grants to what `run` really uses.

use neopro_guest_sdk::files::{self, EntryKind};
use neopro_guest_sdk::serde_json::{Value, json};
use neopro_guest_sdk::{Command, Context, Error, Root, export_command, system};
use serde::Deserialize;

/// The command's `data`: `{"category": "Match"}` to look at one folder only.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Data {
    category: Option<String>,
}

struct VideoInventory;

impl Command for VideoInventory {
    type Data = Data;

    fn run(_ctx: &Context, data: Data) -> Result<Value, Error> {
        let folders: Vec<String> = match data.category {
            Some(one) => vec![one],
            None => files::list(Root::Videos, "")?
                .into_iter()
                .filter(|e| e.kind == EntryKind::Directory)
                .map(|e| e.name)
                .collect(),
        };
        let mut categories = Vec::new();
        let (mut videos, mut bytes) = (0u64, 0u64);
        for folder in folders {
            let entries = files::list(Root::Videos, &folder).map_err(|e| {
                if e.is_not_found() {
                    Error::not_found(format!("no category folder '{folder}'"))
                } else {
                    e
                }
            })?;
            let files: Vec<_> = entries
                .into_iter()
                .filter(|e| e.kind == EntryKind::File)
                .collect();
            let size: u64 = files.iter().map(|f| f.size).sum();
            videos += files.len() as u64;
            bytes += size;
            categories.push(json!({ "name": folder, "videos": files.len(), "bytes": size }));
        }
        neopro_guest_sdk::info!("{videos} videos in {} categories", categories.len());
        Ok(json!({
            "success": true,
            "neoproVersion": system::version()?.version,
            "videos": videos,
            "bytes": bytes,
            "categories": categories,
        }))
    }
}

export_command!(VideoInventory);
