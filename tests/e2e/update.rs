//! update_software end to end: real component, real archives over a local
//! HTTP server, a recording systemctl double. A failed update leaves the
//! install byte-identical; backups are kept five deep and never anyone
//! else's; an interrupted update is finished or rolled back at the next
//! start.
#![allow(clippy::expect_used)]

use neopro_e2e::fake_systemctl::FakeSystemctl;
use neopro_e2e::http::{Fault, FileServer};
use neopro_e2e::release::{Item, snapshot, tar_gz};
use neopro_e2e::{Site, error_of};
use neopro_runtime::store::hash::sha256_hex;
use serde_json::{Value, json};

/// A box running release 1.0.0.
fn installed_site(fake: &FakeSystemctl) -> Site {
    let site = Site::with_extra(&fake.conf_line());
    site.write("neopro/webapp/index.html", "v1 index");
    site.write(
        "neopro/webapp/configuration.json",
        r#"{"categories":["club"]}"#,
    );
    site.write("neopro/server/app.js", "v1 server");
    site.write("neopro/admin/admin.js", "v1 admin");
    site.write("neopro/VERSION", "1.0.0\n");
    site.write("neopro/release.json", r#"{"version":"1.0.0"}"#);
    site.write("neopro/videos/Match/clip.mp4", "video");
    std::os::unix::fs::symlink("app.js", site.path("neopro/server/current")).expect("link");
    site
}

fn release_2() -> Vec<u8> {
    tar_gz(&[
        Item::Dir("./"),
        Item::Dir("./webapp/"),
        Item::File("./webapp/index.html", b"v2 index"),
        Item::File("./webapp/configuration.json", b"{\"from\":\"archive\"}"),
        Item::File("./server/app.js", b"v2 server"),
        Item::Symlink("./server/current", "app.js"),
        Item::File("./videos/new.mp4", b"not installed"),
    ])
}

fn update_data(server: &FileServer, archive: &[u8], version: &str) -> Value {
    json!({
        "deploymentId": "dep-1", "updateId": "upd-1", "version": version,
        "updateUrl": server.url("update.tar.gz"),
        "packageSize": archive.len().to_string(),
        "checksum": format!("sha256:{}", sha256_hex(archive)),
        "isCritical": false,
    })
}

fn installed(site: &Site) -> std::collections::BTreeMap<String, Vec<u8>> {
    snapshot(&site.path("neopro"), &["backups"])
}

fn backups(site: &Site) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(site.path("neopro/backups"))
        .expect("backups")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn read(site: &Site, rel: &str) -> String {
    std::fs::read_to_string(site.path(rel)).unwrap_or_else(|e| format!("<{e}>"))
}

#[test]
fn an_update_installs_keeps_the_configuration_and_backs_up() {
    let fake = FakeSystemctl::temp();
    let site = installed_site(&fake);
    let archive = release_2();
    let server = FileServer::start(archive.clone(), Fault::None);
    let before = installed(&site);

    let result = site
        .run("update-software", update_data(&server, &archive, "2.0.0"))
        .expect("update succeeds");
    assert_eq!(result["success"], json!(true));
    assert_eq!(result["version"], json!("2.0.0"));
    assert_eq!(result["previousVersion"], json!("1.0.0"));
    assert_eq!(result["report"]["healthy"], json!(true));
    assert_eq!(
        result["report"]["servicesStatus"],
        json!({"neopro-app": "active", "neopro-admin": "active"})
    );

    assert_eq!(read(&site, "neopro/webapp/index.html"), "v2 index");
    assert_eq!(read(&site, "neopro/server/app.js"), "v2 server");
    assert_eq!(
        read(&site, "neopro/webapp/configuration.json"),
        r#"{"categories":["club"]}"#,
        "the club's configuration is kept"
    );
    assert_eq!(
        read(&site, "neopro/admin/admin.js"),
        "v1 admin",
        "not in the release"
    );
    assert!(
        !site.path("neopro/videos/new.mp4").exists(),
        "videos/ skipped"
    );
    assert_eq!(read(&site, "neopro/VERSION"), "2.0.0\n");
    let release: Value = serde_json::from_str(&read(&site, "neopro/release.json")).expect("json");
    assert_eq!(release["version"], json!("2.0.0"));
    assert_eq!(release["source"], json!("central-dashboard"));
    let webapp_version: Value =
        serde_json::from_str(&read(&site, "neopro/webapp/version.json")).expect("json");
    assert_eq!(webapp_version["version"], json!("2.0.0"));
    assert!(!site.path("neopro/.neopro-update").exists());
    assert!(!site.path("state/staging/update").exists());

    // The backup holds exactly what was replaced, as it was.
    let names = backups(&site);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("backup-") && names[0].ends_with("-2.0.0"));
    let backup = snapshot(
        &site.path(&format!("neopro/backups/{}", names[0])),
        &[".neopro-runtime-backup"],
    );
    let expected: std::collections::BTreeMap<String, Vec<u8>> = before
        .into_iter()
        .filter(|(k, _)| {
            ["webapp", "server", "admin", "VERSION", "release.json"]
                .iter()
                .any(|t| k == t || k.starts_with(&format!("{t}/")))
        })
        .collect();
    assert_eq!(backup, expected);

    assert_eq!(
        fake.calls(),
        vec![
            "stop neopro-app",
            "stop neopro-admin",
            "start neopro-app",
            "start neopro-admin",
            "is-active neopro-app",
            "is-active neopro-admin",
            "is-active neopro-app",
            "is-active neopro-admin",
        ]
    );
}

