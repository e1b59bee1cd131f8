//! The start path: `neopro-runtime run` (the packaged binary systemd starts)
//! first decides which agent binary runs, then execs it in place — same PID,
//! so `Type=notify` and the watchdog follow the new image.
//!
//! The decision ([`decide`]) is a pure function of the state file, this
//! binary's version, the clocks and which slot binaries can be executed, so
//! every branch is tested without processes. The rules, in order:
//!
//! 1. no state, or a state that cannot be read → this binary (the floor);
//! 2. a trial older than or equal to this binary (a `.deb` installed by
//!    hand since) is dropped: the packaged binary wins;
//! 3. a trial started [`MAX_ATTEMPTS`] times without committing, past its
//!    deadline (on the boot clock, from its first start in this boot), or
//!    whose binary is missing → recorded as failed (with its last error)
//!    and dropped;
//! 4. otherwise the trial runs, its attempt counted (fsync'd) *before* the
//!    exec, so a crash or a watchdog kill still counts;
//! 5. a committed slot runs unless this binary is newer or equal (then the
//!    slot is dropped), its binary cannot be executed, or it already
//!    started [`MAX_COMMITTED_STARTS`] times in a row without proving
//!    healthy (floor); each start is counted before the exec.

use super::state::{
    AgentState, BootInstant, Failed, MAX_ATTEMPTS, MAX_COMMITTED_STARTS, trial_elapsed_ms,
};
use super::{LAUNCHED_ENV, agent_dir};
use crate::version_order;
use std::cmp::Ordering;
use std::path::{Path, PathBuf};

/// Which binary runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    /// This process goes on (the packaged binary).
    Floor,
    /// The slot of `version`; `trial` when it has not been committed yet.
    Slot { version: String, trial: bool },
}

/// What the launcher does: maybe rewrite the state, then run one binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub run: Run,
    /// The state to write before running (`None`: unchanged).
    pub write: Option<AgentState>,
    /// What the operator reads in the log about this start.
    pub notes: Vec<String>,
}

/// The slot binary of `version` under `agent_dir`.
pub fn slot_binary(agent_dir: &Path, version: &str) -> PathBuf {
    agent_dir.join(version).join("bin/neopro-runtime")
}

/// A regular file with an execute bit (symlinks are not followed: a slot is
/// what the agent copied, nothing else).
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .is_ok_and(|m| m.file_type().is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether `candidate` runs instead of the packaged `own` version: only a
/// strictly newer, orderable version does.
fn newer_than_packaged(candidate: &str, own: &str) -> bool {
    version_order::compare(candidate, own) == Some(Ordering::Greater)
}

/// The two clocks the launcher reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Now {
    /// Wall clock, ms since the epoch (used only where no boot clock is).
    pub wall_ms: u64,
    pub boot: Option<BootInstant>,
}

impl Now {
    pub fn read() -> Now {
        Now {
            wall_ms: crate::platform::clock::unix_millis(std::time::SystemTime::now()),
            boot: BootInstant::now(),
        }
    }
}

