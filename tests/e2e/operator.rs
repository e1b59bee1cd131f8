//! The operator commands (`register`, `resync`, `diagnose`) against the
//! test central: its REST routes and its Socket.IO authentication.
#![allow(clippy::expect_used)]

use neopro_e2e::central::Central;
use neopro_ops::prompt::{Nobody, Scripted};
use neopro_ops::register::{RegisterArgs, register};
use neopro_ops::resync::{ResyncArgs, resync};
use neopro_ops::{Context, OpsError};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const ADMIN: &str = "admin@neopro.test";
const PASSWORD: &str = "s3cret";

async fn central() -> Central {
    let central = Central::start(&[]).await;
    central.api.add_account(ADMIN, PASSWORD, "admin", None);
    central
        .api
        .add_account("mfa@neopro.test", PASSWORD, "admin", Some("123456"));
    central
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn ctx<'a>(path: &Path, env: &'a dyn Fn(&str) -> Option<String>) -> Context<'a> {
    Context::new(Some(path), env)
}

fn conf_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("etc/neopro/site.conf")
}

fn values(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path).expect("site.conf written");
    neopro_runtime::config::parse_dotenv(path, &text)
        .expect("site.conf parses")
        .into_iter()
        .collect()
}

fn full_args(url: &str, email: &str) -> RegisterArgs {
    RegisterArgs {
        server: Some(url.to_owned()),
        email: Some(email.to_owned()),
        password: Some(PASSWORD.to_owned()),
        site_name: Some("Gymnase Jean Moulin".to_owned()),
        club_name: Some("HBC Rennes #1".to_owned()),
        city: Some("Rennes".to_owned()),
        region: Some("Bretagne".to_owned()),
        country: Some("France".to_owned()),
        sports: Some("handball".to_owned()),
        hardware_model: Some("Raspberry Pi 4 Model B".to_owned()),
        ..Default::default()
    }
}

#[tokio::test]
async fn register_asks_everything_hides_the_password_and_writes_a_private_site_conf() {
    let central = central().await;
    let dir = tempfile::tempdir().expect("temp");
    let path = conf_path(&dir);
    // URL, e-mail, password, site, club, city, region (default), country
    // (default), sports, hardware model (default: detected).
    let mut prompter = Scripted::new(&[
        &central.url(),
        ADMIN,
        PASSWORD,
        "Gymnase Jean Moulin",
        "HBC Rennes",
        "Rennes",
        "",
        "",
        "handball, futsal",
        "Raspberry Pi 4 Model B",
    ]);
    let mut out = Vec::new();
    let done = register(
        &RegisterArgs::default(),
        &ctx(&path, &no_env),
        &mut prompter,
        &mut out,
    )
    .await
    .expect("registered");
    assert_eq!(prompter.asked[2], "secret: Admin password");
    assert_eq!(
        central.api.key_of(&done.site_id),
        Some(done.api_key.clone())
    );

    let v = values(&path);
    assert_eq!(v["SITE_ID"], done.site_id);
    assert_eq!(v["SITE_API_KEY"], done.api_key);
    assert_eq!(v["CENTRAL_SERVER_URL"], central.url());
    assert_eq!(v["CENTRAL_SERVER_ENABLED"], "true");
    assert_eq!(v["LOCATION_REGION"], "Bretagne");
    assert_eq!(v["LOCATION_COUNTRY"], "France");
    assert_eq!(v["SPORTS"], "handball, futsal");
    assert_eq!(
        std::fs::metadata(&path).expect("meta").mode() & 0o777,
        0o600
    );

    let sent = &central.api.bodies("/api/sites")[0];
    assert_eq!(sent["location"]["city"], "Rennes");
    assert_eq!(sent["sports"], serde_json::json!(["handball", "futsal"]));
    assert_eq!(sent["hardware_model"], "Raspberry Pi 4 Model B");

    let printed = String::from_utf8(out).expect("utf-8");
    assert!(!printed.contains(&done.api_key), "{printed}");
    let masked = format!(
        "{}...{} (64 chars)",
        &done.api_key[..8],
        &done.api_key[60..]
    );
    assert!(printed.contains(&masked), "{printed}");
    assert!(printed.contains(&done.site_id), "{printed}");

    // The written configuration authenticates against the central.
    let config = neopro_runtime::config::SiteConfig::load(Some(&path)).expect("loads");
    assert_eq!(config.site_api_key.as_deref(), Some(done.api_key.as_str()));

    // A second register is refused before anything reaches the server.
    let mut again = Scripted::new(&[]);
    let err = register(
        &RegisterArgs::default(),
        &ctx(&path, &no_env),
        &mut again,
        &mut Vec::new(),
    )
    .await
    .expect_err("already registered");
    assert_eq!(
        err.to_string(),
        format!(
            "{} already has SITE_ID={}: this box is registered. Use `neopro-runtime resync` for a \
             new API key, or --force to register it as a new site",
            path.display(),
            done.site_id
        )
    );
    assert_eq!(central.api.bodies("/api/sites").len(), 1);
}

