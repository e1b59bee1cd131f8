//! A test central server: socketioxide with the NEOPRO authentication rules
//! (protocol notes §1.4), recording every event agents send.
//!
//! It keeps the real server's books (issue 18): one entry per site id, set
//! on `authenticate` and deleted when *any* socket that authenticated as
//! that site closes, without checking which one. Commands and `ping_check`
//! go only to the sockets in the books, so an agent that does not notice it
//! was forgotten stops hearing from the server, as on the real one.
#![allow(clippy::expect_used)]

use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{Data, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The `maxPayload` the central announces: socket.io's default, which the
/// real server keeps. socketioxide enforces it only on HTTP polling, so the
/// handlers do for websocket frames (see [`Central::oversized`]).
pub const MAX_PAYLOAD: usize = 1_000_000;

/// Bytes of the websocket message `42["<event>",<data>]`.
fn frame_len(event: &str, data: &Value) -> usize {
    5 + Value::String(event.to_owned()).to_string().len() + data.to_string().len()
}

/// Events the central records (on any socket).
const RECORDED: &[&str] = &[
    "authenticate",
    "heartbeat",
    "sync_local_state",
    "command_result",
    "pong_check",
    "deploy_progress",
    "update_progress",
    // What the local web app receives (the central doubles as one in tests).
    "config_updated",
    "settings_updated",
];

/// One event received from an agent.
#[derive(Debug, Clone)]
pub struct Received {
    pub event: String,
    pub data: Value,
    pub socket: String,
}

/// `ping_check` send times and `pong_check` arrival times of one socket.
type PingChecks = (Vec<std::time::Instant>, Vec<std::time::Instant>);

#[derive(Default)]
struct Shared {
    /// Frames over [`MAX_PAYLOAD`] received (each closed its connection).
    oversized: std::sync::atomic::AtomicUsize,
    /// `authenticate` events to leave unanswered (a server not ready yet).
    ignore_auth: std::sync::atomic::AtomicUsize,
    /// Answers to `authenticate` that could not be written (see
    /// [`Central::answers_lost`]).
    answers_lost: std::sync::atomic::AtomicUsize,
    sites: Arc<Mutex<HashMap<String, String>>>,
    /// The server's `connectedSites`: site id -> the socket id last
    /// authenticated as it.
    books: Mutex<HashMap<String, String>>,
    /// Per socket, `true` once socketioxide has marked it connected (its
    /// connect handler ran); `authenticate` waits for it (see
    /// `start_timed`). Removed when the socket closes.
    joining: Mutex<HashMap<String, tokio::sync::watch::Sender<bool>>>,
    /// Socket id -> the site it authenticated as (the real `socket.siteId`).
    socket_sites: Mutex<HashMap<String, String>>,
    /// `deploy_progress` applied as the real server does (see [`Deployment`]).
    deployments: Mutex<HashMap<String, Deployment>>,
    /// Commands sent, by id: (type, data), to apply results as the server.
    sent: Mutex<HashMap<String, (String, Value)>>,
    /// Update deployments as the real server's books show them.
    update_deployments: Mutex<HashMap<String, UpdateDeployment>>,
    received: Mutex<Vec<Received>>,
    /// When each `ping_check` went out and each `pong_check` came back, by
    /// socket id: the n-th pong answers the n-th ping (events keep order).
    ping_checks: Mutex<HashMap<String, PingChecks>>,
    cursors: Mutex<HashMap<String, usize>>,
    arrived: Notify,
}

impl Shared {
    fn record(&self, event: &str, data: Value, socket: String) {
        if event == "pong_check" {
            let mut checks = self.ping_checks.lock().expect("lock");
            checks
                .entry(socket.clone())
                .or_default()
                .1
                .push(std::time::Instant::now());
        }
        self.apply_to_update_deployments(event, &data);
        self.received.lock().expect("lock").push(Received {
            event: event.to_owned(),
            data,
            socket,
        });
        self.arrived.notify_waiters();
    }
}

/// An update deployment as the real server records it (what its dashboard
/// shows): `update_progress` moves it to in progress; *any* success of an
/// `update_software` carrying its `deploymentId` completes it at 100 %, and
/// it is never sent again (a `{scheduled: true}` answer included).
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateDeployment {
    pub status: String,
    pub progress: u64,
}

impl Shared {
    fn apply_to_update_deployments(&self, event: &str, data: &Value) {
        let mut books = self.update_deployments.lock().expect("lock");
        match event {
            "update_progress" => {
                if let Some(id) = data["deploymentId"].as_str() {
                    let entry = books.entry(id.to_owned()).or_insert(UpdateDeployment {
                        status: "pending".to_owned(),
                        progress: 0,
                    });
                    if entry.status != "completed" && entry.status != "failed" {
                        entry.status = "in_progress".to_owned();
                        entry.progress = data["progress"].as_u64().unwrap_or(0);
                    }
                }
            }
            "command_result" => {
                let command = data["commandId"].as_str().unwrap_or_default();
                let sent = self.sent.lock().expect("lock").get(command).cloned();
                if let Some((kind, sent_data)) = sent
                    && kind == "update_software"
                    && let Some(id) = sent_data["deploymentId"].as_str()
                {
                    let status = if data["status"] == json!("success") {
                        "completed"
                    } else {
                        "failed"
                    };
                    books.insert(
                        id.to_owned(),
                        UpdateDeployment {
                            status: status.to_owned(),
                            progress: if status == "completed" { 100 } else { 0 },
                        },
                    );
                }
            }
            _ => {}
        }
    }
}

/// A content deployment as the server's table holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub video_id: String,
    /// pending, in_progress, completed, failed
    pub status: String,
    pub progress: u64,
}