/// The launcher's decision; see the module documentation for the rules.
pub fn decide(
    state: Result<Option<AgentState>, String>,
    own: &str,
    now: &Now,
    executable: &dyn Fn(&str) -> bool,
) -> Plan {
    let mut state = match state {
        Err(problem) => {
            return Plan {
                run: Run::Floor,
                write: None,
                notes: vec![problem],
            };
        }
        Ok(None) => {
            return Plan {
                run: Run::Floor,
                write: None,
                notes: Vec::new(),
            };
        }
        Ok(Some(state)) => state,
    };
    let original = state.clone();
    let mut notes = Vec::new();
    if let Some(mut trial) = state.trial.take() {
        let elapsed_ms = trial_elapsed_ms(&trial, now.boot.as_ref(), now.wall_ms);
        let failure = if !newer_than_packaged(&trial.version, own) {
            Some(format!(
                "the packaged agent {own} was installed over the trial of {}; the trial is dropped",
                trial.version
            ))
        } else if trial.attempts >= MAX_ATTEMPTS {
            Some(format!(
                "the new agent {} did not come up: started {} times without authenticating{}",
                trial.version,
                trial.attempts,
                trial
                    .last_error
                    .as_deref()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_else(|| " (it crashed or hung before reporting an error)".into())
            ))
        } else if elapsed_ms.is_some_and(|e| e > trial.deadline_secs.saturating_mul(1000)) {
            Some(format!(
                "the new agent {} did not authenticate within {} s{}",
                trial.version,
                trial.deadline_secs,
                trial
                    .last_error
                    .as_deref()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            ))
        } else if !executable(&trial.version) {
            Some(format!(
                "the new agent {}'s binary is missing or not executable",
                trial.version
            ))
        } else {
            None
        };
        match failure {
            Some(error) => {
                notes.push(format!("agent update to {} failed: {error}", trial.version));
                state.failed = Some(Failed {
                    version: trial.version,
                    command_id: trial.command_id,
                    deployment_id: trial.deployment_id,
                    error,
                });
            }
            None => {
                trial.attempts += 1;
                // First start in this boot: the deadline counts from now.
                if elapsed_ms.is_none() {
                    trial.first_start = now.boot.clone();
                }
                notes.push(format!(
                    "starting the new agent {} on trial (attempt {} of {MAX_ATTEMPTS})",
                    trial.version, trial.attempts
                ));
                let version = trial.version.clone();
                state.trial = Some(trial);
                return Plan {
                    run: Run::Slot {
                        version,
                        trial: true,
                    },
                    write: Some(state),
                    notes,
                };
            }
        }
    }
    let run = match state.committed.clone() {
        None => Run::Floor,
        Some(committed) if !newer_than_packaged(&committed, own) => {
            notes.push(format!(
                "the packaged agent {own} is not older than the committed slot {committed}: the slot is dropped"
            ));
            state.committed = None;
            state.committed_deployment = None;
            Run::Floor
        }
        Some(committed) if !executable(&committed) => {
            notes.push(format!(
                "the committed agent {committed}'s binary is missing or not executable: running the packaged agent {own}"
            ));
            state.committed = None;
            state.committed_deployment = None;
            Run::Floor
        }
        Some(committed) if state.committed_starts >= MAX_COMMITTED_STARTS => {
            notes.push(format!(
                "the committed agent {committed} started {} times in a row without staying up or authenticating: it is dropped, running the packaged agent {own}",
                state.committed_starts
            ));
            state.committed = None;
            state.committed_deployment = None;
            Run::Floor
        }
        Some(committed) => {
            state.committed_starts += 1;
            Run::Slot {
                version: committed,
                trial: false,
            }
        }
    };
    if state.committed.is_none() {
        state.committed_starts = 0;
    }
    Plan {
        run,
        write: (state != original).then_some(state),
        notes,
    }
}

/// Runs the launcher for `neopro-runtime run`: returns when this process is
/// the agent that runs (the floor, or a slot the launcher already exec'd),
/// and never when it execs a slot binary. Never fails: every problem leads
/// to the floor, logged.
pub fn launch(state_path: &Path) {
    if std::env::var_os(LAUNCHED_ENV).is_some() {
        return;
    }
    let dir = agent_dir(state_path);
    let state = super::state::AgentState::load(&dir).map_err(|e| e.to_string());
    let own = super::own_version();
    let plan = decide(state, &own, &Now::read(), &|v| {
        is_executable(&slot_binary(&dir, v))
    });
    for note in &plan.notes {
        tracing::warn!("{note}");
    }
    if let Some(write) = &plan.write
        && let Err(e) = write.save(&dir)
    {
        // A slot whose start cannot be counted must not run: it could
        // crash for ever.
        tracing::error!("{e}; running the packaged agent {own}");
        return;
    }
    let Run::Slot { version, trial } = plan.run else {
        return;
    };
    let binary = slot_binary(&dir, &version);
    let error = exec(&binary, if trial { "trial" } else { "committed" });
    tracing::error!(
        "cannot start the agent {version} from {}: {error}; running the packaged agent {own}",
        binary.display()
    );
}

/// Replaces this process with `binary`, same arguments; returns only on
/// failure.
fn exec(binary: &Path, kind: &str) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(binary)
        .args(std::env::args_os().skip(1))
        .env(LAUNCHED_ENV, kind)
        .env(super::FLOOR_ENV, super::own_version())
        .exec()
}

#[cfg(test)]
mod tests {
    use super::super::state::Trial;
    use super::*;

    const NOW: u64 = 1_000_000;

    fn at(boot: &str, uptime_ms: u64) -> BootInstant {
        BootInstant {
            boot_id: boot.into(),
            uptime_ms,
        }
    }

