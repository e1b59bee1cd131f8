//! `delete_video` (protocol notes §2.3): removes every configuration and
//! sponsors entry pointing to one file under the videos root, then the file.
//! Unlike upstream: names are checked (no `/`, no `..`), a directory is never
//! removed, and a file already gone still has its stale entries removed.

use neopro_guest_sdk::serde_json::{Value, json};
use neopro_guest_sdk::{
    Command, Context, Error, Root, config_store, export_command, files, local_app,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Data {
    filename: String,
    category: String,
    #[serde(default)]
    subcategory: Option<String>,
}

/// A file or folder name: not empty, no separator, not `.` or `..`.
fn plain_name<'a>(value: &'a str, what: &str) -> Result<&'a str, Error> {
    let bad =
        value.is_empty() || value == "." || value == ".." || value.contains(['/', '\\', '\0']);
    if bad {
        Err(Error::invalid_input(format!(
            "{what} '{value}' is not a plain name (no '/', '..' or empty names)"
        )))
    } else {
        Ok(value)
    }
}

/// Upstream's rule: an entry with a `filename` matches on it, otherwise on `path`.
fn matches(entry: &Value, filename: &str, path: &str) -> bool {
    match entry.get("filename").and_then(Value::as_str) {
        Some(f) if !f.is_empty() => f == filename,
        _ => entry.get("path").and_then(Value::as_str) == Some(path),
    }
}

fn remove_from(list: Option<&mut Value>, filename: &str, path: &str) -> usize {
    let Some(Value::Array(items)) = list else {
        return 0;
    };
    let before = items.len();
    items.retain(|v| !matches(v, filename, path));
    before - items.len()
}

/// Removes the entries from a configuration; returns how many went.
fn remove_entries(config: &mut Value, data: &Data, path: &str) -> usize {
    let mut removed = 0;
    if let Some(Value::Array(categories)) = config.get_mut("categories")
        && let Some(category) = categories
            .iter_mut()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(data.category.as_str()))
    {
        match &data.subcategory {
            Some(sub) => {
                if let Some(Value::Array(subs)) = category.get_mut("subCategories")
                    && let Some(s) = subs
                        .iter_mut()
                        .find(|s| s.get("name").and_then(Value::as_str) == Some(sub.as_str()))
                {
                    removed += remove_from(s.get_mut("videos"), &data.filename, path);
                }
            }
            None => removed += remove_from(category.get_mut("videos"), &data.filename, path),
        }
    }
    removed + remove_from(config.get_mut("sponsors"), &data.filename, path)
}

struct DeleteVideo;

impl Command for DeleteVideo {
    type Data = Data;

    fn run(_ctx: &Context, mut data: Data) -> Result<Value, Error> {
        data.subcategory = data.subcategory.filter(|s| !s.is_empty());
        plain_name(&data.filename, "filename")?;
        plain_name(&data.category, "category")?;
        if let Some(sub) = &data.subcategory {
            plain_name(sub, "subcategory")?;
        }
        let rel = match &data.subcategory {
            Some(sub) => format!("{}/{sub}/{}", data.category, data.filename),
            None => format!("{}/{}", data.category, data.filename),
        };
        let path = format!("videos/{rel}");

        let existed = match files::stat(Root::Videos, &rel) {
            Ok(meta) if meta.kind == files::EntryKind::Directory => {
                return Err(Error::invalid_input(format!(
                    "{path} is a directory; delete_video removes single files only"
                )));
            }
            Ok(_) => true,
            Err(e) if e.is_not_found() => false,
            Err(e) => return Err(e),
        };

        // The entries first, then the file: a power cut or a failed write
        // between the two leaves a file no entry names (removed when the
        // command is sent again), never an entry naming a missing video,
        // which the TV would try to play.
        let mut removed = 0;
        if let Some(mut current) = config_store::read()?
            && remove_entries(&mut current, &data, &path) > 0
        {
            let written = config_store::update(|config| {
                let mut config = config.unwrap_or_else(|| json!({}));
                removed = remove_entries(&mut config, &data, &path);
                Ok(config)
            })?;
            neopro_guest_sdk::info!(
                "configuration updated ({}), {removed} entries removed",
                written.config_hash
            );
            local_app::notify("config_updated", None);
        }
        if existed {
            files::remove_file(Root::Videos, &rel).map_err(|e| {
                Error::io(format!(
                    "{removed} configuration entries removed, but {path} could not be removed: {}",
                    e.message()
                ))
            })?;
        }
        let mut result = json!({ "success": true, "path": path, "removedEntries": removed });
        if !existed {
            result["message"] = json!("Video already deleted or not found");
        }
        Ok(result)
    }
}

export_command!(DeleteVideo);
