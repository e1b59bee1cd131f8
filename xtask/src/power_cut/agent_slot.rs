//! `agent-slot`: the box always starts an agent. The launcher runs the
//! slot `STATE_PATH/agent/state.json` names (the trial, else the
//! committed version), else the packaged `/usr/bin/neopro-runtime`: after
//! any cut, every version the state names has its binary in its slot, and
//! the packaged floor is there.

use super::checks::Violation;
use super::snapshot::{STATE, Snapshot};
use serde_json::Value;

/// The packaged agent, the floor the launcher falls back to.
pub const PACKAGED: &str = "/usr/bin/neopro-runtime";

fn violation(detail: String) -> Violation {
    Violation {
        check: "agent-slot",
        detail,
    }
}

/// The slot state the launcher reads.
pub fn state_file() -> String {
    format!("{STATE}/agent/state.json")
}

/// The binary of slot `version`, as the launcher looks for it.
fn slot_binary(version: &str) -> String {
    format!("{STATE}/agent/{version}/bin/neopro-runtime")
}

pub fn check(snap: &Snapshot) -> Vec<Violation> {
    let mut out = Vec::new();
    let is_file = |path: &str| {
        snap.entries
            .iter()
            .any(|e| e.path == path && e.kind == 'f' && e.size > 0)
    };
    if !snap.packaged_agent {
        out.push(violation(format!(
            "{PACKAGED} (the packaged agent, the launcher's floor) is missing"
        )));
    }
    let path = state_file();
    let Some(bytes) = snap.files.get(&path) else {
        return out;
    };
    // An unreadable state is `state-readable`'s; the launcher then runs
    // the packaged agent, which the check above covers.
    let Ok(state) = serde_json::from_slice::<Value>(bytes) else {
        return out;
    };
    let named = [
        ("committed", state["committed"].as_str()),
        ("trial", state["trial"]["version"].as_str()),
    ];
    for (what, version) in named {
        if let Some(v) = version
            && !is_file(&slot_binary(v))
        {
            out.push(violation(format!(
                "{path} names the {what} agent {v}, but {} is missing or empty",
                slot_binary(v)
            )));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::power_cut::snapshot::Entry;

    #[test]
    fn every_version_the_state_names_has_its_binary() {
        let mut snap = Snapshot {
            packaged_agent: true,
            ..Snapshot::default()
        };
        assert!(check(&snap).is_empty(), "no state: the packaged agent runs");
        snap.files.insert(
            state_file(),
            br#"{"committed":"0.2.0","trial":{"version":"0.3.0"}}"#.to_vec(),
        );
        snap.entries.push(Entry {
            kind: 'f',
            size: 9,
            path: slot_binary("0.2.0"),
        });
        snap.entries.push(Entry {
            kind: 'f',
            size: 0,
            path: slot_binary("0.3.0"),
        });
        let found = check(&snap);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].detail.contains("trial agent 0.3.0"));
        snap.packaged_agent = false;
        assert_eq!(check(&snap).len(), 2);
    }
}
