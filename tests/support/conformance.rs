//! The conformance peers (`tests/conformance/*.js`, npm socket.io 4 pinned
//! by a lockfile) driven from Rust: a Node process per peer, its stdout
//! read as JSON lines (what it heard, sent and wrote to its books), its
//! stdin taking JSON control lines answered by a `reply` line.
//!
//! The point of them: the Rust stand-ins cannot show how the real library
//! treats the agent (event dispatch on the next tick, the payload limit,
//! the server's re-deliveries), so these peers behave like upstream's
//! servers on the library they run in the field.
#![allow(clippy::expect_used)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Where the peers and their `node_modules` live.
pub fn peers_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance");
    assert!(
        dir.join("node_modules/socket.io").is_dir()
            && dir.join("node_modules/socket.io-client").is_dir(),
        "{} is missing: run `npm ci --prefix tests/conformance` from the workspace root first \
         (`cargo xtask test` does it)",
        dir.join("node_modules").display()
    );
    dir
}

/// One running Node peer.
pub struct NodePeer {
    child: Child,
    stdin: Mutex<ChildStdin>,
    lines: Arc<Mutex<Vec<Value>>>,
    changed: watch::Receiver<usize>,
    seq: std::sync::atomic::AtomicU64,
    pub port: u16,
    name: String,
}

impl NodePeer {
    /// Starts `script` with `env` and waits for its `listening` line.
    pub async fn start(script: &str, env: &[(&str, String)]) -> NodePeer {
        let dir = peers_dir();
        let mut command = Command::new("node");
        command
            .arg(dir.join(script))
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("node runs (is Node.js installed?)");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take().expect("stdin");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, changed) = watch::channel(0usize);
        let sink = lines.clone();
        let name = script.to_owned();
        let tag = name.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        let mut all = sink.lock().expect("lock");
                        all.push(v);
                        let n = all.len();
                        drop(all);
                        tx.send_replace(n);
                    }
                    Err(_) => eprintln!("[{tag}] {line}"),
                }
            }
            // Dropping `tx` tells waiters the peer is gone.
        });
        let mut peer = NodePeer {
            child,
            stdin: Mutex::new(stdin),
            lines,
            changed,
            seq: std::sync::atomic::AtomicU64::new(0),
            port: 0,
            name,
        };
        let listening = peer
            .wait("listening", Duration::from_secs(20), |lines| {
                lines.iter().find(|l| l["kind"] == "listening").cloned()
            })
            .await;
        peer.port = u16::try_from(listening["port"].as_u64().expect("port")).expect("port");
        peer
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().expect("lock").clone()
    }

    /// Waits until `check` finds something in the lines printed so far.
    pub async fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[Value]) -> Option<T>,
    ) -> T {
        let mut changed = self.changed.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changed.borrow_and_update();
            if let Some(found) = check(&self.lines.lock().expect("lock")) {
                return found;
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => panic!("{}: exited while waiting for {what}", self.name),
                Err(_) => {
                    let lines = self.lines();
                    let tail: Vec<String> = lines
                        .iter()
                        .rev()
                        .take(30)
                        .rev()
                        .map(|l| l.to_string().chars().take(400).collect())
                        .collect();
                    panic!(
                        "{}: no {what} within {timeout:?}; last lines:\n{}",
                        self.name,
                        tail.join("\n")
                    );
                }
            }
        }
    }

    /// Sends a control line and waits for its reply.
    pub async fn control(&self, mut op: Value) -> Value {
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        op["seq"] = json!(seq);
        {
            let mut stdin = self.stdin.lock().expect("lock");
            writeln!(stdin, "{op}").expect("control line written");
            stdin.flush().expect("control line flushed");
        }
        self.wait("reply", Duration::from_secs(10), |lines| {
            lines
                .iter()
                .rev()
                .find(|l| l["kind"] == "reply" && l["seq"] == json!(seq))
                .cloned()
        })
        .await
    }

    /// Data of every `kind` line whose `event` is `event`.
    pub fn of(&self, kind: &str, event: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["kind"] == kind && l["event"] == event)
            .map(|l| l["data"].clone())
            .collect()
    }

    /// Every line of `kind`.
    pub fn kind(&self, kind: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["kind"] == kind)
            .collect()
    }

    /// Waits for the `n`-th (1-based) `kind`/`event` line; its data.
    pub async fn nth(&self, kind: &str, event: &str, n: usize, timeout: Duration) -> Value {
        self.wait(&format!("{kind} {event} #{n}"), timeout, |lines| {
            lines
                .iter()
                .filter(|l| l["kind"] == kind && l["event"] == event)
                .nth(n.saturating_sub(1))
                .map(|l| l["data"].clone())
        })
        .await
    }

    /// Stops the peer (kills its process).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodePeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Timings for the conformance central; `upstream()` is the real server's.
