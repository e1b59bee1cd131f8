//! The expiration job (protocol notes §9.4): every video whose `expires_at`
//! has passed loses its file and every entry pointing to it, the sponsors
//! loop included (upstream left sponsors behind); then one `config_updated`
//! to the web app.

use neopro_guest_sdk::serde_json::{Value, json};
use neopro_guest_sdk::{
    Command, Context, Error, Root, config_store, export_command, files, local_app, time,
};

fn expired(video: &Value, now_ms: i64) -> bool {
    video
        .get("expires_at")
        .and_then(Value::as_str)
        .and_then(time::parse_ms)
        .is_some_and(|at| at < now_ms)
}

/// Every video list of the configuration (category and subcategory level).
fn video_lists(config: &mut Value) -> Vec<&mut Vec<Value>> {
    let mut lists = Vec::new();
    if let Some(Value::Array(categories)) = config.get_mut("categories") {
        for category in categories.iter_mut() {
            let Some(cat) = category.as_object_mut() else {
                continue;
            };
            let (videos, subs) = {
                let mut videos = None;
                let mut subs = None;
                for (k, v) in cat.iter_mut() {
                    match k.as_str() {
                        "videos" => videos = v.as_array_mut(),
                        "subCategories" => subs = v.as_array_mut(),
                        _ => {}
                    }
                }
                (videos, subs)
            };
            if let Some(v) = videos {
                lists.push(v);
            }
            for sub in subs.into_iter().flatten() {
                if let Some(v) = sub.get_mut("videos").and_then(Value::as_array_mut) {
                    lists.push(v);
                }
            }
        }
    }
    lists
}

/// Removes the expired entries (and sponsors pointing to them); returns
/// (videos checked, paths removed).
fn prune(config: &mut Value, now_ms: i64) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut paths = Vec::new();
    for list in video_lists(config) {
        checked += list.len();
        list.retain(|video| {
            if expired(video, now_ms) {
                if let Some(p) = video.get("path").and_then(Value::as_str) {
                    paths.push(p.to_owned());
                }
                false
            } else {
                true
            }
        });
    }
    if let Some(Value::Array(sponsors)) = config.get_mut("sponsors") {
        sponsors.retain(|s| {
            !s.get("path")
                .and_then(Value::as_str)
                .is_some_and(|p| paths.iter().any(|x| x == p))
        });
    }
    (checked, paths)
}

struct ExpireVideos;

impl Command for ExpireVideos {
    type Data = Value;

    fn run(_ctx: &Context, _data: Value) -> Result<Value, Error> {
        let now = time::now_ms();
        let Some(mut current) = config_store::read()? else {
            return Ok(json!({ "checked": 0, "removed": 0 }));
        };
        let (checked, paths) = prune(&mut current, now);
        if paths.is_empty() {
            return Ok(json!({ "checked": checked, "removed": 0 }));
        }
        for path in &paths {
            match path.strip_prefix("videos/") {
                Some(rel) => match files::remove_file(Root::Videos, rel) {
                    Ok(()) => neopro_guest_sdk::info!("expired video removed: {path}"),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => {
                        neopro_guest_sdk::warn!("cannot remove expired {path}: {}", e.message())
                    }
                },
                None => neopro_guest_sdk::warn!(
                    "expired entry {path} is not under videos/; file left in place"
                ),
            }
        }
        config_store::update(|config| {
            let mut config = config.unwrap_or_else(|| json!({}));
            prune(&mut config, now);
            Ok(config)
        })?;
        local_app::notify(
            "config_updated",
            Some(&json!({ "reason": "expired_videos_removed" })),
        );
        Ok(json!({ "checked": checked, "removed": paths.len() }))
    }
}

export_command!(ExpireVideos);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_entries_and_their_sponsors_go() {
        let mut config = json!({
            "categories": [{"name": "A", "videos": [
                {"name": "old", "path": "videos/A/old.mp4", "expires_at": "2020-01-01T00:00:00Z"},
                {"name": "new", "path": "videos/A/new.mp4", "expires_at": "2999-01-01T00:00:00Z"},
                {"name": "forever", "path": "videos/A/f.mp4"}
            ], "subCategories": [{"name": "S", "videos": [
                {"name": "old2", "path": "videos/A/S/o.mp4", "expires_at": "2020-06-01"}
            ]}]}],
            "sponsors": [{"path": "videos/A/old.mp4"}, {"path": "videos/X/keep.mp4"}]
        });
        let (checked, paths) = prune(&mut config, time::now_ms());
        assert_eq!(checked, 4);
        assert_eq!(paths, ["videos/A/old.mp4", "videos/A/S/o.mp4"]);
        assert_eq!(
            config["categories"][0]["videos"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(
            config["categories"][0]["subCategories"][0]["videos"],
            json!([])
        );
        assert_eq!(config["sponsors"], json!([{"path": "videos/X/keep.mp4"}]));
    }
}
