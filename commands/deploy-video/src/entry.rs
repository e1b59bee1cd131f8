//! The configuration.json changes of a deployment (protocol notes §3.5).

use neopro_guest_sdk::serde_json::{Map, Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

fn now_iso() -> String {
    neopro_guest_sdk::time::iso8601(neopro_guest_sdk::time::now_ms())
}

fn opt(data: &Value, key: &str) -> Value {
    data.get(key)
        .filter(|v| !v.is_null())
        .cloned()
        .unwrap_or(Value::Null)
}

fn is_neopro(data: &Value) -> bool {
    data.get("locked") != Some(&Value::Bool(false))
}

/// The video entry, keys in upstream order, plus its checksum.
pub fn video_entry(data: &Value, filename: &str, path: &str, checksum: &str) -> Value {
    let name = match filename.rfind('.') {
        Some(i) if i > 0 => &filename[..i],
        _ => filename,
    };
    let mut v = Map::new();
    v.insert("name".to_owned(), json!(name));
    v.insert("filename".to_owned(), json!(filename));
    v.insert("path".to_owned(), json!(path));
    v.insert("type".to_owned(), json!("video/mp4"));
    v.insert("locked".to_owned(), json!(true));
    v.insert("deployed_at".to_owned(), json!(now_iso()));
    v.insert("video_id".to_owned(), opt(data, "videoId"));
    v.insert("sponsor_id".to_owned(), opt(data, "sponsorId"));
    v.insert(
        "analytics_category".to_owned(),
        opt(data, "analyticsCategory"),
    );
    if data
        .get("expires_at")
        .is_some_and(|e| e.as_str().is_some_and(|s| !s.is_empty()))
    {
        v.insert("expires_at".to_owned(), data["expires_at"].clone());
    }
    v.insert("checksum".to_owned(), json!(checksum));
    Value::Object(v)
}

/// Replaces the entry with the same path, else appends it.
fn upsert(list: &mut Vec<Value>, entry: Value) {
    let path = entry.get("path").cloned();
    match list.iter_mut().find(|e| e.get("path").cloned() == path) {
        Some(existing) => *existing = entry,
        None => list.push(entry),
    }
}

/// The array under `key`, created (or replacing a non-array) if needed.
fn array_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Vec<Value>> {
    if !map.get(key).is_some_and(Value::is_array) {
        map.insert(key.to_owned(), json!([]));
    }
    map.get_mut(key).and_then(Value::as_array_mut)
}

fn stamp() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Adds the video (and the sponsor entry) to a configuration.
pub fn add_video(
    config: Option<Value>,
    data: &Value,
    category: &str,
    subcategory: Option<&str>,
    video: &Value,
) -> Value {
    let mut config = match config {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let neopro = is_neopro(data);
    if let Some(categories) = array_at(&mut config, "categories") {
        add_to_categories(categories, neopro, category, subcategory, video);
    }
    let sponsor = category.eq_ignore_ascii_case("sponsors")
        || data.get("analyticsCategory") == Some(&json!("sponsor"))
        || data
            .get("sponsorId")
            .is_some_and(|s| !s.is_null() && s != "");
    if sponsor {
        let entry = json!({
            "name": video["name"],
            "path": video["path"],
            "type": "video/mp4",
            "video_id": opt(data, "videoId"),
            "sponsor_id": opt(data, "sponsorId"),
            "analytics_category": "sponsor",
        });
        if let Some(sponsors) = array_at(&mut config, "sponsors") {
            upsert(sponsors, entry);
        }
    }
    Value::Object(config)
}

fn add_to_categories(
    categories: &mut Vec<Value>,
    neopro: bool,
    category: &str,
    subcategory: Option<&str>,
    video: &Value,
) {
    let index = match categories
        .iter()
        .position(|c| c.get("name").and_then(Value::as_str) == Some(category))
    {
        Some(i) => i,
        None => {
            categories.push(json!({
                "id": format!("category-{}", stamp()),
                "name": category,
                "locked": neopro,
                "owner": if neopro { "neopro" } else { "club" },
                "videos": [],
                "subCategories": [],
            }));
            categories.len() - 1
        }
    };
    let Some(Value::Object(cat)) = categories.get_mut(index) else {
        return;
    };
    match subcategory {
        Some(sub) => {
            let Some(subs) = array_at(cat, "subCategories") else {
                return;
            };
            let si = match subs
                .iter()
                .position(|s| s.get("name").and_then(Value::as_str) == Some(sub))
            {
                Some(i) => i,
                None => {
                    subs.push(json!({
                        "id": format!("subcategory-{}", stamp()),
                        "name": sub,
                        "locked": neopro,
                        "videos": [],
                    }));
                    subs.len() - 1
                }
            };
            if let Some(videos) = subs
                .get_mut(si)
                .and_then(Value::as_object_mut)
                .and_then(|s| array_at(s, "videos"))
            {
                upsert(videos, video.clone());
            }
        }
        None => {
            if let Some(videos) = array_at(cat, "videos") {
                upsert(videos, video.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(extra: Value) -> Value {
        let mut d = json!({"filename": "Test Video.mp4", "originalName": "Test Video.mp4",
                           "category": "annonces_neopro", "subcategory": null, "locked": true});
        if let (Some(d), Value::Object(extra)) = (d.as_object_mut(), extra) {
            d.extend(extra);
        }
        d
    }

    fn add(config: Value, d: &Value, sub: Option<&str>) -> Value {
        let path = match sub {
            Some(s) => format!(
                "videos/{}/{s}/Test Video.mp4",
                d["category"].as_str().unwrap_or("")
            ),
            None => format!(
                "videos/{}/Test Video.mp4",
                d["category"].as_str().unwrap_or("")
            ),
        };
        let video = video_entry(d, "Test Video.mp4", &path, "00");
        add_video(
            Some(config),
            d,
            d["category"].as_str().unwrap_or(""),
            sub,
            &video,
        )
    }

    #[test]
    fn upstream_configuration_vectors() {
        // D1
        let d1 = add(json!({"categories": []}), &data(json!({})), None);
        assert_eq!(d1["categories"][0]["name"], json!("annonces_neopro"));
        assert_eq!(
            (
                d1["categories"][0]["locked"].clone(),
                d1["categories"][0]["owner"].clone()
            ),
            (json!(true), json!("neopro"))
        );
        // D2
        let d2 = add(
            json!({"categories": [{"name": "annonces_neopro", "videos": [{"name": "x", "path": "videos/annonces_neopro/x.mp4"}]}]}),
            &data(json!({})),
            None,
        );
        assert_eq!(
            d2["categories"][0]["videos"].as_array().map(Vec::len),
            Some(2)
        );
        // D3
        let d3 = add(
            json!({"categories": [{"name": "annonces_neopro", "videos": [{"name": "Old Name", "path": "videos/annonces_neopro/Test Video.mp4"}]}]}),
            &data(json!({})),
            None,
        );
        assert_eq!(
            d3["categories"][0]["videos"].as_array().map(Vec::len),
            Some(1)
        );
        assert_eq!(
            d3["categories"][0]["videos"][0]["name"],
            json!("Test Video")
        );
        // D4
        let d4 = add(
            json!({"categories": []}),
            &data(json!({"subcategory": "promotions"})),
            Some("promotions"),
        );
        assert_eq!(
            d4["categories"][0]["subCategories"][0]["name"],
            json!("promotions")
        );
        assert_eq!(
            d4["categories"][0]["subCategories"][0]["videos"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        // D5
        let d5 = add(
            json!({"categories": []}),
            &data(json!({"locked": false, "category": "matchs_club"})),
            None,
        );
        assert_eq!(
            (
                d5["categories"][0]["locked"].clone(),
                d5["categories"][0]["owner"].clone()
            ),
            (json!(false), json!("club"))
        );
        // D6
        let d6 = add(
            json!({"categories": []}),
            &data(json!({"expires_at": "2025-12-31T23:59:59Z"})),
            None,
        );
        assert_eq!(
            d6["categories"][0]["videos"][0]["expires_at"],
            json!("2025-12-31T23:59:59Z")
        );
        // D7: no file yet
        let video = video_entry(
            &data(json!({})),
            "Test Video.mp4",
            "videos/annonces_neopro/Test Video.mp4",
            "00",
        );
        let d7 = add_video(None, &data(json!({})), "annonces_neopro", None, &video);
        assert_eq!(d7["categories"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn sponsor_videos_join_the_sponsor_loop_once() {
        let d = data(json!({"sponsorId": "s1", "videoId": "v1"}));
        let once = add(json!({"categories": []}), &d, None);
        let twice = add(once, &d, None);
        assert_eq!(
            twice["sponsors"],
            json!([{"name": "Test Video", "path": "videos/annonces_neopro/Test Video.mp4", "type": "video/mp4",
                    "video_id": "v1", "sponsor_id": "s1", "analytics_category": "sponsor"}])
        );
        assert_eq!(
            twice["categories"][0]["videos"].as_array().map(Vec::len),
            Some(1)
        );
        assert!(now_iso().ends_with('Z') && now_iso().len() == 24);
    }
}