#[derive(Debug, Clone)]
pub struct CentralTimings {
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    pub auth_timeout_ms: u64,
    pub ping_check_ms: u64,
    pub zombie_ms: u64,
    /// Upstream's per-command timeouts (15 s … 900 s) times this.
    pub command_timeout_scale: f64,
    pub timeout_check_ms: u64,
}

impl CentralTimings {
    pub fn upstream() -> Self {
        CentralTimings {
            ping_interval_ms: 25_000,
            ping_timeout_ms: 60_000,
            auth_timeout_ms: 30_000,
            ping_check_ms: 30_000,
            zombie_ms: 90_000,
            command_timeout_scale: 1.0,
            timeout_check_ms: 10_000,
        }
    }

    /// Upstream's rules on a short clock, so a test sees them in seconds.
    pub fn fast() -> Self {
        CentralTimings {
            ping_interval_ms: 300,
            ping_timeout_ms: 1_000,
            auth_timeout_ms: 1_500,
            ping_check_ms: 400,
            zombie_ms: 5_000,
            command_timeout_scale: 1.0,
            timeout_check_ms: 10_000,
        }
    }
}

/// The conformance central (`tests/conformance/central.js`).
pub struct ConfCentral {
    pub peer: NodePeer,
}

impl ConfCentral {
    /// Starts it with `sites` (id, key) on `port` (0 = any).
    pub async fn start(sites: &[(&str, &str)], timings: &CentralTimings, port: u16) -> Self {
        let sites: serde_json::Map<String, Value> = sites
            .iter()
            .map(|(id, key)| ((*id).to_owned(), json!(key)))
            .collect();
        let env = [
            ("PORT", port.to_string()),
            ("SITES", Value::Object(sites).to_string()),
            ("PING_INTERVAL", timings.ping_interval_ms.to_string()),
            ("PING_TIMEOUT", timings.ping_timeout_ms.to_string()),
            ("AUTH_TIMEOUT_MS", timings.auth_timeout_ms.to_string()),
            ("PING_CHECK_MS", timings.ping_check_ms.to_string()),
            ("ZOMBIE_MS", timings.zombie_ms.to_string()),
            (
                "COMMAND_TIMEOUT_SCALE",
                timings.command_timeout_scale.to_string(),
            ),
            ("TIMEOUT_CHECK_MS", timings.timeout_check_ms.to_string()),
        ];
        ConfCentral {
            peer: NodePeer::start("central.js", &env).await,
        }
    }

    pub fn url(&self) -> String {
        self.peer.url()
    }

    /// Sends a command as the REST route does; its id, or None when the
    /// site is not connected.
    pub async fn command(&self, site: &str, kind: &str, data: Value) -> Option<String> {
        let reply = self
            .peer
            .control(json!({"op": "command", "siteId": site, "type": kind, "data": data}))
            .await;
        (reply["sent"] == json!(true)).then(|| reply["id"].as_str().unwrap_or_default().to_owned())
    }