#[test]
fn the_same_version_again_is_success_without_reinstalling() {
    let fake = FakeSystemctl::temp();
    let site = installed_site(&fake);
    let archive = release_2();
    let server = FileServer::start(archive.clone(), Fault::None);
    let before = installed(&site);
    let result = site
        .run("update-software", update_data(&server, &archive, "1.0.0"))
        .expect("success");
    assert_eq!(result["message"], json!("already installed"));
    assert_eq!(installed(&site), before);
    assert!(backups(&site).is_empty());
    assert!(server.ranges().is_empty(), "nothing downloaded");
    assert!(!fake.calls().iter().any(|c| c.starts_with("stop")));
}

/// The downgrade rule waits for the download: only then is the archive
/// known to be an app release (an agent release has its own series).
#[test]
fn an_app_release_older_than_the_installed_one_is_refused_after_its_download() {
    let fake = FakeSystemctl::temp();
    let site = installed_site(&fake);
    let before = installed(&site);
    let archive = release_2();
    let server = FileServer::start(archive.clone(), Fault::None);
    let (kind, message) =
        error_of(site.run("update-software", update_data(&server, &archive, "0.9.0")));
    assert_eq!(kind, "not-permitted", "{message}");
    assert_eq!(
        message,
        "refusing to install 0.9.0: it is older than the installed 1.0.0. Downgrades are refused unless UPDATE_ALLOW_DOWNGRADE=true in site.conf"
    );
    assert_eq!(server.ranges().len(), 1, "downloaded once");
    assert_eq!(installed(&site), before, "nothing changed");
    assert!(backups(&site).is_empty(), "no backup");
    assert!(
        !site.path("state/staging/update").exists(),
        "no download left"
    );
    assert!(!fake.calls().iter().any(|c| c.starts_with("stop")));

    // Allowed by the site: installed.
    let fake = FakeSystemctl::temp();
    let site = Site::with_extra(&format!(
        "{}\nUPDATE_ALLOW_DOWNGRADE=true",
        fake.conf_line()
    ));
    site.write("neopro/VERSION", "1.0.0\n");
    let result = site
        .run("update-software", update_data(&server, &archive, "0.9.0"))
        .expect("a downgrade the site allows");
    assert_eq!(result["version"], json!("0.9.0"));
    assert_eq!(read(&site, "neopro/VERSION"), "0.9.0\n");
}

