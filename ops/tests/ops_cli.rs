//! The operator commands through the real binary: exit codes, stdout/stderr.
#![allow(clippy::expect_used)]

use std::process::{Command, Output, Stdio};

fn neopro(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_neopro-runtime"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("ADMIN_PASSWORD")
        .env_remove("ADMIN_EMAIL")
        .env_remove("CENTRAL_SERVER_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start neopro-runtime");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().expect("wait")
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn diagnose_json_reports_an_unreachable_server_and_exits_1() {
    let dir = tempfile::tempdir().expect("temp");
    let conf = dir.path().join("site.conf");
    let port = closed_port();
    std::fs::write(
        &conf,
        format!(
            "CENTRAL_SERVER_URL=http://127.0.0.1:{port}\nCENTRAL_SERVER_ENABLED=true\n\
             SITE_ID=00000000-0000-4000-8000-000000000001\nSITE_API_KEY={}\nNEOPRO_ROOT={}\n",
            "a".repeat(64),
            dir.path().display()
        ),
    )
    .expect("conf");
    let out = neopro(
        &[
            "--config",
            conf.to_str().expect("utf-8"),
            "diagnose",
            "--json",
            "--timeout",
            "3",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(report["ok"], false);
    let tcp = report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "tcp"))
        .expect("tcp check");
    assert_eq!(tcp["status"], "fail");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&"a".repeat(64)));
}

#[test]
fn register_without_a_password_and_no_terminal_says_how_to_give_one() {
    let dir = tempfile::tempdir().expect("temp");
    let conf = dir.path().join("site.conf");
    let out = neopro(
        &[
            "--config",
            conf.to_str().expect("utf-8"),
            "register",
            "--server",
            "http://127.0.0.1:1",
            "--email",
            "a@b.c",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: the admin password is needed: pass --password-stdin (or set ADMIN_PASSWORD), \
         or run the command in a terminal to be asked\n"
    );
    assert!(!conf.exists());

    // --password-stdin: the password is taken, then the server is unreachable.
    let port = closed_port();
    let out = neopro(
        &[
            "--config",
            conf.to_str().expect("utf-8"),
            "register",
            "--password-stdin",
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "--email",
            "a@b.c",
            "--site-name",
            "S",
            "--club-name",
            "C",
        ],
        Some("pw\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: cannot reach the central server at http://127.0.0.1:{port}/api/auth/login: \
             Connection refused (os error 111)\n"
        )
    );
}

#[test]
fn install_service_dry_run_prints_the_unit_and_the_commands() {
    let dir = tempfile::tempdir().expect("temp");
    let conf = dir.path().join("site.conf");
    std::fs::write(&conf, format!("NEOPRO_ROOT={}\n", dir.path().display())).expect("conf");
    let out = neopro(
        &[
            "--config",
            conf.to_str().expect("utf-8"),
            "install-service",
            "--dry-run",
            "--binary",
            "/usr/bin/neopro-runtime",
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "--- would write /etc/systemd/system/neopro-runtime.service (mode 0644) ---\n"
        )
    );
    assert!(text.contains(
        "--- would write /etc/polkit-1/rules.d/50-neopro-runtime.rules (mode 0644) ---\n"
    ));
    assert!(text.contains(&format!("ReadWritePaths=-{}\n", dir.path().display())));
    assert!(text.contains("would run: systemctl daemon-reload\n"));
    assert!(text.contains("would run: systemctl restart neopro-runtime.service\n"));
}
