//! Components kept loaded between commands, and dropped once idle.
//!
//! A loaded component maps its compiled artifact and holds its linked
//! instance template. On a box's first start (every component compiled),
//! one command of each built-in left ≈6 MiB resident beyond the idle
//! agent, mostly those mappings' code pages. Loading again from the
//! artifact cache takes about half a millisecond, so a component unused
//! for [`IDLE_UNLOAD`] is dropped: a box that runs a command now and then
//! goes back to its idle footprint instead of keeping every component it
//! ever ran. Nothing wakes the agent while nothing is loaded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
// tokio's clock, so that a test can pause it.
use tokio::time::Instant;

/// How long a component stays loaded after its last command ended.
pub const IDLE_UNLOAD: Duration = Duration::from_secs(30);

struct Entry<T> {
    component: Arc<T>,
    /// When its last command started or ended.
    last_used: Instant,
    /// Commands running with it now.
    running: usize,
}

/// Loaded components by wasm file (each pushed version has its own).
pub struct LoadedComponents<T> {
    map: Mutex<BTreeMap<PathBuf, Entry<T>>>,
    /// Woken when a command ends, so the sweeper learns the next expiry.
    changed: tokio::sync::Notify,
}

impl<T> Default for LoadedComponents<T> {
    fn default() -> Self {
        LoadedComponents {
            map: Mutex::new(BTreeMap::new()),
            changed: tokio::sync::Notify::new(),
        }
    }
}

impl<T> LoadedComponents<T> {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<PathBuf, Entry<T>>> {
        match self.map.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The component loaded from `path`, marked in use until
    /// [`LoadedComponents::finished`]; `None` when it is not loaded.
    pub fn start(&self, path: &Path) -> Option<Arc<T>> {
        let mut map = self.lock();
        let entry = map.get_mut(path)?;
        entry.running += 1;
        entry.last_used = Instant::now();
        Some(entry.component.clone())
    }

    /// Keeps `component`, just loaded from `path`, and marks it in use.
    /// When two first commands loaded it at the same time, the one kept
    /// first is returned.
    pub fn start_loaded(&self, path: &Path, component: Arc<T>) -> Arc<T> {
        let mut map = self.lock();
        let entry = map.entry(path.to_owned()).or_insert(Entry {
            component,
            last_used: Instant::now(),
            running: 0,
        });
        entry.running += 1;
        entry.last_used = Instant::now();
        entry.component.clone()
    }

    /// A command that [`start`](LoadedComponents::start)ed with `path`
    /// ended: its idle time counts from now.
    pub fn finished(&self, path: &Path) {
        if let Some(entry) = self.lock().get_mut(path) {
            entry.running = entry.running.saturating_sub(1);
            entry.last_used = Instant::now();
        }
        self.changed.notify_one();
    }

    /// Drops the components whose files are not in `keep` (a command
    /// running with one keeps its own reference).
    pub fn retain(&self, keep: &BTreeSet<PathBuf>) {
        self.lock().retain(|path, _| keep.contains(path));
    }

    /// Drops the components no command has used for `idle`; returns how
    /// many, and when the next one would be due.
    pub fn drop_idle(&self, now: Instant, idle: Duration) -> (usize, Option<Instant>) {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, e| e.running > 0 || now.saturating_duration_since(e.last_used) < idle);
        let next = map
            .values()
            .filter(|e| e.running == 0)
            .map(|e| e.last_used + idle)
            .min();
        (before - map.len(), next)
    }

