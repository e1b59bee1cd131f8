//! The `agent_update` phase (`docs/updates.md`, the agent's own update):
//! the key the rig gives the box, and `agent-version`. After any cut the
//! agent that runs (its heartbeat says) is the one before the update or
//! the release it installed, never a third, and it is the new one once the
//! central was told the update succeeded: the commit was on the card
//! before the success left. Once the update's result is in, no trial is
//! left in `agent/state.json` and a release that fails at start is not the
//! committed one (it cannot send a heartbeat: the state says whether it
//! stayed).

use super::agent_slot::state_file;
use super::central::Event;
use super::checks::Violation;
use super::pushed::SITE_CONF;
use super::qga::Qga;
use std::time::{Duration, Instant};

/// What an agent update goes between: the agent before it, and the
/// release that may replace it (`None`: a release that fails at start,
/// which must never be the one left running).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub before: String,
    /// The version sent.
    pub release: String,
    pub after: Option<String>,
}

/// Trusts `key` for updates (UPDATE_TRUSTED_KEYS in site.conf), flushed;
/// the unit reads it when it starts again. From then on every update the
/// box installs must be signed by it (the rig's releases are).
pub fn enable(qga: &mut Qga, key: &str) -> anyhow::Result<()> {
    // A fixed script; the key as an argument.
    let script = format!(
        "{{ grep -q '^UPDATE_TRUSTED_KEYS=' {SITE_CONF} || \
         printf '\\nUPDATE_TRUSTED_KEYS=%s\\n' \"$1\" >> {SITE_CONF}; }} && sync"
    );
    qga.exec(
        &["/bin/sh", "-c", &script, "sh", key],
        None,
        Duration::from_secs(60),
    )?
    .ok("trusting the central's key for updates")?;
    Ok(())
}

/// The version the agent reported in its last heartbeat (after `since`;
/// one goes at every authentication).
pub fn running(events: &[Event], since: Option<Instant>) -> Option<String> {
    events
        .iter()
        .rev()
        .filter(|e| e.name == "heartbeat" && since.is_none_or(|s| e.at > s))
        .find_map(|e| e.data["versionInfo"]["agentVersion"].as_str())
        .map(str::to_owned)
}

fn violation(detail: String) -> Vec<Violation> {
    vec![Violation {
        check: "agent-version",
        detail,
    }]
}

/// `agent-version`: `running` (None: no heartbeat after the boot) against
/// the agent before the cut and the update in flight, if any.
/// `authenticated`: the agent authenticated after the boot (if not,
/// `agent-starts` says so, and no heartbeat is expected).
pub fn check(
    running: Option<&str>,
    authenticated: bool,
    known: &str,
    change: Option<&Change>,
    success_reported: bool,
) -> Vec<Violation> {
    let Some(running) = running else {
        if authenticated {
            return violation(
                "the agent authenticated after the boot but sent no heartbeat saying its version"
                    .to_owned(),
            );
        }
        return Vec::new();
    };
    match change {
        None if running != known => violation(format!(
            "agent {running} runs, but {known} ran before the cut and no agent update was in flight"
        )),
        None => Vec::new(),
        Some(c) => {
            let after = c.after.as_deref();
            if success_reported && after.is_some_and(|a| a != running) {
                return violation(format!(
                    "the central was told the update to {} succeeded, but agent {running} runs after the cut",
                    after.unwrap_or_default()
                ));
            }
            if running != c.before && Some(running) != after {
                return violation(format!(
                    "agent {running} runs: neither the one before the update ({}) nor the release it installed ({})",
                    c.before,
                    after.unwrap_or("one that fails at start, never to stay")
                ));
            }
            Vec::new()
        }
    }
}

/// `agent-version`, on the slot state once the update's result is in:
/// `state` the bytes of the slot state file (None: no state, the packaged agent
/// runs). An unreadable state is `state-readable`'s.
pub fn slot_state(state: Option<&[u8]>, change: &Change) -> Vec<Violation> {
    let Some(state) = state.and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
    else {
        return Vec::new();
    };
    if !state["trial"].is_null() {
        return violation(format!(
            "{} still names a trial ({}) after the update's result was sent",
            state_file(),
            state["trial"]
        ));
    }
    if change.after.is_none() && state["committed"].as_str() == Some(change.release.as_str()) {
        return violation(format!(
            "{} commits {}, a release that fails at start",
            state_file(),
            change.release
        ));
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_is_the_one_before_or_after_and_the_new_one_once_its_success_was_sent() {
        let good = Change {
            before: "0.1.0".into(),
            release: "0.9.4".into(),
            after: Some("0.9.4".into()),
        };
        let crash = Change {
            before: "0.9.4".into(),
            release: "0.9.5".into(),
            after: None,
        };
        let seen = |running, known, change, success| check(running, true, known, change, success);
        assert!(seen(Some("0.1.0"), "0.1.0", Some(&good), false).is_empty());
        assert!(seen(Some("0.9.4"), "0.1.0", Some(&good), false).is_empty());
        assert!(seen(Some("0.9.4"), "0.1.0", Some(&good), true).is_empty());
        let lost = seen(Some("0.1.0"), "0.1.0", Some(&good), true);
        assert_eq!(
            lost[0].detail,
            "the central was told the update to 0.9.4 succeeded, but agent 0.1.0 runs after the cut"
        );
        assert!(seen(Some("0.9.4"), "0.9.4", Some(&crash), false).is_empty());
        assert_eq!(seen(Some("0.1.0"), "0.9.4", Some(&crash), false).len(), 1);
        assert_eq!(seen(Some("0.9.5"), "0.9.4", None, false).len(), 1);
        assert_eq!(seen(None, "0.9.4", None, false).len(), 1);
        assert!(check(None, false, "0.9.4", None, false).is_empty());
    }

    #[test]
    fn once_the_result_is_in_no_trial_is_left_and_a_failing_release_is_not_committed() {
        let crash = Change {
            before: "0.9.4".into(),
            release: "0.9.5".into(),
            after: None,
        };
        assert!(slot_state(None, &crash).is_empty());
        assert!(slot_state(Some(br#"{"committed":"0.9.4","trial":null}"#), &crash).is_empty());
        let stayed = slot_state(Some(br#"{"committed":"0.9.5"}"#), &crash);
        assert_eq!(
            stayed[0].detail,
            format!(
                "{} commits 0.9.5, a release that fails at start",
                state_file()
            )
        );
        let trial = slot_state(
            Some(br#"{"committed":"0.9.4","trial":{"version":"0.9.5"}}"#),
            &crash,
        );
        assert_eq!(trial.len(), 1);
        assert!(trial[0].detail.contains("still names a trial"));
    }
}
