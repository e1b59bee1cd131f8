//! The session with the central server: authenticate on every connect,
//! heartbeat, mirror the local configuration, take commands, deliver results.
//!
//! Everything happens in one event loop that owns the session state; each
//! command runs in its own task and reports back through a channel.

pub mod auth;
mod blocking;
pub mod heartbeat;
pub mod local_state;

use crate::agent::dispatch::Dispatcher;
use crate::agent::journal::{Admission, Journal, Outcome};
use crate::config::SiteConfig;
use crate::host::ProgressSink;
use crate::link::{LinkEvent, LinkHandle};
use crate::platform::metrics::SystemProbe;
use blocking::off_worker;
use local_state::ConfigWatcher;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

/// Broadcasts the server sends to every socket; not for us (§1.10).
const IGNORED_BROADCASTS: &[&str] = &[
    "command_timeout",
    "command_completed",
    "site_config_updated",
    "deploy_progress",
    "update_progress",
    "match-info-updated",
    "score-update",
    "score-reset",
];

/// Timings that tests shorten.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// First wait after an authentication refusal; doubles up to 6×.
    pub auth_retry: Duration,
    /// How often CONFIG_PATH is checked for changes.
    pub watch_interval: Duration,
    /// How long running commands may finish after a stop request.
    pub shutdown_grace: Duration,
    /// No answer to `authenticate` within this: reconnect and try again (an
    /// event that reached the server before it was ready is dropped).
    pub auth_answer_timeout: Duration,
    /// How often expired videos are removed (also once at start).
    pub expiry_interval: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            auth_retry: Duration::from_secs(300),
            watch_interval: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(30),
            auth_answer_timeout: Duration::from_secs(20),
            expiry_interval: Duration::from_secs(3600),
        }
    }
}

/// Progress reports go to the server as events; best effort.
struct LinkProgress(LinkHandle);

impl ProgressSink for LinkProgress {
    fn emit(&self, event: &str, payload: Value) {
        let _ = self.0.emit(event, &[payload]);
    }
}

/// Site identity, re-read from site.conf before every authentication so a
/// fixed file is picked up without a restart.
#[derive(Debug, Clone, Default)]
struct Credentials {
    site_id: String,
    api_key: String,
}

pub struct Session {
    config: SiteConfig,
    config_file: Option<PathBuf>,
    settings: SessionSettings,
    link: LinkHandle,
    journal: Arc<Journal>,
    dispatcher: Arc<Dispatcher>,
    probe: Arc<SystemProbe>,
    credentials: Credentials,
    authenticated: bool,
    /// When `authenticate` went out without an answer yet.
    awaiting_auth_since: Option<tokio::time::Instant>,
    auth_failures: u32,
    /// Server pings received on the current connection.
    pings: u64,
    /// Results emitted and not yet proven received: (command id, pings then).
    in_flight: Vec<(String, u64)>,
    watcher: ConfigWatcher,
    /// Updates waiting for the maintenance window.
    scheduled: crate::agent::maintenance_window::Scheduled,
    running: usize,
    done_tx: mpsc::UnboundedSender<(String, Outcome)>,
    done_rx: mpsc::UnboundedReceiver<(String, Outcome)>,
}

impl Session {
    pub fn new(
        config: SiteConfig,
        config_file: Option<PathBuf>,
        settings: SessionSettings,
        link: LinkHandle,
        journal: Arc<Journal>,
        dispatcher: Arc<Dispatcher>,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let credentials = Credentials {
            site_id: config.site_id.clone().unwrap_or_default(),
            api_key: config.site_api_key.clone().unwrap_or_default(),
        };
        Session {
            watcher: ConfigWatcher::new(config.config_path.clone()),
            scheduled: crate::agent::maintenance_window::Scheduled::new(&config.state_path),
            config,
            config_file,
            settings,
            link,
            journal,
            dispatcher,
            probe: Arc::new(SystemProbe::default()),
            credentials,
            authenticated: false,
            awaiting_auth_since: None,
            auth_failures: 0,
            pings: 0,
            in_flight: Vec::new(),
            running: 0,
            done_tx,
            done_rx,
        }
    }

