//! `power-cut-central`: the test central of the power-cut rig (`cargo xtask
//! power-cut`, `xtask/src/power_cut/`), run on the host for the
//! whole campaign while the box in the emulator is cut and booted again.
//!
//! It is the same test central as the end-to-end and system tests
//! (`support/central.rs`, with its REST side for `register`), plus a file
//! server with one video, driven over standard input and output in JSON
//! lines so the rig (the xtask crate, which does not link the agent's
//! libraries) can use it:
//!
//! - out, first: `{"ready": {"port", "video_port", "video_sha256", "video_size"}}`
//! - out, then: `{"t": <ms since start>, "event", "socket", "data"}` for every
//!   event an agent sent, in arrival order, and `{"t", "sent", "sockets"}`
//!   for every command sent;
//! - in: `{"send": {"id", "type", "data"}}`;
//! - out: `{"t", "event": "http:/api/analytics/video-plays", "data"}` for
//!   every batch of plays the REST side received (the analytics forwarder);
//! - in: `{"release": "<version>"}`: a NEOPRO release of that version
//!   (`webapp/index.html`, `server/app.js`, `admin/app.js` naming it, and
//!   1 MiB of filler so its download takes a moment) served by a file
//!   server of its own; out: `{"t", "release": {"version", "port",
//!   "sha256", "size", "signature"}}`.
//! - in: `{"component": "<version>"}`: the test component `video-inventory`
//!   (`target/components/test/video-inventory.wasm`, or
//!   `$NEOPRO_TEST_COMPONENTS`) with a manifest of that version, signed by
//!   the central's key (its public half is `ready.component_key`, the box
//!   trusts it) and served by a file server of its own; out: `{"t",
//!   "component": {"name", "version", "port", "sha256", "manifest",
//!   "manifest_sha256", "signature"}}` (or `"component": {"error"}`).
//! - in: `{"agent_release": "<version>", "arch", "crash": bool}`: an agent
//!   release (`agent-release.json`, `bin/neopro-runtime`) whose binary runs
//!   the packaged agent under that version (`NEOPRO_RUNTIME_TEST_VERSION`,
//!   honoured by dev builds), or, with `crash`, exits at once (its trial
//!   fails and the box rolls back); out: `{"t", "agent_release": {"version",
//!   "port", "sha256", "size", "signature"}}`.
//!
//! Releases are signed with the same key (`signature`, the `update_software`
//! field): the rig's box trusts it for updates too once its agent-update
//! phase ran, and a box without UPDATE_TRUSTED_KEYS ignores the field.
//!
//! Usage: power-cut-central <video MiB> <admin email> <admin password>

use neopro_e2e::central::{Central, Timings};
use neopro_e2e::http::{Fault, FileServer};
use neopro_e2e::release::{Item, tar_gz};
use neopro_runtime::signing::components::{SecretKey, manifest_sha256};
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Engine.IO pings every second (a result counts as delivered after two),
/// a long timeout: the emulated box stalls for seconds at times.
/// The route of the analytics forwarder's video plays.
const PLAYS_ROUTE: &str = "/api/analytics/video-plays";

const TIMINGS: Timings = Timings {
    ping_interval: Duration::from_secs(1),
    ping_timeout: Duration::from_secs(20),
    ping_check_every: Duration::from_secs(5),
};

/// The video's bytes: a xorshift stream, so every run serves the same file.
fn video(mib: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut bytes = Vec::with_capacity(mib << 20);
    while bytes.len() < mib << 20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes
}

/// A release of `version`: every file of it names the version, so the rig
/// can tell an old file from a new one on the box.
fn release(version: &str) -> Vec<u8> {
    let index = format!("<html>release {version}</html>\n");
    let server = format!("console.log(\"server {version}\")\n");
    let admin = format!("console.log(\"admin {version}\")\n");
    let filler = video(1);
    tar_gz(&[
        Item::Dir("./"),
        Item::Dir("./webapp/"),
        Item::File("./webapp/index.html", index.as_bytes()),
        Item::File("./webapp/assets.bin", &filler),
        Item::Dir("./server/"),
        Item::File("./server/app.js", server.as_bytes()),
        Item::Dir("./admin/"),
        Item::File("./admin/app.js", admin.as_bytes()),
    ])
}

