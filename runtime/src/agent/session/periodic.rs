//! The session's periodic jobs: the watch on CONFIG_PATH (a change is
//! mirrored to the server), the manifests' `periodic` jobs (the hourly
//! expiry, with a line on the agent's own memory), and systemd's watchdog.
//!
//! [`Periodic::next`] waits for whichever is due and says which; the session
//! acts on it (it alone knows whether it is authenticated and owns the
//! link). Every timer fires once at start, then at its interval; a late
//! tick is delayed, never repeated in a burst.

use super::blocking::off_worker;
use super::local_state::ConfigWatcher;
use crate::agent::dispatch::Dispatcher;
use crate::journal::Outcome;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::{Interval, MissedTickBehavior};

/// What is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    /// CONFIG_PATH's content changed since it was last mirrored.
    ConfigChanged,
    /// The periodic jobs (see [`run_jobs`]).
    Expiry,
    /// systemd's watchdog wants to hear from us (`WATCHDOG=1`).
    Watchdog,
}

/// The timers, and the watched configuration.
#[derive(Debug)]
pub(super) struct Periodic {
    watch: Interval,
    watcher: ConfigWatcher,
    expiry: Interval,
    watchdog: Option<Interval>,
}

fn every(period: Duration) -> Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

impl Periodic {
    /// `config_path` is checked every `watch`; the jobs run every `expiry`;
    /// the watchdog is fed every `watchdog` (systemd's `WATCHDOG_USEC`
    /// halved; `None` when the unit has no watchdog).
    pub(super) fn new(
        config_path: PathBuf,
        watch: Duration,
        expiry: Duration,
        watchdog: Option<Duration>,
    ) -> Self {
        Periodic {
            watch: every(watch),
            watcher: ConfigWatcher::new(config_path),
            expiry: every(expiry),
            // tokio's default for the watchdog, as before: late ticks catch
            // up at once, each one telling systemd the agent is alive.
            watchdog: watchdog.map(tokio::time::interval),
        }
    }

    /// Waits for the next job due. Cancel-safe: a timer that fired is not
    /// lost when another event wins the session's `select!` (the ticks
    /// are, and the config check is synchronous once its tick came).
    pub(super) async fn next(&mut self) -> Due {
        loop {
            tokio::select! {
                _ = self.watch.tick() => {
                    // An lstat, and a read when it moved: off the worker.
                    if off_worker(|| self.watcher.changed()) {
                        return Due::ConfigChanged;
                    }
                }
                _ = self.expiry.tick() => return Due::Expiry,
                _ = tick(&mut self.watchdog) => return Due::Watchdog,
            }
        }
    }

    /// The `sync_local_state` payload for `site_id` (the file as it is
    /// now), remembered as sent; `None` when there is nothing to mirror.
    pub(super) fn local_state(&mut self, site_id: &str) -> Option<Value> {
        let watcher = &mut self.watcher;
        off_worker(|| watcher.payload(site_id))
    }
}

/// The next tick of an optional timer; never without one.
async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Runs the manifests' `periodic` jobs (the hourly expiry), each in a task
/// of its own, after a line on the agent's memory.
pub(super) fn run_jobs(dispatcher: &Arc<Dispatcher>) -> Vec<JoinHandle<()>> {
    if let Some((rss, anon)) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| crate::platform::metrics::own_memory_kib(&s))
    {
        // Debug: at info, a line an hour on a quiet box, a page written to
        // the SD card each time (issue 29).
        tracing::debug!("agent memory: {rss} KiB resident, {anon} KiB anonymous");
    }
    dispatcher
        .periodic()
        .into_iter()
        .map(|job| {
            let dispatcher = dispatcher.clone();
            tokio::spawn(async move {
                match dispatcher.run_internal(&job).await {
                    Some(Outcome::Success { result }) => tracing::debug!("{job}: {result}"),
                    Some(Outcome::Error { error }) => tracing::warn!("{job} failed: {error}"),
                    None => {}
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::time::Instant;

    /// Every job due from now until `until`, with when.
    async fn dues(periodic: &mut Periodic, until: Duration) -> Vec<(Duration, Due)> {
        let start = Instant::now();
        let mut seen = Vec::new();
        while let Ok(due) = tokio::time::timeout_at(start + until, periodic.next()).await {
            seen.push((start.elapsed(), due));
        }
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn each_timer_fires_at_start_then_at_its_interval()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut periodic = Periodic::new(
            dir.path().join("configuration.json"),
            Duration::from_secs(2),
            Duration::from_secs(3600),
            Some(Duration::from_secs(900)),
        );
        let mut seen = dues(&mut periodic, Duration::from_secs(7201)).await;
        seen.sort_by_key(|(at, due)| (*at, format!("{due:?}")));
        let secs = |due: Due| -> Vec<u64> {
            seen.iter()
                .filter(|(_, d)| *d == due)
                .map(|(at, _)| at.as_secs())
                .collect()
        };
        assert_eq!(secs(Due::Expiry), [0, 3600, 7200]);
        assert_eq!(
            secs(Due::Watchdog),
            [0, 900, 1800, 2700, 3600, 4500, 5400, 6300, 7200]
        );
        assert!(
            secs(Due::ConfigChanged).is_empty(),
            "no file: nothing to mirror"
        );
        // Without a watchdog, none is ever due.
        let mut quiet = Periodic::new(
            dir.path().join("none"),
            Duration::from_secs(2),
            Duration::from_secs(3600),
            None,
        );
        let seen = dues(&mut quiet, Duration::from_secs(3599)).await;
        assert_eq!(seen, [(Duration::ZERO, Due::Expiry)]);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_configuration_is_due_once_and_mirrored_as_it_is()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("configuration.json");
        std::fs::write(&path, r#"{"club": "A"}"#)?;
        let mut periodic = Periodic::new(
            path.clone(),
            Duration::from_secs(2),
            Duration::from_secs(3600),
            None,
        );
        let changed = |seen: &[(Duration, Due)]| {
            seen.iter()
                .filter(|(_, d)| *d == Due::ConfigChanged)
                .count()
        };
        assert_eq!(
            changed(&dues(&mut periodic, Duration::from_secs(1)).await),
            1
        );
        let payload = periodic.local_state("site-1").ok_or("a payload")?;
        assert_eq!(
            (&payload["siteId"], &payload["config"]),
            (&json!("site-1"), &json!({"club": "A"}))
        );
        // Mirrored: not due again while it stays as it is.
        assert_eq!(
            changed(&dues(&mut periodic, Duration::from_secs(10)).await),
            0
        );
        std::fs::write(&path, r#"{"club": "AB"}"#)?;
        let seen = dues(&mut periodic, Duration::from_secs(3)).await;
        assert_eq!(changed(&seen), 1, "{seen:?}");
        assert_eq!(
            periodic.local_state("site-1").map(|p| p["config"].clone()),
            Some(json!({"club": "AB"}))
        );
        Ok(())
    }
}
