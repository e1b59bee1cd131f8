//! update_config, update_settings, delete_video and get_config over the
//! config store, on a temporary NEOPRO root.
// A broken fixture should stop the test loudly.
#![allow(clippy::expect_used)]

use neopro_e2e::{Site, error_of, run_loaded};
use neopro_runtime::sandbox::CommandRequest;
use neopro_runtime::store::webapp_config::config_hash;
use serde_json::{Value, json};

const CONFIG: &str = "neopro/webapp/configuration.json";

fn config_on_disk(site: &Site) -> Value {
    let text = std::fs::read_to_string(site.path(CONFIG)).expect("configuration.json");
    serde_json::from_str(&text).expect("valid JSON on disk")
}

fn run_as(
    site: &Site,
    component: &str,
    command_type: &str,
    data: Value,
) -> Result<Value, neopro_runtime::host::WitError> {
    let sandbox = site.sandbox();
    let loaded = site.load(&sandbox, component);
    let request = CommandRequest {
        id: "t".to_owned(),
        command_type: command_type.to_owned(),
        data: data.to_string(),
    };
    sandbox
        .execute(&loaded, &request, None)
        .map(|json| serde_json::from_str(&json).expect("JSON result"))
}

fn np(id: &str) -> Value {
    json!({"id": id, "name": id, "locked": true, "owner": "neopro", "videos": []})
}

fn cl(id: &str) -> Value {
    json!({"id": id, "name": id, "locked": false, "owner": "club", "videos": []})
}

#[test]
fn neo_pro_content_merges_and_reports_the_hash() {
    let site = Site::new();
    site.write(
        CONFIG,
        &json!({"auth": {"password": "x"}, "categories": [cl("club")]}).to_string(),
    );
    let result = site
        .run(
            "update-config",
            json!({"neoProContent": {"categories": [np("neopro")]}}),
        )
        .expect("merge");
    let written = config_on_disk(&site);
    assert_eq!(
        result,
        json!({"success": true, "hash": config_hash(&written), "mode": "merge"})
    );
    assert_eq!(written["auth"], json!({"password": "x"}));
    let ids: Vec<&str> = written["categories"]
        .as_array()
        .expect("categories")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, ["neopro", "club"]);
    // The previous version is kept next to it.
    let backup = std::fs::read_to_string(site.path("neopro/webapp/configuration.backup.json"))
        .expect("backup");
    assert_eq!(
        serde_json::from_str::<Value>(&backup).expect("backup JSON"),
        json!({"auth": {"password": "x"}, "categories": [cl("club")]})
    );
    // Written like the web app writes it: 2-space indentation.
    let text = std::fs::read_to_string(site.path(CONFIG)).expect("text");
    assert!(
        text.starts_with("{\n  \"auth\": {\n    \"password\": \"x\"\n  },"),
        "{text}"
    );
}

#[test]
fn a_live_score_toggle_keeps_the_neopro_categories() {
    let site = Site::new();
    let local =
        json!({"categories": [np("annonces_neopro"), cl("matchs")], "liveScoreEnabled": false});
    site.write(CONFIG, &local.to_string());
    site.run(
        "update-config",
        json!({"neoProContent": {"liveScoreEnabled": true}, "mode": "merge"}),
    )
    .expect("toggle");
    let written = config_on_disk(&site);
    assert_eq!(written["liveScoreEnabled"], json!(true));
    assert_eq!(written["categories"], local["categories"]);
}

