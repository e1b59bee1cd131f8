//! `neopro-runtime run`: wires the journal, the components, the link and
//! the session together, and runs them until asked to stop.
//!
//! - [`session`] — authentication, heartbeat, commands, results;
//! - [`dispatch`] — allowlist, component lookup, per-resource locks;
//! - [`journal`] — the persistent command journal and result outbox;
//! - [`follow_up`] — reboot / self-restart once the result is delivered;
//! - [`update_resume`] — finishes or rolls back an update a crash interrupted;
//! - [`maintenance_window`] — AUTO_UPDATE_ENABLED / AUTO_UPDATE_HOUR and the
//!   updates kept for the window.

pub mod dispatch;
pub mod loaded_components;
pub mod maintenance_window;
pub mod session;
pub mod update_resume;

use crate::agent::dispatch::Dispatcher;
use crate::agent::session::{Session, SessionSettings};
use crate::config::SiteConfig;
use crate::host::HostServices;
use crate::journal::{Journal, JournalError};
use crate::link::backoff::BackoffPolicy;
use crate::link::{self, LinkConfig};
use crate::sandbox::registry::{self, RegistryError};
use crate::sandbox::{Sandbox, SandboxError};
use crate::selfupdate::at_start::{AtStart, Updaters};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Why the agent cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "CENTRAL_SERVER_ENABLED is not \"true\" in {0}: the agent has no server to talk to. Set it to true to run the agent"
    )]
    Disabled(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Trial(#[from] crate::selfupdate::trial::TrialError),
}

/// Timings; the defaults are the production ones, tests shorten them.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub session: SessionSettings,
    pub connect_timeout: Duration,
    pub backoff: BackoffPolicy,
    /// The agent binary, to compile components in a short-lived child
    /// process (`None`: in this process, as tests do).
    pub compiler: Option<PathBuf>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            session: SessionSettings::default(),
            connect_timeout: Duration::from_secs(10),
            backoff: BackoffPolicy::default(),
            compiler: None,
        }
    }
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    config: SiteConfig,
    config_file: Option<PathBuf>,
    options: AgentOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    if !config.central_server_enabled {
        return Err(AgentError::Disabled(
            config
                .file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "the environment".to_owned()),
        ));
    }
    sweep_temporary_files(&config);
    // Updates waiting for the maintenance window were admitted, never run.
    let waiting = maintenance_window::Scheduled::new(&config.state_path).ids();
    let journal = Arc::new(
        Journal::open_with_waiting(
            &config.state_path.join("journal"),
            &waiting,
            &crate::selfupdate::handed_over(&config.state_path),
        )?
        // Read-only commands write nothing to the card (issue 29.5).
        .keep_read_only_in(&config.runtime_path.join("journal")),
    );
    crate::follow_up::log_reboot_outcome(
        &config.state_path,
        &crate::follow_up::ThisBoot::current(),
    );
    let components_dir = registry::components_dir(&config);
    let services = Arc::new(HostServices::from_config(&config));
    let mut sandbox = Sandbox::new(services, Some(&config.cache_dir()))?;
    sandbox.use_packaged_artifacts(&components_dir.join(registry::PACKAGED_ARTIFACTS));
    if let Some(program) = options.compiler.clone() {
        sandbox.compile_in_child(program);
    }
    let sandbox = Arc::new(sandbox);
    let dispatcher = Arc::new(Dispatcher::new(&config, sandbox));
    // What earlier agent updates owe the server; this agent's own trial.
    let mut self_update = AtStart::begin(
        &config.state_path,
        &journal,
        &Updaters {
            runnable: dispatcher.runnable(),
            commands: dispatcher.agent_updaters(),
            progress_event: dispatcher.agent_updater_progress_event(),
        },
    )?;
    crate::agent::update_resume::resume(&config, &dispatcher, &journal).await;
    tracing::info!(
        "neopro-runtime {} for site {} ({}), components from {}: {}",
        crate::selfupdate::own_version(),
        config.site_id.as_deref().unwrap_or("<unregistered>"),
        config.site_name.as_deref().unwrap_or("unnamed"),
        components_dir.display(),
        dispatcher.runnable().join(", ")
    );
    let (link, events) = link::spawn(LinkConfig {
        server_url: config.central_server_url.clone(),
        connect_timeout: options.connect_timeout,
        backoff: options.backoff,
    });
    // Side jobs, independent of the link: analytics forwarding (at start,
    // then every 5 min), the daily configuration.json backup, and the daily
    // sweep of downloads nobody resumed for a week.
    let side_jobs = [
        tokio::spawn(crate::jobs::analytics::run(config.clone())),
        tokio::spawn(crate::jobs::config_backup::run(
            config.config_path.clone(),
            config.neopro_root.join("data/backups"),
        )),
        tokio::spawn(crate::jobs::sweep::run(vec![
            config.videos_path.clone(),
            config.pushed_components_dir().join(".incoming"),
        ])),
        tokio::spawn(dispatcher.unload_idle(crate::agent::loaded_components::IDLE_UNLOAD)),
    ];
    let (authenticated_tx, authenticated_rx) = tokio::sync::oneshot::channel();
    self_update.watch_health(authenticated_rx);
    let mut session = Session::new(
        config,
        config_file,
        options.session,
        link,
        journal,
        dispatcher,
    );
    session = session.on_first_authentication(authenticated_tx);
    if let Some((gate, committed)) = self_update.trial_for_session() {
        session = session.with_trial(gate, committed);
    }
    let trial_deadline = self_update.deadline();
    let shutdown = async move {
        tokio::select! {
            () = shutdown => {}
            () = trial_deadline => {}
        }
    };
    session.run(events, shutdown).await;
    side_jobs.iter().for_each(tokio::task::JoinHandle::abort);
    Ok(self_update.outcome()?)
}

/// Removes what atomic writes cut by a power failure left in the agent's
/// folders, before anything writes there again (see `store::temp_sweep`).
fn sweep_temporary_files(config: &SiteConfig) {
    let config_dir = config
        .config_path
        .parent()
        .map(std::path::Path::to_owned)
        .unwrap_or_else(|| config.neopro_root.clone());
    let folders = [
        (config.state_path.clone(), 3),
        (config.videos_path.clone(), 3),
        (config_dir, 0),
        (config.backup_path.clone(), 1),
        (config.neopro_root.join("data/backups"), 0),
    ];
    for (folder, depth) in folders {
        for path in crate::store::temp_sweep::sweep(&folder, depth) {
            tracing::info!(
                "removed {}: the temporary file of a write a power cut interrupted",
                path.display()
            );
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