impl Shared {
    /// The real `handleDeployProgress`: with a `deploymentId`, `error` fails
    /// it, `completed` completes it, anything else sets in_progress; without
    /// one but with a `videoId`, *every* deployment of that video goes back
    /// to in_progress (completed and error are ignored).
    fn apply_deploy_progress(&self, data: &Value) {
        let mut deployments = self.deployments.lock().expect("lock");
        let progress = data.get("progress").and_then(Value::as_u64).unwrap_or(0);
        if let Some(id) = data.get("deploymentId").and_then(Value::as_str) {
            let Some(d) = deployments.get_mut(id) else {
                return;
            };
            if data.get("error").is_some_and(|e| !e.is_null()) {
                d.status = "failed".to_owned();
            } else if data.get("completed").and_then(Value::as_bool) == Some(true) {
                d.status = "completed".to_owned();
                d.progress = 100;
            } else {
                d.status = "in_progress".to_owned();
                d.progress = progress;
            }
        } else if let Some(video) = data.get("videoId").and_then(Value::as_str) {
            for d in deployments.values_mut().filter(|d| d.video_id == video) {
                d.status = "in_progress".to_owned();
                d.progress = progress;
            }
        }
    }
}

/// A running central server on 127.0.0.1.
pub struct Central {
    pub addr: SocketAddr,
    /// The REST side (login, sites, health) sharing this site table.
    pub api: crate::central_api::Api,
    io: SocketIo,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    ticker: JoinHandle<()>,
}

/// Engine.IO timings of the test server: short, so dead links and result
/// delivery (two pings) are observed quickly.
pub const PING_INTERVAL: Duration = Duration::from_millis(300);
pub const PING_TIMEOUT: Duration = Duration::from_millis(300);
/// How often the test central sends `ping_check` to the sites in its books
/// (the real server: every 30 s).
pub const PING_CHECK_EVERY: Duration = Duration::from_millis(250);

/// The server's clocks: Engine.IO pings (a link silent past interval +
/// timeout is closed) and the `ping_check` round.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub ping_check_every: Duration,
}