    /// How many components are loaded now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Drops idle components for as long as the agent runs: sleeps until
    /// the next one is due, or until a command ends when none is. Calls
    /// `went_idle` each time it unloaded the last one.
    pub async fn sweep(self: Arc<Self>, idle: Duration, went_idle: impl Fn()) {
        loop {
            let notified = self.changed.notified();
            let (dropped, next) = self.drop_idle(Instant::now(), idle);
            if dropped > 0 {
                tracing::debug!("{dropped} idle component(s) unloaded");
                if self.is_empty() {
                    went_idle();
                }
            }
            match next {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str) -> PathBuf {
        PathBuf::from(format!("/components/{name}.wasm"))
    }

    #[test]
    fn an_idle_component_is_dropped_one_in_use_is_kept() {
        let loaded = LoadedComponents::default();
        let idle = Duration::from_secs(30);
        let a = loaded.start_loaded(&path("a"), Arc::new("a"));
        let _b = loaded.start_loaded(&path("b"), Arc::new("b"));
        loaded.finished(&path("a"));
        let later = Instant::now() + Duration::from_secs(31);
        let (dropped, next) = loaded.drop_idle(later, idle);
        assert_eq!(dropped, 1, "a ended 31 s ago; b still runs");
        assert_eq!(next, None, "nothing idle left to wait for");
        assert!(
            loaded.start(&path("a")).is_none(),
            "a is loaded again next time"
        );
        assert_eq!(*a, "a", "a command holding it keeps its own");
        assert!(loaded.start(&path("b")).is_some());
        assert_eq!(loaded.len(), 1);
    }

    #[test]
    fn a_recent_use_keeps_it_and_tells_when_it_is_due() {
        let loaded = LoadedComponents::default();
        let idle = Duration::from_secs(30);
        loaded.start_loaded(&path("a"), Arc::new(1));
        loaded.finished(&path("a"));
        let (dropped, next) = loaded.drop_idle(Instant::now(), idle);
        assert_eq!(dropped, 0);
        let due = next.map(|t| t.saturating_duration_since(Instant::now()));
        assert!(
            due.is_some_and(|d| d > Duration::from_secs(29) && d <= idle),
            "{due:?}"
        );
    }

    #[test]
    fn the_first_of_two_concurrent_loads_is_kept() {
        let loaded = LoadedComponents::default();
        let first = loaded.start_loaded(&path("a"), Arc::new(1));
        let second = loaded.start_loaded(&path("a"), Arc::new(2));
        assert_eq!((*first, *second), (1, 1));
        loaded.finished(&path("a"));
        // One command still runs with it.
        let (dropped, _) = loaded.drop_idle(Instant::now() + Duration::from_secs(60), IDLE_UNLOAD);
        assert_eq!(dropped, 0);
        loaded.finished(&path("a"));
        let (dropped, _) = loaded.drop_idle(Instant::now() + Duration::from_secs(60), IDLE_UNLOAD);
        assert_eq!(dropped, 1);
        assert!(loaded.is_empty());
    }

    #[test]
    fn retain_keeps_only_the_components_still_installed() {
        let loaded = LoadedComponents::default();
        loaded.start_loaded(&path("a"), Arc::new(1));
        loaded.start_loaded(&path("b"), Arc::new(2));
        loaded.retain(&BTreeSet::from([path("b")]));
        assert!(loaded.start(&path("a")).is_none());
        assert!(loaded.start(&path("b")).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweeper_unloads_once_idle_and_says_when_the_last_one_went() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let loaded = Arc::new(LoadedComponents::default());
        let idle_calls = Arc::new(AtomicUsize::new(0));
        let calls = idle_calls.clone();
        let sweeper = tokio::spawn(loaded.clone().sweep(IDLE_UNLOAD, move || {
            calls.fetch_add(1, Ordering::SeqCst);
        }));
        loaded.start_loaded(&path("a"), Arc::new(1));
        loaded.finished(&path("a"));
        tokio::time::sleep(Duration::from_secs(10)).await;
        loaded.start_loaded(&path("b"), Arc::new(2));
        loaded.finished(&path("b"));
        tokio::time::sleep(IDLE_UNLOAD - Duration::from_secs(9)).await;
        assert_eq!(loaded.len(), 1, "a dropped, b not idle long enough");
        assert_eq!(idle_calls.load(Ordering::SeqCst), 0, "b is still loaded");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(loaded.is_empty(), "b dropped once idle");
        assert_eq!(idle_calls.load(Ordering::SeqCst), 1);
        sweeper.abort();
    }
}
