//! `cargo xtask power-cut [--cuts N] [--seed S] [--phase P]... [--control-cuts K] [--jobs J] [--dev]`:
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
//! With `--jobs J` the campaign's cuts are shared by J boxes cut side by
//! side (each its own disk, its own central, its own seeded phase order):
//! much of a cut's cycle is waiting (a command's window, a result's
//! delivery, the guest's boot stalls), so a second box fills the cores
//! the first leaves idle. The report adds them up.
//!
//! Prints a line per phase and ends with `N cuts, M violations`; exits
//! non-zero when M > 0 or when the control saw none. Logs, consoles and
//! the per-cut record (`cuts.jsonl`) stay in `target/power-cut/` (one
//! folder `box-<i>` per box with `--jobs`).

mod agent_slot;
mod agent_update;
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
    /// Boxes cut side by side.
    jobs: u32,
    /// No cut starts after this many minutes of campaign (the report then
    /// says how many of `cuts` ran).
    minutes: Option<u64>,
    dev: bool,
    video_mib: u32,
    /// Only build (or check) the cached image.
    image_only: bool,
    /// A package to cut instead of building one (an older or released one).
    deb: Option<std::path::PathBuf>,
    /// Where logs and disks go (default `target/power-cut`).
    work: Option<std::path::PathBuf>,
}

/// Each box is a 1 GiB guest and an emulator busy on the host's cores.
const MAX_JOBS: u32 = 8;

const USAGE: &str = "usage: cargo xtask power-cut [--cuts N] [--seed S] [--phase P]... \
                     [--control-cuts K] [--jobs J] [--minutes T] [--video-mib M] [--dev] [--deb PACKAGE] [--work DIR] [--image-only]";

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let mut parsed = Args {
        cuts: 20,
        seed: 1,
        phases: Vec::new(),
        control_cuts: 1,
        jobs: 1,
        minutes: None,
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
            "--minutes" => parsed.minutes = Some(number()?),
            "--jobs" => {
                parsed.jobs = u32::try_from(number()?)?;
                if !(1..=MAX_JOBS).contains(&parsed.jobs) {
                    bail!("--jobs {value}: 1 to {MAX_JOBS} boxes");
                }
            }
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
    // A box without a cut to make is not set up.
    parsed.jobs = parsed.jobs.min(parsed.cuts.max(1));
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
    let components = super::target_dir(root).join("components/test");
    let results: Vec<anyhow::Result<Boxed>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.jobs)
            .map(|i| {
                let dir = if args.jobs == 1 {
                    work.clone()
                } else {
                    work.join(format!("box-{i}"))
                };
                let setup = BoxSetup {
                    index: i,
                    dir,
                    central_bin: &central_bin,
                    components: &components,
                    image: &image,
                    deb: &deb,
                    args: &args,
                    started,
                };
                scope.spawn(move || cut_one_box(setup))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a box's thread panicked")))
            })
            .collect()
    });
    // A box that could not be set up is reported; the others' cuts count.
    let mut boxes = Vec::new();
    let mut unset = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(b) => boxes.push(b),
            Err(e) => {
                eprintln!("power-cut: box {i} could not be set up: {e:#}");
                unset.push(format!("box {i} could not be set up: {e:#}"));
            }
        }
    }
    // The boxes cut side by side: the longest one's campaign.
    let campaign_secs = boxes.iter().map(|b| b.secs).fold(0.0, f64::max);

    let mut control = None;
    if args.control_cuts > 0
        && let Some(first) = boxes.iter_mut().find(|b| b.stopped.is_none())
    {
        // The control runs on the disk of a box whose campaign ended
        // cleanly, from where it ended (a box after a clean power-off).
        let mut run = Campaign::new(
            Machine::new(&image, &first.disk, &first.dir.join("control"), Disk::Lying)?,
            Rng::new(args.seed ^ 0x00c0_47a1),
            vec![Phase::DeployVideo],
            true,
        );
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(first.dir.join("cuts.jsonl"))?;
        let done = run.run(&mut first.central, args.control_cuts, &mut log, None);
        if let Err(e) = &done {
            eprintln!("power-cut: the control stopped: {e:#}");
        }
        control = Some(run);
    }

    let video_mib = boxes.first().map_or(0, |b| b.central.video_size >> 20);
    let campaigns: Vec<&Campaign> = boxes.iter().map(|b| &b.campaign).collect();
    let text = report::report(
        &campaigns,
        control.as_ref(),
        args.seed,
        video_mib,
        args.cuts,
        campaign_secs,
    );
    print!("{text}");
    std::fs::write(work.join("report.txt"), &text)?;
    println!(
        "logs: {} (report.txt, cuts.jsonl, consoles)",
        work.display()
    );
    if let Some(e) = unset.first() {
        bail!("{e}");
    }
    for b in &boxes {
        if let Some(e) = &b.stopped {
            bail!("box {} stopped: {e}", b.index);
        }
    }
    let violations: usize = campaigns.iter().map(|c| c.violations.len()).sum();
    if violations > 0 {
        let cuts: u32 = campaigns.iter().map(|c| c.cuts).sum();
        bail!("{violations} violation(s) over {cuts} cuts");
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

/// The seed of box `index`: box 0 keeps the campaign's (one box cuts as
/// before `--jobs`), the others take successive draws of a generator
/// seeded by it, so no two boxes start from neighbouring seeds. Each box
/// prints its seed: `--seed <it> --jobs 1` replays that box alone.
fn box_seed(seed: u64, index: u32) -> u64 {
    let mut draws = Rng::new(seed);
    (0..index).fold(seed, |_, _| draws.next_u64())
}

/// What one box of the campaign needs.
struct BoxSetup<'a> {
    index: u32,
    /// Its disk, logs and consoles.
    dir: std::path::PathBuf,
    central_bin: &'a Path,
    components: &'a Path,
    image: &'a image::Image,
    deb: &'a Path,
    args: &'a Args,
    started: Instant,
}