impl Timings {
    /// Short, so dead links and deliveries are seen quickly.
    pub const TEST: Timings = Timings {
        ping_interval: PING_INTERVAL,
        ping_timeout: PING_TIMEOUT,
        ping_check_every: PING_CHECK_EVERY,
    };
    /// The real server: pings every 25 s, 60 s timeout, `ping_check` every 30 s.
    pub const PRODUCTION: Timings = Timings {
        ping_interval: Duration::from_secs(25),
        ping_timeout: Duration::from_secs(60),
        ping_check_every: Duration::from_secs(30),
    };
}

impl Central {
    /// Starts on a free port with the given (site id, api key) pairs.
    pub async fn start(sites: &[(&str, &str)]) -> Central {
        Self::start_on(0, sites).await
    }

    /// Starts on `port` (0 = any); used to restart on the same port.
    pub async fn start_on(port: u16, sites: &[(&str, &str)]) -> Central {
        Self::start_timed(port, sites, Timings::TEST).await
    }

    /// Starts with the real server's timings ([`Timings::PRODUCTION`]). For
    /// benchmarks, whose idle CPU would otherwise measure the test rates.
    pub async fn start_production(sites: &[(&str, &str)]) -> Central {
        Self::start_timed(0, sites, Timings::PRODUCTION).await
    }