/// An agent release of `version` for `arch`: a binary that runs the
/// packaged agent as `version` or, with `crash`, one that fails at start.
fn agent_release(version: &str, arch: &str, crash: bool) -> Vec<u8> {
    let manifest = json!({"kind": "agent-release", "arch": arch, "version": version}).to_string();
    let binary = if crash {
        "#!/bin/sh\necho 'a release that fails at start' >&2\nexit 1\n".to_owned()
    } else {
        format!(
            "#!/bin/sh\nNEOPRO_RUNTIME_TEST_VERSION={version} exec /usr/bin/neopro-runtime \"$@\"\n"
        )
    };
    tar_gz(&[
        Item::File("agent-release.json", manifest.as_bytes()),
        Item::Dir("bin/"),
        Item::File("bin/neopro-runtime", binary.as_bytes()),
    ])
}

/// Serves `archive` (a release of `version`) and describes it, signed by
/// `key`, for the rig's `update_software`.
fn serve_release(key: &SecretKey, version: &str, archive: Vec<u8>) -> (Value, FileServer) {
    let sha256 = neopro_runtime::store::hash::sha256_hex(&archive);
    let size = archive.len();
    let signature = key.sign_release(version, &sha256);
    let server = FileServer::start(archive, Fault::None);
    (
        json!({"version": version, "port": server.addr.port(), "sha256": sha256,
               "size": size, "signature": signature}),
        server,
    )
}

/// The pushed component's name and the command it handles.
const COMPONENT: &str = "video-inventory";

/// The manifest of `version` of the pushed component: what the site
/// policy the rig gives the box allows (system, videos read-only).
fn component_manifest(version: &str) -> String {
    format!(
        "name = \"{COMPONENT}\"\nversion = \"{version}\"\ncommands = [\"video_inventory\"]\n\
         [limits]\nmemory-mib = 16\n[grants]\nsystem = true\nfiles = {{ videos = \"ro\" }}\n"
    )
}

/// The test components' folder (as the e2e tests find it).
fn components_dir() -> std::path::PathBuf {
    std::env::var_os("NEOPRO_TEST_COMPONENTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/components/test")
        })
}

/// `wasm` with a custom section naming `version` appended: every version
/// has bytes of its own, as a new build does, so the box compiles each
/// one (no artifact of an earlier version fits) and the install's window
/// holds its longest step.
fn with_version_section(mut wasm: Vec<u8>, version: &str) -> Vec<u8> {
    const NAME: &[u8] = b"neopro-power-cut";
    let mut payload = vec![NAME.len() as u8];
    payload.extend_from_slice(NAME);
    payload.extend_from_slice(&version.as_bytes()[..version.len().min(64)]);
    // A custom section (id 0); its size fits one LEB128 byte.
    wasm.push(0);
    wasm.push(payload.len() as u8);
    wasm.extend_from_slice(&payload);
    wasm
}

/// `version` of the pushed component, signed by `key`, and the server
/// that serves its wasm.
fn component(key: &SecretKey, version: &str) -> Result<(Value, FileServer), String> {
    let path = components_dir().join(format!("{COMPONENT}.wasm"));
    let wasm = std::fs::read(&path).map_err(|e| {
        format!(
            "{}: {e} (cargo xtask guests builds the test components)",
            path.display()
        )
    })?;
    let wasm = with_version_section(wasm, version);
    let manifest = component_manifest(version);
    let sha256 = neopro_runtime::store::hash::sha256_hex(&wasm);
    let signature = key.sign(&sha256, &manifest);
    let server = FileServer::start(wasm, Fault::None);
    Ok((
        json!({"name": COMPONENT, "version": version, "port": server.addr.port(),
               "sha256": sha256, "manifest_sha256": manifest_sha256(&manifest),
               "manifest": manifest, "signature": signature}),
        server,
    ))
}

