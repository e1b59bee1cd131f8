//! Analytics forwarding: nothing the web app appends is lost, failures are
//! retried, refusals keep the data.
#![allow(clippy::expect_used)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use neopro_runtime::jobs::analytics::{ForwardError, Forwarder, Kind, Settings};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Received {
    bodies: Mutex<Vec<Value>>,
    /// Answer 500 to this many requests first.
    fail_first: Mutex<usize>,
}

async fn plays(State(r): State<Arc<Received>>, body: Bytes) -> (StatusCode, String) {
    {
        let mut fail = r.fail_first.lock().expect("lock");
        if *fail > 0 {
            *fail -= 1;
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "Erreur lors de l'enregistrement des lectures"}).to_string(),
            );
        }
    }
    let body: Value = serde_json::from_slice(&body).expect("json body");
    let n = body["plays"].as_array().map_or(0, Vec::len);
    r.bodies.lock().expect("lock").push(body);
    (
        StatusCode::OK,
        json!({"success": true, "recorded": n}).to_string(),
    )
}

async fn impressions(State(r): State<Arc<Received>>, body: Bytes) -> (StatusCode, String) {
    let body: Value = serde_json::from_slice(&body).expect("json body");
    r.bodies.lock().expect("lock").push(body);
    (
        StatusCode::UNAUTHORIZED,
        json!({"error": "Token manquant"}).to_string(),
    )
}

async fn server() -> (String, Arc<Received>) {
    let received = Arc::new(Received::default());
    let app = axum::Router::new()
        .route("/api/analytics/video-plays", post(plays))
        .route("/api/analytics/impressions", post(impressions))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), received)
}

fn settings(url: &str, data_dir: &Path) -> Settings {
    Settings {
        server_url: url.to_owned(),
        site_id: "site-1".to_owned(),
        data_dir: data_dir.to_owned(),
        settle: Duration::from_millis(20),
        retry_delays: vec![Duration::from_millis(10), Duration::from_millis(10)],
        request_timeout: Duration::from_secs(5),
        quarantine_after: Duration::from_secs(600),
        set_aside_after_refusals: 3,
    }
}

/// What the web app does: read the array (or none), push, write in place.
fn app_append(path: &Path, event: Value) {
    let mut events: Vec<Value> = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    events.push(event);
    std::fs::write(path, serde_json::to_string_pretty(&events).expect("json")).expect("append");
}

fn play(i: usize) -> Value {
    json!({"video_filename": format!("v{i}.mp4"), "category": "sponsor", "played_at": "2026-01-01T00:00:00Z",
           "duration_played": 10, "video_duration": 10, "completed": true, "trigger_type": "auto"})
}