    pub async fn start_timed(port: u16, sites: &[(&str, &str)], timings: Timings) -> Central {
        let Timings {
            ping_interval,
            ping_timeout,
            ping_check_every,
        } = timings;
        let shared = Arc::new(Shared::default());
        {
            let mut map = shared.sites.lock().expect("lock");
            for (id, key) in sites {
                map.insert((*id).to_owned(), (*key).to_owned());
            }
        }
        // socketioxide refuses emits past 128 packets waiting per socket
        // (the real server does not): room for a 300-command backlog.
        let (layer, io) = SocketIo::builder()
            .ping_interval(ping_interval)
            .ping_timeout(ping_timeout)
            .max_buffer_size(4096)
            .max_payload(MAX_PAYLOAD as u64)
            .build_layer();
        let ns_shared = shared.clone();
        // Event handlers are registered in a connect *middleware*: it runs
        // before socketioxide sends the connect ack, whereas the connect
        // handler runs after it and would race with the agent's first event
        // (the real Node server registers them synchronously).
        //
        // socketioxide writes the connect ack *before* it marks the socket
        // connected, from another task than the one reading the agent's
        // frames: an `authenticate` handled in between could not be
        // answered (`emit` refuses with "Closed"), and the agent waited out
        // its 20 s answer timeout (the demo's flake). socket.io 4.x sets
        // `connected` before writing the ack, on one thread, so the real
        // server always answers: `authenticate` waits for the connect
        // handler, which runs once the socket is connected.
        let register = move |socket: SocketRef| {
            let shared = ns_shared.clone();
            let (joined_tx, joined) = tokio::sync::watch::channel(false);
            shared
                .joining
                .lock()
                .expect("lock")
                .insert(socket.id.to_string(), joined_tx);
            async move {
                socket.on("authenticate", {
                    let shared = shared.clone();
                    async move |s: SocketRef, Data::<Value>(data)| {
                        if joined.clone().wait_for(|joined| *joined).await.is_err() {
                            return; // closed before it was connected
                        }
                        // Recorded once handled: a test that saw the
                        // authenticate can send commands right away.
                        let id = s.id.to_string();
                        authenticate(&shared, s, &data);
                        shared.record("authenticate", data, id);
                    }
                });
                for event in RECORDED.iter().skip(1) {
                    let shared = shared.clone();
                    // `pong_check` carries no payload at all.
                    socket.on(*event, async move |s: SocketRef, TryData::<Value>(data)| {
                        let data = data.unwrap_or(Value::Null);
                        if frame_len(event, &data) > MAX_PAYLOAD {
                            // socket.io (ws) closes the connection on such
                            // a frame; the event is never handled.
                            shared
                                .oversized
                                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let _ = s.disconnect();
                            return;
                        }
                        if *event == "deploy_progress" {
                            shared.apply_deploy_progress(&data);
                        }
                        shared.record(event, data, s.id.to_string());
                    });
                }
                socket.on_disconnect({
                    let shared = shared.clone();
                    async move |s: SocketRef| {
                        let id = s.id.to_string();
                        shared.joining.lock().expect("lock").remove(&id);
                        forget(&shared, &id);
                    }
                });
                Ok::<(), std::convert::Infallible>(())
            }
        };
        let joined_shared = shared.clone();
        let joined = async move |socket: SocketRef| {
            let joining = joined_shared.joining.lock().expect("lock");
            if let Some(joined) = joining.get(&socket.id.to_string()) {
                let _ = joined.send(true);
            }
        };
        io.ns("/", joined.with(register));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind central");
        let addr = listener.local_addr().expect("addr");
        let api = crate::central_api::Api::new(shared.sites.clone());
        let app = api.router().layer(layer);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        // The real checkConnectionHealth: `ping_check` to every site in the
        // books (its zombie disconnect after 90 s without pong is not needed
        // here).
        let ticker = {
            let (io, shared) = (io.clone(), shared.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(ping_check_every);
                loop {
                    every.tick().await;
                    for socket in booked(&io, &shared) {
                        let sent_at = std::time::Instant::now();
                        if socket.emit("ping_check", &json!({"timestamp": 1})).is_ok() {
                            let mut checks = shared.ping_checks.lock().expect("lock");
                            checks
                                .entry(socket.id.to_string())
                                .or_default()
                                .0
                                .push(sent_at);
                        }
                    }
                }
            })
        };
        Central {
            addr,
            api,
            io,
            shared,
            server,
            ticker,
        }
    }

    /// How many frames over [`MAX_PAYLOAD`] agents sent (each closed its
    /// connection, as socket.io does).
    pub fn oversized(&self) -> usize {
        self.shared
            .oversized
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Answers to `authenticate` (`authenticated`, `auth_error`) socketioxide
    /// refused to write (the socket closed meanwhile; before the connect
    /// gate in `start_timed`, also one not yet marked connected).
    pub fn answers_lost(&self) -> usize {
        self.shared
            .answers_lost
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `http://127.0.0.1:<port>`, for CENTRAL_SERVER_URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and closes every connection (a server restart or crash).
    pub async fn stop(self) -> u16 {
        self.ticker.abort();
        self.io.close().await;
        self.server.abort();
        let _ = self.server.await;
        self.addr.port()
    }

    /// Every `ping_check` sent so far: when, and how long the agent took to
    /// answer it with `pong_check` (`None`: not answered yet); the pong
    /// latency the real server's health check sees.
    pub fn pong_delays(&self) -> Vec<(std::time::Instant, Option<Duration>)> {
        let checks = self.shared.ping_checks.lock().expect("lock");
        let mut delays: Vec<_> = checks
            .values()
            .flat_map(|(pings, pongs)| {
                pings.iter().enumerate().map(|(n, ping)| {
                    let answered = pongs
                        .get(n)
                        .map(|pong| pong.saturating_duration_since(*ping));
                    (*ping, answered)
                })
            })
            .collect();
        delays.sort_by_key(|(sent, _)| *sent);
        delays
    }

    /// How many times `event` arrived so far.
    pub fn count(&self, event: &str) -> usize {
        self.shared
            .received
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.event == event)
            .count()
    }

    /// Every event received from the `from`-th on (arrival order), for a
    /// caller that keeps its own cursor (the power-cut rig's central).
    pub fn received_from(&self, from: usize) -> Vec<Received> {
        let received = self.shared.received.lock().expect("lock");
        received.iter().skip(from).cloned().collect()
    }

    /// Every `event` received so far.
    pub fn all(&self, event: &str) -> Vec<Value> {
        self.shared
            .received
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.event == event)
            .map(|r| r.data.clone())
            .collect()
    }

    /// Re-runs `check` each time an event arrives until it gives a value;
    /// `None` once `timeout` has passed. The one wait loop of the central.
    async fn wait_until<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.arrived.notified();
            if let Some(value) = check() {
                return Some(value);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Waits until `event` arrived at least `n` times; returns the n-th.
    pub async fn nth(&self, event: &str, n: usize, timeout: Duration) -> Value {
        let found = self
            .wait_until(timeout, || {
                self.shared
                    .received
                    .lock()
                    .expect("lock")
                    .iter()
                    .filter(|r| r.event == event)
                    .nth(n.saturating_sub(1))
                    .map(|r| r.data.clone())
            })
            .await;
        found
            .unwrap_or_else(|| panic!("fewer than {n} '{event}' from the agent within {timeout:?}"))
    }

    /// The next `event` not yet returned by `next` (in arrival order);
    /// panics after `timeout`.
    pub async fn next(&self, event: &str, timeout: Duration) -> Value {
        let found = self
            .wait_until(timeout, || {
                let received = self.shared.received.lock().expect("lock");
                let mut cursors = self.shared.cursors.lock().expect("lock");
                let cursor = cursors.entry(event.to_owned()).or_insert(0);
                let (i, r) = received
                    .iter()
                    .enumerate()
                    .skip(*cursor)
                    .find(|(_, r)| r.event == event)?;
                *cursor = i + 1;
                Some(r.data.clone())
            })
            .await;
        found.unwrap_or_else(|| panic!("no '{event}' from the agent within {timeout:?}"))
    }

    /// The first `event` (in arrival order, from the start) for which
    /// `matches` holds, waiting up to `timeout`; `None` when none came.
    /// Does not panic: the system tests report it as a failed check.
    pub async fn find(
        &self,
        event: &str,
        matches: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Option<Value> {
        self.wait_until(timeout, || {
            self.shared
                .received
                .lock()
                .expect("lock")
                .iter()
                .find(|r| r.event == event && matches(&r.data))
                .map(|r| r.data.clone())
        })
        .await
    }

    /// Waits until `event` arrived more than `n` times; false after `timeout`.
    pub async fn wait_more_than(&self, event: &str, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, || (self.count(event) > n).then_some(()))
            .await
            .is_some()
    }

    /// How many agents are authenticated and connected now.
    pub fn authenticated_sockets(&self) -> usize {
        let authed: Vec<String> = self
            .shared
            .socket_sites
            .lock()
            .expect("lock")
            .keys()
            .cloned()
            .collect();
        self.io
            .sockets()
            .iter()
            .filter(|s| authed.contains(&s.id.to_string()))
            .count()
    }

    /// The `command_result` for `id` (skipping others); panics after `timeout`.
    pub async fn result_of(&self, id: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let result = self.next("command_result", left).await;
            if result["commandId"] == json!(id) {
                return result;
            }
        }
    }

    /// Sends `command {id, type, data}` to every site in the books (the
    /// real `sendCommand`); returns how many sockets it went to.
    pub fn send_command(&self, id: &str, command_type: &str, data: Value) -> usize {
        self.shared
            .sent
            .lock()
            .expect("lock")
            .insert(id.to_owned(), (command_type.to_owned(), data.clone()));
        let payload = json!({"id": id, "type": command_type, "data": data});
        booked(&self.io, &self.shared)
            .into_iter()
            .filter(|socket| socket.emit("command", &payload).is_ok())
            .count()
    }

    /// An update deployment as the server's books (its dashboard) show it.
    pub fn update_deployment(&self, id: &str) -> Option<UpdateDeployment> {
        self.shared
            .update_deployments
            .lock()
            .expect("lock")
            .get(id)
            .cloned()
    }

    /// Whether `site` is in the server's books (the real `isConnected`).
    pub fn is_booked(&self, site: &str) -> bool {
        self.shared.books.lock().expect("lock").contains_key(site)
    }

    /// Waits until `site` is in the books; panics after `timeout`.
    pub async fn wait_booked(&self, site: &str, timeout: Duration) {
        let booked = self
            .wait_until(timeout, || self.is_booked(site).then_some(()))
            .await;
        if booked.is_none() {
            panic!("site {site} not back in the central's books within {timeout:?}");
        }
    }

    /// Adds a content deployment (as the deployment service creates one).
    pub fn add_deployment(&self, id: &str, video_id: &str) {
        self.shared.deployments.lock().expect("lock").insert(
            id.to_owned(),
            Deployment {
                video_id: video_id.to_owned(),
                status: "pending".to_owned(),
                progress: 0,
            },
        );
    }

    /// A deployment's current row.
    pub fn deployment(&self, id: &str) -> Option<Deployment> {
        self.shared
            .deployments
            .lock()
            .expect("lock")
            .get(id)
            .cloned()
    }

    /// Emits an arbitrary event to every connected socket.
    pub fn broadcast(&self, event: &str, data: Value) {
        for socket in self.io.sockets() {
            let _ = socket.emit(event, &data);
        }
    }

    /// Server-side disconnect of every socket (`socket.disconnect(true)`).
    pub fn disconnect_all(&self) {
        for socket in self.io.sockets() {
            let _ = socket.disconnect();
        }
    }

    /// Leaves the next `n` authenticate events unanswered.
    pub fn ignore_next_authenticates(&self, n: usize) {
        self.shared
            .ignore_auth
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Changes a site's key (as `resync` would on the server).
    pub fn set_site(&self, id: &str, key: &str) {
        self.shared
            .sites
            .lock()
            .expect("lock")
            .insert(id.to_owned(), key.to_owned());
    }
}