#[test]
fn replace_writes_the_configuration_as_given() {
    let site = Site::new();
    site.write(CONFIG, r#"{"categories":[{"id":"old"}]}"#);
    let replacement = json!({"version": "2.0", "categories": [np("new")], "sponsors": []});
    let result = site
        .run(
            "update-config",
            json!({"configuration": replacement, "mode": "replace"}),
        )
        .expect("replace");
    assert_eq!(config_on_disk(&site), replacement);
    assert_eq!(result["mode"], json!("replace"));
    assert_eq!(result["hash"], json!(config_hash(&replacement)));
}

#[test]
fn bad_update_config_requests_change_nothing() {
    let site = Site::new();
    let original = r#"{"categories":[]}"#;
    site.write(CONFIG, original);
    let cases = [
        (
            json!({}),
            "Missing neoProContent or configuration in update_config command",
        ),
        (
            json!({"mode": "update_agent", "agentFiles": {"../../etc/cron.d/x": "boom"}}),
            "update_config mode 'update_agent' is refused: it wrote arbitrary files on the box (JavaScript for the old Node.js agent). Update the agent with a signed agent release sent as update_software from the Updates page; new commands are pushed as signed components (install_component)",
        ),
        (
            json!({"configuration": [1, 2], "mode": "replace"}),
            "configuration must be a JSON object",
        ),
    ];
    for (data, message) in cases {
        assert_eq!(
            error_of(site.run("update-config", data)),
            ("invalid-input".to_owned(), message.to_owned())
        );
    }
    assert_eq!(
        std::fs::read_to_string(site.path(CONFIG)).ok().as_deref(),
        Some(original)
    );
    assert!(
        !site
            .path("neopro/webapp/configuration.backup.json")
            .exists()
    );
    assert!(!site.path("etc").exists());
}

#[test]
fn a_corrupt_configuration_is_left_untouched() {
    let site = Site::new();
    site.write(CONFIG, "{\"categories\": [");
    let (kind, message) = error_of(site.run(
        "update-config",
        json!({"neoProContent": {"liveScoreEnabled": true}}),
    ));
    assert_eq!(kind, "invalid-input");
    assert!(message.ends_with("it was left untouched"), "{message}");
    assert_eq!(
        std::fs::read_to_string(site.path(CONFIG)).ok().as_deref(),
        Some("{\"categories\": [")
    );
}

#[test]
fn concurrent_updates_are_both_kept() {
    let site = Site::new();
    site.write(CONFIG, r#"{"categories":[]}"#);
    let sandbox = site.sandbox();
    let loaded = site.load(&sandbox, "update-config");
    std::thread::scope(|s| {
        let a = s.spawn(|| {
            run_loaded(
                &sandbox,
                &loaded,
                json!({"neoProContent": {"liveScoreEnabled": true}}),
            )
        });
        let b = s.spawn(|| {
            run_loaded(
                &sandbox,
                &loaded,
                json!({"neoProContent": {"scoreOverlay": {"position": "top-left"}}}),
            )
        });
        assert!(a.join().expect("thread a").is_ok());
        assert!(b.join().expect("thread b").is_ok());
    });
    let written = config_on_disk(&site);
    assert_eq!(written["liveScoreEnabled"], json!(true));
    assert_eq!(written["scoreOverlay"], json!({"position": "top-left"}));
}

#[test]
fn update_settings_validates_and_writes() {
    let site = Site::new();
    assert_eq!(
        error_of(run_as(
            &site,
            "update-config",
            "update_settings",
            json!({"language": "fr"})
        )),
        (
            "not-found".to_owned(),
            "Configuration file not found".to_owned()
        )
    );
    site.write(CONFIG, r#"{"categories":[]}"#);
    assert_eq!(
        error_of(run_as(&site, "update-config", "update_settings", json!({}))),
        (
            "invalid-input".to_owned(),
            "At least one of language or timezone must be provided".to_owned()
        )
    );
    assert_eq!(
        error_of(run_as(
            &site,
            "update-config",
            "update_settings",
            json!({"language": "de"})
        )),
        (
            "invalid-input".to_owned(),
            "Invalid language. Valid values: fr, en, es".to_owned()
        )
    );
    assert_eq!(config_on_disk(&site), json!({"categories": []}));
    let result = run_as(
        &site,
        "update-config",
        "update_settings",
        json!({"language": "en"}),
    )
    .expect("settings");
    assert_eq!(
        result,
        json!({"success": true, "settings": {"language": "en", "timezone": "Europe/Paris"},
               "message": "Settings updated successfully"})
    );
    assert_eq!(
        config_on_disk(&site)["settings"],
        json!({"language": "en", "timezone": "Europe/Paris"})
    );
}

fn video_config() -> Value {
    json!({
        "categories": [{
            "id": "c1", "name": "Match", "videos": [
                {"name": "But", "filename": "but.mp4", "path": "videos/Match/but.mp4"},
                {"name": "Other", "filename": "other.mp4", "path": "videos/Match/other.mp4"}
            ],
            "subCategories": [{"id": "s1", "name": "Pub", "videos": [{"name": "Ad", "path": "videos/Match/Pub/ad.mp4"}]}]
        }],
        "sponsors": [{"name": "Ad", "path": "videos/Match/Pub/ad.mp4"}, {"name": "Keep", "path": "videos/X/keep.mp4"}]
    })
}

#[test]
fn delete_video_removes_the_file_and_its_entries() {
    let site = Site::new();
    site.write(CONFIG, &video_config().to_string());
    site.write("neopro/videos/Match/Pub/ad.mp4", "video bytes");
    site.write("neopro/videos/Match/Pub/other.mp4", "stays");
    let result = site
        .run(
            "delete-video",
            json!({"filename": "ad.mp4", "category": "Match", "subcategory": "Pub"}),
        )
        .expect("delete");
    assert_eq!(
        result,
        json!({"success": true, "path": "videos/Match/Pub/ad.mp4", "removedEntries": 2})
    );
    assert!(!site.path("neopro/videos/Match/Pub/ad.mp4").exists());
    assert!(site.path("neopro/videos/Match/Pub/other.mp4").exists());
    let written = config_on_disk(&site);
    assert_eq!(
        written["categories"][0]["subCategories"][0]["videos"],
        json!([])
    );
    assert_eq!(
        written["categories"][0]["videos"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        written["sponsors"],
        json!([{"name": "Keep", "path": "videos/X/keep.mp4"}])
    );
}

/// The entries go before the file (a power cut between the two must never
/// leave the TV a configuration naming a missing video; the power-cut rig
/// found that order reversed): here the configuration cannot be written, a
/// link where configuration.json should be, and the video stays.
#[test]
fn delete_video_keeps_the_file_when_its_entries_cannot_be_removed() {
    let site = Site::new();
    site.write(
        "neopro/elsewhere/configuration.json",
        &video_config().to_string(),
    );
    std::os::unix::fs::symlink(
        site.path("neopro/elsewhere/configuration.json"),
        site.path(CONFIG),
    )
    .expect("link");
    site.write("neopro/videos/Match/but.mp4", "video bytes");
    let (kind, message) = error_of(site.run(
        "delete-video",
        json!({"filename": "but.mp4", "category": "Match"}),
    ));
    assert_eq!(kind, "not-permitted");
    assert!(
        message.ends_with(
            "/neopro/webapp/configuration.json is a symbolic link; links are not followed \
             there (someone else can write that folder)"
        ),
        "{message}"
    );
    assert_eq!(
        std::fs::read(site.path("neopro/videos/Match/but.mp4")).expect("video"),
        b"video bytes"
    );
    assert_eq!(
        std::fs::read_to_string(site.path("neopro/elsewhere/configuration.json")).expect("config"),
        video_config().to_string()
    );
}

#[test]
fn deleting_a_missing_file_still_removes_the_stale_entry() {
    let site = Site::new();
    site.write(CONFIG, &video_config().to_string());
    let result = site
        .run(
            "delete-video",
            json!({"filename": "but.mp4", "category": "Match"}),
        )
        .expect("delete");
    assert_eq!(
        result,
        json!({"success": true, "path": "videos/Match/but.mp4", "removedEntries": 1,
               "message": "Video already deleted or not found"})
    );
    let written = config_on_disk(&site);
    let names: Vec<&str> = written["categories"][0]["videos"]
        .as_array()
        .expect("videos")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, ["Other"]);
}

#[test]
fn delete_video_never_leaves_the_videos_root_nor_removes_folders() {
    let site = Site::new();
    site.write(CONFIG, &video_config().to_string());
    site.write("neopro/webapp/index.html", "app");
    site.write("neopro/videos/Match/Pub/ad.mp4", "video");
    let attempts = [
        json!({"filename": "index.html", "category": "../webapp"}),
        json!({"filename": "../../webapp/index.html", "category": "Match"}),
        json!({"filename": "x.mp4", "category": "Match", "subcategory": ".."}),
        json!({"filename": "", "category": "Match"}),
    ];
    for data in attempts {
        let (kind, _) = error_of(site.run("delete-video", data.clone()));
        assert_eq!(kind, "invalid-input", "{data}");
    }
    let (kind, message) = error_of(site.run(
        "delete-video",
        json!({"filename": "Pub", "category": "Match"}),
    ));
    assert_eq!(kind, "invalid-input");
    assert_eq!(
        message,
        "videos/Match/Pub is a directory; delete_video removes single files only"
    );
    assert!(site.path("neopro/webapp/index.html").exists());
    assert!(site.path("neopro/videos/Match/Pub/ad.mp4").exists());
    assert_eq!(config_on_disk(&site), video_config());
}

#[test]
fn expired_videos_lose_their_file_and_entries() {
    let site = Site::new();
    site.write(
        CONFIG,
        &json!({
            "categories": [{"id": "c", "name": "Match", "videos": [
                {"name": "old", "path": "videos/Match/old.mp4", "expires_at": "2020-01-01T00:00:00Z"},
                {"name": "kept", "path": "videos/Match/kept.mp4", "expires_at": "2999-01-01T00:00:00Z"}
            ]}],
            "sponsors": [{"name": "old", "path": "videos/Match/old.mp4"}]
        })
        .to_string(),
    );
    site.write("neopro/videos/Match/old.mp4", "x");
    site.write("neopro/videos/Match/kept.mp4", "y");
    let result = site.run("expire-videos", json!({})).expect("expiration");
    assert_eq!(result, json!({"checked": 2, "removed": 1}));
    assert!(!site.path("neopro/videos/Match/old.mp4").exists());
    assert!(site.path("neopro/videos/Match/kept.mp4").exists());
    let written = config_on_disk(&site);
    assert_eq!(
        written["categories"][0]["videos"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(written["sponsors"], json!([]));
    // Nothing left to expire: nothing written.
    let version = std::fs::read_to_string(site.path(CONFIG)).expect("config");
    assert_eq!(
        site.run("expire-videos", json!({})).ok(),
        Some(json!({"checked": 1, "removed": 0}))
    );
    assert_eq!(
        std::fs::read_to_string(site.path(CONFIG)).ok(),
        Some(version)
    );
}

/// The agent runs the jobs the manifests declare `periodic` on its own, at
/// start: an expired video is gone with no command sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_runs_the_manifests_periodic_expiry_at_start() {
    let central = neopro_e2e::central::Central::start(&[("site-1", "key-1")]).await;
    let site = Site::new();
    site.write(
        CONFIG,
        &json!({"categories": [{"id": "c", "name": "Match", "videos": [
            {"name": "old", "path": "videos/Match/old.mp4", "expires_at": "2020-01-01T00:00:00Z"},
            {"name": "kept", "path": "videos/Match/kept.mp4"}
        ]}]})
        .to_string(),
    );
    site.write("neopro/videos/Match/old.mp4", "x");
    site.write("neopro/videos/Match/kept.mp4", "y");
    let conf = site.write_agent_conf(&central.url(), "site-1", "key-1");
    let mut text = std::fs::read_to_string(&conf).expect("conf");
    text.push_str("\nLOCAL_APP_URL=http://127.0.0.1:9\n");
    std::fs::write(&conf, text).expect("conf");
    let _agent = neopro_e2e::process::AgentProcess::start(
        &neopro_e2e::process::agent_binary(),
        &conf,
        Some("error"),
    );
    let names = || -> Vec<Value> {
        config_on_disk(&site)["categories"][0]["videos"]
            .as_array()
            .map(|v| v.iter().map(|e| e["name"].clone()).collect())
            .unwrap_or_default()
    };
    neopro_e2e::process::wait_for(
        "the expired video and its entry removed by the agent",
        std::time::Duration::from_secs(15),
        || !site.path("neopro/videos/Match/old.mp4").exists() && names() == vec![json!("kept")],
    )
    .await;
    assert!(site.path("neopro/videos/Match/kept.mp4").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_web_app_is_told_about_changes() {
    let app = neopro_e2e::central::Central::start(&[]).await;
    let site = Site::with_extra(&format!("LOCAL_APP_URL={}", app.url()));
    site.write(CONFIG, r#"{"categories":[]}"#);
    let config = site.config.clone();
    let run = move |component: &'static str, command_type: &'static str, data: Value| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            let services =
                std::sync::Arc::new(neopro_runtime::host::HostServices::from_config(&config));
            let sandbox = neopro_runtime::sandbox::Sandbox::new(services, None).expect("sandbox");
            let spec = neopro_e2e::component(component);
            let loaded = sandbox
                .load_file(&spec.wasm_path, spec.manifest)
                .expect("load");
            let request = CommandRequest {
                id: "n".to_owned(),
                command_type: command_type.to_owned(),
                data: data.to_string(),
            };
            sandbox.execute(&loaded, &request, None)
        })
    };
    run(
        "update-config",
        "update_config",
        json!({"neoProContent": {"liveScoreEnabled": true}}),
    )
    .await
    .expect("task")
    .expect("update");
    app.next("config_updated", std::time::Duration::from_secs(10))
        .await;
    run(
        "update-config",
        "update_settings",
        json!({"language": "es"}),
    )
    .await
    .expect("task")
    .expect("settings");
    assert_eq!(
        app.next("settings_updated", std::time::Duration::from_secs(10))
            .await,
        json!({"language": "es", "timezone": "Europe/Paris"})
    );
    // The app being down does not fail the command.
    app.stop().await;
    run(
        "update-config",
        "update_config",
        json!({"neoProContent": {"liveScoreEnabled": false}}),
    )
    .await
    .expect("task")
    .expect("works without the app");
}
