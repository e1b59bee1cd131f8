//! `deploy_video` (protocol notes §3): download a video with its checksum,
//! place it under `videos/<category>[/<subcategory>]/`, and record it in
//! configuration.json (and the sponsors loop when it is a sponsor video).
//!
//! Unlike upstream: category and subcategory must be plain names (nothing can
//! leave the videos root); re-deploying a video already in place (same
//! checksum) succeeds without a second file or entry; a failure is reported
//! as a `deploy_progress` carrying `error` as well as an error result.

mod entry;
mod names;

use neopro_guest_sdk::serde_json::{Map, Value, json};
use neopro_guest_sdk::{
    Command, Context, Error, Root, config_store, download, export_command, files, local_app,
    progress,
};

struct DeployVideo;

/// The fields every progress event of this deployment carries.
fn progress_detail(data: &Value) -> Map<String, Value> {
    let mut detail = Map::new();
    for key in ["deploymentId", "videoId"] {
        if let Some(v) = data.get(key).filter(|v| v.is_string()) {
            detail.insert(key.to_owned(), v.clone());
        }
    }
    detail
}

fn text<'a>(data: &'a Value, key: &str) -> Option<&'a str> {
    data.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

impl Command for DeployVideo {
    type Data = Value;

    fn run(_ctx: &Context, data: Value) -> Result<Value, Error> {
        let detail = progress_detail(&data);
        match deploy(&data, &detail) {
            Ok(result) => {
                let mut done = detail.clone();
                done.insert("completed".to_owned(), json!(true));
                progress::report(100, &Value::Object(done))?;
                Ok(result)
            }
            Err(e) => {
                let mut failed = detail;
                failed.insert("error".to_owned(), json!(e.message()));
                let _ = progress::report(0, &Value::Object(failed));
                Err(e)
            }
        }
    }
}

fn deploy(data: &Value, detail: &Map<String, Value>) -> Result<Value, Error> {
    let Some(checksum) = text(data, "checksum") else {
        return Err(Error::invalid_input(
            "Checksum is required for video deployment. Video rejected for security.",
        ));
    };
    let checksum = checksum.trim().to_ascii_lowercase();
    let url = text(data, "videoUrl")
        .ok_or_else(|| Error::invalid_input("videoUrl is required for video deployment"))?;
    let category = names::plain(text(data, "category").unwrap_or("default"), "category")?;
    let subcategory = text(data, "subcategory")
        .map(|s| names::plain(s, "subcategory"))
        .transpose()?;
    let preferred = text(data, "originalName").or_else(|| text(data, "filename"));
    let filename = names::sanitize_filename(preferred);

    let dir = match subcategory {
        Some(sub) => format!("{category}/{sub}"),
        None => category.to_owned(),
    };
    files::mkdir(Root::Videos, &dir)?;

    // The first free name, or the same video already in place.
    let (stem, ext) = names::split_ext(&filename);
    let mut candidate = filename.clone();
    let mut n = 0;
    let already_there = loop {
        let rel = format!("{dir}/{candidate}");
        match files::stat(Root::Videos, &rel) {
            Err(e) if e.is_not_found() => break false,
            Err(e) => return Err(e),
            Ok(_) if files::sha256(Root::Videos, &rel)? == checksum => break true,
            Ok(_) => {
                n += 1;
                candidate = format!("{stem} ({n}){ext}");
            }
        }
    };
    let rel = format!("{dir}/{candidate}");
    let size = if already_there {
        neopro_guest_sdk::info!("{rel} is already in place with the same checksum");
        files::stat(Root::Videos, &rel)?.size
    } else {
        let outcome = download::fetch(
            url,
            Root::Videos,
            &rel,
            Some(&checksum),
            Some(&Value::Object(detail.clone())),
        )
        .map_err(|e| match e {
            Error::Failed(m) => Error::failed(format!("Failed to download video: {m}")),
            other => other,
        })?;
        outcome.bytes
    };

    let path = format!("videos/{rel}");
    let video = entry::video_entry(data, &candidate, &path, &checksum);
    config_store::update(|config| {
        Ok(entry::add_video(
            config,
            data,
            category,
            subcategory,
            &video,
        ))
    })?;
    local_app::notify("config_updated", None);
    Ok(json!({
        "success": true,
        "path": path,
        "size": size,
        "checksum": checksum,
        "filename": candidate,
    }))
}

export_command!(DeployVideo);
