//! Analytics forwarding: nothing the web app appends is lost, failures are
//! retried, refusals keep the data.
#![allow(clippy::expect_used)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use neopro_e2e::central::Central;
use neopro_runtime::jobs::analytics::{
    Delivered, ForwardError, Forwarder, Kind, Settings, forward_and_log,
};
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
    /// Then answer 200 with a captive portal's page to this many.
    portal_first: Mutex<usize>,
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
    {
        let mut portal = r.portal_first.lock().expect("lock");
        if *portal > 0 {
            *portal -= 1;
            return (
                StatusCode::OK,
                "<html><body>Connectez-vous au Wi-Fi du club</body></html>".to_owned(),
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

/// What a pass of `n` events returns when the server recorded them all.
fn all_recorded(n: usize) -> Result<Delivered, ForwardError> {
    Ok(Delivered {
        sent: n,
        recorded: n,
        uncounted: 0,
    })
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
            Ok(d) => forwarded += d.sent,
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
            .expect("final pass")
            .sent;
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
    assert_eq!(forwarder.forward(Kind::VideoPlays).await, all_recorded(1));
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
    assert_eq!(forwarder.forward(Kind::VideoPlays).await, all_recorded(2));
    assert_eq!(sent_filenames(&received), ["v1.mp4", "v2.mp4", "v3.mp4"]);
    assert!(!sending.exists() && !buffer.exists());
}

/// A 200 that is not the server's answer (a captive portal, a proxy) is
/// not a delivery: the batch is kept.
#[tokio::test]
async fn a_200_that_is_not_the_servers_answer_keeps_the_batch() {
    let (url, received) = server().await;
    let dir = tempfile::tempdir().expect("temp");
    let buffer = dir.path().join("analytics_buffer.json");
    let forwarder = Forwarder::new(settings(&url, dir.path())).expect("forwarder");
    app_append(&buffer, play(1));
    *received.portal_first.lock().expect("lock") = 3;
    let sending = dir.path().join("analytics_buffer.json.sending");
    let err = forwarder
        .forward(Kind::VideoPlays)
        .await
        .expect_err("unconfirmed");
    assert_eq!(
        err.to_string(),
        format!(
            "the central server answered HTTP 200 to 1 video plays without confirming them \
             (\"<html><body>Connectez-vous au Wi-Fi du club</body></html>\": not its JSON \
             answer, perhaps a proxy or captive portal); kept in {}",
            sending.display()
        )
    );
    assert!(sending.exists());
    assert_eq!(forwarder.forward(Kind::VideoPlays).await, all_recorded(1));
    assert_eq!(sent_filenames(&received), ["v1.mp4"]);
    assert!(!sending.exists());
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
    assert_eq!(forwarder.forward(Kind::VideoPlays).await, all_recorded(1));
    assert_eq!(sent_filenames(&received), ["v7.mp4"]);
    // Nothing buffered at all: nothing sent, no error.
    let empty = tempfile::tempdir().expect("temp");
    let idle = Forwarder::new(settings(&url, empty.path())).expect("forwarder");
    assert_eq!(
        idle.forward(Kind::VideoPlays).await,
        Ok(Delivered::default())
    );
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

/// The agent's log lines while `f` runs on this thread (a current-thread
/// runtime keeps every task of the pass here).
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn logged_pass(forwarder: &Forwarder, kind: Kind) -> Vec<String> {
    use tracing_subscriber::util::SubscriberInitExt;
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || Capture(writer.clone()))
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_env_filter("neopro_runtime=info")
        .finish();
    {
        let _guard = subscriber.set_default();
        forward_and_log(forwarder, kind).await;
    }
    let text = String::from_utf8(buffer.lock().expect("lock").clone()).expect("utf-8 log");
    text.lines().map(|l| l.trim().to_owned()).collect()
}

const KNOWN_VIDEO: &str = "0d1e2f3a-0000-4000-8000-000000000001";
const UNKNOWN_VIDEO: &str = "0d1e2f3a-0000-4000-8000-0000000000ff";

fn plays_of_videos() -> Vec<Value> {
    let mut plays: Vec<Value> = (1..=3).map(play).collect();
    plays[0]["video_id"] = json!(KNOWN_VIDEO);
    // A video deleted on the server since it was deployed: the foreign key
    // refuses the row.
    plays[1]["video_id"] = json!(UNKNOWN_VIDEO);
    plays
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// 18.6: the real server answers `{success: true, recorded: 2}` to 3 plays
/// when it does not know one play's video. The log says so, and the batch
/// is done: the skipped play is not sent again.
#[tokio::test(flavor = "current_thread")]
async fn plays_the_server_skipped_are_logged_and_not_sent_again() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    central.api.add_video(KNOWN_VIDEO);
    let dir = tempfile::tempdir().expect("temp");
    let buffer = dir.path().join("analytics_buffer.json");
    std::fs::write(&buffer, json!(plays_of_videos()).to_string()).expect("buffer");
    let forwarder = Forwarder::new(settings(&central.url(), dir.path())).expect("forwarder");

    let lines = logged_pass(&forwarder, Kind::VideoPlays).await;
    assert_eq!(
        lines,
        [
            "WARN 3 video plays sent to the central server: 2 recorded, 1 skipped by the server \
          (its database refused them: a video or sponsor it does not know, or a missing file \
          name or date; it does not say which), not sent again"
        ]
    );
    let recorded: Vec<Value> = central.api.recorded_plays();
    let names: Vec<&str> = recorded
        .iter()
        .map(|p| p["video_filename"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["v1.mp4", "v3.mp4"]);
    // Nothing is kept for a resend: no buffer, no .sending, nothing aside.
    assert_eq!(files_in(dir.path()), Vec::<String>::new());

    // The next pass has nothing to send, and says nothing.
    app_append(&buffer, play(4));
    let lines = logged_pass(&forwarder, Kind::VideoPlays).await;
    assert_eq!(
        lines,
        ["INFO 1 video plays sent to the central server, all recorded"]
    );
    let bodies = central.api.bodies("/api/analytics/video-plays");
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[1]["plays"].as_array().map(Vec::len), Some(1));
    assert_eq!(files_in(dir.path()), Vec::<String>::new());
    assert!(logged_pass(&forwarder, Kind::VideoPlays).await.is_empty());
    assert_eq!(central.api.bodies("/api/analytics/video-plays").len(), 2);
    central.stop().await;
}

/// 18.6: a real failure (the server's 500 on every attempt) keeps the
/// plays on disk as they were, and the next pass sends them.
#[tokio::test(flavor = "current_thread")]
async fn a_failed_send_keeps_the_plays_for_the_next_pass() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    central.api.add_video(KNOWN_VIDEO);
    let dir = tempfile::tempdir().expect("temp");
    let buffer = dir.path().join("analytics_buffer.json");
    let written = json!(plays_of_videos());
    std::fs::write(&buffer, written.to_string()).expect("buffer");
    let forwarder = Forwarder::new(settings(&central.url(), dir.path())).expect("forwarder");

    // One attempt and two retries, all refused with upstream's 500.
    central.api.fail_video_plays(3);
    let lines = logged_pass(&forwarder, Kind::VideoPlays).await;
    let sending = dir.path().join("analytics_buffer.json.sending");
    assert_eq!(
        lines,
        [format!(
            "WARN the central server refused 3 video plays (HTTP 500: Erreur lors de \
             l'enregistrement des lectures); kept in {}",
            sending.display()
        )]
    );
    assert_eq!(central.api.bodies("/api/analytics/video-plays").len(), 3);
    assert!(central.api.recorded_plays().is_empty());
    assert_eq!(files_in(dir.path()), ["analytics_buffer.json.sending"]);
    let kept: Value =
        serde_json::from_str(&std::fs::read_to_string(&sending).expect("kept")).expect("json");
    assert_eq!(kept, written);

    // A site the server does not know is a refusal too: still kept.
    let mut stranger = settings(&central.url(), dir.path());
    stranger.site_id = "site-unknown".to_owned();
    let err = Forwarder::new(stranger)
        .expect("forwarder")
        .forward(Kind::VideoPlays)
        .await
        .expect_err("404");
    assert!(
        matches!(&err, ForwardError::Refused { status: 404, message, .. } if message == "Site non trouvé"),
        "{err}"
    );
    assert_eq!(files_in(dir.path()), ["analytics_buffer.json.sending"]);

    // The server is back: the kept batch goes first, then the newer play.
    app_append(&buffer, play(9));
    let lines = logged_pass(&forwarder, Kind::VideoPlays).await;
    assert_eq!(
        lines,
        [
            "WARN 4 video plays sent to the central server: 3 recorded, 1 skipped by the server \
          (its database refused them: a video or sponsor it does not know, or a missing file \
          name or date; it does not say which), not sent again"
        ]
    );
    let names: Vec<String> = central
        .api
        .recorded_plays()
        .iter()
        .map(|p| p["video_filename"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(names, ["v1.mp4", "v3.mp4", "v9.mp4"]);
    assert_eq!(files_in(dir.path()), Vec::<String>::new());
    central.stop().await;
}

/// The web app's user owns `data/`: a link, a FIFO or a huge file in place
/// of a buffer is never read (a link to `/dev/zero` ran the agent out of
/// memory, a FIFO hung the pass for ever, a link to a JSON array elsewhere
/// sent it to the server). Each is moved aside at once, its target left
/// alone, and newer plays flow (issue 24, the analytics buffers).
#[tokio::test]
async fn a_link_a_fifo_or_a_huge_file_in_place_of_a_buffer_is_moved_aside_unread() {
    let (url, received) = server().await;
    let dir = tempfile::tempdir().expect("temp");
    let buffer = dir.path().join("analytics_buffer.json");
    let elsewhere = tempfile::tempdir().expect("temp");
    let secret = elsewhere.path().join("plays.json");
    std::fs::write(&secret, json!([play(99)]).to_string()).expect("write");
    let huge = dir.path().join("huge");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(neopro_runtime::jobs::analytics::MAX_BATCH_BYTES + 1))
        .expect("sparse file");
    let forwarder = Forwarder::new(settings(&url, dir.path())).expect("forwarder");
    let fifo = |path: &Path| {
        let made = std::process::Command::new("mkfifo").arg(path).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    };
    /// How a case plants its file at the buffer's path.
    type Plant<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: [(&str, Plant, &str); 4] = [
        (
            "link to a JSON array elsewhere",
            Box::new(|p: &Path| std::os::unix::fs::symlink(&secret, p).expect("link")),
            "is a symbolic link",
        ),
        (
            "link to /dev/zero",
            Box::new(|p: &Path| std::os::unix::fs::symlink("/dev/zero", p).expect("link")),
            "is a symbolic link",
        ),
        ("FIFO", Box::new(fifo), "is a FIFO"),
        (
            "file above the bound",
            Box::new(|p: &Path| std::fs::rename(&huge, p).expect("rename")),
            "more than the 16777216 bytes",
        ),
    ];
    for (what, plant, reason_has) in cases {
        plant(&buffer);
        let err =
            tokio::time::timeout(Duration::from_secs(10), forwarder.forward(Kind::VideoPlays))
                .await
                .unwrap_or_else(|_| panic!("{what}: the pass hung"))
                .expect_err(what);
        let ForwardError::Quarantined {
            reason, moved_to, ..
        } = &err
        else {
            panic!("{what}: {err}");
        };
        assert!(reason.contains(reason_has), "{what}: {reason}");
        assert!(
            moved_to.file_name().is_some_and(|n| n
                .to_string_lossy()
                .starts_with("analytics_buffer.json.unusable-")),
            "{what}: {}",
            moved_to.display()
        );
        assert!(!dir.path().join("analytics_buffer.json.sending").exists());
    }
    assert!(received.bodies.lock().expect("lock").is_empty());
    assert_eq!(
        std::fs::read_to_string(&secret).expect("target"),
        json!([play(99)]).to_string()
    );
    app_append(&buffer, play(1));
    assert_eq!(forwarder.forward(Kind::VideoPlays).await, all_recorded(1));
    assert_eq!(sent_filenames(&received), ["v1.mp4"]);
}

/// The web app's user can swap `data/` itself for a link (to a folder of
/// plays elsewhere, to the agent's state): the pass refuses the folder and
/// renames, reads, sends and deletes nothing behind it (issue 24, folders
/// above the files).
#[tokio::test]
async fn a_data_folder_swapped_for_a_link_is_left_alone() {
    use std::os::unix::fs::PermissionsExt;
    let (url, received) = server().await;
    // The NEOPRO folder: its group (the web app's user) can write it.
    let neopro = tempfile::tempdir().expect("temp");
    std::fs::set_permissions(neopro.path(), std::fs::Permissions::from_mode(0o775)).expect("chmod");
    let elsewhere = tempfile::tempdir().expect("temp");
    let theirs = elsewhere.path().join("analytics_buffer.json");
    std::fs::write(&theirs, json!([play(99)]).to_string()).expect("write");
    let data = neopro.path().join("data");
    std::os::unix::fs::symlink(elsewhere.path(), &data).expect("link");
    let forwarder = Forwarder::new(settings(&url, &data)).expect("forwarder");
    let err = forwarder
        .forward(Kind::VideoPlays)
        .await
        .expect_err("forwarded through the link");
    let ForwardError::File { path, reason } = &err else {
        panic!("{err}");
    };
    assert_eq!(path, &data);
    assert!(
        reason.starts_with(&format!("{} is a symbolic link in ", data.display())),
        "{reason}"
    );
    assert!(received.bodies.lock().expect("lock").is_empty());
    assert_eq!(files_in(elsewhere.path()), ["analytics_buffer.json"]);
    assert_eq!(
        std::fs::read_to_string(&theirs).expect("left as it was"),
        json!([play(99)]).to_string()
    );
    // A real folder again: the plays flow.
    std::fs::remove_file(&data).expect("unlink");
    std::fs::create_dir(&data).expect("mkdir");
    app_append(&data.join("analytics_buffer.json"), play(1));
    assert_eq!(forwarder.forward(Kind::VideoPlays).await, all_recorded(1));
    assert_eq!(sent_filenames(&received), ["v1.mp4"]);
}