#[test]
fn a_package_size_beyond_any_disk_is_refused_with_the_disk_message() {
    let fake = FakeSystemctl::temp();
    let site = installed_site(&fake);
    let before = installed(&site);
    let archive = release_2();
    let server = FileServer::start(archive.clone(), Fault::None);
    for size in [json!("99999999999999999999"), json!(u64::MAX.to_string())] {
        let mut data = update_data(&server, &archive, "2.0.0");
        data["packageSize"] = size;
        let (kind, message) = error_of(site.run("update-software", data));
        assert_eq!(kind, "too-large", "{message}");
        assert!(
            message.starts_with("Espace disque insuffisant: ")
                && message.ends_with("MB disponibles, 17592186044415MB requis"),
            "{message}"
        );
    }
    assert_eq!(installed(&site), before);
    assert!(server.ranges().is_empty(), "nothing downloaded");
}

#[test]
fn bad_packages_change_nothing() {
    let fake = FakeSystemctl::temp();
    let site = installed_site(&fake);
    let before = installed(&site);
    let good = release_2();
    let cases: Vec<(Vec<u8>, Value, &str, &str)> = vec![
        // checksum mismatch
        (
            good.clone(),
            json!("0".repeat(64)),
            "checksum-mismatch",
            "Checksum verification failed",
        ),
        // corrupt archive
        (
            b"this is not a tar.gz".to_vec(),
            Value::Null,
            "invalid-input",
            "the archive is not a valid .tar.gz",
        ),
        // tar-slip
        (
            tar_gz(&[
                Item::File("webapp/ok.html", b"x"),
                Item::File("../../evil", b"x"),
            ]),
            Value::Null,
            "not-permitted",
            "the archive entry '../../evil' contains '..'",
        ),
        (
            tar_gz(&[Item::File("/tmp/evil-neopro", b"x")]),
            Value::Null,
            "not-permitted",
            "the archive entry '/tmp/evil-neopro' has an absolute path",
        ),
        (
            tar_gz(&[Item::Symlink("webapp/etc", "/etc")]),
            Value::Null,
            "not-permitted",
            "the archive entry 'webapp/etc' is a link to '/etc'",
        ),
        (
            tar_gz(&[
                Item::Symlink("webapp/a", "."),
                Item::Symlink("webapp/a/b", ".."),
            ]),
            Value::Null,
            "not-permitted",
            "the archive entry 'webapp/a/b' lies under 'webapp/a', a link made by an earlier entry",
        ),
    ];
    for (archive, checksum, kind, message) in cases {
        let server = FileServer::start(archive.clone(), Fault::None);
        let mut data = update_data(&server, &archive, "2.0.0");
        data["checksum"] = checksum;
        let (got_kind, got_message) = error_of(site.run("update-software", data));
        assert_eq!(got_kind, kind, "{got_message}");
        assert!(got_message.starts_with(message), "{got_message}");
        assert_eq!(installed(&site), before, "{message}: nothing changed");
        assert!(backups(&site).is_empty(), "{message}: no backup");
        assert!(!site.path("evil").exists() && !std::path::Path::new("/tmp/evil-neopro").exists());
    }
    assert!(!fake.calls().iter().any(|c| c.starts_with("stop")));
}

#[test]
fn a_release_that_does_not_come_up_is_rolled_back_byte_for_byte() {
    let fake = FakeSystemctl::temp();
    let site = installed_site(&fake);
    let before = installed(&site);
    let archive = tar_gz(&[
        Item::File("webapp/index.html", b"broken index"),
        Item::File("webapp/BROKEN", b"this release does not start"),
        Item::File(
            "sync-extra/new.txt",
            b"a folder the old release did not have",
        ),
    ]);
    fake.failed_while("neopro-app", &site.path("neopro/webapp/BROKEN"));
    let server = FileServer::start(archive.clone(), Fault::None);
    let (kind, message) =
        error_of(site.run("update-software", update_data(&server, &archive, "2.0.0")));
    assert_eq!(kind, "failed");
    let names = backups(&site);
    assert_eq!(
        message,
        format!(
            "Service neopro-app is not active after restart (state: failed). Rollback: restored backup {} (version 1.0.0), services active",
            names[0]
        )
    );
    assert_eq!(
        installed(&site),
        before,
        "byte-identical after the rollback"
    );
}