    /// Runs until `shutdown` resolves, then lets running commands finish
    /// (within the grace period), delivers what it can and closes the link.
    pub async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<LinkEvent>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut heartbeat = tokio::time::interval(self.config.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut watch = tokio::time::interval(self.settings.watch_interval);
        watch.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut expiry = tokio::time::interval(self.settings.expiry_interval);
        expiry.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let watchdog_every = crate::platform::sd_notify::watchdog_interval();
        let mut watchdog =
            tokio::time::interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
        let mut follow_up_check = tokio::time::interval(Duration::from_millis(500));
        follow_up_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut window_check = tokio::time::interval(Duration::from_secs(60));
        window_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        crate::platform::sd_notify::notify("READY=1");
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                event = events.recv() => match event {
                    Some(event) => self.on_link_event(event, &mut heartbeat),
                    None => break,
                },
                Some((id, outcome)) = self.done_rx.recv() => self.on_done(id, outcome),
                _ = heartbeat.tick() => {
                    if self.authenticated {
                        self.send_heartbeat();
                    }
                }
                _ = watch.tick() => {
                    if self.watcher.changed() && self.authenticated {
                        self.sync_local_state();
                    }
                }
                _ = watchdog.tick(), if watchdog_every.is_some() => crate::platform::sd_notify::notify("WATCHDOG=1"),
                // Polled only while a reboot or restart waits for its result
                // to be delivered: an idle agent must not wake twice a second.
                _ = follow_up_check.tick(),
                    if !self.dispatcher.host_services().follow_ups.is_empty() =>
                {
                    self.run_overdue_follow_ups()
                }
                _ = window_check.tick() => self.run_scheduled_updates(),
                _ = expiry.tick() => {
                    if let Some((rss, anon)) = std::fs::read_to_string("/proc/self/status")
                        .ok()
                        .and_then(|s| crate::platform::metrics::own_memory_kib(&s))
                    {
                        tracing::info!("agent memory: {rss} KiB resident, {anon} KiB anonymous");
                    }
                    let dispatcher = self.dispatcher.clone();
                    tokio::spawn(async move {
                        match dispatcher.run_internal("expire_videos").await {
                            Some(Outcome::Success { result }) => tracing::debug!("expiration: {result}"),
                            Some(Outcome::Error { error }) => tracing::warn!("expiration failed: {error}"),
                            None => {}
                        }
                    });
                }
                () = tokio::time::sleep_until(
                    self.awaiting_auth_since.unwrap_or_else(tokio::time::Instant::now)
                        + self.settings.auth_answer_timeout
                ), if self.awaiting_auth_since.is_some() => {
                    self.awaiting_auth_since = None;
                    tracing::warn!(
                        "no answer to authenticate within {} s; reconnecting",
                        self.settings.auth_answer_timeout.as_secs_f64()
                    );
                    let _ = self.link.reconnect_after(Duration::ZERO, "no answer to authenticate");
                }
            }
        }
        self.stop().await;
    }

    async fn stop(mut self) {
        crate::platform::sd_notify::notify("STOPPING=1");
        tracing::info!("stopping: no new commands; {} still running", self.running);
        let deadline = tokio::time::Instant::now() + self.settings.shutdown_grace;
        while self.running > 0 {
            match tokio::time::timeout_at(deadline, self.done_rx.recv()).await {
                Ok(Some((id, outcome))) => self.on_done(id, outcome),
                _ => {
                    tracing::warn!(
                        "{} command(s) still running at shutdown; they will be reported as interrupted",
                        self.running
                    );
                    break;
                }
            }
        }
        self.link.close().await;
    }

    fn on_link_event(&mut self, event: LinkEvent, heartbeat: &mut tokio::time::Interval) {
        match event {
            LinkEvent::Connected => {
                self.pings = 0;
                self.reload_credentials();
                if self
                    .link
                    .emit(
                        "authenticate",
                        &[json!({"siteId": self.credentials.site_id, "apiKey": self.credentials.api_key})],
                    )
                    .is_ok()
                {
                    self.awaiting_auth_since = Some(tokio::time::Instant::now());
                }
            }
            LinkEvent::Disconnected(reason) => {
                if self.authenticated {
                    tracing::warn!("disconnected from the central server: {reason}");
                }
                self.authenticated = false;
                self.awaiting_auth_since = None;
                // Unconfirmed results stay in the outbox and go again after
                // the next authentication.
                self.in_flight.clear();
            }
            LinkEvent::ServerPing => self.on_server_ping(),
            LinkEvent::Oversized {
                bytes,
                limit,
                skimmed,
            } => self.on_oversized(bytes, limit, skimmed),
            LinkEvent::Event { name, args, .. } => match name.as_str() {
                "authenticated" => self.on_authenticated(heartbeat),
                "auth_error" => self.on_auth_error(&args),
                "ping_check" => {
                    let _ = self.link.emit("pong_check", &[]);
                }
                "command" => self.on_command(args.into_iter().next().unwrap_or(Value::Null)),
                other if IGNORED_BROADCASTS.contains(&other) => {}
                other => tracing::debug!("ignoring event {other}"),
            },
        }
    }

    fn reload_credentials(&mut self) {
        match SiteConfig::load(self.config_file.as_deref()) {
            Ok(fresh) => {
                self.credentials = Credentials {
                    site_id: fresh.site_id.unwrap_or_default(),
                    api_key: fresh.site_api_key.unwrap_or_default(),
                };
            }
            Err(e) => tracing::warn!("keeping the previous credentials: {e}"),
        }
        if self.credentials.site_id.is_empty() || self.credentials.api_key.is_empty() {
            tracing::error!(
                "SITE_ID and SITE_API_KEY are required: register the site with `neopro-runtime register`"
            );
        }
    }

    fn on_authenticated(&mut self, heartbeat: &mut tokio::time::Interval) {
        tracing::info!("authenticated as site {}", self.credentials.site_id);
        self.authenticated = true;
        self.awaiting_auth_since = None;
        self.auth_failures = 0;
        self.send_heartbeat();
        heartbeat.reset();
        self.sync_local_state();
        off_worker(|| self.journal.prune(crate::agent::journal::RETENTION));
        // One stored outcome in memory at a time.
        for id in self.journal.undelivered_ids() {
            if self.in_flight.iter().any(|(f, _)| *f == id) {
                continue;
            }
            if let Some(outcome) = off_worker(|| self.journal.outcome(&id)) {
                self.send_result(&id, &outcome);
            }
        }
    }

    fn on_auth_error(&mut self, args: &[Value]) {
        let message = args
            .first()
            .and_then(|a| a.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("Erreur inconnue")
            .to_owned();
        self.awaiting_auth_since = None;
        self.auth_failures = self.auth_failures.saturating_add(1);
        let factor = 1u32 << self.auth_failures.saturating_sub(1).min(3);
        let wait = self.settings.auth_retry.saturating_mul(factor.min(6));
        tracing::error!(
            "authentication refused by the central server: {message}. {} Retrying in {} s.",
            auth::hint(&message),
            wait.as_secs()
        );
        let _ = self
            .link
            .reconnect_after(wait, &format!("authentication refused: {message}"));
    }

    fn on_server_ping(&mut self) {
        self.pings += 1;
        let pings = self.pings;
        let mut delivered = Vec::new();
        self.in_flight.retain(|(id, at)| {
            if pings >= at + 2 {
                delivered.push(id.clone());
                false
            } else {
                true
            }
        });
        if !delivered.is_empty()
            && let Err(e) = off_worker(|| self.journal.mark_all_delivered(&delivered))
        {
            tracing::warn!("{e}");
        }
        let follow_ups = &self.dispatcher.host_services().follow_ups;
        for id in delivered {
            if let Some(action) = follow_ups.take(&id) {
                self.run_follow_up(id, action);
            }
        }
    }

    /// A reboot or self-restart whose result could not be confirmed
    /// delivered in time runs anyway; the result stays in the outbox.
    fn run_overdue_follow_ups(&self) {
        for (id, action) in self.dispatcher.host_services().follow_ups.take_overdue() {
            tracing::warn!("the result of command {id} was not confirmed delivered in time");
            self.run_follow_up(id, action);
        }
    }

    fn run_follow_up(&self, id: String, action: crate::agent::follow_up::Action) {
        let services = self.dispatcher.host_services().clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = crate::agent::follow_up::run(&services.service_manager, &id, &action) {
                tracing::error!("{e}");
            }
        });
    }

    fn send_heartbeat(&self) {
        let payload = heartbeat::payload(
            &self.credentials.site_id,
            &self.probe,
            &self.config.neopro_root,
        );
        let _ = self.link.emit("heartbeat", &[payload]);
    }

    fn sync_local_state(&mut self) {
        if let Some(payload) = self.watcher.payload(&self.credentials.site_id) {
            let _ = self.link.emit("sync_local_state", &[payload]);
        }
    }

    fn on_command(&mut self, command: Value) {
        let Some(id) = command.get("id").and_then(Value::as_str).map(str::to_owned) else {
            tracing::warn!("ignoring a command without an id: {command}");
            return;
        };
        let command_type = command
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("undefined")
            .to_owned();
        tracing::info!("command {id}: {command_type}");
        if self.dispatcher.is_read_only(&command_type) {
            // Changes nothing: no journal entry (no fsync) before it runs; a
            // re-delivered one may simply run again. Its result is kept
            // like any other until delivered.
            let known = off_worker(|| self.journal.get(&id)).and_then(|e| e.outcome);
            match known {
                Some(outcome) => self.send_result(&id, &outcome),
                None => {
                    let mut command = command;
                    let data = command
                        .as_object_mut()
                        .and_then(|c| c.remove("data"))
                        .unwrap_or(Value::Null);
                    self.spawn_command(id, command_type, data);
                }
            }
            return;
        }
        match off_worker(|| self.journal.admit(&id, &command_type)) {
            Ok(Admission::Run) => {
                let mut command = command;
                let data = command
                    .as_object_mut()
                    .and_then(|c| c.remove("data"))
                    .unwrap_or(Value::Null);
                if command_type == "update_software" && !self.update_may_run_now(&id, &data) {
                    return;
                }
                self.spawn_command(id, command_type, data);
            }
            Ok(Admission::Running) => tracing::info!("command {id} is already running"),
            Ok(Admission::Done(outcome)) => {
                tracing::info!("command {id} already done: sending its result again");
                self.send_result(&id, &outcome);
            }
            Err(e) => {
                tracing::error!("{e}");
                self.send_result(
                    &id,
                    &Outcome::Error {
                        error: format!(
                            "the agent cannot record this command, so it did not run it: {e}"
                        ),
                    },
                );
            }
        }
    }

    /// A message too large to decode: a command gets an error result under
    /// its id (recorded, so a re-sent copy gets the same answer); anything
    /// else is logged and dropped.
    fn on_oversized(
        &mut self,
        bytes: usize,
        limit: usize,
        skimmed: Option<crate::link::oversized::Skimmed>,
    ) {
        let Some(skimmed) = skimmed else {
            tracing::warn!("dropped a {bytes}-byte message from the server (limit {limit} bytes)");
            return;
        };
        let (Some(id), "command") = (skimmed.id, skimmed.event.as_str()) else {
            tracing::warn!(
                "dropped a {bytes}-byte '{}' event from the server (limit {limit} bytes)",
                skimmed.event
            );
            return;
        };
        let command_type = skimmed
            .command_type
            .unwrap_or_else(|| "undefined".to_owned());
        tracing::warn!("command {id} ({command_type}) refused: {bytes} bytes, limit {limit}");
        let outcome = Outcome::Error {
            error: format!(
                "Command too large: its message is {bytes} bytes, more than the {limit} bytes this box accepts (the server's maxPayload plus a margin); it was not run"
            ),
        };
        match off_worker(|| self.journal.admit(&id, &command_type)) {
            Ok(Admission::Run) => {
                if let Err(e) = off_worker(|| self.journal.complete(&id, outcome.clone())) {
                    tracing::error!("{e}");
                }
                self.send_result(&id, &outcome);
            }
            Ok(Admission::Done(done)) => self.send_result(&id, &done),
            Ok(Admission::Running) => {}
            Err(e) => {
                tracing::error!("{e}");
                self.send_result(&id, &outcome);
            }
        }
    }

    fn spawn_command(&mut self, id: String, command_type: String, data: Value) {
        let dispatcher = self.dispatcher.clone();
        let done = self.done_tx.clone();
        let progress: Arc<dyn ProgressSink> = Arc::new(LinkProgress(self.link.clone()));
        self.running += 1;
        tokio::spawn(async move {
            let outcome = dispatcher
                .run(&id, &command_type, &data, Some(progress))
                .await;
            let _ = done.send((id, outcome));
        });
    }

    /// The maintenance window: `false` when the update was refused or
    /// scheduled (its result is recorded and sent here).
    fn update_may_run_now(&mut self, id: &str, data: &Value) -> bool {
        use crate::agent::maintenance_window::{Decision, decide, local_hour};
        let outcome = match decide(self.config.update_window, data, local_hour()) {
            Decision::Run => return true,
            Decision::Refuse(error) => Outcome::Error { error },
            Decision::Schedule(result) => match self.scheduled.add(id, data) {
                Ok(()) => {
                    tracing::info!("update {id} scheduled for the maintenance window");
                    Outcome::Success { result }
                }
                Err(e) => Outcome::Error {
                    error: e.to_string(),
                },
            },
        };
        if let Err(e) = off_worker(|| self.journal.complete(id, outcome.clone())) {
            tracing::error!("{e}");
        }
        self.send_result(id, &outcome);
        false
    }

    /// Runs the scheduled updates once the window is open; their final
    /// result replaces the "scheduled" one.
    fn run_scheduled_updates(&mut self) {
        if self.scheduled.is_empty()
            || !crate::agent::maintenance_window::window_open(
                self.config.update_window,
                crate::agent::maintenance_window::local_hour(),
            )
        {
            return;
        }
        for update in self.scheduled.take_all() {
            tracing::info!("maintenance window: running scheduled update {}", update.id);
            self.spawn_command(update.id, "update_software".to_owned(), update.data);
        }
    }

    fn on_done(&mut self, id: String, outcome: Outcome) {
        self.running = self.running.saturating_sub(1);
        match &outcome {
            Outcome::Success { .. } => tracing::info!("command {id} succeeded"),
            Outcome::Error { error } => tracing::warn!("command {id} failed: {error}"),
        }
        let succeeded = matches!(outcome, Outcome::Success { .. });
        if let Some(action) = self
            .dispatcher
            .host_services()
            .follow_ups
            .settle(&id, succeeded)
        {
            tracing::warn!("command {id} failed: {action} it asked for is cancelled");
        }
        if let Err(e) = off_worker(|| self.journal.complete(&id, outcome.clone())) {
            tracing::error!("{e}");
        }
        self.send_result(&id, &outcome);
    }

    /// Emits a result if we can; otherwise it waits in the outbox.
    fn send_result(&mut self, id: &str, outcome: &Outcome) {
        if !self.authenticated {
            return;
        }
        if self
            .link
            .emit("command_result", &[outcome.to_result_payload(id)])
            .is_ok()
        {
            self.in_flight.push((id.to_owned(), self.pings));
        }
    }
}
