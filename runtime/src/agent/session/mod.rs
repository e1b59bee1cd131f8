//! The session with the central server: authenticate on every connect,
//! heartbeat, mirror the local configuration, take commands, deliver results.
//!
//! Everything happens in one event loop that owns the session state; each
//! command runs in its own task and reports back through a channel.

pub mod auth;
mod blocking;
mod commands;
mod delivery;
mod effects;
mod follow_up_runner;
pub mod heartbeat;
mod intake;
mod journal_queue;
mod journal_steps;
pub mod link_status;
pub mod local_state;
mod outbox;
mod periodic;
mod progress;
mod settings;
mod window;
mod window_queue;

pub use settings::SessionSettings;

use crate::agent::dispatch::Dispatcher;
use crate::config::SiteConfig;
use crate::journal::{Journal, Outcome};
use crate::link::{LinkError, LinkEvent, LinkHandle};
use crate::platform::metrics::SystemProbe;
use auth::{AuthTimings, Authentication};
use blocking::off_worker;
use delivery::Delivery;
use follow_up_runner::FollowUpRunner;
use journal_queue::JournalQueue;
use journal_steps::Step;
use link_status::StatusWriter;
use outbox::RECORD_RETRY;
use periodic::{Due, Periodic};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use window::Window;

pub struct Session {
    config: SiteConfig,
    settings: SessionSettings,
    link: LinkHandle,
    journal: Arc<Journal>,
    dispatcher: Arc<Dispatcher>,
    probe: Arc<SystemProbe>,
    /// Credentials, `authenticate` and its answer, the session number.
    auth: Authentication,
    status: StatusWriter,
    /// Results: when they go, after their closing event; the outbox.
    delivery: Delivery,
    /// The config watch, the hourly jobs, the watchdog.
    periodic: Periodic,
    /// Commands waiting for the maintenance window (or running in it):
    /// kept until their final result is journaled.
    window: Window,
    running: usize,
    /// Journal work (and window checks) submitted and not yet answered by
    /// a [`Step`].
    journal_pending: usize,
    queue: JournalQueue,
    steps_tx: mpsc::UnboundedSender<Step>,
    steps_rx: mpsc::UnboundedReceiver<Step>,
    done_tx: mpsc::UnboundedSender<(String, Outcome)>,
    done_rx: mpsc::UnboundedReceiver<(String, Outcome)>,
    /// Reboots and self-restarts after delivery; the trial's commit.
    follow_up: FollowUpRunner,
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
        let (steps_tx, steps_rx) = mpsc::unbounded_channel();
        link_status::forget_old_file(&config.state_path, &config.runtime_path);
        let auth = Authentication::new(
            &config,
            config_file,
            AuthTimings {
                retry: settings.auth_retry,
                answer_timeout: settings.auth_answer_timeout,
                ping_check_timeout: config.ping_check_timeout,
            },
        );
        let services = dispatcher.host_services();
        let follow_up = FollowUpRunner::new(
            services.follow_ups.clone(),
            services.services.manager.clone(),
            config.state_path.clone(),
        );
        Session {
            periodic: Periodic::new(
                config.config_path.clone(),
                settings.watch_interval,
                settings.expiry_interval,
                crate::platform::sd_notify::watchdog_interval(),
            ),
            status: StatusWriter::new(&config.runtime_path),
            window: Window::new(&config.state_path, config.update_window),
            delivery: Delivery::new(link.clone(), auth.session_no()),
            config,
            settings,
            link,
            journal,
            dispatcher,
            probe: Arc::new(SystemProbe::default()),
            auth,
            running: 0,
            journal_pending: 0,
            queue: JournalQueue::start(),
            steps_tx,
            steps_rx,
            done_tx,
            done_rx,
            follow_up,
        }
    }

    /// `tx` is told when the session first authenticates.
    pub fn on_first_authentication(mut self, tx: tokio::sync::oneshot::Sender<()>) -> Self {
        self.follow_up.on_first_authentication(tx);
        self
    }

    /// Makes this session the trial of a new agent version.
    pub fn with_trial(
        mut self,
        gate: Arc<crate::selfupdate::trial::Gate>,
        committed: tokio::sync::oneshot::Sender<()>,
    ) -> Self {
        self.follow_up.with_trial(gate, committed);
        self
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
        let mut follow_up_check = tokio::time::interval(Duration::from_millis(500));
        follow_up_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut record_retry = tokio::time::interval(RECORD_RETRY);
        record_retry.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut window_check = tokio::time::interval(Duration::from_secs(60));
        window_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        crate::platform::sd_notify::notify("READY=1");
        let facts = window::Live::of(&self.dispatcher, &self.journal, &self.config);
        let settled = self.window.settle(&facts);
        self.apply(settled);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                event = events.recv() => match event {
                    Some(event) => self.on_link_event(event, &mut heartbeat),
                    None => break,
                },
                Some((id, outcome)) = self.done_rx.recv() => self.on_done(id, outcome),
                Some((id, error)) = self.follow_up.restart_failed() => {
                    self.record_and_send(id, Outcome::Error { error });
                }
                Some(step) = self.steps_rx.recv() => self.on_step(step),
                _ = heartbeat.tick() => {
                    if self.auth.is_authenticated() {
                        self.send_heartbeat();
                    }
                }
                due = self.periodic.next() => match due {
                    Due::ConfigChanged => {
                        if self.auth.is_authenticated() {
                            self.sync_local_state();
                        }
                    }
                    Due::Expiry => {
                        periodic::run_jobs(&self.dispatcher);
                    }
                    Due::Watchdog => crate::platform::sd_notify::notify("WATCHDOG=1"),
                },
                // Polled only while a reboot or restart waits for its result
                // to be delivered: an idle agent must not wake twice a second.
                _ = follow_up_check.tick(), if self.follow_up.waiting() => {
                    self.follow_up.run_overdue();
                }
                _ = window_check.tick() => {
                    let facts = window::Live::of(&self.dispatcher, &self.journal, &self.config);
                    let due = self.window.due(&facts);
                    self.apply(due);
                }
                _ = record_retry.tick(), if self.delivery.outbox.has_unrecorded() => {
                    for (id, outcome) in self.delivery.outbox.take_unrecorded() {
                        self.record_and_send(id, outcome);
                    }
                }
                silence = self.auth.silence() => self.auth.on_silence(silence, &self.link),
            }
        }
        self.stop().await;
    }

    async fn stop(mut self) {
        crate::platform::sd_notify::notify("STOPPING=1");
        tracing::info!("stopping: no new commands; {} still running", self.running);
        let deadline = tokio::time::Instant::now() + self.settings.shutdown_grace;
        while self.running > 0 || self.journal_pending > 0 {
            let next = tokio::time::timeout_at(deadline, async {
                tokio::select! {
                    Some(done) = self.done_rx.recv() => Some(Ok(done)),
                    Some(step) = self.steps_rx.recv() => Some(Err(step)),
                    else => None,
                }
            })
            .await;
            match next {
                Ok(Some(Ok((id, outcome)))) => self.on_done(id, outcome),
                Ok(Some(Err(step))) => self.on_step(step),
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
        off_worker(|| self.status.stopped());
    }

    fn on_link_event(&mut self, event: LinkEvent, heartbeat: &mut tokio::time::Interval) {
        match event {
            LinkEvent::Connected => {
                self.delivery.outbox.connected();
                self.status.connected();
                self.follow_up.set_ping_interval(self.link.ping_interval());
                self.auth.reload_credentials();
                self.status.authenticating_with(self.auth.api_key());
                self.auth.ask(&self.link);
            }
            LinkEvent::Disconnected(reason) => {
                if self.auth.disconnected() {
                    tracing::warn!("disconnected from the central server: {reason}");
                }
                self.status.disconnected(&reason);
                // Unconfirmed results stay in the outbox and go again after
                // the next authentication.
                self.delivery.outbox.link_dropped();
            }
            LinkEvent::ServerPing => self.on_server_ping(),
            LinkEvent::Oversized {
                bytes,
                limit,
                skimmed,
            } => self.apply(intake::oversized(bytes, limit, skimmed)),
            LinkEvent::Undecodable {
                name,
                id,
                preview,
                error,
            } => self.apply(intake::undecodable(name, id, &preview, &error)),
            LinkEvent::Event { name, args, .. } => match name.as_str() {
                "authenticated" => self.on_authenticated(heartbeat),
                "auth_error" => {
                    self.auth.refused(&args, &self.link);
                }
                "ping_check" => {
                    if self.auth.ping_check(&self.link) {
                        self.status.ping_check();
                    }
                }
                "command" => {
                    let command = args.into_iter().next().unwrap_or(Value::Null);
                    let effects =
                        intake::command(command, &*self.dispatcher, &self.window, &self.facts());
                    self.apply(effects);
                }
                other if intake::IGNORED_BROADCASTS.contains(&other) => {}
                other => tracing::debug!("ignoring event {other}"),
            },
        }
    }

    fn on_authenticated(&mut self, heartbeat: &mut tokio::time::Interval) {
        self.auth.accepted();
        self.status.authenticated();
        self.send_heartbeat();
        heartbeat.reset();
        self.sync_local_state();
        off_worker(|| self.journal.prune(crate::journal::RETENTION));
        // A new agent on trial commits: the update's success is journaled
        // for the loop below to send.
        self.follow_up.authenticated(&self.journal);
        let window = &self.window;
        self.delivery
            .undelivered(&self.journal, |id| window.holds(id));
        // The dashboard shows a scheduled update as in progress until its
        // final result comes.
        let waiting = self.window.waiting(&self.facts());
        self.apply(waiting);
        self.status
            .results_waiting(self.journal.undelivered_count());
    }

    /// The "scheduled" progress of a kept command, under the progress event
    /// its manifest declares (none declared: nothing to send).
    fn send_scheduled_progress(
        &self,
        update: &crate::agent::maintenance_window::ScheduledUpdate,
        command_type: &str,
    ) {
        if self.auth.is_authenticated()
            && let Some(event) = self.dispatcher.progress_event(command_type)
            && let Some(payload) = crate::agent::maintenance_window::scheduled_progress(update)
        {
            let _ = self.link.emit(&event, &[payload]);
        }
    }

    fn on_server_ping(&mut self) {
        let delivered = self.delivery.outbox.server_ping();
        if !delivered.is_empty() {
            let (journal, marked) = (self.journal.clone(), delivered.clone());
            self.queue.submit(move || {
                if let Err(e) = journal.mark_all_delivered(&marked) {
                    tracing::warn!("{e}");
                }
            });
            self.status
                .results_waiting(self.journal.undelivered_count());
        }
        for id in delivered {
            self.follow_up.delivered(&id);
        }
    }

    fn send_heartbeat(&self) {
        // Reads /proc and the web app's version files: off the worker.
        let payload = off_worker(|| {
            heartbeat::payload(
                self.auth.site_id(),
                &self.probe,
                &self.config.neopro_root,
                crate::follow_up::recent_failure(&self.config.state_path)
                    .and_then(|f| serde_json::to_value(f).ok()),
                heartbeat::took_over_from(&self.config.state_path),
            )
        });
        let _ = self.link.emit("heartbeat", &[payload]);
    }

    fn sync_local_state(&mut self) {
        if let Some(payload) = self.periodic.local_state(self.auth.site_id())
            && let Err(LinkError::TooLarge { bytes, limit }) =
                self.link.emit("sync_local_state", &[payload])
        {
            tracing::warn!(
                "configuration.json is too large to mirror to the central server: sync_local_state would be {bytes} bytes, over its limit of {limit} bytes; skipped (the dashboard keeps its previous copy)"
            );
        }
    }

    /// What the intake and the window glue read of the world.
    fn facts(&self) -> window::Live<'_> {
        window::Live::of(&self.dispatcher, &self.journal, &self.config)
    }
}
