//! A test central server: socketioxide with the NEOPRO authentication rules
//! (protocol notes §1.4), recording every event agents send.
#![allow(clippy::expect_used)]

use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{Data, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

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

#[derive(Default)]
struct Shared {
    /// `authenticate` events to leave unanswered (a server not ready yet).
    ignore_auth: std::sync::atomic::AtomicUsize,
    sites: Arc<Mutex<HashMap<String, String>>>,
    authenticated: Mutex<HashSet<String>>,
    received: Mutex<Vec<Received>>,
    cursors: Mutex<HashMap<String, usize>>,
    arrived: Notify,
}

impl Shared {
    fn record(&self, event: &str, data: Value, socket: String) {
        self.received.lock().expect("lock").push(Received {
            event: event.to_owned(),
            data,
            socket,
        });
        self.arrived.notify_waiters();
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
}

/// Engine.IO timings of the test server: short, so dead links and result
/// delivery (two pings) are observed quickly.
pub const PING_INTERVAL: Duration = Duration::from_millis(300);
pub const PING_TIMEOUT: Duration = Duration::from_millis(300);

impl Central {
    /// Starts on a free port with the given (site id, api key) pairs.
    pub async fn start(sites: &[(&str, &str)]) -> Central {
        Self::start_on(0, sites).await
    }

    /// Starts on `port` (0 = any); used to restart on the same port.
    pub async fn start_on(port: u16, sites: &[(&str, &str)]) -> Central {
        Self::start_with(port, sites, PING_INTERVAL, PING_TIMEOUT).await
    }

    /// Starts with explicit Engine.IO ping timings (the real server uses
    /// 25 s and 60 s).
    pub async fn start_with(
        port: u16,
        sites: &[(&str, &str)],
        ping_interval: Duration,
        ping_timeout: Duration,
    ) -> Central {
        let shared = Arc::new(Shared::default());
        {
            let mut map = shared.sites.lock().expect("lock");
            for (id, key) in sites {
                map.insert((*id).to_owned(), (*key).to_owned());
            }
        }
        let (layer, io) = SocketIo::builder()
            .ping_interval(ping_interval)
            .ping_timeout(ping_timeout)
            .build_layer();
        let ns_shared = shared.clone();
        // Event handlers are registered in a connect *middleware*: it runs
        // before socketioxide sends the connect ack, whereas the connect
        // handler runs after it and would race with the agent's first event
        // (the real Node server registers them synchronously).
        let register = move |socket: SocketRef| {
            let shared = ns_shared.clone();
            async move {
                socket.on("authenticate", {
                    let shared = shared.clone();
                    async move |s: SocketRef, Data::<Value>(data)| {
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
                        shared.record(event, data.unwrap_or(Value::Null), s.id.to_string());
                    });
                }
                Ok::<(), std::convert::Infallible>(())
            }
        };
        io.ns("/", (async |_socket: SocketRef| {}).with(register));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind central");
        let addr = listener.local_addr().expect("addr");
        let api = crate::central_api::Api::new(shared.sites.clone());
        let app = api.router().layer(layer);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Central {
            addr,
            api,
            io,
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:<port>`, for CENTRAL_SERVER_URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and closes every connection (a server restart or crash).
    pub async fn stop(self) -> u16 {
        self.io.close().await;
        self.server.abort();
        let _ = self.server.await;
        self.addr.port()
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

    /// Waits until `event` arrived at least `n` times; returns the n-th.
    pub async fn nth(&self, event: &str, n: usize, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.arrived.notified();
            if let Some(r) = self
                .shared
                .received
                .lock()
                .expect("lock")
                .iter()
                .filter(|r| r.event == event)
                .nth(n.saturating_sub(1))
            {
                return r.data.clone();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("fewer than {n} '{event}' from the agent within {timeout:?}");
            }
        }
    }

    /// The next `event` not yet returned by `next` (in arrival order);
    /// panics after `timeout`.
    pub async fn next(&self, event: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.arrived.notified();
            {
                let received = self.shared.received.lock().expect("lock");
                let mut cursors = self.shared.cursors.lock().expect("lock");
                let cursor = cursors.entry(event.to_owned()).or_insert(0);
                if let Some((i, r)) = received
                    .iter()
                    .enumerate()
                    .skip(*cursor)
                    .find(|(_, r)| r.event == event)
                {
                    *cursor = i + 1;
                    return r.data.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("no '{event}' from the agent within {timeout:?}");
            }
        }
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
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.arrived.notified();
            if let Some(r) = self
                .shared
                .received
                .lock()
                .expect("lock")
                .iter()
                .find(|r| r.event == event && matches(&r.data))
            {
                return Some(r.data.clone());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Waits until `event` arrived more than `n` times; false after `timeout`.
    pub async fn wait_more_than(&self, event: &str, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.arrived.notified();
            if self.count(event) > n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// How many agents are authenticated and connected now.
    pub fn authenticated_sockets(&self) -> usize {
        let authed = self.shared.authenticated.lock().expect("lock").clone();
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

    /// Sends `command {id, type, data}` to every authenticated agent.
    pub fn send_command(&self, id: &str, command_type: &str, data: Value) -> usize {
        let authed = self.shared.authenticated.lock().expect("lock").clone();
        let mut sent = 0;
        for socket in self.io.sockets() {
            if authed.contains(&socket.id.to_string()) {
                let payload = json!({"id": id, "type": command_type, "data": data});
                if socket.emit("command", &payload).is_ok() {
                    sent += 1;
                }
            }
        }
        sent
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
            let _ = socket.emit(
                "auth_error",
                &json!({"message": format!("Authentification échouée: {message}")}),
            );
            let _ = socket.disconnect();
        }
        None => {
            shared
                .authenticated
                .lock()
                .expect("lock")
                .insert(socket.id.to_string());
            let _ = socket.emit(
                "authenticated",
                &json!({"message": "Authentification réussie", "siteId": site_id}),
            );
        }
    }
}