/// One box after its share of the campaign.
struct Boxed {
    index: u32,
    dir: std::path::PathBuf,
    disk: std::path::PathBuf,
    central: Central,
    campaign: Campaign,
    /// Why its campaign stopped before its share of cuts, if it did.
    stopped: Option<String>,
    /// Its campaign's seconds, from the end of its set-up.
    secs: f64,
}

/// Sets up box `index` (its central, its disk, the package installed and
/// registered) and cuts it `cuts / jobs` times (the first boxes one more
/// when it does not divide).
fn cut_one_box(setup: BoxSetup) -> anyhow::Result<Boxed> {
    let BoxSetup {
        index,
        dir,
        central_bin,
        components,
        image,
        deb,
        args,
        started,
    } = setup;
    std::fs::create_dir_all(&dir)?;
    let mut central = Central::start(
        central_bin,
        args.video_mib,
        components,
        &dir.join("central.log"),
    )?;
    // One disk per box for the whole run: the campaign cuts the box the
    // set-up left running.
    let disk = dir.join("box.raw");
    copy_disk(&image.disk, &disk)?;
    inject(&disk, deb, "neopro-runtime.deb")?;
    let (machine, qga) = prepare(image, &disk, &dir.join("campaign"), &mut central)
        .with_context(|| format!("setting up box {index}"))?;
    eprintln!(
        "power-cut: box {index}: package, image and an installed, registered box ready in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let mut log = std::fs::File::create(dir.join("cuts.jsonl"))?;
    let share = args.cuts / args.jobs + u32::from(index < args.cuts % args.jobs);
    let seed = box_seed(args.seed, index);
    let mut campaign = Campaign::new(machine, Rng::new(seed), args.phases.clone(), false);
    if args.jobs > 1 {
        campaign.label = format!("box {index} (seed {seed})");
    }
    let t0 = Instant::now();
    campaign.deadline = args
        .minutes
        .and_then(|m| t0.checked_add(std::time::Duration::from_secs(m.saturating_mul(60))));
    let stopped = match campaign.run(&mut central, share, &mut log, Some(qga)) {
        Ok(()) => None,
        Err(e) => {
            eprintln!("power-cut: box {index}: the campaign stopped: {e:#}");
            // Its emulator would keep cores the other boxes need.
            campaign.halt();
            Some(format!("{e:#}"))
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    Ok(Boxed {
        index,
        dir,
        disk,
        central,
        campaign,
        stopped,
        secs,
    })
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
            "--jobs".into(),
            "2".into(),
        ])?;
        assert_eq!((a.cuts, a.seed, a.dev, a.jobs), (5, 9, true, 2));
        assert_eq!(a.phases, [Phase::DeployVideo, Phase::Idle]);
        assert_eq!(parse(&[])?.phases.len(), phases::ALL.len());
        assert!(parse(&["--cuts".into()]).is_err());
        assert_eq!(box_seed(7, 0), 7);
        // Neighbouring seeds are avoided: the boxes' differ in many bits.
        for i in 1..4 {
            let differing = (box_seed(7, i) ^ box_seed(7, i - 1)).count_ones();
            assert!(differing > 16, "box {i}: {differing} bits");
        }
        assert!(parse(&["--jobs".into(), "9".into()]).is_err());
        assert_eq!(
            parse(&["--cuts".into(), "1".into(), "--jobs".into(), "3".into()])?.jobs,
            1
        );
        assert!(parse(&["--phase".into(), "nap".into()]).is_err());
        Ok(())
    }
}