/// The server's checks, in its order, with its exact messages.
fn authenticate(shared: &Shared, socket: SocketRef, data: &Value) {
    use std::sync::atomic::Ordering;
    let ignore = shared.ignore_auth.load(Ordering::SeqCst);
    if ignore > 0 {
        shared.ignore_auth.store(ignore - 1, Ordering::SeqCst);
        return;
    }
    let site_id = data.get("siteId").and_then(Value::as_str).unwrap_or("");
    let api_key = data.get("apiKey").and_then(Value::as_str).unwrap_or("");
    let error = if site_id.is_empty() || api_key.is_empty() {
        Some("Identifiants manquants".to_owned())
    } else {
        match shared.sites.lock().expect("lock").get(site_id) {
            None => Some(format!("Site non trouvé: {site_id}")),
            Some(key) if key != api_key => Some("Clé API invalide".to_owned()),
            Some(_) => None,
        }
    };
    match error {
        Some(message) => {
            answer(
                shared,
                &socket,
                "auth_error",
                &json!({"message": format!("Authentification échouée: {message}")}),
            );
            let _ = socket.disconnect();
        }
        None => {
            let socket_id = socket.id.to_string();
            shared
                .books
                .lock()
                .expect("lock")
                .insert(site_id.to_owned(), socket_id.clone());
            shared
                .socket_sites
                .lock()
                .expect("lock")
                .insert(socket_id, site_id.to_owned());
            answer(
                shared,
                &socket,
                "authenticated",
                &json!({"message": "Authentification réussie", "siteId": site_id}),
            );
        }
    }
}

/// Writes the answer to `authenticate`; one socketioxide refuses is counted
/// and said (the real server's `emit` on an open socket always writes).
fn answer(shared: &Shared, socket: &SocketRef, event: &str, data: &Value) {
    if let Err(e) = socket.emit(event, data) {
        shared
            .answers_lost
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        eprintln!(
            "test central: '{event}' to socket {} not sent: {e} (socket connected: {})",
            socket.id,
            socket.connected()
        );
    }
}

/// The real `handleDisconnection`: the site's entry goes, whichever of its
/// sockets closed.
fn forget(shared: &Shared, socket_id: &str) {
    let site = shared.socket_sites.lock().expect("lock").remove(socket_id);
    if let Some(site) = site {
        shared.books.lock().expect("lock").remove(&site);
    }
}

/// The sockets the books point at.
fn booked(io: &SocketIo, shared: &Shared) -> Vec<SocketRef> {
    let ids: Vec<String> = shared
        .books
        .lock()
        .expect("lock")
        .values()
        .cloned()
        .collect();
    io.sockets()
        .into_iter()
        .filter(|s| ids.contains(&s.id.to_string()))
        .collect()
}