    /// Wall clock NOW, boot "b1" up for NOW ms.
    fn now() -> Now {
        Now {
            wall_ms: NOW,
            boot: Some(at("b1", NOW)),
        }
    }

    fn trial(version: &str, attempts: u32) -> Trial {
        Trial {
            version: version.into(),
            previous_version: "1.0.0".into(),
            command_id: "cmd-7".into(),
            deployment_id: None,
            attempts,
            started_at_ms: NOW - 1000,
            deadline_secs: 600,
            last_error: None,
            first_start: Some(at("b1", NOW - 1000)),
        }
    }

    fn with(committed: Option<&str>, trial: Option<Trial>) -> Result<Option<AgentState>, String> {
        Ok(Some(AgentState {
            committed: committed.map(Into::into),
            trial,
            ..AgentState::default()
        }))
    }

    fn all(_: &str) -> bool {
        true
    }

    fn none(_: &str) -> bool {
        false
    }

    #[test]
    fn no_state_or_a_bad_one_runs_the_packaged_agent() {
        assert_eq!(decide(Ok(None), "1.0.0", &now(), &all).run, Run::Floor);
        let plan = decide(Err("bad json".into()), "1.0.0", &now(), &all);
        assert_eq!(plan.run, Run::Floor);
        assert_eq!(plan.write, None);
        assert_eq!(plan.notes, vec!["bad json".to_owned()]);
    }

    #[test]
    fn a_trial_runs_with_its_attempt_counted_first() {
        let plan = decide(with(None, Some(trial("2.0.0", 0))), "1.0.0", &now(), &all);
        assert_eq!(
            plan.run,
            Run::Slot {
                version: "2.0.0".into(),
                trial: true
            }
        );
        let written = plan.write.and_then(|s| s.trial).map(|t| t.attempts);
        assert_eq!(written, Some(1));
    }

    #[test]
    fn a_trial_that_used_its_attempts_falls_back_with_its_last_error() {
        let mut t = trial("2.0.0", MAX_ATTEMPTS);
        t.last_error = Some("authentication refused".into());
        let plan = decide(with(Some("1.5.0"), Some(t)), "1.0.0", &now(), &all);
        assert_eq!(
            plan.run,
            Run::Slot {
                version: "1.5.0".into(),
                trial: false
            }
        );
        let state = plan.write.unwrap_or_default();
        assert_eq!(state.trial, None);
        assert_eq!(state.committed.as_deref(), Some("1.5.0"));
        let failed = state.failed.unwrap_or_else(|| Failed {
            version: String::new(),
            command_id: String::new(),
            deployment_id: None,
            error: String::new(),
        });
        assert_eq!(failed.command_id, "cmd-7");
        assert_eq!(
            failed.error,
            "the new agent 2.0.0 did not come up: started 2 times without authenticating (last error: authentication refused)"
        );
    }

    #[test]
    fn a_trial_past_its_deadline_or_without_binary_falls_back_to_the_floor() {
        let mut late = trial("2.0.0", 1);
        late.first_start = Some(at("b1", NOW - 601_000));
        let plan = decide(with(None, Some(late)), "1.0.0", &now(), &all);
        assert_eq!(plan.run, Run::Floor);
        assert_eq!(
            plan.write.and_then(|s| s.failed).map(|f| f.error),
            Some("the new agent 2.0.0 did not authenticate within 600 s".to_owned())
        );
        let plan = decide(with(None, Some(trial("2.0.0", 0))), "1.0.0", &now(), &none);
        assert_eq!(plan.run, Run::Floor);
        assert_eq!(
            plan.write.and_then(|s| s.failed).map(|f| f.error),
            Some("the new agent 2.0.0's binary is missing or not executable".to_owned())
        );
    }