#[tokio::test]
async fn register_runs_non_interactively_from_the_environment_and_shows_the_key_on_request() {
    let central = central().await;
    let dir = tempfile::tempdir().expect("temp");
    let path = conf_path(&dir);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    std::fs::write(&path, "# kept\nLOG_LEVEL=debug\nSITE_ID=\n").expect("existing");
    let url = central.url();
    let env = move |k: &str| -> Option<String> {
        match k {
            "CENTRAL_SERVER_URL" => Some(url.clone()),
            "ADMIN_EMAIL" => Some(ADMIN.to_owned()),
            "ADMIN_PASSWORD" => Some(PASSWORD.to_owned()),
            "SITE_NAME" => Some("Salle Omnisport".to_owned()),
            "CLUB_NAME" => Some("US Vitré".to_owned()),
            _ => None,
        }
    };
    let args = RegisterArgs {
        show_key: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    let done = register(&args, &ctx(&path, &env), &mut Nobody, &mut out)
        .await
        .expect("registered");
    let text = std::fs::read_to_string(&path).expect("written");
    assert!(
        text.starts_with("# kept\nLOG_LEVEL=debug\nSITE_ID="),
        "{text}"
    );
    let v = values(&path);
    assert_eq!(v["SITE_NAME"], "Salle Omnisport");
    assert_eq!(v["CLUB_NAME"], "US Vitré");
    assert_eq!(v["SPORTS"], "handball");
    assert!(
        String::from_utf8(out)
            .expect("utf-8")
            .contains(&done.api_key)
    );
}

#[tokio::test]
async fn register_errors_are_exact_and_leave_no_file() {
    let central = central().await;
    let dir = tempfile::tempdir().expect("temp");
    let path = conf_path(&dir);
    let url = central.url();

    let mut bad = full_args(&url, ADMIN);
    bad.password = Some("wrong".to_owned());
    let err = register(&bad, &ctx(&path, &no_env), &mut Nobody, &mut Vec::new())
        .await
        .expect_err("bad password");
    assert_eq!(
        err.to_string(),
        "login refused by the central server: Email ou mot de passe incorrect"
    );

    // MFA account, nobody to ask the code.
    let mfa = full_args(&url, "mfa@neopro.test");
    let err = register(&mfa, &ctx(&path, &no_env), &mut Nobody, &mut Vec::new())
        .await
        .expect_err("mfa needed");
    assert_eq!(
        err.to_string(),
        "the central server asks for a multi-factor (MFA) code for this account: run the command \
         in a terminal, or pass --mfa-code (or ADMIN_MFA_CODE)"
    );

    // A wrong MFA code typed at the prompt.
    let mut prompter = Scripted::new(&["654321"]);
    let err = register(&mfa, &ctx(&path, &no_env), &mut prompter, &mut Vec::new())
        .await
        .expect_err("wrong code");
    assert_eq!(
        err.to_string(),
        "login refused by the central server: Code MFA invalide"
    );
    assert_eq!(
        prompter.asked,
        ["secret: MFA code (6 digits, from your authenticator app)"]
    );

    // Missing value with nobody to ask.
    let mut no_club = full_args(&url, ADMIN);
    no_club.club_name = None;
    let err = register(&no_club, &ctx(&path, &no_env), &mut Nobody, &mut Vec::new())
        .await
        .expect_err("no club");
    assert_eq!(
        err.to_string(),
        "the club name is needed: pass --club-name (or set CLUB_NAME), or run the command in a \
         terminal to be asked"
    );
    assert!(!path.exists());
    assert!(central.api.bodies("/api/sites").is_empty());

    // The right code at the prompt: registered.
    let mut prompter = Scripted::new(&["123456"]);
    let done = register(&mfa, &ctx(&path, &no_env), &mut prompter, &mut Vec::new())
        .await
        .expect("registered with MFA");
    assert_eq!(values(&path)["SITE_ID"], done.site_id);
    assert_eq!(
        central.api.bodies("/api/auth/login").last().expect("login")["mfaCode"],
        "123456"
    );
}

#[tokio::test]
async fn register_of_an_unreachable_server_says_so() {
    let dir = tempfile::tempdir().expect("temp");
    let path = conf_path(&dir);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let args = full_args(&format!("http://127.0.0.1:{port}"), ADMIN);
    let err = register(&args, &ctx(&path, &no_env), &mut Nobody, &mut Vec::new())
        .await
        .expect_err("unreachable");
    let text = err.to_string();
    assert_eq!(
        text,
        format!(
            "cannot reach the central server at http://127.0.0.1:{port}/api/auth/login: \
             Connection refused (os error 111)"
        )
    );
}

async fn registered(central: &Central, path: &Path) -> String {
    register(
        &full_args(&central.url(), ADMIN),
        &ctx(path, &no_env),
        &mut Nobody,
        &mut Vec::new(),
    )
    .await
    .expect("registered")
    .site_id
}

#[tokio::test]
async fn resync_replaces_only_the_key_and_keeps_the_rest() {
    let central = central().await;
    let dir = tempfile::tempdir().expect("temp");
    let path = conf_path(&dir);
    let site_id = registered(&central, &path).await;
    let old_key = values(&path)["SITE_API_KEY"].clone();
    let before = std::fs::read_to_string(&path).expect("read");

    let mut prompter = Scripted::new(&[ADMIN, PASSWORD]);
    let mut out = Vec::new();
    let (id, key) = resync(
        &ResyncArgs::default(),
        &ctx(&path, &no_env),
        &mut prompter,
        &mut out,
    )
    .await
    .expect("resynced");
    assert_eq!(id, site_id);
    assert_ne!(key, old_key);
    assert_eq!(central.api.key_of(&site_id), Some(key.clone()));
    assert_eq!(prompter.asked, ["Admin e-mail", "secret: Admin password"]);
    let after = std::fs::read_to_string(&path).expect("read");
    assert_eq!(after, before.replace(&old_key, &key));
    assert_eq!(
        std::fs::metadata(&path).expect("meta").mode() & 0o777,
        0o600
    );
    assert!(!String::from_utf8(out).expect("utf-8").contains(&key));
}

#[tokio::test]
async fn resync_that_cannot_save_the_new_key_prints_it_with_the_fix() {
    let central = central().await;
    let dir = tempfile::tempdir().expect("temp");
    let path = conf_path(&dir);
    let site_id = registered(&central, &path).await;
    let before = std::fs::read_to_string(&path).expect("read");
    // The folder passes the writability probe, but the replacement file
    // cannot be created: the write fails after the server made a new key.
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let blocker = path
        .parent()
        .expect("folder")
        .join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::create_dir(&blocker).expect("blocker");
    let args = ResyncArgs {
        email: Some(ADMIN.to_owned()),
        password: Some(PASSWORD.to_owned()),
        ..Default::default()
    };
    let err = resync(&args, &ctx(&path, &no_env), &mut Nobody, &mut Vec::new())
        .await
        .expect_err("not saved");
    let key = central.api.key_of(&site_id).expect("new key");
    assert!(matches!(err, OpsError::KeyNotSaved { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "the central server gave site {site_id} a new API key (the old one no longer works) \
             but {p} could not be written (cannot write {p}: File exists (os error 17)). Fix \
             that, then put this line in {p}:\nSITE_API_KEY={key}\nand restart the agent \
             (`sudo systemctl restart neopro-runtime`)",
            p = path.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&path).expect("read"), before);
}

#[tokio::test]
async fn resync_of_an_unknown_site_points_to_register() {
    let central = central().await;
    let dir = tempfile::tempdir().expect("temp");
    let path = conf_path(&dir);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    let unknown = "00000000-0000-4000-8000-999999999999";
    let text = format!(
        "CENTRAL_SERVER_URL={}\nSITE_ID={unknown}\nSITE_API_KEY=old\n",
        central.url()
    );
    std::fs::write(&path, &text).expect("conf");
    let args = ResyncArgs {
        email: Some(ADMIN.to_owned()),
        password: Some(PASSWORD.to_owned()),
        ..Default::default()
    };
    let err = resync(&args, &ctx(&path, &no_env), &mut Nobody, &mut Vec::new())
        .await
        .expect_err("unknown site");
    assert_eq!(
        err.to_string(),
        format!(
            "site {unknown} does not exist on the central server (Site non trouvé): register this \
             box with `neopro-runtime register`"
        )
    );
    assert_eq!(std::fs::read_to_string(&path).expect("read"), text);

    // Without SITE_ID and nobody to choose: the server's sites are listed.
    let site_id = {
        let other = dir.path().join("other.conf");
        registered(&central, &other).await
    };
    std::fs::write(&path, format!("CENTRAL_SERVER_URL={}\n", central.url())).expect("conf");
    let err = resync(&args, &ctx(&path, &no_env), &mut Nobody, &mut Vec::new())
        .await
        .expect_err("no site id");
    assert_eq!(
        err.to_string(),
        format!(
            "SITE_ID is not set: pass --site-id, one of:\n  1. Gymnase Jean Moulin (HBC Rennes #1) — {site_id}"
        )
    );
    // ... and chosen by number at the prompt.
    let mut prompter = Scripted::new(&["7", "1"]);
    let (id, key) = resync(&args, &ctx(&path, &no_env), &mut prompter, &mut Vec::new())
        .await
        .expect("chosen");
    assert_eq!(id, site_id);
    assert_eq!(values(&path)["SITE_API_KEY"], key);
}

#[tokio::test]
async fn resync_needs_an_admin_and_a_server() {
    let central = central().await;
    central
        .api
        .add_account("op@neopro.test", PASSWORD, "operator", None);
    let dir = tempfile::tempdir().expect("temp");
    let path = conf_path(&dir);
    let site_id = registered(&central, &path).await;
    let args = ResyncArgs {
        email: Some("op@neopro.test".to_owned()),
        password: Some(PASSWORD.to_owned()),
        ..Default::default()
    };
    let err = resync(&args, &ctx(&path, &no_env), &mut Nobody, &mut Vec::new())
        .await
        .expect_err("operator");
    assert_eq!(
        err.to_string(),
        "this account may not do that (HTTP 403: Permissions insuffisantes): use an admin account"
    );
    assert!(central.api.key_of(&site_id).is_some());

    let empty = dir.path().join("empty.conf");
    let err = resync(&args, &ctx(&empty, &no_env), &mut Nobody, &mut Vec::new())
        .await
        .expect_err("no server");
    assert!(matches!(err, OpsError::Missing { .. }));
    assert_eq!(
        err.to_string(),
        "CENTRAL_SERVER_URL (not set in site.conf) is needed: pass --server (or set \
         CENTRAL_SERVER_URL), or run the command in a terminal to be asked"
    );
}

mod diagnose {
    use super::*;
    use neopro_ops::diagnose::{DiagnoseArgs, Report, Status, diagnose};

    fn args() -> DiagnoseArgs {
        DiagnoseArgs {
            json: false,
            timeout: 5,
            auth: false,
        }
    }

    fn conf(dir: &tempfile::TempDir, url: &str, site_id: &str, key: &str) -> PathBuf {
        let path = dir.path().join("site.conf");
        let root = dir.path().join("neopro");
        std::fs::create_dir_all(root.join("videos")).expect("folders");
        std::fs::write(
            &path,
            format!(
                "CENTRAL_SERVER_URL={url}\nCENTRAL_SERVER_ENABLED=true\nSITE_ID={site_id}\n\
                 SITE_API_KEY={key}\nNEOPRO_ROOT={}\n",
                root.display()
            ),
        )
        .expect("site.conf");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        path
    }

    fn statuses(report: &Report) -> Vec<(&str, Status)> {
        report.checks.iter().map(|c| (c.name, c.status)).collect()
    }

    #[tokio::test]
    async fn a_registered_box_passes_every_check() {
        let central = central().await;
        let dir = tempfile::tempdir().expect("temp");
        let registered_conf = dir.path().join("registered.conf");
        let site_id = registered(&central, &registered_conf).await;
        let key = values(&registered_conf)["SITE_API_KEY"].clone();
        let path = conf(&dir, &central.url(), &site_id, &key);
        let report = diagnose(&path, &args()).await;
        assert_eq!(
            statuses(&report),
            [
                ("site.conf", Status::Ok),
                ("CENTRAL_SERVER_URL", Status::Ok),
                ("CENTRAL_SERVER_ENABLED", Status::Ok),
                ("SITE_ID", Status::Ok),
                ("SITE_API_KEY", Status::Ok),
                ("folders", Status::Ok),
                ("clock", Status::Ok),
                ("dns", Status::Ok),
                ("tcp", Status::Ok),
                ("tls", Status::Skip),
                ("health", Status::Ok),
                ("authentication", Status::Ok),
            ],
            "{report:#?}"
        );
        assert!(report.ok);
        let auth = report.check("authentication").expect("auth check");
        assert_eq!(auth.detail, "Authentification réussie");
        assert_eq!(
            report.check("health").expect("health").detail,
            "GET /health: HTTP 200, healthy"
        );
        assert_eq!(
            report.check("SITE_API_KEY").expect("key").detail,
            neopro_ops::central_api::mask_key(&key)
        );

        // --json carries the same report.
        let mut out = Vec::new();
        neopro_ops::diagnose::print(&report, true, &mut out).expect("print");
        let json: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(json["ok"], true);
        assert_eq!(json["checks"][11]["name"], "authentication");
        assert_eq!(json["checks"][11]["status"], "ok");
        assert_eq!(json["checks"][11]["detail"], "Authentification réussie");
        assert!(!String::from_utf8_lossy(&out).contains(&key));
    }

    #[tokio::test]
    async fn a_wrong_key_is_reported_with_the_servers_words_and_the_fix() {
        let central = central().await;
        let dir = tempfile::tempdir().expect("temp");
        let registered_conf = dir.path().join("registered.conf");
        let site_id = registered(&central, &registered_conf).await;
        let path = conf(&dir, &central.url(), &site_id, &"0".repeat(64));
        let report = diagnose(&path, &args()).await;
        assert!(!report.ok);
        let auth = report.check("authentication").expect("auth check");
        assert_eq!(auth.status, Status::Fail);
        assert_eq!(auth.detail, "Authentification échouée: Clé API invalide");
        assert_eq!(
            auth.fix.as_deref(),
            Some(
                "The API key in site.conf does not match the server's: run `neopro-runtime resync`."
            )
        );
        let mut out = Vec::new();
        neopro_ops::diagnose::print(&report, false, &mut out).expect("print");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains(
                "  FAIL  authentication         Authentification échouée: Clé API invalide\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("1 problem(s), 0 warning(s): see the fixes above\n"),
            "{text}"
        );

        // An unknown site: the register fix.
        let unknown = "00000000-0000-4000-8000-999999999999";
        let path = conf(&dir, &central.url(), unknown, &"0".repeat(64));
        let report = diagnose(&path, &args()).await;
        let auth = report.check("authentication").expect("auth check");
        assert_eq!(
            auth.detail,
            format!("Authentification échouée: Site non trouvé: {unknown}")
        );
        assert!(
            auth.fix
                .as_deref()
                .is_some_and(|f| f.contains("neopro-runtime register"))
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_stops_at_tcp_and_a_loose_file_is_flagged() {
        let dir = tempfile::tempdir().expect("temp");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let path = conf(
            &dir,
            &format!("http://127.0.0.1:{port}"),
            "not-a-uuid",
            "short",
        );
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .expect("chmod");
        let report = diagnose(&path, &args()).await;
        assert!(!report.ok);
        assert_eq!(
            statuses(&report)[..],
            [
                ("site.conf", Status::Warn),
                ("CENTRAL_SERVER_URL", Status::Ok),
                ("CENTRAL_SERVER_ENABLED", Status::Ok),
                ("SITE_ID", Status::Warn),
                ("SITE_API_KEY", Status::Warn),
                ("folders", Status::Ok),
                ("clock", Status::Ok),
                ("dns", Status::Ok),
                ("tcp", Status::Fail),
                ("tls", Status::Skip),
                ("health", Status::Skip),
                ("authentication", Status::Skip),
            ][..],
            "{report:#?}"
        );
        let tcp = report.check("tcp").expect("tcp");
        assert_eq!(
            tcp.detail,
            format!(
                "cannot connect to port {port}: 127.0.0.1:{port}: Connection refused (os error 111)"
            )
        );
        assert_eq!(
            report.check("site.conf").expect("file").fix.as_deref(),
            Some(format!("sudo chmod 600 {}", path.display()).as_str())
        );

        // No site.conf at all.
        let report = diagnose(&dir.path().join("missing.conf"), &args()).await;
        assert_eq!(statuses(&report), [("site.conf", Status::Fail)]);
    }
}

#[tokio::test]
async fn as_root_site_conf_goes_to_the_agents_user_and_resync_keeps_it() {
    if !neopro_ops::site_file::running_as_root() {
        eprintln!("skipped: chown needs root");
        return;
    }
    let central = central().await;
    let dir = tempfile::tempdir().expect("temp");
    let path = conf_path(&dir);
    let passwd = dir.path().join("passwd");
    std::fs::write(
        &passwd,
        "neopro:x:4242:4343::/nonexistent:/usr/sbin/nologin\n",
    )
    .expect("passwd");
    let mut context = ctx(&path, &no_env);
    context.passwd = passwd;
    let mut args = full_args(&central.url(), ADMIN);
    args.user = Some("neopro".to_owned());
    register(&args, &context, &mut Nobody, &mut Vec::new())
        .await
        .expect("registered");
    let meta = std::fs::metadata(&path).expect("meta");
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (4242, 4343, 0o600)
    );

    let args = ResyncArgs {
        email: Some(ADMIN.to_owned()),
        password: Some(PASSWORD.to_owned()),
        ..Default::default()
    };
    resync(&args, &context, &mut Nobody, &mut Vec::new())
        .await
        .expect("resynced");
    let meta = std::fs::metadata(&path).expect("meta");
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (4242, 4343, 0o600)
    );

    let mut args = full_args(&central.url(), ADMIN);
    args.user = Some("nobody-here".to_owned());
    args.force = true;
    let err = register(&args, &context, &mut Nobody, &mut Vec::new())
        .await
        .expect_err("unknown user");
    assert_eq!(
        err.to_string(),
        "no user named 'nobody-here' on this box (create it first, or pick another with --user)"
    );
}
