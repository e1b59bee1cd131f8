//! The session's maintenance-window queue: a command its manifest lists
//! under `maintenance-window` that arrives outside the window is kept on
//! disk (`maintenance_window::Scheduled`) and started when the window
//! opens; it stays kept until its final result is journaled, so a restart
//! at any point finds it again. The server re-sends an update deployment
//! under a new id at every authentication: a copy joins the kept entry, or
//! gets the result of the one that already ran, and never runs twice.
//!
//! This module decides and keeps the books; the session sends (results,
//! "scheduled" progress) and starts the commands.

use crate::agent::maintenance_window::{
    Decision, Scheduled, ScheduledUpdate, decide, next_window_iso, window_open,
};
use crate::config::UpdateWindow;
use crate::journal::Outcome;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;

/// What becomes of a maintenance-window command that arrives.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Arrival {
    /// The window is open, or the command is critical: run it now.
    RunNow,
    /// For the window: [`WindowQueue::keep`] it once its component has
    /// checked it (`check-before-window`), or at once.
    ToKeep,
    /// Kept for the window: no result before it has run; its "scheduled"
    /// progress tells the dashboard it waits.
    Kept(ScheduledUpdate),
    /// The same deployment as the kept entry `kept`: this id gets that
    /// entry's result when it has one.
    Joined { kept: String },
    /// Answered at once: refused, or the result of the copy that ran.
    Answered(Outcome),
}

/// Kept entries and the ones this process started.
pub(super) struct WindowQueue {
    scheduled: Scheduled,
    running: HashSet<String>,
    window: UpdateWindow,
}

impl WindowQueue {
    pub(super) fn new(state_path: &Path, window: UpdateWindow) -> Self {
        WindowQueue {
            scheduled: Scheduled::new(state_path),
            running: HashSet::new(),
            window,
        }
    }

    /// Decides for `id` at `hour` (the box's local hour, `None` when
    /// unknown: run). `final_outcome` reads an earlier id's final journaled
    /// result.
    pub(super) fn arrive(
        &mut self,
        id: &str,
        data: &Value,
        hour: Option<u8>,
        final_outcome: impl Fn(&str) -> Option<Outcome>,
    ) -> Arrival {
        // A copy of a deployment kept for the window joins it, whether it
        // still waits or runs now (the window opened: the entry runs at
        // start, and the server re-sends the deployment at the
        // authentication that follows).
        if let Some(kept) = self.scheduled.same_deployment(data)
            && kept.id != id
        {
            match self.scheduled.join(&kept, id) {
                Ok(()) => {
                    tracing::info!(
                        "update {id} is update {} again (same deployment, sent again by the server); it will get that update's result",
                        kept.id
                    );
                    return Arrival::Joined { kept: kept.id };
                }
                Err(e) => tracing::error!("{e}"),
            }
        }
        // A copy arriving just after that entry ran gets its result.
        if let Some(original) = self.scheduled.settled_id(data)
            && original != id
            && let Some(outcome) = final_outcome(&original)
        {
            tracing::info!(
                "update {id} is update {original} again (same deployment, sent again by the server after it ran); it gets that update's result"
            );
            return Arrival::Answered(outcome);
        }
        match decide(self.window, data, hour) {
            Decision::Run => Arrival::RunNow,
            Decision::Refuse(error) => Arrival::Answered(Outcome::Error { error }),
            Decision::Schedule => Arrival::ToKeep,
        }
    }

    /// Keeps `id` for the window ([`Arrival::Kept`]), or answers the error
    /// that prevented it.
    pub(super) fn keep(&mut self, id: &str, command_type: &str, data: &Value) -> Arrival {
        let update = ScheduledUpdate {
            id: id.to_owned(),
            command_type: command_type.to_owned(),
            data: data.clone(),
            scheduled_for: next_window_iso(self.window),
            also: Vec::new(),
        };
        match self.scheduled.add(&update) {
            Ok(()) => {
                tracing::info!(
                    "update {id} scheduled for the maintenance window ({})",
                    update.scheduled_for.as_deref().unwrap_or("time unknown")
                );
                Arrival::Kept(update)
            }
            Err(e) => Arrival::Answered(Outcome::Error {
                error: e.to_string(),
            }),
        }
    }

    /// Whether `id` is kept (waiting or running): it has no result to send
    /// before it has run.
    pub(super) fn contains(&self, id: &str) -> bool {
        self.scheduled.contains(id)
    }