    /// Sends `op` (`add_update`, `add_content`, …) as the server's admin
    /// routes do, and checks the server sent it on to the site; its reply.
    pub async fn push(&self, op: Value) -> Value {
        let reply = self.peer.control(op).await;
        assert_eq!(reply["sent"], json!(true), "{reply}");
        reply
    }

    /// The Contents page's deployment of one video to `site-1` (`clip.mp4`
    /// in Match, from `url`), sent on by the server.
    pub async fn add_clip(&self, deployment: &str, video: &str, url: &str, checksum: &str) {
        self.push(
            json!({"op": "add_content", "siteId": "site-1", "deploymentId": deployment,
            "video": {"videoId": video, "videoUrl": url, "filename": "clip.mp4",
                "originalName": "Clip", "category": "Match", "checksum": checksum}}),
        )
        .await;
    }

    /// Waits until `site` is in the server's books.
    pub async fn wait_connected(&self, site: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let books = self.books().await;
            if books["connected"]
                .as_array()
                .is_some_and(|c| c.contains(&json!(site)))
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{site} never connected"
            );
            // Books change on events the peer prints; wait for the next line.
            let n = self.peer.lines().len();
            self.peer
                .wait("a line", deadline - tokio::time::Instant::now(), |l| {
                    (l.len() > n).then_some(())
                })
                .await;
        }
    }

    /// The `command_result` the agent sent for `id`.
    pub async fn result_of(&self, id: &str, timeout: Duration) -> Value {
        self.result_where(id, None, timeout).await
    }

    /// The first `command_result` the agent sent for `id` with `status`.
    pub async fn result_with_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        self.result_where(id, Some(status), timeout).await
    }

    async fn result_where(&self, id: &str, status: Option<&str>, timeout: Duration) -> Value {
        self.peer
            .wait(&format!("command_result {id}"), timeout, |lines| {
                lines
                    .iter()
                    .find(|l| {
                        l["kind"] == "event"
                            && l["event"] == "command_result"
                            && l["data"]["commandId"] == json!(id)
                            && status.is_none_or(|s| l["data"]["status"] == s)
                    })
                    .map(|l| l["data"].clone())
            })
            .await
    }

    /// The server's tables.
    pub async fn books(&self) -> Value {
        self.peer.control(json!({"op": "books"})).await["books"].clone()
    }

    /// Events the agent sent, by name.
    pub fn received(&self, event: &str) -> Vec<Value> {
        self.peer.of("event", event)
    }

    /// Events the server sent the agent, by name.
    pub fn sent(&self, event: &str) -> Vec<Value> {
        self.peer.of("emit", event)
    }

    /// How many sockets the server saw closing.
    pub fn disconnects(&self) -> Vec<Value> {
        self.peer.kind("disconnect")
    }
}

/// The conformance web app with its TV client (`tests/conformance/webapp.js`).
pub struct ConfWebApp {
    pub peer: NodePeer,
}

impl ConfWebApp {
    /// Starts it serving `home`/neopro/webapp/configuration.json.
    pub async fn start(home: &Path) -> Self {
        let env = [
            ("PORT", "0".to_owned()),
            ("HOME", home.display().to_string()),
        ];
        ConfWebApp {
            peer: NodePeer::start("webapp.js", &env).await,
        }
    }

    pub fn url(&self) -> String {
        self.peer.url()
    }

    /// `action` events of type `reload-config` the TV received.
    pub fn tv_reloads(&self) -> Vec<Value> {
        self.peer
            .of("tv", "action")
            .into_iter()
            .filter(|a| a["type"] == "reload-config")
            .collect()
    }

    /// Waits for the `n`-th reload on the TV.
    pub async fn nth_reload(&self, n: usize, timeout: Duration) -> Value {
        self.peer
            .wait(&format!("TV reload #{n}"), timeout, |lines| {
                lines
                    .iter()
                    .filter(|l| {
                        l["kind"] == "tv"
                            && l["event"] == "action"
                            && l["data"]["type"] == "reload-config"
                    })
                    .nth(n.saturating_sub(1))
                    .map(|l| l["data"].clone())
            })
            .await
    }
}
