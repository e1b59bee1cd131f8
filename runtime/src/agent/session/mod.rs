//! The session with the central server: authenticate on every connect,
//! heartbeat, mirror the local configuration, take commands, deliver results.
//!
//! Everything happens in one event loop that owns the session state; each
//! command runs in its own task and reports back through a channel.

pub mod auth;
mod blocking;
mod follow_up_runner;
pub mod heartbeat;
mod journal_queue;
mod journal_steps;
pub mod link_status;
pub mod local_state;
mod outbox;
mod periodic;
mod progress;
mod window_queue;

use crate::agent::dispatch::Dispatcher;
use crate::config::SiteConfig;
use crate::host::ProgressSink;
use crate::journal::{Admission, FinalProgress, Journal, JournalError, Outcome};
use crate::link::{LinkError, LinkEvent, LinkHandle};
use crate::platform::metrics::SystemProbe;
use auth::{AuthTimings, Authentication};
use blocking::off_worker;
use follow_up_runner::FollowUpRunner;
use journal_queue::JournalQueue;
use journal_steps::{Step, data_of, final_outcome, final_progress_of, refuse_once};
use link_status::StatusWriter;
use outbox::{Outbox, RECORD_RETRY};
use periodic::{Due, Periodic};
use progress::LinkProgress;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
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
    /// How often the manifests' `periodic` jobs run (also once at start).
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
    /// Results sent and not proven delivered; outcomes not yet recorded.
    outbox: Outbox,
    /// The config watch, the hourly jobs, the watchdog.
    periodic: Periodic,
    /// Commands waiting for the maintenance window (or running in it):
    /// kept until their final result is journaled.
    window_queue: window_queue::WindowQueue,
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
    /// A component checks a command for the window (`check-before-window`).
    checking: bool,
    /// Window commands that arrived during that check, handled after it.
    arrived_while_checking: std::collections::VecDeque<(String, String, Value)>,
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
            services.agent_update.clone(),
            config.state_path.clone(),
            config.services.agent_unit.clone(),
        );
        Session {
            periodic: Periodic::new(
                config.config_path.clone(),
                settings.watch_interval,
                settings.expiry_interval,
                crate::platform::sd_notify::watchdog_interval(),
            ),
            status: StatusWriter::new(&config.runtime_path),
            window_queue: window_queue::WindowQueue::new(&config.state_path, config.update_window),
            config,
            settings,
            link,
            journal,
            dispatcher,
            probe: Arc::new(SystemProbe::default()),
            auth,
            outbox: Outbox::default(),
            running: 0,
            journal_pending: 0,
            queue: JournalQueue::start(),
            steps_tx,
            steps_rx,
            done_tx,
            done_rx,
            follow_up,
            checking: false,
            arrived_while_checking: std::collections::VecDeque::new(),
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
        self.settle_scheduled();
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
                _ = window_check.tick() => self.run_scheduled_updates(),
                _ = record_retry.tick(), if self.outbox.has_unrecorded() => {
                    for (id, outcome) in self.outbox.take_unrecorded() {
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
                self.outbox.connected();
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
                self.outbox.link_dropped();
            }
            LinkEvent::ServerPing => self.on_server_ping(),
            LinkEvent::Oversized {
                bytes,
                limit,
                skimmed,
            } => self.on_oversized(bytes, limit, skimmed),
            LinkEvent::Undecodable {
                name,
                id,
                preview,
                error,
            } => self.on_undecodable(name, id, &preview, &error),
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
                "command" => self.on_command(args.into_iter().next().unwrap_or(Value::Null)),
                other if IGNORED_BROADCASTS.contains(&other) => {}
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
        // One stored outcome in memory at a time.
        for id in self.journal.undelivered_ids() {
            if self.outbox.in_flight(&id) {
                continue;
            }
            if let Some(outcome) = off_worker(|| self.journal.outcome(&id)) {
                self.send_final_progress(&id);
                self.send_result(&id, &outcome);
            }
        }
        // The dashboard shows a scheduled update as in progress until its
        // final result comes.
        for update in self.window_queue.waiting() {
            self.send_scheduled_progress(&update);
        }
        self.status
            .results_waiting(self.journal.undelivered_count());
    }

    /// Re-sends a deployment's closing progress event unless it already
    /// went out on this session: the server completes a deployment only from
    /// it, never from the command result.
    fn send_final_progress(&self, id: &str) {
        self.emit_final_progress(off_worker(|| final_progress_of(&self.journal, id)));
    }

    /// Emits a closing progress event read from the journal, unless it
    /// already went out on this session.
    fn emit_final_progress(&self, final_progress: Option<FinalProgress>) {
        let Some(final_progress) = final_progress else {
            return;
        };
        let session = self.auth.session_no().load(Ordering::SeqCst);
        if session == 0 || final_progress.sent_in == Some(session) {
            return;
        }
        let _ = self
            .link
            .emit(&final_progress.event, &[final_progress.payload]);
    }

    /// An event we could not decode is logged; a command whose id could be
    /// read gets an error result (through the journal, like any other).
    fn on_undecodable(
        &mut self,
        name: Option<String>,
        id: Option<String>,
        preview: &str,
        error: &str,
    ) {
        let name = name.unwrap_or_else(|| "<unreadable>".to_owned());
        tracing::warn!(
            "could not decode the event '{name}' from the central server ({error}): {preview}"
        );
        let (Some(id), "command") = (id, name.as_str()) else {
            return;
        };
        let outcome = Outcome::Error {
            error: format!(
                "the agent could not decode this command, so it did not run it: {error} \
                 (a lone UTF-16 surrogate such as \\ud800 in a string is a usual cause)"
            ),
        };
        self.journal_job(move |journal| {
            let outcome = refuse_once(journal, &id, "undecodable", outcome);
            Step::Send { id, outcome }
        });
    }

    /// The "scheduled" progress of a kept command, under the progress event
    /// its manifest declares (none declared: nothing to send).
    fn send_scheduled_progress(&self, update: &crate::agent::maintenance_window::ScheduledUpdate) {
        if self.auth.is_authenticated()
            && let Some(command_type) = self.kept_command_type(update)
            && let Some(event) = self.dispatcher.progress_event(&command_type)
            && let Some(payload) = crate::agent::maintenance_window::scheduled_progress(update)
        {
            let _ = self.link.emit(&event, &[payload]);
        }
    }

    fn on_server_ping(&mut self) {
        let delivered = self.outbox.server_ping();
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
        if self.dispatcher.uses_maintenance_window(&command_type) && self.window_queue.contains(&id)
        {
            tracing::info!("update {id} is already scheduled for the maintenance window");
            if let Some(update) = self.window_queue.waiting_entry(&id) {
                self.send_scheduled_progress(&update);
            }
            return;
        }
        if self.dispatcher.is_read_only(&command_type) {
            // Changes nothing: no journal entry (no fsync) before it runs; a
            // re-delivered one may simply run again. Its result is kept
            // like any other until delivered.
            self.journal_job(move |journal| Step::Looked {
                known: journal.get(&id).and_then(|e| e.outcome),
                final_progress: None,
                id,
                command_type,
                command,
            });
            return;
        }
        self.journal_job(move |journal| {
            let admission = journal.admit(&id, &command_type);
            let final_progress = match &admission {
                Ok(Admission::Done(_)) => final_progress_of(journal, &id),
                _ => None,
            };
            Step::Admitted {
                id,
                command_type,
                command,
                admission,
                final_progress,
            }
        });
    }

    /// Queues journal work; its [`Step`] comes back through the loop.
    fn journal_job(&mut self, job: impl FnOnce(&Journal) -> Step + Send + 'static) {
        self.journal_pending += 1;
        let journal = self.journal.clone();
        let steps = self.steps_tx.clone();
        self.queue.submit(move || {
            let _ = steps.send(job(&journal));
        });
    }

    fn on_step(&mut self, step: Step) {
        self.journal_pending = self.journal_pending.saturating_sub(1);
        match step {
            Step::Looked {
                id,
                command_type,
                command,
                known,
                final_progress,
            } => match known {
                Some(outcome) => {
                    self.emit_final_progress(final_progress);
                    self.send_result(&id, &outcome);
                }
                None => self.spawn_command(id, command_type, data_of(command)),
            },
            Step::Admitted {
                id,
                command_type,
                command,
                admission,
                final_progress,
            } => self.on_admitted(id, command_type, command, admission, final_progress),
            Step::Recorded {
                id,
                outcome,
                written,
                final_progress,
            } => self.on_recorded(id, outcome, written, final_progress),
            Step::Send { id, outcome } => {
                if let Some(outcome) = outcome {
                    self.send_result(&id, &outcome);
                }
            }
            Step::Checked {
                id,
                command_type,
                data,
                answer,
            } => self.on_checked(id, command_type, data, answer),
        }
    }

    fn on_admitted(
        &mut self,
        id: String,
        command_type: String,
        command: Value,
        admission: Result<Admission, JournalError>,
        final_progress: Option<FinalProgress>,
    ) {
        match admission {
            Ok(Admission::Run) => {
                let data = data_of(command);
                // Only the commands a manifest lists under
                // maintenance-window wait for it (update_software does, a
                // failed canary's rollback_update runs at once).
                if self.dispatcher.uses_maintenance_window(&command_type)
                    && !self.update_may_run_now(&id, &command_type, &data)
                {
                    return;
                }
                self.spawn_command(id, command_type, data);
            }
            Ok(Admission::Running) => tracing::info!("command {id} is already running"),
            Ok(Admission::Done(outcome)) => {
                tracing::info!("command {id} already done: sending its result again");
                self.emit_final_progress(final_progress);
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
        self.journal_job(move |journal| {
            let outcome = refuse_once(journal, &id, &command_type, outcome);
            Step::Send { id, outcome }
        });
    }

    fn spawn_command(&mut self, id: String, command_type: String, data: Value) {
        let dispatcher = self.dispatcher.clone();
        let done = self.done_tx.clone();
        let progress: Arc<dyn ProgressSink> = Arc::new(LinkProgress::new(
            self.link.clone(),
            self.journal.clone(),
            id.clone(),
            self.auth.session_no(),
        ));
        self.running += 1;
        tokio::spawn(async move {
            let outcome = dispatcher
                .run(&id, &command_type, &data, Some(progress))
                .await;
            let _ = done.send((id, outcome));
        });
    }

    /// The maintenance window: `false` when the update was refused (its
    /// error is recorded and sent here) or scheduled (no result yet: the
    /// final one comes when it has run; meanwhile an `update_progress`
    /// "scheduled").
    fn update_may_run_now(&mut self, id: &str, command_type: &str, data: &Value) -> bool {
        if self.checking {
            // One at a time: a copy of the deployment being checked joins
            // the entry once it is kept.
            self.arrived_while_checking.push_back((
                id.to_owned(),
                command_type.to_owned(),
                data.clone(),
            ));
            return false;
        }
        // The server's copy of the update this agent came from: success,
        // never a refusal that would flip the completed deployment.
        let state_path = &self.config.state_path;
        if let Some(result) = off_worker(|| {
            crate::selfupdate::reinstall::already_installed(
                state_path,
                &crate::selfupdate::own_version(),
                data,
            )
        }) {
            tracing::info!(
                "update {id}: this agent release is already installed under this deployment (the server sent it again)"
            );
            self.record_and_send(id.to_owned(), Outcome::Success { result });
            return false;
        }
        let journal = &self.journal;
        let arrival = self.window_queue.arrive(
            id,
            data,
            crate::agent::maintenance_window::local_hour(),
            |earlier| final_outcome(journal, earlier),
        );
        match arrival {
            window_queue::Arrival::RunNow => return true,
            window_queue::Arrival::ToKeep => self.check_then_keep(id, command_type, data),
            window_queue::Arrival::Kept(update) => self.send_scheduled_progress(&update),
            window_queue::Arrival::Joined { .. } => {}
            window_queue::Arrival::Answered(outcome) => {
                self.record_and_send(id.to_owned(), outcome)
            }
        }
        false
    }

    /// A command for the window is kept once its component has checked it
    /// (when its manifest asks for that: `check-before-window`), so that a
    /// bad one is refused at once with the message a run would get. The
    /// check runs off the loop; its answer comes back as [`Step::Checked`].
    fn check_then_keep(&mut self, id: &str, command_type: &str, data: &Value) {
        if !self.dispatcher.checks_before_window(command_type) {
            self.keep_for_window(id, command_type, data);
            return;
        }
        self.checking = true;
        self.journal_pending += 1;
        let dispatcher = self.dispatcher.clone();
        let steps = self.steps_tx.clone();
        let (id, command_type, data) = (id.to_owned(), command_type.to_owned(), data.clone());
        tokio::spawn(async move {
            let answer = dispatcher.check(&id, &command_type, &data).await;
            let _ = steps.send(Step::Checked {
                id,
                command_type,
                data,
                answer,
            });
        });
    }

    fn keep_for_window(&mut self, id: &str, command_type: &str, data: &Value) {
        match self.window_queue.keep(id, command_type, data) {
            window_queue::Arrival::Kept(update) => self.send_scheduled_progress(&update),
            window_queue::Arrival::Answered(outcome) => {
                self.record_and_send(id.to_owned(), outcome)
            }
            _ => {}
        }
    }

    /// The component's answer to a check: kept for the window, or refused
    /// with its message. Then the window commands that arrived meanwhile
    /// (a copy of the same deployment must find the kept entry to join).
    fn on_checked(
        &mut self,
        id: String,
        command_type: String,
        data: Value,
        answer: Option<Outcome>,
    ) {
        self.checking = false;
        match answer {
            Some(Outcome::Error { error }) => {
                tracing::info!("update {id} refused by its component's check: {error}");
                self.record_and_send(id, Outcome::Error { error });
            }
            Some(Outcome::Success { .. }) | None => self.keep_for_window(&id, &command_type, &data),
        }
        while !self.checking
            && let Some((id, command_type, data)) = self.arrived_while_checking.pop_front()
        {
            if self.update_may_run_now(&id, &command_type, &data) {
                self.spawn_command(id, command_type, data);
            }
        }
    }

    /// The scheduled updates whose final result is already journaled (a
    /// restart after the update finished, or after the resume at start
    /// completed or rolled it back) are forgotten: that result goes out
    /// through the outbox like any other.
    fn settle_scheduled(&mut self) {
        let journal = &self.journal;
        for (update, outcome) in self.window_queue.settle(|id| final_outcome(journal, id)) {
            self.send_result(&update.id, &outcome);
            self.settle_joined(&update.also, &outcome);
        }
    }

    /// The ids that joined a scheduled update (the same deployment sent
    /// again) get its final outcome, each under its own id: the server
    /// keeps one command row per id.
    fn settle_joined(&mut self, joined: &[String], outcome: &Outcome) {
        for id in joined {
            self.record_and_send(id.clone(), outcome.clone());
        }
    }

    /// Runs the scheduled updates once the window is open. Each stays kept
    /// until its final result is journaled (see [`Session::on_done`]).
    fn run_scheduled_updates(&mut self) {
        self.settle_scheduled();
        for update in self
            .window_queue
            .due(crate::agent::maintenance_window::local_hour())
        {
            let Some(command_type) = self.scheduled_command_type(&update) else {
                continue;
            };
            tracing::info!("maintenance window: running scheduled update {}", update.id);
            self.spawn_command(update.id, command_type, update.data);
        }
    }

    /// The command type of a kept entry: its own, or for an entry written
    /// before the type was recorded, the one command the manifests list
    /// under `maintenance-window` (None when that is not one command).
    fn kept_command_type(
        &self,
        update: &crate::agent::maintenance_window::ScheduledUpdate,
    ) -> Option<String> {
        if !update.command_type.is_empty() {
            return Some(update.command_type.clone());
        }
        match self.dispatcher.maintenance_window_commands().as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        }
    }

    /// The command a scheduled entry runs. Entries written before the type
    /// was recorded name none: the one command the manifests list under
    /// `maintenance-window` is meant (only updates were ever scheduled).
    /// When that is not one command, the entry gets an error result.
    fn scheduled_command_type(
        &mut self,
        update: &crate::agent::maintenance_window::ScheduledUpdate,
    ) -> Option<String> {
        if let Some(command_type) = self.kept_command_type(update) {
            return Some(command_type);
        }
        let found = self.dispatcher.maintenance_window_commands();
        let error = format!(
            "scheduled command {} names no command type, and the components list {} maintenance-window commands ({}); it cannot be run",
            update.id,
            found.len(),
            found.join(", ")
        );
        tracing::error!("{error}");
        let joined = self.window_queue.abandon(&update.id);
        self.record_and_send(
            update.id.clone(),
            Outcome::Error {
                error: error.clone(),
            },
        );
        self.settle_joined(&joined, &Outcome::Error { error });
        None
    }

    fn on_done(&mut self, id: String, outcome: Outcome) {
        self.running = self.running.saturating_sub(1);
        match &outcome {
            Outcome::Success { .. } => tracing::info!("command {id} succeeded"),
            Outcome::Error { error } => tracing::warn!("command {id} failed: {error}"),
        }
        let succeeded = matches!(outcome, Outcome::Success { .. });
        // An agent release was staged: the new agent sends this result.
        if self.follow_up.finished(&id, succeeded) {
            return;
        }
        self.record_and_send(id, outcome);
    }

    /// Journals an outcome, then sends it. A failed write keeps the outcome
    /// for a retry instead of sending it: were it sent, a restart before the
    /// write succeeds would report the command "interrupted" after the
    /// server had its real result.
    fn record_and_send(&mut self, id: String, outcome: Outcome) {
        self.journal_job(move |journal| {
            let written = journal.complete(&id, outcome.clone());
            let final_progress = written
                .is_ok()
                .then(|| final_progress_of(journal, &id))
                .flatten();
            Step::Recorded {
                id,
                outcome,
                written,
                final_progress,
            }
        });
    }

    fn on_recorded(
        &mut self,
        id: String,
        outcome: Outcome,
        written: Result<(), JournalError>,
        final_progress: Option<FinalProgress>,
    ) {
        if let Err(e) = written {
            tracing::error!(
                "{e}; the result of command {id} is kept and sent once it is recorded (retried every {} s)",
                RECORD_RETRY.as_secs()
            );
            self.outbox.keep_unrecorded(id, outcome);
            return;
        }
        // Journaled: a scheduled update can be forgotten now, not before (a
        // restart in between finds it and its result).
        let joined = self.window_queue.finished(&id);
        self.settle_joined(&joined, &outcome);
        // Its closing progress event went out while the link was down, or
        // on a session that ended since.
        self.emit_final_progress(final_progress);
        self.send_result(&id, &outcome);
        self.status
            .results_waiting(self.journal.undelivered_count());
    }

    /// Emits a result if we can; otherwise it waits in the outbox.
    fn send_result(&mut self, id: &str, outcome: &Outcome) {
        // A scheduled update has no result until it has run ("interrupted"
        // after a restart while it waited is not one).
        if !self.auth.is_authenticated() || self.window_queue.contains(id) {
            return;
        }
        self.outbox.send(&self.link, id, outcome);
    }
}
