//! The report: a line per phase, a line per check, the violations, the
//! control, and the summary line `N cuts, M violations`.

use super::campaign::Campaign;
use super::checks;
use super::phases;

pub fn report(
    campaign: &Campaign,
    control: Option<&Campaign>,
    seed: u64,
    video_mib: u64,
    secs: f64,
) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "\npower cuts (seed {seed}; disk behind a volatile write cache; videos of {} MiB; {:.0} s, {:.1} s per cut)\n",
        video_mib,
        secs,
        secs / f64::from(campaign.cuts.max(1))
    ));
    for phase in phases::ALL {
        let s = campaign.stats.get(phase).copied().unwrap_or_default();
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
    let by_check = checks::tally(
        &campaign
            .violations
            .iter()
            .map(|(_, _, v)| v.clone())
            .collect::<Vec<_>>(),
    );
    for (name, text) in checks::CHECKS {
        let n = by_check.get(name).copied().unwrap_or(0);
        out.push_str(&format!("  check {name:<17} {n:>3}  {text}\n"));
    }
    for (cut, phase, v) in &campaign.violations {
        out.push_str(&format!(
            "  violation after cut {cut} ({}): {}: {}\n",
            phase.name(),
            v.check,
            v.detail
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
    let hung = campaign.hung_boots() + control.map_or(0, Campaign::hung_boots);
    if hung > 0 {
        out.push_str(&format!(
            "boots that hung in the emulator's kernel and were cut and started again: {hung}\n"
        ));
    }
    out.push_str(&format!(
        "{} cuts, {} violations\n",
        campaign.cuts,
        campaign.violations.len()
    ));
    out
}
