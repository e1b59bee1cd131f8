//! Interop: the `neopro-runtime run` agent against the real npm `socket.io`
//! v4 server (tests/interop/server.js), not our own test server.
//!
//! Needs Node.js and the fixture's dependencies:
//! `npm ci --prefix tests/interop` (from the workspace root), and the test
//! components (`cargo xtask guests`, or `NEOPRO_TEST_COMPONENTS`).
//!
//! Scenario: the agent authenticates, heartbeats and syncs its local state;
//! the server sends a `get_config` command, gets its `command_result`, then
//! disconnects the agent from the server side; the agent reconnects,
//! authenticates again and heartbeats again.
// A broken fixture should stop the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Bound on the whole exchange.
const DEADLINE: Duration = Duration::from_secs(60);

/// Keys of site.conf the environment would override (the environment wins).
const OVERRIDING_ENV: &[&str] = &[
    "CONFIG_FILE",
    "CENTRAL_SERVER_ENABLED",
    "CENTRAL_SERVER_URL",
    "SITE_ID",
    "SITE_API_KEY",
    "SITE_NAME",
    "CLUB_NAME",
    "NEOPRO_ROOT",
    "VIDEOS_PATH",
    "CONFIG_PATH",
    "BACKUP_PATH",
    "LOG_PATH",
    "LOG_LEVEL",
    "HEARTBEAT_INTERVAL",
    "ALLOWED_COMMANDS",
    "STATE_PATH",
    "COMPONENTS_PATH",
    "RUST_LOG",
];

fn workspace() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::canonicalize(&root).unwrap_or(root)
}

fn components_dir() -> PathBuf {
    std::env::var_os("NEOPRO_TEST_COMPONENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/components/test"))
}

/// Kills and reaps its children when dropped, on success and on panic alike.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the reader threads report to the test.
enum Report {
    /// One line of the server's stdout.
    Line(String),
    /// The server's stdout closed: it exited.
    ServerExited,
    /// The agent's stderr closed: it exited.
    AgentExited,
}

/// Appends everything `pipe` yields to `into`; sends `on_eof` at the end.
fn collect(
    pipe: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
    reports: mpsc::Sender<Report>,
    on_eof: Option<Report>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            into.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_str(&line);
            line.clear();
        }
        if let Some(report) = on_eof {
            let _ = reports.send(report);
        }
    });
}

/// Everything observed so far, for failure messages.
struct Transcript {
    server_lines: Vec<String>,
    server_stderr: Arc<Mutex<String>>,
    agent_output: Arc<Mutex<String>>,
}

impl Transcript {
    fn fail(&self, why: &str) -> ! {
        // Copied out first: panicking with a guard held would poison the lock.
        let read =
            |text: &Mutex<String>| text.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let server_stderr = read(&self.server_stderr);
        let agent_output = read(&self.agent_output);
        panic!(
            "{why}\n\n--- server stdout ---\n{}\n--- server stderr ---\n{server_stderr}\n--- agent output ---\n{agent_output}",
            self.server_lines.join("\n"),
        );
    }
}

fn check_authenticate(data: &Value) -> Result<(), String> {
    if *data == json!({"siteId": "site-1", "apiKey": "key-1"}) {
        Ok(())
    } else {
        Err(format!("authenticate carries {data}"))
    }
}

fn check_heartbeat(data: &Value) -> Result<(), String> {
    if data["siteId"] != "site-1" {
        return Err(format!("heartbeat without siteId \"site-1\": {data}"));
    }
    if !data["timestamp"].is_number() {
        return Err(format!("heartbeat timestamp is not a number: {data}"));
    }
    let metrics = &data["metrics"];
    if !metrics.is_object() {
        return Err(format!("heartbeat without a metrics object: {data}"));
    }
    for key in ["cpu", "memory", "temperature", "disk", "uptime"] {
        if !metrics[key].is_number() {
            return Err(format!("heartbeat metrics.{key} is not a number: {data}"));
        }
    }
    Ok(())
}