    /// The kept entry `id` if it waits (a re-delivery of the same id gets
    /// its "scheduled" progress again, nothing else).
    pub(super) fn waiting_entry(&self, id: &str) -> Option<ScheduledUpdate> {
        if self.running.contains(id) {
            return None;
        }
        self.scheduled.list().into_iter().find(|u| u.id == id)
    }

    /// Every entry that waits (the dashboard is told again at each
    /// authentication).
    pub(super) fn waiting(&self) -> Vec<ScheduledUpdate> {
        self.scheduled
            .list()
            .into_iter()
            .filter(|u| !self.running.contains(&u.id))
            .collect()
    }

    /// Entries this process does not run whose final result is already
    /// journaled (a restart after the command finished, or after the resume
    /// at start completed or rolled it back): forgotten, and returned with
    /// that result for the session to send to them and the ids that joined.
    pub(super) fn settle(
        &mut self,
        final_outcome: impl Fn(&str) -> Option<Outcome>,
    ) -> Vec<(ScheduledUpdate, Outcome)> {
        let mut settled = Vec::new();
        for update in self.scheduled.list() {
            if self.running.contains(&update.id) {
                continue;
            }
            if let Some(outcome) = final_outcome(&update.id) {
                tracing::info!("scheduled update {} has its final result", update.id);
                self.scheduled.remember_settled(&update);
                if let Err(e) = self.scheduled.remove(&update.id) {
                    tracing::error!("{e}");
                    continue;
                }
                settled.push((update, outcome));
            }
        }
        settled
    }

    /// The entries to start now, when the window is open at `hour`: each is
    /// marked running (it is not returned again).
    pub(super) fn due(&mut self, hour: Option<u8>) -> Vec<ScheduledUpdate> {
        if self.scheduled.is_empty() || !window_open(self.window, hour) {
            return Vec::new();
        }
        self.scheduled
            .list()
            .into_iter()
            .filter(|u| self.running.insert(u.id.clone()))
            .collect()
    }

    /// An entry that cannot be run after all: forgotten; returns the ids
    /// that joined it (they get the same error).
    pub(super) fn abandon(&mut self, id: &str) -> Vec<String> {
        self.running.remove(id);
        let joined = self
            .scheduled
            .list()
            .into_iter()
            .find(|u| u.id == id)
            .map(|u| u.also)
            .unwrap_or_default();
        if let Err(e) = self.scheduled.remove(id) {
            tracing::error!("{e}");
        }
        joined
    }

