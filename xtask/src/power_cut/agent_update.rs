//! The `agent_update` phase (`docs/updates.md`, the agent's own update):
//! the key the rig gives the box, and `agent-version`. After any cut the
//! agent that runs is the one before the update or the release it
//! installed (never a third, never none), and it is the new one once the
//! central was told the update succeeded: the commit was on the card
//! before the success left. A release that fails at start never stays:
//! its trial ends and the previous agent is back.

use super::central::Event;
use super::checks::Violation;
use super::qga::Qga;
use std::time::{Duration, Instant};

const SITE_CONF: &str = "/etc/neopro/site.conf";

/// What an agent update goes between: the agent before it, and the
/// release that may replace it (`None`: a release that fails at start,
/// which must never be the one left running).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub before: String,
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

/// `agent-version`: `running` (None: no heartbeat after the boot, which
/// `agent-starts` reports) against the agent before the cut and the
/// update in flight, if any.
pub fn check(
    running: Option<&str>,
    known: &str,
    change: Option<&Change>,
    success_reported: bool,
) -> Vec<Violation> {
    let Some(running) = running else {
        return Vec::new();
    };
    let violation = |detail: String| {
        vec![Violation {
            check: "agent-version",
            detail,
        }]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_is_the_one_before_or_after_and_the_new_one_once_its_success_was_sent() {
        let good = Change {
            before: "0.1.0".into(),
            after: Some("0.9.4".into()),
        };
        let crash = Change {
            before: "0.9.4".into(),
            after: None,
        };
        assert!(check(Some("0.1.0"), "0.1.0", Some(&good), false).is_empty());
        assert!(check(Some("0.9.4"), "0.1.0", Some(&good), false).is_empty());
        assert!(check(Some("0.9.4"), "0.1.0", Some(&good), true).is_empty());
        let lost = check(Some("0.1.0"), "0.1.0", Some(&good), true);
        assert_eq!(
            lost[0].detail,
            "the central was told the update to 0.9.4 succeeded, but agent 0.1.0 runs after the cut"
        );
        assert!(check(Some("0.9.4"), "0.9.4", Some(&crash), false).is_empty());
        assert_eq!(check(Some("0.1.0"), "0.9.4", Some(&crash), false).len(), 1);
        assert_eq!(check(Some("0.9.5"), "0.9.4", None, false).len(), 1);
        assert!(check(None, "0.9.4", None, false).is_empty());
    }
}
