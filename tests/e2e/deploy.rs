//! deploy_video end to end: a real download from a local HTTP server with
//! injected faults, the file on disk, configuration.json, progress events.
// A broken fixture should stop the test loudly.
#![allow(clippy::expect_used)]

use neopro_e2e::http::{Fault, FileServer};
use neopro_e2e::{Site, error_of};
use neopro_runtime::host::{ProgressSink, WitError};
use neopro_runtime::sandbox::CommandRequest;
use neopro_runtime::store::hash::sha256_hex;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const CONFIG: &str = "neopro/webapp/configuration.json";

#[derive(Default)]
struct Events(Mutex<Vec<(String, Value)>>);

impl ProgressSink for Events {
    fn emit(&self, event: &str, payload: Value) {
        self.0
            .lock()
            .expect("lock")
            .push((event.to_owned(), payload));
    }
}

fn video(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn deploy(site: &Site, data: Value) -> (Result<Value, WitError>, Vec<(String, Value)>) {
    let sandbox = site.sandbox();
    let loaded = site.load(&sandbox, "deploy-video");
    let events = Arc::new(Events::default());
    let request = CommandRequest {
        id: "d".to_owned(),
        command_type: "deploy_video".to_owned(),
        data: data.to_string(),
    };
    let result = sandbox
        .execute(&loaded, &request, Some(events.clone()))
        .map(|j| serde_json::from_str(&j).expect("JSON"));
    let events = events.0.lock().expect("lock").clone();
    (result, events)
}

fn data(server: &FileServer, body: &[u8]) -> Value {
    json!({
        "deploymentId": "dep-1", "videoId": "vid-1",
        "videoUrl": server.url("abc.mp4"), "filename": "abc.mp4", "originalName": "But du match.MP4",
        "category": "Match", "subcategory": null, "duration": 12,
        "checksum": sha256_hex(body), "sponsorId": null, "analyticsCategory": null
    })
}

fn config_on_disk(site: &Site) -> Value {
    serde_json::from_str(&std::fs::read_to_string(site.path(CONFIG)).expect("config"))
        .expect("JSON")
}

fn files_in(site: &Site, rel: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(site.path(rel))
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_video_is_downloaded_verified_and_recorded() {
    let body = video(300_000);
    let server = FileServer::start(body.clone(), Fault::None);
    let site = Site::new();
    site.write(CONFIG, r#"{"categories":[]}"#);
    let (result, events) = deploy(&site, data(&server, &body));
    assert_eq!(
        result.expect("deployed"),
        json!({"success": true, "path": "videos/Match/But du match.mp4", "size": 300_000,
               "checksum": sha256_hex(&body), "filename": "But du match.mp4"})
    );
    assert_eq!(
        std::fs::read(site.path("neopro/videos/Match/But du match.mp4")).ok(),
        Some(body.clone())
    );
    let config = config_on_disk(&site);
    let entry = &config["categories"][0]["videos"][0];
    assert_eq!(config["categories"][0]["name"], json!("Match"));
    assert_eq!(entry["path"], json!("videos/Match/But du match.mp4"));
    assert_eq!(entry["video_id"], json!("vid-1"));
    let last = events.last().expect("progress events");
    assert_eq!(last.0, "deploy_progress");
    assert_eq!(
        last.1,
        json!({"deploymentId": "dep-1", "videoId": "vid-1", "completed": true, "progress": 100,
               "status": "completed"})
    );
    // Issue 18.5: the dashboard reads `status` from every event.
    assert!(
        events[..events.len() - 1]
            .iter()
            .all(|(_, p)| p["status"] == json!("in_progress")),
        "{events:?}"
    );
    let percents: Vec<u64> = events
        .iter()
        .filter_map(|(_, p)| p["progress"].as_u64())
        .collect();
    assert!(
        percents.windows(2).all(|w| w[0] < w[1]),
        "monotonic: {percents:?}"
    );
}

#[test]
fn redeploying_the_same_video_keeps_one_file_and_one_entry() {
    let body = video(50_000);
    let server = FileServer::start(body.clone(), Fault::None);
    let site = Site::new();
    deploy(&site, data(&server, &body)).0.expect("first");
    deploy(&site, data(&server, &body)).0.expect("second");
    assert_eq!(files_in(&site, "neopro/videos/Match"), ["But du match.mp4"]);
    assert_eq!(
        config_on_disk(&site)["categories"][0]["videos"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        server.ranges().len(),
        1,
        "the second deploy downloads nothing"
    );
}

#[test]
fn a_cut_transfer_resumes_with_a_range_request() {
    let body = video(200_000);
    let server = FileServer::start(body.clone(), Fault::CutFirstAfter(70_000));
    let site = Site::new();
    let (result, _) = deploy(&site, data(&server, &body));
    assert_eq!(
        result.expect("deployed")["checksum"],
        json!(sha256_hex(&body))
    );
    assert_eq!(server.ranges(), vec![None, Some("bytes=70000-".to_owned())]);
    assert_eq!(
        std::fs::read(site.path("neopro/videos/Match/But du match.mp4")).ok(),
        Some(body)
    );
    assert_eq!(
        files_in(&site, "neopro/videos/Match"),
        ["But du match.mp4"],
        "no partial left"
    );
}

#[test]
fn a_server_ignoring_range_restarts_from_zero() {
    let body = video(120_000);
    let site = Site::new();
    // A partial file from an earlier attempt of this download, with wrong
    // bytes in it.
    let server = FileServer::start(body.clone(), Fault::IgnoreRange);
    site.write("neopro/videos/Match/.But du match.mp4.partial", "garbage");
    site.write(
        "neopro/videos/Match/.But du match.mp4.partial.source",
        &format!("{}\n{}\n", server.url("abc.mp4"), sha256_hex(&body)),
    );
    let (result, _) = deploy(&site, data(&server, &body));
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(server.ranges(), vec![Some("bytes=7-".to_owned())]);
    assert_eq!(
        std::fs::read(site.path("neopro/videos/Match/But du match.mp4")).ok(),
        Some(body)
    );
}

#[test]
fn a_wrong_checksum_leaves_no_file_and_the_configuration_unchanged() {
    let body = video(10_000);
    let server = FileServer::start(body.clone(), Fault::None);
    let site = Site::new();
    site.write(CONFIG, r#"{"categories":[]}"#);
    let mut d = data(&server, &body);
    d["checksum"] = json!("0".repeat(64));
    let (result, events) = deploy(&site, d);
    let (kind, message) = error_of(result);
    assert_eq!(kind, "checksum-mismatch");
    assert_eq!(
        message,
        format!(
            "Checksum mismatch: expected {}, got {}",
            "0".repeat(64),
            sha256_hex(&body)
        )
    );
    assert!(files_in(&site, "neopro/videos/Match").is_empty());
    assert_eq!(config_on_disk(&site), json!({"categories": []}));
    let last = events.last().expect("an error event");
    assert_eq!(last.1["error"], json!(message));
    assert_eq!(last.1["deploymentId"], json!("dep-1"));
}

#[test]
fn a_missing_checksum_is_refused_with_the_upstream_text() {
    let server = FileServer::start(video(10), Fault::None);
    let site = Site::new();
    let mut d = data(&server, b"");
    d.as_object_mut().expect("object").remove("checksum");
    assert_eq!(
        error_of(deploy(&site, d).0),
        (
            "invalid-input".to_owned(),
            "Checksum is required for video deployment. Video rejected for security.".to_owned()
        )
    );
    assert!(server.ranges().is_empty());
}

#[test]
fn http_errors_name_the_status() {
    let site = Site::new();
    let not_found = FileServer::start(Vec::new(), Fault::Status(404));
    let (kind, message) = error_of(deploy(&site, data(&not_found, b"x")).0);
    assert_eq!(kind, "failed");
    assert!(
        message.ends_with("the server answered HTTP 404 Not Found"),
        "{message}"
    );
    assert_eq!(not_found.ranges().len(), 1, "a 404 is not retried");

    let unavailable = FileServer::start(Vec::new(), Fault::Status(503));
    let (kind, message) = error_of(deploy(&site, data(&unavailable, b"x")).0);
    assert_eq!(kind, "failed");
    assert!(
        message
            .contains("failed after 4 attempts: the server answered HTTP 503 Service Unavailable"),
        "{message}"
    );
    assert_eq!(unavailable.ranges().len(), 4);
}

#[test]
fn oversize_downloads_are_refused_by_header_and_by_body() {
    let site = Site::with_extra("MAX_DOWNLOAD_SIZE=1000");
    let body = video(5000);
    let announced = FileServer::start(body.clone(), Fault::None);
    let (kind, message) = error_of(deploy(&site, data(&announced, &body)).0);
    assert_eq!(
        (kind.as_str(), message.as_str()),
        (
            "too-large",
            "the file is 5000 bytes, more than the 1000 bytes allowed"
        )
    );
    let unannounced = FileServer::start(body.clone(), Fault::NoLength);
    let (kind, message) = error_of(deploy(&site, data(&unannounced, &body)).0);
    assert_eq!(
        (kind.as_str(), message.as_str()),
        (
            "too-large",
            "the server sent more than the 1000 bytes allowed"
        )
    );
    assert!(
        files_in(&site, "neopro/videos/Match").is_empty(),
        "nothing left behind"
    );
}

#[test]
fn names_cannot_leave_the_videos_root() {
    let body = video(100);
    let server = FileServer::start(body.clone(), Fault::None);
    let site = Site::new();
    for (key, value) in [
        ("category", "../webapp"),
        ("subcategory", ".."),
        ("category", "/etc"),
    ] {
        let mut d = data(&server, &body);
        d[key] = json!(value);
        let (kind, _) = error_of(deploy(&site, d).0);
        assert_eq!(kind, "invalid-input", "{key}={value}");
    }
    // A file name with directories is reduced to its last part.
    let mut d = data(&server, &body);
    d["originalName"] = json!("../../webapp/configuration.json");
    let result = deploy(&site, d).0.expect("deployed under its base name");
    assert_eq!(result["path"], json!("videos/Match/configuration.json"));
    assert_eq!(
        std::fs::read(site.path("neopro/videos/Match/configuration.json")).ok(),
        Some(body)
    );
    // The real configuration.json is the config store's, not the video.
    assert!(config_on_disk(&site)["categories"].is_array());
    assert!(!site.path("neopro/etc").exists() && !site.path("etc").exists());
}

#[test]
fn two_concurrent_deploys_into_one_category_are_both_recorded() {
    let a = video(40_000);
    let b: Vec<u8> = video(41_000).into_iter().rev().collect();
    let server_a = FileServer::start(a.clone(), Fault::None);
    let server_b = FileServer::start(b.clone(), Fault::None);
    let site = Site::new();
    let sandbox = site.sandbox();
    let loaded = site.load(&sandbox, "deploy-video");
    let mut da = data(&server_a, &a);
    da["originalName"] = json!("A.mp4");
    let mut db = data(&server_b, &b);
    db["originalName"] = json!("B.mp4");
    let run = |d: Value| {
        let request = CommandRequest {
            id: "c".to_owned(),
            command_type: "deploy_video".to_owned(),
            data: d.to_string(),
        };
        sandbox.execute(&loaded, &request, None)
    };
    std::thread::scope(|s| {
        let ta = s.spawn(|| run(da));
        let tb = s.spawn(|| run(db));
        assert!(ta.join().expect("a").is_ok());
        assert!(tb.join().expect("b").is_ok());
    });
    let names: Vec<String> = config_on_disk(&site)["categories"][0]["videos"]
        .as_array()
        .expect("videos")
        .iter()
        .filter_map(|v| v["filename"].as_str().map(str::to_owned))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["A.mp4", "B.mp4"]);
}

/// Sizes past 4 GiB stay exact end to end: site.conf's 8 GiB
/// MAX_DOWNLOAD_SIZE, deploy-video's 4 GiB grant (a wasm32 guest, so 32-bit
/// `usize` on every box) and a 5 GiB announced video. Truncated to 32 bits
/// anywhere (`as usize` on armhf) the limit would be 0 and the video 1 GiB.
#[test]
fn a_5_gib_video_is_refused_by_its_real_size() {
    let site = Site::with_extra("MAX_DOWNLOAD_SIZE=8589934592");
    let server = FileServer::start(Vec::new(), Fault::Announce(5 << 30));
    let (kind, message) = error_of(deploy(&site, data(&server, b"x")).0);
    assert_eq!(
        (kind.as_str(), message.as_str()),
        (
            "too-large",
            "the file is 5368709120 bytes, more than the 4294967296 bytes allowed"
        )
    );
    assert!(
        files_in(&site, "neopro/videos/Match").is_empty(),
        "nothing left behind"
    );
}

#[test]
fn a_download_that_would_fill_the_disk_is_refused_before_writing() {
    let site = Site::with_extra("MAX_DOWNLOAD_SIZE=1000000000000000");
    // 500 TB announced: more than any test machine has free.
    let server = FileServer::start(Vec::new(), Fault::Announce(500_000_000_000_000));
    let (kind, message) = error_of(site.run(
        "escape",
        json!({"op": "download", "path": "huge.bin", "to": server.url("huge.bin")}),
    ));
    assert_eq!(kind, "too-large");
    assert!(
        message.starts_with("not enough disk space: the download needs "),
        "{message}"
    );
    assert!(message.contains("plus a reserve of"), "{message}");
    assert!(
        files_in(&site, "neopro/videos").is_empty(),
        "nothing written"
    );
}

#[test]
fn only_http_and_https_urls_are_fetched() {
    let site = Site::new();
    let (kind, message) = error_of(site.run(
        "escape",
        json!({"op": "download", "path": "x", "to": "file:///etc/passwd"}),
    ));
    assert_eq!(kind, "invalid-input");
    assert_eq!(
        message,
        "only http:// and https:// downloads are allowed, not 'file:///etc/passwd'"
    );
}

#[test]
fn a_category_symlinked_out_of_the_videos_root_is_refused() {
    let body = video(1000);
    let server = FileServer::start(body.clone(), Fault::None);
    let site = Site::new();
    std::fs::create_dir_all(site.path("outside")).expect("outside");
    std::os::unix::fs::symlink(site.path("outside"), site.path("neopro/videos/Match"))
        .expect("symlink");
    let (kind, message) = error_of(deploy(&site, data(&server, &body)).0);
    assert_eq!(kind, "not-permitted", "{message}");
    assert!(
        files_in(&site, "outside").is_empty(),
        "nothing written through the link"
    );
    assert!(server.ranges().is_empty(), "refused before downloading");
}

#[test]
fn a_partial_file_left_by_another_download_is_not_resumed() {
    let body = video(200_000);
    let server = FileServer::start(body.clone(), Fault::None);
    let site = Site::new();
    site.write(CONFIG, r#"{"categories":[]}"#);
    // Left by an older download of another file under the same name.
    site.write(
        "neopro/videos/Match/.But du match.mp4.partial",
        "stale bytes of another video",
    );
    let (result, _) = deploy(&site, data(&server, &body));
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        std::fs::read(site.path("neopro/videos/Match/But du match.mp4")).ok(),
        Some(body)
    );
    assert_eq!(server.ranges(), vec![None], "started from zero");
    assert_eq!(files_in(&site, "neopro/videos/Match"), ["But du match.mp4"]);
}

#[test]
fn a_download_dripping_past_its_time_stops_and_keeps_what_it_got() {
    let body = video(200_000);
    let server = FileServer::start(
        body.clone(),
        Fault::Slow {
            chunk: 8_192,
            pause_ms: 50,
        },
    );
    let site = Site::new();
    let dir = site.path("state/incoming");
    std::fs::create_dir_all(&dir).expect("dir");
    let outcome = neopro_runtime::host::download::download_file(
        &server.url("v.bin"),
        &dir,
        "v.bin",
        1 << 20,
        &sha256_hex(&body),
        std::time::Duration::from_millis(300),
    );
    let error = outcome.expect_err("timed out");
    assert_eq!(error.kind(), "timeout");
    assert!(
        error.message().starts_with(&format!(
            "the download of {} did not finish within the 0 s it had",
            server.url("v.bin")
        )),
        "{}",
        error.message()
    );
    assert!(!dir.join("v.bin").exists());
    let kept = std::fs::metadata(dir.join(".v.bin.partial"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(kept > 0 && kept < 200_000, "{kept}");

    // The next attempt resumes it where it stopped.
    let done = neopro_runtime::host::download::download_file(
        &server.url("v.bin"),
        &dir,
        "v.bin",
        1 << 20,
        &sha256_hex(&body),
        std::time::Duration::from_secs(30),
    );
    assert!(done.is_ok(), "{done:?}");
    assert_eq!(std::fs::read(dir.join("v.bin")).ok(), Some(body));
    assert_eq!(
        server.ranges().last().cloned().flatten(),
        Some(format!("bytes={kept}-"))
    );
    assert!(!dir.join(".v.bin.partial.source").exists());
}