fn emit(line: &Value) {
    let mut out = std::io::stdout().lock();
    // The rig reads until it sees the line; a closed pipe ends us below.
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(mib), Some(email), Some(password)) = (
        args.first().and_then(|m| m.parse::<usize>().ok()),
        args.get(1),
        args.get(2),
    ) else {
        eprintln!("usage: power-cut-central <video MiB> <admin email> <admin password>");
        return std::process::ExitCode::from(2);
    };
    let body = video(mib);
    let sha = neopro_runtime::store::hash::sha256_hex(&body);
    let size = body.len();
    let files = FileServer::start(body, Fault::None);
    let central = Arc::new(Central::start_timed(0, &[], TIMINGS).await);
    central.api.add_account(email, password, "admin", None);
    // The key pushed components are signed with; the box trusts it.
    let key = match SecretKey::generate() {
        Ok(key) => key,
        Err(e) => {
            eprintln!("power-cut-central: no signing key: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let started = Instant::now();
    emit(&json!({"ready": {
        "port": central.addr.port(),
        "video_port": files.addr.port(),
        "video_sha256": sha,
        "video_size": size,
        "component_key": key.public_key().to_string(),
    }}));

    // Commands from the rig, one JSON line each; the rig closing our
    // input ends the run.
    let sender = central.clone();
    let input = std::thread::spawn(move || {
        // Release servers live as long as the run.
        let mut releases = Vec::new();
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let Ok(request) = serde_json::from_str::<Value>(&line) else {
                eprintln!("power-cut-central: not JSON: {line}");
                continue;
            };
            if let Some(version) = request["release"].as_str() {
                let (served, server) = serve_release(&key, version, release(version));
                emit(&json!({"t": started.elapsed().as_millis() as u64, "release": served}));
                releases.push(server);
                continue;
            }
            if let Some(version) = request["agent_release"].as_str() {
                let arch = request["arch"].as_str().unwrap_or("amd64");
                let crash = request["crash"].as_bool().unwrap_or(false);
                let archive = agent_release(version, arch, crash);
                let (served, server) = serve_release(&key, version, archive);
                emit(&json!({"t": started.elapsed().as_millis() as u64, "agent_release": served}));
                releases.push(server);
                continue;
            }
            if let Some(version) = request["component"].as_str() {
                let t = started.elapsed().as_millis() as u64;
                match component(&key, version) {
                    Ok((served, server)) => {
                        emit(&json!({"t": t, "component": served}));
                        releases.push(server);
                    }
                    Err(error) => {
                        emit(&json!({"t": t, "component": {"version": version, "error": error}}))
                    }
                }
                continue;
            }
            let send = &request["send"];
            let (Some(id), Some(kind)) = (send["id"].as_str(), send["type"].as_str()) else {
                eprintln!("power-cut-central: no send.id / send.type: {line}");
                continue;
            };
            let sockets = sender.send_command(id, kind, send["data"].clone());
            emit(&json!({
                "t": started.elapsed().as_millis() as u64,
                "sent": id,
                "sockets": sockets,
            }));
        }
    });

    let mut cursor = 0;
    let mut plays_seen = 0;
    loop {
        // The analytics batches the REST side accepted, as events.
        let plays = central.api.bodies(PLAYS_ROUTE);
        for body in plays.iter().skip(plays_seen) {
            emit(&json!({
                "t": started.elapsed().as_millis() as u64,
                "event": format!("http:{PLAYS_ROUTE}"),
                "socket": "",
                "data": body,
            }));
        }
        plays_seen = plays.len();
        for r in central.received_from(cursor) {
            cursor += 1;
            emit(&json!({
                "t": started.elapsed().as_millis() as u64,
                "event": r.event,
                "socket": r.socket,
                "data": r.data,
            }));
        }
        if input.is_finished() {
            return std::process::ExitCode::SUCCESS;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
