//! `mergeConfigurations` of the upstream agent (protocol notes §5.2), with
//! one deliberate fix: content without a `categories` key (the dashboard's
//! live-score and score-overlay toggles) leaves the categories alone instead
//! of deleting every NEOPRO category.

use neopro_guest_sdk::serde_json::{Map, Value, json};

/// JavaScript truthiness.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// `locked === true || owner === 'neopro'`.
pub fn is_locked(item: &Value) -> bool {
    item.get("locked") == Some(&Value::Bool(true)) || item.get("owner") == Some(&json!("neopro"))
}

fn with(cat: &Value, locked: bool, owner: Value) -> Value {
    let mut map = cat.as_object().cloned().unwrap_or_default();
    map.insert("locked".to_owned(), Value::Bool(locked));
    map.insert("owner".to_owned(), owner);
    Value::Object(map)
}

fn id_of(cat: &Value) -> Value {
    cat.get("id").cloned().unwrap_or(Value::Null)
}

/// Central NEOPRO categories win; club categories stay local; new club
/// categories suggested by the server are added.
pub fn merge_categories(local: &[Value], content: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut recorded = Vec::new();
    for cat in content.iter().filter(|c| is_locked(c)) {
        out.push(with(cat, true, json!("neopro")));
        recorded.push(id_of(cat));
    }
    for cat in local {
        if recorded.contains(&id_of(cat)) {
            continue;
        }
        if !is_locked(cat) {
            let owner = match cat.get("owner") {
                Some(o) if truthy(Some(o)) => o.clone(),
                _ => json!("club"),
            };
            out.push(with(cat, false, owner));
        }
    }
    let local_ids: Vec<Value> = local.iter().map(id_of).collect();
    for cat in content.iter().filter(|c| !is_locked(c)) {
        let id = id_of(cat);
        if !recorded.contains(&id) && !local_ids.contains(&id) {
            out.push(with(cat, false, json!("club")));
        }
    }
    out
}

fn keep_video(video: &Value, now_ms: i64) -> bool {
    let Some(expires) = video.get("expires_at").filter(|e| truthy(Some(e))) else {
        return true;
    };
    match expires.as_str().and_then(neopro_guest_sdk::time::parse_ms) {
        Some(at) => at >= now_ms,
        None => true,
    }
}

fn filtered(videos: Option<&Value>, now_ms: i64) -> Value {
    let list = videos
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Value::Array(list.into_iter().filter(|v| keep_video(v, now_ms)).collect())
}

/// Drops videos whose `expires_at` is in the past (files are not touched).
pub fn clean_expired_videos(categories: &[Value], now_ms: i64) -> Vec<Value> {
    categories
        .iter()
        .map(|cat| {
            let Some(map) = cat.as_object() else {
                return cat.clone();
            };
            let mut map = map.clone();
            if truthy(map.get("videos")) {
                let kept = filtered(map.get("videos"), now_ms);
                map.insert("videos".to_owned(), kept);
            }
            if let Some(Value::Array(subs)) = map.get("subCategories").cloned() {
                let subs: Vec<Value> = subs
                    .iter()
                    .map(|sub| {
                        let mut s = sub.as_object().cloned().unwrap_or_default();
                        let kept = filtered(s.get("videos"), now_ms);
                        s.insert("videos".to_owned(), kept);
                        Value::Object(s)
                    })
                    .collect();
                map.insert("subCategories".to_owned(), Value::Array(subs));
            }
            Value::Object(map)
        })
        .collect()
}

fn array(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_array).cloned().unwrap_or_default()
}

/// The merged configuration; neither input is modified.
pub fn merge_configurations(local: Option<&Value>, content: &Value, now_ms: i64) -> Value {
    let mut out: Map<String, Value> = local
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if truthy(content.get("version")) {
        out.insert("version".to_owned(), content["version"].clone());
    }
    for key in ["liveScoreEnabled", "scoreOverlay"] {
        if let Some(v) = content.get(key) {
            out.insert(key.to_owned(), v.clone());
        }
    }
    let local_categories = array(out.get("categories"));
    let categories = if content.get("categories").is_some() {
        merge_categories(&local_categories, &array(content.get("categories")))
    } else {
        local_categories
    };
    out.insert(
        "categories".to_owned(),
        Value::Array(clean_expired_videos(&categories, now_ms)),
    );
    Value::Object(out)
}

#[cfg(test)]
mod tests;
