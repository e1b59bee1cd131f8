//! `cargo xtask power-cut [--cuts N] [--seed S] [--phase P]... [--control-cuts K] [--dev]`:
//! real power cuts of a box (issue 29). The agent's `.deb` on a Debian
//! bookworm machine shaped like a box ([`image`]), booted under qemu with
//! its disk behind a volatile write cache ([`machine`]); the test central
//! on the host ([`central`]). In a loop: a phase's command is sent, the
//! power is cut at a random moment of it, the box boots again, the agent
//! starts as on a box, and the named invariants ([`checks`]) are checked
//! against what the box holds ([`snapshot`]) and what the central got.
//! Then the must-fail control: the same on a disk that ignores flushes,
//! which must report violations.
//!
//! Prints a line per phase and ends with `N cuts, M violations`; exits
//! non-zero when M > 0 or when the control saw none. Logs, consoles and
//! the per-cut record (`cuts.jsonl`) stay in `target/power-cut/`.

mod agent_slot;
mod app_release;
mod campaign;
mod central;
mod checks;
mod expiry;
mod image;
mod jobs;
mod machine;
mod phases;
mod pushed;
mod qga;
mod report;
mod rng;
mod setup;
mod snapshot;

use anyhow::{Context, bail};
use campaign::Campaign;
use central::Central;
use machine::{Disk, Machine};
use phases::Phase;
use rng::Rng;
use setup::{copy_disk, inject, prepare};
use std::path::Path;
use std::time::Instant;

struct Args {
    cuts: u32,
    seed: u64,
    phases: Vec<Phase>,
    control_cuts: u32,
    dev: bool,
    video_mib: u32,
    /// Only build (or check) the cached image.
    image_only: bool,
    /// A package to cut instead of building one (an older or released one).
    deb: Option<std::path::PathBuf>,
    /// Where logs and disks go (default `target/power-cut`).
    work: Option<std::path::PathBuf>,
}

const USAGE: &str = "usage: cargo xtask power-cut [--cuts N] [--seed S] [--phase P]... \
                     [--control-cuts K] [--video-mib M] [--dev] [--deb PACKAGE] [--work DIR] [--image-only]";

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let mut parsed = Args {
        cuts: 20,
        seed: 1,
        phases: Vec::new(),
        control_cuts: 1,
        dev: false,
        video_mib: 16,
        image_only: false,
        deb: None,
        work: None,
    };
    for (flag, value) in super::task_args::flags(args, &["--dev", "--image-only"], USAGE)? {
        let Some(value) = value else {
            match flag {
                "--dev" => parsed.dev = true,
                _ => parsed.image_only = true,
            }
            continue;
        };
        let number = || {
            value
                .parse::<u64>()
                .with_context(|| format!("{flag} {value}: {USAGE}"))
        };
        match flag {
            "--cuts" => parsed.cuts = u32::try_from(number()?)?,
            "--seed" => parsed.seed = number()?,
            "--control-cuts" => parsed.control_cuts = u32::try_from(number()?)?,
            "--video-mib" => parsed.video_mib = u32::try_from(number()?)?.max(1),
            "--deb" => parsed.deb = Some(value.into()),
            "--work" => parsed.work = Some(value.into()),
            "--phase" => {
                for name in value.split(',') {
                    parsed.phases.push(Phase::parse(name.trim())?);
                }
            }
            _ => bail!("{USAGE}"),
        }
    }
    if parsed.phases.is_empty() {
        parsed.phases = phases::ALL.to_vec();
    }
    Ok(parsed)
}

pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let args = parse(args)?;
    super::task_args::require_root("power-cut", "mmdebstrap builds the image as root")?;
    image::check_host(args.image_only)?;
    if args.image_only {
        return image::ensure().map(|_| ());
    }
    let started = Instant::now();
    let profile = if args.dev {
        super::Profile::Dev
    } else {
        super::Profile::Release
    };
    let deb = match &args.deb {
        Some(deb) => deb.clone(),
        None => {
            let deb = super::build_package(root, None, profile)?;
            // The rig's central is a binary of the e2e crate, built as
            // `cargo xtask test` builds it.
            super::dev_build(root)?;
            deb
        }
    };
    let image = image::ensure()?;
    let work = args
        .work
        .clone()
        .unwrap_or_else(|| super::target_dir(root).join("power-cut"));
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let central_bin = super::target_dir(root).join("debug/power-cut-central");
    if !central_bin.is_file() {
        bail!(
            "{} is missing: cargo test --no-run builds it",
            central_bin.display()
        );
    }
    let mut central = Central::start(
        &central_bin,
        args.video_mib,
        &super::target_dir(root).join("components/test"),
        &work.join("central.log"),
    )?;
    // One disk for the whole run: the campaign cuts the box the set-up
    // left running, the control then starts from where the campaign ended
    // (a box after a clean power-off).
    let disk = work.join("box.raw");
    copy_disk(&image.disk, &disk)?;
    inject(&disk, &deb, "neopro-runtime.deb")?;
    let (machine, qga) = prepare(&image, &disk, &work.join("campaign"), &mut central)?;
    eprintln!(
        "power-cut: package, image and an installed, registered box ready in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let mut log = std::fs::File::create(work.join("cuts.jsonl"))?;
    let t0 = Instant::now();
    let mut campaign = Campaign::new(machine, Rng::new(args.seed), args.phases.clone(), false);
    let outcome = campaign.run(&mut central, args.cuts, &mut log, Some(qga));
    let campaign_secs = t0.elapsed().as_secs_f64();
    if let Err(e) = &outcome {
        eprintln!("power-cut: the campaign stopped: {e:#}");
    }

    let mut control = None;
    if args.control_cuts > 0 {
        let mut run = Campaign::new(
            Machine::new(&image, &disk, &work.join("control"), Disk::Lying)?,
            Rng::new(args.seed ^ 0x00c0_47a1),
            vec![Phase::DeployVideo],
            true,
        );
        let done = run.run(&mut central, args.control_cuts, &mut log, None);
        if let Err(e) = &done {
            eprintln!("power-cut: the control stopped: {e:#}");
        }
        control = Some(run);
    }

    let text = report::report(
        &campaign,
        control.as_ref(),
        args.seed,
        central.video_size >> 20,
        campaign_secs,
    );
    print!("{text}");
    std::fs::write(work.join("report.txt"), &text)?;
    println!(
        "logs: {} (report.txt, cuts.jsonl, consoles)",
        work.display()
    );
    outcome?;
    let violations = campaign.violations.len();
    if violations > 0 {
        bail!("{violations} violation(s) over {} cuts", campaign.cuts);
    }
    if let Some(c) = &control
        && c.violations.is_empty()
    {
        bail!(
            "the must-fail control (a disk that ignores flushes) reported no violation: the rig cannot see a lost flush"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() -> anyhow::Result<()> {
        let a = parse(&[
            "--cuts".into(),
            "5".into(),
            "--seed".into(),
            "9".into(),
            "--phase".into(),
            "deploy_video,idle".into(),
            "--dev".into(),
        ])?;
        assert_eq!((a.cuts, a.seed, a.dev), (5, 9, true));
        assert_eq!(a.phases, [Phase::DeployVideo, Phase::Idle]);
        assert_eq!(parse(&[])?.phases.len(), phases::ALL.len());
        assert!(parse(&["--cuts".into()]).is_err());
        assert!(parse(&["--phase".into(), "nap".into()]).is_err());
        Ok(())
    }
}