/// "active" once is not healthy: an app that crashes a few seconds after
/// starting (here: after 3 status checks) fails the settle time and the
/// release is rolled back, with one period before "Rollback".
#[test]
fn a_release_whose_app_crashes_after_starting_is_rolled_back() {
    let fake = FakeSystemctl::temp();
    let site = Site::with_extra(&format!("{}\nUPDATE_SETTLE_SECS=2", fake.conf_line()));
    site.write("neopro/webapp/index.html", "v1 index");
    site.write("neopro/server/app.js", "v1 server");
    site.write("neopro/VERSION", "1.0.0\n");
    let before = installed(&site);
    let archive = tar_gz(&[
        Item::File("webapp/index.html", b"crashing index"),
        Item::File("webapp/CRASHES", b"this release crashes after start"),
    ]);
    fake.crashes_while("neopro-app", &site.path("neopro/webapp/CRASHES"), 3);
    let server = FileServer::start(archive.clone(), Fault::None);
    let (kind, message) =
        error_of(site.run("update-software", update_data(&server, &archive, "2.0.0")));
    assert_eq!(kind, "failed");
    assert!(
        message.starts_with("Service neopro-app did not stay active after the update: failed "),
        "{message}"
    );
    assert!(
        message.contains("(it must stay active for 2 s). Rollback: restored backup"),
        "{message}"
    );
    assert!(!message.contains(".."), "{message}");
    assert_eq!(
        installed(&site),
        before,
        "byte-identical after the rollback"
    );
}

/// A Pi has no RTC: its clock can be behind the backups it made earlier,
/// so the backup a failing update just made sorts oldest. It must survive
/// the pruning, and the rollback must not depend on it anyway.
#[test]
fn a_clock_behind_the_old_backups_still_rolls_back_byte_for_byte() {
    let fake = FakeSystemctl::temp();
    let site = installed_site(&fake);
    let future: Vec<String> = (1..=5)
        .map(|day| format!("backup-2099-01-0{day}T00-00-00-000Z-1.0.0"))
        .collect();
    for name in &future {
        site.write(
            &format!("neopro/backups/{name}/.neopro-runtime-backup"),
            "{}",
        );
        site.write(&format!("neopro/backups/{name}/webapp/index.html"), "old");
    }
    let before = installed(&site);
    let archive = tar_gz(&[
        Item::File("webapp/index.html", b"broken index"),
        Item::File("webapp/BROKEN", b"this release does not start"),
        Item::File("server/app.js", b"broken server"),
    ]);
    fake.failed_while("neopro-app", &site.path("neopro/webapp/BROKEN"));
    let server = FileServer::start(archive.clone(), Fault::None);
    let (kind, message) =
        error_of(site.run("update-software", update_data(&server, &archive, "2.0.0")));
    assert_eq!(kind, "failed");
    let names = backups(&site);
    let made: Vec<&String> = names.iter().filter(|n| n.ends_with("-2.0.0")).collect();
    assert_eq!(made.len(), 1, "the backup just made is kept: {names:?}");
    assert_eq!(
        message,
        format!(
            "Service neopro-app is not active after restart (state: failed). Rollback: restored backup {} (version 1.0.0), services active",
            made[0]
        )
    );
    assert_eq!(
        installed(&site),
        before,
        "byte-identical after the rollback"
    );
    let mut expected: Vec<String> = future[1..].to_vec();
    expected.push(made[0].clone());
    expected.sort();
    assert_eq!(names, expected, "the oldest other backup went");
}