fn sent_filenames(r: &Received) -> Vec<String> {
    r.bodies
        .lock()
        .expect("lock")
        .iter()
        .flat_map(|b| b["plays"].as_array().cloned().unwrap_or_default())
        .map(|p| p["video_filename"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_play_is_lost_while_the_app_appends() {
    let (url, received) = server().await;
    let dir = tempfile::tempdir().expect("temp");
    let buffer: PathBuf = dir.path().join("analytics_buffer.json");
    let forwarder = Forwarder::new(settings(&url, dir.path())).expect("forwarder");
    const N: usize = 400;
    let writer = {
        let buffer = buffer.clone();
        std::thread::spawn(move || {
            for i in 0..N {
                app_append(&buffer, play(i));
            }
        })
    };
    let mut passes = 0;
    let mut forwarded = 0;
    while !writer.is_finished() {
        // A batch caught mid-write is kept and retried, never dropped.
        match forwarder.forward(Kind::VideoPlays).await {
            Ok(n) => forwarded += n,
            Err(ForwardError::Unreadable { .. }) => {}
            Err(e) => panic!("{e}"),
        }
        passes += 1;
    }
    writer.join().expect("writer");
    for _ in 0..3 {
        forwarded += forwarder
            .forward(Kind::VideoPlays)
            .await
            .expect("final pass");
    }
    let names: HashSet<String> = sent_filenames(&received).into_iter().collect();
    let missing: Vec<usize> = (0..N)
        .filter(|i| !names.contains(&format!("v{i}.mp4")))
        .collect();
    assert!(
        missing.is_empty(),
        "lost {} plays: {missing:?} ({passes} passes)",
        missing.len()
    );
    assert!(forwarded >= N);
    assert!(passes > 1, "the forwarder ran while the app was writing");
    assert!(!buffer.exists());
    assert!(!dir.path().join("analytics_buffer.json.sending").exists());
    let body = received.bodies.lock().expect("lock")[0].clone();
    assert_eq!(body["site_id"], "site-1");
}

#[tokio::test]
async fn server_errors_are_retried_then_the_batch_is_kept() {
    let (url, received) = server().await;
    let dir = tempfile::tempdir().expect("temp");
    let buffer = dir.path().join("analytics_buffer.json");
    let forwarder = Forwarder::new(settings(&url, dir.path())).expect("forwarder");

    app_append(&buffer, play(1));
    *received.fail_first.lock().expect("lock") = 2;
    assert_eq!(forwarder.forward(Kind::VideoPlays).await, Ok(1));
    assert_eq!(sent_filenames(&received), ["v1.mp4"]);

    // Three 500s: the pass gives up and keeps the batch.
    app_append(&buffer, play(2));
    *received.fail_first.lock().expect("lock") = 3;
    let sending = dir.path().join("analytics_buffer.json.sending");
    assert_eq!(
        forwarder.forward(Kind::VideoPlays).await,
        Err(ForwardError::Refused {
            what: "video plays",
            count: 1,
            status: 500,
            message: "Erreur lors de l'enregistrement des lectures".to_owned(),
            path: sending.clone(),
        })
    );
    assert!(sending.exists());
    // Newer plays wait behind it; the next pass sends both, oldest first.
    app_append(&buffer, play(3));
    assert_eq!(forwarder.forward(Kind::VideoPlays).await, Ok(2));
    assert_eq!(sent_filenames(&received), ["v1.mp4", "v2.mp4", "v3.mp4"]);
    assert!(!sending.exists() && !buffer.exists());
}

#[tokio::test]
async fn refused_impressions_are_kept_with_the_site_id_added() {
    let (url, received) = server().await;
    let dir = tempfile::tempdir().expect("temp");
    let buffer = dir.path().join("sponsor_impressions.json");
    let forwarder = Forwarder::new(settings(&url, dir.path())).expect("forwarder");
    app_append(&buffer, json!({"video_id": "v", "duration_played": 5}));
    app_append(&buffer, json!({"video_id": "w", "site_id": "other"}));
    let err = forwarder
        .forward(Kind::SponsorImpressions)
        .await
        .expect_err("401");
    let sending = dir.path().join("sponsor_impressions.json.sending");
    assert_eq!(
        err.to_string(),
        format!(
            "the central server refused 2 sponsor impressions (HTTP 401: Token manquant); kept in {}",
            sending.display()
        )
    );
    let body = received.bodies.lock().expect("lock")[0].clone();
    assert_eq!(body["impressions"][0]["site_id"], "site-1");
    assert_eq!(body["impressions"][1]["site_id"], "other");
    let kept: Value =
        serde_json::from_str(&std::fs::read_to_string(&sending).expect("kept")).expect("json");
    assert_eq!(kept.as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn a_half_written_buffer_is_kept_not_dropped() {
    let (url, received) = server().await;
    let dir = tempfile::tempdir().expect("temp");
    std::fs::write(
        dir.path().join("analytics_buffer.json"),
        "[{\"video_filename\": \"a",
    )
    .expect("write");
    let forwarder = Forwarder::new(settings(&url, dir.path())).expect("forwarder");
    let err = forwarder
        .forward(Kind::VideoPlays)
        .await
        .expect_err("unreadable");
    assert!(matches!(err, ForwardError::Unreadable { .. }), "{err}");
    assert!(dir.path().join("analytics_buffer.json.sending").exists());
    assert!(received.bodies.lock().expect("lock").is_empty());

    // Still broken long after its last write: moved aside, newer plays flow.
    let mut quick = settings(&url, dir.path());
    quick.quarantine_after = Duration::ZERO;
    let forwarder = Forwarder::new(quick).expect("forwarder");
    let err = forwarder
        .forward(Kind::VideoPlays)
        .await
        .expect_err("quarantined");
    let ForwardError::Quarantined { moved_to, .. } = &err else {
        panic!("{err}");
    };
    assert!(moved_to.exists() && !dir.path().join("analytics_buffer.json.sending").exists());
    app_append(&dir.path().join("analytics_buffer.json"), play(7));
    assert_eq!(forwarder.forward(Kind::VideoPlays).await, Ok(1));
    assert_eq!(sent_filenames(&received), ["v7.mp4"]);
    // Nothing buffered at all: nothing sent, no error.
    let empty = tempfile::tempdir().expect("temp");
    let idle = Forwarder::new(settings(&url, empty.path())).expect("forwarder");
    assert_eq!(idle.forward(Kind::VideoPlays).await, Ok(0));
}

#[tokio::test]
async fn a_batch_refused_pass_after_pass_is_moved_aside_so_newer_events_flow() {
    let (url, received) = server().await;
    let dir = tempfile::tempdir().expect("temp");
    let buffer = dir.path().join("sponsor_impressions.json");
    let sending = dir.path().join("sponsor_impressions.json.sending");
    let mut quick = settings(&url, dir.path());
    quick.set_aside_after_refusals = 2;
    let forwarder = Forwarder::new(quick).expect("forwarder");
    app_append(&buffer, json!({"video_id": "old"}));
    let first = forwarder.forward(Kind::SponsorImpressions).await;
    assert!(
        matches!(first, Err(ForwardError::Refused { status: 401, .. })),
        "{first:?}"
    );
    assert!(sending.exists());
    // The app keeps appending behind the refused batch.
    app_append(&buffer, json!({"video_id": "new"}));
    let err = forwarder
        .forward(Kind::SponsorImpressions)
        .await
        .expect_err("set aside");
    let ForwardError::SetAside {
        moved_to, passes, ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(*passes, 2);
    let name = moved_to.file_name().and_then(|n| n.to_str()).unwrap_or("");
    assert!(
        name.starts_with("sponsor_impressions.json.refused-"),
        "{name}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "the central server refused 1 sponsor impressions 2 times in a row (HTTP 401: Token \
             manquant); moved to {} so newer events get through (the newest 3 such files are kept)",
            moved_to.display()
        )
    );
    let kept: Value =
        serde_json::from_str(&std::fs::read_to_string(moved_to).expect("kept")).expect("json");
    assert_eq!(kept[0]["video_id"], "old");
    assert!(!sending.exists());

    // The next pass sends what the app appended meanwhile.
    let _ = forwarder.forward(Kind::SponsorImpressions).await;
    let bodies = received.bodies.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    assert_eq!(bodies[2]["impressions"][0]["video_id"], "new");
    assert_eq!(bodies[2]["impressions"].as_array().map(Vec::len), Some(1));

    // Refused batch after refused batch: only the newest few are kept.
    for i in 0..8 {
        let _ = forwarder.forward(Kind::SponsorImpressions).await;
        app_append(&buffer, json!({"video_id": format!("e{i}")}));
    }
    let refused = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".refused-"))
        .count();
    assert_eq!(refused, neopro_runtime::jobs::analytics::KEEP_REFUSED);
}
