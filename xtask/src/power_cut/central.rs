//! The test central on the host, for the whole campaign: the e2e crate's
//! `power-cut-central` (the same test central as the other tests, with a
//! video file server), driven through its standard input and output in
//! JSON lines. It outlives every cut: what it received is what a real
//! server would have seen.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The account `register` logs in with.
pub const ADMIN_EMAIL: &str = "admin@neopro.test";
pub const ADMIN_PASSWORD: &str = "power-cut-password";

/// What the central serves on request; its answer line is keyed by it.
const SERVED: &[&str] = &["release", "agent_release", "component"];

/// One line from the central: an event an agent sent, or a command sent.
#[derive(Debug, Clone)]
pub struct Event {
    /// When the rig read it.
    pub at: Instant,
    /// The event name (`command_result`, `authenticate`, …) or `sent`.
    pub name: String,
    pub socket: String,
    pub data: Value,
}

/// A release the central serves, as the box downloads it.
#[derive(Debug, Clone)]
pub struct Release {
    pub version: String,
    pub url: String,
    pub sha256: String,
    pub size: u64,
    /// By the central's key (the `update_software` field).
    pub signature: String,
}

/// A pushed component the central serves, signed by its key.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub name: String,
    pub version: String,
    pub url: String,
    /// Of the wasm.
    pub sha256: String,
    /// The manifest's text, as signed.
    pub manifest: String,
    pub manifest_sha256: String,
    pub signature: String,
}

pub struct Central {
    child: Child,
    input: ChildStdin,
    events: Arc<Mutex<Vec<Event>>>,
    pub port: u16,
    pub video_port: u16,
    pub video_sha256: String,
    pub video_size: u64,
    /// The public key pushed components are signed with (`ed25519:<hex>`).
    pub component_key: String,
}