    #[test]
    fn the_deadline_runs_on_the_boot_clock_not_the_wall_clock() {
        // The wall clock jumped a week ahead (NTP after a boot without
        // RTC): 1 s into its deadline, the trial still runs.
        let mut jumped = now();
        jumped.wall_ms += 7 * 86_400_000;
        let plan = decide(with(None, Some(trial("2.0.0", 0))), "1.0.0", &jumped, &all);
        assert!(matches!(plan.run, Run::Slot { trial: true, .. }));
        // Staged, then the box rebooted: the count starts again in this
        // boot (the attempts still bound the trial).
        let rebooted = Now {
            wall_ms: NOW,
            boot: Some(at("b2", 20_000)),
        };
        let plan = decide(
            with(None, Some(trial("2.0.0", 1))),
            "1.0.0",
            &rebooted,
            &all,
        );
        assert!(matches!(plan.run, Run::Slot { trial: true, .. }));
        let written = plan.write.and_then(|s| s.trial);
        assert_eq!(
            written.map(|t| (t.attempts, t.first_start)),
            Some((2, Some(at("b2", 20_000))))
        );
        // A first start records the moment; a second one keeps it.
        let mut fresh = trial("2.0.0", 0);
        fresh.first_start = None;
        let plan = decide(with(None, Some(fresh)), "1.0.0", &now(), &all);
        let first = plan.write.and_then(|s| s.trial).and_then(|t| t.first_start);
        assert_eq!(first, Some(at("b1", NOW)));
        let plan = decide(with(None, Some(trial("2.0.0", 1))), "1.0.0", &now(), &all);
        let kept = plan.write.and_then(|s| s.trial).and_then(|t| t.first_start);
        assert_eq!(kept, Some(at("b1", NOW - 1000)));
    }

    #[test]
    fn a_committed_slot_that_never_stays_up_gives_way_to_the_packaged_agent() {
        let mut state = AgentState {
            committed: Some("1.5.0".into()),
            ..AgentState::default()
        };
        for start in 1..=MAX_COMMITTED_STARTS {
            let plan = decide(Ok(Some(state.clone())), "1.0.0", &now(), &all);
            assert!(
                matches!(plan.run, Run::Slot { trial: false, .. }),
                "start {start}"
            );
            state = plan.write.unwrap_or_default();
            assert_eq!(state.committed_starts, start, "counted before the exec");
        }
        let plan = decide(Ok(Some(state)), "1.0.0", &now(), &all);
        assert_eq!(plan.run, Run::Floor);
        let state = plan.write.unwrap_or_default();
        assert_eq!((state.committed, state.committed_starts), (None, 0));
        assert_eq!(
            plan.notes,
            vec![
                "the committed agent 1.5.0 started 3 times in a row without staying up or authenticating: it is dropped, running the packaged agent 1.0.0"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn a_packaged_agent_installed_by_hand_wins_over_the_slots() {
        // Newer .deb than the committed slot: the slot is dropped.
        let plan = decide(with(Some("1.5.0"), None), "1.6.0", &now(), &all);
        assert_eq!(plan.run, Run::Floor);
        assert_eq!(plan.write.map(|s| s.committed), Some(None));
        // Equal counts as installed by hand too, and the trial goes as well.
        let plan = decide(
            with(Some("1.5.0"), Some(trial("2.0.0", 0))),
            "2.0.0",
            &now(),
            &all,
        );
        assert_eq!(plan.run, Run::Floor);
        let state = plan.write.unwrap_or_default();
        assert_eq!((state.committed, state.trial), (None, None));
        assert!(
            state
                .failed
                .is_some_and(|f| f.error.contains("installed over"))
        );
    }

    #[test]
    fn a_committed_slot_runs_while_it_is_newer_and_executable() {
        let plan = decide(with(Some("1.5.0"), None), "1.0.0", &now(), &all);
        assert_eq!(
            plan.run,
            Run::Slot {
                version: "1.5.0".into(),
                trial: false
            }
        );
        assert_eq!(plan.write.map(|s| s.committed_starts), Some(1));
        let plan = decide(with(Some("1.5.0"), None), "1.0.0", &now(), &none);
        assert_eq!(plan.run, Run::Floor);
        // Not orderable: never preferred to the packaged binary on a guess.
        let plan = decide(with(Some("nightly"), None), "1.0.0", &now(), &all);
        assert_eq!(plan.run, Run::Floor);
    }

    #[test]
    fn only_regular_executable_files_are_slot_binaries() -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir()?;
        let bin = slot_binary(tmp.path(), "2.0.0");
        assert!(!is_executable(&bin));
        std::fs::create_dir_all(bin.parent().unwrap_or(tmp.path()))?;
        std::fs::write(&bin, "#!/bin/sh\nexit 1\n")?;
        assert!(!is_executable(&bin));
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
        assert!(is_executable(&bin));
        let link = slot_binary(tmp.path(), "3.0.0");
        std::fs::create_dir_all(link.parent().unwrap_or(tmp.path()))?;
        std::os::unix::fs::symlink(&bin, &link)?;
        assert!(!is_executable(&link));
        Ok(())
    }
}