fn check_sync_local_state(data: &Value) -> Result<(), String> {
    if data["config"] != json!({"categories": []}) {
        return Err(format!("sync_local_state config is not the file's: {data}"));
    }
    let hash = data["configHash"].as_str().unwrap_or_default();
    let is_hex16 = hash.len() == 16
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !is_hex16 {
        return Err(format!(
            "sync_local_state configHash is not 16 lowercase hex digits: {data}"
        ));
    }
    Ok(())
}

fn check_command_result(data: &Value) -> Result<(), String> {
    let expected = json!({
        "commandId": "cmd-1",
        "status": "success",
        "result": {"success": true, "configuration": {"categories": []}},
    });
    if *data == expected {
        Ok(())
    } else {
        Err(format!("command_result is {data}, expected {expected}"))
    }
}

/// The scenario's milestones, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    FirstAuthenticate,
    FirstHeartbeat,
    CommandResult,
    SecondAuthenticate,
    Done,
    HeartbeatAfterReconnect,
    Finished,
}

#[test]
fn agent_works_against_the_real_socket_io_server() {
    let started = Instant::now();
    let deadline = started + DEADLINE;
    let root = workspace();
    let interop = root.join("tests/interop");
    assert!(
        interop.join("node_modules/socket.io").is_dir(),
        "{} is missing: run `npm ci --prefix tests/interop` from the workspace root ({}) first",
        interop.join("node_modules").display(),
        root.display()
    );
    let components = components_dir();
    assert!(
        components.join("get-config.wasm").is_file(),
        "{} has no get-config.wasm: run `cargo xtask guests` (or set NEOPRO_TEST_COMPONENTS)",
        components.display()
    );

    // Declared before the children so that it outlives them.
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut children = Children(Vec::new());
    let (reports_tx, reports) = mpsc::channel::<Report>();
    let mut transcript = Transcript {
        server_lines: Vec::new(),
        server_stderr: Arc::new(Mutex::new(String::new())),
        agent_output: Arc::new(Mutex::new(String::new())),
    };

    let mut server = Command::new("node")
        .arg("tests/interop/server.js")
        .arg("0")
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start `node` (Node.js 20 must be on PATH)");
    let server_stdout = server.stdout.take().expect("server stdout");
    let server_stderr = server.stderr.take().expect("server stderr");
    children.0.push(server);
    collect(
        server_stderr,
        transcript.server_stderr.clone(),
        reports_tx.clone(),
        None,
    );
    {
        let reports_tx = reports_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(server_stdout).lines() {
                let Ok(line) = line else { break };
                if reports_tx.send(Report::Line(line)).is_err() {
                    return;
                }
            }
            let _ = reports_tx.send(Report::ServerExited);
        });
    }

    let next = |transcript: &Transcript, waiting_for: &str| -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        match reports.recv_timeout(left) {
            Ok(Report::Line(line)) => serde_json::from_str::<Value>(&line).unwrap_or_else(|e| {
                transcript.fail(&format!("server printed a non-JSON line ({e}): {line}"))
            }),
            Ok(Report::ServerExited) => transcript.fail(&format!(
                "the server exited while waiting for {waiting_for}"
            )),
            Ok(Report::AgentExited) => {
                transcript.fail(&format!("the agent exited while waiting for {waiting_for}"))
            }
            Err(RecvTimeoutError::Timeout) => {
                transcript.fail(&format!("no {waiting_for} within {} s", DEADLINE.as_secs()))
            }
            Err(RecvTimeoutError::Disconnected) => transcript.fail(&format!(
                "reader threads gone while waiting for {waiting_for}"
            )),
        }
    };

    let listening = next(&transcript, "listening line");
    transcript.server_lines.push(listening.to_string());
    if listening["kind"] != "listening" {
        transcript.fail("the server's first line is not {\"kind\":\"listening\",...}");
    }
    let port = listening["port"]
        .as_u64()
        .unwrap_or_else(|| transcript.fail("the listening line has no port"));

    let neopro = tmp.path().join("neopro");
    std::fs::create_dir_all(neopro.join("webapp")).expect("webapp dir");
    std::fs::write(
        neopro.join("webapp/configuration.json"),
        r#"{"categories":[]}"#,
    )
    .expect("configuration.json");
    let site_conf = tmp.path().join("site.conf");
    std::fs::write(
        &site_conf,
        format!(
            "# interop test site\n\
             CENTRAL_SERVER_ENABLED=true\n\
             CENTRAL_SERVER_URL=http://127.0.0.1:{port}\n\
             SITE_ID=site-1\n\
             SITE_API_KEY=key-1\n\
             NEOPRO_ROOT={}\n\
             STATE_PATH={}\n\
             HEARTBEAT_INTERVAL=1000\n\
             COMPONENTS_PATH={}\n",
            neopro.display(),
            tmp.path().join("state").display(),
            components.display()
        ),
    )
    .expect("site.conf");

    let mut agent = Command::new(env!("CARGO_BIN_EXE_neopro-runtime"));
    agent
        .arg("--config")
        .arg(&site_conf)
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("NO_COLOR", "1");
    for key in OVERRIDING_ENV {
        agent.env_remove(key);
    }
    let mut agent = agent.spawn().expect("start neopro-runtime");
    let agent_stdout = agent.stdout.take().expect("agent stdout");
    let agent_stderr = agent.stderr.take().expect("agent stderr");
    children.0.push(agent);
    collect(
        agent_stdout,
        transcript.agent_output.clone(),
        reports_tx.clone(),
        None,
    );
    collect(
        agent_stderr,
        transcript.agent_output.clone(),
        reports_tx,
        Some(Report::AgentExited),
    );

    let mut stage = Stage::FirstAuthenticate;
    let mut synced = false;
    while stage != Stage::Finished || !synced {
        let waiting_for = if stage == Stage::Finished {
            "sync_local_state".to_owned()
        } else {
            format!("{stage:?}")
        };
        let line = next(&transcript, &waiting_for);
        transcript.server_lines.push(line.to_string());
        let checked = match (line["kind"].as_str(), line["event"].as_str()) {
            (Some("done"), _) if stage == Stage::Done => {
                stage = Stage::HeartbeatAfterReconnect;
                Ok(())
            }
            (Some("done"), _) => Err(format!("done while waiting for {stage:?}")),
            (Some("emit"), Some("auth_error")) => {
                Err("the server refused the agent's credentials".to_owned())
            }
            (Some("event"), Some(event)) => {
                let data = &line["data"];
                match event {
                    "authenticate" => check_authenticate(data).and_then(|()| match stage {
                        Stage::FirstAuthenticate => {
                            stage = Stage::FirstHeartbeat;
                            Ok(())
                        }
                        Stage::SecondAuthenticate => {
                            stage = Stage::Done;
                            Ok(())
                        }
                        _ => Err(format!(
                            "unexpected authenticate while waiting for {stage:?}"
                        )),
                    }),
                    "heartbeat" => check_heartbeat(data).map(|()| match stage {
                        Stage::FirstHeartbeat => stage = Stage::CommandResult,
                        Stage::HeartbeatAfterReconnect => stage = Stage::Finished,
                        _ => {}
                    }),
                    "sync_local_state" => check_sync_local_state(data).map(|()| synced = true),
                    // A result may go again after the reconnect (delivery is
                    // at least once): every copy must be right.
                    "command_result" => check_command_result(data).map(|()| {
                        if stage == Stage::CommandResult {
                            stage = Stage::SecondAuthenticate;
                        }
                    }),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        };
        if let Err(why) = checked {
            transcript.fail(&why);
        }
    }
    drop(children);
    eprintln!(
        "interop scenario completed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