impl Central {
    /// `components`: the test components' folder (the pushed component
    /// comes from it).
    pub fn start(
        binary: &Path,
        video_mib: u32,
        components: &Path,
        log: &Path,
    ) -> anyhow::Result<Central> {
        let mut child = Command::new(binary)
            .env("NEOPRO_TEST_COMPONENTS", components)
            .arg(video_mib.to_string())
            .arg(ADMIN_EMAIL)
            .arg(ADMIN_PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let input = child.stdin.take().context("central stdin")?;
        let mut lines = BufReader::new(child.stdout.take().context("central stdout")?).lines();
        let first = lines
            .next()
            .context("the central ended before it was ready")??;
        let ready: Value = serde_json::from_str(&first)?;
        let ready = &ready["ready"];
        let number = |key: &str| ready[key].as_u64().with_context(|| format!("ready.{key}"));
        let port = u16::try_from(number("port")?)?;
        let video_port = u16::try_from(number("video_port")?)?;
        let video_size = number("video_size")?;
        let video_sha256 = ready["video_sha256"]
            .as_str()
            .context("ready.video_sha256")?
            .to_owned();
        let component_key = ready["component_key"]
            .as_str()
            .context("ready.component_key")?
            .to_owned();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in lines {
                let Ok(line) = line else { break };
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let name = match value["event"].as_str() {
                    Some(event) => event.to_owned(),
                    None => SERVED
                        .iter()
                        .find(|k| value.get(**k).is_some())
                        .map_or("sent", |k| *k)
                        .to_owned(),
                };
                let data = if name == "sent" || SERVED.contains(&name.as_str()) {
                    value.clone()
                } else {
                    value["data"].clone()
                };
                let event = Event {
                    at: Instant::now(),
                    name,
                    socket: value["socket"].as_str().unwrap_or_default().to_owned(),
                    data,
                };
                if let Ok(mut all) = sink.lock() {
                    all.push(event);
                }
            }
        });
        Ok(Central {
            child,
            input,
            events,
            port,
            video_port,
            video_sha256,
            video_size,
            component_key,
        })
    }

    /// The central as the guest reaches it (qemu's user network).
    pub fn url_from_guest(&self) -> String {
        format!("http://10.0.2.2:{}", self.port)
    }

    pub fn video_url_from_guest(&self, name: &str) -> String {
        format!("http://10.0.2.2:{}/{name}", self.video_port)
    }

    /// Asks the central to serve `request[kind]` (a version) and returns
    /// what it served.
    fn serve(&mut self, kind: &str, request: Value) -> anyhow::Result<Value> {
        let version = request[kind].clone();
        writeln!(self.input, "{request}").context("writing to the central")?;
        self.input.flush()?;
        let seen = self.wait_for(Duration::from_secs(30), |e| {
            e.name == kind && e.data[kind]["version"] == version
        })?;
        let served = seen.data[kind].clone();
        if let Some(error) = served["error"].as_str() {
            bail!("the central cannot serve {kind} {version}: {error}");
        }
        Ok(served)
    }

    /// A release the central served, as `update_software` names it.
    fn served_release(r: &Value, file: &str) -> anyhow::Result<Release> {
        let text = |key: &str| -> anyhow::Result<String> {
            Ok(r[key]
                .as_str()
                .with_context(|| format!("release.{key}"))?
                .to_owned())
        };
        let port = r["port"].as_u64().context("release.port")?;
        Ok(Release {
            version: text("version")?,
            url: format!("http://10.0.2.2:{port}/{file}"),
            sha256: text("sha256")?,
            size: r["size"].as_u64().context("release.size")?,
            signature: text("signature")?,
        })
    }

    /// A NEOPRO release of `version` served by the central (every file of
    /// it names the version).
    pub fn release(&mut self, version: &str) -> anyhow::Result<Release> {
        let r = self.serve("release", json!({ "release": version }))?;
        Self::served_release(&r, &format!("release-{version}.tar.gz"))
    }

    /// An agent release of `version` for `arch` served by the central: the
    /// packaged agent run as `version`, or (`crash`) a binary that fails
    /// at start.
    pub fn agent_release(
        &mut self,
        version: &str,
        arch: &str,
        crash: bool,
    ) -> anyhow::Result<Release> {
        let r = self.serve(
            "agent_release",
            json!({ "agent_release": version, "arch": arch, "crash": crash }),
        )?;
        Self::served_release(&r, &format!("neopro-runtime-{version}-{arch}.tar.gz"))
    }

    /// `version` of the test component, signed by the central's key and
    /// served by it (as an operator pushes one: `docs/pushed-components.md`).
    pub fn component(&mut self, version: &str) -> anyhow::Result<Pushed> {
        let c = self.serve("component", json!({ "component": version }))?;
        let text = |key: &str| -> anyhow::Result<String> {
            Ok(c[key]
                .as_str()
                .with_context(|| format!("component.{key}"))?
                .to_owned())
        };
        let port = c["port"].as_u64().context("component.port")?;
        Ok(Pushed {
            name: text("name")?,
            version: version.to_owned(),
            url: format!("http://10.0.2.2:{port}/{}-{version}.wasm", text("name")?),
            sha256: text("sha256")?,
            manifest: text("manifest")?,
            manifest_sha256: text("manifest_sha256")?,
            signature: text("signature")?,
        })
    }

    /// Sends `command {id, type, data}` to the connected agent.
    pub fn send(&mut self, id: &str, kind: &str, data: &Value) -> anyhow::Result<()> {
        let line = json!({"send": {"id": id, "type": kind, "data": data}});
        writeln!(self.input, "{line}").context("writing to the central")?;
        self.input.flush()?;
        let sent = self.wait_for(Duration::from_secs(10), |e| {
            e.name == "sent" && e.data["sent"] == json!(id)
        })?;
        if sent.data["sockets"] == json!(0) {
            bail!("command {id} reached no agent (none in the central's books)");
        }
        Ok(())
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Waits for the first event matching `matches` (any time so far).
    pub fn wait_for(
        &self,
        limit: Duration,
        matches: impl Fn(&Event) -> bool,
    ) -> anyhow::Result<Event> {
        let end = Instant::now() + limit;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| matches(e)) {
                return Ok(e);
            }
            if Instant::now() > end {
                bail!("not seen at the central within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Central {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
