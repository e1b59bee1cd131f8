//! At start, before the session: an update the agent was running when it
//! died (kill, crash, power cut) is finished or rolled back by the
//! update_software component, and its final result replaces the generic
//! "interrupted" one in the journal, so the server learns how it ended.

use crate::agent::dispatch::Dispatcher;
use crate::config::SiteConfig;
use crate::journal::{Journal, Outcome};
use serde_json::{Value, json};

/// Resumes the interrupted work of every component that declares
/// `resume-at-start` and whose marker file is in the staging root (today the
/// update_software component's `update/state.json`). Never fails: problems
/// are logged.
pub async fn resume(config: &SiteConfig, dispatcher: &Dispatcher, journal: &Journal) {
    for (command_type, marker) in dispatcher.resumable() {
        if config.staging_dir().join(&marker).is_file() {
            resume_one(dispatcher, journal, &command_type).await;
        }
    }
}

async fn resume_one(dispatcher: &Dispatcher, journal: &Journal, command_type: &str) {
    tracing::warn!("{command_type} was interrupted; finishing it or rolling it back");
    // Finishing or rolling back can take minutes (services must come up):
    // tell systemd the agent is up, so its start timeout does not kill the
    // rollback half-way and start it again in a loop.
    crate::platform::sd_notify::notify("READY=1");
    // READY also starts systemd's watchdog: keep feeding it while the
    // rollback runs, before the session loop takes over.
    let pinger = crate::platform::sd_notify::watchdog_interval().map(|every| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                crate::platform::sd_notify::notify("WATCHDOG=1");
            }
        })
    });
    let outcome = dispatcher
        .run_internal_with(command_type, &json!({"resume": true}))
        .await;
    if let Some(pinger) = pinger {
        pinger.abort();
    }
    let result = match outcome {
        Some(Outcome::Success { result }) => result,
        Some(Outcome::Error { error }) => {
            tracing::error!("resuming the interrupted {command_type} failed: {error}");
            return;
        }
        None => {
            tracing::error!("{command_type} was interrupted but no component handles it any more");
            return;
        }
    };
    let Some(id) = result.get("resumedCommandId").and_then(Value::as_str) else {
        return;
    };
    let final_outcome = if result.get("status").and_then(Value::as_str) == Some("success") {
        Outcome::Success {
            result: result.get("result").cloned().unwrap_or(Value::Null),
        }
    } else {
        Outcome::Error {
            error: result
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("the interrupted update failed")
                .to_owned(),
        }
    };
    match &final_outcome {
        Outcome::Success { .. } => tracing::info!("interrupted update {id} completed"),
        Outcome::Error { error } => tracing::warn!("interrupted update {id}: {error}"),
    }
    if let Err(e) = journal.complete(id, final_outcome) {
        tracing::error!("{e}");
    }
}
