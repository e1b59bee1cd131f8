//! The report: a line per phase, a line per check, the violations, the
//! control, and the summary line `N cuts, M violations`.

use super::campaign::{Campaign, PhaseStats};
use super::checks::{self, Violation};
use super::phases;

/// `campaigns`: the boxes cut side by side (`--jobs`), added up.
pub fn report(
    campaigns: &[&Campaign],
    control: Option<&Campaign>,
    seed: u64,
    video_mib: u64,
    asked: u32,
    secs: f64,
) -> String {
    let mut out = String::new();
    let cuts: u32 = campaigns.iter().map(|c| c.cuts).sum();
    let boxes = if campaigns.len() > 1 {
        format!("; {} boxes side by side", campaigns.len())
    } else {
        String::new()
    };
    out.push_str(&format!(
        "\npower cuts (seed {seed}; disk behind a volatile write cache; videos of {} MiB{boxes}; {:.0} s, {:.1} s per cut)\n",
        video_mib,
        secs,
        secs / f64::from(cuts.max(1))
    ));
    // Each violation with the box it was seen on (named when there are
    // several).
    let violations: Vec<(String, &Violation)> = campaigns
        .iter()
        .flat_map(|c| {
            c.violations.iter().map(move |(cut, phase, v)| {
                let on = if c.label.is_empty() {
                    String::new()
                } else {
                    format!(" on {}", c.label)
                };
                (format!("cut {cut}{on} ({})", phase.name()), v)
            })
        })
        .collect();
    for phase in phases::ALL {
        let mut s = PhaseStats::default();
        for c in campaigns {
            let one = c.stats.get(phase).copied().unwrap_or_default();
            s.cuts += one.cuts;
            s.checked += one.checked;
            s.violations += one.violations;
        }
        if s.cuts == 0 && s.checked == 0 {
            continue;
        }
        out.push_str(&format!(
            "  {:<17} {:>4} cuts, {:>3} violations\n",
            phase.name(),
            s.cuts,
            s.violations
        ));
    }
    let mut updates = std::collections::BTreeMap::<&str, u32>::new();
    for c in campaigns {
        for (status, n) in &c.agent_updates {
            *updates.entry(status.as_str()).or_default() += n;
        }
    }
    if !updates.is_empty() {
        // A phase whose updates never committed would cut only refusals
        // and rollbacks: say what the cut updates came to.
        let list: Vec<String> = updates.iter().map(|(s, n)| format!("{n} {s}")).collect();
        out.push_str(&format!(
            "  agent updates cut, by their final result: {}\n",
            list.join(", ")
        ));
    }
    let by_check = checks::tally(
        &violations
            .iter()
            .map(|(_, v)| (*v).clone())
            .collect::<Vec<_>>(),
    );
    for (name, text) in checks::CHECKS {
        let n = by_check.get(name).copied().unwrap_or(0);
        out.push_str(&format!("  check {name:<17} {n:>3}  {text}\n"));
    }
    for (at, v) in &violations {
        out.push_str(&format!(
            "  violation after {at}: {}: {}\n",
            v.check, v.detail
        ));
    }
    if let Some(c) = control {
        out.push_str(&format!(
            "must-fail control (a disk that ignores flushes): {} cuts, {} violations{}\n",
            c.cuts,
            c.violations.len(),
            if c.violations.is_empty() {
                " — FAILED: the rig saw no lost flush"
            } else {
                " (as it must)"
            }
        ));
        for (cut, _, v) in c.violations.iter().take(5) {
            out.push_str(&format!("  control cut {cut}: {}: {}\n", v.check, v.detail));
        }
    }
    let hung = campaigns.iter().map(|c| c.hung_boots()).sum::<u32>()
        + control.map_or(0, Campaign::hung_boots);
    if hung > 0 {
        out.push_str(&format!(
            "boots that hung in the emulator's kernel and were cut and started again: {hung}\n"
        ));
    }
    if cuts < asked {
        out.push_str(&format!(
            "the campaign ran {cuts} of the {asked} cuts asked (its time limit, --minutes, or a box that stopped)\n"
        ));
    }
    out.push_str(&format!("{cuts} cuts, {} violations\n", violations.len()));
    out
}