#[test]
fn six_updates_keep_five_backups_and_nobody_elses_folders() {
    let fake = FakeSystemctl::temp();
    let site = installed_site(&fake);
    site.write("neopro/backups/my-own-folder/keep.txt", "mine");
    site.write(
        "neopro/backups/backup-2020-01-01T00-00-00-000Z-0.9/keep.txt",
        "not made by the agent",
    );
    let archive = release_2();
    let server = FileServer::start(archive.clone(), Fault::None);
    for n in 2..=7 {
        let version = format!("{n}.0.0");
        let result = site
            .run("update-software", update_data(&server, &archive, &version))
            .expect("update");
        assert_eq!(result["version"], json!(version));
    }
    let names = backups(&site);
    let ours: Vec<&String> = names.iter().filter(|n| n.ends_with(".0.0")).collect();
    assert_eq!(ours.len(), 5, "{names:?}");
    assert!(
        ours.iter().all(|n| !n.ends_with("-2.0.0")),
        "the oldest went: {names:?}"
    );
    assert_eq!(read(&site, "neopro/backups/my-own-folder/keep.txt"), "mine");
    assert_eq!(
        read(
            &site,
            "neopro/backups/backup-2020-01-01T00-00-00-000Z-0.9/keep.txt"
        ),
        "not made by the agent"
    );
}