    /// `id`'s final result is journaled. When it is an entry this process
    /// ran, the entry is forgotten now, not before (a restart in between
    /// finds it and its result); returns the ids that joined it.
    pub(super) fn finished(&mut self, id: &str) -> Vec<String> {
        if !self.running.remove(id) {
            return Vec::new();
        }
        let entry = self.scheduled.list().into_iter().find(|u| u.id == id);
        if let Some(entry) = &entry {
            self.scheduled.remember_settled(entry);
        }
        match self.scheduled.remove(id) {
            Ok(()) => entry.map(|u| u.also).unwrap_or_default(),
            Err(e) => {
                tracing::error!("{e}");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const WINDOW: UpdateWindow = UpdateWindow {
        enabled: true,
        hour: 3,
    };
    const CLOSED: Option<u8> = Some(14);
    const OPEN: Option<u8> = Some(3);

    fn update(deployment: &str) -> Value {
        json!({"version": "2.0.0", "updateUrl": "http://x/r.tar.gz", "deploymentId": deployment})
    }

    fn none(_: &str) -> Option<Outcome> {
        None
    }

    /// Arrives and, when it is for the window, is kept (its check passed).
    fn keep_for_window(queue: &mut WindowQueue, id: &str, data: &Value) -> Arrival {
        match queue.arrive(id, data, CLOSED, none) {
            Arrival::ToKeep => queue.keep(id, "install", data),
            other => other,
        }
    }

    #[test]
    fn outside_the_window_a_command_is_kept_and_its_copies_join_it()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut queue = WindowQueue::new(dir.path(), WINDOW);
        let Arrival::Kept(kept) = keep_for_window(&mut queue, "u-1", &update("d-1")) else {
            return Err("not kept".into());
        };
        assert_eq!(
            (kept.id.as_str(), kept.command_type.as_str()),
            ("u-1", "install")
        );
        assert!(queue.contains("u-1"));
        // The server's copy under a new id, twice: joined, nothing new kept.
        for id in ["u-2", "u-3"] {
            assert_eq!(
                queue.arrive(id, &update("d-1"), CLOSED, none),
                Arrival::Joined {
                    kept: "u-1".to_owned()
                }
            );
        }
        // A restart reads the same books.
        let mut again = WindowQueue::new(dir.path(), WINDOW);
        assert_eq!(again.waiting().len(), 1);
        assert_eq!(
            again.waiting_entry("u-1").map(|u| u.also),
            Some(vec!["u-2".to_owned(), "u-3".to_owned()])
        );
        // Closed: nothing due. Open: due once, then running.
        assert!(again.due(CLOSED).is_empty());
        let due: Vec<String> = again.due(OPEN).into_iter().map(|u| u.id).collect();
        assert_eq!(due, vec!["u-1"]);
        assert!(again.due(OPEN).is_empty(), "started once");
        assert_eq!(again.waiting_entry("u-1"), None, "running, not waiting");
        // Its result journaled: forgotten, the joined ids returned.
        assert_eq!(
            again.finished("u-1"),
            vec!["u-2".to_owned(), "u-3".to_owned()]
        );
        assert!(!again.contains("u-1"));
        // A copy that comes after it ran gets its result.
        let result = Outcome::Success {
            result: json!({"version": "2.0.0"}),
        };
        let ran = |id: &str| (id == "u-1").then(|| result.clone());
        assert_eq!(
            again.arrive("u-4", &update("d-1"), CLOSED, ran),
            Arrival::Answered(result.clone())
        );
        Ok(())
    }

    #[test]
    fn a_refusal_comes_at_once_and_keeps_nothing() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut queue = WindowQueue::new(dir.path(), WINDOW);
        // Outside the window: to keep once checked; nothing kept before.
        assert_eq!(
            queue.arrive("u-1", &update("d-1"), CLOSED, none),
            Arrival::ToKeep
        );
        assert!(queue.waiting().is_empty());
        // Data only the agent may set: refused whatever the hour.
        for key in ["resume", "check"] {
            let mut reserved = update("d-5");
            reserved[key] = json!(true);
            assert_eq!(
                queue.arrive("u-5", &reserved, CLOSED, none),
                Arrival::Answered(Outcome::Error {
                    error: format!("'{key}' is reserved for the agent itself")
                })
            );
        }
        // Open window, or critical: run now, nothing kept either.
        assert_eq!(
            queue.arrive("u-2", &update("d-2"), OPEN, none),
            Arrival::RunNow
        );
        let mut critical = update("d-3");
        critical["isCritical"] = json!(true);
        assert_eq!(
            queue.arrive("u-3", &critical, CLOSED, none),
            Arrival::RunNow
        );
        assert!(queue.waiting().is_empty());
        // Updates disabled: refused whatever the hour.
        let mut off = WindowQueue::new(
            dir.path(),
            UpdateWindow {
                enabled: false,
                hour: 3,
            },
        );
        assert!(matches!(
            off.arrive("u-4", &update("d-4"), OPEN, none),
            Arrival::Answered(Outcome::Error { .. })
        ));
        Ok(())
    }

    #[test]
    fn an_entry_whose_result_is_journaled_is_settled_unless_running()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut queue = WindowQueue::new(dir.path(), WINDOW);
        keep_for_window(&mut queue, "u-1", &update("d-1"));
        keep_for_window(&mut queue, "u-2", &update("d-2"));
        let done = Outcome::Error {
            error: "rolled back".to_owned(),
        };
        let journaled = |id: &str| (id == "u-1").then(|| done.clone());
        let settled = queue.settle(journaled);
        assert_eq!(settled.len(), 1);
        assert_eq!((settled[0].0.id.as_str(), &settled[0].1), ("u-1", &done));
        assert!(!queue.contains("u-1") && queue.contains("u-2"));
        // Running in this process: its result is handled by `finished`.
        assert_eq!(queue.due(OPEN).len(), 1);
        assert!(queue.settle(|_| Some(done.clone())).is_empty());
        // Abandoned: forgotten with the ids that joined it.
        keep_for_window(&mut queue, "u-3", &update("d-2"));
        assert_eq!(queue.abandon("u-2"), vec!["u-3".to_owned()]);
        assert!(queue.waiting().is_empty() && !queue.contains("u-2"));
        Ok(())
    }
}