#[test]
fn with_trusted_keys_only_signed_releases_are_installed() {
    use ring::signature::{Ed25519KeyPair, KeyPair};
    let pair = Ed25519KeyPair::from_seed_unchecked(&[42u8; 32]).expect("key");
    let fake = FakeSystemctl::temp();
    let site = Site::with_extra(&format!(
        "{}\nUPDATE_TRUSTED_KEYS={}",
        fake.conf_line(),
        hex_of(pair.public_key().as_ref())
    ));
    site.write("neopro/webapp/index.html", "v1 index");
    site.write("neopro/release.json", r#"{"version":"1.0.0"}"#);
    let archive = release_2();
    let server = FileServer::start(archive.clone(), Fault::None);
    let before = installed(&site);
    let sign = |version: &str| {
        let text = neopro_runtime::signing::releases::signed_text(version, &sha256_hex(&archive));
        hex_of(pair.sign(text.as_bytes()).as_ref())
    };

    let (kind, message) =
        error_of(site.run("update-software", update_data(&server, &archive, "2.0.0")));
    assert_eq!(kind, "not-permitted");
    assert_eq!(
        message,
        "this box only installs signed updates (UPDATE_TRUSTED_KEYS in site.conf) and this update has no signature: neither a signature field in the command nor a signed manifest (neopro-release-manifest.json) as the archive's first entry"
    );
    let mut replayed = update_data(&server, &archive, "2.0.0");
    replayed["signature"] = json!(sign("1.9.9"));
    let (kind, message) = error_of(site.run("update-software", replayed));
    assert_eq!(kind, "not-permitted");
    assert_eq!(
        message,
        "the update signature does not match any key of UPDATE_TRUSTED_KEYS"
    );
    assert_eq!(installed(&site), before, "nothing changed");
    assert!(backups(&site).is_empty());

    let mut signed = update_data(&server, &archive, "2.0.0");
    signed["signature"] = json!(sign("2.0.0"));
    let result = site
        .run("update-software", signed)
        .expect("signed update installs");
    assert_eq!(result["version"], json!("2.0.0"));
    assert_eq!(read(&site, "neopro/webapp/index.html"), "v2 index");
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A web app's health endpoint: 200, or 503 while `broken` exists.
fn health_server(broken: std::path::PathBuf) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            let status = if broken.exists() {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    format!("http://{addr}/health")
}

#[test]
fn the_health_url_gates_the_update() {
    let fake = FakeSystemctl::temp();
    let probe = tempfile::tempdir().expect("tmp");
    // The URL must be known before the site exists: it watches a path
    // inside the site's folder, set through a symlink made afterwards.
    let marker = probe.path().join("broken-link");
    let url = health_server(marker.clone());
    let site = Site::with_extra(&format!("{}\nUPDATE_HEALTH_URL={url}", fake.conf_line()));
    std::os::unix::fs::symlink(site.path("neopro/webapp/BROKEN"), &marker).expect("link");
    site.write("neopro/webapp/index.html", "v1 index");
    site.write("neopro/release.json", r#"{"version":"1.0.0"}"#);
    let before = installed(&site);

    let broken = tar_gz(&[
        Item::File("webapp/index.html", b"v2 index"),
        Item::File("webapp/BROKEN", b"answers 503"),
    ]);
    let server = FileServer::start(broken.clone(), Fault::None);
    let (kind, message) =
        error_of(site.run("update-software", update_data(&server, &broken, "2.0.0")));
    assert_eq!(kind, "failed");
    assert!(
        message.starts_with(
            "Health check failed: the health URL answered 503. Rollback: restored backup backup-"
        ) && message.ends_with("(version 1.0.0), services active"),
        "{message}"
    );
    assert_eq!(installed(&site), before);

    let good = release_2();
    let server = FileServer::start(good.clone(), Fault::None);
    let result = site
        .run("update-software", update_data(&server, &good, "2.0.0"))
        .expect("healthy update");
    assert_eq!(result["version"], json!("2.0.0"));
}

/// Runs `rollback_update` (the update-software component's second command).
fn rollback_update(site: &Site, data: Value) -> Result<Value, neopro_runtime::host::WitError> {
    let sandbox = site.sandbox();
    let loaded = site.load(&sandbox, "update-software");
    let request = neopro_runtime::sandbox::CommandRequest {
        id: "rb-1".to_owned(),
        command_type: "rollback_update".to_owned(),
        data: data.to_string(),
    };
    sandbox
        .execute(&loaded, &request, None)
        .map(|j| serde_json::from_str(&j).expect("JSON"))
}

/// Issue 18.7: a failed canary rollout sends `rollback_update`; the last
/// update is rolled back from its own backup, the club's configuration as it
/// is now is kept, and a second one changes nothing.
#[test]
fn rollback_update_puts_back_the_release_the_last_update_replaced() {
    let fake = FakeSystemctl::temp();
    let site = installed_site(&fake);
    let data = json!({"canaryDeploymentId": "canary-1", "updateId": "upd-1"});
    assert_eq!(
        error_of(rollback_update(&site, data.clone())),
        (
            "not-found".to_owned(),
            "nothing to roll back: no software update installed by this agent is on record"
                .to_owned()
        )
    );
    let before = installed(&site);
    let archive = release_2();
    let server = FileServer::start(archive.clone(), Fault::None);
    site.run("update-software", update_data(&server, &archive, "2.0.0"))
        .expect("update succeeds");
    assert_eq!(read(&site, "neopro/VERSION"), "2.0.0\n");
    // Content deployed after the update stays.
    site.write(
        "neopro/webapp/configuration.json",
        r#"{"categories":["club","new"]}"#,
    );

    let wrong = json!({"canaryDeploymentId": "canary-1", "updateId": "upd-other"});
    assert_eq!(
        error_of(rollback_update(&site, wrong)),
        (
            "invalid-input".to_owned(),
            "nothing rolled back: the last update installed here is 2.0.0 (update upd-1), not update upd-other".to_owned()
        )
    );

    let result = rollback_update(&site, data.clone()).expect("rolled back");
    assert_eq!(result["success"], json!(true));
    assert_eq!(result["version"], json!("1.0.0"));
    assert_eq!(result["rolledBackVersion"], json!("2.0.0"));
    let mut expected = before.clone();
    expected.insert(
        "webapp/configuration.json".to_owned(),
        br#"{"categories":["club","new"]}"#.to_vec(),
    );
    let after = installed(&site);
    assert_eq!(after, expected);
    let starts = fake
        .calls()
        .iter()
        .filter(|c| c.contains("start neopro-app"))
        .count();
    assert!(starts >= 2, "services started again: {:?}", fake.calls());

    let again = rollback_update(&site, data).expect("idempotent");
    assert_eq!(again["alreadyRolledBack"], json!(true));
    assert_eq!(installed(&site), after);
}
